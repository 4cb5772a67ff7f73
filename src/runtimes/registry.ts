// Every workload type and how a node makes its runtime: the one place a new runtime is registered.
// Each runtime's module is loaded only when a node enables its type, after the node's broker is up
// (dockerode, jco and the runtime hosts' code cost start-up time a node without them should not pay).

import path from "node:path";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "pino";
import type { NatsAuth, Runtime, RuntimeObserver, WorkloadType } from "./types.js";

/** What a node hands every runtime factory; each takes what it needs. */
export interface RuntimeContext {
  /** The NATS server URL(s) the node uses, comma-separated. */
  natsUrl: string;
  natsAuth?: NatsAuth;
  /** The node's own connection. */
  nc: NatsConnection;
  nodeId: string;
  /** The node's data directory (caches live under it). */
  dataDir: string;
  observer: RuntimeObserver;
  log: Logger;
  hostPerNamespace: boolean;
  jsReplicas?: number;
  /** Slots each JS or wasm runtime host keeps loaded (DEFAULT_MAX_WARM_SLOTS when absent). */
  maxWarmSlots?: number;
  dockerHost?: string;
  containerUser?: string;
}

// The context's fields carry the names the runtimes' options use, so each factory hands it on whole.
export const RUNTIMES: Record<WorkloadType, (c: RuntimeContext) => Promise<Runtime>> = {
  javascript: async (c) => new (await import("./js/js-runtime.js")).JsRuntime(c),
  wasm: async (c) => new (await import("./wasm/wasm-runtime.js")).WasmRuntime({ ...c, cacheDir: path.join(c.dataDir, "wasm-cache") }),
  // A node whose Docker engine does not answer still starts; its oci deploys fail saying why.
  oci: async (c) => new (await import("./oci/oci-runtime.js")).OciRuntime(c),
  static: async (c) => new (await import("./static/static-runtime.js")).StaticRuntime(c.nc),
};
