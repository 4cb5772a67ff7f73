// One batch of triggers handed to an isolate, seen from the runtime host: which triggers have their
// answer, what the isolate's result channel says about the others (started when, result written or
// not), and who gets which answer when the batch ends, normally or with its isolate stopped.
// IsolateSlot decides when a batch ends; this decides how each of its triggers is answered.

import { ErrorCodes, failure, type Outcome } from "../../host/outcome.js";
import type { Job } from "../../host/hosted-workload.js";
import { RESULT_KIND, SIGNAL, type ResultChannel } from "./result-channel.js";


/** Who answers a stop: these indices, or "all" (every trigger in flight answers the stop itself). */
export type Blamed = number[] | "all";

export class RunningBatch {
  /** When the batch was handed over: the deadline base until the isolate begins it, and the base of start times. */
  readonly dispatchedAt = Date.now();
  private readonly answered: boolean[];
  /** Results the isolate sends by callback: the shared area will not hold them. */
  private readonly byCallback: boolean[];
  /** Every trigger has started and some await (awaits()): the isolate may take another batch beside this one. */
  awaiting = false;
  /** The slot's timer for the earliest deadline of this batch's triggers. */
  deadlineTimer?: NodeJS.Timeout;

  /**
   * `finish` receives the triggers that never started (the pool queues them again); `timeoutMs` is the
   * workload's deadline per trigger.
   */
  constructor(
    readonly id: number,
    readonly jobs: Job[],
    private readonly channel: ResultChannel,
    private readonly timeoutMs: number,
    private readonly finish: (notStarted: Job[]) => void,
  ) {
    this.answered = jobs.map(() => false);
    this.byCallback = jobs.map(() => false);
  }

  /** Whether the isolate has begun this batch (until then nothing in the shared area is about it). */
  get begun(): boolean {
    return this.channel.begun(this.id);
  }

  private startedAt(k: number): number | undefined {
    return this.channel.startedAt(k, this.dispatchedAt);
  }

  /** Whether this batch's synchronous code (a handler call, or a result's encoding) is on the isolate's stack now. */
  holdsIsolate(): boolean {
    return this.begun && this.channel.running() >= 0;
  }

  /** Whether trigger k's result is written (or travels by callback) and not yet answered. */
  private hasResult(k: number): boolean {
    return this.byCallback[k] || this.channel.kind(k) !== RESULT_KIND.none;
  }

  /** Indices that have started and have no result yet, oldest first. */
  inFlight(): number[] {
    const flying: number[] = [];
    if (!this.begun) return flying;
    for (let k = 0; k < this.jobs.length; k++) {
      if (!this.answered[k] && !this.hasResult(k) && this.startedAt(k) !== undefined) flying.push(k);
    }
    return flying;
  }

  /** The earliest deadline of a trigger in flight (the batch's own until the isolate begins it). */
  nextDeadline(): number {
    if (!this.begun) return this.dispatchedAt + this.timeoutMs;
    let next = Date.now() + this.timeoutMs;
    for (const k of this.inFlight()) next = Math.min(next, this.startedAt(k)! + this.timeoutMs);
    return next;
  }

  /**
   * The triggers in flight past their deadline at `now` (with the one whose synchronous code holds the
   * isolate, which kept them from going on: it ends with them, as a timeout too, not as a bystander),
   * and when the next deadline comes if none is.
   */
  overdue(now: number): { overdue: number[]; next: number } {
    if (!this.begun) {
      const deadline = this.dispatchedAt + this.timeoutMs;
      return deadline <= now ? { overdue: [0], next: deadline } : { overdue: [], next: deadline };
    }
    const overdue: number[] = [];
    let next = now + this.timeoutMs;
    const flying = this.inFlight();
    for (const k of flying) {
      const deadline = this.startedAt(k)! + this.timeoutMs;
      if (deadline <= now) overdue.push(k);
      else next = Math.min(next, deadline);
    }
    const running = this.channel.running();
    if (overdue.length > 0 && flying.includes(running) && !overdue.includes(running)) overdue.push(running);
    return { overdue, next };
  }

  /**
   * Answers `timeout` to the triggers of this batch in flight past their deadline at `now`, however the
   * isolate came to be stopped: a trigger that overran its deadline is not a bystander of another stop.
   */
  answerOverdue(now: number, timeout: Outcome): void {
    if (!this.begun) return;
    for (const k of this.inFlight()) if (this.startedAt(k)! + this.timeoutMs <= now) this.answer(k, timeout);
  }

