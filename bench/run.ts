// Benchmark entry point: the bundled broker vs nats-server, same load generator; then the node rows
// (JavaScript functions on `nex node up`, beside a bare NATS responder where there is a peer).
//
//   npm run bench                 # full run (~7.5 min; the node rows ~2.5 min of it, density included)
//   npm run bench -- --quick      # shorter run (~1.5 min; JetStream rows alone ~25 s; no density row)
//   npm run bench -- --only 1,5   # only some rows (1-27, or names: pubsub16, pubsub1k, fanout, queue, reqrep,
//                                 #   kvput, kvget, jspub, replay, objput, objget, trigger, trigger50, cold, density,
//                                 #   kvfn, oci, wspubsub16, wsreqrep, svc50, svccold, childdeploy, failover,
//                                 #   brokerstart, nodestart)
//   npm run bench -- --only node  # the six node rows (trigger, trigger50, cold, density, kvfn, childdeploy)
//   npm run bench -- --only ws    # the two WebSocket rows (wspubsub16, wsreqrep)
//   npm run bench -- --only services   # the JavaScript service rows (svc50, svccold)
//   npm run bench -- --only web   # the HTTP trigger rows (http, httplatency: bench/http.ts; needs autocannon)
//   npm run bench -- --only wasm,wasmcold   # WebAssembly rows (bench/wasm.ts), also part of a full run
//   npm run bench -- --only failover   # row 25: kill -9 of a stream leader and a node on a 3-server cluster
//                                 #   (bench/failover.ts, ~1 min; part of a full run, not of --quick)
//   npm run bench -- --only startup    # rows 26-27: spawn → first PONG of nex broker and nex node up vs nats-server
//
// Rows 1-5 are core NATS; rows 6-11 are JetStream (KV, streams, ordered
// consumer, object store), run against `nats-server -js` and the bundled
// broker's JetStream, each with a fresh temporary data directory.
// Rows 18-19 are rows 1 and 5 over WebSocket: the same clients reach each server's
// websocket listener (nats-server: `websocket { listen: "127.0.0.1:P", no_tls: true }`
// in a config file; bundled: --ws-port 0), plain ws, no compression. They run
// with shorter windows (WS_WARMUP_MS + WS_MEASURE_MS) unless --warmup / --measure is given.
// Rows 12-16 run a fresh `nex node up` each (see noderows.ts): warm trigger
// round trip and throughput vs a bare responder, cold start, density, and a
// function using the KV host service vs a bare responder using @nats-io/kv. The
// density row (1,000 functions, bounded to ~3 min) is skipped by --quick
// unless asked for with --only density.
//
// Other options: --reps N, --warmup MS, --measure MS, --servers bundled,nats,
// --nats-server PATH, --json FILE (raw per-run results).

import { writeFileSync } from "node:fs";
import os from "node:os";
import { hrtime } from "node:process";
import { LoadChild, guarded, liveProcesses, sequentialRequests } from "./children.js";
import type { JsReport, JsWorkload, PubReport, ReqReport, SubReport, Transport } from "./messages.js";
import {
  SERVER_LABEL,
  bundledUnavailableReason,
  liveDataDirs,
  natsServerVersion,
  removeDataDir,
  startServer,
  type RunningServer,
  type ServerKind,
} from "./servers.js";
import { killHosts } from "./node.js";
import { nodeRows, renderNodeResults, runNodeRow, type NodeOptions, type NodeRow, type NodeRowResult } from "./noderows.js";
import { OCI_ROW_ID, runOciRow } from "./oci.js";
import { HTTP_ROW_IDS, runHttpRows } from "./http.js";
import { FAILOVER_ROW_ID, runFailoverRow } from "./failover.js";
import { STARTUP_ROW_IDS, runStartupRows } from "./startup.js";
import { formatNumber, markdownTable, type TableRow } from "./table.js";
import { runWasmBench, takeWasmRows } from "./wasm.js";
import { msgFrameShape } from "./wire.js";

// ------------------------------------------------------------------ options

interface Options {
  quick: boolean;
  only: Set<number> | null;
  reps: number;
  warmupMs: number;
  measureMs: number;
  /** Warm-up and timed window of the JetStream rows with a timed window (kvput, kvget, jspub). */
  jsWarmupMs: number;
  jsMeasureMs: number;
  /** Messages pre-filled for the replay row. */
  replayMsgs: number;
  /** Warm-up and timed window of the WebSocket rows (18, 19). */
  wsWarmupMs: number;
  wsMeasureMs: number;
  /** Warm-up and timed window of each of the kvfn row's trials (6 per run). */
  kvfnWarmupMs: number;
  kvfnMeasureMs: number;
  servers: ServerKind[];
  natsBin: string;
  jsonPath: string | null;
  /** --only named the density row itself (under --quick it runs only then). */
  densityNamed: boolean;
}

