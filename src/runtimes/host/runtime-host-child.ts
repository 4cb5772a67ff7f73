// Runs in a runtime-host child process (forked by runtime-host-supervisor.ts in the node). What the
// JavaScript and the wasm runtime hosts share: the IPC loop (init → ready; deploy, undeploy, stats,
// shutdown → result), the NATS connection the child makes itself (so a trigger never passes through
// the node), each workload's trigger subscriptions (HostedWorkload), in-process host services, the
// batching of log lines and failed triggers to the node, and the child's own pino log over IPC. A
// runtime host supplies only how to load a workload into a trigger pool (isolates, worker threads).

import { useReplicas } from "../../util/replicated-buckets.js";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { skipCancelOfAnsweredRequests } from "../../util/nats-request-cancel.js";
import pino, { type Logger } from "pino";
import { HostServices } from "../../host-services/server.js";
import { sha256Hex } from "../../util/sha256.js";
import { HostBridge } from "./host-bridge.js";
import { HostedWorkload, normalizeLimits, type TriggerPool } from "./hosted-workload.js";
import type { DeployRequest, FromHost, FunctionSpec, HostInit, LogEntry, ToHost, TriggerFailure } from "../runtime-host-ipc.js";
import { DEFAULT_MAX_WARM_SLOTS, type FunctionStats, type LogStream, type WorkloadEvent, type WorkloadLimits } from "../types.js";
import { WarmPools } from "./warm-pools.js";

/** Log lines kept for the parent when it does not keep up; beyond this lines are counted and dropped. */
const MAX_PENDING_LOG_LINES = 20_000;
const EVENT_BATCH = 500;

function send(message: FromHost, done?: () => void): void {
  if (!process.connected || !process.send) {
    done?.();
    return;
  }
  try {
    process.send(message, undefined, {}, () => done?.());
  } catch {
    done?.();
  }
}

/** Log lines and failed triggers, sent to the parent in batches once per event-loop turn. */
export class EventBatcher {
  private logs: LogEntry[] = [];
  private failures: TriggerFailure[] = [];
  private dropped = 0;
  private scheduled = false;

  constructor(private readonly logger: Logger) {}

  log(workloadId: string, stream: LogStream, text: string): void {
    const lines = text.endsWith("\n") ? text.slice(0, -1).split("\n") : text.split("\n");
    for (const line of lines) {
      if (this.logs.length >= MAX_PENDING_LOG_LINES) {
        this.dropped++;
        continue;
      }
      this.logs.push({ workloadId, stream, line: line.endsWith("\r") ? line.slice(0, -1) : line });
    }
    this.schedule();
  }

  failure(workloadId: string, subject: string, error: string): void {
    this.failures.push({ workloadId, subject, error });
    this.schedule();
  }

  private schedule(): void {
    if (this.logs.length + this.failures.length >= EVENT_BATCH) {
      this.flush();
      return;
    }
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => this.flush());
  }

  flush(): void {
    this.scheduled = false;
    if (this.logs.length === 0 && this.failures.length === 0) return;
    if (this.dropped > 0) {
      this.logger.warn({ dropped: this.dropped }, "workload output dropped: the node did not keep up");
      this.dropped = 0;
    }
    const message: FromHost = { type: "events", logs: this.logs, failures: this.failures };
    this.logs = [];
    this.failures = [];
    send(message);
  }
}

/** What a runtime host's loader gets besides the deploy request. */
export interface LoadContext {
  nc: NatsConnection;
  /** The deploy's limits with defaults filled in. */
  limits: WorkloadLimits;
  /** The artifact's SHA-256 as computed here (what caches are keyed by). */
  sha256: string;
  /** The init message's runtime-specific settings. */
  settings: Record<string, string>;
  events: EventBatcher;
  /** The budget of loaded slots of this process's functions (warm-pools.ts). */
  warm: WarmPools;
  /** Host-service calls of this workload: served in this process (`workloads.*`: by the node, over NATS). */
  bridge: HostBridge;
  /** Stops this process: something in it can no longer be trusted (a catastrophic isolate error). */
  fatal(reason: string): void;
  /** Tells the node a long-running workload (a service) ended a run or came back. */
  report(event: WorkloadEvent): void;
  log: Logger;
}

