// `nex node up` without the CLI around it: optionally the bundled broker in-process, a NATS connection,
// the runtimes the config allows, and the node agent. Used by the CLI and by tests.

import path from "node:path";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "pino";
import { type RunningBroker, startBroker } from "../broker/index.js";
import { JsRuntime } from "../runtimes/js/js-runtime.js";
import { OciRuntime } from "../runtimes/oci/oci-runtime.js";
import { WasmRuntime } from "../runtimes/wasm/wasm-runtime.js";
import type { NatsAuth, Runtime, WorkloadType } from "../runtimes/types.js";
import type { NodeConfig } from "./config.js";
import { issuerKey, nexHome } from "../util/nex-home.js";
import { resolveArtifactDir } from "./artifacts.js";
import { loadNodeIdentity } from "./identity.js";
import { NodeAgent } from "./node.js";

export interface NodeUpOptions {
  config: NodeConfig;
  /** Existing NATS servers (comma-separated); when absent the bundled broker starts in-process. */
  server?: string;
  auth?: NatsAuth;
  /** Bundled broker listen options. */
  host?: string;
  port?: number;
  httpPort?: number;
  version: string;
  log: Logger;
  onLameDuckDone?: () => void;
}

export interface RunningNode {
  node: NodeAgent;
  nc: NatsConnection;
  broker?: RunningBroker;
  brokerUrl: string;
  stop(): Promise<void>;
}

export async function nodeUp(o: NodeUpOptions): Promise<RunningNode> {
  if (!o.config.allow_any_issuer && o.config.allowed_issuers.length === 0) {
    // The default allow-list: the issuer `nex run` on this machine signs with (created here if new).
    o = { ...o, config: { ...o.config, allowed_issuers: [issuerKey().getPublicKey()] } };
  }
  if (o.config.artifact_dir) {
    o = { ...o, config: { ...o.config, artifact_dir: await resolveArtifactDir(o.config.artifact_dir, [o.config.data_dir, nexHome()]) } };
  }
  let broker: RunningBroker | undefined;
  let brokerUrl = o.server;
  if (!brokerUrl) {
    broker = await startBroker({ host: o.host, port: o.port ?? 4222, httpPort: o.httpPort, dataDir: o.config.data_dir }, o.log.child({ component: "broker" }));
    brokerUrl = broker.url;
  }
  const servers = brokerUrl.split(",").map((s) => s.trim());
  let nc: NatsConnection;
  try {
    // noAsyncTraces: host services make a request per call; a stack captured for each costs more than it.
    nc = await connect({ servers, name: `nex-node ${o.config.name}`, maxReconnectAttempts: -1, noAsyncTraces: true, ...o.auth });
  } catch (err) {
    await broker?.close();
    throw new Error(`cannot connect to ${brokerUrl}: ${err instanceof Error ? err.message : err}`);
  }
  const identity = loadNodeIdentity(path.resolve(o.config.data_dir));
  let node: NodeAgent | undefined;
  const runtimes = new Map<WorkloadType, Runtime>();
  const observer = {
    log: (...a: Parameters<NodeAgent["log"]>) => node?.log(...a),
    triggerFailed: (...a: Parameters<NodeAgent["triggerFailed"]>) => node?.triggerFailed(...a),
    restarted: (...a: Parameters<NodeAgent["restarted"]>) => node?.restarted(...a),
    workloadEvent: (...a: Parameters<NodeAgent["workloadEvent"]>) => node?.workloadEvent(...a),
  };
  const hostPerNamespace = o.config.runtime_host_per_namespace;
  for (const type of o.config.workload_types) {
    if (type === "javascript") runtimes.set(type, new JsRuntime({ natsUrl: brokerUrl, natsAuth: o.auth, observer, log: o.log, hostPerNamespace }));
    else if (type === "wasm") {
      const cacheDir = path.join(path.resolve(o.config.data_dir), "wasm-cache");
      runtimes.set(type, new WasmRuntime({ natsUrl: brokerUrl, natsAuth: o.auth, observer, cacheDir, log: o.log, hostPerNamespace }));
    }
    // A node whose Docker engine does not answer still starts; its oci deploys fail saying why.
    else if (type === "oci") {
      runtimes.set(type, new OciRuntime({ nodeId: identity.id, natsUrl: brokerUrl, natsAuth: o.auth, dockerHost: o.config.docker_host, observer, log: o.log }));
    } else o.log.warn({ type }, "workload type not available in this build; skipping");
  }
  node = new NodeAgent({ nc, identity, config: o.config, runtimes, brokerUrl, version: o.version, log: o.log, onLameDuckDone: o.onLameDuckDone });
  try {
    await node.start();
  } catch (err) {
    await node.stop();
    await nc.close();
    await broker?.close();
    throw err;
  }
  const running = node;
  return {
    node: running,
    nc,
    broker,
    brokerUrl,
    stop: async () => {
      await running.stop();
      await nc.drain().catch(() => undefined);
      await broker?.close();
    },
  };
}
