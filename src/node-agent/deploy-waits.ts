// What a deploy may wait long for, told to the deploying client (`nex run` shows it in its spinner) as a
// workload_preparing event just before the runtime starts the workload: an image the node may have to
// pull, a component it may have to transpile. The node cannot tell from here whether the image is on its
// engine or the component in the runtime's cache (the runtimes report nothing while they work), so the
// text says "if"; a deploy that waits for neither sends no event.

import type { WorkloadSpec } from "../runtimes/types.js";
import { wasmForm } from "../runtimes/wasm/binary.js";

export function deployWait(spec: WorkloadSpec): string | undefined {
  if (spec.type === "oci") return `image ${spec.image} (pulled if the node's engine does not have it)`;
  if (spec.type !== "wasm") return undefined;
  try {
    return wasmForm(spec.artifact) === "component" ? "the component's transpile (once per artifact, then cached)" : undefined;
  } catch {
    // Not wasm at all: the runtime refuses it at once, with the reason.
    return undefined;
  }
}