const ROW_NAMES: Record<string, number> = {
  pubsub16: 1,
  pubsub1k: 2,
  fanout: 3,
  queue: 4,
  reqrep: 5,
  kvput: 6,
  kvget: 7,
  jspub: 8,
  replay: 9,
  objput: 10,
  objget: 11,
  trigger: 12,
  trigger50: 13,
  cold: 14,
  density: 15,
  kvfn: 16,
  oci: OCI_ROW_ID,
  wspubsub16: 18,
  wsreqrep: 19,
  svc50: 20,
  svccold: 21,
  childdeploy: 22,
  http: HTTP_ROW_IDS[0],
  httplatency: HTTP_ROW_IDS[1],
  failover: FAILOVER_ROW_ID,
  brokerstart: STARTUP_ROW_IDS[0],
  nodestart: STARTUP_ROW_IDS[1],
};
const ROW_COUNT = 27;
const DENSITY_ROW = 15;
/** --only aliases for groups of rows. */
const ROW_GROUPS: Record<string, number[]> = {
  core: [1, 2, 3, 4, 5],
  jetstream: [6, 7, 8, 9, 10, 11],
  node: [12, 13, 14, 15, 16, 22],
  ws: [18, 19],
  services: [20, 21],
  web: [...HTTP_ROW_IDS],
  startup: [...STARTUP_ROW_IDS],
};

function usage(msg?: string): never {
  if (msg) console.error(`bench: ${msg}`);
  console.error(
    "usage: node dist/bench/run.js [--quick] [--only 1,2,...|pubsub16,pubsub1k,fanout,queue,reqrep,\n" +
      "                                                kvput,kvget,jspub,replay,objput,objget,\n" +
      "                                                trigger,trigger50,cold,density,kvfn,oci,\n" +
      "                                                wspubsub16,wsreqrep,svc50,svccold,childdeploy,http,httplatency,failover,\n" +
      "                                                brokerstart,nodestart|core,jetstream,node,ws,services,web,startup]\n" +
      "                             [--reps N] [--warmup MS] [--measure MS] [--servers bundled,nats]\n" +
      "                             [--nats-server PATH] [--json FILE]",
  );
  process.exit(2);
}

function parseArgs(argv: string[]): Options {
  const o: Options = {
    quick: false,
    only: null,
    reps: 0,
    warmupMs: 0,
    measureMs: 0,
    jsWarmupMs: 0,
    jsMeasureMs: 0,
    replayMsgs: 0,
    wsWarmupMs: 0,
    wsMeasureMs: 0,
    kvfnWarmupMs: 0,
    kvfnMeasureMs: 0,
    servers: ["bundled", "nats"],
    natsBin: "nats-server",
    jsonPath: null,
    densityNamed: false,
  };
  const intArg = (name: string, v: string | undefined, min: number, max: number): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) usage(`${name} needs an integer in [${min}, ${max}]`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const [flag, inline] = a.includes("=") ? [a.slice(0, a.indexOf("=")), a.slice(a.indexOf("=") + 1)] : [a, undefined];
    const value = (): string => {
      const v = inline ?? argv[++i];
      if (v === undefined) usage(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case "--quick":
        o.quick = true;
        break;
      case "--only": {
        o.only ??= new Set();
        for (const part of value().split(",")) {
          const p = part.trim().toLowerCase();
          if (!p) continue;
          if (ROW_GROUPS[p]) {
            for (const g of ROW_GROUPS[p]) o.only.add(g);
            continue;
          }
          const n = ROW_NAMES[p] ?? Number(p);
          if (!Number.isInteger(n) || n < 1 || n > ROW_COUNT) usage(`unknown row "${part}"`);
          o.only.add(n);
          if (n === DENSITY_ROW) o.densityNamed = true;
        }
        break;
      }
      case "--reps":
        o.reps = intArg(flag, value(), 1, 10);
        break;
      case "--warmup":
        o.warmupMs = intArg(flag, value(), 0, 10_000);
        break;
      case "--measure":
        o.measureMs = intArg(flag, value(), 200, 30_000);
        break;
      case "--servers": {
        const list = value()
          .split(",")
          .map((s) => s.trim())
          .filter(Boolean)
          .map((s) => (s === "nats-server" ? "nats" : s));
        if (list.length === 0 || list.some((s) => s !== "bundled" && s !== "nats")) usage("--servers takes bundled,nats");
        o.servers = [...new Set(list)] as ServerKind[];
        break;
      }
      case "--nats-server":
        o.natsBin = value();
        break;
      case "--json":
        o.jsonPath = value();
        break;
      case "-h":
      case "--help":
        usage();
      // falls through (usage never returns)
      default:
        usage(`unknown argument "${a}"`);
    }
  }
  if (!o.reps) o.reps = o.quick ? 1 : 3;
  // JetStream rows use shorter windows by default (each run also pays for a
  // server start with a data directory, a client start and untimed set-up);
  // an explicit --warmup / --measure applies to them too.
  o.jsWarmupMs = o.warmupMs || (o.quick ? 200 : 300);
  o.jsMeasureMs = o.measureMs || (o.quick ? 700 : 1500);
  // The kvfn row makes 6 trials per run (latency and throughput; sync function, async function, peer): shorter windows keep
  // it near 30 s with 3 runs; an explicit --warmup / --measure applies to it too.
  // The WebSocket rows repeat rows 1 and 5 over another transport: a shorter timed window keeps them
  // near 50 s together with 3 runs; an explicit --warmup / --measure applies to them too.
  o.wsWarmupMs = o.warmupMs || (o.quick ? 200 : WS_WARMUP_MS);
  o.wsMeasureMs = o.measureMs || (o.quick ? 700 : WS_MEASURE_MS);
  o.kvfnWarmupMs = o.warmupMs || 300;
  o.kvfnMeasureMs = o.measureMs || (o.quick ? 1000 : 1200);
  if (!o.warmupMs) o.warmupMs = o.quick ? 300 : 500;
  if (!o.measureMs) o.measureMs = o.quick ? 1000 : 2500;
  o.replayMsgs = envInt("BENCH_REPLAY_MSGS", REPLAY_MSGS);
  return o;
}

