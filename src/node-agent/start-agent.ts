// The second step of `nex node up` (up.ts is the first): the node's NATS connection, the runtimes its
// config enables (runtimes/registry.ts), the node agent and the HTTP gateway. Loaded once the bundled
// broker, if any, already accepts clients.

import path from "node:path";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "pino";
import type { RunningBroker } from "../broker/index.js";
import { type RuntimeContext, RUNTIMES } from "../runtimes/registry.js";
import type { Runtime, WorkloadType } from "../runtimes/types.js";
import type { LocalBrokerConnection } from "./broker-credentials.js";
import { loadNodeIdentity } from "./identity.js";
import { connectLocalFirst } from "./in-process-connect.js";
import type { WorkloadCredentials } from "./workload-credentials.js";
import { NodeAgent } from "./node.js";
import { HttpGateway } from "./http-gateway.js";
import { DEFAULT_GATEWAY } from "./gateway-options.js";
import { useReplicas } from "../util/replicated-buckets.js";
import { skipCancelOfAnsweredRequests } from "../util/nats-request-cancel.js";
import type { NodeUpOptions, RunningNode } from "./up-options.js";
import type { MetricsServer } from "./metrics-server.js";

/** What the first step hands over: the bundled broker (if any) and how to reach the NATS server. */
export interface StartedBroker {
  broker?: RunningBroker;
  brokerUrl: string;
  local?: LocalBrokerConnection;
  credentials?: WorkloadCredentials;
  releaseDataDir: () => void;
}

/** Connects and starts the node; on failure closes what it opened (the caller closes the broker). */
export async function startAgent(o: NodeUpOptions, started: StartedBroker): Promise<RunningNode> {
  const { broker, brokerUrl, local, credentials, releaseDataDir } = started;
  const servers = brokerUrl.split(",").map((s) => s.trim());
  let nc: NatsConnection;
  try {
    // noAsyncTraces: host services make a request per call; a stack captured for each costs more than it.
    // Beside a bundled broker the node's connection is in memory (no loopback socket in between).
    const dial = broker ? connectLocalFirst : connect;
    skipCancelOfAnsweredRequests();
    nc = await dial({ servers, name: `nex-node ${o.config.name}`, maxReconnectAttempts: -1, noAsyncTraces: true, ...o.auth });
  } catch (err) {
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
  const context: RuntimeContext = {
    natsUrl: brokerUrl,
    natsAuth: o.auth,
    nc,
    nodeId: identity.id,
    dataDir: path.resolve(o.config.data_dir),
    observer,
    log: o.log,
    hostPerNamespace: o.config.runtime_host_per_namespace,
    jsReplicas: o.config.js_replicas,
    maxWarmSlots: o.config.limits.max_warm_slots,
    dockerHost: o.config.docker_host,
    containerUser: o.config.container_user,
  };
  try {
    for (const type of o.config.workload_types) runtimes.set(type, await RUNTIMES[type](context));
  } catch (err) {
    for (const runtime of runtimes.values()) await runtime.close().catch(() => undefined);
    await nc.close();
    throw err;
  }
  node = new NodeAgent({ nc, identity, config: o.config, runtimes, brokerUrl, credentials, version: o.version, log: o.log, onLameDuckDone: o.onLameDuckDone });
  const running = node;
  /** What a start that fails half-way undoes: the node and its connection (up.ts closes the broker). */
  const abandon = async (): Promise<void> => {
    await running.stop();
    await nc.close();
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
  let metrics: MetricsServer | undefined;
  if (o.metrics) {
    const { MetricsServer } = await import("./metrics-server.js");
    metrics = new MetricsServer(running, o.log.child({ component: "metrics" }));
    try {
      await metrics.listen(o.metrics.host, o.metrics.port);
    } catch (err) {
      await gateway?.close();
      await abandon();
      throw new Error(`cannot serve metrics on ${o.metrics.host}:${o.metrics.port}: ${err instanceof Error ? err.message : err}`);
    }
  }
  const web = gateway;
  const scrape = metrics;
  return {
    node: running,
    nc,
    broker,
    brokerUrl,
    local,
    gateway,
    metrics,
    stop: async () => {
      await scrape?.close();
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
