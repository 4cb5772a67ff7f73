// One isolate of a workload, inside the runtime host: its memory limit, its warm context or its spare
// fresh contexts, and the running of triggers in it with a deadline and a CPU budget each.
//
// A slot runs one batch of triggers at a time (one call into the isolate). The triggers of a batch start
// one after the other; a synchronous one runs to its end before the next starts, an async one lets the
// next start while it awaits (so async triggers overlap their host calls). Results come back through the
// slot's ResultChannel (shared memory, see result-channel.ts and bootstrap.ts runBatch).
// Limits per trigger, counted from when it starts (the isolate records when each trigger started):
// - wall clock: our own timer (isolated-vm's `timeout` does not bound promises); when a trigger passes
//   its deadline the isolate is disposed and that trigger answers "timeout". Of the rest of its batch,
//   results already written are answered, triggers in flight beside it answer an error naming why they
//   were stopped, and triggers that had not started go back to the pool's queue; the pool builds a
//   replacement isolate;
// - CPU: isolated-vm's `timeout` (min of cpuMs and timeoutMs per trigger of the batch) stops synchronous
//   runaways, and the pool's ticker compares isolate.cpuTime with the budget (kill). CPU is counted per
//   isolate, so with several triggers in flight the budget is shared: cpuMs per trigger in flight, from
//   the first tick that sees the oldest of them; the trigger whose code runs when the isolate is stopped
//   (else the oldest in flight) is the one blamed;
// - memory: isolated-vm disposes an isolate over its memoryLimit; the trigger blamed answers an error.

import ivm from "isolated-vm";
import type { Logger } from "pino";
import type { LogStream, WorkloadLimits } from "../types.js";
import { BOOTSTRAP_SOURCE, CONSOLE_LIMITS } from "./bootstrap.js";
import { compileModule, compileScript, WorkloadLoadError, type WorkloadCode } from "./compile.js";
import type { HostCallResult } from "../host-bridge.js";
import { MAX_RESULTS, RESULT_KIND, ResultChannel } from "./result-channel.js";
import {
  cpuOutcome,
  ErrorCodes,
  errorText,
  failure,
  memoryOutcome,
  timeoutOutcome,
  type Outcome,
} from "../outcome.js";

/** Time allowed for evaluating the workload's top-level code in a new context. */
export const LOAD_TIMEOUT_MS = 5000;
/** Pre-warmed contexts kept per isolate in fresh-context mode. */
export const SPARE_CONTEXTS = 2;
/**
 * Host calls one isolate may have out at once (only the awaitable ones can overlap); beyond it a call
 * fails at once with code "overloaded", so a workload cannot pile up requests in the runtime host.
 */
export const MAX_HOST_CALLS_IN_FLIGHT = 256;

const SYNC_TIMEOUT_MESSAGE = "Script execution timed out.";

export interface PoolHooks {
  /** A console line from inside the isolate. */
  log(stream: LogStream, line: string): void;
  /** A host-service call from inside the isolate; never rejects. */
  hostCall(service: unknown, method: unknown, headers: unknown, body: unknown, deadlineAt: number): Promise<HostCallResult>;
  /** isolated-vm lost control of an isolate; the process must stop. */
  catastrophic(message: string): void;
}

export interface PoolConfig {
  code: WorkloadCode;
  limits: WorkloadLimits;
  fresh: boolean;
  concurrency: number;
  env: Record<string, string>;
  hooks: PoolHooks;
  log: Logger;
}

/** A trigger waiting for, or running in, an isolate. */
export interface Job {
  subject: string;
  payload: Uint8Array;
  enqueuedAt: number;
  resolve: (o: Outcome) => void;
}

/** A context with the shims installed and the workload evaluated. */
interface Prepared {
  context: ivm.Context;
  /** runBatch(batchId, [subjects, payloads, expiries, base]) in bootstrap.ts. */
  runBatch: ivm.Reference<(batchId: number, triggers: unknown) => unknown>;
}

function releasePrepared(p: Prepared): void {
  try {
    p.runBatch.release();
    p.context.release();
  } catch {
    // The isolate is gone already.
  }
}

