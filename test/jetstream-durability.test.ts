// JetStream durability: what a server acknowledged is still there after a restart, after a SIGKILL
// in the middle of acknowledged writes, and for a large object. Each test owns its server and data dir.
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { AckPolicy, jetstream, jetstreamManager, type JetStreamClient, type JsMsg } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import { Objm } from "@nats-io/obj";
import { connect, headers, type NatsConnection } from "@nats-io/transport-node";
import { afterEach, expect, it } from "vitest";
import { describeEachServer, startServer, type RunningServer, type ServerKind, type ServerOpts } from "./helpers/servers.js";
import { take } from "./helpers/iterate.js";
import { waitFor } from "./helpers/wait.js";

const MiB = 1024 * 1024;

/** Reads `n` messages from an ordered consumer iterator, with a generous wait for each. */
function readN(iter: AsyncIterable<JsMsg>, n: number, what: string): Promise<JsMsg[]> {
  return take(iter[Symbol.asyncIterator](), n, what);
}

function sha256(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/** Deterministic content for write number n, so a reader can check any message on its own. */
const payloadFor = (n: number) => `payload-${n}-` + "x".repeat(n % 300);
const subjectFor = (n: number) => `kill.s${n % 7}`;

describeEachServer("JetStream durability", (kind: ServerKind) => {
  const servers: RunningServer[] = [];
  const conns: NatsConnection[] = [];
  const dirs: string[] = [];

  afterEach(async () => {
    await Promise.all(conns.splice(0).map((c) => c.close().catch(() => undefined)));
    await Promise.all(servers.splice(0).map((s) => s.stop().catch(() => undefined)));
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  async function start(opts: ServerOpts): Promise<RunningServer> {
    const s = await startServer(kind, { jetstream: true, ...opts });
    servers.push(s);
    return s;
  }

  function dataDir(): string {
    const d = mkdtempSync(path.join(tmpdir(), `nex-durability-${kind}-`));
    dirs.push(d);
    return d;
  }

  async function nc(server: RunningServer): Promise<NatsConnection> {
    const c = await connect({ servers: server.url, reconnect: false });
    conns.push(c);
    return c;
  }

  it("acknowledged KV values, stream messages, consumer progress and objects survive restarts", { timeout: 60_000 }, async () => {
    const dir = dataDir();
    const server = await start({ dataDir: dir });
    let c = await nc(server);
    let js = jetstream(c);
    let jsm = await jetstreamManager(c);

    // KV: puts, updates, a delete and a purge, history 3.
    let kv = await new Kvm(c).create("state", { history: 3 });
    /** A graceful restart, then fresh clients over a new connection. */
    const restartAndReconnect = async (): Promise<void> => {
      await c.close();
      await server.restart();
      c = await nc(server);
      js = jetstream(c);
      jsm = await jetstreamManager(c);
      kv = await new Kvm(c).open("state");
    };
    const revs: Record<string, number> = {};
    for (let i = 0; i < 20; i++) revs[`k${i}`] = await kv.put(`k${i}`, `v${i}`);
    revs.k0 = await kv.update("k0", "v0-updated", revs.k0);
    const k1History = [revs.k1, await kv.put("k1", "v1-b"), await kv.put("k1", "v1-c")];
    await kv.delete("k2");
    await kv.purge("k3");

    // Stream: messages with headers and varied sizes; a purged subject; a deleted stream.
    await jsm.streams.add({ name: "EVENTS", subjects: ["ev.>"], duplicate_window: 60 * 1_000_000_000 });
    const sent: { seq: number; subject: string; data: string }[] = [];
    for (let i = 0; i < 100; i++) {
      const h = headers();
      h.set("X-Index", String(i));
      const subject = `ev.${i % 2 ? "odd" : "even"}.${i}`;
      const data = `event ${i} ` + "e".repeat(i * 37);
      const pa = await js.publish(subject, data, { headers: h, msgID: `id-${i}` });
      sent.push({ seq: pa.seq, subject, data });
    }
    await jsm.streams.purge("EVENTS", { filter: "ev.even.>" });
    const kept = sent.filter((m) => m.subject.startsWith("ev.odd."));
    await jsm.streams.add({ name: "GONE", subjects: ["gone.>"] });
    await js.publish("gone.x", "bye");
    await jsm.streams.delete("GONE");

    // A durable consumer that has acked the first 10 kept messages.
    await jsm.consumers.add("EVENTS", { durable_name: "proc", ack_policy: AckPolicy.Explicit });
    const proc = await js.consumers.get("EVENTS", "proc");
    for (const m of await readN(await proc.fetch({ max_messages: 10, expires: 5000 }), 10, "proc before restart")) {
      await m.ackAck();
    }

    // A small object.
    const blob = randomBytes(300_000);
    await (await new Objm(c).create("files")).putBlob({ name: "blob.bin" }, blob);

    const before = (await jsm.streams.info("EVENTS")).state;
    expect(before).toMatchObject({ messages: 50, last_seq: 100 });
    const kvBefore = await kv.status();
    expect(existsSync(path.join(dir, "jetstream"))).toBe(true);

    await restartAndReconnect();

    // Stream state and every message, byte for byte, at the same sequence.
    const after = (await jsm.streams.info("EVENTS")).state;
    expect(after).toMatchObject({
      messages: before.messages,
      bytes: before.bytes,
      first_seq: before.first_seq,
      last_seq: before.last_seq,
      consumer_count: 1,
    });
    for (const m of kept) {
      const got = await jsm.streams.getMessage("EVENTS", { seq: m.seq });
      expect([got?.subject, got?.string(), got?.header.get("X-Index")]).toEqual([m.subject, m.data, m.subject.split(".")[2]]);
    }
    expect(await jsm.streams.getMessage("EVENTS", { seq: 1 })).toBeNull(); // purged stays purged
    await expect(jsm.streams.info("GONE")).rejects.toThrow("stream not found"); // deleted stays deleted

    // The durable consumer resumes after what it acked.
    const procAfter = await js.consumers.get("EVENTS", "proc");
    const ci = await procAfter.info();
    expect(ci.ack_floor.stream_seq).toBe(kept[9].seq);
    expect(ci.num_pending).toBe(kept.length - 10);
    const next = await procAfter.next({ expires: 5000 });
    expect([next?.seq, next?.string()]).toEqual([kept[10].seq, kept[10].data]);
    await next!.ackAck();

    // KV: values, revisions, operations, history.
    expect((await kv.status()).values).toBe(kvBefore.values);
    expect([(await kv.get("k0"))?.string(), (await kv.get("k0"))?.revision]).toEqual(["v0-updated", revs.k0]);
    for (let i = 4; i < 20; i++) {
      const e = await kv.get(`k${i}`);
      expect([e?.string(), e?.revision, e?.operation]).toEqual([`v${i}`, revs[`k${i}`], "PUT"]);
    }
    expect((await kv.get("k2"))?.operation).toBe("DEL");
    expect((await kv.get("k3"))?.operation).toBe("PURGE");
    const hist: number[] = [];
    for await (const e of await kv.history({ key: "k1" })) hist.push(e.revision);
    expect(hist).toEqual(k1History);
    const keys: string[] = [];
    for await (const k of await kv.keys()) keys.push(k);
    expect(keys.sort()).toEqual(Array.from({ length: 20 }, (_, i) => `k${i}`).filter((k) => k !== "k2" && k !== "k3").sort());
    // A wrong revision is still refused; the right one still works.
    await expect(kv.update("k5", "x", revs.k5 - 1)).rejects.toThrow(/wrong last sequence/);
    const k5rev = await kv.update("k5", "v5-after", revs.k5);

    // The object reads back intact.
    const back = await (await new Objm(c).open("files")).getBlob("blob.bin");
    expect(back && sha256(back)).toBe(sha256(blob));

    // New writes continue the sequences, and survive a second restart too.
    const pa = await js.publish("ev.odd.new", "after restart");
    expect(pa.seq).toBe(before.last_seq + 1);
    await restartAndReconnect();
    expect((await jsm.streams.getMessage("EVENTS", { seq: pa.seq }))?.string()).toBe("after restart");
    expect((await jsm.streams.info("EVENTS")).state).toMatchObject({ messages: 51, last_seq: 101 });
    expect([(await kv.get("k5"))?.string(), (await kv.get("k5"))?.revision]).toEqual(["v5-after", k5rev]);
    expect((await (await js.consumers.get("EVENTS", "proc")).info()).ack_floor.stream_seq).toBe(kept[10].seq);
  });

  it("the de-duplication window survives a restart", { timeout: 30_000 }, async () => {
    const server = await start({ dataDir: dataDir() });
    let c = await nc(server);
    let js = jetstream(c);
    const jsm = await jetstreamManager(c);
    await jsm.streams.add({ name: "DEDUPE", subjects: ["dd.>"], duplicate_window: 60 * 1_000_000_000 });
    for (let i = 1; i <= 3; i++) expect((await js.publish(`dd.${i}`, `m${i}`, { msgID: `id-${i}` })).seq).toBe(i);
    await c.close();
    await server.restart();
    c = await nc(server);
    js = jetstream(c);
    // nats-server rebuilds the window from the stored Nats-Msg-Id headers.
    const dup = await js.publish("dd.2", "again", { msgID: "id-2" });
    expect([dup.duplicate, dup.seq]).toEqual([true, 2]);
    const fresh = await js.publish("dd.4", "new", { msgID: "id-4" });
    expect([fresh.duplicate, fresh.seq]).toEqual([false, 4]);
  });

  it("kill -9 during acknowledged writes: every acked message and KV value is there after restart", { timeout: 90_000 }, async () => {
    const server = await start({ childProcess: kind === "bundled" });
    let c = await nc(server);
    let js: JetStreamClient = jetstream(c);
    let jsm = await jetstreamManager(c);
    await jsm.streams.add({ name: "KILL", subjects: ["kill.>"] });
    let kv: KV = await new Kvm(c).create("killkv");

    // Writers: several lanes, each awaiting its ack before the next publish, until the connection dies.
    const ackedMsgs = new Map<number, number>(); // stream seq -> write number
    const ackedKeys = new Map<string, { rev: number; value: string }>();
    let n = 0;
    let stop = false;
    const lane = async (useKv: boolean) => {
      while (!stop) {
        const i = n++;
        try {
          if (useKv) {
            const value = `kv-${i}`;
            ackedKeys.set(`key${i}`, { rev: await kv.put(`key${i}`, value), value });
          } else {
            ackedMsgs.set((await js.publish(subjectFor(i), payloadFor(i), { timeout: 5000 })).seq, i);
          }
        } catch {
          return; // the server is gone: this write may or may not have been stored
        }
      }
    };
    const lanes = [...Array.from({ length: 12 }, () => lane(false)), ...Array.from({ length: 4 }, () => lane(true))];
    await waitFor("enough acknowledged writes", () => ackedMsgs.size >= 1500 && ackedKeys.size >= 300, 30_000);
    await server.kill();
    const ackedAtKill = ackedMsgs.size;
    const startedAtKill = n;
    await Promise.all(lanes);
    stop = true;
    // The kill landed in the middle of writing: writes had been started that were never acknowledged.
    expect(startedAtKill).toBeGreaterThan(ackedAtKill + ackedKeys.size);
    // Acks can still have been in flight on the socket when it was killed; all recorded ones count.
    expect(ackedMsgs.size).toBeGreaterThanOrEqual(ackedAtKill);
    await c.close().catch(() => undefined);

    await server.restart();
    c = await nc(server);
    js = jetstream(c);
    jsm = await jetstreamManager(c);
    kv = await new Kvm(c).open("killkv");

    const maxAcked = Math.max(...ackedMsgs.keys());
    const st = (await jsm.streams.info("KILL")).state;
    expect(st.first_seq).toBe(1);
    expect(st.last_seq).toBeGreaterThanOrEqual(maxAcked);
    expect(st.messages).toBe(st.last_seq); // nothing in the middle went missing
    // Read the whole stream back through an ordered consumer and check every acked message.
    const oc = await js.consumers.get("KILL");
    const iter = await oc.consume();
    const all = await readN(iter, st.messages, "reading back the stream");
    iter.stop();
    const bySeq = new Map(all.map((m) => [m.seq, m]));
    const bad: string[] = [];
    for (const [seq, i] of ackedMsgs) {
      const m = bySeq.get(seq);
      if (!m) bad.push(`seq ${seq} (write ${i}) missing`);
      else if (m.subject !== subjectFor(i) || m.string() !== payloadFor(i)) bad.push(`seq ${seq} (write ${i}) differs: ${m.subject} ${m.string().slice(0, 40)}`);
      if (bad.length > 10) break;
    }
    expect(bad).toEqual([]);
    // Unacked writes that made it are intact too (each payload matches its subject).
    for (const m of all) {
      const i = Number(/^payload-(\d+)-/.exec(m.string())?.[1]);
      expect([m.subject, m.string()]).toEqual([subjectFor(i), payloadFor(i)]);
    }

    const badKeys: string[] = [];
    for (const [key, { rev, value }] of ackedKeys) {
      const e = await kv.get(key);
      if (!e || e.revision !== rev || e.string() !== value) badKeys.push(`${key}: want ${rev}/${value}, got ${e?.revision}/${e?.string()}`);
      if (badKeys.length > 10) break;
    }
    expect(badKeys).toEqual([]);

    // The stream and the bucket still take writes, continuing the sequence.
    const pa = await js.publish("kill.after", "after the crash");
    expect(pa.seq).toBe(st.last_seq + 1);
    expect((await jsm.streams.getMessage("KILL", { seq: pa.seq }))?.string()).toBe("after the crash");
    const rev = await kv.put("after", "crash");
    expect((await kv.get("after"))?.revision).toBe(rev);
  });

  it("a 64 MiB object survives a restart", { timeout: 90_000 }, async () => {
    const server = await start({ dataDir: dataDir() });
    let c = await nc(server);
    const data = randomBytes(64 * MiB);
    const digest = sha256(data);
    const os = await new Objm(c).create("large");
    let off = 0;
    const rs = new ReadableStream<Uint8Array>({
      pull(ctl) {
        if (off >= data.length) return ctl.close();
        ctl.enqueue(data.subarray(off, off + 1_000_000));
        off += 1_000_000;
      },
    });
    const info = await os.put({ name: "huge.bin" }, rs, { timeout: 30_000 });
    expect(info.size).toBe(data.length);
    expect(info.chunks).toBe(Math.ceil(data.length / (128 * 1024)));
    await c.close();
    await server.restart();

    c = await nc(server);
    const reopened = await new Objm(c).open("large");
    expect(await reopened.info("huge.bin")).toMatchObject({ size: data.length, chunks: info.chunks, digest: info.digest });
    const r = await reopened.get("huge.bin");
    expect(r).not.toBeNull();
    const hash = createHash("sha256");
    let size = 0;
    const reader = r!.data.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      hash.update(value);
      size += value.length;
    }
    expect(await r!.error).toBeFalsy();
    expect(size).toBe(data.length);
    expect(hash.digest("hex")).toBe(digest);
    const st = await jetstreamManager(c).then((m) => m.streams.info("OBJ_large"));
    expect(st.state.messages).toBe(info.chunks + 1);
  });
});
