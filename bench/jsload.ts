// JetStream workloads for the bench: KV put/get, async stream publish,
// ordered-consumer replay, object store put/get. Runs inside a loadgen child
// (role "js") with the official nats.js v3 clients; the same code drives both
// servers.
//
// Protocol with the parent: set-up (bucket/stream creation, pre-fill; untimed)
// -> "ready" -> parent sends "jsRun" -> warm-up + timed part -> "jsDone".
// Every loop is bounded by a count (MAX_OPS) and by a deadline.

import { randomFillSync } from "node:crypto";
import { hrtime } from "node:process";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import {
  jetstream,
  jetstreamManager,
  StorageType,
  type JetStreamClient,
  type JetStreamManager,
} from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { Objm, setSha256Backend, type ObjectStore } from "@nats-io/obj";
import type { FromChild, JsConfig, JsReport, JsWorkload, ToChild } from "./messages.js";
import { withTimeout } from "./servers.js";

export interface ChildIO {
  send(m: FromChild): void;
  nextMessage<T extends ToChild["type"]>(type: T): Promise<Extract<ToChild, { type: T }>>;
}

const CONNECT_TIMEOUT_MS = 10_000;
/** Per JetStream request (publish ack, API call, KV op, object chunk). */
const OP_TIMEOUT_MS = 10_000;
/** Bucket/stream creation plus pre-fill. */
const SETUP_TIMEOUT_MS = 120_000;
/** Hard cap on operations in any loop, whatever the clock says. */
const MAX_OPS = 5_000_000;
/** kvput cycles over this many keys (history 1, so the bucket stays small). */
const KVPUT_KEYS = 1000;
/** Object stores: a small object put/got once before the timed part (JIT, first-use costs). */
const WARM_OBJECT_BYTES = 4 * 1024 * 1024;
const CLOSE_TIMEOUT_MS = 5_000;

type Timed = Omit<JsReport, "setupSeconds" | "clientCores">;
/** The timed part of a workload (warm-up included); set-up has already happened. */
type Runner = (warmupMs: number, measureMs: number, deadline: bigint) => Promise<Timed>;

interface Ctx {
  cfg: JsConfig;
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
}

const now = (): bigint => hrtime.bigint();
const after = (ms: number): bigint => now() + BigInt(Math.round(ms)) * 1_000_000n;
const secondsBetween = (a: bigint, b: bigint): number => Number(b - a) / 1e9;

function checkDeadline(deadline: bigint, what: string): void {
  if (now() > deadline) throw new Error(`timed out during ${what}`);
}

/** A value of exactly `size` bytes that encodes `tag` (so reads can be checked). */
function taggedValue(tag: string, size: number): Uint8Array {
  const out = new Uint8Array(size).fill(0x2e); // "."
  const b = Buffer.from(tag, "latin1");
  out.set(b.subarray(0, size), 0);
  return out;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.length).equals(b);
}

/** xorshift32: a fixed pseudo-random key sequence, the same for both servers. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 0x9e3779b9;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

/**
 * Sequential operations: warm-up for `warmupMs`, then count the operations
 * that complete in the next `measureMs`.
 */
async function timedLoop(
  op: (i: number) => Promise<void>,
  warmupMs: number,
  measureMs: number,
  deadline: bigint,
): Promise<{ ops: number; seconds: number; total: number }> {
  let i = 0;
  const warmEnd = after(warmupMs);
  while (i < MAX_OPS && now() < warmEnd) await op(i++);
  const t0 = now();
  const end = t0 + BigInt(measureMs) * 1_000_000n;
  let n = 0;
  while (i < MAX_OPS && now() < end) {
    await op(i++);
    n++;
  }
  const t1 = now();
  checkDeadline(deadline, "the timed loop");
  return { ops: n, seconds: secondsBetween(t0, t1), total: i };
}

interface PubStats {
  sent: number;
  acked: number;
  /** Acks that arrived at or after `mark`. */
  ackedAfterMark: number;
  lastAckAt: bigint;
  lastSeq: number;
  /** Acks whose stream sequence was not above the previous ack's. */
  seqRegressions: number;
}