/** Triggers handed to one isolate in one call. */
interface Batch {
  id: number;
  jobs: Job[];
  answered: boolean[];
  /** Results the isolate sends by callback: the shared area will not hold them. */
  byCallback: boolean[];
  /** When the batch was handed over: the deadline base until the isolate begins it, and the base of start times. */
  dispatchedAt: number;
  /** Ends the batch with the triggers that never started, for the pool to queue again. */
  finish: (notStarted: Job[]) => void;
}

/** V8 code cache of BOOTSTRAP_SOURCE, shared by every isolate of this process. */
let bootstrapCache: Uint8Array | undefined;

async function compileBootstrap(isolate: ivm.Isolate): Promise<ivm.Script> {
  const cached = bootstrapCache;
  const script = (await isolate.compileScript(BOOTSTRAP_SOURCE, {
    filename: "nex:bootstrap",
    ...(cached
      ? { cachedData: new ivm.ExternalCopy(cached.buffer.slice(cached.byteOffset, cached.byteOffset + cached.byteLength) as ArrayBuffer) }
      : { produceCachedData: true }),
  })) as ivm.Script & { cachedData?: ivm.ExternalCopy<ArrayBuffer>; cachedDataRejected?: boolean };
  if (script.cachedData) {
    bootstrapCache = new Uint8Array(script.cachedData.copy());
    script.cachedData.release();
  } else if (script.cachedDataRejected) {
    bootstrapCache = undefined;
  }
  return script;
}

/**
 * One isolate of a workload, with its warm context or its spare fresh contexts. It runs one batch of
 * triggers at a time; each trigger has its own deadline and CPU budget, counted from when it starts.
 */
export class IsolateSlot {
  readonly isolate: ivm.Isolate;
  private script?: ivm.Script;
  private bootstrap?: ivm.Script;
  private warm?: Prepared;
  private readonly spares: Prepared[] = [];
  private refilling = 0;
  private readonly hostRef: ivm.Reference<(...args: unknown[]) => Promise<unknown>>;
  private readonly logCallback: ivm.Callback;
  private readonly resultCallback: ivm.Callback;
  private readonly syncTimeoutMs: number;
  private readonly channel = new ResultChannel();
  private batch?: Batch;
  private batchSeq = 0;
  private idleWaiters: (() => void)[] = [];
  private timer?: NodeJS.Timeout;
  /** Which trigger (batch id, index) startCpu belongs to, and isolate.cpuTime when it was first seen. */
  private cpuKey = "";
  private startCpu = 0n;
  private lastHeapBytes = 0;
  private hostCallsInFlight = 0;
  dead = false;

  private constructor(private readonly cfg: PoolConfig) {
    this.isolate = new ivm.Isolate({
      memoryLimit: Math.max(8, Math.floor(cfg.limits.memoryMb)),
      onCatastrophicError: (message: string) => cfg.hooks.catastrophic(message),
    });
    this.hostRef = new ivm.Reference(async (service: unknown, method: unknown, headers: unknown, body: unknown) => {
      const b = this.batch;
      // Results written meanwhile leave with this call's request.
      if (b) this.collect(b);
      // The caller is one of the triggers in flight; the isolate stops at the earliest of their deadlines.
      const deadline = b ? this.nextDeadline(b) : Date.now() + LOAD_TIMEOUT_MS;
      let result: HostCallResult;
      if (this.hostCallsInFlight >= MAX_HOST_CALLS_IN_FLIGHT) {
        result = { ok: false, code: "overloaded", message: `more than ${MAX_HOST_CALLS_IN_FLIGHT} host calls are out at once from this isolate` };
      } else {
        this.hostCallsInFlight++;
        try {
          result = await cfg.hooks.hostCall(service, method, headers, body, deadline);
        } finally {
          this.hostCallsInFlight--;
        }
      }
      return new ivm.ExternalCopy(result).copyInto({ release: true });
    });
    this.logCallback = new ivm.Callback(
      (stream: unknown, line: unknown) => {
        if ((stream === "stdout" || stream === "stderr") && typeof line === "string") cfg.hooks.log(stream, line);
      },
      { ignored: true },
    );
    this.resultCallback = new ivm.Callback(
      (batchId: unknown, index: unknown, ok: unknown, value: unknown) => this.onResult(batchId, index, ok, value),
      { ignored: true },
    );
    this.syncTimeoutMs = Math.max(1, Math.min(cfg.limits.timeoutMs, cfg.limits.cpuMs));
  }