// --------------------------------------------------------------------- rows

interface TputRow {
  kind: "tput";
  id: number;
  name: string;
  /** How the raw-protocol publisher and subscribers reach the server. */
  transport: Transport;
  unit: string;
  payload: number;
  subs: number;
  queue: string | null;
  /** Every subscriber gets every message (fan-out) vs. one of them does (queue / single). */
  fanout: boolean;
}

interface LatRow {
  kind: "lat";
  id: number;
  name: string;
  /** nats.js over TCP (connect) or WebSocket (wsconnect), requester and responder alike. */
  transport: Transport;
  payload: number;
}

interface JsRow {
  kind: "js";
  id: number;
  name: string;
  /** "MB/s" rows report bytes / 10^6 / s; the others operations / s. */
  unit: string;
  workload: JsWorkload;
}

type Row = TputRow | LatRow | JsRow | NodeRow;

// JetStream workload parameters, identical for both servers.
const JS_PAYLOAD = 16;
const KV_KEYS = 1000;
const JS_WINDOW = 2000; // async publish: max acks outstanding
const REPLAY_MSGS = 200_000;
const OBJECT_BYTES = 64 * 1024 * 1024;
const OBJECT_REPEATS = 3; // transfers per run (1 with --quick)
const KV_SEED = 20240601;
const JS_SETUP_TIMEOUT_MS = 130_000; // the child gives up on its own after 120 s
const JS_RUN_TIMEOUT_MS = 60_000; // beyond warm-up + measure (replay and object transfers are not time-boxed)

function rowsFor(o: Options): Row[] {
  const js = (id: number, workload: JsWorkload, name: string, unit: string): JsRow => ({ kind: "js", id, workload, name, unit });
  return [
    ...ROWS,
    js(6, "kvput", `JetStream KV put, sync (await each ack), ${JS_PAYLOAD} B values, 1 client`, "ops/s"),
    js(7, "kvget", `JetStream KV get, random keys of ${formatNumber(KV_KEYS)}, one at a time`, "ops/s"),
    js(8, "jspub", `JetStream async publish, ${JS_PAYLOAD} B, file stream, ≤ ${formatNumber(JS_WINDOW)} acks in flight`, "msgs/s"),
    js(9, "replay", `JetStream ordered-consumer replay of ${formatNumber(o.replayMsgs)} × ${JS_PAYLOAD} B`, "msgs/s"),
    js(10, "objput", `JetStream object store put, ${OBJECT_BYTES / 1024 / 1024} MiB object`, "MB/s"),
    js(11, "objget", `JetStream object store get, ${OBJECT_BYTES / 1024 / 1024} MiB object`, "MB/s"),
    ...WS_ROWS,
    ...nodeRows(),
  ];
}

const ROWS: Row[] = [
  { kind: "tput", id: 1, name: "1 pub → 1 sub, 16 B", transport: "tcp", unit: "msgs/s", payload: 16, subs: 1, queue: null, fanout: false },
  { kind: "tput", id: 2, name: "1 pub → 1 sub, 1 KiB", transport: "tcp", unit: "msgs/s", payload: 1024, subs: 1, queue: null, fanout: false },
  { kind: "tput", id: 3, name: "1 pub → 4 subs fan-out, 16 B", transport: "tcp", unit: "deliveries/s", payload: 16, subs: 4, queue: null, fanout: true },
  { kind: "tput", id: 4, name: "1 pub → queue group of 4 subs, 16 B", transport: "tcp", unit: "msgs/s", payload: 16, subs: 4, queue: "benchq", fanout: false },
  { kind: "lat", id: 5, name: "request/reply round trip, 16 B (nats.js)", transport: "tcp", payload: 16 },
];

/** Rows 1 and 5 over WebSocket (each server's websocket listener, plain ws, no compression). */
const WS_ROWS: Row[] = [
  { kind: "tput", id: 18, name: "WebSocket: 1 pub → 1 sub, 16 B", transport: "ws", unit: "msgs/s", payload: 16, subs: 1, queue: null, fanout: false },
  { kind: "lat", id: 19, name: "WebSocket: request/reply round trip, 16 B (nats.js wsconnect)", transport: "ws", payload: 16 },
];
/**
 * The WebSocket rows warm up longer than they measure: a freshly started bundled broker (a new Node
 * process per run) serves WebSocket requests 1.5-2x slower than in steady state for its first 1-3 s
 * (request/reply p50 ~0.7-1.4 ms after 0.3-1 s, ~0.2-0.3 ms after 3 s, on a busy 2-core VM), while
 * nats-server is at speed at once. The rows compare steady states, as rows 1-5 do.
 */
const WS_WARMUP_MS = 2000;
const WS_MEASURE_MS = 1000;