/**
 * Publishes `payload` without awaiting each ack, with at most `window` acks
 * outstanding, while `more(sent)` is true (checked before every publish), then
 * waits for the acks still in flight. Throws if any publish failed.
 */
async function windowedPublish(
  js: JetStreamClient,
  subject: string,
  payload: Uint8Array,
  window: number,
  more: (sent: number) => boolean,
  mark: bigint | null,
  deadline: bigint,
): Promise<PubStats> {
  const st: PubStats = { sent: 0, acked: 0, ackedAfterMark: 0, lastAckAt: now(), lastSeq: 0, seqRegressions: 0 };
  let inflight = 0;
  let errors = 0;
  let firstError: string | null = null;
  let wake: (() => void) | null = null;
  let abort: ((e: Error) => void) | null = null;
  const settled = (): void => {
    inflight--;
    const w = wake;
    if (w) {
      wake = null;
      abort = null;
      w();
    }
  };
  const waitForAck = (): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      wake = resolve;
      abort = reject;
    });
  // One watchdog instead of a timer per wait.
  const dog = setInterval(() => {
    if (now() > deadline && abort) {
      const a = abort;
      wake = null;
      abort = null;
      a(new Error(`acks stopped arriving (${inflight} in flight, ${st.acked} acked)`));
    }
  }, 100);
  try {
    while (st.sent < MAX_OPS && firstError === null && more(st.sent)) {
      while (inflight >= window) await waitForAck();
      inflight++;
      st.sent++;
      js.publish(subject, payload, { timeout: OP_TIMEOUT_MS }).then(
        (ack) => {
          const t = now();
          st.acked++;
          if (mark !== null && t >= mark) st.ackedAfterMark++;
          st.lastAckAt = t;
          if (ack.seq <= st.lastSeq) st.seqRegressions++;
          else st.lastSeq = ack.seq;
          settled();
        },
        (e: unknown) => {
          errors++;
          firstError ??= e instanceof Error ? e.message : String(e);
          settled();
        },
      );
    }
    while (inflight > 0) await waitForAck();
  } finally {
    clearInterval(dog);
  }
  if (errors) throw new Error(`${errors} of ${st.sent} publishes failed; first: ${firstError}`);
  return st;
}

async function streamMessages(jsm: JetStreamManager, stream: string): Promise<{ messages: number; lastSeq: number; bytes: number }> {
  const si = await jsm.streams.info(stream);
  return { messages: si.state.messages, lastSeq: si.state.last_seq, bytes: si.state.bytes };
}

// ------------------------------------------------------------------ workloads

async function setupKvPut({ cfg, js, jsm }: Ctx): Promise<Runner> {
  const kv = await new Kvm(js).create("benchput", { history: 1 });
  return async (warmupMs, measureMs, deadline) => {
    let lastRev = 0;
    let lastKey = "";
    let lastTag = "";
    const r = await timedLoop(
      async (i) => {
        lastKey = `k${i % KVPUT_KEYS}`;
        lastTag = `v${i}`;
        lastRev = await kv.put(lastKey, taggedValue(lastTag, cfg.payloadSize));
      },
      warmupMs,
      measureMs,
      deadline,
    );
    // Sanity checks (untimed).
    const problems: string[] = [];
    const st = await streamMessages(jsm, "KV_benchput");
    if (lastRev !== r.total) problems.push(`last put returned revision ${lastRev} after ${r.total} puts`);
    if (st.lastSeq !== r.total) problems.push(`stream last_seq ${st.lastSeq} after ${r.total} puts`);
    const want = Math.min(r.total, KVPUT_KEYS);
    if (st.messages !== want) problems.push(`stream holds ${st.messages} messages, expected ${want} (history 1)`);
    const e = await kv.get(lastKey);
    if (!e || !sameBytes(e.value, taggedValue(lastTag, cfg.payloadSize))) problems.push(`get(${lastKey}) did not return the last value put`);
    return {
      ops: r.ops,
      bytes: r.ops * cfg.payloadSize,
      seconds: r.seconds,
      detail: `${r.ops} puts timed, ${r.total} in total, last revision ${lastRev}`,
      warning: problems.length ? problems.join("; ") : null,
    };
  };
}