/** What the runtime host keeps of one deployed workload: a function's trigger path, or a service. */
export interface Served {
  /** Stops it (a service: stop(ctx) within its deadline), waiting for what is in flight. */
  stop(): Promise<void>;
  stats(): Promise<FunctionStats>;
}

/** A loaded service: running (start(ctx) called) and, when it has trigger subjects, their pool (handle()). */
export interface LoadedService<Result> {
  service: Served;
  /** Runs the service's handle(subject, payload) for its trigger subjects. */
  triggers: TriggerPool;
  result: Result;
  details: Record<string, unknown>;
}

/** A service with trigger subjects: the trigger path stops first, then the service; their counts add up. */
function serviceWithTriggers(triggers: HostedWorkload, service: Served): Served {
  return {
    async stop() {
      await triggers.stop();
      await service.stop();
    },
    async stats() {
      const [t, s] = await Promise.all([triggers.stats(), service.stats()]);
      const n = t.triggers + s.triggers;
      return {
        ...s,
        triggers: n,
        failures: t.failures + s.failures,
        meanMs: n === 0 ? 0 : (t.meanMs * t.triggers + s.meanMs * s.triggers) / n,
        lastMs: t.lastMs || s.lastMs,
        durations: t.durations,
        failureCodes: t.failureCodes,
      };
    },
  };
}

export interface Loaded<Result> {
  pool: TriggerPool;
  /** The deploy's answer to the node. */
  result: Result;
  /** Fields for the "deployed" log line. */
  details: Record<string, unknown>;
}

export interface RuntimeHostDefinition<Extra, Result> {
  /** Names the process (title "nex-<name>") and its log lines' component. */
  name: string;
  /** Loads a workload into a pool that runs its triggers; rejects with a reason the deployer reads. */
  load(request: DeployRequest<Extra>, ctx: LoadContext): Promise<Loaded<Result>>;
  /** Loads and starts a long-running service (spec.service); runtimes without services leave it out. */
  loadService?(request: DeployRequest<Extra>, ctx: LoadContext): Promise<LoadedService<Result>>;
  /** Releases what the runtime host keeps besides its workloads, on shutdown. */
  close?(): Promise<void>;
}

function checkSpec(spec: FunctionSpec): void {
  const bad = (what: string): never => {
    throw new Error(`invalid workload spec: ${what}`);
  };
  if (!spec || typeof spec !== "object") bad("not an object");
  if (typeof spec.id !== "string" || spec.id === "") bad("id");
  if (typeof spec.name !== "string" || spec.name === "") bad("name");
  if (typeof spec.namespace !== "string" || spec.namespace === "") bad("namespace");
  if (!(spec.artifact instanceof Uint8Array)) bad("artifact must be bytes");
  // It keys the code caches (file names, in the wasm runtime): hex digits only.
  if (spec.sha256 && !/^[0-9a-fA-F]{64}$/.test(spec.sha256)) bad("sha256 must be 64 hex digits");
  if (!Array.isArray(spec.triggerSubjects) || !spec.triggerSubjects.every((s) => typeof s === "string" && s !== "")) {
    bad("triggerSubjects must be a list of subjects");
  }
}

