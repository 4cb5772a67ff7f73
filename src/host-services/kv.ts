// kv.get/set/create/update/delete/purge/keys/history. Values are the request/reply bodies; the revision
// comes back in Nex-Revision. Every JetStream step is retried while JetStream is briefly unavailable
// (jetstream-retry.ts): get/keys/history read again, set/delete/purge write again (the same value, so a
// repeat is harmless: at worst one more revision, or, as for any set, it lands after another writer's). create and update are compare-and-set: when an earlier
// attempt timed out it may have been applied, so a retry that then meets "exists" / "wrong revision"
// looks at the key, and if it holds our value takes that as our write. The edge this leaves: another
// writer that stored the very same bytes meanwhile is taken for ours.

import { HostHeaders, MAX_HOST_VALUE_BYTES } from "../protocol/host-services.js";
import type { KV } from "@nats-io/kv";
import { kvBucketName } from "../protocol/buckets.js";
import { HostError } from "./errors.js";
import { isCasConflict } from "../util/kv-create.js";
import { type RetryInfo, streamName, withJetStreamRetry } from "./jetstream-retry.js";
import type { HostCallContext, HostMethod } from "./server.js";

const KEY = /^[-/_=.a-zA-Z0-9]+$/;

function key(ctx: HostCallContext): string {
  const k = ctx.required(HostHeaders.key);
  if (!KEY.test(k) || k.startsWith(".") || k.endsWith(".") || k.length > 1024) {
    throw new HostError("bad_request", `invalid key ${JSON.stringify(k)}: use letters, digits and - / _ = . (not at the ends)`);
  }
  return k;
}

function revisionHeader(revision: number): Record<string, string> {
  return { [HostHeaders.revision]: String(revision) };
}


/** JetStream's compare-and-set failures, in the workload's words. */
function casError(err: unknown, onConflict: HostError): never {
  const text = err instanceof Error ? err.message : String(err);
  if (isCasConflict(err)) throw onConflict;
  if (/maximum bytes|message size exceeds/i.test(text)) throw new HostError("too_large", text);
  throw err;
}

/**
 * One KV attempt on one key waits at most this long before the next starts: it answers in milliseconds,
 * and one lost with the connection to a stopped server would otherwise hold the call (and a synchronous
 * function's isolate, and every trigger queued behind it) for nats.js' whole 5 s.
 */
const ATTEMPT_MS = 1000;

/**
 * `op` on the workload's bucket, retried while JetStream is briefly unavailable, within the call's time.
 * `whole`: a listing (keys, history) that may take a while on a large bucket gets the whole budget per attempt.
 */
function retrying<T>(ctx: HostCallContext, op: (kv: KV, info: RetryInfo) => Promise<T>, whole = false): Promise<T> {
  const stream = (): string | undefined => streamName(ctx, kvBucketName, "KV_");
  return withJetStreamRetry(ctx.timeoutMs(), async (info) => op(await ctx.kv(), info), { stream, attemptMs: whole ? undefined : ATTEMPT_MS });
}

/**
 * A compare-and-set that conflicted after an attempt that may have been applied: the revision of our own
 * value if the key holds it (above `after`), so the lost ack does not turn our write into a conflict.
 */
async function ownWrite(kv: KV, k: string, value: Uint8Array, after: number): Promise<number | undefined> {
  const entry = await kv.get(k);
  if (entry === null || entry.operation !== "PUT" || entry.revision <= after) return undefined;
  return Buffer.compare(Buffer.from(entry.value), Buffer.from(value)) === 0 ? entry.revision : undefined;
}

export const kvMethods: Record<string, HostMethod> = {
  async get(ctx) {
    const k = key(ctx);
    const entry = await retrying(ctx, (kv) => kv.get(k));
    if (entry === null || entry.operation !== "PUT") throw new HostError("not_found", `no key ${k}`);
    return { body: entry.value, headers: revisionHeader(entry.revision) };
  },

  async set(ctx) {
    const k = key(ctx);
    const revision = await retrying(ctx, async (kv) => {
      try {
        return await kv.put(k, ctx.body);
      } catch (err) {
        casError(err, new HostError("internal", "put failed"));
      }
    });
    return { headers: revisionHeader(revision) };
  },

  async create(ctx) {
    const k = key(ctx);
    const revision = await retrying(ctx, async (kv, info) => {
      try {
        return await kv.create(k, ctx.body);
      } catch (err) {
        const mine = info.ambiguous && isCasConflict(err) ? await ownWrite(kv, k, ctx.body, 0) : undefined;
        if (mine !== undefined) return mine;
        casError(err, new HostError("exists", `key ${k} already exists`));
      }
    });
    return { headers: revisionHeader(revision) };
  },

  async update(ctx) {
    const k = key(ctx);
    const revision = Number(ctx.required(HostHeaders.revision));
    if (!Number.isInteger(revision) || revision < 0) throw new HostError("bad_request", `${HostHeaders.revision} must be a whole number`);
    const next = await retrying(ctx, async (kv, info) => {
      try {
        return await kv.update(k, ctx.body, revision);
      } catch (err) {
        const mine = info.ambiguous && isCasConflict(err) ? await ownWrite(kv, k, ctx.body, revision) : undefined;
        if (mine !== undefined) return mine;
        casError(err, new HostError("wrong_revision", `key ${k} is not at revision ${revision}`));
      }
    });
    return { headers: revisionHeader(next) };
  },

  async delete(ctx) {
    const k = key(ctx);
    await retrying(ctx, (kv) => kv.delete(k));
    return {};
  },

  async purge(ctx) {
    const k = key(ctx);
    await retrying(ctx, (kv) => kv.purge(k));
    return {};
  },

  async keys(ctx) {
    const filter = ctx.header(HostHeaders.filter);
    const out = await retrying(ctx, async (kv) => {
      const found: string[] = [];
      // Stops at what one answer can hold (the JSON array's size), before the sort and the stringify
      // that would otherwise run over a whole bucket of tiny keys in one go.
      let bytes = 2;
      for await (const k of await kv.keys(filter)) {
        bytes += k.length + 3;
        if (bytes > MAX_HOST_VALUE_BYTES) throw new HostError("too_large", `the keys${filter ? ` matching ${filter}` : ""} do not fit in one answer of ${MAX_HOST_VALUE_BYTES} bytes: list them with a narrower filter`);
        found.push(k);
      }
      return found;
    }, true);
    return { body: JSON.stringify(out.sort()) };
  },

  async history(ctx) {
    const k = key(ctx);
    const out = await retrying(ctx, async (kv) => {
      const found: { revision: number; operation: string; value: string; created: string }[] = [];
      for await (const e of await kv.history({ key: k })) {
        found.push({ revision: e.revision, operation: e.operation, value: Buffer.from(e.value).toString("base64"), created: e.created.toISOString() });
      }
      return found;
    }, true);
    return { body: JSON.stringify(out) };
  },
};
