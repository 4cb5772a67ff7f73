// The triggers of one function workload and the slots that run them: isolates for JavaScript, worker
// threads for wasm. One queue for both kinds: a trigger goes to an idle slot or waits (at most
// MAX_QUEUED_TRIGGERS; beyond it "overloaded"; waiting past its whole deadline "timeout"). Under load a
// freed slot takes several queued triggers at once (up to `maxBatch`, spread over the slots). A dead slot
// (deadline, CPU, memory, crash) is replaced in the background, with a backoff while replacing fails.
// Under the runtime host's budget of loaded slots (warm-pools.ts) an idle pool may unload all its slots
// (hibernate); its next trigger waits in the queue while they load again.
// Elastic: when triggers wait and every slot is busy but only waiting on host services (no CPU used:
// a synchronous function parked on a KV call), the pool adds a slot, up to `maxSize`, so the waits
// overlap; a slot past `size` closes after EXTRA_IDLE_MS without work. A busy slot that says it can take
// more (an isolate whose async triggers all await) gets another batch beside the ones it runs.

import type { Logger } from "pino";
import { MAX_QUEUED_TRIGGERS, type Job, type TriggerPool } from "./hosted-workload.js";
import { ErrorCodes, errorText, failure, queueTimeoutOutcome, UNAVAILABLE, type Outcome } from "./outcome.js";
import type { Hibernating, WarmPools } from "./warm-pools.js";

/** One unit that runs triggers. */
export interface PoolSlot {
  /** Set once the slot cannot run again; the pool replaces it. */
  readonly dead: boolean;
  /** Runs the jobs (each gets its outcome); resolves with the ones it did not start, to run elsewhere. */
  runBatch(jobs: Job[]): Promise<Job[]>;
  /** Ends what runs with UNAVAILABLE and frees the slot. */
  close(): void;
  heapBytes(): Promise<number>;
  /** Set by the pool for a slot that can die while idle (a worker thread that exits). */
  onDeath?: () => void;
  /** Busy, but only waiting on host-service calls (the pool may add a slot then). */
  waitingOnHost?(): boolean;
  /** Set by the pool: told when the slot sends a host call, so triggers waiting meanwhile may get a slot of their own. */
  onHostWait?: () => void;
  /** Busy, but able to start another batch beside the ones it runs now. */
  acceptsMore?(): boolean;
  /** Set by the pool: told when a busy slot becomes able to take another batch. */
  onAcceptsMore?: () => void;
}

/** How long a slot added past the pool's size stays without work before it closes. */
const EXTRA_IDLE_MS = 5000;

export interface SlotPoolConfig<S extends PoolSlot> {
  /** A new slot with the workload loaded; rejects with the load error. */
  create(): Promise<S>;
  /** Slots serving at once. */
  size: number;
  /** Slots at most while every slot waits on host services and triggers queue (default: size). */
  maxSize?: number;
  /** A trigger's whole deadline, queueing included. */
  timeoutMs: number;
  /** Most triggers handed to one slot at a time (1: one at a time). */
  maxBatch: number;
  /** What a slot is, for logs ("isolate", "wasm worker"). */
  what: string;
  log: Logger;
  /** The runtime host's budget of loaded slots; without it the pool never hibernates. */
  warm?: WarmPools;
}

export class SlotPool<S extends PoolSlot> implements TriggerPool, Hibernating {
  private readonly live = new Set<S>();
  private readonly idle: S[] = [];
  /** Batches running on each live slot (idle at 0; an entry goes with its slot, not at 0, so the map does not churn). */
  private readonly openBatches = new Map<S, number>();
  private queue: Job[] = [];
  private queueHead = 0;
  /** Batches running. */
  private running = 0;
  private closed = false;
  /** Hibernated: no slot is loaded until the next trigger. */
  private asleep = false;
  /** Slots being created (replacements, a wake-up, or one more while all wait on host services). */
  private creating = 0;
  /** Set while slots past `size` exist: closes the idle ones after EXTRA_IDLE_MS. */
  private extraTimer?: NodeJS.Timeout;
  private drainWaiters: (() => void)[] = [];
  /** Set while triggers wait: answers them when their deadline passes even if no slot frees up. */
  private expiryTimer?: NodeJS.Timeout;

  private constructor(private readonly cfg: SlotPoolConfig<S>) {}