async function setupKvGet({ cfg, js, jsm }: Ctx, deadline: bigint): Promise<Runner> {
  const kv = await new Kvm(js).create("benchget", { history: 1 });
  const values = Array.from({ length: cfg.keys }, (_, k) => taggedValue(`value-of-${k}`, cfg.payloadSize));
  // Pre-fill, 100 puts in flight at a time.
  for (let k = 0; k < cfg.keys; k += 100) {
    checkDeadline(deadline, "the KV pre-fill");
    const batch: Promise<number>[] = [];
    for (let j = k; j < Math.min(cfg.keys, k + 100); j++) batch.push(kv.put(`k${j}`, values[j]!));
    await Promise.all(batch);
  }
  const st = await streamMessages(jsm, "KV_benchget");
  if (st.messages !== cfg.keys) throw new Error(`pre-fill: bucket holds ${st.messages} entries, expected ${cfg.keys}`);
  return async (warmupMs, measureMs, deadline) => {
    const next = rng(cfg.seed);
    let missing = 0;
    let wrong = 0;
    const r = await timedLoop(
      async () => {
        const k = next() % cfg.keys;
        const e = await kv.get(`k${k}`);
        if (!e) missing++;
        else if (!sameBytes(e.value, values[k]!)) wrong++;
      },
      warmupMs,
      measureMs,
      deadline,
    );
    const problems: string[] = [];
    if (missing) problems.push(`${missing} of ${r.total} gets found no entry`);
    if (wrong) problems.push(`${wrong} of ${r.total} gets returned the wrong value`);
    return {
      ops: r.ops,
      bytes: r.ops * cfg.payloadSize,
      seconds: r.seconds,
      detail: `${r.ops} gets timed, ${r.total} in total, ${cfg.keys} keys`,
      warning: problems.length ? problems.join("; ") : null,
    };
  };
}

async function setupJsPub({ cfg, js, jsm }: Ctx): Promise<Runner> {
  const stream = "BENCHPUB";
  const subject = "bench.jspub";
  await jsm.streams.add({ name: stream, subjects: [subject], storage: StorageType.File });
  const payload = taggedValue("jspub", cfg.payloadSize);
  return async (warmupMs, measureMs, deadline) => {
    const warmAt = after(warmupMs);
    const endAt = warmAt + BigInt(measureMs) * 1_000_000n;
    const p = await windowedPublish(js, subject, payload, cfg.window, () => now() < endAt, warmAt, deadline);
    const seconds = secondsBetween(warmAt, p.lastAckAt);
    if (p.ackedAfterMark === 0 || seconds <= 0) throw new Error(`no acks after the warm-up (${p.acked} in total)`);
    const problems: string[] = [];
    const st = await streamMessages(jsm, stream);
    if (st.messages !== p.acked) problems.push(`stream holds ${st.messages} messages after ${p.acked} acked publishes`);
    if (p.seqRegressions) problems.push(`${p.seqRegressions} acks carried a sequence not above the previous ack's`);
    return {
      ops: p.ackedAfterMark,
      bytes: p.ackedAfterMark * cfg.payloadSize,
      seconds,
      detail: `${p.ackedAfterMark} acks after the warm-up, ${p.acked} in total, window ${cfg.window}`,
      warning: problems.length ? problems.join("; ") : null,
    };
  };
}

/**
 * Fills a stream quickly: core publishes (no acks) in batches of 1,000, each
 * followed by a flush (PING/PONG) so at most one batch is unprocessed; then
 * waits until the stream holds all of them. Publishing with js.publish would
 * be several times slower here (the client is the bottleneck), and this part
 * is not timed.
 */