// Load-generator policy, identical for both servers.
// (The BENCH_* environment variables exist only for tuning experiments.)
const envInt = (name: string, dflt: number): number => {
  const v = Number(process.env[name]);
  return Number.isInteger(v) && v > 0 ? v : dflt;
};
const BATCH_BYTES = envInt("BENCH_BATCH_BYTES", 64 * 1024); // one write = ~64 KiB of PUBs + 1 PING
const MAX_OUTSTANDING_PINGS = envInt("BENCH_MAX_PINGS", 16); // <= ~1 MiB the server has not processed yet
const MAX_LAG_BYTES = envInt("BENCH_MAX_LAG_BYTES", 32 * 1024 * 1024); // sent, not yet received (MSG bytes)
const PROGRESS_MS = 10;
const READY_TIMEOUT_MS = 15_000;
const DRAIN_TIMEOUT_MS = 45_000;
const MAX_REQUESTS = 500_000;

// ------------------------------------------------------------------- trials

interface TputResult {
  kind: "tput";
  rate: number;
  sent: number;
  delivered: number;
  expected: number;
  windowS: number;
  pubRate: number;
  creditWaits: number;
  pongWaits: number;
  /** Server CPU use while publishing, in cores (CPU seconds per wall second); null if unknown. */
  serverCores: number | null;
  warning: string | null;
}

interface LatResult extends ReqReport {
  kind: "lat";
}

interface JsResult extends JsReport {
  kind: "js";
  rate: number;
  /** Server CPU use during the timed part (warm-up included), in cores; null if unknown. */
  serverCores: number | null;
}

type TrialResult = TputResult | LatResult | JsResult;

/** Warm-up and timed window of a core row: the WebSocket rows have their own. */
function windowsOf(row: TputRow | LatRow, o: Options): { warmupMs: number; measureMs: number } {
  return row.transport === "ws"
    ? { warmupMs: o.wsWarmupMs, measureMs: o.wsMeasureMs }
    : { warmupMs: o.warmupMs, measureMs: o.measureMs };
}

/** The port (TCP or websocket) or nats:// / ws:// url a row's clients connect to. */
function portOf(server: RunningServer, transport: Transport): number {
  if (transport === "tcp") return server.port;
  if (server.wsPort === null) throw new Error("the server was started without a websocket listener");
  return server.wsPort;
}
function urlOf(server: RunningServer, transport: Transport): string {
  if (transport === "tcp") return server.url;
  if (server.wsUrl === null) throw new Error("the server was started without a websocket listener");
  return server.wsUrl;
}

async function runTputTrial(server: RunningServer, row: TputRow, o: Options): Promise<TputResult> {
  const subject = `bench.r${row.id}`;
  const { warmupMs, measureMs } = windowsOf(row, o);
  const port = portOf(server, row.transport);
  const frameLen = msgFrameShape(subject, "1", row.payload).frameLen;
  const children: LoadChild[] = [];
  let credit: NodeJS.Timeout | undefined;
  try {
    const subs: LoadChild[] = [];
    for (let i = 0; i < row.subs; i++) {
      const c = new LoadChild(`sub${i + 1}`, {
        role: "sub",
        transport: row.transport,
        port,
        subject,
        queue: row.queue,
        payloadSize: row.payload,
        progressMs: PROGRESS_MS,
      });
      subs.push(c);
      children.push(c);
    }
    await guarded(children, Promise.all(subs.map((s) => s.next("ready", READY_TIMEOUT_MS))));
    const pub = new LoadChild("pub", {
      role: "pub",
      transport: row.transport,
      port,
      subject,
      payloadSize: row.payload,
      batchBytes: BATCH_BYTES,
      maxOutstandingPings: MAX_OUTSTANDING_PINGS,
      maxLagMsgs: Math.max(10_000, Math.floor(MAX_LAG_BYTES / frameLen)),
    });
    children.push(pub);
    await guarded(children, pub.next("ready", READY_TIMEOUT_MS));

    // Relay delivery progress to the publisher (the end-to-end lag window).
    let lastCredit = -1;
    credit = setInterval(() => {
      const delivered = row.fanout
        ? Math.min(...subs.map((s) => s.progress))
        : subs.reduce((a, s) => a + s.progress, 0);
      if (delivered !== lastCredit) {
        lastCredit = delivered;
        pub.send({ type: "credit", delivered });
      }
    }, PROGRESS_MS);

    const startAt = hrtime.bigint() + 50_000_000n;
    const warmAt = startAt + BigInt(warmupMs) * 1_000_000n;
    const endAt = warmAt + BigInt(measureMs) * 1_000_000n;
    for (const s of subs) s.send({ type: "arm", warmAt: warmAt.toString() });
    pub.send({ type: "start", startAt: startAt.toString(), endAt: endAt.toString() });
    const cpu0 = server.cpuSeconds();
    const wall0 = hrtime.bigint();
    const pubDone: PubReport = (
      await guarded(children, pub.next("pubDone", warmupMs + measureMs + DRAIN_TIMEOUT_MS))
    ).report;
    const cpu1 = server.cpuSeconds();
    const serverCores =
      cpu0 === null || cpu1 === null ? null : (cpu1 - cpu0) / (Number(hrtime.bigint() - wall0) / 1e9);
    clearInterval(credit);

    for (const s of subs) s.send({ type: "finish" });
    const reports: SubReport[] = (
      await guarded(children, Promise.all(subs.map((s) => s.next("subDone", DRAIN_TIMEOUT_MS))))
    ).map((m) => m.report);

    let counted = 0;
    let delivered = 0;
    let end = warmAt;
    for (const [i, r] of reports.entries()) {
      delivered += r.count;
      if (r.snapCount === null || r.lastTime === null) {
        throw new Error(`sub${i + 1} received no messages after the warm-up (got ${r.count} in total)`);
      }
      counted += r.count - r.snapCount;
      const last = BigInt(r.lastTime);
      if (last > end) end = last;
    }
    const windowS = Number(end - warmAt) / 1e9;
    const expected = row.fanout ? pubDone.sent * row.subs : pubDone.sent;
    const problems: string[] = [];
    if (delivered !== expected) problems.push(`delivered ${delivered} of ${expected} expected messages`);
    if (/slow consumer/i.test(server.output())) problems.push("server logged a slow consumer");
    return {
      kind: "tput",
      rate: counted / windowS,
      sent: pubDone.sent,
      delivered,
      expected,
      windowS,
      pubRate: pubDone.sent / (Number(BigInt(pubDone.tEnd) - BigInt(pubDone.t0)) / 1e9),
      creditWaits: pubDone.creditWaits,
      pongWaits: pubDone.pongWaits,
      serverCores,
      warning: problems.length ? problems.join("; ") : null,
    };
  } finally {
    clearInterval(credit);
    await Promise.all(children.map((c) => c.stop()));
  }
}

