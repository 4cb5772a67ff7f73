// Runs in the wasm runtime-host child process. The warm worker threads of one wasm workload (`concurrency` of them) and the queue in front of them.
// A trigger goes to an idle worker or waits (at most MAX_QUEUED_TRIGGERS, and never longer than its
// deadline). Each trigger has a wall-clock deadline: when it passes, the worker is terminated, the
// trigger gets a timeout reply, and a fresh worker replaces it in the background. A worker that runs
// out of its JS heap (resourceLimits) or dies is replaced the same way.

import { MessageChannel, Worker, type MessagePort } from "node:worker_threads";
import type { Logger } from "pino";
import { MAX_QUEUED_TRIGGERS, type Job, type TriggerPool } from "../hosted-workload.js";
import { ErrorCodes, failure, queueTimeoutOutcome, timeoutOutcome, UNAVAILABLE, type Outcome } from "../outcome.js";
import type { LogStream, WorkloadLimits } from "../types.js";
import type { ComponentSetup, FromGuest, GuestSetup, HostCallRequest, HostCallResult, WasiSetup } from "./guest-messages.js";

/** How long a new worker may take to load its guest. */
const WORKER_START_TIMEOUT_MS = 10_000;

/** The guest to run, minus what each worker gets of its own (the host-call channel of a component). */
export type GuestProgram = WasiSetup | Omit<ComponentSetup, "hostPort" | "signal">;

export interface GuestPoolConfig {
  workerScript: string;
  program: GuestProgram;
  limits: WorkloadLimits;
  concurrency: number;
  /** Largest reply a guest may give (within the NATS server's max_payload). */
  maxReplyBytes: number;
  hostCall(request: HostCallRequest, deadlineAt: number): Promise<HostCallResult>;
  log(stream: LogStream, text: string): void;
  logger: Logger;
}

/** One worker thread; runs one trigger at a time. */
class GuestWorker {
  private job?: { resolve(outcome: Outcome): void; timer: NodeJS.Timeout; deadlineAt: number };
  dead = false;
  /** Memory the worker reported after its last trigger (0 before the first). */
  heapBytes = 0;
  /** Called once when the worker stops for good (deadline, memory, crash), not on close(). */
  onDeath?: () => void;

  private constructor(
    private readonly worker: Worker,
    private readonly cfg: GuestPoolConfig,
    hostPort: MessagePort | undefined,
    signal: Int32Array | undefined,
    private readonly dropped: Int32Array,
  ) {
    worker.on("message", (m: FromGuest) => {
      if (m.type === "log") cfg.log(m.stream, m.text);
      else if (m.type === "done") {
        if (typeof m.heapBytes === "number") this.heapBytes = m.heapBytes;
        this.finish(m.ok ? { ok: true, data: m.data } : failure(ErrorCodes.failed, m.message));
      }
    });
    worker.on("error", (err) => this.die(failure(ErrorCodes.failed, workerErrorMessage(err, cfg.limits.memoryMb))));
    worker.on("exit", (code) => this.die(failure(ErrorCodes.failed, `the wasm worker exited (code ${code})`)));
    worker.stderr.setEncoding("utf8");
    worker.stderr.on("data", (chunk: string) => cfg.logger.debug({ stream: "worker stderr" }, chunk.trimEnd()));
    if (hostPort && signal) {
      hostPort.on("message", (request: HostCallRequest) => {
        const deadlineAt = this.job?.deadlineAt ?? Date.now();
        void cfg.hostCall(request, deadlineAt).then((result) => {
          hostPort.postMessage(result);
          Atomics.store(signal, 0, 1);
          Atomics.notify(signal, 0);
        });
      });
      worker.once("exit", () => hostPort.close());
    }
  }