  get busy(): boolean {
    return this.batch !== undefined;
  }

  /** A new isolate with the workload compiled and a context ready; rejects with a WorkloadLoadError. */
  static async create(cfg: PoolConfig): Promise<IsolateSlot> {
    const slot = new IsolateSlot(cfg);
    try {
      slot.bootstrap = await compileBootstrap(slot.isolate);
      slot.script = await compileScript(slot.isolate, cfg.code);
      const first = await slot.prepare();
      if (cfg.fresh) {
        slot.spares.push(first);
        slot.refill();
      } else {
        slot.warm = first;
      }
      return slot;
    } catch (err) {
      const disposed = slot.isolate.isDisposed;
      slot.dispose();
      throw slot.loadError(err, disposed);
    }
  }

  private loadError(err: unknown, disposed: boolean): WorkloadLoadError {
    if (err instanceof WorkloadLoadError) return err;
    const name = this.cfg.code.name;
    if (disposed) {
      return new WorkloadLoadError(`JavaScript workload '${name}' went over its memory limit (${this.cfg.limits.memoryMb} MB) while loading`);
    }
    const message = (err as Error)?.message;
    if (message === SYNC_TIMEOUT_MESSAGE) {
      return new WorkloadLoadError(`JavaScript workload '${name}' took longer than ${LOAD_TIMEOUT_MS} ms to load`);
    }
    return new WorkloadLoadError(`JavaScript workload '${name}' threw while loading: ${errorText(err)}`);
  }

  /**
   * A context with the shims installed, the workload evaluated and its batch runner ready. In the
   * background (refilling spares) it steps aside between its calls into the isolate whenever a trigger
   * runs, since calls into one isolate run in order and a trigger would otherwise wait for all of them.
   */
  private async prepare(background = false): Promise<Prepared> {
    const yieldToTriggers = background ? () => this.whenIdle() : () => undefined;
    await yieldToTriggers();
    const context = await this.isolate.createContext();
    const refs: ivm.Reference<unknown>[] = [];
    try {
      await yieldToTriggers();
      const setup = (await this.bootstrap!.run(context, { reference: true, timeout: LOAD_TIMEOUT_MS })) as ivm.Reference<unknown>;
      refs.push(setup);
      const makeRunner = (await setup.apply(
        undefined,
        [
          this.logCallback,
          this.hostRef,
          new ivm.ExternalCopy(this.cfg.env).copyInto({ release: true }),
          new ivm.ExternalCopy(CONSOLE_LIMITS).copyInto({ release: true }),
          this.resultCallback,
          new ivm.ExternalCopy(this.channel.shared).copyInto({ release: true }),
        ],
        { result: { reference: true }, timeout: LOAD_TIMEOUT_MS },
      )) as ivm.Reference<unknown>;
      refs.push(makeRunner);
      await yieldToTriggers();
      const handler = await this.evaluateWorkload(context);
      refs.push(handler);
      if (handler.typeof !== "function") {
        throw new WorkloadLoadError(
          `JavaScript workload '${this.cfg.code.name}' must evaluate to a function (subject, payload) => result, ` +
            `or export one as default; it evaluated to ${handler.typeof === "undefined" ? "undefined" : `a value of type ${handler.typeof}`}`,
        );
      }
      await yieldToTriggers();
      const runBatch = (await makeRunner.apply(undefined, [handler.derefInto()], {
        result: { reference: true },
        timeout: LOAD_TIMEOUT_MS,
      })) as unknown as Prepared["runBatch"];
      return { context, runBatch };
    } catch (err) {
      try {
        context.release();
      } catch {
        // isolate disposed
      }
      throw err;
    } finally {
      for (const r of refs) {
        try {
          r.release();
        } catch {
          // isolate disposed
        }
      }
    }
  }

  private async evaluateWorkload(context: ivm.Context): Promise<ivm.Reference<unknown>> {
    if (this.script) {
      return (await this.script.run(context, { reference: true, timeout: LOAD_TIMEOUT_MS })) as ivm.Reference<unknown>;
    }
    const mod = await compileModule(this.isolate, this.cfg.code);
    try {
      await mod.instantiate(context, (specifier: string) => {
        throw new Error(`cannot import '${specifier}'`);
      });
      await mod.evaluate({ timeout: LOAD_TIMEOUT_MS });
      return (await mod.namespace.get("default", { reference: true })) as ivm.Reference<unknown>;
    } finally {
      mod.release();
    }
  }

