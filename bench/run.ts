// Benchmark entry point: the bundled broker vs nats-server, same load generator.
//
//   npm run bench                 # full run (~2 min)
//   npm run bench -- --quick      # shorter run
//   npm run bench -- --only 1,5   # only some rows (1-5, or names: pubsub16, pubsub1k, fanout, queue, reqrep)
//
// Other options: --reps N, --warmup MS, --measure MS, --servers bundled,nats,
// --nats-server PATH, --json FILE (raw per-run results).

import { writeFileSync } from "node:fs";
import os from "node:os";
import { hrtime } from "node:process";
import { LoadChild, guarded, liveProcesses } from "./children.js";
import type { PubReport, ReqReport, SubReport } from "./messages.js";
import {
  SERVER_LABEL,
  bundledUnavailableReason,
  natsServerVersion,
  startServer,
  type RunningServer,
  type ServerKind,
} from "./servers.js";
import { formatNumber, markdownTable, type TableRow } from "./table.js";
import { msgFrameShape } from "./wire.js";

// ------------------------------------------------------------------ options

interface Options {
  quick: boolean;
  only: Set<number> | null;
  reps: number;
  warmupMs: number;
  measureMs: number;
  servers: ServerKind[];
  natsBin: string;
  jsonPath: string | null;
}

const ROW_NAMES: Record<string, number> = {
  pubsub16: 1,
  pubsub1k: 2,
  fanout: 3,
  queue: 4,
  reqrep: 5,
};

