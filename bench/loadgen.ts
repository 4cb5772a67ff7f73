// Load generator child process. One process per role instance, so publishers,
// subscribers and the broker never share an event loop.
//
//   node dist/bench/loadgen.js '<json ChildConfig>'
//
// pub/sub use raw sockets (no client library), over TCP or over a WebSocket (the `ws` package: the same
// protocol bytes in binary frames); req/rep/reqc use @nats-io/transport-node (or, for a ws:// url,
// @nats-io/nats-core's wsconnect over `ws`), kvrep also @nats-io/kv; the JetStream workloads (role "js") live in jsload.ts and use the nats.js v3
// JetStream, KV and object store clients.
// The parent drives each child over the fork() IPC channel (see messages.ts).

import net from "node:net";
import { hrtime } from "node:process";
import type { Msg } from "@nats-io/transport-node";
import WebSocket from "ws";
import type {
  ChildConfig,
  FromChild,
  KvRepConfig,
  PubConfig,
  RepConfig,
  ReqConfig,
  ReqcConfig,
  SubConfig,
  ToChild,
  Transport,
} from "./messages.js";
import { InboundCounter, buildPubBatch, connectCommand, msgFrameShape, pubCommandLen } from "./wire.js";

const HOST = "127.0.0.1";
const CONNECT_TIMEOUT_MS = 10_000;
const FINISH_TIMEOUT_MS = 30_000;
const STALL_TIMEOUT_MS = 15_000;

function send(m: FromChild): void {
  if (process.connected) process.send!(m);
}

let dying = false;
/** Reports a fatal error to the parent and exits (once the message is flushed). */
function report(message: string): void {
  if (dying) return;
  dying = true;
  if (process.connected) {
    process.send!({ type: "error", message } satisfies FromChild, () => process.exit(1));
    setTimeout(() => process.exit(1), 1000).unref();
  } else {
    process.exit(1);
  }
}

/** report() for async code paths: also unwinds the caller. */
function fail(message: string): never {
  report(message);
  throw new Error(message);
}

process.on("uncaughtException", (e) => report(`uncaught: ${e.message}`));
process.on("unhandledRejection", (e) => report(`unhandled rejection: ${e instanceof Error ? e.message : String(e)}`));

// Never outlive the orchestrator.
process.on("disconnect", () => process.exit(0));

type Handler = (m: ToChild) => void;
let onParentMessage: Handler = () => {};
process.on("message", (m: ToChild) => {
  if (m.type === "exit") {
    process.exit(0);
  }
  onParentMessage(m);
});

function nextMessage<T extends ToChild["type"]>(type: T): Promise<Extract<ToChild, { type: T }>> {
  return new Promise((resolve) => {
    const prev = onParentMessage;
    onParentMessage = (m) => {
      if (m.type === type) {
        onParentMessage = prev;
        resolve(m as Extract<ToChild, { type: T }>);
      } else {
        prev(m);
      }
    };
  });
}

/**
 * A tiny condition variable: wait() resolves when notify() is called or the
 * timer fires; callers re-check their condition in a loop.
 */
class Signal {
  private wake: (() => void) | null = null;
  notify(): void {
    const w = this.wake;
    if (w) {
      this.wake = null;
      w();
    }
  }
  async until(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!cond()) {
      if (dying) throw new Error("aborted");
      const left = deadline - Date.now();
      if (left <= 0) fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
  }
}

function sleepUntil(at: bigint): Promise<void> {
  const ms = Number(at - hrtime.bigint()) / 1e6;
  return ms > 0 ? new Promise((r) => setTimeout(r, ms)) : Promise.resolve();
}

// ------------------------------------------------------------- raw links

/** A raw NATS protocol byte stream to the server, over TCP or a WebSocket. */
interface RawLink {
  /** Sends bytes; false: the transport has buffered enough, wait for onDrain before sending more. */
  write(data: Buffer | string): boolean;
}

