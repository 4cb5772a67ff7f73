// The runtime-host child process: runs JavaScript workloads in isolated-vm isolates, away from the node
// agent, so a crashing isolate library cannot take the node down. Started by JsRuntime with
// `node --no-node-snapshot runtime-host.js` and an IPC channel. It connects to NATS itself and
// subscribes the trigger subjects, so a trigger costs one broker hop and never touches the node.
//
// IPC (see ipc.ts): init → ready; deploy/undeploy/stats/shutdown → result; console lines and failed
// triggers → batched "events"; its own pino log → "log" lines.

import { connect, type NatsConnection } from "@nats-io/transport-node";
import pino, { type Logger } from "pino";
import type { LogStream } from "../types.js";
import { CodeCache, WorkloadLoadError, type WorkloadCode } from "./compile.js";
import { HostServices } from "../../host-services/server.js";
import { HostBridge } from "../host-bridge.js";
import { SameTurn } from "../../util/same-turn.js";
import { sha256Hex } from "../../util/sha256.js";
import type { DeployResult, FromHost, JsWorkloadSpec, LogEntry, ToHost, TriggerFailure, CompiledCode } from "./ipc.js";
import { WorkloadPool } from "./isolate-pool.js";
import { HostedWorkload, normalizeLimits, poolSize } from "../hosted-workload.js";

/** Log lines kept for the parent when it does not keep up; beyond this lines are counted and dropped. */
const MAX_PENDING_LOG_LINES = 20_000;
const EVENT_BATCH = 500;
/** NATS's default max_payload, for a server that did not say its own. */
const DEFAULT_MAX_PAYLOAD = 1024 * 1024;

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

const log: Logger = pino(
  { level: process.env.NEX_JS_HOST_LOG_LEVEL ?? "info", base: { component: "js-runtime-host", pid: process.pid } },
  { write: (line: string) => send({ type: "log", line }) },
);

/** Console lines and failed triggers, sent to the parent in batches once per event-loop turn. */
class EventBatcher {
  private logs: LogEntry[] = [];
  private failures: TriggerFailure[] = [];
  private dropped = 0;
  private scheduled = false;

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
      log.warn({ dropped: this.dropped }, "workload console output dropped: the node did not keep up");
      this.dropped = 0;
    }
    const message: FromHost = { type: "events", logs: this.logs, failures: this.failures };
    this.logs = [];
    this.failures = [];
    send(message);
  }
}

const events = new EventBatcher();
/** Host calls of all isolates, started together per event-loop turn so their requests share writes. */
const hostCallTurn = new SameTurn();
const codeCache = new CodeCache();
const workloads = new Map<string, HostedWorkload>();
const deploying = new Map<string, Promise<unknown>>();
let nc: NatsConnection | undefined;
/** Host services for this process's workloads, served in-process (the node serves the same on the bus). */
let hostServices: HostServices | undefined;
let hostServicesOnBus = false;
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

function checkSpec(spec: JsWorkloadSpec): void {
  const bad = (what: string): never => {
    throw new WorkloadLoadError(`invalid JavaScript workload spec: ${what}`);
  };
  if (!spec || typeof spec !== "object") bad("not an object");
  if (typeof spec.id !== "string" || spec.id === "") bad("id");
  if (typeof spec.name !== "string" || spec.name === "") bad("name");
  if (typeof spec.namespace !== "string" || spec.namespace === "") bad("namespace");
  if (!(spec.artifact instanceof Uint8Array)) bad("artifact must be bytes");
  if (!Array.isArray(spec.triggerSubjects) || !spec.triggerSubjects.every((s) => typeof s === "string" && s !== "")) {
    bad("triggerSubjects must be a list of subjects");
  }
}

function decodeSource(name: string, artifact: Uint8Array): string {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(artifact);
  } catch {
    throw new WorkloadLoadError(`JavaScript workload '${name}' is not UTF-8 text`);
  }
}

