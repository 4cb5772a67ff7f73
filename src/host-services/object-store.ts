// objectStore.get/put/info/delete/list, in a store per namespace and workload name (or Nex-Bucket).
// Each is retried while JetStream is briefly unavailable (jetstream-retry.ts): reads read again, a put
// writes the whole object again (nats.js replaces the earlier chunks), a delete of an object that an
// earlier attempt deleted already is not an error. An attempt is waited on for the whole budget (a large
// object takes a while), not cut short as KV attempts are.

import { HostHeaders } from "../protocol/host-services.js";
import type { ObjectStore } from "@nats-io/obj";
import { objectBucketName } from "../protocol/buckets.js";
import { HostError } from "./errors.js";
import { type RetryInfo, streamName, withJetStreamRetry } from "./jetstream-retry.js";
import type { HostCallContext, HostMethod } from "./server.js";

/** `op` on the workload's store, retried while JetStream is briefly unavailable, within the call's time. */
function retrying<T>(ctx: HostCallContext, op: (store: ObjectStore, info: RetryInfo) => Promise<T>): Promise<T> {
  return withJetStreamRetry(ctx.timeoutMs(), async (info) => op(await ctx.objects(), info), { stream: () => streamName(ctx, objectBucketName, "OBJ_") });
}

function name(ctx: HostCallContext): string {
  const n = ctx.required(HostHeaders.key);
  if (n.length === 0 || n.length > 1024) throw new HostError("bad_request", "object name must be 1-1024 characters");
  return n;
}

interface PublicInfo {
  name: string;
  size: number;
  chunks: number;
  digest: string;
  mtime: string;
}

function publicInfo(info: { name: string; size: number; chunks: number; digest: string; mtime: string }): PublicInfo {
  return { name: info.name, size: info.size, chunks: info.chunks, digest: info.digest, mtime: info.mtime };
}

export const objectStoreMethods: Record<string, HostMethod> = {
  async get(ctx) {
    const n = name(ctx);
    const data = await retrying(ctx, (store) => store.getBlob(n));
    if (data === null) throw new HostError("not_found", `no object ${n}`);
    return { body: data };
  },

  async put(ctx) {
    const n = name(ctx);
    const info = await retrying(ctx, (store) => store.putBlob({ name: n }, ctx.body));
    return { body: JSON.stringify(publicInfo(info)) };
  },

  async info(ctx) {
    const n = name(ctx);
    const info = await retrying(ctx, (store) => store.info(n));
    if (info === null || info.deleted) throw new HostError("not_found", `no object ${n}`);
    return { body: JSON.stringify(publicInfo(info)) };
  },

  async delete(ctx) {
    const n = name(ctx);
    await retrying(ctx, async (store, info) => {
      const found = await store.info(n);
      if (found === null || found.deleted) {
        // Our own earlier attempt may have deleted it before its answer was lost.
        if (info.ambiguous) return;
        throw new HostError("not_found", `no object ${n}`);
      }
      await store.delete(n);
    });
    return {};
  },

  async list(ctx) {
    const list = await retrying(ctx, (store) => store.list());
    return { body: JSON.stringify(list.filter((i) => !i.deleted).map(publicInfo)) };
  },
};
