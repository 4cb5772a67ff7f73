// JetStream object store through @nats-io/obj, against the bundled broker and the reference
// nats-server with identical expectations.
import { createHash, randomBytes } from "node:crypto";
import { jetstreamManager } from "@nats-io/jetstream";
import { Objm, type ObjectInfo, type ObjectStore, type ObjectWatchInfo } from "@nats-io/obj";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { describeEachServer, startServer, type RunningServer, type ServerKind } from "./helpers/servers.js";
import { useJetStreamServer } from "./helpers/jetstream-fixture.js";

const WAIT_MS = 10_000;
const MiB = 1024 * 1024;

/** The digest the object store records: SHA-256, base64url with padding. */
function digestOf(data: Uint8Array): string {
  const b64 = createHash("sha256").update(data).digest("base64");
  return "SHA-256=" + b64.replace(/\+/g, "-").replace(/\//g, "_");
}

/** A stream that hands out `data` in irregular pieces, as a file or socket would. */
function streamOf(data: Uint8Array, piece = 50_000): ReadableStream<Uint8Array> {
  let off = 0;
  let i = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (off >= data.length) {
        controller.close();
        return;
      }
      const n = piece + ((i++ * 7919) % 3000);
      controller.enqueue(data.subarray(off, off + n));
      off += n;
    },
  });
}

async function readAll(rs: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  const reader = rs.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    parts.push(value);
  }
  return Buffer.concat(parts);
}

/** Fails with a clear message instead of hanging if `p` does not settle within a generous time. */
async function within<T>(p: Promise<T>, what: string, ms = WAIT_MS * 3): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: no result after ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

async function take<T>(it: AsyncIterator<T>, n: number, what: string): Promise<T[]> {
  const out: T[] = [];
  while (out.length < n) {
    const r = await within(it.next(), `${what} (after ${out.length} of ${n})`, WAIT_MS);
    if (r.done) throw new Error(`${what}: iterator ended after ${out.length} of ${n} items`);
    out.push(r.value);
  }
  return out;
}

/** Puts `data` as `name`, reads it back streamed and checks bytes, digest and the client's own check. */
async function roundTrip(os: ObjectStore, name: string, data: Uint8Array): Promise<ObjectInfo> {
  const info = await within(os.put({ name }, streamOf(data)), `put ${name}`);
  expect(info.size).toBe(data.length);
  expect(info.digest).toBe(digestOf(data));
  const r = await os.get(name);
  expect(r).not.toBeNull();
  const [back, err] = await within(Promise.all([readAll(r!.data), r!.error]), `get ${name}`);
  // The client's own digest check errors the data stream on a mismatch; `error` settles empty.
  expect(err ?? null).toBeNull();
  expect(back.length).toBe(data.length);
  expect(Buffer.compare(Buffer.from(back), Buffer.from(data))).toBe(0);
  expect(r!.info.digest).toBe(digestOf(data));
  return info;
}

