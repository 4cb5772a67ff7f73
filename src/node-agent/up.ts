// `nex node up` without the CLI around it: optionally the bundled broker in-process, a NATS connection,
// the runtimes the config allows, and the node agent. Used by the CLI and by tests.

import path from "node:path";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "pino";
import { type BrokerAuth, type BrokerOptions, type RunningBroker, startBroker } from "../broker/index.js";
import { JsRuntime } from "../runtimes/js/js-runtime.js";
import { OciRuntime } from "../runtimes/oci/oci-runtime.js";
import { StaticRuntime } from "../runtimes/static/static-runtime.js";
import { WasmRuntime } from "../runtimes/wasm/wasm-runtime.js";
import type { NatsAuth, Runtime, WorkloadType } from "../runtimes/types.js";
import type { NodeConfig } from "./config.js";
import { issuerKey, nexHome } from "../util/nex-home.js";
import { resolveArtifactDir } from "./artifacts.js";
import { type LocalBrokerConnection, loadOrCreateBrokerUsers, recordLocalBroker } from "./broker-credentials.js";
import { loadNodeIdentity } from "./identity.js";
import { connectLocalFirst } from "./in-process-connect.js";
import { BrokerWorkloadUsers, type WorkloadCredentials } from "./workload-credentials.js";
import { NodeAgent } from "./node.js";
import { DEFAULT_GATEWAY, type GatewayOptions, HttpGateway } from "./http-gateway.js";
import { lockDataDir } from "./data-dir-lock.js";
import { useReplicas } from "../util/replicated-buckets.js";

export interface NodeUpOptions {
  config: NodeConfig;
  /** Existing NATS servers (comma-separated); when absent the bundled broker starts in-process. */
  server?: string;
  /** Credentials: for --server, the node's connection; for the bundled broker, the one user it admits (and the node connects as). */
  auth?: NatsAuth;
  /** Bundled broker: admit anonymous clients (no generated credentials). */
  noAuth?: boolean;
  /** Bundled broker: options from a nats-server config file (listen address, limits, authorization, tls...), under the flags. */
  brokerOptions?: BrokerOptions;
  /** Bundled broker listen options. */
  host?: string;
  port?: number;
  httpPort?: number;
  /** The HTTP gateway (--web-port): off when absent. */
  web?: Partial<GatewayOptions> & { port: number };
  version: string;
  log: Logger;
  onLameDuckDone?: () => void;
}

export interface RunningNode {
  node: NodeAgent;
  nc: NatsConnection;
  broker?: RunningBroker;
  brokerUrl: string;
  /** Bundled broker with auth: how the local CLI (and other local clients) connect. */
  local?: LocalBrokerConnection;
  /** The HTTP gateway, when --web-port asked for one. */
  gateway?: HttpGateway;
  stop(): Promise<void>;
}

/**
 * Who may use a bundled broker, and as whom the node and the local CLI connect: the given
 * --user/--password or --token; else, unless --no-auth, the users generated on first start.
 */
function bundledBrokerAccess(o: NodeUpOptions): { brokerAuth?: BrokerAuth; node?: NatsAuth; local?: NatsAuth; workloadSecret?: string } {
  const configured = o.brokerOptions?.auth;
  if (configured) {
    // The config file's users or token: the node connects as the --user/--token given, which must be one of them.
    if (!o.auth?.user && !o.auth?.token) {
      throw new Error("the broker config has an authorization block: give the node one of its users with --user/--password (or its --token)");
    }
    const workloadSecret = configured.users?.length ? loadOrCreateBrokerUsers(path.resolve(o.config.data_dir)).workload_secret : undefined;
    return { brokerAuth: configured, node: o.auth, local: o.auth, workloadSecret };
  }
  if (o.auth?.token) return { brokerAuth: { token: o.auth.token }, node: o.auth, local: o.auth };
  if (o.noAuth && !o.auth?.user) return {};
  const users = loadOrCreateBrokerUsers(path.resolve(o.config.data_dir));
  if (o.auth?.user) {
    const given = { user: o.auth.user, password: o.auth.pass ?? "" };
    return { brokerAuth: { users: [given] }, node: o.auth, local: o.auth, workloadSecret: users.workload_secret };
  }
  return {
    brokerAuth: { users: [users.node, users.local] },
    node: { user: users.node.user, pass: users.node.password },
    local: { user: users.local.user, pass: users.local.password },
    workloadSecret: users.workload_secret,
  };
}

function withoutUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

export async function nodeUp(o: NodeUpOptions): Promise<RunningNode> {
  if (!o.config.allow_any_issuer && o.config.allowed_issuers.length === 0) {
    // The default allow-list: the issuer `nex run` on this machine signs with (created here if new).
    o = { ...o, config: { ...o.config, allowed_issuers: [issuerKey().getPublicKey()] } };
  }
  if (o.config.artifact_dir) {
    o = { ...o, config: { ...o.config, artifact_dir: await resolveArtifactDir(o.config.artifact_dir, [o.config.data_dir, nexHome()]) } };
  }
  const lock = lockDataDir(o.config.data_dir);
  try {
    return await startNode(o, lock.release);
  } catch (err) {
    lock.release();
    throw err;
  }
}