async function runLatTrial(server: RunningServer, row: LatRow, o: Options): Promise<LatResult> {
  const subject = `bench.r${row.id}`;
  const { warmupMs, measureMs } = windowsOf(row, o);
  const url = urlOf(server, row.transport);
  const children: LoadChild[] = [];
  try {
    const rep = new LoadChild("responder", { role: "rep", url, subject });
    children.push(rep);
    await guarded(children, rep.next("ready", READY_TIMEOUT_MS));
    const r = await sequentialRequests(
      { url, subject, payloadSize: row.payload, warmupMs, measureMs, maxRequests: MAX_REQUESTS, readyTimeoutMs: READY_TIMEOUT_MS, drainTimeoutMs: DRAIN_TIMEOUT_MS },
      children,
    );
    return { kind: "lat", ...r };
  } finally {
    await Promise.all(children.map((c) => c.stop()));
  }
}

async function runJsTrial(server: RunningServer, row: JsRow, o: Options): Promise<JsResult> {
  const child = new LoadChild(`js ${row.workload}`, {
    role: "js",
    url: server.url,
    workload: row.workload,
    payloadSize: JS_PAYLOAD,
    keys: KV_KEYS,
    window: JS_WINDOW,
    prefill: o.replayMsgs,
    objectBytes: OBJECT_BYTES,
    objectRepeats: o.quick ? 1 : OBJECT_REPEATS,
    seed: KV_SEED,
  });
  try {
    await guarded([child], child.next("ready", JS_SETUP_TIMEOUT_MS));
    const cpu0 = server.cpuSeconds();
    const wall0 = hrtime.bigint();
    child.send({ type: "jsRun", warmupMs: o.jsWarmupMs, measureMs: o.jsMeasureMs, timeoutMs: JS_RUN_TIMEOUT_MS });
    const r = (
      await guarded([child], child.next("jsDone", o.jsWarmupMs + o.jsMeasureMs + JS_RUN_TIMEOUT_MS + 10_000))
    ).report;
    const cpu1 = server.cpuSeconds();
    const serverCores =
      cpu0 === null || cpu1 === null ? null : (cpu1 - cpu0) / (Number(hrtime.bigint() - wall0) / 1e9);
    const rate = row.unit === "MB/s" ? r.bytes / 1e6 / r.seconds : r.ops / r.seconds;
    if (!(rate > 0) || !Number.isFinite(rate)) throw new Error(`nothing measured (${r.detail})`);
    return { kind: "js", ...r, rate, serverCores };
  } finally {
    await child.stop();
  }
}

// --------------------------------------------------------------------- main

function nodeOptions(o: Options): NodeOptions {
  return {
    quick: o.quick,
    reps: o.reps,
    warmupMs: o.warmupMs,
    measureMs: o.measureMs,
    kvfnWarmupMs: o.kvfnWarmupMs,
    kvfnMeasureMs: o.kvfnMeasureMs,
  };
}

interface Trial {
  row: number;
  server: ServerKind;
  rep: number;
  result: TrialResult | null;
  error: string | null;
}