async function fillStream(
  { nc, jsm }: Ctx,
  stream: string,
  subject: string,
  payload: Uint8Array,
  count: number,
  deadline: bigint,
): Promise<void> {
  const BATCH = 1000;
  for (let sent = 0; sent < count; ) {
    checkDeadline(deadline, "the stream pre-fill");
    const n = Math.min(BATCH, count - sent);
    for (let j = 0; j < n; j++) nc.publish(subject, payload);
    sent += n;
    await nc.flush();
  }
  let st = await streamMessages(jsm, stream);
  for (let i = 0; i < 1000 && st.messages < count && now() < deadline; i++) {
    await new Promise((r) => setTimeout(r, 50));
    st = await streamMessages(jsm, stream);
  }
  if (st.messages !== count) throw new Error(`pre-fill: stream holds ${st.messages} messages after ${count} publishes`);
}

async function setupReplay(ctx: Ctx, deadline: bigint): Promise<Runner> {
  const { cfg, js, jsm } = ctx;
  const stream = "BENCHREPLAY";
  const subject = "bench.replay";
  await jsm.streams.add({ name: stream, subjects: [subject], storage: StorageType.File });
  await fillStream(ctx, stream, subject, taggedValue("replay", cfg.payloadSize), cfg.prefill, deadline);
  return async (_warmupMs, _measureMs, deadline) => {
    // One full read, timed from creating the ordered consumer to the last message.
    const t0 = now();
    const consumer = await js.consumers.get(stream);
    const msgs = await consumer.consume({ max_messages: 1000 });
    const ms = Math.max(1, Number(deadline - now()) / 1e6);
    const guard = setTimeout(() => void msgs.stop(), ms);
    let n = 0;
    let outOfOrder = 0;
    let badPayload = 0;
    let t1 = t0;
    try {
      for await (const m of msgs) {
        n++;
        if (m.seq !== n) outOfOrder++;
        if (m.data.length !== cfg.payloadSize) badPayload++;
        if (n >= cfg.prefill || n >= MAX_OPS) break;
      }
      t1 = now();
    } finally {
      clearTimeout(guard);
      await withTimeout(msgs.close(), CLOSE_TIMEOUT_MS, "closing the consumer").catch(() => {});
    }
    if (n < cfg.prefill) throw new Error(`replay stopped after ${n} of ${cfg.prefill} messages (deadline)`);
    const problems: string[] = [];
    if (outOfOrder) problems.push(`${outOfOrder} messages arrived out of sequence`);
    if (badPayload) problems.push(`${badPayload} messages had the wrong payload size`);
    return {
      ops: n,
      bytes: n * cfg.payloadSize,
      seconds: secondsBetween(t0, t1),
      detail: `${n} messages read`,
      warning: problems.length ? problems.join("; ") : null,
    };
  };
}

function objectData(size: number): Uint8Array {
  // Random bytes: nothing along the way can compress or deduplicate them.
  return randomFillSync(new Uint8Array(size));
}

async function readObject(os: ObjectStore, name: string, deadline: bigint): Promise<number> {
  const r = await os.get(name);
  if (!r) throw new Error(`object ${name} not found`);
  const reader = r.data.getReader();
  let bytes = 0;
  for (let i = 0; i < MAX_OPS; i++) {
    if (now() > deadline) {
      await reader.cancel().catch(() => {});
      throw new Error(`reading object ${name}: timed out after ${bytes} bytes`);
    }
    const { done, value } = await reader.read();
    if (done) break;
    bytes += value.length;
  }
  const err = await r.error;
  if (err) throw new Error(`reading object ${name}: ${err.message}`);
  return bytes;
}

async function setupObjPut({ cfg, js }: Ctx, deadline: bigint): Promise<Runner> {
  const os = await new Objm(js).create("benchput");
  const data = objectData(cfg.objectBytes);
  await os.putBlob({ name: "warm" }, data.subarray(0, Math.min(WARM_OBJECT_BYTES, data.length)));
  checkDeadline(deadline, "the object warm-up");
  return async (_w, _m, deadline) => {
    // `objectRepeats` puts of the whole object under distinct names, back to back.
    const infos = [];
    const t0 = now();
    for (let i = 0; i < cfg.objectRepeats; i++) {
      checkDeadline(deadline, "the object puts");
      infos.push(await os.putBlob({ name: `big${i}` }, data));
    }
    const t1 = now();
    const problems: string[] = [];
    for (const [i, info] of infos.entries()) {
      if (info.size !== cfg.objectBytes) problems.push(`put of big${i} reported size ${info.size}, expected ${cfg.objectBytes}`);
      const back = await os.info(`big${i}`);
      if (!back || back.size !== cfg.objectBytes || back.digest !== info.digest) problems.push(`info(big${i}) after put does not match the put`);
    }
    return {
      ops: infos.length,
      bytes: infos.length * cfg.objectBytes,
      seconds: secondsBetween(t0, t1),
      detail: `${infos.length} put(s) of ${infos[0]?.chunks ?? 0} chunks`,
      warning: problems.length ? problems.join("; ") : null,
    };
  };
}

