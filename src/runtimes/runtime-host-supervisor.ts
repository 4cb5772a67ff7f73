// Runs in the node process. A function runtime (JavaScript, wasm) keeps its workload code out of the
// node by running it in a runtime-host child process (runtime-host-child.ts); this is the supervision
// both runtimes share: fork, start timeout, IPC request/reply, backoff restart and redeploy, graceful
// close then SIGKILL. The child connects to NATS itself and serves triggers without the node.
//
// Process model:
// - The child starts lazily on the first deploy(), or eagerly with start(). Both resolve once it is
//   connected to NATS.
// - If it dies (crash, V8 fatal error, OOM abort, kill -9), a new one starts after a backoff (100 ms
//   doubling to 5 s, reset after 30 s of good health), every workload it had is redeployed, and then
//   observer.restarted(reason, ids) is called. Deploys that arrive meanwhile wait for the new child.
// - close() asks the child to drain its triggers and exit, and SIGKILLs it after closeTimeoutMs.
// - Log lines arrive in batches over IPC; observer.log is called for each line (the node publishes
//   them). Failed triggers call observer.triggerFailed.

import { fork, type ChildProcess } from "node:child_process";
import type { Logger } from "pino";
import type { FromHost, HostRequest } from "./runtime-host-ipc.js";
import { DEFAULT_WORKLOAD_LIMITS, type FunctionStats, type FunctionWorkloadSpec, type NatsAuth, type RuntimeObserver } from "./types.js";

export interface RuntimeHostOptions {
  /** Names the runtime in logs and errors ("JavaScript", "wasm"). */
  label: string;
  /** The compiled runtime-host script to fork. */
  script: string;
  /** Node and V8 flags for the child. */
  execArgv: string[];
  /** NATS server URL(s) for the child; comma-separated for several. */
  natsUrl: string;
  natsAuth?: NatsAuth;
  connectionName: string;
  settings: Record<string, string>;
  observer: RuntimeObserver;
  log: Logger;
  /** How long the child may take to start and connect (default 15 s). */
  startTimeoutMs?: number;
  /** How long close() waits for a graceful stop before SIGKILL (default: longest trigger deadline + 5 s). */
  closeTimeoutMs?: number;
}

/** Sends one workload to a child: the runtime's own deploy request (and what it keeps of the answer). */
export type DeployOn<Extra> = (host: HostProcess<Extra>, spec: FunctionWorkloadSpec) => Promise<void>;

const RESTART_BASE_MS = 100;
const RESTART_MAX_MS = 5000;
/** A child that lived this long resets the restart backoff. */
const HEALTHY_AFTER_MS = 30_000;
const STDERR_TAIL_LINES = 20;
const STATS_TIMEOUT_MS = 5_000;
/** Loading a workload on every isolate or worker; the child bounds each load itself. */
export const DEPLOY_TIMEOUT_MS = 60_000;

/** Undeploy waits for triggers in flight, each bounded by its deadline (queued ones too). */
function undeployTimeout(spec: FunctionWorkloadSpec): number {
  return (spec.limits?.timeoutMs ?? DEFAULT_WORKLOAD_LIMITS.timeoutMs) * 2 + 10_000;
}

const PINO_LEVELS: Record<number, "trace" | "debug" | "info" | "warn" | "error" | "fatal"> = {
  10: "trace",
  20: "debug",
  30: "info",
  40: "warn",
  50: "error",
  60: "fatal",
};

interface Pending {
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
}

/** One incarnation of a runtime-host child. */
export class HostProcess<Extra = object> {
  readonly child: ChildProcess;
  readonly startedAt = Date.now();
  readonly ready: Promise<void>;
  readonly exited: Promise<string>;
  alive = true;
  /** Called in the same turn as the exit event, after pending requests are rejected. */
  onExit?: (reason: string) => void;
  private readonly pending = new Map<number, Pending>();
  private nextReqId = 1;
  private readonly stderrTail: string[] = [];
  private fatalReason?: string;
  private readonly name: string;

