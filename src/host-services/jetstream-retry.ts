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

/**
 * Runs `op` until it succeeds, fails for good, or `budgetMs` runs out. An attempt that outlives the
 * budget is left to finish on its own; the call answers `unavailable` in time. `op` gets whether an
 * earlier attempt may have been applied (so a create or update can tell "exists" from its own write).
 * `stream`, when known, is named in the error if the cause does not name it already.
 */
export async function withJetStreamRetry<T>(budgetMs: number, op: (info: RetryInfo) => Promise<T>, stream?: string): Promise<T> {
  const started = Date.now();
  const deadline = started + Math.max(budgetMs - ANSWER_MARGIN_MS, 0);
  const info: RetryInfo = { ambiguous: false };
  let lastCause: string | undefined;
  for (let attempt = 0; ; attempt++) {
    let timer: NodeJS.Timeout | undefined;
    const outOfTime = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new OutOfTime()), Math.max(deadline - Date.now(), 0));
    });
    try {
      return await Promise.race([op(info), outOfTime]);
    } catch (err) {
      const transient = err instanceof OutOfTime ? { cause: lastCause ?? "JetStream did not answer in time", ambiguous: true } : transientCause(err);
      if (!transient) throw err;
      lastCause = transient.cause;
      info.ambiguous ||= transient.ambiguous;
      // The last pause is cut to the time left, so a leader elected just before the deadline still counts.
      const wait = Math.min(backoffMs(attempt), deadline - Date.now() - 5);
      if (err instanceof OutOfTime || wait <= 0) {
        // A timeout or an API error does not say which stream: name it when the caller knows.
        const cause = stream && !transient.cause.includes(stream) ? `${transient.cause} (stream ${stream})` : transient.cause;
        throw new HostError("unavailable", `JetStream temporarily unavailable: ${cause} (retried for ${Date.now() - started} ms)`);
      }
      await new Promise((r) => setTimeout(r, wait));
    } finally {
      clearTimeout(timer);
    }
  }
}

class OutOfTime extends Error {}

/** The stream behind the call's bucket (as HostServices names buckets), for error messages; undefined if the name is bad. */
export function streamName(
  ctx: { workload: { name: string; namespace: string }; header(name: string): string | undefined },
  bucketName: (namespace: string, bucket: string) => string,
  prefix: string,
): string | undefined {
  try {
    return prefix + bucketName(ctx.workload.namespace, ctx.header(HostHeaders.bucket) ?? ctx.workload.name);
  } catch {
    return undefined; // the call itself fails with bad_request
  }
}
