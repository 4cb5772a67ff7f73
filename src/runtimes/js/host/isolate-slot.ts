// One isolate of a workload, inside the runtime host: its memory limit, its warm context or its spare
// fresh contexts, and the running of triggers in it with a deadline and a CPU budget each.
//
// A slot runs a batch of triggers in one call into the isolate. The triggers of a batch start one after
// the other; a synchronous one runs to its end before the next starts, an async one lets the next start
// while it awaits (so async triggers overlap their host calls). Once every trigger of each batch it runs
// has started and some only await (the isolate says so), the slot takes another batch beside them, up to
// MAX_OPEN_BATCHES: a trigger then never waits behind another's host call (head-of-line blocking).
// Results come back through the batch's region of the slot's result channel (shared memory, see
// result-channel.ts and guest/runner.js); RunningBatch (running-batch.ts) turns them into each trigger's
// answer, and decides who answers what when the slot stops the isolate.
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

import { randomBytes } from "node:crypto";
import ivm from "isolated-vm";
import type { Logger } from "pino";
import type { LogStream, WorkloadLimits } from "../../types.js";
import { guestLimits } from "../isolate/bootstrap.js";
import { BlankIsolate, guestLayout, isolateMemoryLimitMb, LOAD_TIMEOUT_MS, releaseQuietly, type BlankContext } from "./blank-isolate.js";
import type { SpareIsolate } from "./spare-isolate.js";
import type { WarmPools } from "../../host/warm-pools.js";
import { compileScript, evaluateWorkload, WorkloadLoadError, type WorkloadCode } from "./compile.js";
import type { HostCallResult } from "../../host/host-bridge.js";
import { MAX_OPEN_BATCHES, MAX_RESULTS, ResultChannel, SIGNAL } from "./result-channel.js";
import { HostCallTurns } from "./host-call-turns.js";
import { HostAnswers, type SetupResult } from "./host-answers.js";
import { settleWithin } from "../../../util/settle-within.js";
import { RunningBatch, type Blamed } from "./running-batch.js";
import type { Job } from "../../host/hosted-workload.js";
import {
  cpuOutcome,
  ErrorCodes,
  errorText,
  failure,
  memoryOutcome,
  timeoutOutcome,
  UNAVAILABLE,
  type Outcome,
} from "../../host/outcome.js";

/** Pre-warmed contexts kept per isolate in fresh-context mode. */
export const SPARE_CONTEXTS = 2;

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
  /** The NATS server's max_payload: no reply or host-call value larger leaves the isolate. */
  maxPayload: number;
  hooks: PoolHooks;
  log: Logger;
  /** The runtime host's isolate made ahead, taken by the first slot whose memory limit it has. */
  spare?: SpareIsolate;
  /** The runtime host's budget of loaded isolates (../../host/warm-pools.ts). */
  warm?: WarmPools;
}

/** A context with the shims installed and the workload evaluated. */
interface Prepared {
  context: ivm.Context;
  /** runBatch(batchId, [subjects, payloads, expiries, base], region, areaBuffer?) in guest/runner.js. */
  runBatch: ivm.Reference<(batchId: number, triggers: unknown, region: number, areaBuffer?: unknown) => unknown>;
  /** The context's awaitable host calls and their answers. */
  answers: HostAnswers;
}

function releasePrepared(p: Prepared): void {
  p.answers.close();
  try {
    p.runBatch.release();
    p.context.release();
  } catch {
    // The isolate is gone already.
  }
}

/**
 * One isolate of a workload, with its warm context or its spare fresh contexts. It runs one batch of
 * triggers at a time; each trigger has its own deadline and CPU budget, counted from when it starts.
 */
