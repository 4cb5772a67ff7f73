// Shared memory between one isolate and the runtime host's main thread, for the results of a batch.
//
// Why: reporting each trigger's result with an ivm.Callback costs a task on the host's event loop per
// trigger, and each such task flushes its reply in a write() of its own. Instead the isolate writes
// small results into a SharedArrayBuffer as they are known and the host reads them all when the batch
// call returns (or when the isolate asks, before it awaits an async trigger, so no result waits for a
// slower sibling). The replies of a batch then leave in one write. The isolate also records which
// trigger runs and since when, so the host's deadline timer and CPU ticker know whom to stop, and the
// results already written survive an isolate that is killed afterwards. Results never wait long: the host
// also reads them when the isolate calls a host service, and the isolate asks for a read once a batch
// has run FLUSH_AFTER_MS since the last one.
//
// Layout (little-endian, as the platform is):
//   Int32 [0] batch id the isolate is running   Int32 [1] index of the running trigger
//   Int32 [2] results ready (indices < ready)   Float64 at byte 16: when the running trigger started (ms)
//   Int32 table at byte TABLE_OFFSET: per index (kind, offset, length) into the data area
//   data area at DATA_OFFSET, DATA_BYTES long, filled from 0 in each batch
// A result that does not fit (or an index past MAX_RESULTS) goes by the callback instead (kind BY_CALLBACK).

import { ErrorCodes, failure, queueTimeoutOutcome, type Outcome } from "../outcome.js";

export const HEAD = { batch: 0, running: 1, ready: 2 } as const;
export const STARTED_AT_BYTE = 16;
export const TABLE_OFFSET = 24;
/** Results per batch that have a table entry; the pool's batches are smaller. */
export const MAX_RESULTS = 64;
export const DATA_OFFSET = 1024;
/** Bytes of results per batch kept in shared memory; larger results are copied by callback. */
export const DATA_BYTES = 16 * 1024;
export const RESULT_KIND = { ok: 1, error: 2, expired: 3, byCallback: 4 } as const;
/** A batch running longer than this since its last hand-over tells the host to read its results. */
export const FLUSH_AFTER_MS = 1;

const decoder = new TextDecoder();

/** The host's side of one isolate's result channel. */
export class ResultChannel {
  readonly shared = new SharedArrayBuffer(DATA_OFFSET + DATA_BYTES);
  private readonly head = new Int32Array(this.shared, 0, 4);
  private readonly startedAt = new Float64Array(this.shared, STARTED_AT_BYTE, 1);
  private readonly table = new Int32Array(this.shared, TABLE_OFFSET, MAX_RESULTS * 3);

  /** How many results of `batchId` are ready (0 while the isolate has not begun it). */
  ready(batchId: number): number {
    if (Atomics.load(this.head, HEAD.batch) !== batchId) return 0;
    return Atomics.load(this.head, HEAD.ready);
  }

  /**
   * The running trigger of `batchId` and when it started, or undefined while the isolate has not begun
   * the batch. The isolate stores the start time before the index, so a fresh index never pairs with an
   * older start.
   */
  running(batchId: number): { index: number; startedAt: number } | undefined {
    if (Atomics.load(this.head, HEAD.batch) !== batchId) return undefined;
    const index = Atomics.load(this.head, HEAD.running);
    return { index, startedAt: this.startedAt[0] };
  }

  /** Result `index` (below ready()), or "callback" when it travels by callback instead. */
  read(index: number, queueTimeoutMs: number): Outcome | "callback" {
    if (index >= MAX_RESULTS) return "callback";
    const kind = this.table[index * 3];
    const offset = this.table[index * 3 + 1];
    const length = this.table[index * 3 + 2];
    const bytes = (): Uint8Array => new Uint8Array(this.shared, DATA_OFFSET + offset, length).slice();
    switch (kind) {
      case RESULT_KIND.ok:
        return { ok: true, data: length === 0 ? undefined : bytes() };
      case RESULT_KIND.error:
        return failure(ErrorCodes.failed, length === 0 ? "the function failed" : decoder.decode(bytes()));
      case RESULT_KIND.expired:
        return queueTimeoutOutcome(queueTimeoutMs);
      default:
        return "callback";
    }
  }
}
