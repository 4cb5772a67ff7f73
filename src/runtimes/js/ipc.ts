// What the JavaScript runtime adds to the runtime-host protocol (../runtime-host-ipc.ts): a deploy may
// carry the V8 code cache the node kept from an earlier child, and its answer may carry a new one.

import type { SourceKind } from "./host/compile.js";

/** What the parent keeps of a compiled source (by SHA-256) to speed up redeploys after a restart. */
export interface CompiledCode {
  /** SHA-256 (hex) of the source this belongs to; the child uses it only for that exact source. */
  sha256: string;
  kind: SourceKind;
  /** V8 code cache of the source compiled as `kind`. */
  cachedData?: Uint8Array;
}

/** The JavaScript runtime's extra deploy field. */
export interface JsDeployExtra {
  code?: CompiledCode;
}

export interface DeployResult {
  /** Set when this deploy made a code cache (from a source's second compile on): the parent keeps it for the next runtime host. */
  code?: CompiledCode;
}