  constructor(
    opts: RuntimeHostOptions,
    private readonly log: Logger,
  ) {
    this.name = `the ${opts.label} runtime host`;
    this.child = fork(opts.script, [], {
      execPath: process.execPath,
      execArgv: opts.execArgv,
      serialization: "advanced",
      stdio: ["ignore", "pipe", "pipe", "ipc"],
    });
    this.child.stdout?.setEncoding("utf8");
    this.child.stdout?.on("data", (chunk: string) => {
      for (const line of chunk.split("\n")) if (line.trim()) this.log.debug({ stream: "stdout" }, line);
    });
    this.child.stderr?.setEncoding("utf8");
    this.child.stderr?.on("data", (chunk: string) => {
      for (const line of chunk.split("\n")) {
        if (!line.trim()) continue;
        this.stderrTail.push(line);
        if (this.stderrTail.length > STDERR_TAIL_LINES) this.stderrTail.shift();
        this.log.warn({ stream: "stderr" }, line);
      }
    });

    let onReady: () => void = () => undefined;
    let onFail: (err: Error) => void = () => undefined;
    this.ready = new Promise<void>((resolve, reject) => {
      onReady = resolve;
      onFail = reject;
    });
    const startTimeoutMs = opts.startTimeoutMs ?? 15_000;
    const startTimer = setTimeout(() => {
      onFail(new Error(`${this.name} did not start within ${startTimeoutMs} ms`));
      this.kill();
    }, startTimeoutMs);

    this.exited = new Promise<string>((resolve) => {
      this.child.once("exit", (code, signal) => {
        this.alive = false;
        clearTimeout(startTimer);
        const reason = this.describeExit(code, signal);
        onFail(new Error(`${this.name} failed to start: ${reason}`));
        for (const p of this.pending.values()) p.reject(new Error(`${this.name} exited: ${reason}`));
        this.pending.clear();
        this.onExit?.(reason);
        resolve(reason);
      });
    });
    this.child.on("error", (err) => this.log.error({ err: err.message }, "runtime host process error"));

    this.child.on("message", (raw: unknown) => {
      // The child runs guest code, so its messages are input: a malformed one is logged and dropped,
      // never thrown here (that would be an uncaught exception in the node).
      try {
        this.onMessage(raw as FromHost, opts, () => {
          clearTimeout(startTimer);
          onReady();
        });
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, "malformed message from the runtime host dropped");
      }
    });

