// The JetStream message stores: one behaviour suite run against the memory store and the file store
// (with default and tiny segments, the file store reopened from disk at checkpoints), then file-store
// recovery, torn tails, segment housekeeping, a SIGKILL test and a bounded-memory test.
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import {
  appendFileSync,
  existsSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import zlib from "node:zlib";
import { afterEach, describe, expect, it } from "vitest";
import { FileStore, crc32Js } from "../src/broker/jetstream/store/file-store.js";
import { MemoryStore } from "../src/broker/jetstream/store/memory-store.js";
import { SeqIndex, literalFilter } from "../src/broker/jetstream/store/seq-index.js";
import type { MessageStore, PurgeRequest, SubjectFilter } from "../src/broker/jetstream/store/types.js";
import {
  KILL_SEGMENT_BYTES,
  KILL_SUBJECTS,
  buildStoreModules,
  killChildSource,
  killHeader,
  killPayload,
  killSubject,
} from "./helpers/store-child.js";
import { prng } from "./helpers/prng.js";

// ---- helpers

const tmpDirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(path.join(os.tmpdir(), "nex-store-test-"));
  tmpDirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of tmpDirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** NATS wildcard matching, for filters in tests. */
function wildcard(pattern: string): NonNullable<SubjectFilter> {
  const pt = pattern.split(".");
  return (subject: string) => {
    const st = subject.split(".");
    for (let i = 0; i < pt.length; i++) {
      if (pt[i] === ">") return st.length > i;
      if (i >= st.length) return false;
      if (pt[i] !== "*" && pt[i] !== st[i]) return false;
    }
    return st.length === pt.length;
  };
}

const memSize = (s: string, h: Buffer | null, d: Buffer): number => s.length + (h?.length ?? 0) + d.length + 16;
const fileSize = (s: string, h: Buffer | null, d: Buffer): number =>
  h === null || h.length === 0 ? 22 + s.length + d.length + 8 : 22 + s.length + 4 + h.length + d.length + 8;

interface Kit {
  store: MessageStore;
  /** Memory: the same store. File: closes it and opens the directory again. */
  reopen(s: MessageStore): MessageStore;
  size(s: string, h: Buffer | null, d: Buffer): number;
}

const KITS: [string, () => Kit][] = [
  ["memory", () => ({ store: new MemoryStore(), reopen: (s) => s, size: memSize })],
  [
    "file",
    () => {
      const dir = path.join(tempDir(), "stream");
      return {
        store: new FileStore(dir),
        reopen: (s) => {
          s.close();
          return new FileStore(dir);
        },
        size: fileSize,
      };
    },
  ],
  [
    "file with 1 KiB segments",
    () => {
      const dir = path.join(tempDir(), "stream");
      return {
        store: new FileStore(dir, { maxSegmentBytes: 1024 }),
        reopen: (s) => {
          s.close();
          return new FileStore(dir, { maxSegmentBytes: 1024 });
        },
        size: fileSize,
      };
    },
  ],
];

interface ModelMsg {
  subject: string;
  header: Buffer | null;
  data: Buffer;
  time: number;
}

/** The obvious implementation, to compare the stores with. */
class Model {
  msgs = new Map<number, ModelMsg>();
  lastSeq = 0;
  lastTime = 0;
  constructor(readonly size: Kit["size"]) {}

  append(store: MessageStore, subject: string, header: Buffer | null, data: Buffer, time: number): number {
    const seq = store.append(subject, header, data, time);
    expect(seq).toBe(this.lastSeq + 1);
    this.lastSeq = seq;
    this.lastTime = time;
    this.msgs.set(seq, { subject, header: header && Buffer.from(header), data: Buffer.from(data), time });
    return seq;
  }

  remove(store: MessageStore, seq: number): void {
    expect(store.remove(seq)).toBe(this.msgs.delete(seq));
  }

  purge(store: MessageStore, req: PurgeRequest): void {
    const cand = this.live().filter(
      (s) =>
        (req.filter === null || req.filter(this.msgs.get(s)!.subject)) &&
        (req.beforeSeq <= 0 || s < req.beforeSeq),
    );
    const gone = req.keep > 0 ? cand.slice(0, Math.max(0, cand.length - req.keep)) : cand;
    expect(store.purge(req)).toBe(gone.length);
    for (const s of gone) this.msgs.delete(s);
  }

  live(): number[] {
    return [...this.msgs.keys()].sort((a, b) => a - b);
  }

  subjects(): Map<string, number[]> {
    const m = new Map<string, number[]>();
    for (const s of this.live()) {
      const subj = this.msgs.get(s)!.subject;
      if (!m.has(subj)) m.set(subj, []);
      m.get(subj)!.push(s);
    }
    return m;
  }
}

function expectMessage(store: MessageStore, seq: number, want: ModelMsg): void {
  const got = store.get(seq);
  expect(got, `seq ${seq}`).not.toBeNull();
  expect(got!.seq).toBe(seq);
  expect(got!.subject).toBe(want.subject);
  expect(got!.time).toBe(want.time);
  if (want.header === null) expect(got!.header).toBeNull();
  else expect(got!.header !== null && got!.header.equals(want.header), `header of ${seq}`).toBe(true);
  expect(got!.data.equals(want.data), `data of ${seq}`).toBe(true);
}

/** Compares every query of the store with the model. */
function verify(store: MessageStore, model: Model, filters: SubjectFilter[]): void {
  const live = model.live();
  const subjects = model.subjects();
  const first = live[0];
  const firstSeq = first ?? model.lastSeq + 1;
  let bytes = 0;
  for (const s of live) {
    const m = model.msgs.get(s)!;
    bytes += model.size(m.subject, m.header, m.data);
  }
  expect(store.state()).toEqual({
    messages: live.length,
    bytes,
    firstSeq,
    firstTime: first === undefined ? 0 : model.msgs.get(first)!.time,
    lastSeq: model.lastSeq,
    lastTime: model.lastTime,
    numSubjects: subjects.size,
    numDeleted: live.length === 0 ? 0 : model.lastSeq - firstSeq + 1 - live.length,
  });
  for (const s of live) expectMessage(store, s, model.msgs.get(s)!);
  for (let s = 0; s <= model.lastSeq + 2; s++) if (!model.msgs.has(s)) expect(store.get(s), `seq ${s}`).toBeNull();
  for (const [subj, seqs] of subjects) {
    expect(store.countOnSubject(subj)).toBe(seqs.length);
    expect(store.firstSeqOnSubject(subj)).toBe(seqs[0]);
    expect(store.lastOnSubject(subj)?.seq).toBe(seqs[seqs.length - 1]);
  }
  expect(store.countOnSubject("no.such")).toBe(0);
  expect(store.firstSeqOnSubject("no.such")).toBe(0);
  expect(store.lastOnSubject("no.such")).toBeNull();

  const froms = new Set([0, 1, firstSeq, model.lastSeq, model.lastSeq + 1, model.lastSeq + 5]);
  for (let i = 0; i < 6; i++) froms.add(Math.floor((model.lastSeq * (i + 1)) / 7));
  for (const f of filters) {
    const matching = live.filter((s) => f === null || f(model.msgs.get(s)!.subject));
    const lasts = [...subjects.entries()]
      .filter(([subj]) => f === null || f(subj))
      .map(([, seqs]) => seqs[seqs.length - 1])
      .sort((a, b) => a - b);
    expect(store.lastSeqsPerSubject(f)).toEqual(lasts);
    for (const from of froms) {
      expect(store.next(from, f)?.seq ?? null, `next(${from})`).toBe(matching.find((s) => s >= from) ?? null);
      expect(store.countFrom(from, f), `countFrom(${from})`).toBe(matching.filter((s) => s >= from).length);
    }
    const walked: number[] = [];
    for (let m = store.next(1, f); m !== null; m = store.next(m.seq + 1, f)) walked.push(m.seq);
    expect(walked).toEqual(matching);
  }
}

function filtersFor(subjects: string[]): SubjectFilter[] {
  return [
    null,
    literalFilter(subjects[0]),
    (s: string) => s === subjects[1], // a literal the store cannot see through
    wildcard("a.*"),
    wildcard("b.>"),
    wildcard("nothing.>"),
  ];
}

// ---- the behaviour suite, against every store

describe.each(KITS)("%s store", (_name, makeKit) => {
  it("appends and gets messages with headers, times and sequences", () => {
    const kit = makeKit();
    let store = kit.store;
    const model = new Model(kit.size);
    expect(store.state()).toEqual({
      messages: 0,
      bytes: 0,
      firstSeq: 1,
      firstTime: 0,
      lastSeq: 0,
      lastTime: 0,
      numSubjects: 0,
      numDeleted: 0,
    });
    const hdr = Buffer.from("NATS/1.0\r\nKV-Operation: DEL\r\n\r\n", "latin1");
    model.append(store, "a.one", null, Buffer.from("hello"), 1000);
    model.append(store, "a.two", hdr, Buffer.alloc(0), 1001);
    model.append(store, "b.x.y", Buffer.alloc(0), Buffer.from([0, 1, 2, 255]), 1002);
    model.append(store, "a.one", null, Buffer.from("again"), 1003);
    const latin = "b.\u00e9\u00ff";
    model.append(store, latin, null, Buffer.from("latin1 subject"), 1004);
    // The store copies what it is given.
    const reused = Buffer.from("original");
    model.append(store, "a.two", null, reused, 1005);
    reused.fill(0x21);

    expect(store.get(2)!.header!.toString("latin1")).toBe(hdr.toString("latin1"));
    expect(store.get(3)!.header).toEqual(Buffer.alloc(0)); // an empty header stays empty, not null
    expect(store.get(6)!.data.toString()).toBe("original");
    expect(store.sizeOf("a.two", hdr, Buffer.from("xy"))).toBe(kit.size("a.two", hdr, Buffer.from("xy")));
    expect(store.sizeOf("a.one", null, Buffer.from("hello"))).toBe(kit.size("a.one", null, Buffer.from("hello")));
    const filters = filtersFor(["a.one", "a.two"]);
    verify(store, model, filters);
    store = kit.reopen(store);
    verify(store, model, filters);
    expect(store.append("c", null, Buffer.from("z"), 2000)).toBe(7);
    store.close();
  });

  it("answers per-subject queries and next() across gaps", () => {
    const kit = makeKit();
    let store = kit.store;
    const model = new Model(kit.size);
    for (let i = 1; i <= 600; i++) model.append(store, `a.${i % 5}`, null, Buffer.from(`m${i}`), 10_000 + i);
    // Leave a wide gap and scattered holes.
    for (let s = 50; s < 550; s++) model.remove(store, s);
    for (let s = 1; s < 50; s += 3) model.remove(store, s);
    model.remove(store, 600); // the last one: lastSeq stays
    model.remove(store, 600); // twice: false
    model.remove(store, 0);
    model.remove(store, 10_000);
    expect(store.state().lastSeq).toBe(600);
    const twoOf = (s: string) => s === "a.0" || s === "a.4";
    const filters = [null, literalFilter("a.3"), wildcard("a.*"), twoOf, wildcard("z")];
    verify(store, model, filters);
    expect(store.next(50, literalFilter("a.2"))!.seq).toBe(552);
    expect(store.next(50, null)!.seq).toBe(550);
    store = kit.reopen(store);
    verify(store, model, filters);
    store.close();
  });

  it("keeps state numbers right through removals", () => {
    const kit = makeKit();
    let store = kit.store;
    const model = new Model(kit.size);
    for (let i = 1; i <= 12; i++) model.append(store, ["a", "b", "c"][i % 3], null, Buffer.alloc(i, i), 500 + i);
    model.remove(store, 5);
    model.remove(store, 6);
    let st = store.state();
    expect([st.messages, st.firstSeq, st.lastSeq, st.numDeleted]).toEqual([10, 1, 12, 2]);
    expect([st.firstTime, st.lastTime]).toEqual([501, 512]);
    model.remove(store, 1);
    model.remove(store, 12);
    st = store.state();
    expect([st.messages, st.firstSeq, st.firstTime, st.lastSeq, st.numDeleted]).toEqual([8, 2, 502, 12, 3]);
    for (let s = 1; s <= 12; s++) model.remove(store, s);
    st = store.state();
    expect([st.messages, st.bytes, st.firstSeq, st.firstTime, st.lastSeq, st.lastTime]).toEqual([0, 0, 13, 0, 12, 512]);
    expect([st.numSubjects, st.numDeleted]).toEqual([0, 0]);
    store = kit.reopen(store);
    verify(store, model, [null]);
    expect(store.append("a", null, Buffer.from("x"), 600)).toBe(13);
    store.close();
  });

  describe("purge", () => {
    const cases: [string, (f: Kit) => PurgeRequest, number][] = [
      ["everything", () => ({ filter: null, beforeSeq: 0, keep: 0 }), 12],
      ["below a sequence", () => ({ filter: null, beforeSeq: 5, keep: 0 }), 4],
      ["keeping the newest", () => ({ filter: null, beforeSeq: 0, keep: 3 }), 9],
      ["below a sequence keeping some", () => ({ filter: null, beforeSeq: 10, keep: 2 }), 7],
      ["keep more than there are", () => ({ filter: null, beforeSeq: 0, keep: 50 }), 0],
      ["a literal subject", () => ({ filter: literalFilter("a"), beforeSeq: 0, keep: 0 }), 4],
      ["a literal subject keeping one", () => ({ filter: literalFilter("a"), beforeSeq: 0, keep: 1 }), 3],
      ["a literal subject below a sequence", () => ({ filter: literalFilter("b"), beforeSeq: 6, keep: 0 }), 2],
      ["an unknown subject", () => ({ filter: literalFilter("zz"), beforeSeq: 0, keep: 0 }), 0],
      ["a function filter, below, keeping two", () => ({ filter: (s) => s !== "c", beforeSeq: 8, keep: 2 }), 3],
      ["a filter that matches everything", () => ({ filter: () => true, beforeSeq: 0, keep: 0 }), 12],
      ["a filter that matches nothing", () => ({ filter: () => false, beforeSeq: 0, keep: 0 }), 0],
    ];
    it.each(cases)("purges %s", (_what, request, removed) => {
      const kit = makeKit();
      let store = kit.store;
      const model = new Model(kit.size);
      for (let i = 1; i <= 12; i++) {
        model.append(store, ["a", "b", "c"][(i - 1) % 3], null, Buffer.from(`v${i}`), 100 + i);
      }
      const req = request(kit);
      const before = model.msgs.size;
      model.purge(store, req);
      expect(before - model.msgs.size).toBe(removed);
      const filters = [null, literalFilter("a"), literalFilter("c"), (s: string) => s !== "b"];
      verify(store, model, filters);
      model.append(store, "a", null, Buffer.from("after"), 200);
      store = kit.reopen(store);
      verify(store, model, filters);
      model.purge(store, { filter: null, beforeSeq: 0, keep: 0 });
      model.append(store, "b", null, Buffer.from("after all"), 300);
      store = kit.reopen(store);
      verify(store, model, filters);
      store.close();
    });

    it("purges an emptied stream to lastSeq + 1 and keeps counting", () => {
      const kit = makeKit();
      let store = kit.store;
      for (let i = 1; i <= 10; i++) store.append("x", null, Buffer.from("data"), i);
      expect(store.purge({ filter: null, beforeSeq: 0, keep: 0 })).toBe(10);
      expect(store.purge({ filter: null, beforeSeq: 0, keep: 0 })).toBe(0);
      store = kit.reopen(store);
      const st = store.state();
      expect([st.messages, st.firstSeq, st.lastSeq, st.lastTime]).toEqual([0, 11, 10, 10]);
      expect(store.append("x", null, Buffer.from("data"), 11)).toBe(11);
      store.close();
    });
  });

  it("walks a KV bucket overwritten many times without visiting dead sequences", () => {
    const kit = makeKit();
    let store = kit.store;
    const model = new Model(kit.size);
    const last = new Map<string, number>();
    const keys = ["$KV.b.a", "$KV.b.b", "$KV.b.c", "$KV.b.d"];
    for (let i = 0; i < 20_000; i++) {
      // Mostly the same key: long runs of dead sequences between the survivors.
      const key = i % 1000 === 0 ? keys[(i / 1000) % 4] : keys[0];
      const data = Buffer.from(`value ${i}`);
      const seq = store.append(key, null, data, i);
      model.msgs.set(seq, { subject: key, header: null, data, time: i });
      model.lastSeq = seq;
      model.lastTime = i;
      const prev = last.get(key);
      if (prev !== undefined) model.remove(store, prev);
      last.set(key, seq);
    }
    let calls = 0;
    const counting = (s: string) => {
      calls++;
      return s.startsWith("$KV.b.");
    };
    const filters = [null, literalFilter("$KV.b.c"), wildcard("$KV.b.>"), counting];
    verify(store, model, filters);
    // 10 000 walks over ~20 000 mostly-dead sequences each.
    for (let i = 0; i < 10_000; i++) expect(store.next(1, counting)!.seq).toBe(model.live()[0]);
    expect(calls).toBeLessThan(100); // one test per subject: the answer is memoised per filter
    expect(store.countFrom(1, counting)).toBe(4);
    store = kit.reopen(store);
    verify(store, model, filters);
    store.close();
  });

  it("matches a straightforward model under random operations", () => {
    const kit = makeKit();
    let store = kit.store;
    const model = new Model(kit.size);
    const rand = prng(12345);
    const subjects = ["a.1", "a.2", "a.3", "b.1", "b.2.x", "b.3.y", "c", "$KV.b.k1", "$KV.b.k2"];
    const filters = filtersFor(subjects);
    const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)];
    const lastOf = new Map<string, number>();
    for (let i = 1; i <= 2500; i++) {
      const r = rand();
      if (r < 0.55) {
        const subject = pick(subjects);
        const header = rand() < 0.3 ? Buffer.from(`NATS/1.0\r\nI: ${i}\r\n\r\n`) : null;
        const data = randomBytes(Math.floor(rand() * 300));
        lastOf.set(subject, model.append(store, subject, header, data, 1_000_000 + i));
      } else if (r < 0.7) {
        // KV style: replace a subject's message.
        const subject = pick(subjects);
        const seq = model.append(store, subject, null, Buffer.from(`v${i}`), 1_000_000 + i);
        const prev = lastOf.get(subject);
        if (prev !== undefined) model.remove(store, prev);
        lastOf.set(subject, seq);
      } else if (r < 0.85) {
        const live = model.live();
        if (live.length > 0) model.remove(store, pick(live));
      } else if (r < 0.9) {
        model.remove(store, Math.floor(rand() * (model.lastSeq + 3)));
      } else if (r < 0.93) {
        const before = rand() < 0.5 ? 0 : Math.floor(rand() * (model.lastSeq + 2));
        const keep = rand() < 0.5 ? 0 : Math.floor(rand() * 6);
        model.purge(store, { filter: pick(filters), beforeSeq: before, keep });
      } else if (r < 0.935) {
        model.purge(store, { filter: null, beforeSeq: 0, keep: 0 });
      }
      if (i % 250 === 0) verify(store, model, filters);
      if (i % 500 === 0) {
        store = kit.reopen(store);
        verify(store, model, filters);
      }
    }
    store.close();
  });

  it("destroy() removes the data", () => {
    const kit = makeKit();
    const store = kit.store;
    store.append("a", null, Buffer.from("x"), 1);
    store.flush();
    store.destroy();
    if (store instanceof FileStore) expect(() => statSync(store.dir)).toThrow();
    else expect(store.state().messages).toBe(0);
  });
});

