// The isolates of one JavaScript workload: a SlotPool (../../host/slot-pool.ts) of IsolateSlots, each taking up
// to MAX_BATCH queued triggers in one call under load (one at a time with fresh contexts). In a batch the
// triggers start in order, each with its own deadline (synchronous ones run one after the other, async
// ones overlap at their awaits), and their replies leave together when the batch returns (sooner if it
// runs long, calls a host service or an async one finishes; see isolate-slot.ts), so the batch costs one
// call into the isolate instead of one per trigger. On top of the shared pool: the CPU watch, which
// kills an isolate whose triggers in flight used more CPU than their budget.

import { IsolateSlot, type PoolConfig } from "./isolate-slot.js";
import type { TriggerPool } from "../../host/hosted-workload.js";
import { cpuOutcome, type Outcome } from "../../host/outcome.js";
import { SlotPool } from "../../host/slot-pool.js";

export type { PoolConfig, PoolHooks } from "./isolate-slot.js";

/** Most triggers handed to an isolate in one call. */
export const MAX_BATCH = 16;
/**
 * Isolates a function may have while all of them wait on host services and triggers queue (its
 * --concurrency when larger): a synchronous function blocked on KV calls then overlaps its waits.
 */
export const MAX_ELASTIC_ISOLATES = 4;

export class WorkloadPool implements TriggerPool {
  readonly httpFrames = true;
  private readonly cpuWatch?: NodeJS.Timeout;

  private constructor(
    private readonly isolates: SlotPool<IsolateSlot>,
    cfg: PoolConfig,
  ) {
    const { timeoutMs, cpuMs } = cfg.limits;
    // With no CPU budget below the deadline, the deadline alone bounds a trigger (isolate-slot.ts).
    if (cpuMs >= timeoutMs) return;
    const cpuNs = BigInt(Math.floor(cpuMs)) * 1_000_000n;
    this.cpuWatch = setInterval(() => {
      for (const slot of isolates.slots) {
        if (slot.busy && !slot.dead && slot.cpuUsedNs() > cpuNs) slot.kill(cpuOutcome(cpuMs));
      }
    }, Math.min(100, Math.max(5, Math.floor(cpuMs / 4))));
    this.cpuWatch.unref();
  }

  /** Compiles the workload, builds its isolates and contexts; rejects with a WorkloadLoadError. */
  static async create(cfg: PoolConfig): Promise<WorkloadPool> {
    const isolates = await SlotPool.start({
      create: () => IsolateSlot.create(cfg),
      size: cfg.concurrency,
      maxSize: Math.max(cfg.concurrency, MAX_ELASTIC_ISOLATES),
      timeoutMs: cfg.limits.timeoutMs,
      maxBatch: cfg.fresh ? 1 : MAX_BATCH,
      what: "isolate",
      log: cfg.log,
      warm: cfg.warm,
    });
    return new WorkloadPool(isolates, cfg);
  }

  submit(subject: string, payload: Uint8Array): Promise<Outcome> {
    return this.isolates.submit(subject, payload);
  }

  drained(): Promise<void> {
    return this.isolates.drained();
  }

  heapBytes(): Promise<number> {
    return this.isolates.heapBytes();
  }

  close(): void {
    clearInterval(this.cpuWatch);
    this.isolates.close();
  }
}