interface LinkEvents {
  /** Bytes from the server, exactly as received (a TCP read, or one WebSocket message). */
  onData(d: Buffer): void;
  onDrain(): void;
  onError(e: Error): void;
  onClose(): void;
}

/** Socket write buffer above which write() asks to wait (net.Socket's default highWaterMark). */
const WRITE_HWM = 16 * 1024;

/**
 * Opens a link and resolves once it is connected. TCP reads go straight into `readBuf` (no per-read
 * allocation); a WebSocket delivers one Buffer per message. Over a WebSocket, write() sends one binary
 * frame per call (masked with a random key, as every client must) and reports "wait" while the
 * underlying socket holds more than WRITE_HWM unsent bytes, as net.Socket.write does.
 */
async function openLink(transport: Transport, port: number, readBuf: Buffer, ev: LinkEvents): Promise<RawLink> {
  if (transport === "tcp") {
    const sock = net.connect({
      host: HOST,
      port,
      onread: {
        buffer: readBuf,
        callback: (n: number): boolean => {
          ev.onData(readBuf.subarray(0, n));
          return true;
        },
      },
    });
    sock.setNoDelay(true);
    sock.on("drain", () => ev.onDrain());
    sock.on("error", (e) => ev.onError(e));
    sock.on("close", () => ev.onClose());
    await new Promise<void>((resolve) => sock.once("connect", () => resolve()));
    return { write: (d) => sock.write(d) };
  }
  const ws = new WebSocket(`ws://${HOST}:${port}`, { perMessageDeflate: false, skipUTF8Validation: true });
  ws.binaryType = "nodebuffer";
  ws.on("message", (d: Buffer) => ev.onData(d));
  ws.on("error", (e) => ev.onError(e));
  ws.on("close", () => ev.onClose());
  await new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("error", reject);
  });
  const sent = (err?: Error): void => {
    if (err) ev.onError(err);
    else if (ws.bufferedAmount < WRITE_HWM) ev.onDrain();
  };
  return {
    write: (d) => {
      ws.send(typeof d === "string" ? Buffer.from(d, "latin1") : d, { binary: true }, sent);
      return ws.bufferedAmount < WRITE_HWM;
    },
  };
}

// ---------------------------------------------------------------- publisher

async function runPub(cfg: PubConfig): Promise<void> {
  const perMsg = pubCommandLen(cfg.subject, cfg.payloadSize);
  const perBatch = Math.max(1, Math.floor(cfg.batchBytes / perMsg));
  const batch = buildPubBatch(cfg.subject, cfg.payloadSize, perBatch);

  const sig = new Signal();
  let pings = 0;
  let pongs = 0;
  let delivered = 0;
  let drained = true;
  let closed = false;
  let finished = false;

  onParentMessage = (m) => {
    if (m.type === "credit") {
      delivered = m.delivered;
      sig.notify();
    }
  };

  let link: RawLink;
  const counter = new InboundCounter(null, {
    onPing: () => link.write("PONG\r\n"),
    onPong: () => {
      pongs++;
      sig.notify();
    },
    onError: (t) => report(`publisher got ${t}`),
  });
  link = await openLink(cfg.transport, cfg.port, Buffer.allocUnsafe(64 * 1024), {
    onData: (d) => counter.feed(d),
    onDrain: () => {
      drained = true;
      sig.notify();
    },
    onError: (e) => report(`publisher ${cfg.transport} error: ${e.message}`),
    onClose: () => {
      closed = true;
      if (!finished) report("publisher connection closed by the server");
      sig.notify();
    },
  });
  link.write(connectCommand() + "PING\r\n");
  pings++;
  await sig.until(() => pongs >= pings, CONNECT_TIMEOUT_MS, "PONG after CONNECT");
  send({ type: "ready" });

  const start = await nextMessage("start");
  const endAt = BigInt(start.endAt);
  await sleepUntil(BigInt(start.startAt));

  const t0 = hrtime.bigint();
  let sent = 0;
  let creditWaits = 0;
  let pongWaits = 0;
  // Bounded: stops at endAt; every wait below has its own timeout.
  while (hrtime.bigint() < endAt) {
    if (pings - pongs >= cfg.maxOutstandingPings) {
      pongWaits++;
      await sig.until(() => pings - pongs < cfg.maxOutstandingPings, STALL_TIMEOUT_MS, "PONG (in-flight window)");
    }
    if (sent - delivered > cfg.maxLagMsgs) {
      creditWaits++;
      await sig.until(() => sent - delivered <= cfg.maxLagMsgs, STALL_TIMEOUT_MS, "deliveries (lag window)");
    }
    if (closed) break;
    drained = link.write(batch);
    pings++;
    sent += perBatch;
    if (!drained) await sig.until(() => drained, STALL_TIMEOUT_MS, "socket drain");
  }
  // Everything we sent has been processed by the server once the last PONG is in.
  await sig.until(() => pongs >= pings, FINISH_TIMEOUT_MS, "final PONG");
  const tEnd = hrtime.bigint();
  finished = true;
  send({
    type: "pubDone",
    report: { sent, t0: t0.toString(), tEnd: tEnd.toString(), creditWaits, pongWaits },
  });
  // Stay connected until the parent says exit (closing early could race deliveries).
}

