// The isolates of one workload, inside the runtime host. A WorkloadPool owns `concurrency` isolates
// (IsolateSlot). A trigger goes to an idle isolate, or waits in a bounded queue (beyond it:
// "overloaded"; waiting past its whole deadline: "timeout"). Under load a freed isolate takes several
// queued triggers at once (a batch): they start in order, each with its own deadline (synchronous ones
// run one after the other, async ones overlap at their awaits), and their replies leave together when
// the batch returns (sooner if it runs long, calls a host service or an async one finishes; see
// isolate-slot.ts), so the batch costs one call into the isolate instead of one per trigger. The isolate
// is free again when every trigger of its batch has its answer. A dead isolate (deadline, CPU, memory)
// is replaced in the background.

import { IsolateSlot, type PoolConfig } from "./isolate-slot.js";
import { MAX_QUEUED_TRIGGERS, type Job } from "../hosted-workload.js";
import { cpuOutcome, ErrorCodes, errorText, failure, queueTimeoutOutcome, UNAVAILABLE, type Outcome } from "../outcome.js";

export type { PoolConfig, PoolHooks } from "./isolate-slot.js";

/** Most triggers handed to an isolate in one call. */
export const MAX_BATCH = 16;

/** The isolates of one workload, the queue in front of them, and the limits' enforcement. */
export class WorkloadPool {
  private readonly slots = new Set<IsolateSlot>();
  private readonly idle: IsolateSlot[] = [];
  private queue: Job[] = [];
  private queueHead = 0;
  /** Batches running. */
  private running = 0;
  private closed = false;
  private ticker?: NodeJS.Timeout;
  private drainWaiters: (() => void)[] = [];

  private constructor(private readonly cfg: PoolConfig) {}

