// Parent-side handle for one loadgen child process.

import { fork, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { ChildConfig, FromChild, ReqReport, ToChild } from "./messages.js";

const LOADGEN = fileURLToPath(new URL("./loadgen.js", import.meta.url));

/** Extra node options from an environment variable (space-separated; NODE_OPTIONS refuses --cpu-prof). */
export function nodeArgsFromEnv(name: string): string[] {
  return (process.env[name] ?? "").split(/\s+/).filter(Boolean);
}

/** Every child process we started and have not reaped yet (for cleanup on exit). */
export const liveProcesses = new Set<ChildProcess>();

type Msg<T extends FromChild["type"]> = Extract<FromChild, { type: T }>;

export class LoadChild {
  readonly proc: ChildProcess;
  /** Latest running count reported by a subscriber. */
  progress = 0;
  onProgress: (() => void) | null = null;
  /** Rejects when the child reports an error or exits unexpectedly. */
  readonly failed: Promise<never>;
  private inbox: FromChild[] = [];
  private waiter: ((m: FromChild) => void) | null = null;
  private failure: Error | null = null;
  private rejectFailed!: (e: Error) => void;
  private exited = false;
  private stopping = false;

  constructor(
    readonly label: string,
    config: ChildConfig,
  ) {
    this.failed = new Promise<never>((_, reject) => {
      this.rejectFailed = reject;
    });
    this.failed.catch(() => {}); // observed via race(); avoid unhandled rejections
    this.proc = fork(LOADGEN, [JSON.stringify(config)], {
      stdio: ["ignore", "inherit", "inherit", "ipc"],
      // BENCH_CHILD_NODE_ARGS (profiling experiments only), e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof".
      execArgv: nodeArgsFromEnv("BENCH_CHILD_NODE_ARGS"),
    });
    liveProcesses.add(this.proc);
    this.proc.on("message", (m: FromChild) => {
      if (m.type === "progress") {
        this.progress = m.count;
        this.onProgress?.();
        return;
      }
      if (m.type === "error") {
        this.setFailure(new Error(`${this.label}: ${m.message}`));
        return;
      }
      if (this.waiter) {
        const w = this.waiter;
        this.waiter = null;
        w(m);
      } else {
        this.inbox.push(m);
      }
    });
    this.proc.on("exit", (code, signal) => {
      this.exited = true;
      liveProcesses.delete(this.proc);
      if (!this.stopping) this.setFailure(new Error(`${this.label}: exited unexpectedly (code ${code}, signal ${signal})`));
    });
    this.proc.on("error", (e) => this.setFailure(new Error(`${this.label}: ${e.message}`)));
  }

  private setFailure(e: Error): void {
    if (this.failure) return;
    this.failure = e;
    this.rejectFailed(e);
  }

  send(m: ToChild): void {
    if (this.proc.connected) this.proc.send(m);
  }

  /** Waits for the next message of `type` (messages of other types are errors). */
  async next<T extends FromChild["type"]>(type: T, timeoutMs: number): Promise<Msg<T>> {
    if (this.failure) throw this.failure;
    const queued = this.inbox.shift();
    let timer: NodeJS.Timeout | undefined;
    const m = queued
      ? queued
      : await Promise.race([
          new Promise<FromChild>((resolve) => {
            this.waiter = resolve;
          }),
          this.failed,
          new Promise<never>((_, reject) => {
            timer = setTimeout(
              () => reject(new Error(`${this.label}: no "${type}" within ${timeoutMs} ms`)),
              timeoutMs,
            );
          }),
        ]).finally(() => clearTimeout(timer));
    this.waiter = null;
    if (m.type !== type) throw new Error(`${this.label}: expected "${type}", got "${m.type}"`);
    return m as Msg<T>;
  }

  /** Asks the child to exit; kills it (by pid) if it has not gone within 2 s. */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.exited) return;
    const gone = new Promise<void>((resolve) => this.proc.once("exit", () => resolve()));
    this.send({ type: "exit" });
    const t = setTimeout(() => {
      if (!this.exited) this.proc.kill("SIGKILL");
    }, 2000);
    await gone;
    clearTimeout(t);
  }
}

/** Runs `step`, but rejects as soon as any of the children fails. */
export function guarded<T>(children: LoadChild[], step: Promise<T>): Promise<T> {
  return Promise.race([step, ...children.map((c) => c.failed)]);
}

export interface SequentialRun {
  url: string;
  subject: string;
  payloadSize: number;
  warmupMs: number;
  measureMs: number;
  maxRequests: number;
  readyTimeoutMs: number;
  drainTimeoutMs: number;
}

/**
 * One sequential requester child: warms up, then times every request for measureMs. `peers` are
 * children already running (responders) whose failure ends the trial too. Throws if none completed.
 */
export async function sequentialRequests(r: SequentialRun, peers: LoadChild[]): Promise<ReqReport> {
  const req = new LoadChild("requester", { role: "req", url: r.url, subject: r.subject, payloadSize: r.payloadSize });
  const all = [...peers, req];
  try {
    await guarded(all, req.next("ready", r.readyTimeoutMs));
    req.send({ type: "run", warmupMs: r.warmupMs, measureMs: r.measureMs, maxRequests: r.maxRequests });
    const report = (await guarded(all, req.next("reqDone", r.warmupMs + r.measureMs + r.drainTimeoutMs))).report;
    if (report.count === 0) throw new Error("no requests completed");
    return report;
  } finally {
    await req.stop();
  }
}