// ---- the index on its own

describe("SeqIndex", () => {
  it("keeps only blocks with live entries", () => {
    const idx = new SeqIndex<{ seq: number }>();
    for (let s = 1; s <= 1_000_000; s++) {
      idx.add({ seq: s });
      const prev = s - 1;
      if (prev > 1 && prev % 100_000 !== 0) idx.delete(prev);
    }
    // Survivors: 1, every 100 000th and the last one.
    expect(idx.size).toBe(11);
    expect(idx.blockCount).toBe(11);
    expect(idx.scan(2, null)!.seq).toBe(100_000);
    expect(idx.countFrom(150_000)).toBe(9);
    expect(idx.nth(3)!.seq).toBe(300_000);
    expect(idx.removeBelow(500_001, () => {})).toBe(6);
    expect(idx.first()!.seq).toBe(600_000);
    expect(idx.last()!.seq).toBe(1_000_000);
    expect(idx.blockCount).toBe(5);
  });
});

// ---- file store only

function segments(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith(".seg"))
    .sort();
}

describe("FileStore", () => {
  it("uses the same CRC-32 as zlib", () => {
    const z = (zlib as { crc32?: (b: Uint8Array) => number }).crc32;
    expect(crc32Js(Buffer.from("123456789"))).toBe(0xcbf43926);
    const big = randomBytes(70_000);
    expect(crc32Js(Buffer.from("xx123456789y"), 2, 11)).toBe(0xcbf43926);
    if (typeof z === "function") {
      for (const n of [0, 1, 7, 8, 9, 13, 100, 1000, 65_537]) {
        expect(crc32Js(big, 5, 5 + n)).toBe(z(big.subarray(5, 5 + n)));
      }
    }
  });

  it("recovers everything flushed when dropped without close()", () => {
    const dir = path.join(tempDir(), "s");
    const model = new Model(fileSize);
    const store = new FileStore(dir, { maxSegmentBytes: 2048 });
    const hdr = Buffer.from("NATS/1.0\r\n\r\n");
    for (let i = 1; i <= 100; i++) model.append(store, `k.${i % 7}`, i % 4 ? null : hdr, randomBytes(i), i);
    for (let s = 1; s <= 60; s += 2) model.remove(store, s);
    model.purge(store, { filter: literalFilter("k.3"), beforeSeq: 0, keep: 1 });
    store.flush();
    // Dropped: no close(). A fresh instance reads what was flushed.
    const again = new FileStore(dir, { maxSegmentBytes: 2048 });
    verify(again, model, filtersFor(["k.1", "k.2"]));
    model.append(again, "k.1", null, Buffer.from("more"), 200);
    again.flush();
    const third = FileStore.open(dir, { maxSegmentBytes: 2048 });
    verify(third, model, [null]);
    third.close();
  });

  it("truncates a torn last record and keeps everything before it", () => {
    const dir = path.join(tempDir(), "s");
    const model = new Model(fileSize);
    let store = new FileStore(dir);
    for (let i = 1; i <= 20; i++) model.append(store, "t", null, Buffer.from(`payload number ${i}`), i);
    store.close();
    const [seg] = segments(dir);
    const file = path.join(dir, seg);
    truncateSync(file, statSync(file).size - 7);
    model.msgs.delete(20);
    model.lastSeq = 19;
    model.lastTime = 19;
    store = new FileStore(dir);
    verify(store, model, [null]);
    model.append(store, "t", null, Buffer.from("replacement 20"), 21);
    store.close();
    store = new FileStore(dir);
    verify(store, model, [null]);
    store.close();
  });

  it("ignores garbage after the last record and a record whose CRC fails", () => {
    const dir = path.join(tempDir(), "s");
    const model = new Model(fileSize);
    let store = new FileStore(dir);
    for (let i = 1; i <= 5; i++) model.append(store, "g", null, Buffer.from(`data ${i}`), i);
    store.close();
    const file = path.join(dir, segments(dir)[0]);
    const good = statSync(file).size;
    appendFileSync(file, randomBytes(1000));
    appendFileSync(file, Buffer.alloc(4096)); // and a zero-filled tail
    store = new FileStore(dir);
    expect(statSync(file).size).toBe(good);
    verify(store, model, [null]);
    store.close();

    // Flip a byte in the payload of the last record: it fails its CRC and is dropped.
    const bytes = readFileSync(file);
    bytes[bytes.length - 6] ^= 0xff;
    writeFileSync(file, bytes);
    model.msgs.delete(5);
    model.lastSeq = 4;
    model.lastTime = 4;
    store = new FileStore(dir);
    verify(store, model, [null]);
    store.close();
  });

  it("rolls segments and deletes the ones whose messages are all gone", () => {
    const dir = path.join(tempDir(), "s");
    const model = new Model(fileSize);
    let store = new FileStore(dir, { maxSegmentBytes: 1024 });
    for (let i = 1; i <= 100; i++) model.append(store, `r.${i % 3}`, null, Buffer.alloc(100, i), i);
    store.flush();
    const all = segments(dir).length;
    expect(all).toBeGreaterThanOrEqual(10);
    for (let s = 1; s <= 50; s++) model.remove(store, s);
    store.flush();
    const fewer = segments(dir);
    expect(fewer.length).toBeLessThan(all - 3);
    expect(fewer.length).toBeGreaterThan(1);
    verify(store, model, [null, literalFilter("r.1")]);
    for (let s = 51; s <= 100; s++) model.remove(store, s);
    store.flush();
    expect(segments(dir)).toHaveLength(1); // the active segment stays, with its sequence marker
    store = new FileStore(dir, { maxSegmentBytes: 1024 });
    verify(store, model, [null]);
    expect(store.state().firstSeq).toBe(101);
    model.append(store, "r.0", null, Buffer.from("next"), 101);
    store.close();
    store = new FileStore(dir, { maxSegmentBytes: 1024 });
    verify(store, model, [null]);
    store.close();
  });

  it("reads on through segments from chunks read ahead, across gaps and between gets", () => {
    const dir = path.join(tempDir(), "s");
    let store = new FileStore(dir, { maxSegmentBytes: 256 * 1024 });
    const payload = (i: number) => Buffer.from(`payload-${i}-`.repeat(1 + (i % 7)));
    const n = 20_000;
    for (let i = 1; i <= n; i++) store.append(`r.${i % 5}`, i % 3 === 0 ? Buffer.from(`NATS/1.0\r\nI: ${i}\r\n\r\n`) : null, payload(i), i);
    for (let i = 7; i <= n; i += 11) store.remove(i);
    store.close();
    store = new FileStore(dir, { maxSegmentBytes: 256 * 1024 }); // nothing cached: every read goes to the files
    let seen = 0;
    for (let m = store.next(1, null); m !== null; m = store.next(m.seq + 1, null)) {
      expect(m.seq % 11).not.toBe(7);
      expect(m.subject).toBe(`r.${m.seq % 5}`);
      expect(m.data.equals(payload(m.seq))).toBe(true);
      expect(m.header?.toString() ?? null).toBe(m.seq % 3 === 0 ? `NATS/1.0\r\nI: ${m.seq}\r\n\r\n` : null);
      if (m.seq % 1000 === 0) expect(store.get(n - m.seq + 1)?.data.equals(payload(n - m.seq + 1)) ?? true).toBe(true);
      seen++;
    }
    expect(seen).toBe(store.state().messages);
    store.close();
  });

  it("starts a new segment when a purge empties the stream", () => {
    const dir = path.join(tempDir(), "s");
    let store = new FileStore(dir);
    for (let i = 1; i <= 1000; i++) store.append("p", null, Buffer.alloc(1000), i);
    store.purge({ filter: null, beforeSeq: 0, keep: 0 });
    store.flush();
    const segs = segments(dir);
    expect(segs).toHaveLength(1);
    expect(statSync(path.join(dir, segs[0])).size).toBeLessThan(100);
    store.close();
    store = new FileStore(dir);
    expect(store.state()).toMatchObject({ messages: 0, firstSeq: 1001, lastSeq: 1000, lastTime: 1000 });
    store.close();
  });

  it("keeps removals whose records lived in a deleted segment", () => {
    const dir = path.join(tempDir(), "s");
    const opts = { maxSegmentBytes: 500 }; // a 100-byte message on "d.1" is a 136-byte record
    const model = new Model(fileSize);
    let store = new FileStore(dir, opts);
    const body = Buffer.alloc(100, 1);
    // Segment 1: seqs 1-3; seq 3 stays live, so segment 1 stays.
    for (let i = 1; i <= 3; i++) model.append(store, `d.${i}`, null, body, i);
    model.append(store, "d.4", null, body, 4);
    expect(segments(dir)).toHaveLength(2);
    // Segment 2 gets a delete of 2 and a purge below 2 (which removes 1)...
    model.remove(store, 2);
    model.purge(store, { filter: null, beforeSeq: 2, keep: 0 });
    model.remove(store, 4);
    // ...and then only messages that are replaced later, so it ends up all dead and is deleted.
    let prev = 0;
    for (let i = 5; i <= 12; i++) {
      const seq = model.append(store, "d.x", null, body, i);
      if (prev !== 0) model.remove(store, prev);
      prev = seq;
    }
    store.flush();
    expect(segments(dir)).not.toContain("0000000002.seg");
    expect(segments(dir)).toContain("0000000001.seg");
    verify(store, model, [null]);
    store.close();
    store = new FileStore(dir, opts);
    verify(store, model, [null]); // seqs 1 and 2 did not come back
    store.close();
  });

  it.runIf(existsSync("/proc/self/fd"))("keeps only a few segment files open", () => {
    const dir = path.join(tempDir(), "s");
    const openFds = () => readdirSync("/proc/self/fd").length;
    const model = new Model(fileSize);
    let store = new FileStore(dir, { maxSegmentBytes: 300 });
    for (let i = 1; i <= 200; i++) model.append(store, `f.${i % 4}`, null, Buffer.alloc(200, i), i);
    store.close();
    expect(segments(dir).length).toBeGreaterThanOrEqual(200);
    const before = openFds();
    store = new FileStore(dir, { maxSegmentBytes: 300 });
    verify(store, model, [null, literalFilter("f.1")]); // reads every segment, some many times
    expect(openFds() - before).toBeLessThanOrEqual(17 + 2); // the active segment and 16 readers
    store.close();
    expect(openFds()).toBeLessThanOrEqual(before);
  });

  it("survives a reopen of an empty directory and of a fresh store", () => {
    const dir = path.join(tempDir(), "s");
    let store = new FileStore(dir);
    store.close();
    store = new FileStore(dir);
    expect(store.state()).toMatchObject({ messages: 0, firstSeq: 1, lastSeq: 0 });
    expect(store.append("a", null, Buffer.from("1"), 5)).toBe(1);
    store.close();
    expect(() => store.append("a", null, Buffer.from("1"), 5)).toThrow(/closed/);
  });

  it("loses nothing flushed when the writing process is killed", async () => {
    const tmp = tempDir();
    const script = path.join(tmp, "kill-child.mjs");
    writeFileSync(script, killChildSource(buildStoreModules(tmp)));
    const dir = path.join(tmp, "data");
    for (const lines of [2000, 500]) {
      const printed = await runAndKill(script, dir, lines);
      expect(printed).toBeGreaterThan(0);
      checkKilledStore(dir, printed);
    }
  });

  it("keeps payloads on disk: 256 MiB of 128 KiB messages with bounded memory", () => {
    const dir = path.join(tempDir(), "s");
    const store = new FileStore(dir);
    const count = 2048;
    const size = 128 * 1024;
    const msg = randomBytes(size);
    const written = createHash("sha256");
    const rss = () => process.memoryUsage().rss;
    const base = rss();
    let peak = base;
    for (let i = 1; i <= count; i++) {
      msg.writeUInt32LE(i, 0);
      msg.writeUInt32LE(Math.imul(i, 2654435761) >>> 0, size >> 1);
      written.update(msg);
      store.append(`$O.b.C.${i % 16}`, null, msg, i);
      if (i % 4 === 0) store.flush();
      if (i % 64 === 0) peak = Math.max(peak, rss());
    }
    store.flush();
    let bytes = 0;
    for (let i = 1; i <= count; i++) bytes += fileSize(`$O.b.C.${i % 16}`, null, msg);
    expect(store.state().bytes).toBe(bytes);
    const read = createHash("sha256");
    for (let m = store.next(1, null); m !== null; m = store.next(m.seq + 1, null)) {
      expect(m.data.readUInt32LE(0)).toBe(m.seq);
      read.update(m.data);
      if (m.seq % 64 === 0) peak = Math.max(peak, rss());
    }
    expect(read.digest("hex")).toBe(written.digest("hex"));
    store.close();
    expect(peak - base).toBeLessThan(128 * 1024 * 1024);
  });
});

