// Runs in the node process. WasmRuntime implements Runtime by running every wasm workload in one
// supervised runtime-host child process (host/runtime-host.ts), as the JavaScript runtime does, with the
// same supervision (../runtime-host-supervisor.ts): no guest shares a process with the node agent and
// the bundled broker, and a guest that ends its process in a V8 fatal error costs a restart of the
// child, whose workloads are redeployed. The child connects to NATS itself, so triggers never pass
// through the node; it transpiles components into the cache directory given here.

import pino, { type Logger } from "pino";
import { builtScript } from "../../util/built-script.js";
import { toFunctionSpec } from "../runtime-host-ipc.js";
import { DEPLOY_TIMEOUT_MS } from "../runtime-host-supervisor.js";
import { HostedFunctionRuntime } from "../hosted-function-runtime.js";
import { RuntimeHosts } from "../runtime-hosts.js";
import type { NatsAuth, RuntimeObserver } from "../types.js";
import { MAX_TABLE_ELEMENTS } from "./binary.js";
import type { WasmDeployResult } from "./ipc.js";

export interface WasmRuntimeOptions {
  /** NATS server URL(s), comma-separated. */
  natsUrl: string;
  natsAuth?: NatsAuth;
  observer: RuntimeObserver;
  /** Where transpiled components are kept, by artifact SHA-256. */
  cacheDir: string;
  log?: Logger;
  /** One runtime host per namespace instead of one for all, so tenants do not share a crash domain. */
  hostPerNamespace?: boolean;
  /** How long the child may take to start and connect (default 15 s). */
  startTimeoutMs?: number;
  /** How long close() waits for a graceful stop before SIGKILL (default: longest trigger deadline + 5 s). */
  closeTimeoutMs?: number;
  /** Replicas of the host-service buckets the runtime host creates (undefined: auto, util/replicated-buckets.ts). */
  jsReplicas?: number;
  /** Worker threads the runtime host keeps loaded (DEFAULT_MAX_WARM_SLOTS when absent). */
  maxWarmSlots?: number;
}

/** The compiled wasm runtime-host.js (from source, the one under dist/). */
export function defaultHostScript(): string {
  return builtScript(import.meta.url, "host/runtime-host.js");
}

export class WasmRuntime extends HostedFunctionRuntime<object> {
  readonly type = "wasm" as const;
  protected readonly host: RuntimeHosts;
  /** Components transpiled for this runtime (cache misses); the rest came from the cache. */
  transpileCount = 0;

  constructor(opts: WasmRuntimeOptions) {
    super();
    this.host = new RuntimeHosts(
      {
        label: "wasm",
        script: defaultHostScript(),
        // A second fence behind the caps written into each module (binary.ts): tables made elsewhere.
        execArgv: [`--wasm-max-table-size=${MAX_TABLE_ELEMENTS}`],
        natsUrl: opts.natsUrl,
        natsAuth: opts.natsAuth,
        connectionName: "nex-wasm-runtime-host",
        settings: {
          cacheDir: opts.cacheDir,
          ...(opts.jsReplicas ? { jsReplicas: String(opts.jsReplicas) } : {}),
          ...(opts.maxWarmSlots ? { maxWarmSlots: String(opts.maxWarmSlots) } : {}),
        },
        observer: opts.observer,
        log: (opts.log ?? pino({ level: "silent" })).child({ runtime: "wasm" }),
        startTimeoutMs: opts.startTimeoutMs,
        closeTimeoutMs: opts.closeTimeoutMs,
      },
      async (hp, spec) => {
        const result = await hp.request<WasmDeployResult>({ type: "deploy", spec: toFunctionSpec(spec) }, DEPLOY_TIMEOUT_MS);
        if (result?.transpiled) this.transpileCount++;
      },
      opts.hostPerNamespace === true,
    );
  }
}