export class IsolateSlot {
  readonly isolate: ivm.Isolate;
  private script?: ivm.Script;
  private warm?: Prepared;
  private readonly spares: Prepared[] = [];
  private refilling = 0;
  private readonly hostRef: ivm.Reference<(...args: unknown[]) => Promise<unknown>>;
  private readonly logCallback: ivm.Callback;
  private readonly resultCallback: ivm.Callback;
  private readonly syncTimeoutMs: number;
  /** The result channel's regions, made when first used; region 0 is handed to every context at setup. */
  private readonly channels: ResultChannel[] = [new ResultChannel()];
  /** Regions the warm context has been handed (the others go with their first batch). */
  private regionsHanded = 1;
  /** The batches running, by region. */
  private readonly open: (RunningBatch | undefined)[] = [];
  private openCount = 0;
  private batchSeq = 0;
  private idleWaiters: (() => void)[] = [];
  /** Which trigger (batch id, index) startCpu belongs to, and isolate.cpuTime when it was first seen. */
  private cpuKey = "";
  private startCpu = 0n;
  private lastHeapBytes = 0;
  private readonly hostCalls = new HostCallTurns("this isolate");
  /** Set by the pool (slot-pool.ts): told when a host call goes out. */
  onHostWait?: () => void;
  /** Set by the pool: told when the slot can take another batch beside the ones it runs. */
  onAcceptsMore?: () => void;
  /** Set by the pool: told when the slot dies while it runs nothing (a runaway resumed by a host answer). */
  onDeath?: () => void;
  /** Contexts being prepared: the workload's own code may call host services while it loads. */
  private preparing = 0;
  /** Synchronous host calls out (0 or 1: the isolate's thread waits on it). */
  private parked = 0;
  dead = false;

  private constructor(
    private readonly cfg: PoolConfig,
    private readonly blank: BlankIsolate,
  ) {
    this.isolate = blank.isolate;
    // The sync face's calls, for which the isolate's thread waits (`parked`); the async face's go
    // through each context's HostAnswers.
    this.hostRef = new ivm.Reference(async (service: unknown, method: unknown, headers: unknown, body: unknown) => {
      const refused = this.refusal();
      if (refused !== undefined) return new ivm.ExternalCopy({ ok: false, code: "bad_request", message: refused }).copyInto({ release: true });
      this.parked++;
      try {
        const result = await this.hostCall(service, method, headers, body, this.callDeadline());
        return new ivm.ExternalCopy(result).copyInto({ release: true });
      } finally {
        this.parked--;
      }
    });
    this.logCallback = new ivm.Callback(
      (stream: unknown, line: unknown) => {
        if ((stream === "stdout" || stream === "stderr") && typeof line === "string") cfg.hooks.log(stream, line);
      },
      { ignored: true },
    );
    this.resultCallback = new ivm.Callback(
      (batchId: unknown, index: unknown, kind: unknown, value: unknown) => {
        const b = this.open.find((o) => o?.id === batchId);
        if (!b) return;
        if (index === SIGNAL.done) this.endBatch(b, undefined);
        else b.onResult(index, kind, value);
      },
      { ignored: true },
    );
    this.syncTimeoutMs = Math.max(1, Math.min(cfg.limits.timeoutMs, cfg.limits.cpuMs));
  }

  /**
   * Why a host call from inside the isolate may not be made now: no trigger runs and no context loads,
   * so the code that makes it was left running by a trigger that has returned (a continuation resumed
   * by a host answer). Nothing would bound its time or CPU, so it gets no more calls.
   */
  private refusal(): string | undefined {
    if (this.openCount > 0 || this.preparing > 0) return undefined;
    return "no host calls after the trigger has returned: await every call before the function returns";
  }

  /** Answers handed into the isolate failed: a code they resumed ran past the slice bound, or the isolate is gone. */
  private deliverFailed(err: unknown): void {
    if (this.dead || (err as Error)?.message !== SYNC_TIMEOUT_MESSAGE) return;
    const idle = !this.busy;
    this.kill(this.syncTimeoutOutcome());
    if (idle) this.onDeath?.();
  }

  /** What isolated-vm's own timeout (the lower of the CPU budget and the deadline) ended. */
  private syncTimeoutOutcome(): Outcome {
    const { timeoutMs, cpuMs } = this.cfg.limits;
    return cpuMs < timeoutMs ? cpuOutcome(cpuMs) : timeoutOutcome(timeoutMs);
  }