// --------------------------------------------------------------- subscriber

async function runSub(cfg: SubConfig): Promise<void> {
  const sid = "1";
  const sig = new Signal();
  let pongs = 0;
  let finished = false;
  let warmAt: bigint | null = null;
  let snapCount: number | null = null;
  let snapTime: bigint | null = null;
  let lastTime: bigint | null = null;

  let link: RawLink;
  const counter = new InboundCounter(msgFrameShape(cfg.subject, sid, cfg.payloadSize), {
    onPing: () => link.write("PONG\r\n"),
    onPong: () => {
      pongs++;
      sig.notify();
    },
    onError: (t) => report(`subscriber got ${t}`),
  });
  // TCP reads go straight into one reusable buffer: no per-read allocation.
  link = await openLink(cfg.transport, cfg.port, Buffer.allocUnsafe(256 * 1024), {
    onData: (d) => {
      const before = counter.msgs;
      try {
        counter.feed(d);
      } catch (e) {
        report(`subscriber parse error: ${(e as Error).message}`);
      }
      if (counter.msgs !== before) {
        const now = hrtime.bigint();
        if (snapTime === null && warmAt !== null && now >= warmAt) {
          snapCount = before;
          snapTime = now;
        }
        lastTime = now;
      }
    },
    onDrain: () => {},
    onError: (e) => report(`subscriber ${cfg.transport} error: ${e.message}`),
    onClose: () => {
      if (!finished) report("subscriber connection closed by the server (slow consumer?)");
    },
  });
  const q = cfg.queue ? ` ${cfg.queue}` : "";
  link.write(`${connectCommand()}SUB ${cfg.subject}${q} ${sid}\r\nPING\r\n`);
  await sig.until(() => pongs >= 1, CONNECT_TIMEOUT_MS, "PONG after SUB");
  onParentMessage = (m) => {
    if (m.type === "arm") warmAt = BigInt(m.warmAt);
  };
  send({ type: "ready" });

  let lastSent = -1;
  const progress = setInterval(() => {
    if (counter.msgs !== lastSent) {
      lastSent = counter.msgs;
      send({ type: "progress", count: lastSent });
    }
  }, cfg.progressMs);

  await nextMessage("finish");
  clearInterval(progress);
  // The server answers our PING after everything it queued for us before it.
  const want = pongs + 1;
  link.write("PING\r\n");
  await sig.until(() => pongs >= want, FINISH_TIMEOUT_MS, "PONG after drain");
  finished = true;
  send({
    type: "subDone",
    report: {
      count: counter.msgs,
      snapCount,
      snapTime: snapTime === null ? null : (snapTime as bigint).toString(),
      lastTime: lastTime === null ? null : (lastTime as bigint).toString(),
    },
  });
}

// ------------------------------------------------------ request / reply (nats.js)