function usage(msg?: string): never {
  if (msg) console.error(`bench: ${msg}`);
  console.error(
    "usage: node dist/bench/run.js [--quick] [--only 1,2,...|pubsub16,pubsub1k,fanout,queue,reqrep]\n" +
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
    servers: ["bundled", "nats"],
    natsBin: "nats-server",
    jsonPath: null,
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
          const n = ROW_NAMES[p] ?? Number(p);
          if (!Number.isInteger(n) || n < 1 || n > 5) usage(`unknown row "${part}"`);
          o.only.add(n);
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
  if (!o.warmupMs) o.warmupMs = o.quick ? 300 : 500;
  if (!o.measureMs) o.measureMs = o.quick ? 1000 : 2500;
  return o;
}

// --------------------------------------------------------------------- rows

interface TputRow {
  kind: "tput";
  id: number;
  name: string;
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
  payload: number;
}

type Row = TputRow | LatRow;

const ROWS: Row[] = [
  { kind: "tput", id: 1, name: "1 pub → 1 sub, 16 B", unit: "msgs/s", payload: 16, subs: 1, queue: null, fanout: false },
  { kind: "tput", id: 2, name: "1 pub → 1 sub, 1 KiB", unit: "msgs/s", payload: 1024, subs: 1, queue: null, fanout: false },
  { kind: "tput", id: 3, name: "1 pub → 4 subs fan-out, 16 B", unit: "deliveries/s", payload: 16, subs: 4, queue: null, fanout: true },
  { kind: "tput", id: 4, name: "1 pub → queue group of 4 subs, 16 B", unit: "msgs/s", payload: 16, subs: 4, queue: "benchq", fanout: false },
  { kind: "lat", id: 5, name: "request/reply round trip, 16 B (nats.js)", payload: 16 },
];

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

type TrialResult = TputResult | LatResult;

async function runTputTrial(server: RunningServer, row: TputRow, o: Options): Promise<TputResult> {
  const subject = `bench.r${row.id}`;
  const frameLen = msgFrameShape(subject, "1", row.payload).frameLen;
  const children: LoadChild[] = [];
  let credit: NodeJS.Timeout | undefined;
  try {
    const subs: LoadChild[] = [];
    for (let i = 0; i < row.subs; i++) {
      const c = new LoadChild(`sub${i + 1}`, {
        role: "sub",
        port: server.port,
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
      port: server.port,
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
    const warmAt = startAt + BigInt(o.warmupMs) * 1_000_000n;
    const endAt = warmAt + BigInt(o.measureMs) * 1_000_000n;
    for (const s of subs) s.send({ type: "arm", warmAt: warmAt.toString() });
    pub.send({ type: "start", startAt: startAt.toString(), endAt: endAt.toString() });
    const cpu0 = server.cpuSeconds();
    const wall0 = hrtime.bigint();
    const pubDone: PubReport = (
      await guarded(children, pub.next("pubDone", o.warmupMs + o.measureMs + DRAIN_TIMEOUT_MS))
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
  const children: LoadChild[] = [];
  try {
    const rep = new LoadChild("responder", { role: "rep", url: server.url, subject });
    children.push(rep);
    await guarded(children, rep.next("ready", READY_TIMEOUT_MS));
    const req = new LoadChild("requester", { role: "req", url: server.url, subject, payloadSize: row.payload });
    children.push(req);
    await guarded(children, req.next("ready", READY_TIMEOUT_MS));
    req.send({ type: "run", warmupMs: o.warmupMs, measureMs: o.measureMs, maxRequests: MAX_REQUESTS });
    const r = (await guarded(children, req.next("reqDone", o.warmupMs + o.measureMs + DRAIN_TIMEOUT_MS))).report;
    if (r.count === 0) throw new Error("no requests completed");
    return { kind: "lat", ...r };
  } finally {
    await Promise.all(children.map((c) => c.stop()));
  }
}

// --------------------------------------------------------------------- main

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
  const o = parseArgs(process.argv.slice(2));
  const rows = ROWS.filter((r) => !o.only || o.only.has(r.id));
  const started = Date.now();

  const natsVersion = natsServerVersion(o.natsBin);
  const unavailable = new Map<ServerKind, string>();
  if (o.servers.includes("nats") && natsVersion === null) unavailable.set("nats", `${o.natsBin} not found or not runnable`);
  if (o.servers.includes("bundled")) {
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
  const servers = o.servers.filter((s) => !unavailable.has(s));
  if (servers.length === 0) {
    log("bench: no server to benchmark");
    process.exitCode = 1;
    return;
  }

  const cpu = os.cpus();
  const machine =
    `Machine: ${cpu[0]?.model.trim() ?? "unknown CPU"}, ${cpu.length} cores, ` +
    `Node ${process.version}, nats-server ${natsVersion ?? "n/a"}, ${os.type()} ${os.arch()}`;
  log(machine);
  log(
    `bench: ${rows.length} row(s) × ${servers.length} server(s) × ${o.reps} run(s); ` +
      `${o.warmupMs} ms warm-up + ${o.measureMs} ms measured per run`,
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
          server = await startServer(kind, o.natsBin);
          trial.result = row.kind === "tput" ? await runTputTrial(server, row, o) : await runLatTrial(server, row, o);
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

  // Best of the runs for each cell.
  const table: TableRow[] = [];
  const notes: string[] = [];
  const cellNote = (kind: ServerKind, rowTrials: Trial[]): string => {
    if (!servers.includes(kind)) return unavailable.has(kind) ? "not run" : "skipped";
    return rowTrials.some((t) => t.server === kind && t.error) ? "error" : "n/a";
  };
  for (const row of rows) {
    const rt = trials.filter((t) => t.row === row.id);
    for (const t of rt) {
      if (t.error) notes.push(`row ${row.id}, ${SERVER_LABEL[t.server]} run ${t.rep}: ${t.error}`);
      if (t.result?.kind === "tput" && t.result.warning) {
        notes.push(`row ${row.id}, ${SERVER_LABEL[t.server]} run ${t.rep}: ${t.result.warning}`);
      }
    }
    const ok = (kind: ServerKind) =>
      rt.filter((t) => t.server === kind && t.result).map((t) => t.result!) as TrialResult[];
    if (row.kind === "tput") {
      const best = (kind: ServerKind): number | null => {
        const v = ok(kind).map((r) => (r.kind === "tput" ? r.rate : NaN));
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
  out.push(markdownTable(table));
  out.push("");
  out.push(
    "Throughput rows: messages received per second, summed over subscribers (higher is better; ratio > 1 means the bundled broker is faster). " +
      "Latency rows: microseconds per request/reply round trip (lower is better; ratio < 1 means the bundled broker is faster).",
  );
  out.push(
    `Method: raw-socket publisher and subscribers, each in its own process; rate = messages received from ${o.warmupMs} ms after the start ` +
      `until the last one arrived (publishing stops after ${o.measureMs} ms more, then the backlog drains), best of ${o.reps} run(s) per cell, ` +
      "servers alternated, a fresh server process per run. Request/reply: one nats.js responder, one nats.js requester doing sequential requests.",
  );
  const cores = (kind: ServerKind): number[] =>
    trials.flatMap((t) =>
      t.server === kind && t.result?.kind === "tput" && t.result.serverCores !== null ? [t.result.serverCores] : [],
    );
  const span = (v: number[]) => (v.length ? `${Math.min(...v).toFixed(2)}–${Math.max(...v).toFixed(2)}` : "n/a");
  if (cores("bundled").length || cores("nats").length) {
    out.push(
      `Server CPU during the throughput runs (cores, min–max): bundled ${span(cores("bundled"))}, ` +
        `nats-server ${span(cores("nats"))}; the load generator processes share the same ${os.cpus().length} cores.`,
    );
  }
  if (unavailable.size) {
    for (const [k, why] of unavailable) out.push(`Not run: ${SERVER_LABEL[k]}: ${why}`);
  }
  if (notes.length) {
    out.push("");
    out.push("Problems:");
    for (const n of notes) out.push(`- ${n}`);
  }
  process.stdout.write(out.join("\n") + "\n");
  log(`bench: done in ${((Date.now() - started) / 1000).toFixed(1)} s`);

  if (o.jsonPath) {
    writeFileSync(
      o.jsonPath,
      JSON.stringify({ machine, natsVersion, options: { ...o, only: o.only ? [...o.only] : null }, trials }, null, 2) + "\n",
    );
  }
}

// Never leave servers or load generators behind.
function killAll(): void {
  for (const p of liveProcesses) {
    try {
      p.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
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
  log("bench: overall time limit (15 min) exceeded, aborting");
  killAll();
  process.exit(1);
}, 15 * 60_000).unref();

main().catch((e: unknown) => {
  log(`bench: ${(e as Error).stack ?? String(e)}`);
  killAll();
  process.exit(1);
});
