// Retries a JetStream operation that failed transiently (jetstream-errors.ts) with a short backoff, within
// the host call's own time budget; then fails with code `unavailable` naming the cause. Anything else
// (not found, wrong revision, too large, bad request) fails at once, as it did.

import { HostHeaders } from "../protocol/host-services.js";
import { HostError } from "./errors.js";
import { transientCause } from "./jetstream-errors.js";

/** Backoff between attempts: 25, 50, 100, 200, then 400 ms. */
export function backoffMs(attempt: number): number {
  return Math.min(25 * 2 ** attempt, 400);
}

/** Time kept back from the call's budget so the answer reaches the caller before it gives up waiting. */
const ANSWER_MARGIN_MS = 100;

export interface RetryInfo {
  /** An earlier attempt failed without an answer (a timeout), so it may have been applied. */
  ambiguous: boolean;
}

export interface RetryOptions {
  /** The stream behind the call, named in the error when the cause does not name it already (worked out only then). */
  stream?: () => string | undefined;
  /**
   * Give up waiting on one attempt after this long and try again (default: the whole budget). A request
   * in flight when the client's server goes away gets no answer until nats.js' own 5 s timeout, though the
   * client has reconnected long before: a retry then goes through the new server. Only for operations a
   * repeat is harmless to (the abandoned attempt may still land).
   */
  attemptMs?: number;
}

/**
 * Runs `op` until it succeeds, fails for good, or `budgetMs` runs out. An attempt that outlives the
 * budget (or attemptMs) is left to finish on its own; the call answers `unavailable` in time. `op` gets
 * whether an earlier attempt may have been applied (so a create or update can tell "exists" from its own
 * write).
 */
export async function withJetStreamRetry<T>(budgetMs: number, op: (info: RetryInfo) => Promise<T>, opts: RetryOptions = {}): Promise<T> {
  const started = Date.now();
  const deadline = started + Math.max(budgetMs - ANSWER_MARGIN_MS, 0);
  const info: RetryInfo = { ambiguous: false };
  let lastCause: string | undefined;
  for (let attempt = 0; ; attempt++) {
    let timer: NodeJS.Timeout | undefined;
    const left = Math.max(deadline - Date.now(), 0);
    const outOfTime = new Promise<never>((_, reject) => {
      const wait = Math.min(left, opts.attemptMs ?? left);
      timer = setTimeout(() => reject(new OutOfTime(wait >= left)), wait);
    });
    try {
      return await Promise.race([op(info), outOfTime]);
    } catch (err) {
      const timedOut = err instanceof OutOfTime;
      const transient = timedOut ? { cause: lastCause ?? "JetStream did not answer in time", ambiguous: true } : transientCause(err);
      if (!transient) throw err;
      lastCause = transient.cause;
      info.ambiguous ||= transient.ambiguous;
      // The last pause is cut to the time left, so a leader elected just before the deadline still counts.
      const wait = Math.min(backoffMs(attempt), deadline - Date.now() - 5);
      if ((timedOut && err.final) || wait <= 0) {
        // A timeout or an API error does not say which stream: name it when the caller knows.
        const stream = opts.stream?.();
        const cause = stream && !transient.cause.includes(stream) ? `${transient.cause} (stream ${stream})` : transient.cause;
        throw new HostError("unavailable", `JetStream temporarily unavailable: ${cause} (retried for ${Date.now() - started} ms)`);
      }
      await new Promise((r) => setTimeout(r, wait));
    } finally {
      clearTimeout(timer);
    }
  }
}

/** An attempt given up on; `final` when the whole budget is spent. */
class OutOfTime extends Error {
  constructor(readonly final: boolean) {
    super("out of time");
  }
}

/** The stream behind the call's bucket (as HostServices names buckets), for error messages. */
export function streamName(
  ctx: { workload: { name: string; namespace: string }; header(name: string): string | undefined },
  bucketName: (namespace: string, bucket: string) => string,
  prefix: string,
): string {
  return prefix + bucketName(ctx.workload.namespace, ctx.header(HostHeaders.bucket) ?? ctx.workload.name);
}

/**
 * For the node's own JetStream work (opening its buckets and watches, fetching an artifact): runs `op`
 * again after a growing pause (0.2 s up to 2 s) while it fails transiently, up to `attempts` times, then
 * throws its last error. A create that nats-server 2.9 places on a server that is down only times out,
 * so another try usually lands on a live one.
 */
export async function retryWhileTransient<T>(op: () => Promise<T>, attempts = 8): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await op();
    } catch (err) {
      if (attempt >= attempts || !transientCause(err)) throw err;
      await new Promise((r) => setTimeout(r, Math.min(100 * 2 ** attempt, 2000)));
    }
  }
}
