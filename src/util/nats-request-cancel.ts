// nats.js 3.x (@nats-io/nats-core's RequestOne): once a request is answered, resolver() settles its
// promise and then calls cancel(), and cancel() rejects that settled promise anyway, with a new
// RequestError("cancelled"): an Error, stack trace and all, built for every request that succeeds and
// then ignored. Host services make a request per KV call, so in the runtime host it was 12% of the main
// thread's busy time under the KV function bench; without it the async KV function answered about 15%
// more requests (alternated runs, 2 clients x 8 in flight).
//
// skipCancelOfAnsweredRequests() keeps cancel() as it is for a request still open (a timeout, a cancel
// from outside) and skips only the rejection of one resolver() has settled. Applied once per process,
// only if RequestOne still has the shape it patches (its methods, and cancel() doing what the
// replacement repeats); otherwise nats.js is left alone.

import { RequestOne } from "@nats-io/nats-core/internal";

const SETTLED = Symbol("nex.settled");

interface PatchableRequest {
  [SETTLED]?: boolean;
  timer?: { cancel(): void };
  mux: { cancel(r: unknown): void };
}

let applied = false;

/** Whether the patch is in place in this process. */
export function answeredRequestsSkipCancel(): boolean {
  return applied;
}

export function skipCancelOfAnsweredRequests(): boolean {
  if (applied) return true;
  const proto = (RequestOne as unknown as { prototype?: Record<string, unknown> } | undefined)?.prototype;
  const resolver = proto?.resolver;
  const cancel = proto?.cancel;
  if (!proto || typeof resolver !== "function" || typeof cancel !== "function") return false;
  // What the replacement repeats of cancel() must still be what cancel() does (a later nats.js may differ).
  const body = String(cancel);
  if (!body.includes("this.mux.cancel(this)") || !body.includes("this.timer")) return false;
  proto.resolver = function (this: PatchableRequest, ...args: unknown[]): unknown {
    this[SETTLED] = true;
    return resolver.apply(this, args);
  };
  proto.cancel = function (this: PatchableRequest, err?: unknown): unknown {
    if (err !== undefined || !this[SETTLED]) return cancel.call(this, err);
    // What cancel() does besides the rejection: the timer stops and the inbox forgets the request.
    try {
      this.timer?.cancel();
      this.mux.cancel(this);
      return undefined;
    } catch {
      return cancel.call(this, err);
    }
  };
  applied = true;
  return true;
}
