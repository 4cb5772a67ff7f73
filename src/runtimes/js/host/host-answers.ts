// The awaitable host calls of one isolate context: the guest sends the calls it made in one run of its
// code through a fire-and-forget callback (hostOut: [id, service, method, headers, body, ...]), and the
// answers of every call that ends in one event-loop turn go back into the isolate in one call (the
// guest's deliverAnswers, guest/host-services.js).
//
// Why: an isolated-vm Reference call with a promise result costs a task on each side per call (the
// call on the host's loop, its settlement on the isolate's thread), and each wakes a thread. Under load
// the calls of many triggers are made in the same run of the isolate and end in the same turn (their
// answers come in one socket read), so one hand-over each way carries them all.

import ivm from "isolated-vm";
import type { HostCallResult } from "../../host/host-bridge.js";

/**
 * Where the calls of one hand-over go: `deadline()` is asked once per hand-over (epoch ms: the calls'
 * deadline), `call` once per call, with every argument as the guest sent it (the host bridge checks them).
 * `refusal()`, when set, says why calls may not be made now (undefined: they may).
 * `sliceTimeoutMs` bounds each hand-over of answers into the isolate, per answer in it (the code they
 * resume runs in it);
 * `onDeliverFailed` hears why one failed (a slice past that bound: "Script execution timed out.").
 */
export interface HostCallsOut {
  deadline(): number;
  call(service: unknown, method: unknown, headers: unknown, body: unknown, deadline: number): Promise<HostCallResult>;
  refusal?(): string | undefined;
  sliceTimeoutMs?: number;
  onDeliverFailed?(err: unknown): void;
}

/** What the bootstrap's setup returns (isolate/bootstrap.ts): [makeRunner, deliverAnswers]. */
export type SetupResult = [unknown, (answers: unknown) => void];

function internal(message: string): HostCallResult {
  return { ok: false, code: "internal", message };
}

export class HostAnswers {
  /** The guest's hostOut: [id, service, method, headers, body, ...]. */
  readonly out: ivm.Callback;
  private deliver?: ivm.Reference<(answers: unknown) => void>;
  /** [id, answer, id, answer, ...] not yet handed in. */
  private ready: unknown[] = [];
  private scheduled = false;
  private closed = false;

  constructor(private readonly to: HostCallsOut) {
    this.out = new ivm.Callback((calls: unknown) => this.send(calls), { ignored: true });
  }

  /** The calls of one hand-over; each is answered, whatever happens to it (a guest awaits each). */
  private send(calls: unknown): void {
    if (this.closed || !Array.isArray(calls) || calls.length < 5) return;
    let deadline = 0;
    let refused: string | undefined;
    try {
      refused = this.to.refusal?.();
      deadline = this.to.deadline();
    } catch (err) {
      refused = `host call failed: ${err instanceof Error ? err.message : String(err)}`;
    }
    for (let i = 0; i + 4 < calls.length; i += 5) {
      const id: unknown = calls[i];
      if (typeof id !== "number" || !Number.isSafeInteger(id)) continue;
      if (refused !== undefined) {
        this.answer(id, { ok: false, code: "bad_request", message: refused });
        continue;
      }
      let answer: Promise<HostCallResult>;
      try {
        answer = this.to.call(calls[i + 1], calls[i + 2], calls[i + 3], calls[i + 4], deadline);
      } catch (err) {
        answer = Promise.reject(err);
      }
      answer.then(
        (result) => this.answer(id, result),
        (err: unknown) => this.answer(id, internal(`host call failed: ${err instanceof Error ? err.message : String(err)}`)),
      );
    }
  }

  /** Takes the context's deliverAnswers from what setup returned, and hands back its makeRunner (the caller releases it). */
  async takeSetup(made: ivm.Reference<SetupResult>): Promise<ivm.Reference<unknown>> {
    const makeRunner = await made.get(0, { reference: true });
    this.deliver = await made.get(1, { reference: true });
    return makeRunner;
  }

  private answer(id: number, result: HostCallResult): void {
    if (this.closed) return;
    this.ready.push(id, result);
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => this.flush());
  }

  private flush(): void {
    this.scheduled = false;
    const answers = this.ready;
    this.ready = [];
    if (this.closed || !this.deliver || answers.length === 0) return;
    let copy: ivm.Copy<unknown[]>;
    try {
      copy = new ivm.ExternalCopy(answers).copyInto({ release: true });
    } catch {
      // One answer that will not copy does not take the others with it.
      try {
        copy = new ivm.ExternalCopy(answers.map((a, i) => (i % 2 === 0 || copies(a) ? a : internal("the host call's answer could not be copied")))).copyInto({ release: true });
      } catch (err) {
        // Not even that (out of memory): the triggers waiting on these end at their deadlines.
        this.to.onDeliverFailed?.(err);
        return;
      }
    }
    try {
      // Each answer may resume a trigger, each with its own bound, as a batch of triggers has.
      const per = this.to.sliceTimeoutMs;
      const timeout = per === undefined ? undefined : Math.min(2 ** 31 - 1, per * (answers.length / 2));
      this.deliver.apply(undefined, [copy], timeout === undefined ? undefined : { timeout }).catch((err: unknown) => this.to.onDeliverFailed?.(err));
    } catch (err) {
      // The isolate is gone.
      this.to.onDeliverFailed?.(err);
    }
  }

  /** Answers still to come are dropped (the context is gone). */
  close(): void {
    this.closed = true;
    this.ready = [];
    try {
      this.deliver?.release();
    } catch {
      // released with the isolate
    }
  }
}

function copies(value: unknown): boolean {
  try {
    new ivm.ExternalCopy(value).release();
    return true;
  } catch {
    return false;
  }
}