async function setupObjGet({ cfg, js }: Ctx, deadline: bigint): Promise<Runner> {
  const os = await new Objm(js).create("benchget");
  {
    const data = objectData(cfg.objectBytes);
    await os.putBlob({ name: "big" }, data);
    await os.putBlob({ name: "warm" }, data.subarray(0, Math.min(WARM_OBJECT_BYTES, data.length)));
  }
  await readObject(os, "warm", deadline);
  return async (_w, _m, deadline) => {
    // `objectRepeats` full reads, back to back; the client checks the SHA-256 digest of each.
    let bytes = 0;
    let short = 0;
    const t0 = now();
    for (let i = 0; i < cfg.objectRepeats; i++) {
      const n = await readObject(os, "big", deadline);
      bytes += n;
      if (n !== cfg.objectBytes) short++;
    }
    const t1 = now();
    return {
      ops: cfg.objectRepeats,
      bytes,
      seconds: secondsBetween(t0, t1),
      detail: `${cfg.objectRepeats} get(s), ${bytes} bytes read, digests ok`,
      warning: short ? `${short} of ${cfg.objectRepeats} reads did not return ${cfg.objectBytes} bytes` : null,
    };
  };
}

const SETUP: Record<JsWorkload, (ctx: Ctx, deadline: bigint) => Promise<Runner>> = {
  kvput: setupKvPut,
  kvget: setupKvGet,
  jspub: setupJsPub,
  replay: setupReplay,
  objput: setupObjPut,
  objget: setupObjGet,
};

export async function runJs(cfg: JsConfig, io: ChildIO): Promise<void> {
  // nats.js builds a RequestError and a TimeoutError for every request (every
  // js.publish, KV op, object chunk) up front; capturing their stack traces
  // was ~30% of this process's CPU and capped async publish at a third of
  // what it reaches without. Errors keep their messages, which is all we report.
  Error.stackTraceLimit = 0;
  setSha256Backend("native"); // the pure-JS default would dominate the object rows
  const nc = await connect({ servers: cfg.url, timeout: CONNECT_TIMEOUT_MS, reconnect: false });
  const jsm = await jetstreamManager(nc, { timeout: OP_TIMEOUT_MS }); // fails fast without JetStream
  const js = jetstream(nc, { timeout: OP_TIMEOUT_MS });
  const ctx: Ctx = { cfg, nc, js, jsm };

  const s0 = now();
  const setupDeadline = s0 + BigInt(SETUP_TIMEOUT_MS) * 1_000_000n;
  const run = await withTimeout(SETUP[cfg.workload](ctx, setupDeadline), SETUP_TIMEOUT_MS, "set-up");
  const setupSeconds = secondsBetween(s0, now());
  io.send({ type: "ready" });

  const go = await io.nextMessage("jsRun");
  const runDeadline = after(go.warmupMs + go.measureMs + go.timeoutMs);
  const cpu0 = process.cpuUsage();
  const wall0 = now();
  const r = await withTimeout(
    run(go.warmupMs, go.measureMs, runDeadline),
    go.warmupMs + go.measureMs + go.timeoutMs + 2_000,
    "timed run",
  );
  const cpu = process.cpuUsage(cpu0);
  const clientCores = (cpu.user + cpu.system) / 1e6 / secondsBetween(wall0, now());
  io.send({ type: "jsDone", report: { ...r, setupSeconds, clientCores } });
  await withTimeout(nc.close(), CLOSE_TIMEOUT_MS, "closing the connection").catch(() => {});
}