  /** Resolves when no batch runs in this isolate (at once if none does). */
  private whenIdle(): Promise<void> | undefined {
    if (!this.batch) return undefined;
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private wakeIdleWaiters(): void {
    if (this.batch || this.idleWaiters.length === 0) return;
    for (const w of this.idleWaiters.splice(0)) w();
  }

  private refill(): void {
    while (!this.dead && this.spares.length + this.refilling < SPARE_CONTEXTS) {
      this.refilling++;
      this.prepare(true).then(
        (p) => {
          this.refilling--;
          if (this.dead) releasePrepared(p);
          else this.spares.push(p);
        },
        (err) => {
          this.refilling--;
          if (!this.dead) this.cfg.log.warn({ err: errorText(err) }, "preparing a fresh context failed");
        },
      );
    }
  }

  /**
   * Runs `jobs` in this isolate (see the header for how they share it), resolving each job as its result arrives. Resolves
   * with the jobs that never started (the isolate died first); the pool queues them again. Afterwards
   * `dead` says whether the isolate must be replaced.
   */
  async runBatch(jobs: Job[]): Promise<Job[]> {
    let prepared: Prepared | undefined;
    if (this.cfg.fresh) {
      prepared = this.spares.pop();
      if (!prepared) {
        try {
          prepared = await this.prepare();
        } catch (err) {
          const outcome = failure(ErrorCodes.failed, `could not prepare a context: ${errorText(err)}`);
          this.kill(outcome);
          const [first, ...rest] = jobs;
          first?.resolve(outcome);
          return rest;
        }
      }
    } else {
      prepared = this.warm;
    }
    if (!prepared || this.dead) return jobs;
    if (jobs.length > MAX_RESULTS) throw new Error(`a batch holds at most ${MAX_RESULTS} triggers`);
    const runner = prepared.runBatch;
    const notStarted = await new Promise<Job[]>((finish) => {
      const batch: Batch = {
        id: ++this.batchSeq,
        jobs,
        answered: jobs.map(() => false),
        byCallback: jobs.map(() => false),
        dispatchedAt: Date.now(),
        finish,
      };
      this.batch = batch;
      this.armDeadline(batch, this.cfg.limits.timeoutMs);
      this.cpuKey = `${batch.id}:0`;
      this.startCpu = this.isolate.cpuTime;
      try {
        const triggers = new ivm.ExternalCopy([
          jobs.map((j) => j.subject),
          jobs.map((j) => j.payload),
          jobs.map((j) => j.enqueuedAt + this.cfg.limits.timeoutMs),
          batch.dispatchedAt,
        ]).copyInto({ release: true });
        runner
          .apply(undefined, [batch.id, triggers], {
            result: { promise: true },
            timeout: Math.min(2 ** 31 - 1, this.syncTimeoutMs * jobs.length),
          })
          .then(
            () => this.endBatch(batch, undefined),
            (err: unknown) => this.endBatch(batch, err ?? new Error("the batch failed")),
          );
      } catch (err) {
        this.endBatch(batch, err ?? new Error("the batch failed"));
      }
    });
    if (this.cfg.fresh) {
      releasePrepared(prepared);
      if (!this.dead) this.refill();
    }
    this.wakeIdleWaiters();
    return notStarted;
  }

  /** Indices of `b` that have started and have no result yet, oldest first. */
  private inFlight(b: Batch): number[] {
    const flying: number[] = [];
    if (!this.channel.begun(b.id)) return flying;
    for (let k = 0; k < b.jobs.length; k++) {
      if (b.answered[k] || b.byCallback[k] || this.channel.kind(k) !== RESULT_KIND.none) continue;
      if (this.channel.startedAt(k, b.dispatchedAt) !== undefined) flying.push(k);
    }
    return flying;
  }

  /** The earliest deadline of a trigger of `b` in flight (the batch's own until the isolate begins it). */
  private nextDeadline(b: Batch): number {
    const { timeoutMs } = this.cfg.limits;
    if (!this.channel.begun(b.id)) return b.dispatchedAt + timeoutMs;
    let next = Date.now() + timeoutMs;
    for (const k of this.inFlight(b)) next = Math.min(next, this.channel.startedAt(k, b.dispatchedAt)! + timeoutMs);
    return next;
  }

  private armDeadline(b: Batch, delayMs: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.onDeadline(b), Math.max(1, Math.ceil(delayMs)));
  }