async function loadClient() {
  return await import("@nats-io/transport-node");
}

/**
 * A nats.js connection to `url`: nats://... through @nats-io/transport-node, ws://... through
 * @nats-io/nats-core's wsconnect, which needs a global WebSocket (Node 20 has none: the `ws` package's).
 */
async function connectTo(url: string) {
  if (url.startsWith("ws://") || url.startsWith("wss://")) {
    (globalThis as { WebSocket?: unknown }).WebSocket ??= WebSocket;
    const { wsconnect } = await import("@nats-io/nats-core");
    return await wsconnect({ servers: url, timeout: CONNECT_TIMEOUT_MS, reconnect: false });
  }
  const { connect } = await loadClient();
  return await connect({ servers: url, timeout: CONNECT_TIMEOUT_MS, reconnect: false });
}

async function runRep(cfg: RepConfig): Promise<void> {
  const nc = await connectTo(cfg.url);
  nc.subscribe(cfg.subject, {
    callback: (err, msg) => {
      if (!err) msg.respond(msg.data);
    },
  });
  await nc.flush();
  void nc.closed().then((err) => {
    if (err) report(`responder connection closed: ${err.message}`);
  });
  send({ type: "ready" });
}

/**
 * The kvfn row's peer: a bare nats.js responder doing what the function does, directly on a KV bucket of
 * its own: kv.put(key, data), then kv.get(key), respond with the value read. Requests are handled as they
 * arrive (several can be in flight on the one connection); a failure answers with a Nex-Error header, so
 * requesters count it as an error. Keys roll over cfg.keys names, one per request, so requests in flight
 * at the same time (fewer than cfg.keys) never share a key.
 */
async function runKvRep(cfg: KvRepConfig): Promise<void> {
  const { connect, headers } = await loadClient();
  const { Kvm } = await import("@nats-io/kv");
  const nc = await connect({ servers: cfg.url, timeout: CONNECT_TIMEOUT_MS, reconnect: false });
  const kv = await new Kvm(nc).create(cfg.bucket, { max_bytes: cfg.maxBytes, maxValueSize: cfg.maxValueSize });
  let counter = 0;
  const failWith = (msg: Msg, text: string): void => {
    const h = headers();
    h.set("Nex-Error", text.slice(0, 200).replace(/[\r\n]/g, " "));
    msg.respond(text, { headers: h });
  };
  nc.subscribe(cfg.subject, {
    callback: (err, msg) => {
      if (err) return;
      const key = `k${counter++ % cfg.keys}`;
      // A copy: msg.data may be a view into the connection's read buffer.
      const value = new Uint8Array(msg.data);
      kv.put(key, value)
        .then(() => kv.get(key))
        .then(
          (entry) => {
            if (entry === null || entry.operation !== "PUT") failWith(msg, `kv.get(${key}) found no value`);
            else msg.respond(entry.value);
          },
          (e: unknown) => failWith(msg, `kv: ${e instanceof Error ? e.message : String(e)}`),
        );
    },
  });
  await nc.flush();
  void nc.closed().then((err) => {
    if (err) report(`kv responder connection closed: ${err.message}`);
  });
  send({ type: "ready" });
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1));
  return sorted[idx]!;
}

async function runReq(cfg: ReqConfig): Promise<void> {
  const nc = await connectTo(cfg.url);
  const payload = new Uint8Array(cfg.payloadSize).fill(0x61);
  // One request to make sure the responder is reachable (and create the mux inbox).
  await nc.request(cfg.subject, payload, { timeout: 5000 });
  send({ type: "ready" });

  const run = await nextMessage("run");
  const opts = { timeout: 2000 };
  const warmEnd = hrtime.bigint() + BigInt(run.warmupMs) * 1_000_000n;
  for (let i = 0; i < 1_000_000 && hrtime.bigint() < warmEnd; i++) {
    await nc.request(cfg.subject, payload, opts);
  }
  const lat = new Float64Array(run.maxRequests);
  const end = hrtime.bigint() + BigInt(run.measureMs) * 1_000_000n;
  let n = 0;
  let sum = 0;
  while (n < run.maxRequests) {
    const t = hrtime.bigint();
    if (t >= end) break;
    await nc.request(cfg.subject, payload, opts);
    const us = Number(hrtime.bigint() - t) / 1000;
    lat[n++] = us;
    sum += us;
  }
  const s = lat.subarray(0, n).sort();
  send({
    type: "reqDone",
    report: {
      count: n,
      p50us: percentile(s, 0.5),
      p90us: percentile(s, 0.9),
      p99us: percentile(s, 0.99),
      meanUs: n ? sum / n : NaN,
      maxUs: n ? s[n - 1]! : NaN,
    },
  });
  await nc.close();
}