describeEachServer("JetStream object store", (kind: ServerKind) => {
  const js = useJetStreamServer(kind);
  let seq = 0;

  const nc = js.nc;

  async function store(tag: string, c?: NatsConnection): Promise<{ os: ObjectStore; name: string; c: NatsConnection }> {
    const conn = c ?? (await nc());
    const name = `${tag}_${++seq}`;
    return { os: await new Objm(conn).create(name), name, c: conn };
  }

  async function streamMessages(c: NatsConnection, bucket: string): Promise<number> {
    return (await (await jetstreamManager(c)).streams.info(`OBJ_${bucket}`)).state.messages;
  }

  it("creates an OBJ_ stream and reports status", async () => {
    const { os, name, c } = await store("status");
    await os.putBlob({ name: "x" }, new Uint8Array([1, 2, 3]));
    const st = await os.status();
    expect(st.bucket).toBe(name);
    expect(st.backingStore).toBe("JetStream");
    expect(st.sealed).toBe(false);
    expect(st.size).toBeGreaterThan(3);
    expect(st.streamInfo.config).toMatchObject({
      name: `OBJ_${name}`,
      subjects: [`$O.${name}.C.>`, `$O.${name}.M.>`],
      allow_rollup_hdrs: true,
      discard: "new",
    });
    expect(await streamMessages(c, name)).toBe(2); // one chunk, one meta
    // Opening it from another connection finds the same object.
    const again = await new Objm(await nc()).open(name);
    expect(Array.from((await again.getBlob("x"))!)).toEqual([1, 2, 3]);
  });

  it("putBlob/getBlob: small, empty and binary objects; info fields", async () => {
    const { os, name } = await store("blob");
    const data = randomBytes(1000);
    const info = await os.putBlob({ name: "small.bin", description: "a small one" }, data);
    expect(info).toMatchObject({ name: "small.bin", bucket: name, size: 1000, chunks: 1, deleted: false });
    expect(info.digest).toBe(digestOf(data));
    expect(Buffer.from((await os.getBlob("small.bin"))!).equals(data)).toBe(true);

    const empty = await os.putBlob({ name: "empty" }, new Uint8Array(0));
    expect([empty.size, empty.chunks]).toEqual([0, 0]);
    expect((await os.getBlob("empty"))!.length).toBe(0);

    const i = await os.info("small.bin");
    expect(i).toMatchObject({ name: "small.bin", bucket: name, size: 1000, chunks: 1, deleted: false, description: "a small one" });
    expect(i!.digest).toBe(digestOf(data));
    expect(i!.nuid).toBe(info.nuid);
    expect(typeof i!.revision).toBe("number");
    expect(await os.info("nothing")).toBeNull();
    expect(await os.getBlob("nothing")).toBeNull();
    expect(await os.get("nothing")).toBeNull();
  });

  it("names with slashes, spaces and dots round-trip", async () => {
    const { os } = await store("names");
    const names = ["dir/sub/file.txt", "with space", "ünïcødé", "a.b.c"];
    for (const [i, n] of names.entries()) await os.putBlob({ name: n }, new TextEncoder().encode(`content ${i}`));
    for (const [i, n] of names.entries()) {
      expect(new TextDecoder().decode((await os.getBlob(n))!)).toBe(`content ${i}`);
    }
  });

  it("multi-chunk object (3 MiB, larger than max_payload) streams back intact", async () => {
    const { os, name, c } = await store("big");
    const data = randomBytes(3 * MiB);
    const info = await roundTrip(os, "big.bin", data);
    expect(info.chunks).toBe(Math.ceil(data.length / (128 * 1024)));
    expect(info.options?.max_chunk_size).toBe(128 * 1024);
    expect(await streamMessages(c, name)).toBe(info.chunks + 1);
  });

  it("replacing an object purges the old chunks", async () => {
    const { os, name, c } = await store("replace");
    const first = randomBytes(600 * 1024);
    const i1 = await roundTrip(os, "obj", first);
    const second = randomBytes(10);
    const i2 = await roundTrip(os, "obj", second);
    expect(i2.nuid).not.toBe(i1.nuid);
    expect(await streamMessages(c, name)).toBe(2);
    expect(Buffer.from((await os.getBlob("obj"))!).equals(second)).toBe(true);
  });

  it("list shows live objects; delete hides an object and purges its chunks", async () => {
    const { os, name, c } = await store("list");
    expect(await os.list()).toEqual([]);
    await os.putBlob({ name: "a" }, randomBytes(10));
    await os.putBlob({ name: "b" }, randomBytes(200_000));
    await os.putBlob({ name: "c" }, randomBytes(20));
    expect((await os.list()).map((i) => i.name).sort()).toEqual(["a", "b", "c"]);

    const pr = await os.delete("b");
    expect(pr.success).toBe(true);
    expect(pr.purged).toBe(2); // b had two chunks
    expect(await os.get("b")).toBeNull();
    expect(await os.getBlob("b")).toBeNull();
    const info = await os.info("b");
    expect(info).toMatchObject({ name: "b", deleted: true, size: 0 });
    expect((await os.list()).map((i) => i.name).sort()).toEqual(["a", "c"]);
    // a, c: one chunk + meta each; b: its deleted meta only.
    expect(await streamMessages(c, name)).toBe(5);
    // Deleting something that does not exist reports no success.
    expect((await os.delete("never")).success).toBe(false);
    // Deleted names can be stored again.
    await roundTrip(os, "b", randomBytes(300));
  });

  it("watch: existing objects with includeHistory, then puts and deletes as updates", async () => {
    const { os } = await store("watch");
    await os.putBlob({ name: "before" }, randomBytes(5));
    const hist = await os.watch({ includeHistory: true });
    const updates = await os.watch();
    const ih = hist[Symbol.asyncIterator]();
    const iu = updates[Symbol.asyncIterator]();
    try {
      const [first] = await take(ih, 1, "history");
      expect([first.name, first.deleted]).toEqual(["before", false]);
      const data = randomBytes(300_000);
      await os.put({ name: "during" }, streamOf(data));
      await os.delete("before");
      const view = (w: ObjectWatchInfo) => [w.name, w.deleted, w.size, w.isUpdate];
      const expected = [
        ["during", false, data.length, true],
        ["before", true, 0, true],
      ];
      expect((await take(ih, 2, "history watcher updates")).map(view)).toEqual(expected);
      expect((await take(iu, 2, "updates watcher")).map(view)).toEqual(expected);
    } finally {
      hist.stop();
      updates.stop();
    }
  });

  it("lists and destroys stores", async () => {
    const c = await nc();
    const a = await store("osa", c);
    const b = await store("osb", c);
    const names: string[] = [];
    for await (const st of new Objm(c).list()) names.push(st.bucket);
    expect(names).toEqual(expect.arrayContaining([a.name, b.name]));
    expect(await a.os.destroy()).toBe(true);
    const after: string[] = [];
    for await (const st of new Objm(c).list()) after.push(st.bucket);
    expect(after).toContain(b.name);
    expect(after).not.toContain(a.name);
  });

  describe("with max_payload 32 KiB (smaller than the default chunk)", () => {
    let small: RunningServer;
    beforeAll(async () => {
      small = await startServer(kind, { jetstream: true, maxPayload: 32 * 1024 });
    });
    afterAll(async () => {
      await small?.stop();
    });

    it("chunks by max_payload and reads the object back", async () => {
      const c = await nc(small.url);
      expect(c.info?.max_payload).toBe(32 * 1024);
      const { os, name } = await store("smallpayload", c);
      const data = randomBytes(300_000);
      const info = await roundTrip(os, "obj", data);
      expect(info.options?.max_chunk_size).toBe(32 * 1024);
      expect(info.chunks).toBe(Math.ceil(data.length / (32 * 1024)));
      expect(await streamMessages(c, name)).toBe(info.chunks + 1);
      // Stored chunks are each within max_payload.
      const jsm = await jetstreamManager(c);
      const chunk = await jsm.streams.getMessage(`OBJ_${name}`, { seq: 1 });
      expect(chunk?.data.length).toBe(32 * 1024);
    });
  });
});
