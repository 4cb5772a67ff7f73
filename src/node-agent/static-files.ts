// How a gateway serves a static route (nex run --type static): the route's manifest maps a path below the
// prefix to a file in the NEX_ARTIFACTS object store, named by its SHA-256. Files are content-addressed,
// so what this node once read (and gzipped) stays right forever: a bounded LRU keeps them by hash.
//
// Paths: the part below the route's prefix, percent-decoded once after refusing encoded separators and
// dots (%2f %5c %2e), backslashes, NUL and `..`; "" and a trailing "/" mean index.html; a directory
// without its "/" (one holding an index.html) is redirected to it, so relative links work. ETag is the
// file's SHA-256 ("<sha>" or "<sha>-gz" for the gzip variant); If-None-Match of either gives 304. Gzip when
// the client accepts it, the type is text-like and the file is 256 B to 4 MiB (compressed once, cached).

import http from "node:http";
import { promisify } from "node:util";
import { gzip as gzipCb } from "node:zlib";
import type { NatsConnection } from "@nats-io/transport-node";
import { Objm, type ObjectStore } from "@nats-io/obj";
import { ARTIFACT_BUCKET } from "../protocol/control.js";
import { compressible, type StaticFile } from "../protocol/static.js";

const gzip = promisify(gzipCb);

/** Bytes of files (and their gzip variants) the cache keeps at most. */
const CACHE_BYTES = 64 * 1024 * 1024;
const GZIP_MIN = 256;
const GZIP_MAX = 4 * 1024 * 1024;

export interface StaticAnswer {
  status: number;
  headers: http.OutgoingHttpHeaders;
  body: Uint8Array | string;
}

export class StaticFiles {
  private store?: Promise<ObjectStore>;
  private readonly cache = new Map<string, Uint8Array>();
  private cached = 0;
  private readonly loading = new Map<string, Promise<Uint8Array | null>>();
  private readonly gzipping = new Map<string, Promise<Uint8Array>>();

  constructor(private readonly nc: NatsConnection) {}

  /** The answer for a GET or HEAD of `rest` (the path below the prefix, as sent) on a route with these files. */
  async serve(files: ReadonlyMap<string, StaticFile>, prefix: string, rest: string, query: string, req: http.IncomingMessage): Promise<StaticAnswer> {
    // Encoded separators and dots, backslashes and NUL: refused before decoding, so no spelling reaches a file.
    if (/%(2f|5c|2e|00)|\\|\0/i.test(rest)) return text(400);
    let decoded: string;
    try {
      decoded = decodeURIComponent(rest);
    } catch {
      return text(400);
    }
    const segments = decoded.split("/");
    if (segments.some((s) => s === "..")) return text(400);
    // The route itself without its "/": redirected, so the page's relative links resolve below it.
    if (rest === "" && prefix !== "") return redirect(`${prefix}/${query}`);
    let p = decoded.replace(/^\/+/, "");
    if (p === "" || p.endsWith("/")) p += "index.html";
    const file = files.get(p);
    if (!file) {
      if (files.has(`${p}/index.html`)) {
        // Built from the folder's own path, never the path as sent: `//docs` would make `//docs/`, a link
        // to the host "docs".
        return redirect(`${prefix}/${p.split("/").map(encodeURIComponent).join("/")}/${query}`);
      }
      return text(404);
    }
    const wantsGzip = compressible(file.type) && file.size >= GZIP_MIN && file.size <= GZIP_MAX && acceptsGzip(req.headers["accept-encoding"]);
    const etag = `"${file.sha256}${wantsGzip ? "-gz" : ""}"`;
    const headers: http.OutgoingHttpHeaders = { "content-type": file.type, etag, "cache-control": "no-cache", vary: "Accept-Encoding" };
    if (etagMatches(req.headers["if-none-match"], file.sha256)) return { status: 304, headers, body: "" };
    let body = await this.bytes(file.sha256);
    if (!body) return text(404);
    if (wantsGzip) {
      body = await this.gzipped(file.sha256, body);
      headers["content-encoding"] = "gzip";
    }
    return { status: 200, headers, body };
  }

  private bytes(sha: string): Promise<Uint8Array | null> {
    const hit = this.cache.get(sha);
    if (hit) return Promise.resolve(this.touch(sha, hit));
    let loading = this.loading.get(sha);
    if (!loading) {
      loading = (async () => {
        this.store ??= new Objm(this.nc).open(ARTIFACT_BUCKET);
        const blob = await (await this.store).getBlob(sha);
        if (blob) this.put(sha, blob);
        return blob;
      })().finally(() => this.loading.delete(sha));
      this.loading.set(sha, loading);
    }
    return loading;
  }

  /** The gzip of a file: from the cache, or compressed once however many requests want it meanwhile. */
  private gzipped(sha: string, bytes: Uint8Array): Promise<Uint8Array> {
    const key = `${sha}-gz`;
    const hit = this.cache.get(key);
    if (hit) return Promise.resolve(this.touch(key, hit));
    let zipping = this.gzipping.get(key);
    if (!zipping) {
      zipping = (async () => {
        const z = new Uint8Array(await gzip(bytes));
        this.put(key, z);
        return z;
      })().finally(() => this.gzipping.delete(key));
      this.gzipping.set(key, zipping);
    }
    return zipping;
  }

  private touch(key: string, value: Uint8Array): Uint8Array {
    this.cache.delete(key);
    this.cache.set(key, value);
    return value;
  }

  private put(key: string, value: Uint8Array): void {
    if (value.byteLength > CACHE_BYTES / 4 || this.cache.has(key)) return;
    this.cache.set(key, value);
    this.cached += value.byteLength;
    for (const [k, v] of this.cache) {
      if (this.cached <= CACHE_BYTES) break;
      this.cache.delete(k);
      this.cached -= v.byteLength;
    }
  }
}

function text(status: number): StaticAnswer {
  return { status, headers: { "content-type": "text/plain; charset=utf-8" }, body: `${status} ${http.STATUS_CODES[status]}\n` };
}

function redirect(location: string): StaticAnswer {
  return { status: 301, headers: { location, "content-type": "text/plain; charset=utf-8" }, body: "301 Moved Permanently\n" };
}

function acceptsGzip(header: string | undefined): boolean {
  if (!header) return false;
  return header.split(",").some((part) => {
    const [coding, ...params] = part.trim().toLowerCase().split(";");
    if (coding.trim() !== "gzip" && coding.trim() !== "*") return false;
    const q = params.map((x) => x.trim()).find((x) => x.startsWith("q="));
    return !q || Number(q.slice(2)) > 0;
  });
}

/** If-None-Match names the file (either variant's tag, weak or strong) or is "*". */
function etagMatches(header: string | undefined, sha: string): boolean {
  if (!header) return false;
  return header.split(",").some((t) => {
    const tag = t.trim().replace(/^W\//, "");
    return tag === "*" || tag === `"${sha}"` || tag === `"${sha}-gz"`;
  });
}