  /** Starts a worker and waits until its guest is loaded; rejects with the guest's setup error. */
  static start(cfg: GuestPoolConfig): Promise<GuestWorker> {
    let setup: GuestSetup;
    let hostPort: MessagePort | undefined;
    let signal: Int32Array | undefined;
    const transferList: MessagePort[] = [];
    const bounds = { maxReplyBytes: cfg.maxReplyBytes, dropped: new Int32Array(new SharedArrayBuffer(8)) };
    if (cfg.program.form === "component") {
      const channel = new MessageChannel();
      hostPort = channel.port1;
      signal = new Int32Array(new SharedArrayBuffer(4));
      setup = { ...cfg.program, ...bounds, hostPort: channel.port2, signal };
      transferList.push(channel.port2);
    } else setup = { ...cfg.program, ...bounds };
    const worker = new Worker(cfg.workerScript, {
      workerData: setup,
      transferList,
      env: {},
      stderr: true,
      resourceLimits: { maxOldGenerationSizeMb: Math.max(32, cfg.limits.memoryMb), maxYoungGenerationSizeMb: 16, stackSizeMb: 4 },
    });
    return new Promise<GuestWorker>((resolve, reject) => {
      const timer = setTimeout(() => fail(new Error(`the wasm worker did not start within ${WORKER_START_TIMEOUT_MS} ms`)), WORKER_START_TIMEOUT_MS);
      const onError = (err: Error): void => fail(new Error(workerErrorMessage(err, cfg.limits.memoryMb)));
      const onExit = (code: number): void => fail(new Error(`the wasm worker exited while starting (code ${code})`));
      const onMessage = (m: FromGuest): void => {
        if (m.type === "setup_failed") fail(new Error(m.message));
        else if (m.type === "ready") {
          stopListening();
          resolve(new GuestWorker(worker, cfg, hostPort, signal, bounds.dropped));
        }
      };
      // Only our own listeners: Worker keeps internal ones (removeAllListeners would stop its messages).
      const stopListening = (): void => {
        clearTimeout(timer);
        worker.off("error", onError).off("exit", onExit).off("message", onMessage);
      };
      const fail = (err: Error): void => {
        stopListening();
        void worker.terminate();
        hostPort?.close();
        reject(err);
      };
      worker.on("error", onError).on("exit", onExit).on("message", onMessage);
    });
  }

  run(subject: string, payload: Uint8Array, resolve: (outcome: Outcome) => void): void {
    const { timeoutMs } = this.cfg.limits;
    const timer = setTimeout(() => this.kill(timeoutOutcome(timeoutMs)), timeoutMs);
    this.job = { resolve, timer, deadlineAt: Date.now() + timeoutMs };
    this.worker.postMessage({ type: "run", subject, payload });
  }

  private finish(outcome: Outcome): void {
    const job = this.job;
    if (!job) return;
    this.job = undefined;
    clearTimeout(job.timer);
    this.reportDropped();
    job.resolve(outcome);
  }

  /** One line for what the worker dropped over the trigger's log limits (also when it was terminated). */
  private reportDropped(): void {
    const lines = Atomics.load(this.dropped, 0);
    const bytes = Atomics.load(this.dropped, 1);
    if (lines === 0 && bytes === 0) return;
    Atomics.store(this.dropped, 0, 0);
    Atomics.store(this.dropped, 1, 0);
    this.cfg.log("stderr", `[nex] log limit of this trigger reached: ${lines} more lines (${bytes} bytes) were dropped`);
  }

  private die(outcome: Outcome): void {
    // Dead before the trigger's callback runs: the pool must not take this worker back as idle and hand
    // it the next queued trigger while it is being terminated.
    const first = !this.dead;
    this.dead = true;
    this.finish(outcome);
    if (first) this.onDeath?.();
  }

  /** Ends the running trigger with `outcome` and the worker with it. */
  kill(outcome: Outcome): void {
    this.die(outcome);
    void this.worker.terminate();
  }

  close(): void {
    this.kill(UNAVAILABLE);
  }
}

function workerErrorMessage(err: Error, memoryMb: number): string {
  if ((err as { code?: string }).code === "ERR_WORKER_OUT_OF_MEMORY") return `memory limit exceeded: the worker went over ${memoryMb} MB and was stopped`;
  return `the wasm worker failed: ${err.message}`;
}

export class GuestPool implements TriggerPool {
  private readonly workers = new Set<GuestWorker>();
  private readonly idle: GuestWorker[] = [];
  private readonly queue: Job[] = [];
  private running = 0;
  private closed = false;
  private drainWaiters: (() => void)[] = [];
  /** Set while triggers wait: answers them when their deadline passes even if no worker frees up. */
  private expiryTimer?: NodeJS.Timeout;