  /**
   * Starts every slot; rejects (closing the ones that started) if the workload cannot load. The first
   * slot starts alone: it may produce what the others start from (a JS code cache).
   */
  static async start<S extends PoolSlot>(cfg: SlotPoolConfig<S>): Promise<SlotPool<S>> {
    const pool = new SlotPool(cfg);
    pool.adopt(await cfg.create());
    const rest = await Promise.allSettled(Array.from({ length: Math.max(0, cfg.size - 1) }, () => cfg.create()));
    for (const r of rest) if (r.status === "fulfilled") pool.adopt(r.value);
    const failed = rest.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed) {
      pool.close();
      throw failed.reason;
    }
    cfg.warm?.used(pool);
    return pool;
  }

  get size(): number {
    return this.cfg.size;
  }

  /** Unloads every slot when nothing runs, waits or loads (warm-pools.ts); false otherwise. */
  hibernate(): boolean {
    if (this.closed || this.asleep || this.running > 0 || this.queued > 0 || this.creating > 0) return false;
    this.asleep = true;
    clearTimeout(this.extraTimer);
    this.extraTimer = undefined;
    this.closeSlots();
    return true;
  }

  /** Closes every slot (whatever runs ends with its slot) and forgets them. */
  private closeSlots(): void {
    for (const slot of this.live) {
      slot.onDeath = undefined;
      slot.close();
    }
    this.live.clear();
    this.openBatches.clear();
    this.idle.length = 0;
  }

  /** The slots alive now (the JS pool's CPU watch reads them). */
  get slots(): Iterable<S> {
    return this.live;
  }

  get queued(): number {
    return this.queue.length - this.queueHead;
  }

  private adopt(slot: S): void {
    if (this.closed) {
      slot.close();
      return;
    }
    slot.onDeath = () => this.retire(slot);
    slot.onHostWait = () => this.growIfParked();
    slot.onAcceptsMore = () => this.pump();
    this.live.add(slot);
    this.idle.push(slot);
  }

  /** Runs a trigger on an idle slot, or queues it. Always resolves, never rejects. */
  submit(subject: string, payload: Uint8Array): Promise<Outcome> {
    if (this.closed) return Promise.resolve(UNAVAILABLE);
    if (this.queued >= MAX_QUEUED_TRIGGERS) {
      return Promise.resolve(failure(ErrorCodes.overloaded, `overloaded: ${this.queued} triggers are already waiting`));
    }
    const warm = this.cfg.warm;
    if (warm !== undefined) {
      if (this.asleep) {
        this.asleep = false;
        for (let i = 0; i < this.cfg.size; i++) this.replace();
      }
      warm.used(this);
    }
    return new Promise<Outcome>((resolve) => {
      const job: Job = { subject, payload, enqueuedAt: Date.now(), resolve };
      const slot = this.queued === 0 ? this.idle.pop() : undefined;
      if (slot) this.dispatch(slot, [job]);
      else {
        this.queue.push(job);
        this.pump();
        this.growIfParked();
      }
    });
  }

  private dispatch(slot: S, jobs: Job[]): void {
    this.running++;
    this.openBatches.set(slot, (this.openBatches.get(slot) ?? 0) + 1);
    slot.runBatch(jobs).then((notStarted) => {
      this.running--;
      if (notStarted.length > 0) this.requeueFront(notStarted);
      const open = (this.openBatches.get(slot) ?? 1) - 1;
      if (this.live.has(slot)) this.openBatches.set(slot, open);
      // Still busy with a batch beside this one: the slot is freed only with its last.
      this.release(slot, open > 0);
    });
  }

  /** A busy slot that can take another batch now, if any. */
  private busyAcceptingMore(): S | undefined {
    for (const [slot, open] of this.openBatches) if (open > 0 && slot.acceptsMore?.()) return slot;
    return undefined;
  }

  /** A batch on `slot` ended; unless it runs others still, the slot is free again. */
  private release(slot: S, stillBusy: boolean): void {
    if (slot.dead) this.retire(slot);
    else if (!stillBusy) {
      if (this.closed) slot.close();
      else this.idle.push(slot);
    }
    this.pump();
    this.checkDrained();
    if (this.live.size > this.cfg.size && this.extraTimer === undefined && !this.closed) {
      this.extraTimer = setTimeout(() => this.closeIdleExtras(), EXTRA_IDLE_MS);
      this.extraTimer.unref();
    }
  }

  /** One more slot (up to maxSize), one at a time, while triggers wait and every slot only waits on host services. */
  private growIfParked(): void {
    const max = this.cfg.maxSize ?? this.cfg.size;
    if (this.closed || this.asleep || this.creating > 0 || this.live.size >= max || this.idle.length > 0 || this.queued === 0) return;
    for (const slot of this.live) if (!slot.waitingOnHost?.()) return;
    this.replace();
  }

  /** Closes idle slots past `size` (the added ones are no longer needed); looks again while some are busy. */
  private closeIdleExtras(): void {
    this.extraTimer = undefined;
    if (this.closed) return;
    while (this.live.size > this.cfg.size && this.idle.length > 0 && this.queued === 0) {
      const slot = this.idle.shift()!;
      this.live.delete(slot);
      this.openBatches.delete(slot);
      slot.onDeath = undefined;
      slot.close();
    }
    if (this.live.size > this.cfg.size) {
      this.extraTimer = setTimeout(() => this.closeIdleExtras(), EXTRA_IDLE_MS);
      this.extraTimer.unref();
    }
  }

  /** A dead slot leaves (once) and a replacement starts. */
  private retire(slot: S): void {
    if (!this.live.delete(slot)) return;
    this.openBatches.delete(slot);
    slot.onDeath = undefined;
    const i = this.idle.indexOf(slot);
    if (i >= 0) this.idle.splice(i, 1);
    slot.close();
    this.replace();
  }

  /** Hands queued triggers to idle slots, spreading them when several slots serve, then to busy slots that accept more. */
  private pump(): void {
    this.expireQueued();
    while (!this.closed && this.queued > 0) {
      const slot = this.idle.pop() ?? this.busyAcceptingMore();
      if (!slot) return;
      const size = Math.min(this.cfg.maxBatch, Math.ceil(this.queued / Math.max(1, this.live.size)));
      const jobs = this.queue.slice(this.queueHead, this.queueHead + size);
      this.queueHead += jobs.length;
      this.compactQueue();
      this.dispatch(slot, jobs);
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

  /**
   * Answers the triggers that waited their whole deadline; while others wait, looks again when the
   * oldest one's deadline passes (no slot may free up before: replacements can keep failing).
   */
  private expireQueued(): void {
    const { timeoutMs } = this.cfg;
    const now = Date.now();
    while (this.queueHead < this.queue.length && now - this.queue[this.queueHead].enqueuedAt >= timeoutMs) {
      this.queue[this.queueHead++].resolve(queueTimeoutOutcome(timeoutMs, this.cfg.what));
    }
    this.compactQueue();
    if (this.queued === 0 || this.expiryTimer || this.closed) return;
    this.expiryTimer = setTimeout(() => {
      this.expiryTimer = undefined;
      this.expireQueued();
      this.checkDrained();
    }, Math.max(1, this.queue[this.queueHead].enqueuedAt + timeoutMs - now));
    this.expiryTimer.unref();
  }

  private replace(delayMs = 0): void {
    const attempt = (): void => {
      if (this.closed) return;
      this.creating++;
      this.cfg.create().then(
        (slot) => {
          this.creating--;
          this.adopt(slot);
          this.pump();
        },
        (err) => {
          this.creating--;
          this.cfg.log.error({ err: errorText(err) }, `replacing a ${this.cfg.what} failed; retrying`);
          this.replace(Math.min(Math.max(delayMs * 2, 100), 5000));
        },
      );
    };
    if (delayMs > 0) setTimeout(attempt, delayMs).unref();
    else attempt();
  }

  private checkDrained(): void {
    if (this.running === 0 && this.queued === 0) for (const w of this.drainWaiters.splice(0)) w();
  }

  /** Resolves when nothing runs and nothing waits (each trigger is bounded by its deadline). */
  drained(): Promise<void> {
    if (this.running === 0 && this.queued === 0) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  async heapBytes(): Promise<number> {
    const sizes = await Promise.all([...this.live].map((s) => s.heapBytes()));
    return sizes.reduce((a, b) => a + b, 0);
  }

  /** Closes every slot; queued triggers are answered "unavailable", running ones end with their slot. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.cfg.warm?.forget(this);
    clearTimeout(this.expiryTimer);
    clearTimeout(this.extraTimer);
    for (let i = this.queueHead; i < this.queue.length; i++) this.queue[i].resolve(UNAVAILABLE);
    this.queue = [];
    this.queueHead = 0;
    this.closeSlots();
    this.checkDrained();
  }
}