async function startNode(o: NodeUpOptions, releaseDataDir: () => void): Promise<RunningNode> {
  let broker: RunningBroker | undefined;
  let brokerUrl = o.server;
  let local: LocalBrokerConnection | undefined;
  let credentials: WorkloadCredentials | undefined;
  if (!brokerUrl) {
    const access = bundledBrokerAccess(o);
    const given = { host: o.host, port: o.port, httpPort: o.httpPort };
    const options: BrokerOptions = { port: 4222, ...o.brokerOptions, ...withoutUndefined(given), dataDir: o.config.data_dir, jetstream: true, auth: access.brokerAuth };
    broker = await startBroker(options, o.log.child({ component: "broker" }));
    brokerUrl = broker.url;
    // Over TLS the node (and its runtime hosts) trust the broker's CA, and show their certificate where one is required.
    const tls = options.tls ? { caFile: options.tls.caFile, ...(options.tls.verify ? { certFile: options.tls.certFile, keyFile: options.tls.keyFile } : {}) } : undefined;
    o = { ...o, auth: access.node || tls ? { ...access.node, ...(tls ? { tls } : {}) } : undefined };
    local = access.local ? recordLocalBroker(broker.url, { ...access.local, ...(tls ? { tls } : {}) }, broker.wsUrl) : undefined;
    // Containers connect with users of their own; a broker with a token or without auth has no users to mint.
    if (access.workloadSecret) credentials = new BrokerWorkloadUsers(broker.users, access.workloadSecret);
  }
  const servers = brokerUrl.split(",").map((s) => s.trim());
  let nc: NatsConnection;
  try {
    // noAsyncTraces: host services make a request per call; a stack captured for each costs more than it.
    // Beside a bundled broker the node's connection is in memory (no loopback socket in between).
    const dial = broker ? connectLocalFirst : connect;
    nc = await dial({ servers, name: `nex-node ${o.config.name}`, maxReconnectAttempts: -1, noAsyncTraces: true, ...o.auth });
  } catch (err) {
    await broker?.close();
    throw new Error(`cannot connect to ${brokerUrl}: ${err instanceof Error ? err.message : err}`);
  }
  useReplicas(nc, o.config.js_replicas, (level, fields, message) => o.log[level](fields, message));
  logConnectionChanges(nc, o.log);
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
    if (type === "javascript") runtimes.set(type, new JsRuntime({ natsUrl: brokerUrl, natsAuth: o.auth, observer, log: o.log, hostPerNamespace, nodeId: identity.id, jsReplicas: o.config.js_replicas }));
    else if (type === "wasm") {
      const cacheDir = path.join(path.resolve(o.config.data_dir), "wasm-cache");
      runtimes.set(type, new WasmRuntime({ natsUrl: brokerUrl, natsAuth: o.auth, observer, cacheDir, log: o.log, hostPerNamespace, jsReplicas: o.config.js_replicas }));
    }
    // A node whose Docker engine does not answer still starts; its oci deploys fail saying why.
    else if (type === "oci") {
      runtimes.set(type, new OciRuntime({ nodeId: identity.id, natsUrl: brokerUrl, natsAuth: o.auth, dockerHost: o.config.docker_host, containerUser: o.config.container_user, observer, log: o.log }));
    } else if (type === "static") runtimes.set(type, new StaticRuntime(nc));
    else o.log.warn({ type }, "workload type not available in this build; skipping");
  }
  node = new NodeAgent({ nc, identity, config: o.config, runtimes, brokerUrl, credentials, version: o.version, log: o.log, onLameDuckDone: o.onLameDuckDone });
  const running = node;
  /** What a start that fails half-way undoes: the node, its connection and the bundled broker. */
  const abandon = async (): Promise<void> => {
    await running.stop();
    await nc.close();
    await broker?.close();
  };
  try {
    await running.start();
  } catch (err) {
    await abandon();
    throw err;
  }
  let gateway: HttpGateway | undefined;
  if (o.web) {
    gateway = new HttpGateway(
      { ...DEFAULT_GATEWAY, host: "127.0.0.1", ...o.web },
      { nc, nodeId: identity.id, routes: () => running.httpRoutes, access: (ns, entry) => running.httpAccess(ns, entry), log: o.log.child({ component: "http-gateway" }) },
    );
    try {
      await gateway.start();
    } catch (err) {
      await abandon();
      throw new Error(`cannot start the HTTP gateway on ${o.web.host ?? "127.0.0.1"}:${o.web.port}: ${err instanceof Error ? err.message : err}`);
    }
  }
  const web = gateway;
  return {
    node: running,
    nc,
    broker,
    brokerUrl,
    local,
    gateway,
    stop: async () => {
      await web?.close();
      await running.stop();
      await nc.drain().catch(() => undefined);
      await broker?.close();
      releaseDataDir();
    },
  };
}

/** The node's connection losing and finding its server (a NATS server restarted or lost), for the operator. */
function logConnectionChanges(nc: NatsConnection, log: Logger): void {
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === "disconnect" || s.type === "reconnect") log.warn({ status: s.type, server: (s as { server?: string }).server }, s.type === "disconnect" ? "lost the NATS server; reconnecting" : "reconnected to NATS");
    }
  })().catch(() => undefined);
}
