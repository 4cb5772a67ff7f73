// Runs in the wasm runtime-host child process. The warm worker threads of one wasm workload
// (`concurrency` of them), in the shared SlotPool (../../host/slot-pool.ts): one trigger per worker at a time.
// Each trigger has a wall-clock deadline: when it passes, the worker is terminated, the trigger gets a
// timeout reply, and a fresh worker replaces it in the background. A worker that runs out of its JS heap
// (resourceLimits) or dies is replaced the same way.

import { MessageChannel, Worker, type MessagePort } from "node:worker_threads";
import type { Logger } from "pino";
import type { Job, TriggerPool } from "../../host/hosted-workload.js";
import { ErrorCodes, failure, timeoutOutcome, UNAVAILABLE, type Outcome } from "../../host/outcome.js";
import { type PoolSlot, SlotPool } from "../../host/slot-pool.js";
import type { WarmPools } from "../../host/warm-pools.js";
import type { LogStream, WorkloadLimits } from "../../types.js";
import type { ComponentSetup, FromGuest, GuestSetup, HostCallRequest, HostCallResult, WasiSetup } from "../worker/guest-messages.js";

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
  /** The runtime host's budget of loaded slots (../../host/warm-pools.ts). */
  warm?: WarmPools;
}

/** One worker thread; runs one trigger at a time. */
class GuestWorker implements PoolSlot {
  private job?: { resolve(outcome: Outcome): void; timer: NodeJS.Timeout; deadlineAt: number };
  dead = false;
  /** Memory the worker reported after its last trigger (0 before the first). */
  private lastHeapBytes = 0;
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
        if (typeof m.heapBytes === "number") this.lastHeapBytes = m.heapBytes;
        this.finish(m.ok ? { ok: true, data: m.data } : failure(m.unavailable === true ? ErrorCodes.unavailable : ErrorCodes.failed, m.message));
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

  /** Runs the first job (the pool hands one at a time); the rest go back to the queue. */
  runBatch([job, ...rest]: Job[]): Promise<Job[]> {
    return new Promise((done) =>
      this.run(job, (outcome) => {
        job.resolve(outcome);
        done(rest);
      }),
    );
  }

  /** A trigger's deadline counts from when it arrived, its wait in the queue included (as for JavaScript). */
  private run(job: Job, resolve: (outcome: Outcome) => void): void {
    const { timeoutMs } = this.cfg.limits;
    const deadlineAt = job.enqueuedAt + timeoutMs;
    const timer = setTimeout(() => this.kill(timeoutOutcome(timeoutMs)), Math.max(1, deadlineAt - Date.now()));
    this.job = { resolve, timer, deadlineAt };
    this.worker.postMessage({ type: "run", subject: job.subject, payload: job.payload });
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

  async heapBytes(): Promise<number> {
    return this.lastHeapBytes;
  }
}

function workerErrorMessage(err: Error, memoryMb: number): string {
  if ((err as { code?: string }).code === "ERR_WORKER_OUT_OF_MEMORY") return `memory limit exceeded: the worker went over ${memoryMb} MB and was stopped`;
  return `the wasm worker failed: ${err.message}`;
}

/**
 * Starts every worker; rejects (and stops the ones that started) if the guest cannot load. The pool
 * reports, as memory, what the workers reported after their last trigger: V8 heap plus external memory,
 * which holds the linear memories (a command's last instance until it is collected, a component's for good).
 */
export function startGuestPool(cfg: GuestPoolConfig): Promise<TriggerPool> {
  return SlotPool.start({
    create: () => GuestWorker.start(cfg),
    size: Math.max(1, cfg.concurrency),
    timeoutMs: cfg.limits.timeoutMs,
    maxBatch: 1,
    what: "wasm worker",
    log: cfg.logger,
    warm: cfg.warm,
  });
}
