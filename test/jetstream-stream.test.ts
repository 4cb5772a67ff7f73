// JetStream streams and consumers through @nats-io/jetstream (plus raw API requests for bad input),
// against the bundled broker and the reference nats-server with identical expectations.
import {
  AckPolicy,
  DiscardPolicy,
  jetstream,
  jetstreamManager,
  JetStreamApiError,
  type ApiError,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  type StreamConfig,
  type StreamUpdateConfig,
  StorageType,
} from "@nats-io/jetstream";
import { createInbox, headers, type NatsConnection } from "@nats-io/transport-node";
import { beforeEach, describe, expect, it } from "vitest";
import { AckReplies } from "../src/broker/jetstream/ack-reply.js";
import { describeEachServer, type ServerKind } from "./helpers/servers.js";
import { take } from "./helpers/iterate.js";
import { useJetStreamServer } from "./helpers/jetstream-fixture.js";
import { errorOf, waitFor } from "./helpers/wait.js";

const SEC_NS = 1_000_000_000;
const te = new TextEncoder();

/** The API error a JetStream call failed with, as the server sent it. */
async function apiErrorOf(p: Promise<unknown>): Promise<ApiError> {
  const e = await errorOf(p);
  if (!(e instanceof JetStreamApiError)) throw new Error(`expected a JetStream API error, got ${e.name}: ${e.message}`);
  return e.apiError();
}

// A consumer's message iterator can be iterated only once, and leaving a for-await loop would stop
// it, so each one is read through a single cached iterator.
const iterators = new WeakMap<AsyncIterable<JsMsg>, AsyncIterator<JsMsg>>();

/** Reads the next `n` messages of a consumer iterator (fetch/consume), acking each if asked. */
async function collect(iter: AsyncIterable<JsMsg>, n: number, what: string, ack = true): Promise<JsMsg[]> {
  let it = iterators.get(iter);
  if (!it) iterators.set(iter, (it = iter[Symbol.asyncIterator]()));
  const got: JsMsg[] = [];
  while (got.length < n) {
    // One at a time, so each message is acked as it arrives, as a consuming application would.
    const [msg] = await take(it, 1, `${what} (after ${got.length} of ${n} messages)`);
    if (ack) msg.ack();
    got.push(msg);
  }
  return got;
}