  private constructor(private readonly cfg: GuestPoolConfig) {}

  /** Starts every worker; rejects (and stops the ones that started) if the guest cannot load. */
  static async start(cfg: GuestPoolConfig): Promise<GuestPool> {
    const pool = new GuestPool(cfg);
    const started = await Promise.allSettled(Array.from({ length: Math.max(1, cfg.concurrency) }, () => GuestWorker.start(cfg)));
    for (const s of started) if (s.status === "fulfilled") pool.adopt(s.value);
    const failed = started.find((s): s is PromiseRejectedResult => s.status === "rejected");
    if (failed) {
      pool.close();
      throw failed.reason;
    }
    return pool;
  }

  private adopt(worker: GuestWorker): void {
    if (this.closed) {
      worker.close();
      return;
    }
    worker.onDeath = () => {
      this.workers.delete(worker);
      const i = this.idle.indexOf(worker);
      if (i >= 0) this.idle.splice(i, 1);
      this.replace();
    };
    this.workers.add(worker);
    this.idle.push(worker);
  }

  submit(subject: string, payload: Uint8Array): Promise<Outcome> {
    if (this.closed) return Promise.resolve(UNAVAILABLE);
    if (this.queue.length >= MAX_QUEUED_TRIGGERS) {
      return Promise.resolve(failure(ErrorCodes.overloaded, `overloaded: ${this.queue.length} triggers are already waiting`));
    }
    return new Promise<Outcome>((resolve) => {
      this.queue.push({ subject, payload, enqueuedAt: Date.now(), resolve });
      this.pump();
    });
  }

  private pump(): void {
    this.expireQueued();
    while (this.queue.length > 0 && this.idle.length > 0) {
      const job = this.queue.shift()!;
      const worker = this.idle.pop()!;
      this.running++;
      worker.run(job.subject, job.payload, (outcome) => {
        this.running--;
        job.resolve(outcome);
        if (!worker.dead && !this.closed) this.idle.push(worker);
        this.pump();
        this.checkDrained();
      });
    }
  }

  /**
   * Answers the triggers that waited their whole deadline; while others wait, looks again when the
   * oldest one's deadline passes (no worker may free up before: replacements can keep failing).
   */
  private expireQueued(): void {
    const { timeoutMs } = this.cfg.limits;
    const now = Date.now();
    while (this.queue.length > 0 && now - this.queue[0].enqueuedAt >= timeoutMs) this.queue.shift()!.resolve(queueTimeoutOutcome(timeoutMs));
    if (this.queue.length === 0 || this.expiryTimer || this.closed) return;
    this.expiryTimer = setTimeout(() => {
      this.expiryTimer = undefined;
      this.expireQueued();
      this.checkDrained();
    }, Math.max(1, this.queue[0].enqueuedAt + timeoutMs - now));
    this.expiryTimer.unref();
  }

  private replace(delayMs = 0): void {
    const attempt = (): void => {
      if (this.closed) return;
      GuestWorker.start(this.cfg).then(
        (worker) => {
          this.adopt(worker);
          this.pump();
        },
        (err: Error) => {
          this.cfg.logger.error({ err: err.message }, "replacing a wasm worker failed; retrying");
          this.replace(Math.min(Math.max(delayMs * 2, 100), 5000));
        },
      );
    };
    if (delayMs > 0) setTimeout(attempt, delayMs).unref();
    else attempt();
  }

  private checkDrained(): void {
    if (this.running === 0 && this.queue.length === 0) for (const w of this.drainWaiters.splice(0)) w();
  }

  drained(): Promise<void> {
    if (this.running === 0 && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /**
   * What the workers reported after their last trigger: V8 heap plus external memory, which holds the
   * linear memories (a command's last instance until it is collected, a component's for good).
   */
  async heapBytes(): Promise<number> {
    let sum = 0;
    for (const w of this.workers) sum += w.heapBytes;
    return sum;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.expiryTimer);
    for (const job of this.queue.splice(0)) job.resolve(UNAVAILABLE);
    for (const worker of this.workers) {
      worker.onDeath = undefined;
      worker.close();
    }
    this.workers.clear();
    this.idle.length = 0;
    this.checkDrained();
  }
}