  /** The batch timer: stops the isolate once a trigger in flight is past its deadline, else waits for the next. */
  private onDeadline(b: Batch): void {
    if (this.batch !== b) return;
    const { timeoutMs } = this.cfg.limits;
    const now = Date.now();
    if (!this.channel.begun(b.id)) {
      const left = b.dispatchedAt + timeoutMs - now;
      if (left > 0) this.armDeadline(b, left);
      else this.kill(timeoutOutcome(timeoutMs), [0]);
      return;
    }
    this.collect(b);
    const overdue: number[] = [];
    let next = now + timeoutMs;
    const flying = this.inFlight(b);
    for (const k of flying) {
      const deadline = this.channel.startedAt(k, b.dispatchedAt)! + timeoutMs;
      if (deadline <= now) overdue.push(k);
      else next = Math.min(next, deadline);
    }
    if (overdue.length === 0) {
      this.armDeadline(b, next - now);
      return;
    }
    // A trigger whose synchronous code holds the isolate kept the overdue ones from going on: it ends
    // with them, as a timeout too, not as a bystander.
    const running = this.channel.running();
    if (flying.includes(running) && !overdue.includes(running)) overdue.push(running);
    this.kill(timeoutOutcome(timeoutMs), overdue);
  }

  private answer(b: Batch, index: number, outcome: Outcome): void {
    if (index >= b.jobs.length || b.answered[index]) return;
    b.answered[index] = true;
    b.jobs[index].resolve(outcome);
  }

  /** Answers the results the isolate has written to the shared area since the last look. */
  private collect(b: Batch): void {
    this.channel.clearCollectAsked();
    if (!this.channel.begun(b.id)) return;
    for (let k = 0; k < b.jobs.length; k++) {
      if (b.answered[k] || b.byCallback[k] || this.channel.kind(k) === RESULT_KIND.none) continue;
      const outcome = this.channel.read(k, this.cfg.limits.timeoutMs);
      if (outcome === "callback") b.byCallback[k] = true;
      else this.answer(b, k, outcome);
    }
  }

  /** From inside the isolate: a result too large for the shared area, or (index -1) "collect now". */
  private onResult(batchId: unknown, index: unknown, ok: unknown, value: unknown): void {
    const b = this.batch;
    if (!b || batchId !== b.id || typeof index !== "number") return;
    if (index === -1) {
      this.collect(b);
    } else if (ok === true && (value === undefined || typeof value === "string" || value instanceof Uint8Array)) {
      this.answer(b, index, { ok: true, data: value });
    } else {
      this.answer(b, index, failure(ErrorCodes.failed, typeof value === "string" && value !== "" ? value : "the function failed"));
    }
  }

  /**
   * Who answers `stopped` when the isolate is stopped: the trigger whose code runs, else the oldest in
   * flight, else the first without a result.
   */
  private blame(b: Batch): number[] {
    if (!this.channel.begun(b.id)) return [0];
    const flying = this.inFlight(b);
    const running = this.channel.running();
    if (running >= 0 && flying.includes(running)) return [running];
    if (flying.length > 0) return [flying[0]];
    const next = b.answered.findIndex((answered, k) => !answered && !b.byCallback[k] && this.channel.kind(k) === RESULT_KIND.none);
    return next < 0 ? [] : [next];
  }