function describe(r: TrialResult, row: Row): string {
  if (r.kind === "lat") {
    return `p50 ${formatNumber(r.p50us)} µs, p99 ${formatNumber(r.p99us)} µs (${r.count} requests, mean ${formatNumber(r.meanUs)} µs)`;
  }
  if (r.kind === "js") {
    return (
      `${formatNumber(r.rate)} ${row.kind === "js" ? row.unit : ""} (${r.detail}; timed ${r.seconds.toFixed(2)} s, ` +
      `untimed set-up ${r.setupSeconds.toFixed(2)} s` +
      (r.serverCores === null ? "" : `, server CPU ${r.serverCores.toFixed(2)} cores`) +
      `, client CPU ${r.clientCores.toFixed(2)} cores)` +
      (r.warning ? ` WARNING: ${r.warning}` : "")
    );
  }
  const unit = row.kind === "tput" ? row.unit : "";
  return (
    `${formatNumber(r.rate)} ${unit} (publisher ${formatNumber(r.pubRate)} msgs/s, ${r.sent} sent, ` +
    `window ${r.windowS.toFixed(2)} s, waits: pong ${r.pongWaits} lag ${r.creditWaits}` +
    (r.serverCores === null ? "" : `, server CPU ${r.serverCores.toFixed(2)} cores`) +
    ")" +
    (r.warning ? ` WARNING: ${r.warning}` : "")
  );
}

function log(msg: string): void {
  process.stderr.write(`${msg}\n`);
}

function firstLine(s: string): string {
  const l = s.split("\n").find((x) => x.trim()) ?? s;
  return l.length > 160 ? `${l.slice(0, 157)}...` : l;
}

