// JetStream key-value store through @nats-io/kv, against the bundled broker and the reference
// nats-server with identical expectations.
import { jetstreamManager, JetStreamApiError } from "@nats-io/jetstream";
import { Kvm, type KV, type KvEntry, type KvWatchEntry } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { describe, expect, it } from "vitest";
import { describeEachServer, type ServerKind } from "./helpers/servers.js";
import { take, WAIT_MS } from "./helpers/iterate.js";
import { useJetStreamServer } from "./helpers/jetstream-fixture.js";
import { errorOf, waitFor } from "./helpers/wait.js";

/** Drains an iterator that ends by itself (keys, history), guarded by a generous deadline. */
async function drain<T>(iterable: AsyncIterable<T>, what: string): Promise<T[]> {
  const out: T[] = [];
  let timer: NodeJS.Timeout | undefined;
  const done = (async () => {
    for await (const v of iterable) out.push(v);
    return "done" as const;
  })();
  const r = await Promise.race([
    done,
    new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), WAIT_MS * 2);
    }),
  ]);
  clearTimeout(timer);
  if (r === "timeout") throw new Error(`${what}: did not finish (${out.length} items so far)`);
  return out;
}

const summary = (e: KvEntry | null) =>
  e && { key: e.key, op: e.operation, rev: e.revision, value: e.string(), bucket: e.bucket };