describeEachServer("JetStream streams", (kind: ServerKind) => {
  const js = useJetStreamServer(kind);
  let seq = 0;
  /** A fresh stream name and subject prefix per call, so tests never overlap. */
  const fresh = (tag: string) => {
    const n = ++seq;
    return { name: `${tag.toUpperCase()}_${n}`, subj: `${tag}${n}` };
  };

  const nc = js.nc;

  async function clients(): Promise<{ c: NatsConnection; jsm: JetStreamManager; js: JetStreamClient }> {
    const c = await nc();
    return { c, jsm: await jetstreamManager(c), js: jetstream(c) };
  }

  /** Creates a stream on `<subj>.>` (unless subjects are given) and returns handles. */
  async function stream(tag: string, cfg: Partial<StreamConfig> = {}) {
    const { name, subj } = fresh(tag);
    const h = await clients();
    const info = await h.jsm.streams.add({ name, subjects: [`${subj}.>`], ...cfg });
    return { ...h, name, subj, info };
  }

  async function publishN(js: JetStreamClient, subject: (i: number) => string, n: number, from = 0): Promise<number[]> {
    const seqs: number[] = [];
    for (let i = from; i < from + n; i++) seqs.push((await js.publish(subject(i), `m${i}`)).seq);
    return seqs;
  }

  describe("stream API", () => {
    it("$JS.API.INFO reports account usage and limits", async () => {
      const { jsm } = await clients();
      const before = await jsm.getAccountInfo();
      expect(before.limits).toMatchObject({ max_streams: -1, max_consumers: -1, max_memory: -1, max_storage: -1 });
      expect(before.api.total).toBeGreaterThan(0);
      const { name, js, subj } = await stream("acct");
      await js.publish(`${subj}.x`, "payload");
      const after = await jsm.getAccountInfo();
      expect(after.streams).toBe(before.streams + 1);
      expect(after.storage).toBeGreaterThan(before.storage);
      expect(after.api.total).toBeGreaterThan(before.api.total);
      await jsm.streams.delete(name);
      expect((await jsm.getAccountInfo()).streams).toBe(before.streams);
    });

    it("create fills in the defaults and an empty state", async () => {
      const { info, name, subj } = await stream("create");
      expect(info.config).toMatchObject({
        name,
        subjects: [`${subj}.>`],
        retention: "limits",
        max_consumers: -1,
        max_msgs: -1,
        max_bytes: -1,
        max_age: 0,
        max_msgs_per_subject: -1,
        max_msg_size: -1,
        discard: "old",
        storage: "file",
        num_replicas: 1,
        duplicate_window: 120 * SEC_NS,
        allow_direct: false,
        sealed: false,
        deny_delete: false,
        deny_purge: false,
        allow_rollup_hdrs: false,
      });
      expect(info.state).toMatchObject({ messages: 0, bytes: 0, first_seq: 0, last_seq: 0, consumer_count: 0 });
      expect(Number.isNaN(Date.parse(info.created))).toBe(false);
    });

    it("a stream without subjects listens on its own name", async () => {
      const { jsm, js } = await clients();
      const { name } = fresh("noname");
      const info = await jsm.streams.add({ name });
      expect(info.config.subjects).toEqual([name]);
      expect((await js.publish(name, "x")).seq).toBe(1);
    });

    it("create is idempotent for the same config and refuses a different one (10058)", async () => {
      const { jsm, name, subj } = await stream("idem", { max_msgs: 10 });
      const again = await jsm.streams.add({ name, subjects: [`${subj}.>`], max_msgs: 10 });
      expect(again.config.max_msgs).toBe(10);
      expect(await apiErrorOf(jsm.streams.add({ name, subjects: [`${subj}.>`], max_msgs: 11 }))).toEqual({
        code: 400,
        err_code: 10058,
        description: "stream name already in use with a different configuration",
      });
    });

    it("update changes limits and subjects and keeps the data", async () => {
      const { jsm, js, name, subj } = await stream("update");
      await publishN(js, (i) => `${subj}.a${i}`, 3);
      const up = await jsm.streams.update(name, { subjects: [`${subj}.>`, `${subj}extra`], max_msgs: 100, description: "updated" });
      expect(up.config).toMatchObject({ subjects: [`${subj}.>`, `${subj}extra`], max_msgs: 100, description: "updated" });
      expect(up.state.messages).toBe(3);
      expect((await js.publish(`${subj}extra`, "new subject")).seq).toBe(4);
      const info = await jsm.streams.info(name);
      expect(info.config.max_msgs).toBe(100);
      expect(info.state).toMatchObject({ messages: 4, first_seq: 1, last_seq: 4 });
      const changeStorage = { storage: StorageType.Memory } as Partial<StreamUpdateConfig>;
      expect(await apiErrorOf(jsm.streams.update(name, changeStorage))).toEqual({
        code: 500,
        err_code: 10052,
        description: "stream configuration update can not change storage type",
      });
      expect((await jsm.streams.info(name)).state.messages).toBe(4);
    });

    it("info reports the state after publishing, and per-subject counts on request", async () => {
      const { jsm, js, name, subj } = await stream("info");
      await publishN(js, (i) => `${subj}.${i % 2 ? "odd" : "even"}`, 5);
      const info = await jsm.streams.info(name);
      expect(info.state).toMatchObject({ messages: 5, first_seq: 1, last_seq: 5, consumer_count: 0 });
      expect(info.state.bytes).toBeGreaterThan(0);
      expect(Date.parse(info.state.last_ts)).toBeGreaterThanOrEqual(Date.parse(info.state.first_ts));
      const withSubjects = await jsm.streams.info(name, { subjects_filter: ">" });
      expect(withSubjects.state.subjects).toEqual({ [`${subj}.even`]: 3, [`${subj}.odd`]: 2 });
    });

    it("delete removes the stream", async () => {
      const { jsm, js, name, subj } = await stream("delete");
      await js.publish(`${subj}.x`, "x");
      expect(await jsm.streams.delete(name)).toBe(true);
      expect(await apiErrorOf(jsm.streams.info(name))).toEqual({ code: 404, err_code: 10059, description: "stream not found" });
      const names: string[] = [];
      for await (const n of jsm.streams.names()) names.push(n);
      expect(names).not.toContain(name);
      // Nothing stores its subjects any more: the client reports the 503 (no responders) that way.
      await expect(js.publish(`${subj}.x`, "x")).rejects.toThrow("jetstream is not enabled");
    });

    it("names and list, with and without a subject filter", async () => {
      const a = await stream("lista");
      const b = await stream("listb");
      const names: string[] = [];
      for await (const n of a.jsm.streams.names()) names.push(n);
      expect(names).toEqual(expect.arrayContaining([a.name, b.name]));
      const filtered: string[] = [];
      for await (const n of a.jsm.streams.names(`${b.subj}.x`)) filtered.push(n);
      expect(filtered).toEqual([b.name]);
      const infos: Record<string, string[]> = {};
      for await (const si of a.jsm.streams.list()) infos[si.config.name] = si.config.subjects;
      expect(infos[a.name]).toEqual([`${a.subj}.>`]);
      expect(infos[b.name]).toEqual([`${b.subj}.>`]);
      const listed: string[] = [];
      for await (const si of a.jsm.streams.list(`${a.subj}.y`)) listed.push(si.config.name);
      expect(listed).toEqual([a.name]);
    });
  });

  describe("purge", () => {
    async function filled() {
      const s = await stream("purge");
      // seqs 1..10: a, b, a, b, ...
      await publishN(s.js, (i) => `${s.subj}.${i % 2 ? "b" : "a"}`, 10);
      return s;
    }

    it("purges the whole stream; sequences continue", async () => {
      const { jsm, js, name, subj } = await filled();
      expect(await jsm.streams.purge(name)).toMatchObject({ success: true, purged: 10 });
      const st = (await jsm.streams.info(name)).state;
      expect(st).toMatchObject({ messages: 0, bytes: 0, first_seq: 11, last_seq: 10 });
      expect((await js.publish(`${subj}.a`, "after")).seq).toBe(11);
      expect((await jsm.streams.getMessage(name, { seq: 11 }))?.string()).toBe("after");
    });

    it("purges by subject filter", async () => {
      const { jsm, name, subj } = await filled();
      expect(await jsm.streams.purge(name, { filter: `${subj}.a` })).toMatchObject({ success: true, purged: 5 });
      const st = (await jsm.streams.info(name)).state;
      expect(st).toMatchObject({ messages: 5, first_seq: 2, last_seq: 10 });
      expect(await jsm.streams.getMessage(name, { last_by_subj: `${subj}.a` })).toBeNull();
      expect((await jsm.streams.getMessage(name, { last_by_subj: `${subj}.b` }))?.seq).toBe(10);
    });

    it("purges keeping the newest N, overall and per subject filter", async () => {
      const { jsm, name, subj } = await filled();
      expect(await jsm.streams.purge(name, { filter: `${subj}.b`, keep: 2 })).toMatchObject({ success: true, purged: 3 });
      // b had 2,4,6,8,10 -> keeps 8,10
      expect((await jsm.streams.info(name)).state.messages).toBe(7);
      expect(await jsm.streams.getMessage(name, { seq: 6 })).toBeNull();
      expect((await jsm.streams.getMessage(name, { seq: 8 }))?.subject).toBe(`${subj}.b`);
      expect(await jsm.streams.purge(name, { keep: 3 })).toMatchObject({ success: true, purged: 4 });
      const st = (await jsm.streams.info(name)).state;
      expect(st).toMatchObject({ messages: 3, first_seq: 8, last_seq: 10 });
    });

    it("purges up to (not including) a sequence", async () => {
      const { jsm, name, subj } = await filled();
      expect(await jsm.streams.purge(name, { seq: 4 })).toMatchObject({ success: true, purged: 3 });
      expect((await jsm.streams.info(name)).state).toMatchObject({ messages: 7, first_seq: 4, last_seq: 10 });
      expect(await jsm.streams.purge(name, { filter: `${subj}.a`, seq: 9 })).toMatchObject({ success: true, purged: 2 });
      // a: 5, 7 purged; 9 stays.
      expect((await jsm.streams.info(name)).state.messages).toBe(5);
      expect((await jsm.streams.getMessage(name, { seq: 9 }))?.string()).toBe("m8");
    });
  });

  describe("message get", () => {
    it("gets by sequence and last by subject, with headers and time", async () => {
      const { jsm, js, name, subj } = await stream("get");
      const h = headers();
      h.set("X-Custom", "yes");
      h.append("X-Multi", "1");
      h.append("X-Multi", "2");
      await js.publish(`${subj}.a`, "first");
      await js.publish(`${subj}.b`, te.encode("with headers"), { headers: h });
      await js.publish(`${subj}.a`, "second");
      const m2 = await jsm.streams.getMessage(name, { seq: 2 });
      expect([m2?.subject, m2?.seq, m2?.string()]).toEqual([`${subj}.b`, 2, "with headers"]);
      expect(m2?.header.get("X-Custom")).toBe("yes");
      expect(m2?.header.values("X-Multi")).toEqual(["1", "2"]);
      expect(Math.abs(m2!.time.getTime() - Date.now())).toBeLessThan(60_000);
      const last = await jsm.streams.getMessage(name, { last_by_subj: `${subj}.a` });
      expect([last?.seq, last?.string()]).toEqual([3, "second"]);
      expect(await jsm.streams.getMessage(name, { seq: 99 })).toBeNull();
      expect(await jsm.streams.getMessage(name, { last_by_subj: `${subj}.none` })).toBeNull();
    });

    it("direct get (allow_direct) by sequence and last by subject", async () => {
      const { jsm, js, name, subj } = await stream("direct", { allow_direct: true });
      const h = headers();
      h.set("X-Custom", "direct");
      await js.publish(`${subj}.a`, "one", { headers: h });
      await js.publish(`${subj}.b`, "two");
      await js.publish(`${subj}.a`, "three");
      const bySeq = await jsm.direct.getMessage(name, { seq: 1 });
      expect([bySeq?.subject, bySeq?.seq, bySeq?.string(), bySeq?.header.get("X-Custom")]).toEqual([
        `${subj}.a`,
        1,
        "one",
        "direct",
      ]);
      expect(bySeq?.header.get("Nats-Stream")).toBe(name);
      const last = await jsm.direct.getMessage(name, { last_by_subj: `${subj}.a` });
      expect([last?.seq, last?.string()]).toEqual([3, "three"]);
      const next = await jsm.direct.getMessage(name, { next_by_subj: `${subj}.b`, seq: 1 });
      expect([next?.seq, next?.string()]).toEqual([2, "two"]);
      expect(await jsm.direct.getMessage(name, { seq: 42 })).toBeNull();
      expect(await jsm.direct.getMessage(name, { last_by_subj: `${subj}.zzz` })).toBeNull();
    });
  });

  describe("publish", () => {
    it("acks with stream and increasing sequence; plain publishes are stored too", async () => {
      const { jsm, js, c, name, subj } = await stream("ack");
      const a1 = await js.publish(`${subj}.x`, "1");
      const a2 = await js.publish(`${subj}.y`, "2");
      expect([a1.stream, a1.seq, a1.duplicate]).toEqual([name, 1, false]);
      expect([a2.stream, a2.seq, a2.duplicate]).toEqual([name, 2, false]);
      c.publish(`${subj}.z`, "fire and forget");
      await c.flush();
      await waitFor("the plain publish to be stored", async () => (await jsm.streams.info(name)).state.messages === 3, 20_000);
      expect((await jsm.streams.getMessage(name, { seq: 3 }))?.string()).toBe("fire and forget");
      expect((await js.publish(`${subj}.x`, "4")).seq).toBe(4);
    });

    it("stored messages also reach ordinary subscribers", async () => {
      const { js, c, subj } = await stream("fanout");
      const sub = c.subscribe(`${subj}.>`, { max: 1 });
      await c.flush();
      await js.publish(`${subj}.seen`, "hello subscriber");
      for await (const m of sub) expect([m.subject, m.string()]).toEqual([`${subj}.seen`, "hello subscriber"]);
    });

    it("publishing where no stream listens fails with no responders", async () => {
      const { js } = await clients();
      // The server answers 503 (no responders); the client reports it as JetStream not enabled.
      await expect(js.publish(`nostream${++seq}.x`, "lost")).rejects.toThrow("jetstream is not enabled");
    });

    it("de-duplicates Nats-Msg-Id within the duplicate window", async () => {
      const { jsm, js, name, subj } = await stream("dedupe", { duplicate_window: 1 * SEC_NS });
      const a = await js.publish(`${subj}.x`, "first", { msgID: "id-1" });
      const b = await js.publish(`${subj}.x`, "second", { msgID: "id-2" });
      const dup = await js.publish(`${subj}.x`, "first again", { msgID: "id-1" });
      expect([a.seq, a.duplicate, b.seq, b.duplicate]).toEqual([1, false, 2, false]);
      expect([dup.stream, dup.seq, dup.duplicate]).toEqual([name, 1, true]);
      expect((await jsm.streams.info(name)).state.messages).toBe(2);
      expect((await jsm.streams.getMessage(name, { seq: 1 }))?.string()).toBe("first");
      // Once the window has passed, the same id is new again.
      let later = await js.publish(`${subj}.x`, "after window", { msgID: "id-1" });
      await waitFor("the duplicate window to pass", async () => {
        if (!later.duplicate) return true;
        later = await js.publish(`${subj}.x`, "after window", { msgID: "id-1" });
        return !later.duplicate;
      }, 20_000);
      expect(later.seq).toBe(3);
      expect((await jsm.streams.info(name)).config.duplicate_window).toBe(1 * SEC_NS);
    });

    it("expected last sequence: right value stores, wrong value fails with 10071", async () => {
      const { jsm, js, name, subj } = await stream("explast");
      await publishN(js, (i) => `${subj}.${i}`, 3);
      expect((await js.publish(`${subj}.ok`, "x", { expect: { lastSequence: 3 } })).seq).toBe(4);
      expect(await apiErrorOf(js.publish(`${subj}.bad`, "x", { expect: { lastSequence: 3 } }))).toEqual({
        code: 400,
        err_code: 10071,
        description: "wrong last sequence: 4",
      });
      expect((await jsm.streams.info(name)).state.last_seq).toBe(4);
    });

    it("expected last subject sequence: checks the last sequence on that subject", async () => {
      const { jsm, js, name, subj } = await stream("expsubj");
      await js.publish(`${subj}.a`, "a1"); // 1
      await js.publish(`${subj}.b`, "b1"); // 2
      expect((await js.publish(`${subj}.a`, "a2", { expect: { lastSubjectSequence: 1 } })).seq).toBe(3);
      expect(await apiErrorOf(js.publish(`${subj}.a`, "a3", { expect: { lastSubjectSequence: 1 } }))).toEqual({
        code: 400,
        err_code: 10071,
        description: "wrong last sequence: 3",
      });
      // 0 means "no message on this subject yet".
      expect((await js.publish(`${subj}.c`, "c1", { expect: { lastSubjectSequence: 0 } })).seq).toBe(4);
      expect(await apiErrorOf(js.publish(`${subj}.c`, "c2", { expect: { lastSubjectSequence: 0 } }))).toEqual({
        code: 400,
        err_code: 10071,
        description: "wrong last sequence: 4",
      });
      expect((await jsm.streams.info(name)).state.messages).toBe(4);
    });

    it("expected stream: right name stores, wrong name fails with 10060", async () => {
      const { jsm, js, name, subj } = await stream("expstream");
      expect((await js.publish(`${subj}.a`, "x", { expect: { streamName: name } })).seq).toBe(1);
      expect(await apiErrorOf(js.publish(`${subj}.a`, "x", { expect: { streamName: "OTHER" } }))).toEqual({
        code: 400,
        err_code: 10060,
        description: "expected stream does not match",
      });
      expect((await jsm.streams.info(name)).state.messages).toBe(1);
    });

    it("expected last msg id: right id stores, wrong id fails with 10070", async () => {
      const { js, subj } = await stream("expid");
      await js.publish(`${subj}.a`, "x", { msgID: "m-1" });
      expect((await js.publish(`${subj}.a`, "y", { msgID: "m-2", expect: { lastMsgID: "m-1" } })).seq).toBe(2);
      expect(await apiErrorOf(js.publish(`${subj}.a`, "z", { expect: { lastMsgID: "m-1" } }))).toEqual({
        code: 400,
        err_code: 10070,
        description: "wrong last msg ID: m-2",
      });
    });

    it("Nats-Rollup: sub keeps only the rollup message on its subject; all keeps only it in the stream", async () => {
      const { jsm, js, name, subj } = await stream("rollup", { allow_rollup_hdrs: true });
      await publishN(js, (i) => `${subj}.${i % 2 ? "b" : "a"}`, 6); // a:1,3,5 b:2,4,6
      const sub = headers();
      sub.set("Nats-Rollup", "sub");
      expect((await js.publish(`${subj}.a`, "a rolled", { headers: sub })).seq).toBe(7);
      let info = await jsm.streams.info(name, { subjects_filter: ">" });
      expect(info.state.messages).toBe(4);
      expect(info.state.subjects).toEqual({ [`${subj}.a`]: 1, [`${subj}.b`]: 3 });
      expect((await jsm.streams.getMessage(name, { last_by_subj: `${subj}.a` }))?.string()).toBe("a rolled");
      const all = headers();
      all.set("Nats-Rollup", "all");
      expect((await js.publish(`${subj}.c`, "everything", { headers: all })).seq).toBe(8);
      info = await jsm.streams.info(name);
      expect(info.state).toMatchObject({ messages: 1, first_seq: 8, last_seq: 8 });
      expect((await jsm.streams.getMessage(name, { seq: 8 }))?.string()).toBe("everything");
    });

    it("Nats-Rollup is refused on a stream without allow_rollup_hdrs (10111)", async () => {
      const { jsm, js, name, subj } = await stream("norollup");
      await publishN(js, () => `${subj}.a`, 3);
      const h = headers();
      h.set("Nats-Rollup", "sub");
      expect(await apiErrorOf(js.publish(`${subj}.a`, "x", { headers: h }))).toEqual({
        code: 500,
        err_code: 10111,
        description: "rollup not permitted",
      });
      expect((await jsm.streams.info(name)).state.messages).toBe(3);
    });
  });

  describe("limits", () => {
    it("max_msgs_per_subject keeps the newest per subject", async () => {
      const { jsm, js, name, subj } = await stream("perSubj", { max_msgs_per_subject: 2 });
      const a = await publishN(js, () => `${subj}.a`, 5);
      const b = await publishN(js, () => `${subj}.b`, 3, 5);
      const info = await jsm.streams.info(name, { subjects_filter: ">" });
      expect(info.state.messages).toBe(4);
      expect(info.state.subjects).toEqual({ [`${subj}.a`]: 2, [`${subj}.b`]: 2 });
      for (const s of [a[0], a[1], a[2], b[0]]) expect(await jsm.streams.getMessage(name, { seq: s })).toBeNull();
      for (const s of [a[3], a[4], b[1], b[2]]) expect((await jsm.streams.getMessage(name, { seq: s }))?.seq).toBe(s);
    });

    it("max_msgs with discard old drops the oldest", async () => {
      const { jsm, js, name, subj } = await stream("maxold", { max_msgs: 3 });
      await publishN(js, (i) => `${subj}.${i}`, 5);
      expect((await jsm.streams.info(name)).state).toMatchObject({ messages: 3, first_seq: 3, last_seq: 5 });
      expect(await jsm.streams.getMessage(name, { seq: 2 })).toBeNull();
      expect((await jsm.streams.getMessage(name, { seq: 3 }))?.string()).toBe("m2");
    });

    it("max_msgs with discard new refuses more (maximum messages exceeded)", async () => {
      const { jsm, js, name, subj } = await stream("maxnew", { max_msgs: 3, discard: DiscardPolicy.New });
      await publishN(js, (i) => `${subj}.${i}`, 3);
      expect(await apiErrorOf(js.publish(`${subj}.4`, "too many"))).toEqual({
        code: 503,
        err_code: 10077,
        description: "maximum messages exceeded",
      });
      expect((await jsm.streams.info(name)).state).toMatchObject({ messages: 3, first_seq: 1, last_seq: 3 });
      await jsm.streams.purge(name, { seq: 2 });
      expect((await js.publish(`${subj}.4`, "room again")).seq).toBe(4);
    });

    it("max_bytes with discard old drops the oldest; with discard new refuses", async () => {
      const old = await stream("bytesold", { max_bytes: 1000 });
      const payload = "x".repeat(200);
      await publishN(old.js, () => `${old.subj}.a`, 1);
      for (let i = 0; i < 10; i++) await old.js.publish(`${old.subj}.a`, payload);
      const st = (await old.jsm.streams.info(old.name)).state;
      expect(st.bytes).toBeLessThanOrEqual(1000);
      expect(st.last_seq).toBe(11);
      expect(st.messages).toBeGreaterThan(0);
      expect(st.messages).toBeLessThan(5);
      expect(await old.jsm.streams.getMessage(old.name, { seq: 1 })).toBeNull();

      const neu = await stream("bytesnew", { max_bytes: 1000, discard: DiscardPolicy.New });
      let stored = 0;
      let err: ApiError | undefined;
      for (let i = 0; i < 10 && !err; i++) {
        try {
          await neu.js.publish(`${neu.subj}.a`, payload);
          stored++;
        } catch (e) {
          err = (e as JetStreamApiError).apiError();
        }
      }
      expect(err).toEqual({ code: 503, err_code: 10077, description: "maximum bytes exceeded" });
      expect(stored).toBeGreaterThan(0);
      const st2 = (await neu.jsm.streams.info(neu.name)).state;
      expect([st2.messages, st2.first_seq]).toEqual([stored, 1]);
      expect(st2.bytes).toBeLessThanOrEqual(1000);
    });

    it("max_age expires messages", async () => {
      const { jsm, js, name, subj } = await stream("maxage", { max_age: 1 * SEC_NS });
      await publishN(js, (i) => `${subj}.${i}`, 3);
      expect((await jsm.streams.info(name)).state.messages).toBe(3);
      await waitFor("messages to expire", async () => (await jsm.streams.info(name)).state.messages === 0, 20_000);
      expect((await jsm.streams.info(name)).state).toMatchObject({ first_seq: 4, last_seq: 3 });
      expect((await js.publish(`${subj}.late`, "x")).seq).toBe(4);
    });

    it("max_msg_size refuses larger messages (message size exceeds maximum allowed)", async () => {
      const { jsm, js, name, subj } = await stream("msgsize", { max_msg_size: 100 });
      expect((await js.publish(`${subj}.ok`, "y".repeat(100))).seq).toBe(1);
      expect(await apiErrorOf(js.publish(`${subj}.big`, "y".repeat(101)))).toEqual({
        code: 400,
        err_code: 10054,
        description: "message size exceeds maximum allowed",
      });
      expect((await jsm.streams.info(name)).state.messages).toBe(1);
    });
  });

  describe("consumers", () => {
    it("ordered consumer (no name) reads everything in order, then new messages", async () => {
      const { js, subj, name } = await stream("ordered");
      await publishN(js, (i) => `${subj}.${i % 3}`, 200);
      const oc = await js.consumers.get(name);
      const iter = await oc.consume();
      try {
        const first = await collect(iter, 200, "ordered replay", false);
        expect(first.map((m) => m.seq)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
        expect(first.map((m) => m.string())).toEqual(Array.from({ length: 200 }, (_, i) => `m${i}`));
        expect(first[0].subject).toBe(`${subj}.0`);
        await js.publish(`${subj}.new`, "live");
        const [live] = await collect(iter, 1, "ordered live", false);
        expect([live.seq, live.subject, live.string()]).toEqual([201, `${subj}.new`, "live"]);
      } finally {
        iter.stop();
      }
      // fetch on a fresh ordered consumer, filtered.
      const filtered = await js.consumers.get(name, { filter_subjects: `${subj}.1` });
      const batch = await filtered.fetch({ max_messages: 10, expires: 2000 });
      const got = await collect(batch, 10, "ordered fetch", false);
      expect(got.map((m) => m.seq)).toEqual([2, 5, 8, 11, 14, 17, 20, 23, 26, 29]);
    });

    async function durable(tag: string, n: number, cfg: Record<string, unknown> = {}) {
      const s = await stream(tag);
      await publishN(s.js, (i) => `${s.subj}.${i}`, n);
      const ci = await s.jsm.consumers.add(s.name, { durable_name: "dur", ack_policy: AckPolicy.Explicit, ...cfg });
      return { ...s, ci, consumer: await s.js.consumers.get(s.name, "dur") };
    }

    it("durable pull consumer: fetch with ack, then info numbers", async () => {
      const { consumer, ci, jsm, name } = await durable("fetch", 10);
      expect(ci).toMatchObject({ name: "dur", stream_name: name, num_pending: 10, num_ack_pending: 0 });
      expect(ci.config).toMatchObject({ durable_name: "dur", ack_policy: "explicit", deliver_policy: "all" });
      const batch = await consumer.fetch({ max_messages: 4, expires: 2000 });
      const got = await collect(batch, 4, "fetch", false);
      expect(got.map((m) => [m.seq, m.info.deliverySequence, m.info.redelivered])).toEqual([
        [1, 1, false],
        [2, 2, false],
        [3, 3, false],
        [4, 4, false],
      ]);
      let info = await consumer.info();
      expect(info).toMatchObject({ num_pending: 6, num_ack_pending: 4 });
      expect(info.delivered).toMatchObject({ consumer_seq: 4, stream_seq: 4 });
      expect(info.ack_floor).toMatchObject({ consumer_seq: 0, stream_seq: 0 });
      for (const m of got) expect(await m.ackAck()).toBe(true);
      info = await consumer.info();
      expect(info).toMatchObject({ num_pending: 6, num_ack_pending: 0, num_redelivered: 0 });
      expect(info.ack_floor).toMatchObject({ consumer_seq: 4, stream_seq: 4 });
      expect((await jsm.consumers.info(name, "dur")).num_pending).toBe(6);
      expect((await jsm.streams.info(name)).state.consumer_count).toBe(1);
    });

    it("next() returns one message at a time and null when nothing is left", async () => {
      const { consumer } = await durable("next", 2);
      const m1 = await consumer.next({ expires: 2000 });
      expect([m1?.seq, m1?.string()]).toEqual([1, "m0"]);
      m1!.ack();
      const m2 = await consumer.next({ expires: 2000 });
      expect(m2?.seq).toBe(2);
      await m2!.ackAck();
      expect(await consumer.next({ expires: 1000 })).toBeNull();
      const info = await consumer.info();
      expect(info).toMatchObject({ num_pending: 0, num_ack_pending: 0 });
      expect(info.delivered.stream_seq).toBe(2);
    });

    it("a waiting pull request gets idle heartbeats, then 408 Request Timeout at expiry", async () => {
      const { c, name } = await durable("pullhb", 0);
      const inbox = createInbox();
      const got: string[] = [];
      const sub = c.subscribe(inbox, {
        callback: (_err, m) => {
          got.push(`${m.headers?.code} ${m.headers?.description}`);
        },
      });
      await c.flush();
      // What next()/fetch()/consume() send: the client treats two missed heartbeats as an error.
      c.publish(
        `$JS.API.CONSUMER.MSG.NEXT.${name}.dur`,
        JSON.stringify({ batch: 1, expires: 2 * SEC_NS, idle_heartbeat: SEC_NS / 2 }),
        { reply: inbox },
      );
      await waitFor("the pull request to expire", async () => got.some((g) => g.startsWith("408")), 20_000);
      sub.unsubscribe();
      const last = got.indexOf("408 Request Timeout");
      expect(last).toBeGreaterThanOrEqual(0);
      expect(got.slice(0, last).filter((g) => g === "100 Idle Heartbeat").length).toBeGreaterThanOrEqual(1);
    });

    it("refuses a pull request whose heartbeat is more than half its expiry (or has none), so none waits forever", async () => {
      const { c, jsm, name } = await durable("pullhbbad", 0);
      const next = `$JS.API.CONSUMER.MSG.NEXT.${name}.dur`;
      for (const request of [{ batch: 1, idle_heartbeat: SEC_NS }, { batch: 1, expires: SEC_NS, idle_heartbeat: SEC_NS }]) {
        const m = await c.request(next, JSON.stringify(request), { timeout: 5000 });
        expect(`${m.headers?.code} ${m.headers?.description}`).toBe("400 Bad Request - heartbeat value too large");
      }
      expect((await jsm.consumers.info(name, "dur")).num_waiting).toBe(0);
    });

    it("pull requests nobody listens for any more do not fill max_waiting", async () => {
      const { c, js: client, name, subj } = await durable("pullgone", 0, { max_waiting: 4 });
      // Requests that never expire, with reply subjects nobody subscribes to (a client that left).
      for (let i = 0; i < 4; i++) c.publish(`$JS.API.CONSUMER.MSG.NEXT.${name}.dur`, JSON.stringify({ batch: 1 }), { reply: `gone.${i}` });
      await c.flush();
      await client.publish(`${subj}.x`, "for a live requester");
      const consumer = await client.consumers.get(name, "dur");
      const m = await consumer.next({ expires: 3000 });
      expect(m?.string()).toBe("for a live requester");
      m?.ack();
    });

    it("next() with a short expiry on an empty consumer returns null, not a heartbeat error", async () => {
      // The client asks for heartbeats every expires/2 and gives up after two missed ones, so the
      // server must send them on time while the request waits. Several requests, issued at different
      // moments after their consumer was created (a server with coarse timers fails some of them).
      const s = await stream("emptynext");
      const names = Array.from({ length: 8 }, (_, i) => `e${i}`);
      const consumers = await Promise.all(
        names.map(async (n) => {
          await s.jsm.consumers.add(s.name, { durable_name: n, ack_policy: AckPolicy.Explicit });
          return s.js.consumers.get(s.name, n);
        }),
      );
      const results = await Promise.allSettled(
        consumers.map(async (c, i) => {
          await new Promise((r) => setTimeout(r, i * 125));
          return c.next({ expires: 1000 });
        }),
      );
      expect(results.map((r) => (r.status === "fulfilled" ? r.value : `${(r.reason as Error).message}`))).toEqual(
        names.map(() => null),
      );
    });

    it("consume() delivers every message and keeps up with new ones", async () => {
      const { consumer, js, subj } = await durable("consume", 50);
      const iter = await consumer.consume({ max_messages: 20 });
      try {
        const got = await collect(iter, 50, "consume backlog");
        expect(got.map((m) => m.seq)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
        await publishN(js, (i) => `${subj}.${i}`, 5, 50);
        const more = await collect(iter, 5, "consume live");
        expect(more.map((m) => m.seq)).toEqual([51, 52, 53, 54, 55]);
        await more[4].ackAck();
      } finally {
        iter.stop();
      }
      await waitFor("all acks to be processed", async () => (await consumer.info()).num_ack_pending === 0, 20_000);
      expect(await consumer.info()).toMatchObject({ num_pending: 0, num_ack_pending: 0 });
    });

    it("nak redelivers the message, marked redelivered", async () => {
      // One message only: nats-server may serve a pull with newer messages before it has processed
      // the nak, so the redelivery order relative to other messages is not asserted.
      const { consumer, js, subj } = await durable("nak", 1);
      const m = await consumer.next({ expires: 2000 });
      expect([m?.seq, m?.redelivered]).toEqual([1, false]);
      m!.nak();
      const again = await consumer.next({ expires: 5000 });
      expect([again?.seq, again?.string(), again?.redelivered, again?.info.deliveryCount]).toEqual([1, "m0", true, 2]);
      expect(again!.info.deliverySequence).toBe(2);
      const info = await consumer.info();
      expect(info.num_redelivered).toBe(1);
      expect(info.num_ack_pending).toBe(1);
      await again!.ackAck();
      await js.publish(`${subj}.second`, "second");
      const m2 = await consumer.next({ expires: 2000 });
      expect([m2?.seq, m2?.redelivered]).toEqual([2, false]);
      await m2!.ackAck();
    });

    it("an unacked message is redelivered after ack_wait", async () => {
      const { consumer, js, subj } = await durable("ackwait", 1, { ack_wait: 1 * SEC_NS });
      expect((await consumer.info()).config.ack_wait).toBe(1 * SEC_NS);
      const m = await consumer.next({ expires: 2000 });
      expect([m?.seq, m?.redelivered]).toEqual([1, false]);
      // No ack: once ack_wait (1 s) has passed the server hands it out again.
      const again = await consumer.next({ expires: 8000 });
      expect([again?.seq, again?.redelivered, again?.info.deliveryCount]).toEqual([1, true, 2]);
      expect((await consumer.info()).num_redelivered).toBe(1);
      await again!.ackAck();
      await js.publish(`${subj}.later`, "later");
      const next = await consumer.next({ expires: 2000 });
      expect([next?.seq, next?.redelivered]).toEqual([2, false]);
      await next!.ackAck();
      expect(await consumer.info()).toMatchObject({ num_ack_pending: 0, num_pending: 0 });
    });

    it("a filtered durable only sees its subject", async () => {
      const s = await stream("filtered");
      await publishN(s.js, (i) => `${s.subj}.${i % 2 ? "odd" : "even"}`, 10);
      const ci = await s.jsm.consumers.add(s.name, {
        durable_name: "odd",
        ack_policy: AckPolicy.Explicit,
        filter_subject: `${s.subj}.odd`,
      });
      expect(ci.num_pending).toBe(5);
      const c = await s.js.consumers.get(s.name, "odd");
      const got = await collect(await c.fetch({ max_messages: 5, expires: 2000 }), 5, "filtered fetch");
      expect(got.map((m) => m.seq)).toEqual([2, 4, 6, 8, 10]);
    });

    it("consumers list, and delete", async () => {
      const { jsm, name, js } = await durable("cdelete", 1);
      await jsm.consumers.add(name, { durable_name: "second", ack_policy: AckPolicy.Explicit });
      const names: string[] = [];
      for await (const ci of jsm.consumers.list(name)) names.push(ci.name);
      expect(names.sort()).toEqual(["dur", "second"]);
      expect(await jsm.consumers.delete(name, "dur")).toBe(true);
      expect(await apiErrorOf(jsm.consumers.info(name, "dur"))).toEqual({
        code: 404,
        err_code: 10014,
        description: "consumer not found",
      });
      await expect(js.consumers.get(name, "dur")).rejects.toThrow("consumer not found");
      expect((await jsm.streams.info(name)).state).toMatchObject({ consumer_count: 1, messages: 1 });
      expect(await apiErrorOf(jsm.consumers.delete(name, "dur"))).toMatchObject({ err_code: 10014 });
    });
  });

  describe("bad input", () => {
    let keep: Awaited<ReturnType<typeof stream>>;
    const KEPT = 5;

    beforeEach(async () => {
      keep = await stream("keep", { allow_direct: true });
      const h = headers();
      h.set("X-Keep", "1");
      for (let i = 0; i < KEPT; i++) await keep.js.publish(`${keep.subj}.k${i}`, `kept ${i}`, { headers: h });
    });

    /** The stream still holds exactly what beforeEach stored. */
    async function assertKept(): Promise<void> {
      const { jsm } = await clients();
      const info = await jsm.streams.info(keep.name);
      expect(info.state).toMatchObject({ messages: KEPT, first_seq: 1, last_seq: KEPT });
      expect(info.config.subjects).toEqual([`${keep.subj}.>`]);
      for (let i = 0; i < KEPT; i++) {
        const m = await jsm.streams.getMessage(keep.name, { seq: i + 1 });
        expect([m?.subject, m?.string(), m?.header.get("X-Keep")]).toEqual([`${keep.subj}.k${i}`, `kept ${i}`, "1"]);
      }
      const d = await jsm.direct.getMessage(keep.name, { last_by_subj: `${keep.subj}.k2` });
      expect(d?.string()).toBe("kept 2");
    }

    /** Raw API request: the JSON answer, or an error if nobody answers. */
    async function raw(subject: string, body: string): Promise<Record<string, unknown>> {
      const c = await nc();
      const m = await c.request(subject, body, { timeout: 5000 });
      return m.json<Record<string, unknown>>();
    }

    it("malformed API JSON is answered with 400 / 10025 invalid JSON", async () => {
      const invalidJson = { code: 400, err_code: 10025, description: "invalid JSON" };
      const r = await raw("$JS.API.STREAM.CREATE.X", "{bad");
      expect(r.type).toBe("io.nats.jetstream.api.v1.stream_create_response");
      expect(r.error).toEqual(invalidJson);
      expect((await raw(`$JS.API.STREAM.CREATE.${keep.name}`, "{bad")).error).toEqual(invalidJson);
      expect((await raw(`$JS.API.STREAM.UPDATE.${keep.name}`, "{bad")).error).toEqual(invalidJson);
      expect((await raw(`$JS.API.STREAM.PURGE.${keep.name}`, "{bad")).error).toEqual(invalidJson);
      expect((await raw(`$JS.API.STREAM.MSG.GET.${keep.name}`, "{bad")).error).toEqual(invalidJson);
      expect((await raw(`$JS.API.CONSUMER.CREATE.${keep.name}.c1`, "{bad")).error).toEqual(invalidJson);
      expect((await raw("$JS.API.STREAM.CREATE.X", "")).error).toEqual(invalidJson);
      await assertKept();
      const { jsm } = await clients();
      expect(await apiErrorOf(jsm.streams.info("X"))).toMatchObject({ err_code: 10059 });
    });

    it("config fields of the wrong type are invalid JSON (10025)", async () => {
      const invalidJson = { code: 400, err_code: 10025, description: "invalid JSON" };
      const { name: n1, subj: s1 } = fresh("typed");
      const cases: Record<string, unknown>[] = [{ max_msgs: "x" }, { storage: "disk" }, { discard: "sideways" }, { subjects: "not-a-list" }];
      for (const extra of cases) {
        const r = await raw(`$JS.API.STREAM.CREATE.${n1}`, JSON.stringify({ name: n1, subjects: [s1], ...extra }));
        expect.soft(r.error, JSON.stringify(extra)).toEqual(invalidJson);
      }
      const { jsm } = await clients();
      expect(await apiErrorOf(jsm.streams.info(n1))).toMatchObject({ err_code: 10059 });
      await assertKept();
    });

    it("unknown stream (10059) and unknown consumer (10014)", async () => {
      const { jsm, js } = await clients();
      const notFound = { code: 404, err_code: 10059, description: "stream not found" };
      expect(await apiErrorOf(jsm.streams.info("NOPE"))).toEqual(notFound);
      expect(await apiErrorOf(jsm.streams.delete("NOPE"))).toEqual(notFound);
      expect(await apiErrorOf(jsm.streams.purge("NOPE"))).toEqual(notFound);
      expect(await apiErrorOf(jsm.streams.update("NOPE", { subjects: ["nope.x"] }))).toEqual(notFound);
      expect(await apiErrorOf(jsm.consumers.info("NOPE", "c"))).toEqual(notFound);
      expect(await apiErrorOf(jsm.consumers.add("NOPE", { durable_name: "c", ack_policy: AckPolicy.Explicit }))).toEqual(notFound);
      const consumerNotFound = { code: 404, err_code: 10014, description: "consumer not found" };
      expect(await apiErrorOf(jsm.consumers.info(keep.name, "nope"))).toEqual(consumerNotFound);
      expect(await apiErrorOf(jsm.consumers.delete(keep.name, "nope"))).toEqual(consumerNotFound);
      await expect(js.consumers.get(keep.name, "nope")).rejects.toThrow("consumer not found");
      expect(await jsm.streams.getMessage(keep.name, { seq: 999 })).toBeNull();
      await assertKept();
    });

    it("invalid stream names are refused (10052)", async () => {
      for (const bad of ["a*", "a>", "*", ">"]) {
        const r = await raw(`$JS.API.STREAM.CREATE.${bad}`, JSON.stringify({ name: bad, subjects: [`badname${++seq}`] }));
        expect.soft(r.error, `name ${bad}`).toEqual({
          code: 500,
          err_code: 10052,
          description: "stream name is required and can not contain '.', '*', '>'",
        });
      }
      await assertKept();
    });

    it("invalid stream subjects are refused (10052)", async () => {
      const cases: [string[], string][] = [
        [["foo..bar"], "invalid subject"],
        [["foo.>.bar"], "invalid subject"],
        [["foo bar"], "invalid subject"],
        [[""], "invalid subject"],
        [["$JS.API.>"], "subjects overlap with jetstream api"],
        [["dup.x", "dup.x"], "duplicate subjects detected"],
      ];
      for (const [subjects, description] of cases) {
        const { name } = fresh("badsubj");
        const r = await raw(`$JS.API.STREAM.CREATE.${name}`, JSON.stringify({ name, subjects }));
        expect.soft(r.error, JSON.stringify(subjects)).toEqual({ code: 500, err_code: 10052, description });
      }
      // An invalid subject in an update leaves the stream as it was.
      const { jsm } = await clients();
      expect(await apiErrorOf(jsm.streams.update(keep.name, { subjects: ["foo..bar"] }))).toEqual({
        code: 500,
        err_code: 10052,
        description: "invalid subject",
      });
      await assertKept();
    });

    it("overlapping stream subjects are refused (10065), on create and on update", async () => {
      const { jsm } = await clients();
      const overlap = { code: 400, err_code: 10065, description: "subjects overlap with an existing stream" };
      const { name } = fresh("overlap");
      expect(await apiErrorOf(jsm.streams.add({ name, subjects: [`${keep.subj}.k1`] }))).toEqual(overlap);
      expect(await apiErrorOf(jsm.streams.add({ name, subjects: [`${keep.subj}.*`] }))).toEqual(overlap);
      expect(await apiErrorOf(jsm.streams.add({ name, subjects: [`${keep.subj}.k1`, `${name}.own`] }))).toEqual(overlap);
      const other = await stream("other");
      expect(await apiErrorOf(jsm.streams.update(other.name, { subjects: [`${keep.subj}.>`] }))).toEqual(overlap);
      expect((await jsm.streams.info(other.name)).config.subjects).toEqual([`${other.subj}.>`]);
      expect(await apiErrorOf(jsm.streams.info(name))).toMatchObject({ err_code: 10059 });
      await assertKept();
      // Publishing to the contested subject still lands in the original stream.
      expect((await keep.js.publish(`${keep.subj}.k1`, "still mine")).stream).toBe(keep.name);
    });

    it("a catch-all '>' stream overlaps the existing streams (10065)", async () => {
      const { jsm } = await clients();
      const { name } = fresh("catchall");
      // nats-server checks overlap with other streams before anything else about '>'.
      expect(await apiErrorOf(jsm.streams.add({ name, subjects: [">"] }))).toEqual({
        code: 400,
        err_code: 10065,
        description: "subjects overlap with an existing stream",
      });
      await assertKept();
    });

    it("a name in the subject that does not match the body is refused (10056)", async () => {
      const mismatch = { code: 400, err_code: 10056, description: "stream name in subject does not match request" };
      const { name, subj } = fresh("mismatch");
      expect((await raw(`$JS.API.STREAM.CREATE.${name}`, JSON.stringify({ name: "SOMETHING_ELSE", subjects: [subj] }))).error).toEqual(
        mismatch,
      );
      expect((await raw(`$JS.API.STREAM.UPDATE.${keep.name}`, JSON.stringify({ name: "SOMETHING_ELSE", subjects: [subj] }))).error).toEqual(
        mismatch,
      );
      expect(
        (
          await raw(
            `$JS.API.CONSUMER.CREATE.${keep.name}.c1`,
            JSON.stringify({ stream_name: "SOMETHING_ELSE", config: { name: "c1", ack_policy: "explicit" } }),
          )
        ).error,
      ).toEqual(mismatch);
      await assertKept();
    });

    it("bad consumer requests: durable on the ephemeral subject (10020), filter outside the stream (10093)", async () => {
      const r = await raw(
        `$JS.API.CONSUMER.CREATE.${keep.name}`,
        JSON.stringify({ stream_name: keep.name, config: { durable_name: "d", ack_policy: "explicit" } }),
      );
      expect.soft(r.error).toEqual({
        code: 400,
        err_code: 10020,
        description: "consumer expected to be ephemeral but a durable name was set in request",
      });
      const { jsm } = await clients();
      expect(
        await apiErrorOf(
          jsm.consumers.add(keep.name, { durable_name: "f", ack_policy: AckPolicy.Explicit, filter_subject: "elsewhere.x" }),
        ),
      ).toEqual({
        code: 400,
        err_code: 10093,
        description: "consumer filter subject is not a valid subset of the interest subjects",
      });
      expect((await jsm.streams.info(keep.name)).state.consumer_count).toBe(0);
      await assertKept();
    });

    it("payloads over max_msg_size are refused and the stream keeps its data", async () => {
      const { jsm } = await clients();
      await jsm.streams.update(keep.name, { max_msg_size: 64 });
      for (const size of [65, 1000, 100_000]) {
        expect(await apiErrorOf(keep.js.publish(`${keep.subj}.big`, "z".repeat(size)))).toEqual({
          code: 400,
          err_code: 10054,
          description: "message size exceeds maximum allowed",
        });
      }
      await assertKept();
    });
  });
});

describe("AckReplies", () => {
  it("writes the subject the template would print, nanosecond timestamp included", () => {
    const replies = new AckReplies("ORDERS", "oc_1");
    const cases: [number, number, number, number, number][] = [
      [1, 1, 1, Date.now(), 0],
      [3, 123_456, 7_890, 1_796_649_429_920, 199_999],
      [12, 2 ** 40, 2 ** 41 + 7, 1, 10],
      [1, 9, 10, 1_700_000_000_000.5, 5], // not whole milliseconds: printed from the product
    ];
    for (const [deliveries, seq, dseq, time, pending] of cases) {
      expect(replies.subject(deliveries, seq, dseq, time, pending)).toBe(`$JS.ACK.ORDERS.oc_1.${deliveries}.${seq}.${dseq}.${time * 1_000_000}.${pending}`);
    }
  });
});