  /**
   * The deadline of a host call from inside the isolate, now. Results written meanwhile leave with the
   * call; the caller is one of the triggers in flight, so the isolate stops at the earliest of their deadlines.
   */
  private callDeadline(): number {
    let deadline = this.openCount === 0 ? Date.now() + LOAD_TIMEOUT_MS : Infinity;
    for (const b of this.open) {
      if (!b) continue;
      b.collect();
      deadline = Math.min(deadline, b.nextDeadline());
    }
    return deadline;
  }

  /** One host call, when a turn is free (host-call-turns.ts). */
  private hostCall(service: unknown, method: unknown, headers: unknown, body: unknown, deadline: number): Promise<HostCallResult> {
    const answer = this.hostCalls.run(body, () => this.cfg.hooks.hostCall(service, method, headers, body, deadline));
    this.onHostWait?.();
    return answer;
  }

  /**
   * Parked on a synchronous host call: the isolate's thread waits and uses no CPU. (An async function's
   * calls overlap inside its isolate already; more isolates would only cost it.)
   */
  waitingOnHost(): boolean {
    return this.busy && this.parked > 0;
  }

  /**
   * Busy, and able to take another batch now: warm, below MAX_OPEN_BATCHES, not parked on a synchronous
   * call, and every batch it runs has started all its triggers and only awaits.
   */
  acceptsMore(): boolean {
    if (this.dead || this.cfg.fresh || this.parked > 0 || this.openCount === 0 || this.openCount >= MAX_OPEN_BATCHES) return false;
    for (const b of this.open) if (b && !b.awaiting) return false;
    return true;
  }

  get busy(): boolean {
    return this.openCount > 0;
  }

  /** The batches running, oldest first. */
  private running(): RunningBatch[] {
    return this.open.filter((b): b is RunningBatch => b !== undefined).sort((a, b) => a.id - b.id);
  }