  /** Compiles the workload, builds its isolates and contexts; rejects with a WorkloadLoadError. */
  static async create(cfg: PoolConfig): Promise<WorkloadPool> {
    const pool = new WorkloadPool(cfg);
    // The first isolate finds the source kind and produces the code cache the others start from.
    const first = await IsolateSlot.create(cfg);
    pool.adopt(first);
    const rest = await Promise.allSettled(Array.from({ length: Math.max(0, cfg.concurrency - 1) }, () => IsolateSlot.create(cfg)));
    for (const r of rest) if (r.status === "fulfilled") pool.adopt(r.value);
    const failed = rest.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed) {
      pool.close();
      throw failed.reason;
    }
    pool.startTicker();
    return pool;
  }

  private adopt(slot: IsolateSlot): void {
    this.slots.add(slot);
    this.idle.push(slot);
  }

  get queued(): number {
    return this.queue.length - this.queueHead;
  }

  /** Runs a trigger on an idle isolate, or queues it. Always resolves, never rejects. */
  submit(subject: string, payload: Uint8Array): Promise<Outcome> {
    if (this.closed) return Promise.resolve(UNAVAILABLE);
    return new Promise<Outcome>((resolve) => {
      const job: Job = { subject, payload, enqueuedAt: Date.now(), resolve };
      const slot = this.idle.pop();
      if (slot) this.dispatch(slot, [job]);
      else if (this.queued >= MAX_QUEUED_TRIGGERS) {
        resolve(failure(ErrorCodes.overloaded, `overloaded: ${this.queued} triggers are already waiting`));
      } else this.queue.push(job);
    });
  }

  private dispatch(slot: IsolateSlot, jobs: Job[]): void {
    this.running++;
    slot.runBatch(jobs).then((notStarted) => {
      this.running--;
      if (notStarted.length > 0) this.requeueFront(notStarted);
      this.release(slot);
    });
  }

  private release(slot: IsolateSlot): void {
    if (slot.dead) {
      this.slots.delete(slot);
      slot.dispose();
      this.replace();
    } else if (this.closed) {
      slot.dispose();
    } else {
      this.idle.push(slot);
    }
    this.pump();
    this.checkDrained();
  }

  /** Hands queued triggers to idle isolates, spreading them when several isolates serve. */
  private pump(): void {
    while (!this.closed && this.idle.length > 0) {
      this.expireQueued();
      const waiting = this.queued;
      if (waiting === 0) return;
      const size = this.cfg.fresh ? 1 : Math.min(MAX_BATCH, Math.ceil(waiting / Math.max(1, this.slots.size)));
      const jobs = this.queue.slice(this.queueHead, this.queueHead + size);
      this.queueHead += jobs.length;
      this.compactQueue();
      this.dispatch(this.idle.pop()!, jobs);
    }
  }

  private compactQueue(): void {
    if (this.queueHead === this.queue.length) {
      this.queue = [];
      this.queueHead = 0;
    } else if (this.queueHead > 1024 && this.queueHead * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.queueHead);
      this.queueHead = 0;
    }
  }

  private requeueFront(jobs: Job[]): void {
    if (this.closed) {
      for (const j of jobs) j.resolve(UNAVAILABLE);
      return;
    }
    this.queue = jobs.concat(this.queue.slice(this.queueHead));
    this.queueHead = 0;
  }

  /** Triggers that waited longer than their whole deadline are answered without running. */
  private expireQueued(): void {
    const { timeoutMs } = this.cfg.limits;
    const now = Date.now();
    while (this.queueHead < this.queue.length) {
      const job = this.queue[this.queueHead];
      if (now - job.enqueuedAt < timeoutMs) break;
      this.queueHead++;
      job.resolve(queueTimeoutOutcome(timeoutMs));
    }
    this.compactQueue();
  }

  private replace(delayMs = 0): void {
    if (this.closed) return;
    const attempt = (): void => {
      if (this.closed) return;
      IsolateSlot.create(this.cfg).then(
        (slot) => {
          if (this.closed) {
            slot.dispose();
            return;
          }
          this.slots.add(slot);
          this.release(slot);
        },
        (err) => {
          this.cfg.log.error({ err: errorText(err) }, "replacing an isolate failed; retrying");
          this.replace(Math.min(Math.max(delayMs * 2, 100), 5000));
        },
      );
    };
    if (delayMs > 0) setTimeout(attempt, delayMs).unref();
    else attempt();
  }

  private startTicker(): void {
    const { timeoutMs, cpuMs } = this.cfg.limits;
    const cpuLimited = cpuMs < timeoutMs;
    const cpuNs = BigInt(Math.floor(cpuMs)) * 1_000_000n;
    const every = Math.min(100, Math.max(5, Math.floor(Math.min(timeoutMs, cpuMs) / 4)));
    this.ticker = setInterval(() => {
      if (cpuLimited) {
        for (const slot of this.slots) {
          if (slot.busy && !slot.dead && slot.cpuUsedNs() > cpuNs) slot.kill(cpuOutcome(cpuMs));
        }
      }
      if (this.queued > 0) {
        this.expireQueued();
        this.checkDrained();
      }
    }, every);
    this.ticker.unref();
  }

  private checkDrained(): void {
    if (this.running === 0 && this.queued === 0 && this.drainWaiters.length > 0) {
      for (const w of this.drainWaiters.splice(0)) w();
    }
  }

  /** Resolves when nothing runs and nothing waits (each trigger is bounded by its deadline). */
  drained(): Promise<void> {
    if (this.running === 0 && this.queued === 0) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  async heapBytes(): Promise<number> {
    const sizes = await Promise.all([...this.slots].map((s) => s.heapBytes()));
    return sizes.reduce((a, b) => a + b, 0);
  }

  /** Disposes every isolate; queued triggers are answered "unavailable", running ones end with it. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.ticker) clearInterval(this.ticker);
    for (let i = this.queueHead; i < this.queue.length; i++) this.queue[i].resolve(UNAVAILABLE);
    this.queue = [];
    this.queueHead = 0;
    for (const slot of this.slots) {
      if (slot.busy) slot.kill(UNAVAILABLE, "all");
      else slot.dispose();
    }
    this.slots.clear();
    this.idle.length = 0;
    this.checkDrained();
  }
}