    this.child.send({
      type: "init",
      natsUrl: opts.natsUrl,
      natsAuth: opts.natsAuth,
      connectionName: opts.connectionName,
      settings: opts.settings,
    });
  }

  private onMessage(m: FromHost, opts: RuntimeHostOptions, ready: () => void): void {
    switch (m?.type) {
      case "ready":
        ready();
        break;
      case "result": {
        const p = this.pending.get(m.reqId);
        if (!p) break;
        this.pending.delete(m.reqId);
        if (m.ok) p.resolve(m.value);
        else p.reject(new Error(m.error));
        break;
      }
      case "events":
        for (const l of m.logs) this.safely(() => opts.observer.log(l.workloadId, l.stream, l.line));
        for (const f of m.failures) this.safely(() => opts.observer.triggerFailed(f.workloadId, f.subject, f.error));
        break;
      case "workload-event":
        this.safely(() => opts.observer.workloadEvent(m.workloadId, m.event));
        break;
      case "log":
        this.relayLog(m.line);
        break;
      case "fatal":
        this.fatalReason = m.error;
        break;
    }
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  private safely(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.log.error({ err: (err as Error).message }, "runtime observer threw");
    }
  }

  private relayLog(line: string): void {
    let entry: Record<string, unknown>;
    try {
      entry = JSON.parse(line) as Record<string, unknown>;
    } catch {
      this.log.info(line);
      return;
    }
    const { level, msg, time: _time, hostname: _hostname, ...fields } = entry;
    const name = PINO_LEVELS[typeof level === "number" ? level : 30] ?? "info";
    this.log[name](fields, typeof msg === "string" ? msg : "");
  }

  private describeExit(code: number | null, signal: NodeJS.Signals | null): string {
    let reason = signal ? `killed by ${signal}` : `exited with code ${code}`;
    if (this.fatalReason) reason += `: ${this.fatalReason}`;
    else {
      const hint = this.stderrTail.filter((l) => /fatal|error|abort|out of memory/i.test(l)).slice(-2);
      if (hint.length > 0) reason += `: ${hint.join(" | ")}`;
    }
    return reason;
  }

  /** One request to the child; rejects if it exits first or does not answer within timeoutMs. */
  request<T>(req: HostRequest<Extra>, timeoutMs: number): Promise<T> {
    if (!this.alive || !this.child.connected) {
      return Promise.reject(new Error(`${this.name} is not running`));
    }
    const reqId = this.nextReqId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.pending.delete(reqId)) reject(new Error(`${this.name} did not answer ${req.type} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(reqId, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v as T);
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      });
      this.child.send({ ...req, reqId }, (err) => {
        if (err && this.pending.delete(reqId)) {
          clearTimeout(timer);
          reject(new Error(`cannot reach ${this.name}: ${err.message}`));
        }
      });
    });
  }

  kill(): void {
    if (this.alive) this.child.kill("SIGKILL");
  }
}

/** The workloads of one runtime-host child, kept across its incarnations. */
export class RuntimeHostSupervisor<Extra = object> {
  private host?: HostProcess<Extra>;
  /** A start or a recovery in progress; resolves with a ready child. */
  private starting?: Promise<HostProcess<Extra>>;
  private readonly specs = new Map<string, FunctionWorkloadSpec>();
  private readonly deploying = new Map<string, Promise<unknown>>();
  private restartAttempt = 0;
  private closed = false;
  private closing?: Promise<void>;
  /** Ends the backoff wait of a recovery early (on close). */
  private wake?: () => void;

  constructor(
    private readonly opts: RuntimeHostOptions,
    private readonly deployOn: DeployOn<Extra>,
  ) {}

  private get closedError(): Error {
    return new Error(`the ${this.opts.label} runtime is closed`);
  }

  /** The child's process id, while one runs (tests kill it to exercise supervision). */
  get childPid(): number | undefined {
    return this.host?.alive ? this.host.pid : undefined;
  }

  /** Starts the child now instead of on the first deploy; resolves once it is connected to NATS. */
  async start(): Promise<void> {
    await this.ensureHost();
  }

  private ensureHost(): Promise<HostProcess<Extra>> {
    if (this.closed) return Promise.reject(this.closedError);
    if (this.starting) return this.starting;
    if (this.host?.alive) return Promise.resolve(this.host);
    this.starting = this.launch().finally(() => {
      this.starting = undefined;
    });
    return this.starting;
  }

  private async launch(): Promise<HostProcess<Extra>> {
    const hp = new HostProcess<Extra>(this.opts, this.opts.log);
    try {
      await hp.ready;
    } catch (err) {
      hp.kill();
      throw err;
    }
    if (this.closed) {
      hp.kill();
      throw this.closedError;
    }
    if (!hp.alive) throw new Error(`the ${this.opts.label} runtime host exited right after starting`);
    this.host = hp;
    hp.onExit = (reason) => this.onExit(hp, reason);
    this.opts.log.info({ pid: hp.pid }, `${this.opts.label} runtime host started`);
    return hp;
  }

  private onExit(hp: HostProcess<Extra>, reason: string): void {
    if (this.host !== hp) return;
    this.host = undefined;
    if (this.closed) return;
    if (Date.now() - hp.startedAt > HEALTHY_AFTER_MS) this.restartAttempt = 0;
    const lost = [...this.specs.keys()];
    this.opts.log.error({ pid: hp.pid, reason, workloads: lost.length }, `${this.opts.label} runtime host died; restarting it`);
    if (this.starting) return; // a recovery is already under way; it notices the loss itself
    this.starting = this.recover(reason, lost).finally(() => {
      this.starting = undefined;
    });
    this.starting.catch(() => undefined);
  }

  /** Starts a new child (with backoff), redeploys every workload, then tells the observer. */
  private async recover(reason: string, lost: string[]): Promise<HostProcess<Extra>> {
    for (;;) {
      if (this.closed) throw this.closedError;
      const delay = Math.min(RESTART_MAX_MS, RESTART_BASE_MS * 2 ** this.restartAttempt);
      this.restartAttempt = Math.min(this.restartAttempt + 1, 16);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, delay);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = undefined;
      if (this.closed) throw this.closedError;
      let hp: HostProcess<Extra>;
      try {
        hp = await this.launch();
      } catch (err) {
        this.opts.log.error({ err: (err as Error).message }, `restarting the ${this.opts.label} runtime host failed`);
        continue;
      }
      await this.redeployAll(hp);
      if (!hp.alive) {
        // Died again while redeploying; onExit saw a recovery in progress and left it to us.
        this.host = undefined;
        continue;
      }
      try {
        this.opts.observer.restarted(reason, lost);
      } catch (err) {
        this.opts.log.error({ err: (err as Error).message }, "runtime observer threw");
      }
      return hp;
    }
  }

  private async redeployAll(hp: HostProcess<Extra>): Promise<void> {
    const specs = [...this.specs.values()];
    await Promise.all(
      specs.map(async (spec) => {
        try {
          await this.deployOn(hp, spec);
        } catch (err) {
          if (!hp.alive) return;
          this.opts.log.error({ workload_id: spec.id, namespace: spec.namespace, workload: spec.name, err: (err as Error).message }, "redeploying a workload after a restart failed");
          return;
        }
        // Undeployed while we were redeploying it.
        if (!this.specs.has(spec.id)) await hp.request({ type: "undeploy", workloadId: spec.id }, undeployTimeout(spec)).catch(() => undefined);
      }),
    );
  }

  async deploy(spec: FunctionWorkloadSpec): Promise<void> {
    if (this.closed) throw this.closedError;
    if (this.specs.has(spec.id) || this.deploying.has(spec.id)) throw new Error(`workload ${spec.id} is already deployed`);
    const work = (async () => {
      const hp = await this.ensureHost();
      await this.deployOn(hp, spec);
      if (this.closed) throw this.closedError;
      this.specs.set(spec.id, spec);
    })();
    this.deploying.set(spec.id, work);
    try {
      await work;
    } finally {
      this.deploying.delete(spec.id);
    }
  }

  async undeploy(workloadId: string): Promise<void> {
    await this.deploying.get(workloadId)?.catch(() => undefined);
    const spec = this.specs.get(workloadId);
    if (!spec) return;
    this.specs.delete(workloadId);
    // During a recovery the new child either never gets it or is told to drop it (redeployAll).
    const hp = this.host;
    if (hp?.alive && !this.starting) await hp.request({ type: "undeploy", workloadId }, undeployTimeout(spec));
  }

  async stats(workloadId: string): Promise<FunctionStats | undefined> {
    if (!this.specs.has(workloadId)) return undefined;
    const hp = this.host;
    if (!hp?.alive || this.starting) return { triggers: 0, failures: 0, meanMs: 0, lastMs: 0, memoryBytes: 0 };
    const s = await hp.request<FunctionStats | null>({ type: "stats", workloadId }, STATS_TIMEOUT_MS);
    return s ?? undefined;
  }

  /** Drains every workload's triggers and stops the child (SIGKILL after closeTimeoutMs). */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.closed = true;
    this.wake?.();
    await this.starting?.catch(() => undefined);
    const hp = this.host;
    this.host = undefined;
    const longest = Math.max(0, ...[...this.specs.values()].map((s) => s.limits?.timeoutMs ?? 0));
    const timeout = this.opts.closeTimeoutMs ?? longest + 5000;
    this.specs.clear();
    if (!hp?.alive) return;
    const timer = setTimeout(() => hp.kill(), timeout);
    try {
      await hp.request({ type: "shutdown" }, timeout).catch(() => undefined);
      await hp.exited;
    } finally {
      clearTimeout(timer);
    }
    this.opts.log.info(`${this.opts.label} runtime host stopped`);
  }
}