async function main(): Promise<void> {
  const wasm = takeWasmRows(process.argv.slice(2));
  if (wasm.alone) return runWasmBench(wasm);
  const o = parseArgs(wasm.rest);
  const selected = rowsFor(o).filter((r) => !o.only || o.only.has(r.id));
  const started = Date.now();
  // Density is opt-in under --quick.
  const skipDensity = o.quick && !o.densityNamed && selected.some((r) => r.id === DENSITY_ROW);
  if (skipDensity) log("bench: --quick skips the density row (ask for it with --only density)");
  const allRows = selected.filter((r) => !(skipDensity && r.id === DENSITY_ROW));
  const rows = allRows.filter((r): r is TputRow | LatRow | JsRow => r.kind !== "node");
  const nodeRowList = allRows.filter((r): r is NodeRow => r.kind === "node");

  const natsVersion = natsServerVersion(o.natsBin);
  const unavailable = new Map<ServerKind, string>();
  // Only node rows selected: no broker comparison to probe for.
  if (rows.length > 0 && o.servers.includes("nats") && natsVersion === null) {
    unavailable.set("nats", `${o.natsBin} not found or not runnable`);
  }
  if (rows.length > 0 && o.servers.includes("bundled")) {
    const reason = bundledUnavailableReason();
    if (reason) {
      unavailable.set("bundled", reason);
    } else {
      // Probe once so a broker that cannot start is reported once, not per row.
      try {
        const s = await startServer("bundled", o.natsBin);
        await s.stop();
      } catch (e) {
        unavailable.set("bundled", firstLine((e as Error).message));
      }
    }
  }
  for (const [k, why] of unavailable) log(`bench: ${SERVER_LABEL[k]} will not run: ${why}`);
  const servers = rows.length === 0 ? [] : o.servers.filter((s) => !unavailable.has(s));
  if (rows.length > 0 && servers.length === 0) {
    log("bench: no server to benchmark");
    if (nodeRowList.length === 0) {
      process.exitCode = 1;
      return;
    }
    rows.length = 0;
  }

  const cpu = os.cpus();
  const machine =
    `Machine: ${cpu[0]?.model.trim() ?? "unknown CPU"}, ${cpu.length} cores, ` +
    `Node ${process.version}, nats-server ${natsVersion ?? "n/a"}, ${os.type()} ${os.arch()}`;
  log(machine);
  log(
    `bench: ${rows.length} broker row(s) × ${servers.length} server(s) × ${o.reps} run(s), ${nodeRowList.length} node row(s); ` +
      `${o.warmupMs} ms warm-up + ${o.measureMs} ms measured per run` +
      (rows.some((r) => r.kind === "js") ? ` (JetStream rows: ${o.jsWarmupMs} + ${o.jsMeasureMs} ms)` : "") +
      (nodeRowList.some((r) => r.workload === "kvfn") ? ` (kvfn trials: ${o.kvfnWarmupMs} + ${o.kvfnMeasureMs} ms)` : ""),
  );

  const trials: Trial[] = [];
  for (const row of rows) {
    for (let rep = 0; rep < o.reps; rep++) {
      // Alternate which server goes first, so drift on a noisy machine hits both.
      const order = rep % 2 === 0 ? servers : [...servers].reverse();
      for (const kind of order) {
        const label = `[row ${row.id}] ${row.name} — ${SERVER_LABEL[kind]} run ${rep + 1}/${o.reps}`;
        const trial: Trial = { row: row.id, server: kind, rep: rep + 1, result: null, error: null };
        let server: RunningServer | null = null;
        try {
          server = await startServer(kind, o.natsBin, {
            jetstream: row.kind === "js",
            websocket: row.kind !== "js" && row.transport === "ws",
          });
          trial.result =
            row.kind === "tput"
              ? await runTputTrial(server, row, o)
              : row.kind === "lat"
                ? await runLatTrial(server, row, o)
                : await runJsTrial(server, row, o);
          log(`${label}: ${describe(trial.result, row)}`);
        } catch (e) {
          let msg = (e as Error).message;
          if (server) await new Promise((r) => setTimeout(r, 200)); // let an exit event arrive
          const died = server?.exitStatus();
          if (died) msg = `${SERVER_LABEL[kind]} process died (${died}); ${msg}`;
          trial.error = firstLine(msg);
          log(`${label}: ERROR ${msg}`);
          if (died) log(`${SERVER_LABEL[kind]} output (tail):\n${server!.output().slice(-1500)}`);
        } finally {
          await server?.stop();
        }
        trials.push(trial);
      }
    }
  }

  const nodeResults: NodeRowResult[] = [];
  for (const row of nodeRowList) {
    log(`[row ${row.id}] ${row.name}`);
    nodeResults.push(await runNodeRow(row, nodeOptions(o), log));
  }

  // Best of the runs for each cell.
  const table: TableRow[] = [];
  const notes: string[] = [];
  const cellNote = (kind: ServerKind, rowTrials: Trial[]): string => {
    if (!servers.includes(kind)) return unavailable.has(kind) ? "not run" : "skipped";
    const failed = rowTrials.find((t) => t.server === kind && t.error);
    if (!failed) return "n/a";
    // The reason, shortened; the full text is under "Problems:".
    const why = failed.error!.replace(/\|/g, "/");
    return `error: ${why.length > 48 ? `${why.slice(0, 45)}...` : why}`;
  };
  for (const row of rows) {
    const rt = trials.filter((t) => t.row === row.id);
    for (const t of rt) {
      if (t.error) notes.push(`row ${row.id}, ${SERVER_LABEL[t.server]} run ${t.rep}: ${t.error}`);
      if ((t.result?.kind === "tput" || t.result?.kind === "js") && t.result.warning) {
        notes.push(`row ${row.id}, ${SERVER_LABEL[t.server]} run ${t.rep}: ${t.result.warning}`);
      }
    }
    const ok = (kind: ServerKind) =>
      rt.filter((t) => t.server === kind && t.result).map((t) => t.result!) as TrialResult[];
    if (row.kind === "tput" || row.kind === "js") {
      const best = (kind: ServerKind): number | null => {
        const v = ok(kind).map((r) => (r.kind === "tput" || r.kind === "js" ? r.rate : NaN));
        return v.length ? Math.max(...v) : null;
      };
      table.push({
        id: String(row.id),
        name: `${row.name} (${row.unit})`,
        bundled: best("bundled"),
        nats: best("nats"),
        bundledNote: cellNote("bundled", rt),
        natsNote: cellNote("nats", rt),
        lowerIsBetter: false,
      });
    } else {
      for (const [suffix, key] of [
        ["a", "p50us"],
        ["b", "p99us"],
      ] as const) {
        const best = (kind: ServerKind): number | null => {
          const v = ok(kind).map((r) => (r.kind === "lat" ? r[key] : NaN));
          return v.length ? Math.min(...v) : null;
        };
        table.push({
          id: `${row.id}${suffix}`,
          name: `${row.name}: ${key === "p50us" ? "p50" : "p99"} latency (µs)`,
          bundled: best("bundled"),
          nats: best("nats"),
          bundledNote: cellNote("bundled", rt),
          natsNote: cellNote("nats", rt),
          lowerIsBetter: true,
        });
      }
    }
  }

  const out: string[] = [];
  out.push("");
  out.push(machine);
  out.push("");
  if (rows.length) {
    out.push(markdownTable(table));
    out.push("");
  }
  const hasCore = rows.some((r) => r.kind !== "js");
  const hasJs = rows.some((r) => r.kind === "js");
  const hasWs = rows.some((r) => r.kind !== "js" && r.transport === "ws");
  if (hasCore) {
    out.push(
      "Throughput rows: messages received per second, summed over subscribers (higher is better; ratio > 1 means the bundled broker is faster). " +
        "Latency rows: microseconds per request/reply round trip (lower is better; ratio < 1 means the bundled broker is faster).",
    );
    out.push(
      `Method: raw-socket publisher and subscribers, each in its own process; rate = messages received from ${o.warmupMs} ms after the start ` +
        `until the last one arrived (publishing stops after ${o.measureMs} ms more, then the backlog drains), best of ${o.reps} run(s) per cell, ` +
        "servers alternated, a fresh server process per run. Request/reply: one nats.js responder, one nats.js requester doing sequential requests.",
    );
  }
  if (hasWs) {
    out.push(
      "WebSocket rows: the same method and clients over each server's websocket listener on 127.0.0.1 (plain ws, no compression; " +
        "nats-server from a config file with `websocket { listen, no_tls: true }`, bundled with --ws-port 0): the raw publisher and " +
        "subscriber use the `ws` package, one masked binary frame per ~64 KiB batch out, each received message fed to the same counter; " +
        `request/reply uses nats.js wsconnect (@nats-io/nats-core) over \`ws\` for both requester and responder. ` +
        `Windows: ${o.wsWarmupMs} ms warm-up + ${o.wsMeasureMs} ms measured per run.`,
    );
  }
  if (hasJs) {
    out.push(
      "JetStream rows (higher is better; ratio > 1 means the bundled broker is faster): one nats.js v3 client " +
        "(@nats-io/jetstream, kv, obj; native SHA-256; Error.stackTraceLimit = 0, as nats.js builds two Error objects per request) " +
        "in its own process, the same code for both servers; each run starts a fresh server " +
        "with a fresh temporary data directory (nats-server -js -sd DIR, bundled --data-dir DIR), file storage, removed afterwards. " +
        "Bucket/stream creation and pre-fill are not timed (the replay stream is filled with core publishes, then its message count checked). " +
        `KV put/get and async publish: ${o.jsWarmupMs} ms warm-up, then operations completed in ${o.jsMeasureMs} ms ` +
        "(async publish: acks received after the warm-up until the last ack, publishing stops at the end of the window). " +
        "Replay: one read of the whole pre-filled stream with an ordered consumer (consume, 1,000 messages per pull), " +
        "timed from creating the consumer to the last message. " +
        `Object store: ${o.quick ? "one put" : `${OBJECT_REPEATS} puts under distinct names`} (putBlob, 128 KiB chunks) or ` +
        `${o.quick ? "one get" : `${OBJECT_REPEATS} gets`} (stream read to the end, digest checked by the client) back to back, ` +
        `after a small warm-up object; MB = 10^6 bytes. Best of ${o.reps} run(s) per cell.`,
    );
  }
  const cores = (kind: ServerKind, k: "tput" | "js"): number[] =>
    trials.flatMap((t) =>
      t.server === kind && t.result?.kind === k && t.result.serverCores !== null ? [t.result.serverCores] : [],
    );
  const span = (v: number[]) => (v.length ? `${Math.min(...v).toFixed(2)}–${Math.max(...v).toFixed(2)}` : "n/a");
  for (const [k, what] of [
    ["tput", "the throughput runs"],
    ["js", "the timed part of the JetStream runs"],
  ] as const) {
    if (cores("bundled", k).length || cores("nats", k).length) {
      out.push(
        `Server CPU during ${what} (cores, min–max): bundled ${span(cores("bundled", k))}, ` +
          `nats-server ${span(cores("nats", k))}; the load generator processes share the same ${os.cpus().length} cores.`,
      );
    }
  }
  if (hasJs) {
    const perRow = rows.flatMap((row) => {
      const v = trials.flatMap((t) => (t.row === row.id && t.result?.kind === "js" ? [t.result.clientCores] : []));
      return row.kind === "js" && v.length ? [`${row.workload} ${span(v)}`] : [];
    });
    if (perRow.length) {
      out.push(
        `JetStream client CPU during the timed part (cores, min–max over both servers): ${perRow.join(", ")}; ` +
          "near 1.0 means the single-threaded client, not the server, set the pace.",
      );
    }
  }
  if (unavailable.size) {
    for (const [k, why] of unavailable) out.push(`Not run: ${SERVER_LABEL[k]}: ${why}`);
  }
  if (notes.length) {
    out.push("");
    out.push("Problems:");
    for (const n of notes) out.push(`- ${n}`);
  }
  if (nodeResults.length) {
    if (rows.length) out.push("");
    out.push(...renderNodeResults(nodeResults, nodeOptions(o)));
  }
  if (!o.only || o.only.has(OCI_ROW_ID)) out.push("", ...(await runOciRow(log)));
  if (!o.only || HTTP_ROW_IDS.some((id) => o.only?.has(id))) out.push("", ...(await runHttpRows(log)));
  if (!o.only || STARTUP_ROW_IDS.some((id) => o.only?.has(id))) out.push("", ...(await runStartupRows(o.natsBin, (id) => !o.only || o.only.has(id), log)));
  // About a minute of three servers and three nodes: under --quick only when asked for.
  if (o.only ? o.only.has(FAILOVER_ROW_ID) : !o.quick) out.push("", ...(await runFailoverRow(o.natsBin, log)));
  const load = os.loadavg();
  out.push("");
  out.push(
    `Load average at the end (1/5/15 min): ${load.map((x) => x.toFixed(2)).join(" / ")} on ${os.cpus().length} cores` +
      (load[0]! > os.cpus().length ? " (the machine was busy: treat the figures as noisy)" : ""),
  );
  process.stdout.write(out.join("\n") + "\n");
  if (wasm.rows.length > 0) await runWasmBench(wasm, log);
  log(`bench: done in ${((Date.now() - started) / 1000).toFixed(1)} s`);

  if (o.jsonPath) {
    writeFileSync(
      o.jsonPath,
      JSON.stringify({ machine, natsVersion, options: { ...o, only: o.only ? [...o.only] : null }, trials, nodeResults }, null, 2) + "\n",
    );
  }
}

// Never leave servers, nodes (and their runtime hosts) or load generators behind.
function killAll(): void {
  killHosts(); // first: they are found through their parent node's pid
  for (const p of liveProcesses) {
    try {
      p.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
  for (const dir of [...liveDataDirs]) removeDataDir(dir);
}
process.on("exit", killAll);
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.on(sig, () => {
    killAll();
    process.exit(130);
  });
}

// Hard upper bound on the whole run.
setTimeout(() => {
  log("bench: overall time limit (20 min) exceeded, aborting");
  killAll();
  process.exit(1);
}, 20 * 60_000).unref();

main().catch((e: unknown) => {
  log(`bench: ${(e as Error).stack ?? String(e)}`);
  killAll();
  process.exit(1);
});
