// Shared memory between one isolate and the runtime host's main thread, for the results of a batch.
//
// Why: reporting each trigger's result with an ivm.Callback costs a task on the host's event loop per
// trigger, and each such task flushes its reply in a write() of its own. Instead the isolate writes
// small results into a SharedArrayBuffer as they are known and the host reads them all when the batch
// call returns, when the isolate calls a host service, or when the isolate asks (emitResult index -1).
// The replies of a batch then leave in one write.
//
// Several triggers of a batch may be in flight at once (async functions awaiting host calls), so each
// trigger has its own entry: when it started (for its deadline and CPU budget) and its result, written
// in any order. The isolate also records whose synchronous code runs right now, which says whom to blame
// when the isolate has to be stopped. Results written survive an isolate that is killed afterwards.
//
// An isolate has up to MAX_OPEN_BATCHES regions, each laid out as below and each holding one batch: an
// async function's isolate takes another batch while the triggers of those it runs all await (so a
// trigger never waits behind another one's host call). Region 0 comes with the isolate's setup; a
// further one is made, and handed to the isolate, the first time a batch runs in it.
//
// Layout of a region (little-endian, as the platform is):
//   Int32 head[0] batch id the isolate is running   head[1] index whose handler call is on the stack (-1: none)
//   Int32 head[2] 1 while the isolate has asked the host to collect and the host has not yet
//   Int32 table at TABLE_OFFSET, per index: kind (0 = no result yet), offset, length into the data
//         area, and when the trigger started (ms since the batch's base time, plus 1; 0 = not started)
//   data area at DATA_OFFSET, DATA_BYTES long, filled from 0 in each batch
// The isolate writes offset and length before it stores the kind (Atomics), and zeroes a batch's entries
// before it stores the batch id, so the host never reads a half-written entry or one of an older batch.
// A result that does not fit (or an index past MAX_RESULTS) goes by the callback instead (kind byCallback).
// Whatever the isolate wrote, the host checks before it uses: an entry out of bounds or of an unknown
// kind is an error for that trigger alone, never a throw in the runtime host.

import { ErrorCodes, failure, queueTimeoutOutcome, type Outcome } from "../../host/outcome.js";

export const HEAD = { batch: 0, running: 1, collectAsked: 2 } as const;
export const TABLE_OFFSET = 16;
/** Int32 fields per table entry. */
export const ENTRY = { kind: 0, offset: 1, length: 2, started: 3, size: 4 } as const;
/** Results per batch that have a table entry; the pool's batches are smaller. */
export const MAX_RESULTS = 64;
export const DATA_OFFSET = 2048;
/** Bytes of results per batch kept in shared memory; larger results are copied by callback. */
export const DATA_BYTES = 16 * 1024;
/**
 * tooLarge: a reply refused inside the isolate by its size (its data is the message). unavailable: the
 * function let a host service's `unavailable` error escape (JetStream briefly without a leader), a 503.
 */
export const RESULT_KIND = { none: 0, ok: 1, error: 2, expired: 3, byCallback: 4, tooLarge: 5, unavailable: 6 } as const;
/**
 * What the isolate tells the host through emitResult's index besides a result: collect (read the results
 * written so far), done (the triggers that awaited have all ended: the batch is over). That every trigger
 * of the batch has started and some await (read the results; another batch may start beside this one) is
 * what the batch call's answer says when it is above 0; 0 says the batch is over.
 * The batch call returns how many triggers still await, not a promise: a promise handed back to
 * isolated-vm is chained with then() and catch() inside the isolate, where a workload's
 * Promise[Symbol.species] could step in.
 */
export const SIGNAL = { collect: -1, done: -3 } as const;
/** Batches one isolate runs at once at most (each in its own region). */
export const MAX_OPEN_BATCHES = 4;
/** A batch running longer than this since its last hand-over tells the host to read its results. */
export const FLUSH_AFTER_MS = 1;

const decoder = new TextDecoder();

/** The host's side of one region of an isolate's result channel. */
export class ResultChannel {
  readonly shared = new SharedArrayBuffer(DATA_OFFSET + DATA_BYTES);
  private readonly head = new Int32Array(this.shared, 0, 4);
  private readonly table = new Int32Array(this.shared, TABLE_OFFSET, MAX_RESULTS * ENTRY.size);

  /** Whether the isolate has begun `batchId` (until then no entry of it is valid). */
  begun(batchId: number): boolean {
    return Atomics.load(this.head, HEAD.batch) === batchId;
  }

  /** The index whose synchronous code runs in the isolate now, or -1 (between triggers, or awaiting). */
  running(): number {
    return Atomics.load(this.head, HEAD.running);
  }

  /** Called before the host looks at the results: a result written after this asks again. */
  clearCollectAsked(): void {
    Atomics.store(this.head, HEAD.collectAsked, 0);
  }

  /** The kind of result `index` has (RESULT_KIND.none while it has none); `index` below MAX_RESULTS. */
  kind(index: number): number {
    return Atomics.load(this.table, index * ENTRY.size + ENTRY.kind);
  }

  /**
   * When trigger `index` started (epoch ms), or undefined if it has not; `base` is the batch's base time.
   * Never later than now: a start in the future would put off the trigger's deadline.
   */
  startedAt(index: number, base: number): number | undefined {
    const started = Atomics.load(this.table, index * ENTRY.size + ENTRY.started);
    return started === 0 ? undefined : Math.min(base + Math.max(started, 1) - 1, Date.now());
  }

  /** Result `index` (its kind is not none), or "callback" when it travels by callback instead. */
  read(index: number, queueTimeoutMs: number): Outcome | "callback" {
    const at = index * ENTRY.size;
    const kind = this.kind(index);
    const offset = this.table[at + ENTRY.offset];
    const length = this.table[at + ENTRY.length];
    if (offset < 0 || length < 0 || offset + length > DATA_BYTES) {
      return failure(ErrorCodes.failed, `the isolate wrote an inconsistent result (offset ${offset}, length ${length})`);
    }
    const bytes = (): Uint8Array => new Uint8Array(this.shared, DATA_OFFSET + offset, length).slice();
    const message = (fallback: string): string => (length === 0 ? fallback : decoder.decode(bytes()));
    switch (kind) {
      case RESULT_KIND.ok:
        return { ok: true, data: length === 0 ? undefined : bytes() };
      case RESULT_KIND.error:
        return failure(ErrorCodes.failed, message("the function failed"));
      case RESULT_KIND.tooLarge:
        return failure(ErrorCodes.tooLarge, message("reply too large"));
      case RESULT_KIND.unavailable:
        return failure(ErrorCodes.unavailable, message("a host service is unavailable"));
      case RESULT_KIND.expired:
        return queueTimeoutOutcome(queueTimeoutMs);
      case RESULT_KIND.byCallback:
        return "callback";
      default:
        return failure(ErrorCodes.failed, `the isolate wrote a result of unknown kind ${kind}`);
    }
  }
}