async function deploy(spec: JsWorkloadSpec, given?: CompiledCode): Promise<DeployResult> {
  if (!nc) throw new Error("the runtime host is not connected to NATS");
  if (shuttingDown) throw new Error("the runtime host is shutting down");
  checkSpec(spec);
  if (workloads.has(spec.id) || deploying.has(spec.id)) throw new Error(`workload ${spec.id} is already deployed`);
  const conn = nc;
  const work = (async (): Promise<DeployResult> => {
    const sha256 = sha256Hex(spec.artifact);
    const wlog = log.child({ workloadId: spec.id, namespace: spec.namespace, workload: spec.name });
    if (spec.sha256 && spec.sha256.toLowerCase() !== sha256) {
      wlog.warn({ given: spec.sha256, computed: sha256 }, "artifact sha256 differs from the spec; caching by the computed one");
    }
    // A code cache is machine code tied to one source: use the parent's only for that exact source.
    const cached = codeCache.get(sha256) ?? (given?.sha256 === sha256 ? given : undefined);
    const code: WorkloadCode = {
      name: spec.name,
      filename: `file:///${encodeURIComponent(spec.namespace)}/${encodeURIComponent(spec.name.replace(/\.m?js$/, ""))}.js`,
      source: decodeSource(spec.name, spec.artifact),
      sha256,
      kind: cached?.kind,
      cachedData: cached?.cachedData,
    };
    if (!hostServicesOnBus) hostServices ??= new HostServices(conn, log.child({ component: "host-services" }));
    const local = hostServices ? { services: hostServices, workloadName: spec.name } : undefined;
    const bridge = new HostBridge(conn, spec.namespace, spec.id, local);
    const limits = normalizeLimits(spec.limits);
    const pool = await WorkloadPool.create({
      code,
      limits,
      fresh: spec.freshContextPerTrigger === true,
      concurrency: poolSize(spec.concurrency),
      env: spec.env && typeof spec.env === "object" ? { ...spec.env } : {},
      maxPayload: conn.info?.max_payload ?? DEFAULT_MAX_PAYLOAD,
      hooks: {
        log: (stream, line) => events.log(spec.id, stream, line),
        hostCall: (service, method, headers, body, deadlineAt) => hostCallTurn.run(() => bridge.call(service, method, headers, body, deadlineAt)),
        catastrophic: (message) => fatal(`isolated-vm catastrophic error in workload ${spec.id}: ${message}`, 70),
      },
      log: wlog,
    });
    if (code.kind) codeCache.set(sha256, code.kind, code.cachedData);
    const workload = new HostedWorkload({ ...spec, limits }, conn, pool, events, wlog);
    await workload.listen();
    workloads.set(spec.id, workload);
    wlog.info({ subjects: spec.triggerSubjects, kind: code.kind, cached: !code.producedCache }, "workload deployed");
    return { code: code.producedCache && code.kind ? { sha256, kind: code.kind, cachedData: code.cachedData } : undefined };
  })();
  deploying.set(spec.id, work);
  try {
    return await work;
  } finally {
    deploying.delete(spec.id);
  }
}

async function undeploy(workloadId: string): Promise<{ stopped: boolean }> {
  const pending = deploying.get(workloadId);
  if (pending) await pending.catch(() => undefined);
  const w = workloads.get(workloadId);
  if (!w) return { stopped: false };
  workloads.delete(workloadId);
  await w.stop();
  log.info({ workloadId }, "workload undeployed");
  return { stopped: true };
}

async function shutdown(): Promise<Record<string, never>> {
  shuttingDown = true;
  await Promise.allSettled([...deploying.values()]);
  await Promise.allSettled([...workloads.values()].map((w) => w.stop()));
  workloads.clear();
  events.flush();
  if (nc) await nc.drain().catch(() => undefined);
  return {};
}

async function init(natsUrl: string, auth: { user?: string; pass?: string; token?: string } | undefined, name: string): Promise<void> {
  const servers = natsUrl
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  try {
    nc = await connect({
      servers,
      name,
      user: auth?.user,
      pass: auth?.pass,
      token: auth?.token,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      // Host-service calls are requests; a stack trace captured for each costs more than the call.
      noAsyncTraces: true,
    });
  } catch (err) {
    fatal(`cannot connect to NATS at ${natsUrl}: ${(err as Error).message}`, 1);
    return;
  }
  const conn = nc;
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
  const m = raw as ToHost;
  if (!m || typeof m !== "object" || typeof m.type !== "string") return;
  switch (m.type) {
    case "init":
      hostServicesOnBus = m.hostServicesOnBus;
      void init(m.natsUrl, m.natsAuth, m.connectionName);
      break;
    case "deploy":
      answer(m.reqId, deploy(m.spec, m.code));
      break;
    case "undeploy":
      answer(m.reqId, undeploy(m.workloadId));
      break;
    case "stats":
      answer(m.reqId, workloads.get(m.workloadId)?.stats() ?? Promise.resolve(null));
      break;
    case "shutdown":
      shutdown().then(
        () => send({ type: "result", reqId: m.reqId, ok: true, value: {} }, () => process.exit(0)),
        (err) => send({ type: "result", reqId: m.reqId, ok: false, error: String(err) }, () => process.exit(1)),
      );
      break;
  }
});

// The node went away: nothing is left to answer to.
process.on("disconnect", () => process.exit(0));
process.on("uncaughtException", (err) => fatal(`uncaught exception: ${err?.stack ?? String(err)}`, 1));
process.on("unhandledRejection", (err) => fatal(`unhandled rejection: ${(err as Error)?.stack ?? String(err)}`, 1));
process.title = "nex-js-runtime-host";
