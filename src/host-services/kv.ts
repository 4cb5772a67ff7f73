// kv.get/set/create/update/delete/purge/keys/history. Values are the request/reply bodies; the revision
// comes back in Nex-Revision.

import { HostHeaders } from "../protocol/host-services.js";
import { HostError } from "./errors.js";
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
  if (/wrong last sequence/i.test(text)) throw onConflict;
  if (/maximum bytes|message size exceeds/i.test(text)) throw new HostError("too_large", text);
  throw err;
}

export const kvMethods: Record<string, HostMethod> = {
  async get(ctx) {
    const k = key(ctx);
    const entry = await (await ctx.kv()).get(k);
    if (entry === null || entry.operation !== "PUT") throw new HostError("not_found", `no key ${k}`);
    return { body: entry.value, headers: revisionHeader(entry.revision) };
  },

  async set(ctx) {
    const k = key(ctx);
    try {
      return { headers: revisionHeader(await (await ctx.kv()).put(k, ctx.body)) };
    } catch (err) {
      casError(err, new HostError("internal", "put failed"));
    }
  },

  async create(ctx) {
    const k = key(ctx);
    try {
      return { headers: revisionHeader(await (await ctx.kv()).create(k, ctx.body)) };
    } catch (err) {
      casError(err, new HostError("exists", `key ${k} already exists`));
    }
  },

  async update(ctx) {
    const k = key(ctx);
    const revision = Number(ctx.required(HostHeaders.revision));
    if (!Number.isInteger(revision) || revision < 0) throw new HostError("bad_request", `${HostHeaders.revision} must be a whole number`);
    try {
      return { headers: revisionHeader(await (await ctx.kv()).update(k, ctx.body, revision)) };
    } catch (err) {
      casError(err, new HostError("wrong_revision", `key ${k} is not at revision ${revision}`));
    }
  },

  async delete(ctx) {
    await (await ctx.kv()).delete(key(ctx));
    return {};
  },

  async purge(ctx) {
    await (await ctx.kv()).purge(key(ctx));
    return {};
  },

  async keys(ctx) {
    const filter = ctx.header(HostHeaders.filter);
    const out: string[] = [];
    for await (const k of await (await ctx.kv()).keys(filter)) out.push(k);
    return { body: JSON.stringify(out.sort()) };
  },

  async history(ctx) {
    const k = key(ctx);
    const out: { revision: number; operation: string; value: string; created: string }[] = [];
    for await (const e of await (await ctx.kv()).history({ key: k })) {
      out.push({ revision: e.revision, operation: e.operation, value: Buffer.from(e.value).toString("base64"), created: e.created.toISOString() });
    }
    return { body: JSON.stringify(out) };
  },
};