  /**
   * Ends batch `b`: answers what the isolate wrote; if it was stopped, `stopped` for the triggers blamed
   * (`blamed`, or as blame() says; "all": every one in flight), an error for the others in flight, and
   * the triggers that never started go back to the pool.
   */
  private settle(b: Batch, stopped?: Outcome, blamed?: number[] | "all"): void {
    const culprits = stopped === undefined || blamed === "all" ? [] : (blamed ?? this.blame(b));
    this.batch = undefined;
    if (this.timer) clearTimeout(this.timer);
    const lost = failure(ErrorCodes.failed, "the trigger's result was lost");
    if (stopped === undefined) {
      this.collect(b);
      // Callbacks are delivered before the call's own settlement: anything unanswered was lost.
      for (let k = 0; k < b.jobs.length; k++) this.answer(b, k, lost);
      b.finish([]);
      return;
    }
    // The culprits first: a result one of them wrote while the isolate was being stopped (it may catch
    // the error that ends its host call) does not undo the decision.
    for (const k of culprits) this.answer(b, k, stopped);
    this.collect(b);
    const why = stopped.ok ? "it was stopped" : stopped.message;
    const beside = blamed === "all" ? stopped : failure(ErrorCodes.failed, `stopped with its isolate, because a trigger running beside it ended so: ${why}`);
    const begun = this.channel.begun(b.id);
    const notStarted: Job[] = [];
    for (let k = 0; k < b.jobs.length; k++) {
      if (b.answered[k]) continue;
      if (b.byCallback[k] || (begun && this.channel.kind(k) !== RESULT_KIND.none)) this.answer(b, k, lost);
      else if (begun && this.channel.startedAt(k, b.dispatchedAt) !== undefined) this.answer(b, k, beside);
      else notStarted.push(b.jobs[k]);
    }
    b.finish(notStarted);
  }

  private endBatch(b: Batch, err: unknown): void {
    if (this.batch !== b) return; // ended already (killed)
    this.settle(b, err === undefined ? undefined : this.classify(err));
  }

  /** The batch call itself failed: the isolate was terminated or disposed. */
  private classify(err: unknown): Outcome {
    const { memoryMb, timeoutMs, cpuMs } = this.cfg.limits;
    const disposed = this.isolate.isDisposed;
    this.dead = true;
    this.dispose();
    if (disposed) return memoryOutcome(memoryMb);
    const message = (err as Error)?.message;
    if (message === SYNC_TIMEOUT_MESSAGE) return cpuMs < timeoutMs ? cpuOutcome(cpuMs) : timeoutOutcome(timeoutMs);
    return failure(ErrorCodes.failed, typeof message === "string" ? message : String(err));
  }

  /**
   * Disposes the isolate (the pool replaces it) and ends its batch: the triggers `blamed` (by default as
   * blame() says; "all": every one in flight) answer `outcome`.
   */
  kill(outcome: Outcome, blamed?: number[] | "all"): void {
    const b = this.batch;
    // Who ran is read from the shared area before the isolate goes.
    const culprits = b && blamed === undefined ? this.blame(b) : blamed;
    this.dead = true;
    this.dispose();
    if (b) this.settle(b, outcome, culprits);
  }

  /**
   * CPU time per trigger in flight since the oldest of them was first seen (see the header): what the
   * pool's ticker holds against the budget.
   */
  cpuUsedNs(): bigint {
    const b = this.batch;
    if (!b) return 0n;
    try {
      const now = this.isolate.cpuTime;
      const flying = this.inFlight(b);
      const key = `${b.id}:${flying[0] ?? -1}`;
      if (key !== this.cpuKey) {
        this.cpuKey = key;
        this.startCpu = now;
      }
      return (now - this.startCpu) / BigInt(Math.max(1, flying.length));
    } catch {
      return 0n;
    }
  }

  async heapBytes(): Promise<number> {
    if (this.dead) return 0;
    try {
      const stats = await Promise.race([
        this.isolate.getHeapStatistics(),
        new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 250).unref()),
      ]);
      if (stats) this.lastHeapBytes = stats.used_heap_size + stats.externally_allocated_size;
    } catch {
      // disposed meanwhile
    }
    return this.lastHeapBytes;
  }

  dispose(): void {
    this.dead = true;
    // Background preparations waiting for a turn go on and fail fast on the disposed isolate.
    for (const w of this.idleWaiters.splice(0)) w();
    for (const p of this.spares.splice(0)) releasePrepared(p);
    if (!this.isolate.isDisposed) {
      try {
        this.isolate.dispose();
      } catch {
        // already gone
      }
    }
    try {
      this.hostRef.release();
    } catch {
      // released with the isolate
    }
  }
}
