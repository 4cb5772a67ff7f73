// objectStore.get/put/info/delete/list, in a store per namespace and workload name (or Nex-Bucket).

import { HostHeaders } from "../protocol/host-services.js";
import { HostError } from "./errors.js";
import type { HostCallContext, HostMethod } from "./server.js";

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
    const data = await (await ctx.objects()).getBlob(n);
    if (data === null) throw new HostError("not_found", `no object ${n}`);
    return { body: data };
  },

  async put(ctx) {
    const n = name(ctx);
    const info = await (await ctx.objects()).putBlob({ name: n }, ctx.body);
    return { body: JSON.stringify(publicInfo(info)) };
  },

  async info(ctx) {
    const n = name(ctx);
    const info = await (await ctx.objects()).info(n);
    if (info === null || info.deleted) throw new HostError("not_found", `no object ${n}`);
    return { body: JSON.stringify(publicInfo(info)) };
  },

  async delete(ctx) {
    const n = name(ctx);
    const store = await ctx.objects();
    const info = await store.info(n);
    if (info === null || info.deleted) throw new HostError("not_found", `no object ${n}`);
    await store.delete(n);
    return {};
  },

  async list(ctx) {
    const list = await (await ctx.objects()).list();
    return { body: JSON.stringify(list.filter((i) => !i.deleted).map(publicInfo)) };
  },
};
