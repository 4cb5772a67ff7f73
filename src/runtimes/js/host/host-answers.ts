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
 * Where the calls of one hand-over go: `deadline()` is asked once per hand-over (epoch ms: the calls' deadline),
 * `call` once per call, with every argument as the guest sent it (the host bridge checks them).
 */
export interface HostCallsOut {
  deadline(): number;
  call(service: unknown, method: unknown, headers: unknown, body: unknown, deadline: number): Promise<HostCallResult>;
}

/** What the bootstrap's setup returns (isolate/bootstrap.ts): [makeRunner, deliverAnswers]. */
export type SetupResult = [unknown, (answers: unknown) => void];

export class HostAnswers {
  /** The guest's hostOut: [id, service, method, headers, body, ...]. */
  readonly out: ivm.Callback;
  private deliver?: ivm.Reference<(answers: unknown) => void>;
  /** [id, answer, id, answer, ...] not yet handed in. */
  private ready: unknown[] = [];
  private scheduled = false;
  private closed = false;

  constructor(to: HostCallsOut) {
    this.out = new ivm.Callback(
      (calls: unknown) => {
        if (this.closed || !Array.isArray(calls) || calls.length < 5) return;
        const deadline = to.deadline();
        for (let i = 0; i + 4 < calls.length; i += 5) {
          const id: unknown = calls[i];
          if (typeof id !== "number" || !Number.isSafeInteger(id)) continue;
          void to.call(calls[i + 1], calls[i + 2], calls[i + 3], calls[i + 4], deadline).then((result) => this.answer(id, result));
        }
      },
      { ignored: true },
    );
  }

  /** The context's deliverAnswers, once setup has returned it. */
  attach(deliver: ivm.Reference<(answers: unknown) => void>): void {
    this.deliver = deliver;
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
    try {
      // The continuations of the awaiting triggers run inside this call, under the same watch as
      // any other code of theirs (the slot's CPU ticker and deadlines); a disposed isolate just refuses.
      this.deliver.apply(undefined, [new ivm.ExternalCopy(answers).copyInto({ release: true })]).catch(() => undefined);
    } catch {
      // The isolate is gone.
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