describeEachServer("JetStream KV", (kind: ServerKind) => {
  const js = useJetStreamServer(kind);
  let seq = 0;
  const bucketName = (tag: string) => `${tag}_${++seq}`;

  const nc = js.nc;

  async function bucket(tag: string, opts: Parameters<Kvm["create"]>[1] = {}): Promise<{ kv: KV; name: string; c: NatsConnection }> {
    const c = await nc();
    const name = bucketName(tag);
    return { kv: await new Kvm(c).create(name, opts), name, c };
  }

  describe("buckets", () => {
    it("creates a bucket backed by a KV_ stream with the KV configuration", async () => {
      const { name, c } = await bucket("cfg", { history: 3 });
      const si = await (await jetstreamManager(c)).streams.info(`KV_${name}`);
      expect(si.config).toMatchObject({
        name: `KV_${name}`,
        subjects: [`$KV.${name}.>`],
        max_msgs_per_subject: 3,
        discard: "new",
        allow_direct: true,
        allow_rollup_hdrs: true,
        storage: "file",
        retention: "limits",
      });
      expect(si.state.messages).toBe(0);
    });

    it("create on an existing bucket opens it with its data; open() binds to it", async () => {
      const { kv, name } = await bucket("reopen");
      const rev = await kv.put("k", "v1");
      const again = await new Kvm(await nc()).create(name);
      expect(summary(await again.get("k"))).toEqual({ key: "k", op: "PUT", rev, value: "v1", bucket: name });
      // open() binds without stream info and reads through STREAM.MSG.GET instead of direct get.
      const bound = await new Kvm(await nc()).open(name);
      expect(summary(await bound.get("k"))).toEqual({ key: "k", op: "PUT", rev, value: "v1", bucket: name });
      expect(await bound.get("missing")).toBeNull();
      expect(await bound.put("k", "v2")).toBe(rev + 1);
      expect((await kv.get("k"))?.string()).toBe("v2");
    });

    it("lists buckets", async () => {
      const a = await bucket("lista");
      const b = await bucket("listb");
      const names: string[] = [];
      for await (const st of new Kvm(await nc()).list()) names.push(st.bucket);
      expect(names).toEqual(expect.arrayContaining([a.name, b.name]));
    });

    it("reports status: bucket, values, history, ttl, size, backing stream", async () => {
      const { kv, name } = await bucket("status", { history: 4, ttl: 60_000 });
      await kv.put("a", "1");
      await kv.put("a", "2");
      await kv.put("b", "3");
      const st = await kv.status();
      expect(st.bucket).toBe(name);
      expect(st.values).toBe(3);
      expect(st.history).toBe(4);
      expect(st.ttl).toBe(60_000);
      expect(st.size).toBeGreaterThan(0);
      expect(st.streamInfo.config.name).toBe(`KV_${name}`);
      expect(st.streamInfo.config.max_age).toBe(60_000 * 1_000_000);
    });

    it("destroy removes the bucket and its data", async () => {
      const { kv, name, c } = await bucket("destroy");
      await kv.put("k", "v");
      expect(await kv.destroy()).toBe(true);
      const jsm = await jetstreamManager(c);
      const err = await errorOf(jsm.streams.info(`KV_${name}`));
      expect(err.message).toBe("stream not found");
      const names: string[] = [];
      for await (const st of new Kvm(c).list()) names.push(st.bucket);
      expect(names).not.toContain(name);
      // The same name starts empty again.
      const fresh = await new Kvm(c).create(name);
      expect(await fresh.get("k")).toBeNull();
      expect((await fresh.status()).values).toBe(0);
    });
  });

  describe("values", () => {
    it("put and get: value, revision, operation, created, length", async () => {
      const { kv, name } = await bucket("putget");
      const before = Date.now();
      const r1 = await kv.put("greeting", "hello");
      const r2 = await kv.put("other", new Uint8Array([0, 1, 2, 255]));
      expect(r1).toBe(1);
      expect(r2).toBe(2);
      const e = await kv.get("greeting");
      expect(summary(e)).toEqual({ key: "greeting", op: "PUT", rev: 1, value: "hello", bucket: name });
      expect(e!.length).toBe(5);
      expect(e!.created).toBeInstanceOf(Date);
      // Sanity only (clocks are the same machine): the stored time is "now", not 1970 or garbage.
      expect(Math.abs(e!.created.getTime() - before)).toBeLessThan(60_000);
      expect(Array.from((await kv.get("other"))!.value)).toEqual([0, 1, 2, 255]);
    });

    it("get of a missing key is null, also in a bucket with other keys", async () => {
      const { kv } = await bucket("missing");
      expect(await kv.get("nope")).toBeNull();
      await kv.put("yes", "1");
      expect(await kv.get("nope")).toBeNull();
      expect(await kv.get("ye")).toBeNull();
    });

    it("get by revision returns that revision", async () => {
      const { kv } = await bucket("byrev", { history: 10 });
      const r1 = await kv.put("k", "one");
      const r2 = await kv.put("k", "two");
      await kv.put("j", "other key");
      expect((await kv.get("k", { revision: r1 }))?.string()).toBe("one");
      expect((await kv.get("k", { revision: r2 }))?.string()).toBe("two");
      expect((await kv.get("k"))?.revision).toBe(r2);
    });

    it("values with a JSON payload and an empty payload round-trip", async () => {
      const { kv } = await bucket("json");
      await kv.put("doc", JSON.stringify({ a: 1, b: [true, null, "x"] }));
      await kv.put("empty", new Uint8Array(0));
      expect((await kv.get("doc"))?.json()).toEqual({ a: 1, b: [true, null, "x"] });
      const e = await kv.get("empty");
      expect(e?.operation).toBe("PUT");
      expect(e?.length).toBe(0);
    });

    it("create succeeds only if the key is absent; a second create fails", async () => {
      const { kv } = await bucket("create");
      const rev = await kv.create("k", "first");
      const err = await errorOf(kv.create("k", "second"));
      expect(err.message).toMatch(/wrong last sequence/);
      expect(err).toBeInstanceOf(JetStreamApiError);
      expect((err as JetStreamApiError).code).toBe(10071);
      const e = await kv.get("k");
      expect([e?.string(), e?.revision]).toEqual(["first", rev]);
    });

    it("create after delete succeeds (the client retries with the delete marker's revision)", async () => {
      const { kv } = await bucket("recreate");
      await kv.create("k", "first");
      await kv.delete("k");
      const rev = await kv.create("k", "again");
      expect(summary(await kv.get("k"))).toMatchObject({ op: "PUT", rev, value: "again" });
    });

    it("update with the right revision succeeds; with a wrong one fails and changes nothing", async () => {
      const { kv } = await bucket("update");
      const r1 = await kv.put("k", "v1");
      const r2 = await kv.update("k", "v2", r1);
      expect(r2).toBeGreaterThan(r1);
      const err = await errorOf(kv.update("k", "v3", r1));
      expect(err.message).toBe(`wrong last sequence: ${r2}`);
      expect((err as JetStreamApiError).code).toBe(10071);
      const e = await kv.get("k");
      expect([e?.string(), e?.revision]).toEqual(["v2", r2]);
      // Revision of a key that has never been written.
      const err2 = await errorOf(kv.update("never", "x", 5));
      expect(err2.message).toBe("wrong last sequence: 0");
    });

    it("delete leaves a DEL marker; purge leaves only a PURGE marker", async () => {
      const { kv } = await bucket("delpurge", { history: 5 });
      await kv.put("d", "1");
      await kv.put("d", "2");
      await kv.put("p", "1");
      await kv.put("p", "2");
      await kv.put("p", "3");
      await kv.delete("d");
      const d = await kv.get("d");
      expect(d?.operation).toBe("DEL");
      expect(d?.length).toBe(0);
      const dh = await drain(await kv.history({ key: "d" }), "history d");
      expect(dh.map((e) => e.operation)).toEqual(["PUT", "PUT", "DEL"]);

      await kv.purge("p");
      expect((await kv.get("p"))?.operation).toBe("PURGE");
      const ph = await drain(await kv.history({ key: "p" }), "history p");
      expect(ph.map((e) => e.operation)).toEqual(["PURGE"]);
      // 2 puts + DEL for d, PURGE for p.
      expect((await kv.status()).values).toBe(4);
    });

    it("history keeps the configured number of revisions (history: 5)", async () => {
      const { kv } = await bucket("history", { history: 5 });
      const revs: number[] = [];
      for (let i = 0; i < 8; i++) revs.push(await kv.put("k", `v${i}`));
      await kv.put("other", "x");
      const h = await drain(await kv.history({ key: "k" }), "history");
      expect(h.map((e) => [e.string(), e.revision, e.key])).toEqual(
        [3, 4, 5, 6, 7].map((i) => [`v${i}`, revs[i], "k"]),
      );
      expect((await kv.get("k", { revision: revs[2] }))).toBeNull();
      // history of the whole bucket: every retained entry, in revision order.
      const all = await drain(await kv.history(), "history all");
      expect(all.map((e) => e.revision)).toEqual([...revs.slice(3), revs[7] + 1]);
    });

    it("keys lists live keys, with and without a filter", async () => {
      const { kv } = await bucket("keys");
      expect(await drain(await kv.keys(), "keys of empty bucket")).toEqual([]);
      for (const k of ["a.1", "a.2", "a.3.x", "b.1", "c"]) await kv.put(k, k);
      await kv.put("a.1", "again");
      await kv.delete("c");
      await kv.put("gone", "1");
      await kv.purge("gone");
      expect((await drain(await kv.keys(), "keys")).sort()).toEqual(["a.1", "a.2", "a.3.x", "b.1"]);
      expect((await drain(await kv.keys("a.*"), "keys a.*")).sort()).toEqual(["a.1", "a.2"]);
      expect((await drain(await kv.keys("a.>"), "keys a.>")).sort()).toEqual(["a.1", "a.2", "a.3.x"]);
      expect(await drain(await kv.keys("zzz"), "keys zzz")).toEqual([]);
    });

    it("many keys: 600 puts from two connections, all listed and readable", async () => {
      const { kv, name } = await bucket("many");
      const kv2 = await new Kvm(await nc()).open(name);
      const keys = Array.from({ length: 600 }, (_, i) => `key_${i}`);
      for (let i = 0; i < keys.length; i += 100) {
        await Promise.all(keys.slice(i, i + 100).map((k, j) => ((i + j) % 2 ? kv : kv2).put(k, `value of ${k}`)));
      }
      const listed = await drain(await kv.keys(), "keys");
      expect(listed.length).toBe(keys.length);
      expect(new Set(listed)).toEqual(new Set(keys));
      for (const k of [keys[0], keys[299], keys[599]]) expect((await kv.get(k))?.string()).toBe(`value of ${k}`);
      const st = await kv.status();
      expect(st.values).toBe(600);
      const revs = new Set<number>();
      for (const k of keys.slice(0, 50)) revs.add((await kv2.get(k))!.revision);
      expect(revs.size).toBe(50);
    });

    it("bucket TTL: entries disappear after the ttl", async () => {
      const { kv } = await bucket("ttl", { ttl: 1000 });
      await kv.put("short", "lived");
      expect((await kv.get("short"))?.string()).toBe("lived");
      await waitFor("the entry to expire", async () => (await kv.get("short")) === null, 20_000);
      expect((await kv.status()).values).toBe(0);
      // The bucket keeps working after expiry.
      await kv.put("short", "again");
      expect((await kv.get("short"))?.string()).toBe("again");
    });
  });

  describe("watch", () => {
    it("delivers current values first, then updates including deletes and purges", async () => {
      const { kv } = await bucket("watch", { history: 5 });
      await kv.put("a", "a1");
      await kv.put("a", "a2");
      await kv.put("b", "b1");
      const w = await kv.watch();
      const it = w[Symbol.asyncIterator]();
      try {
        const initial = await take(it, 2, "initial values");
        const view = (e: KvWatchEntry) => [e.key, e.operation, e.string(), e.isUpdate];
        // The client flags an entry as an update once the consumer reports nothing pending, so the
        // last initial value already counts as one (pending 0 on its ack reply).
        expect(initial.map(view)).toEqual([
          ["a", "PUT", "a2", false],
          ["b", "PUT", "b1", true],
        ]);
        const r = await kv.put("c", "c1");
        await kv.delete("a");
        await kv.purge("b");
        await kv.put("a", "a3");
        const updates = await take(it, 4, "updates");
        expect(updates.map(view)).toEqual([
          ["c", "PUT", "c1", true],
          ["a", "DEL", "", true],
          ["b", "PURGE", "", true],
          ["a", "PUT", "a3", true],
        ]);
        expect(updates.map((e) => e.revision)).toEqual([r, r + 1, r + 2, r + 3]);
      } finally {
        w.stop();
      }
    });

    it("watch of an empty bucket gets later puts; a key filter only sees matching keys", async () => {
      const { kv } = await bucket("watch2");
      const all = await kv.watch();
      const only = await kv.watch({ key: "x.*" });
      const itAll = all[Symbol.asyncIterator]();
      const itOnly = only[Symbol.asyncIterator]();
      try {
        await kv.put("y.1", "no");
        await kv.put("x.1", "yes");
        await kv.put("x.2.deep", "no");
        await kv.put("x.3", "yes");
        const gotAll = await take(itAll, 4, "all keys");
        expect(gotAll.map((e) => e.key)).toEqual(["y.1", "x.1", "x.2.deep", "x.3"]);
        const gotOnly = await take(itOnly, 2, "x.* keys");
        expect(gotOnly.map((e) => [e.key, e.string()])).toEqual([
          ["x.1", "yes"],
          ["x.3", "yes"],
        ]);
      } finally {
        all.stop();
        only.stop();
      }
    });

    it("watch with include history replays every retained revision, then updates", async () => {
      const { kv } = await bucket("watchhist", { history: 3 });
      for (let i = 0; i < 5; i++) await kv.put("k", `v${i}`);
      const w = await kv.watch({ include: "history" });
      const it = w[Symbol.asyncIterator]();
      try {
        const got = await take(it, 3, "history");
        expect(got.map((e) => e.string())).toEqual(["v2", "v3", "v4"]);
        await kv.put("k", "v5");
        const [u] = await take(it, 1, "update");
        expect([u.string(), u.isUpdate]).toEqual(["v5", true]);
      } finally {
        w.stop();
      }
    });
  });
});