  /** A new isolate with the workload compiled and a context ready; rejects with a WorkloadLoadError. */
  static async create(cfg: PoolConfig): Promise<IsolateSlot> {
    const memoryLimitMb = isolateMemoryLimitMb(cfg.limits.memoryMb);
    const catastrophic = (message: string): void => cfg.hooks.catastrophic(message);
    let blank = await cfg.spare?.take(memoryLimitMb, catastrophic);
    if (!blank) {
      try {
        blank = await BlankIsolate.make(memoryLimitMb, catastrophic);
      } catch (err) {
        throw new WorkloadLoadError(`JavaScript workload '${cfg.code.name}' could not get an isolate: ${errorText(err)}`);
      }
    }
    const slot = new IsolateSlot(cfg, blank);
    try {
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
    this.preparing++;
    try {
      return await this.prepareContext(yieldToTriggers);
    } finally {
      this.preparing--;
    }
  }

  private async prepareContext(yieldToTriggers: () => Promise<void> | undefined): Promise<Prepared> {
    const { context, setup }: BlankContext = await this.blank.context();
    const refs: ivm.Reference<unknown>[] = [setup];
    const answers = new HostAnswers({
      deadline: () => this.callDeadline(),
      call: (service, method, headers, body, deadline) => this.hostCall(service, method, headers, body, deadline),
      refusal: () => this.refusal(),
      sliceTimeoutMs: this.syncTimeoutMs,
      onDeliverFailed: (err) => this.deliverFailed(err),
    });
    try {
      const made = (await setup.apply(
        undefined,
        [
          this.logCallback,
          this.hostRef,
          answers.out,
          new ivm.ExternalCopy(this.cfg.env).copyInto({ release: true }),
          new ivm.ExternalCopy(guestLimits(this.cfg.maxPayload)).copyInto({ release: true }),
          this.resultCallback,
          new ivm.ExternalCopy(this.channels[0].shared).copyInto({ release: true }),
          new ivm.ExternalCopy(new Uint8Array(randomBytes(32))).copyInto({ release: true }),
          guestLayout(),
        ],
        { result: { reference: true }, timeout: LOAD_TIMEOUT_MS },
      )) as ivm.Reference<SetupResult>;
      refs.push(made);
      const makeRunner = await answers.takeSetup(made);
      refs.push(makeRunner);
      await yieldToTriggers();
      const handler = await evaluateWorkload(this.isolate, context, this.cfg.code, this.script, LOAD_TIMEOUT_MS);
      refs.push(handler);
      if (handler.typeof !== "function" && handler.typeof !== "object") {
        throw new WorkloadLoadError(
          `JavaScript workload '${this.cfg.code.name}' must evaluate to a function (subject, payload) => result, ` +
            `or export one (or { fetch(request, env, ctx) }) as default; it evaluated to ${handler.typeof === "undefined" ? "undefined" : `a value of type ${handler.typeof}`}`,
        );
      }
      await yieldToTriggers();
      const runBatch = (await makeRunner.apply(undefined, [handler.derefInto()], {
        result: { reference: true },
        timeout: LOAD_TIMEOUT_MS,
      })) as unknown as Prepared["runBatch"];
      return { context, runBatch, answers };
    } catch (err) {
      answers.close();
      releaseQuietly(context);
      throw err;
    } finally {
      for (const r of refs) releaseQuietly(r);
    }
  }

  /** Resolves when no batch runs in this isolate (at once if none does). */
  private whenIdle(): Promise<void> | undefined {
    if (!this.busy) return undefined;
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private wakeIdleWaiters(): void {
    if (this.busy || this.idleWaiters.length === 0) return;
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
    // The pool hands a busy slot a batch only while acceptsMore(), so a region is free.
    const region = this.open.findIndex((b) => b === undefined);
    const at = region === -1 ? this.open.length : region;
    if (at >= MAX_OPEN_BATCHES) return jobs;
    const channel = (this.channels[at] ??= new ResultChannel());
    // A region past the ones the context has goes with this batch (regions are taken lowest first).
    const handRegion = !this.cfg.fresh && at === this.regionsHanded;
    const runner = prepared.runBatch;
    const notStarted = await new Promise<Job[]>((finish) => {
      const batch = new RunningBatch(++this.batchSeq, jobs, channel, this.cfg.limits.timeoutMs, finish);
      this.open[at] = batch;
      if (this.openCount++ === 0) {
        this.cpuKey = `${batch.id}:0`;
        this.startCpu = this.isolate.cpuTime;
      }
      this.armDeadline(batch, this.cfg.limits.timeoutMs);
      try {
        const triggers = new ivm.ExternalCopy([
          jobs.map((j) => j.subject),
          jobs.map((j) => j.payload),
          jobs.map((j) => j.enqueuedAt + this.cfg.limits.timeoutMs),
          batch.dispatchedAt,
        ]).copyInto({ release: true });
        const areaBuffer = handRegion ? new ivm.ExternalCopy(channel.shared).copyInto({ release: true }) : undefined;
        if (handRegion) this.regionsHanded++;
        runner
          .apply(undefined, [batch.id, triggers, at, areaBuffer], {
            timeout: Math.min(2 ** 31 - 1, this.syncTimeoutMs * jobs.length),
          })
          .then(
            // How many triggers still await: 0 ends the batch now; else the batch awaits (another may start
            // beside it) and SIGNAL.done will end it (it may have already).
            (awaiting: unknown) => {
              if (awaiting === 0 || typeof awaiting !== "number") this.endBatch(batch, undefined);
              else this.batchAwaits(batch);
            },
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

  private armDeadline(b: RunningBatch, delayMs: number): void {
    clearTimeout(b.deadlineTimer);
    b.deadlineTimer = setTimeout(() => this.onDeadline(b), Math.max(1, Math.ceil(delayMs)));
  }

  private isOpen(b: RunningBatch): boolean {
    return this.open.includes(b);
  }

  /** A batch's timer: stops the isolate once a trigger in flight is past its deadline, else waits for the next. */
  private onDeadline(b: RunningBatch): void {
    if (!this.isOpen(b)) return;
    b.collect();
    const now = Date.now();
    const { overdue, next } = b.overdue(now);
    if (overdue.length > 0) this.kill(timeoutOutcome(this.cfg.limits.timeoutMs), overdue, b);
    else this.armDeadline(b, next - now);
  }

  /** Ends batch `b` (see RunningBatch.end); its region takes another. */
  private settle(b: RunningBatch, stopped?: Outcome, blamed?: Blamed): void {
    const at = this.open.indexOf(b);
    if (at === -1) return;
    this.open[at] = undefined;
    this.openCount--;
    clearTimeout(b.deadlineTimer);
    b.end(stopped, blamed);
  }

  /** Every trigger of batch `b` has started and some await: read what is written; another batch may start beside it. */
  private batchAwaits(b: RunningBatch): void {
    if (!this.isOpen(b)) return;
    b.awaits();
    if (this.acceptsMore()) this.onAcceptsMore?.();
  }

  private endBatch(b: RunningBatch, err: unknown): void {
    if (!this.isOpen(b)) return; // ended already (killed)
    if (err === undefined) this.settle(b);
    else this.kill(this.classify(err));
  }

  /** The batch call itself failed: the isolate was terminated or disposed. */
  private classify(err: unknown): Outcome {
    const disposed = this.isolate.isDisposed;
    this.dead = true;
    this.dispose();
    if (disposed) return memoryOutcome(this.cfg.limits.memoryMb);
    const message = (err as Error)?.message;
    if (message === SYNC_TIMEOUT_MESSAGE) return this.syncTimeoutOutcome();
    return failure(ErrorCodes.failed, typeof message === "string" ? message : String(err));
  }

  /**
   * Disposes the isolate (the pool replaces it) and ends its batches. The triggers `blamed` of batch `on`
   * answer `outcome` ("all": every trigger in flight of every batch). Without them, the batch whose code
   * is on the isolate's stack (else the oldest) is the one, and its blame() says who; the triggers in
   * flight of the other batches answer that they were stopped beside it.
   */
  kill(outcome: Outcome, blamed?: Blamed, on?: RunningBatch): void {
    const batches = this.running();
    // Who ran is read from the shared area before the isolate goes.
    const culprit = on ?? batches.find((b) => b.holdsIsolate()) ?? batches[0];
    const culprits = blamed ?? culprit?.blame();
    // Triggers past their deadline answer timeout, whoever the culprit (two limits can end the isolate
    // at about the same moment, and only one of them is the one that does).
    if (culprits !== "all") {
      const now = Date.now();
      const timedOut = timeoutOutcome(this.cfg.limits.timeoutMs);
      for (const b of batches) if (b !== culprit) b.answerOverdue(now, timedOut);
    }
    this.dead = true;
    this.dispose();
    for (const b of batches) this.settle(b, outcome, culprits === "all" ? "all" : b === culprit ? culprits : []);
  }

  /**
   * CPU time per trigger in flight since the oldest of them was first seen (see the header): what the
   * pool's ticker holds against the budget.
   */
  cpuUsedNs(): bigint {
    if (!this.busy) return 0n;
    try {
      const now = this.isolate.cpuTime;
      // The oldest trigger in flight (of the oldest batch that has one) keys the count.
      let key = "";
      let flying = 0;
      for (const b of this.running()) {
        const f = b.inFlight();
        if (key === "" && f.length > 0) key = `${b.id}:${f[0]}`;
        flying += f.length;
      }
      if (key !== this.cpuKey) {
        this.cpuKey = key;
        this.startCpu = now;
      }
      return (now - this.startCpu) / BigInt(Math.max(1, flying));
    } catch {
      return 0n;
    }
  }

  async heapBytes(): Promise<number> {
    if (this.dead) return 0;
    try {
      const stats = await settleWithin(this.isolate.getHeapStatistics(), 250);
      if (stats) this.lastHeapBytes = stats.used_heap_size + stats.externally_allocated_size;
    } catch {
      // disposed meanwhile
    }
    return this.lastHeapBytes;
  }

  /** Ends a batch in flight as unavailable, and disposes the isolate. */
  close(): void {
    if (this.busy) this.kill(UNAVAILABLE, "all");
    else this.dispose();
  }

  dispose(): void {
    this.dead = true;
    // Background preparations waiting for a turn go on and fail fast on the disposed isolate; host calls
    // waiting for a turn end without being made.
    for (const w of this.idleWaiters.splice(0)) w();
    this.hostCalls.close();
    this.warm?.answers.close();
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