/** Runs the kill child until it has printed `lines` flushed sequences, SIGKILLs it, returns the last. */
function runAndKill(script: string, dir: string, lines: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, dir], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    let seen = 0;
    let killed = false;
    child.stdout.setEncoding("latin1");
    child.stdout.on("data", (chunk: string) => {
      out += chunk;
      if (killed) return;
      for (let i = 0; i < chunk.length; i++) if (chunk.charCodeAt(i) === 10) seen++;
      if (seen >= lines) {
        killed = true;
        child.kill("SIGKILL");
      }
    });
    child.stderr.on("data", (c: Buffer) => (err += c.toString()));
    child.on("error", reject);
    child.on("close", (code, signal) => {
      if (signal !== "SIGKILL") {
        reject(new Error(`kill child exited with ${code}: ${err}`));
        return;
      }
      const done = out.slice(0, out.lastIndexOf("\n")).split("\n");
      resolve(Number(done[done.length - 1]));
    });
  });
}

/** The child removes seq - KILL_SUBJECTS (the previous message on the subject) with each append. */
function checkKilledStore(dir: string, printed: number): void {
  const store = new FileStore(dir, { maxSegmentBytes: KILL_SEGMENT_BYTES });
  const st = store.state();
  expect(st.lastSeq).toBeGreaterThanOrEqual(printed);
  const last = st.lastSeq;
  const live: number[] = [];
  let bytes = 0;
  for (let x = 1; x <= last + 1; x++) {
    const m = store.get(x);
    if (x + KILL_SUBJECTS <= printed) {
      expect(m, `seq ${x} was removed before a printed flush`).toBeNull();
    } else if (x <= printed && m === null) {
      expect(last, `seq ${x} was printed as flushed`).toBeGreaterThanOrEqual(x + KILL_SUBJECTS);
    }
    if (m === null) continue;
    expect(x).toBeLessThanOrEqual(last);
    live.push(x);
    expect(m.subject).toBe(killSubject(x));
    expect(m.time).toBe(1700000000000 + x);
    const h = killHeader(x);
    if (h === null) expect(m.header).toBeNull();
    else expect(m.header?.equals(h)).toBe(true);
    expect(m.data.equals(killPayload(x))).toBe(true);
    bytes += fileSize(m.subject, m.header, m.data);
  }
  const walked: number[] = [];
  for (let m = store.next(0, null); m !== null; m = store.next(m.seq + 1, null)) walked.push(m.seq);
  expect(walked).toEqual(live);
  expect(st.messages).toBe(live.length);
  expect(st.bytes).toBe(bytes);
  expect(st.firstSeq).toBe(live[0] ?? last + 1);
  const bySubject = new Map<string, number[]>();
  for (const s of live) {
    const subj = killSubject(s);
    bySubject.set(subj, [...(bySubject.get(subj) ?? []), s]);
  }
  expect(st.numSubjects).toBe(bySubject.size);
  for (const [subj, seqs] of bySubject) {
    expect(store.countOnSubject(subj)).toBe(seqs.length);
    expect(store.lastOnSubject(subj)?.seq).toBe(seqs[seqs.length - 1]);
  }
  store.close();
}