/** Per-request timeout of the concurrent requester. */
const REQC_TIMEOUT_MS = 5000;

/**
 * `inflight` request loops on one connection: each sends a request, waits for the reply, sends the next.
 * Loops start at startAt and stop issuing at endAt (or after maxRequests in all); replies that arrive
 * in [warmAt, endAt) are counted. Error replies (Nex-Error header) count as errors.
 */
async function runReqc(cfg: ReqcConfig): Promise<void> {
  const nc = await connectTo(cfg.url);
  const payload = new Uint8Array(cfg.payloadSize).fill(0x61);
  await nc.request(cfg.subject, payload, { timeout: 5000 });
  send({ type: "ready" });

  const run = await nextMessage("reqcRun");
  const warmAt = BigInt(run.warmAt);
  const endAt = BigInt(run.endAt);
  const lat = new Float64Array(run.maxRequests);
  let n = 0;
  let issued = 0;
  let errors = 0;
  let firstError: string | null = null;
  const opts = { timeout: REQC_TIMEOUT_MS };
  await sleepUntil(BigInt(run.startAt));
  const cpu0 = process.cpuUsage();
  const wall0 = hrtime.bigint();
  const loop = async (): Promise<void> => {
    while (issued < run.maxRequests && !dying) {
      const t = hrtime.bigint();
      if (t >= endAt) return;
      issued++;
      try {
        const m = await nc.request(cfg.subject, payload, opts);
        const err = m.headers?.get("Nex-Error");
        if (err) throw new Error(`error reply: ${err}`);
      } catch (e) {
        errors++;
        firstError ??= (e as Error).message;
        continue;
      }
      const done = hrtime.bigint();
      if (done >= warmAt && done < endAt) lat[n++] = Number(done - t) / 1000;
    }
  };
  await Promise.all(Array.from({ length: cfg.inflight }, loop));
  const cpu = process.cpuUsage(cpu0);
  const wallS = Number(hrtime.bigint() - wall0) / 1e9;
  const s = lat.subarray(0, n).sort();
  send({
    type: "reqcDone",
    report: {
      count: n,
      issued,
      errors,
      firstError,
      p50us: percentile(s, 0.5),
      p99us: percentile(s, 0.99),
      clientCores: (cpu.user + cpu.system) / 1e6 / wallS,
    },
  });
  await nc.close();
}

// --------------------------------------------------------------------- main

async function main(): Promise<void> {
  if (!process.send) {
    console.error("loadgen.js is started by bench/run.js (needs an IPC channel)");
    process.exit(2);
  }
  const cfg = JSON.parse(process.argv[2] ?? "null") as ChildConfig | null;
  if (!cfg) fail("missing config argument");
  switch (cfg.role) {
    case "pub":
      return runPub(cfg);
    case "sub":
      return runSub(cfg);
    case "rep":
      return runRep(cfg);
    case "kvrep":
      return runKvRep(cfg);
    case "req":
      return runReq(cfg);
    case "reqc":
      return runReqc(cfg);
    case "js": {
      const { runJs } = await import("./jsload.js");
      return runJs(cfg, { send, nextMessage });
    }
  }
}

main().catch((e: unknown) => report(e instanceof Error ? e.message : String(e)));