  private answer(index: number, outcome: Outcome): void {
    if (index >= this.jobs.length || this.answered[index]) return;
    this.answered[index] = true;
    this.jobs[index].resolve(outcome);
  }

  /** The batch call said some triggers still await: read what is written; another batch may start beside this one. */
  awaits(): void {
    this.awaiting = true;
    this.collect();
  }

  /** Answers the results the isolate has written to the shared area since the last look. */
  collect(): void {
    this.channel.clearCollectAsked();
    if (!this.begun) return;
    for (let k = 0; k < this.jobs.length; k++) {
      if (this.answered[k] || this.byCallback[k] || this.channel.kind(k) === RESULT_KIND.none) continue;
      // read() checks the entry: whatever the isolate wrote there is this trigger's answer alone.
      const outcome = this.channel.read(k, this.timeoutMs);
      if (outcome === "callback") this.byCallback[k] = true;
      else this.answer(k, outcome);
    }
  }

  /**
   * From inside the isolate: a result too large for the shared area (of RESULT_KIND `kind`), or a signal
   * (SIGNAL.collect: read now). Anything else the isolate might send is ignored or answered as a failure.
   */
  onResult(index: unknown, kind: unknown, value: unknown): void {
    if (index === SIGNAL.collect) {
      this.collect();
      return;
    }
    if (typeof index !== "number" || !Number.isInteger(index) || index < 0 || index >= this.jobs.length) return;
    const message = typeof value === "string" && value !== "" ? value : undefined;
    if (kind === RESULT_KIND.ok && (value === undefined || typeof value === "string" || value instanceof Uint8Array)) {
      this.answer(index, { ok: true, data: value });
    } else if (kind === RESULT_KIND.tooLarge) {
      this.answer(index, failure(ErrorCodes.tooLarge, message ?? "reply too large"));
    } else if (kind === RESULT_KIND.unavailable) {
      this.answer(index, failure(ErrorCodes.unavailable, message ?? "a host service is unavailable"));
    } else {
      this.answer(index, failure(ErrorCodes.failed, message ?? "the function failed"));
    }
  }

  /**
   * Who answers the stop when the isolate is stopped: the trigger whose code runs, else the oldest in
   * flight, else the first without a result.
   */
  blame(): number[] {
    if (!this.begun) return [0];
    const flying = this.inFlight();
    const running = this.channel.running();
    if (running >= 0 && flying.includes(running)) return [running];
    if (flying.length > 0) return [flying[0]];
    const next = this.answered.findIndex((answered, k) => !answered && !this.hasResult(k));
    return next < 0 ? [] : [next];
  }

  /**
   * Ends the batch: answers what the isolate wrote; if it was stopped, `stopped` for the triggers blamed
   * (`blamed`, or as blame() says), an error for the others in flight, and the triggers that never
   * started go back to the pool.
   */
  end(stopped?: Outcome, blamed?: Blamed): void {
    const lost = failure(ErrorCodes.failed, "the trigger's result was lost");
    if (stopped === undefined) {
      this.collect();
      // Callbacks are delivered before the call's own settlement: anything unanswered was lost.
      for (let k = 0; k < this.jobs.length; k++) this.answer(k, lost);
      this.finish([]);
      return;
    }
    // The culprits first: a result one of them wrote while the isolate was being stopped (it may catch
    // the error that ends its host call) does not undo the decision.
    const culprits = blamed === "all" ? [] : (blamed ?? this.blame());
    for (const k of culprits) this.answer(k, stopped);
    this.collect();
    const why = stopped.ok ? "it was stopped" : stopped.message;
    const beside = blamed === "all" ? stopped : failure(ErrorCodes.failed, `stopped with its isolate, because a trigger running beside it ended so: ${why}`);
    const begun = this.begun;
    const notStarted: Job[] = [];
    for (let k = 0; k < this.jobs.length; k++) {
      if (this.answered[k]) continue;
      if (begun && this.hasResult(k)) this.answer(k, lost);
      else if (begun && this.startedAt(k) !== undefined) this.answer(k, beside);
      else notStarted.push(this.jobs[k]);
    }
    this.finish(notStarted);
  }
}