/** Serves the node's requests in this process until shutdown or until the node goes away. */
export function serveRuntimeHost<Extra, Result>(def: RuntimeHostDefinition<Extra, Result>): void {
  const log: Logger = pino(
    { level: process.env.NEX_RUNTIME_HOST_LOG_LEVEL ?? "info", base: { component: def.name, pid: process.pid } },
    { write: (line: string) => send({ type: "log", line }) },
  );
  const events = new EventBatcher(log);
  const workloads = new Map<string, Served>();
  /** Each workload's logger (its id, name and namespace on every line). */
  const workloadLogs = new Map<string, Logger>();
  /** Each workload's host-service bridge, whose call counts its stats carry. */
  const bridges = new Map<string, HostBridge>();
  const deploying = new Map<string, Promise<unknown>>();
  let nc: NatsConnection | undefined;
  let init: HostInit | undefined;
  /** Host services for this process's workloads, served in-process (made on the first deploy). */
  let hostServices: HostServices | undefined;
  let warm: WarmPools | undefined;
  let shuttingDown = false;

  function fatal(reason: string, code: number): void {
    log.fatal({ reason }, "runtime host stopping");
    events.flush();
    let exited = false;
    const exit = (): void => {
      if (exited) return;
      exited = true;
      process.exit(code);
    };
    send({ type: "fatal", error: reason }, exit);
    setTimeout(exit, 500).unref();
  }

  function bridgeFor(conn: NatsConnection, spec: FunctionSpec): HostBridge {
    hostServices ??= new HostServices(conn, log.child({ component: "host-services" }));
    return new HostBridge(conn, { id: spec.id, name: spec.name, namespace: spec.namespace }, hostServices, spec.deploysWorkloads);
  }

  async function deploy(request: DeployRequest<Extra>): Promise<Result> {
    if (!nc || !init) throw new Error("the runtime host is not connected to NATS");
    if (shuttingDown) throw new Error("the runtime host is shutting down");
    const spec = request.spec;
    checkSpec(spec);
    if (workloads.has(spec.id) || deploying.has(spec.id)) throw new Error(`workload ${spec.id} is already deployed`);
    const conn = nc;
    const settings = init.settings ?? {};
    const work = (async (): Promise<Result> => {
      const wlog = log.child({ workload_id: spec.id, namespace: spec.namespace, workload: spec.name });
      workloadLogs.set(spec.id, wlog);
      // The node checked the artifact against the SHA-256 its issuer signed (node-agent/artifacts.ts) and
      // this process trusts its node: hashing it again here would cost a deploy a second pass over it.
      const sha256 = spec.sha256 ? spec.sha256.toLowerCase() : sha256Hex(spec.artifact);
      const limits = normalizeLimits(spec.limits);
      const report = (event: WorkloadEvent): void => {
        events.flush();
        send({ type: "workload-event", workloadId: spec.id, event });
      };
      warm ??= new WarmPools(Number(settings.maxWarmSlots) || DEFAULT_MAX_WARM_SLOTS);
      const bridge = bridgeFor(conn, spec);
      bridges.set(spec.id, bridge);
      const ctx: LoadContext = { nc: conn, limits, sha256, settings, events, warm, bridge, fatal: (r) => fatal(r, 70), report, log: wlog };
      if (spec.service) return deployService(request, ctx, wlog);
      const { pool, result, details } = await def.load(request, ctx);
      const workload = new HostedWorkload({ ...spec, limits }, conn, pool, events, wlog);
      await workload.listen();
      if (shuttingDown) {
        await workload.stop();
        throw new Error("the runtime host is shutting down");
      }
      workloads.set(spec.id, workload);
      wlog.info({ subjects: spec.triggerSubjects, ...details }, "workload deployed");
      return result;
    })();
    deploying.set(spec.id, work);
    try {
      return await work;
    } catch (err) {
      bridges.delete(spec.id);
      workloadLogs.delete(spec.id);
      throw err;
    } finally {
      deploying.delete(spec.id);
    }
  }

  /** A service: loaded and started, then its trigger subjects (if any) answered by its handle(). */
  async function deployService(request: DeployRequest<Extra>, ctx: LoadContext, wlog: Logger): Promise<Result> {
    const spec = request.spec;
    if (!def.loadService) throw new Error(`the ${def.name} cannot run services`);
    const { service, triggers, result, details } = await def.loadService(request, ctx);
    let served = service;
    if (spec.triggerSubjects.length > 0) {
      const hosted = new HostedWorkload({ ...spec, limits: ctx.limits }, ctx.nc, triggers, events, wlog);
      try {
        await hosted.listen();
      } catch (err) {
        await service.stop();
        throw err;
      }
      served = serviceWithTriggers(hosted, service);
    }
    if (shuttingDown) {
      await served.stop();
      throw new Error("the runtime host is shutting down");
    }
    workloads.set(spec.id, served);
    wlog.info({ subjects: spec.triggerSubjects, service: true, ...details }, "workload deployed");
    return result;
  }

  async function undeploy(workloadId: string): Promise<{ stopped: boolean }> {
    await deploying.get(workloadId)?.catch(() => undefined);
    const w = workloads.get(workloadId);
    if (!w) return { stopped: false };
    workloads.delete(workloadId);
    bridges.delete(workloadId);
    await w.stop();
    (workloadLogs.get(workloadId) ?? log).info("workload undeployed");
    workloadLogs.delete(workloadId);
    return { stopped: true };
  }

  async function stats(workloadId: string): Promise<FunctionStats | null> {
    const w = workloads.get(workloadId);
    if (!w) return null;
    const calls = bridges.get(workloadId)?.calls;
    return { ...(await w.stats()), ...(calls ? { hostCalls: calls } : {}) };
  }

  async function shutdown(): Promise<Record<string, never>> {
    shuttingDown = true;
    await Promise.allSettled([...deploying.values()]);
    await Promise.allSettled([...workloads.values()].map((w) => w.stop()));
    workloads.clear();
    await def.close?.().catch((err: Error) => log.warn({ err: err.message }, "closing the runtime host's resources failed"));
    events.flush();
    if (nc) await nc.drain().catch(() => undefined);
    return {};
  }

  async function start(m: HostInit): Promise<void> {
    init = m;
    const servers = m.natsUrl
      .split(",")
      .map((s) => s.trim())
      .filter((s) => s !== "");
    skipCancelOfAnsweredRequests();
    try {
      nc = await connect({
        servers,
        name: m.connectionName,
        user: m.natsAuth?.user,
        pass: m.natsAuth?.pass,
        token: m.natsAuth?.token,
        ...(m.natsAuth?.tls ? { tls: m.natsAuth.tls } : {}),
        maxReconnectAttempts: -1,
        reconnectTimeWait: 250,
        // Host-service calls are requests; a stack trace captured for each costs more than the call.
        noAsyncTraces: true,
      });
    } catch (err) {
      fatal(`cannot connect to NATS at ${m.natsUrl}: ${(err as Error).message}`, 1);
      return;
    }
    const conn = nc;
    useReplicas(conn, m.settings?.jsReplicas ? Number(m.settings.jsReplicas) : undefined);
    void (async () => {
      for await (const s of conn.status()) {
        if (s.type === "disconnect" || s.type === "reconnect" || s.type === "error") {
          log.warn({ status: s.type, server: (s as { server?: string }).server }, "NATS connection status");
        }
      }
    })().catch(() => undefined);
    conn.closed().then((err) => {
      if (!shuttingDown) fatal(`NATS connection closed${err ? `: ${err.message}` : ""}`, 1);
    });
    log.info({ servers }, "runtime host connected to NATS");
    send({ type: "ready", pid: process.pid });
  }

  function answer(reqId: number, work: Promise<unknown>): void {
    work.then(
      (value) => send({ type: "result", reqId, ok: true, value }),
      (err) => send({ type: "result", reqId, ok: false, error: (err as Error)?.message ?? String(err) }),
    );
  }

  process.on("message", (raw: unknown) => {
    const m = raw as ToHost<Extra>;
    if (!m || typeof m !== "object" || typeof m.type !== "string") return;
    switch (m.type) {
      case "init":
        void start(m);
        break;
      case "deploy":
        answer(m.reqId, deploy(m));
        break;
      case "undeploy":
        answer(m.reqId, undeploy(m.workloadId));
        break;
      case "stats":
        answer(m.reqId, stats(m.workloadId));
        break;
      case "shutdown":
        shutdown().then(
          () => send({ type: "result", reqId: m.reqId, ok: true, value: {} }, () => process.exit(0)),
          (err) => send({ type: "result", reqId: m.reqId, ok: false, error: String(err) }, () => process.exit(1)),
        );
        break;
    }
  });

  // The node went away (killed, say): nothing is left to answer to, and nobody may be answered either.
  // process.exit can hang here while an isolate waits in a host call (V8 tears the isolate down while its
  // thread waits on this one), and a process stuck in exit keeps its NATS connection and trigger
  // subscriptions: the server would go on handing it requests that are never answered until its pings
  // time out, minutes later. SIGKILL ends it at once, and the kernel closes the connection.
  process.on("disconnect", () => process.kill(process.pid, "SIGKILL"));
  process.on("uncaughtException", (err) => fatal(`uncaught exception: ${err?.stack ?? String(err)}`, 1));
  process.on("unhandledRejection", (err) => fatal(`unhandled rejection: ${(err as Error)?.stack ?? String(err)}`, 1));
  process.title = `nex-${def.name}`;
}
