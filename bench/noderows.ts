// The node rows of the bench: a JavaScript function on a fresh `nex node up` (bundled broker + node
// agent + runtime host), beside a peer where there is one.
//
//   12 trigger    warm trigger round trip, one sequential nats.js requester: p50 / p99 µs;
//                 peer: a bare nats.js responder (msg.respond(msg.data)) on the same broker.
//   13 trigger50  requests/s with 50 requests in flight (TRIGGER50_CLIENTS processes); same peer.
//   14 cold       deploy request sent → first trigger reply, p50 over 20 distinct functions (ms); no peer.
//   15 density    1,000 functions deployed on one node: deploy time, RSS of the node process and its
//                 runtime host, 20 sampled subjects must answer; no peer. Skipped by --quick unless
//                 asked for with --only.
//   16 kvfn       a function doing kv.set(key, payload) + kv.get(key) per trigger through the KV host
//                 service, once with the synchronous calls and once as an async function with the
//                 awaitable ones (hostServices.async): requests/s with KVFN_INFLIGHT in flight, and
//                 p50 / p99 µs of sequential requests; peer: a bare nats.js responder doing kv.put +
//                 kv.get with @nats-io/kv on a bucket of its own, on the same broker.
//
//   20 childdeploy a child deploy from inside a workload (this.hostServices.workloads.deploy) to the
//                 child's first answer, p50 over 20 children; no peer (bench/childdeploy.ts).
//
// Each row gets its own node process, temporary data directory and NEX_HOME, removed afterwards.

import { hrtime } from "node:process";
import { LoadChild, guarded, sequentialRequests } from "./children.js";
import type { ReqReport, ReqcReport } from "./messages.js";
import { DEFAULT_HOST_SERVICES_OPTIONS } from "../src/host-services/server.js";
import { hostValueLimit } from "../src/protocol/host-services.js";
import { ARTIFACT_BUCKET } from "../src/protocol/control.js";
import {
  KVFN_ASYNC_SOURCE,
  KVFN_KEYS,
  KVFN_SOURCE,
  NodeClient,
  deployWithCli,
  mib,
  percentileOf,
  runCold,
  serviceEchoSource,
  runDensity,
  type ColdReport,
  type DensityReport,
} from "./nexload.js";
import { rssKiB, startNode, type RunningNode } from "./node.js";
import { CHILD_DEPLOYS, CHILD_TARGET_MS, type ChildDeployReport, runChildDeploys } from "./childdeploy.js";
import { cpuSecondsOf } from "./servers.js";
import { formatNumber, formatRatio, renderTable } from "./table.js";

export type NodeWorkload = "trigger" | "trigger50" | "cold" | "density" | "kvfn" | "svc50" | "svccold" | "child";

export interface NodeRow {
  kind: "node";
  id: number;
  name: string;
  workload: NodeWorkload;
}

export interface NodeOptions {
  quick: boolean;
  reps: number;
  warmupMs: number;
  measureMs: number;
  /** Warm-up and timed window of each kvfn trial (shorter than the others: the row runs 4 trials per rep). */
  kvfnWarmupMs?: number;
  kvfnMeasureMs?: number;
}

export type Target = "function" | "asyncFunction" | "bare";
const TARGET_LABEL: Record<Target, string> = { function: "nex function", asyncFunction: "nex async function", bare: "bare responder" };

export const TRIGGER_PAYLOAD = 16;
export const TRIGGER50_INFLIGHT = 50;
/** Client processes sharing the 50 in-flight requests (25 each); BENCH_TRIGGER50_CLIENTS (1, 2, 5, 10) is for tuning experiments. */
export const TRIGGER50_CLIENTS = [1, 2, 5, 10].includes(Number(process.env.BENCH_TRIGGER50_CLIENTS)) ? Number(process.env.BENCH_TRIGGER50_CLIENTS) : 2;
/** Requests in flight for the kvfn throughput trials, function and peer alike, over KVFN_CLIENTS processes. */
export const KVFN_INFLIGHT = 16;
export const KVFN_CLIENTS = 2;
/** Targets of the kvfn row (function p50 must stay under this, and its throughput at or above this share of the peer's). */
export const KVFN_P50_TARGET_US = 2000;
/** Issue #19's targets for the KV function's rate against the bare responder: synchronous calls, awaited calls. */
export const KVFN_RATE_TARGET = { function: 0.5, asyncFunction: 0.7 } as const;
/** Untimed warm-up before the kvfn trials, per target: this many requests or this long, whichever comes first. */
const KVFN_WARMUP_REQUESTS = 2000;
const KVFN_WARMUP_MS = 3000;
export const COLD_DEPLOYS = 20;
export const DENSITY_FUNCTIONS = 1000;
export const DENSITY_SAMPLE = 20;
const COLD_TIME_LIMIT_MS = 120_000;
const DENSITY_TIME_LIMIT_MS = 180_000;
const READY_TIMEOUT_MS = 30_000;
const DRAIN_TIMEOUT_MS = 45_000;
const MAX_REQUESTS = 500_000;
const REQC_MAX_REQUESTS = 1_000_000;
const FN_SUBJECT = "bench.fn";
const BARE_SUBJECT = "bench.bare";
const KVFN_SUBJECT = "bench.kvfn";
const KVFN_ASYNC_SUBJECT = "bench.kvfn-async";
const KVBARE_SUBJECT = "bench.kvbare";
/** The functions' workload names (so their KV buckets are hs_default_bench-kvfn...) and the peer's own bucket. */
const KVFN_NAME = "bench-kvfn";
const KVFN_ASYNC_NAME = "bench-kvfn-async";
const KVBARE_BUCKET = "bench-kvbare";

export function nodeRows(): NodeRow[] {
  return [
    {
      kind: "node",
      id: 12,
      workload: "trigger",
      name: `warm trigger round trip, ${TRIGGER_PAYLOAD} B, 1 sequential requester; peer: bare responder`,
    },
    {
      kind: "node",
      id: 13,
      workload: "trigger50",
      name:
        `trigger throughput, ${TRIGGER_PAYLOAD} B, ${TRIGGER50_INFLIGHT} in flight ` +
        `(${TRIGGER50_CLIENTS} clients × ${TRIGGER50_INFLIGHT / TRIGGER50_CLIENTS}); peer: bare responder`,
    },
    {
      kind: "node",
      id: 14,
      workload: "cold",
      name: `cold start: deploy sent → first trigger reply, p50 of ${COLD_DEPLOYS} distinct functions`,
    },
    { kind: "node", id: 15, workload: "density", name: `density: ${formatNumber(DENSITY_FUNCTIONS)} functions on one node` },
    {
      kind: "node",
      id: 16,
      workload: "kvfn",
      name: `KV function: kv.set + kv.get of the ${TRIGGER_PAYLOAD} B payload per trigger; peer: bare responder doing kv.put + kv.get`,
    },
    {
      kind: "node",
      id: 20,
      workload: "svc50",
      name:
        `service (nex run --service) answering through ctx.subscribe, ${TRIGGER_PAYLOAD} B, ${TRIGGER50_INFLIGHT} in flight ` +
        `(${TRIGGER50_CLIENTS} clients × ${TRIGGER50_INFLIGHT / TRIGGER50_CLIENTS}); peer: bare responder`,
    },
    { kind: "node", id: 21, workload: "svccold", name: `service cold start: deploy sent → first answer through ctx.subscribe, p50 of ${COLD_DEPLOYS} distinct services` },
    { kind: "node", id: 22, workload: "child", name: `child deploy from inside a workload → the child's first answer, p50 of ${CHILD_DEPLOYS} children` },
  ];
}

// ------------------------------------------------------------------ results

export interface ReqcResult {
  kind: "reqc";
  rate: number;
  count: number;
  errors: number;
  firstError: string | null;
  p50us: number;
  p99us: number;
  clientCores: number[];
  /** CPU (cores) during the run: the node process (broker + agent), its runtime host, the bare responder. */
  nodeCores: number | null;
  hostCores: number | null;
  bareCores: number | null;
}

export interface LatResultN extends ReqReport {
  kind: "lat";
}

export interface NodeTrial {
  row: number;
  target: Target;
  /** Which measurement of a row that makes two (kvfn); absent for the others. */
  phase?: "latency" | "throughput";
  rep: number;
  result: LatResultN | ReqcResult | null;
  error: string | null;
}

export interface NodeRowResult {
  row: NodeRow;
  trials: NodeTrial[];
  cold: ColdReport | null;
  density: DensityReport | null;
  child?: ChildDeployReport | null;
  /** A failure of the whole row (node did not start, deploy failed, time limit). */
  error: string | null;
  /** Warn/error lines the node logged during the row. */
  nodeWarnings: { count: number; lines: string[] };
  /** The `nex node up` process and its runtime host at the end of the row (KiB). */
  rssEnd: { node: number | null; host: number | null };
}

/** Runs one timed trial into `trial` (its result, or the first line of its error) and records it; a dead node ends the row. */
async function runTrial(
  node: RunningNode,
  res: NodeRowResult,
  log: Log,
  trial: NodeTrial,
  label: string,
  measure: () => Promise<LatResultN | ReqcResult>,
): Promise<void> {
  try {
    trial.result = await measure();
    log(`${label}: ${describeTrial(trial.result)}`);
  } catch (e) {
    trial.error = firstLine((e as Error).message);
    log(`${label}: ERROR ${(e as Error).message}`);
  }
  res.trials.push(trial);
  if (node.exitStatus()) throw new Error(`nex node up died (${node.exitStatus()})`);
}

type Log = (msg: string) => void;

function firstLine(s: string): string {
  const l = s.split("\n").find((x) => x.trim()) ?? s;
  return l.length > 200 ? `${l.slice(0, 197)}...` : l;
}

// ------------------------------------------------------------------- trials

async function latTrial(node: RunningNode, subject: string, o: NodeOptions, peers: LoadChild[]): Promise<LatResultN> {
  const r = await sequentialRequests(
    { url: node.url, subject, payloadSize: TRIGGER_PAYLOAD, warmupMs: o.warmupMs, measureMs: o.measureMs, maxRequests: MAX_REQUESTS, readyTimeoutMs: READY_TIMEOUT_MS, drainTimeoutMs: DRAIN_TIMEOUT_MS },
    peers,
  );
  return { kind: "lat", ...r };
}

interface Load {
  inflight: number;
  clients: number;
}

async function reqcTrial(
  node: RunningNode,
  subject: string,
  target: Target,
  o: NodeOptions,
  peers: LoadChild[],
  bare: LoadChild,
  load: Load = { inflight: TRIGGER50_INFLIGHT, clients: TRIGGER50_CLIENTS },
): Promise<ReqcResult> {
  const clients: LoadChild[] = [];
  const per = load.inflight / load.clients;
  try {
    for (let i = 0; i < load.clients; i++) {
      clients.push(new LoadChild(`requester${i + 1}`, { role: "reqc", url: node.url, subject, payloadSize: TRIGGER_PAYLOAD, inflight: per }));
    }
    const all = [...peers, ...clients];
    await guarded(all, Promise.all(clients.map((c) => c.next("ready", READY_TIMEOUT_MS))));
    const startAt = hrtime.bigint() + 50_000_000n;
    const warmAt = startAt + BigInt(o.warmupMs) * 1_000_000n;
    const endAt = warmAt + BigInt(o.measureMs) * 1_000_000n;
    for (const c of clients) {
      c.send({ type: "reqcRun", startAt: startAt.toString(), warmAt: warmAt.toString(), endAt: endAt.toString(), maxRequests: REQC_MAX_REQUESTS });
    }
    // CPU of the engine's processes and of the peer, from warmAt to endAt.
    const hostPid = node.hostPid();
    let cpu0: (number | null)[] = [];
    let cpu1: (number | null)[] = [];
    const sample = () => [cpuSecondsOf(node.pid), cpuSecondsOf(hostPid), cpuSecondsOf(bare.proc.pid)];
    const sampler = (async () => {
      await new Promise((r) => setTimeout(r, Math.max(0, Number(warmAt - hrtime.bigint()) / 1e6)));
      cpu0 = sample();
      await new Promise((r) => setTimeout(r, Math.max(0, Number(endAt - hrtime.bigint()) / 1e6)));
      cpu1 = sample();
    })();
    const reports: ReqcReport[] = (
      await guarded(all, Promise.all(clients.map((c) => c.next("reqcDone", o.warmupMs + o.measureMs + DRAIN_TIMEOUT_MS))))
    ).map((m) => m.report);
    await sampler;
    const windowS = o.measureMs / 1000;
    const cores = (i: number): number | null => {
      const a = cpu0[i];
      const b = cpu1[i];
      return a === null || a === undefined || b === null || b === undefined ? null : (b - a) / windowS;
    };
    const count = reports.reduce((a, r) => a + r.count, 0);
    if (count === 0) throw new Error(`no requests completed (${reports.map((r) => r.firstError).find(Boolean) ?? "no error reported"})`);
    return {
      kind: "reqc",
      rate: count / windowS,
      count,
      errors: reports.reduce((a, r) => a + r.errors, 0),
      firstError: reports.map((r) => r.firstError).find((e) => e !== null) ?? null,
      // The worse of the client processes' percentiles (they see the same load).
      p50us: Math.max(...reports.map((r) => r.p50us)),
      p99us: Math.max(...reports.map((r) => r.p99us)),
      clientCores: reports.map((r) => r.clientCores),
      nodeCores: cores(0),
      hostCores: target !== "bare" ? cores(1) : null,
      bareCores: target === "bare" ? cores(2) : null,
    };
  } finally {
    await Promise.all(clients.map((c) => c.stop()));
  }
}

function describeTrial(r: LatResultN | ReqcResult): string {
  if (r.kind === "lat") {
    return `p50 ${formatNumber(r.p50us)} µs, p99 ${formatNumber(r.p99us)} µs (${r.count} requests, mean ${formatNumber(r.meanUs)} µs, max ${formatNumber(r.maxUs)} µs)`;
  }
  const c = (v: number | null) => (v === null ? "n/a" : v.toFixed(2));
  return (
    `${formatNumber(r.rate)} requests/s (${r.count} in the window, latency p50 ${formatNumber(r.p50us)} µs p99 ${formatNumber(r.p99us)} µs, ` +
    `errors ${r.errors}${r.firstError ? ` [${r.firstError}]` : ""}; CPU cores: node process ${c(r.nodeCores)}` +
    (r.hostCores !== null ? `, runtime host ${c(r.hostCores)}` : "") +
    (r.bareCores !== null ? `, bare responder ${c(r.bareCores)}` : "") +
    `, clients ${r.clientCores.map((x) => x.toFixed(2)).join("+")})`
  );
}

// --------------------------------------------------------------------- rows

async function triggerRow(row: NodeRow, node: RunningNode, o: NodeOptions, res: NodeRowResult, log: Log): Promise<void> {
  const t0 = Date.now();
  const service = row.workload === "svc50";
  const id = service
    ? await deployWithCli(node, FN_SUBJECT, 60_000, { fileName: "bench-svc-echo", source: serviceEchoSource(FN_SUBJECT) }, true)
    : await deployWithCli(node, FN_SUBJECT);
  log(`[row ${row.id}] deployed the echo ${service ? "service" : "function"} with nex run (workload ${id}) in ${Date.now() - t0} ms`);
  const bare = new LoadChild("bare responder", { role: "rep", url: node.url, subject: BARE_SUBJECT });
  try {
    await guarded([bare], bare.next("ready", READY_TIMEOUT_MS));
    // Both answer what they are sent.
    const client = await NodeClient.open(node);
    try {
      await client.trigger(FN_SUBJECT, "check-fn", 0, "check-fn");
      await client.trigger(BARE_SUBJECT, "check-bare", 0, "check-bare");
    } finally {
      await client.close();
    }
    for (let rep = 0; rep < o.reps; rep++) {
      const order: Target[] = rep % 2 === 0 ? ["function", "bare"] : ["bare", "function"];
      for (const target of order) {
        const subject = target === "function" ? FN_SUBJECT : BARE_SUBJECT;
        const label = `[row ${row.id}] ${row.workload} — ${TARGET_LABEL[target]} run ${rep + 1}/${o.reps}`;
        const trial: NodeTrial = { row: row.id, target, rep: rep + 1, result: null, error: null };
        await runTrial(node, res, log, trial, label, () =>
          row.workload === "trigger" ? latTrial(node, subject, o, [bare]) : reqcTrial(node, subject, target, o, [bare], bare),
        );
      }
    }
  } finally {
    await bare.stop();
  }
}

/** `inflight` request loops on the client's connection until `maxRequests` were sent or `ms` passed. */
async function warmUp(
  client: NodeClient,
  subject: string,
  inflight: number,
  maxRequests: number,
  ms: number,
): Promise<{ count: number; ms: number; errors: number; firstError: string | null }> {
  const payload = new Uint8Array(TRIGGER_PAYLOAD).fill(0x61);
  const t0 = Date.now();
  const end = t0 + ms;
  let sent = 0;
  let count = 0;
  let errors = 0;
  let firstError: string | null = null;
  const loop = async (): Promise<void> => {
    while (sent < maxRequests && Date.now() < end) {
      sent++;
      try {
        const m = await client.nc.request(subject, payload, { timeout: 5000 });
        if (m.headers?.get("Nex-Error")) throw new Error(`error reply: ${m.headers.get("Nex-Error")}`);
        count++;
      } catch (e) {
        errors++;
        firstError ??= (e as Error).message;
      }
    }
  };
  await Promise.all(Array.from({ length: inflight }, loop));
  return { count, ms: Date.now() - t0, errors, firstError };
}

/**
 * Row 16: the KV function (sync and async) beside a bare responder doing the same KV calls. Per rep, each
 * target gets a sequential latency trial, then a throughput trial with KVFN_INFLIGHT requests in flight
 * (order reversed between reps). Bounded: 6 trials per rep, each bounded in time by latTrial / reqcTrial.
 */
async function kvfnRow(row: NodeRow, node: RunningNode, o: NodeOptions, res: NodeRowResult, log: Log): Promise<void> {
  const t0 = Date.now();
  const id = await deployWithCli(node, KVFN_SUBJECT, 60_000, { fileName: KVFN_NAME, source: KVFN_SOURCE });
  const asyncId = await deployWithCli(node, KVFN_ASYNC_SUBJECT, 60_000, { fileName: KVFN_ASYNC_NAME, source: KVFN_ASYNC_SOURCE });
  log(`[row ${row.id}] deployed the KV functions with nex run (workloads ${id}, ${asyncId}) in ${Date.now() - t0} ms`);
  const bare = new LoadChild("kv responder", {
    role: "kvrep",
    url: node.url,
    subject: KVBARE_SUBJECT,
    bucket: KVBARE_BUCKET,
    keys: KVFN_KEYS,
    maxBytes: DEFAULT_HOST_SERVICES_OPTIONS.kvMaxBytes,
    // As the node's host services make their buckets, on the bundled broker's default max_payload (1 MiB).
    maxValueSize: hostValueLimit(1024 * 1024),
  });
  try {
    await guarded([bare], bare.next("ready", READY_TIMEOUT_MS));
    // Both store and read back what they are sent (the function's first call also creates its bucket).
    const client = await NodeClient.open(node);
    try {
      for (const v of ["check-1", "check-2"]) {
        await client.trigger(KVFN_SUBJECT, `${v}-fn`, 0, `${v}-fn`);
        await client.trigger(KVFN_ASYNC_SUBJECT, `${v}-async`, 0, `${v}-async`);
        await client.trigger(KVBARE_SUBJECT, `${v}-bare`, 0, `${v}-bare`);
      }
      // Untimed warm-up of every path (JIT of the node, runtime host and peer), bounded by count and time:
      // without it the first run of each target is markedly slower than the later ones.
      for (const subject of [KVFN_SUBJECT, KVFN_ASYNC_SUBJECT, KVBARE_SUBJECT]) {
        const w = await warmUp(client, subject, KVFN_INFLIGHT, KVFN_WARMUP_REQUESTS, KVFN_WARMUP_MS);
        log(`[row ${row.id}] untimed warm-up of ${subject}: ${w.count} requests in ${w.ms} ms${w.errors ? `, ${w.errors} failed (${w.firstError})` : ""}`);
      }
    } finally {
      await client.close();
    }
    const w: NodeOptions = { ...o, warmupMs: o.kvfnWarmupMs ?? o.warmupMs, measureMs: o.kvfnMeasureMs ?? o.measureMs };
    const load: Load = { inflight: KVFN_INFLIGHT, clients: KVFN_CLIENTS };
    for (let rep = 0; rep < o.reps; rep++) {
      const order: Target[] = rep % 2 === 0 ? ["function", "asyncFunction", "bare"] : ["bare", "asyncFunction", "function"];
      for (const phase of ["latency", "throughput"] as const) {
        for (const target of order) {
          const subject = target === "function" ? KVFN_SUBJECT : target === "asyncFunction" ? KVFN_ASYNC_SUBJECT : KVBARE_SUBJECT;
          const label = `[row ${row.id}] kvfn ${phase} — ${TARGET_LABEL[target]} run ${rep + 1}/${o.reps}`;
          const trial: NodeTrial = { row: row.id, target, phase, rep: rep + 1, result: null, error: null };
          await runTrial(node, res, log, trial, label, () =>
            phase === "latency" ? latTrial(node, subject, w, [bare]) : reqcTrial(node, subject, target, w, [bare], bare, load),
          );
        }
      }
    }
  } finally {
    await bare.stop();
  }
}

export async function runNodeRow(row: NodeRow, o: NodeOptions, log: Log): Promise<NodeRowResult> {
  const res: NodeRowResult = {
    row,
    trials: [],
    cold: null,
    density: null,
    error: null,
    nodeWarnings: { count: 0, lines: [] },
    rssEnd: { node: null, host: null },
  };
  let node: RunningNode | null = null;
  try {
    const t0 = Date.now();
    node = await startNode();
    log(`[row ${row.id}] nex node up: pid ${node.pid}, ${node.url}, node ${node.nodeId.slice(0, 8)}…, started in ${Date.now() - t0} ms`);
    const n = node;
    const rss = () => ({ node: rssKiB(n.pid), host: rssKiB(n.hostPid()) });
    switch (row.workload) {
      case "trigger":
      case "trigger50":
      case "svc50":
        await triggerRow(row, n, o, res, log);
        break;
      case "kvfn":
        await kvfnRow(row, n, o, res, log);
        break;
      case "cold":
      case "svccold": {
        const r = await runCold(n, COLD_DEPLOYS, COLD_TIME_LIMIT_MS, row.workload === "svccold");
        res.cold = r;
        const p = (v: number[], q: number) => formatNumber(percentileOf(v, q));
        log(
          `[row ${row.id}] cold start over ${r.totalMs.length} deploys: p50 ${p(r.totalMs, 0.5)} ms (deploy reply p50 ${p(r.deployMs, 0.5)} ms ` +
            `+ first trigger p50 ${p(r.firstReplyMs, 0.5)} ms), min ${formatNumber(Math.min(...r.totalMs))} ms, max ${formatNumber(Math.max(...r.totalMs))} ms; ` +
            `first deploy on the fresh node (starts the runtime host) ${formatNumber(r.firstDeployMs)} ms; retries ${r.retries}; upload ${r.uploadSeconds.toFixed(2)} s untimed`,
        );
        break;
      }
      case "child": {
        const r = await runChildDeploys(n, CHILD_DEPLOYS);
        res.child = r;
        const p = (v: number[], q: number) => formatNumber(percentileOf(v, q));
        log(
          `[row ${row.id}] child deploy → first answer over ${r.totalMs.length} children: p50 ${p(r.totalMs, 0.5)} ms, p90 ${p(r.totalMs, 0.9)} ms, ` +
            `max ${formatNumber(Math.max(...r.totalMs))} ms (inside the lobby p50 ${p(r.innerMs, 0.5)} ms); first child ${formatNumber(r.firstMs)} ms`,
        );
        break;
      }
      case "density": {
        const r = await runDensity(n, DENSITY_FUNCTIONS, DENSITY_SAMPLE, DENSITY_TIME_LIMIT_MS, rss, (m) => log(`[row ${row.id}] ${m}`));
        res.density = r;
        log(
          `[row ${row.id}] ${r.functions} deploys in ${r.deploySeconds.toFixed(1)} s (p50 ${formatNumber(r.deployP50Ms)} ms, p99 ${formatNumber(r.deployP99Ms)} ms, ` +
            `mean of deploys 2-101 ${formatNumber(r.first100MeanMs)} ms, last 100 ${formatNumber(r.last100MeanMs)} ms); ` +
            `RSS after 1: node ${mib(r.rssAfterFirst.node)} MiB + host ${mib(r.rssAfterFirst.host)} MiB; after ${r.functions}: node ${mib(r.rssAfterAll.node)} MiB + host ${mib(r.rssAfterAll.host)} MiB; ` +
            `sample ${r.answered}/${r.sampled} answered` +
            (r.sampleErrors.length ? ` (${r.sampleErrors.slice(0, 3).join("; ")})` : ""),
        );
        break;
      }
    }
  } catch (e) {
    let msg = (e as Error).message;
    if (node) await new Promise((r) => setTimeout(r, 200)); // let an exit event arrive
    const died = node?.exitStatus();
    if (died && !/died/.test(msg)) msg = `nex node up died (${died}); ${msg}`;
    res.error = firstLine(msg);
    log(`[row ${row.id}] ERROR ${msg}`);
    if (died) log(`nex node up output (tail):\n${node!.output().slice(-2000)}`);
  } finally {
    if (node) {
      res.rssEnd = { node: rssKiB(node.pid), host: rssKiB(node.hostPid()) };
      const w = node.warnings();
      res.nodeWarnings = { count: w.count, lines: [...w.lines] };
      const s0 = Date.now();
      await node.stop();
      log(`[row ${row.id}] node stopped in ${Date.now() - s0} ms`);
    }
  }
  return res;
}

// ------------------------------------------------------------------- output

/** Best (lowest for latency, highest for rates) of a target's successful trials. */
function best(res: NodeRowResult, target: Target, pick: (r: LatResultN | ReqcResult) => number, lower: boolean): number | null {
  // pick() answers NaN for a result of another kind (row kvfn holds latency and throughput trials).
  const v = res.trials.filter((t) => t.target === target && t.result).map((t) => pick(t.result!)).filter((x) => !Number.isNaN(x));
  return v.length ? (lower ? Math.min(...v) : Math.max(...v)) : null;
}

function errorCell(res: NodeRowResult, target?: Target): string {
  const e = res.error ?? res.trials.find((t) => (!target || t.target === target) && t.error)?.error ?? "n/a";
  const why = e.replace(/\|/g, "/");
  return e === "n/a" ? e : `error: ${why.length > 48 ? `${why.slice(0, 45)}...` : why}`;
}

/** The node rows' markdown: one table with peers, the density table, and the notes under them. */
export function renderNodeResults(results: NodeRowResult[], o: NodeOptions): string[] {
  const out: string[] = [];
  const peerRows: string[][] = [];
  const notes: string[] = [];
  const problems: string[] = [];
  const cell = (v: number | null, res: NodeRowResult, t?: Target) => (v === null ? errorCell(res, t) : formatNumber(v));
  /** The p50 and p99 rows of a row's latency trials, function beside peer; returns the function's p50 and p99. */
  const latencyRows = (
    res: NodeRowResult,
    suffixes: [string, string],
    prefix: string,
    unit: string,
    targetNote: (key: "p50us" | "p99us", f: number | null) => string,
    target: Target = "function",
  ): (number | null)[] =>
    (["p50us", "p99us"] as const).map((key, i) => {
      const pick = (r: LatResultN | ReqcResult) => (r.kind === "lat" ? r[key] : NaN);
      const f = best(res, target, pick, true);
      const b = best(res, "bare", pick, true);
      const what = key.slice(0, 3);
      peerRows.push([`${res.row.id}${suffixes[i]}`, `${prefix}${what}${unit}`, cell(f, res, target), cell(b, res, "bare"), `${formatRatio(f, b)} (lower is better${targetNote(key, f)})`]);
      return f;
    });
  let warmP50: number | null = null;

  for (const res of results) {
    const { row } = res;
    if (row.workload === "trigger") {
      const [p50] = latencyRows(res, ["a", "b"], `${row.name}: `, " (µs)", () => "");
      warmP50 = p50;
    } else if (row.workload === "trigger50" || row.workload === "svc50") {
      const pick = (r: LatResultN | ReqcResult) => (r.kind === "reqc" ? r.rate : NaN);
      const f = best(res, "function", pick, false);
      const b = best(res, "bare", pick, false);
      const ratio = formatRatio(f, b);
      const verdict = f !== null && b !== null && b > 0 ? (f / b >= 0.5 ? "meets target ≥ 0.5" : "below target ≥ 0.5") : "target ≥ 0.5";
      peerRows.push([String(row.id), `${row.name} (requests/s)`, cell(f, res, "function"), cell(b, res, "bare"), `${ratio} (${verdict})`]);
      const r = res.trials.filter((t) => t.result?.kind === "reqc").map((t) => t.result as ReqcResult);
      if (r.length) notes.push(loadNote(row.id, r));
      for (const x of r) if (x.errors) problems.push(`row ${row.id}: ${x.errors} failed requests (${x.firstError})`);
    } else if (row.workload === "kvfn") {
      const rate = (r: LatResultN | ReqcResult) => (r.kind === "reqc" ? r.rate : NaN);
      const b = best(res, "bare", rate, false);
      const faces: ["function" | "asyncFunction", string, [string, string, string]][] = [
        ["function", "synchronous calls", ["a", "b", "c"]],
        ["asyncFunction", "async function, awaited calls (hostServices.async)", ["d", "e", "f"]],
      ];
      for (const [target, face, [ra, rb, rc]] of faces) {
        const f = best(res, target, rate, false);
        const goal = KVFN_RATE_TARGET[target];
        const met = f !== null && b !== null && b > 0 ? (f / b >= goal ? "meets" : "below") : null;
        peerRows.push([
          `${row.id}${ra}`,
          `${row.name}, ${face}: requests/s, ${KVFN_INFLIGHT} in flight (${KVFN_CLIENTS} clients × ${KVFN_INFLIGHT / KVFN_CLIENTS})`,
          cell(f, res, target),
          cell(b, res, "bare"),
          `${formatRatio(f, b)} (${met ? `${met} target ≥ ${goal}` : `target ≥ ${goal}`})`,
        ]);
        latencyRows(
          res,
          [rb, rc],
          `${row.name}, ${face}: `,
          " of sequential requests (µs)",
          (key, fl) =>
            key !== "p50us" ? "" : fl === null ? `; target function < ${KVFN_P50_TARGET_US / 1000} ms` : `; function ${fl < KVFN_P50_TARGET_US ? "meets" : "misses"} target < ${KVFN_P50_TARGET_US / 1000} ms`,
          target,
        );
      }
      const r = res.trials.filter((t) => t.result?.kind === "reqc").map((t) => t.result as ReqcResult);
      if (r.length) notes.push(loadNote(row.id, r));
      for (const x of r) if (x.errors) problems.push(`row ${row.id}: ${x.errors} failed requests (${x.firstError})`);
    } else if (row.workload === "svccold") {
      const c = res.cold;
      const p50 = c ? percentileOf(c.totalMs, 0.5) : null;
      const verdict = p50 === null ? "target < 50 ms" : p50 < 50 ? "meets target < 50 ms" : "misses target < 50 ms";
      peerRows.push([String(row.id), `${row.name} (ms); no peer`, p50 === null ? errorCell(res) : formatNumber(p50), "—", `— (${verdict})`]);
      if (c) {
        const p = (v: number[], q: number) => formatNumber(percentileOf(v, q));
        notes.push(
          `Row ${row.id}: as row 14, with services (\`export default { start(ctx) { ctx.subscribe(subject, ...) } }\`, deployed with service: true and no trigger subject): ` +
            `timed from sending the deploy request to the first answer through ctx.subscribe (the deploy reply comes once start(ctx) has run). ` +
            `Split (p50): deploy reply ${p(c.deployMs, 0.5)} ms + first answer ${p(c.firstReplyMs, 0.5)} ms; max ${formatNumber(Math.max(...c.totalMs))} ms.`,
        );
        if (c.retries) problems.push(`row ${row.id}: ${c.retries} first request(s) found no responders after the deploy reply (retried)`);
      }
    } else if (row.workload === "child") {
      const c = res.child;
      const p50 = c ? percentileOf(c.totalMs, 0.5) : null;
      peerRows.push([
        String(row.id),
        `child deploy: workloads.deploy inside a function → the child's first answer (ms), p50 of ${CHILD_DEPLOYS} children; no peer`,
        p50 === null ? errorCell(res) : formatNumber(p50),
        "—",
        p50 === null ? `target < ${CHILD_TARGET_MS} ms` : `${p50 < CHILD_TARGET_MS ? "meets" : "misses"} target < ${CHILD_TARGET_MS} ms`,
      ]);
      if (c) {
        const p = (v: number[], q: number) => formatNumber(percentileOf(v, q));
        notes.push(
          `Row ${row.id}: a lobby function deployed with a grant for one table artifact calls this.hostServices.workloads.deploy and then messaging.request on the child's subject, ` +
            `once per child (the same table artifact each time, each on its own subject; the auction, the grant checks and the node-signed DEPLOY_CHILD are all in the path). ` +
            `Timed from the client's request to the lobby to the lobby's answer carrying the child's first reply: p50 ${p(c.totalMs, 0.5)} ms, p90 ${p(c.totalMs, 0.9)} ms, ` +
            `max ${formatNumber(Math.max(...c.totalMs))} ms; the lobby's own span p50 ${p(c.innerMs, 0.5)} ms. Not counted: the first child (artifact fetched and compiled): ${formatNumber(c.firstMs)} ms.`,
        );
      }
    } else if (row.workload === "cold") {
      const c = res.cold;
      const p50 = c ? percentileOf(c.totalMs, 0.5) : null;
      peerRows.push([
        String(row.id),
        `cold start: deploy sent → first trigger reply (ms), p50 of ${COLD_DEPLOYS} distinct functions; no peer`,
        p50 === null ? errorCell(res) : formatNumber(p50),
        "—",
        "—",
      ]);
      if (c) {
        const p = (v: number[], q: number) => formatNumber(percentileOf(v, q));
        notes.push(
          `Row ${row.id} has no peer (bare NATS has nothing to deploy): ${c.totalMs.length} distinct functions (own source, SHA-256 and trigger subject each), ` +
            `deployed one after another through the control API (signed DEPLOY request; artifacts uploaded to ${ARTIFACT_BUCKET} beforehand, untimed); ` +
            `timed from sending the deploy request to receiving the reply of the first trigger request, sent as soon as the deploy reply arrived. ` +
            `Split (p50): deploy reply ${p(c.deployMs, 0.5)} ms + first trigger ${p(c.firstReplyMs, 0.5)} ms; ` +
            `min ${formatNumber(Math.min(...c.totalMs))} ms, p90 ${p(c.totalMs, 0.9)} ms, max ${formatNumber(Math.max(...c.totalMs))} ms. ` +
            `Not counted: the first deploy on the fresh node, which also starts the runtime-host process: ${formatNumber(c.firstDeployMs)} ms.` +
            (warmP50 !== null && p50 !== null ? ` For scale: one cold start costs about ${formatNumber((p50 * 1000) / warmP50)} warm trigger round trips (row 12a).` : ""),
        );
        if (c.retries) problems.push(`row ${row.id}: ${c.retries} first trigger(s) found no responders after the deploy reply (retried)`);
      }
    }
  }

  if (peerRows.length) {
    out.push(
      renderTable(
        ["#", "Node benchmark (peer named in the row)", "nex function", "peer", "ratio (function / peer)"],
        ["---:", ":---", "---:", "---:", "---:"],
        peerRows,
      ),
    );
    out.push("");
    const triggerRows = results.some((r) => r.row.workload === "trigger" || r.row.workload === "trigger50");
    out.push(
      `Method: a fresh \`nex node up --port 0\` (bundled broker, node agent, JavaScript runtime host) per row, with its own temporary data directory and NEX_HOME, stopped and removed afterwards.` +
        (triggerRows
          ? ` Rows 12-13: the function \`(subject, payload) => payload\` deployed once with \`nex run\` (default limits: one isolate, one warm context); ` +
            `the peer is a nats.js process of its own answering msg.respond(msg.data), connected to the same broker (the one inside the node process); both answer a ${TRIGGER_PAYLOAD} B payload. ` +
            `Requesters are nats.js processes of their own: row 12 one sequential requester (${o.warmupMs} ms warm-up, then every request for ${o.measureMs} ms); ` +
            `row 13 ${TRIGGER50_CLIENTS} processes × ${TRIGGER50_INFLIGHT / TRIGGER50_CLIENTS} request loops (replies counted for ${o.measureMs} ms after ${o.warmupMs} ms warm-up). ` +
            `Best of ${o.reps} run(s) per cell, function and peer alternated.`
          : "") +
        (results.some((r) => r.row.workload === "kvfn")
          ? ` Row 16: the function \`kv.set(key, payload); return kv.get(key)\` (16a-c: this.hostServices.kv, synchronous in the isolate; 16d-f: an async function awaiting ` +
            `this.hostServices.async.kv; each call a host-service call the runtime host turns into a JetStream KV put / get on the workload's bucket) deployed with \`nex run\` (defaults: one isolate, one warm context); ` +
            `the peer is a nats.js process of its own doing kv.put then kv.get with @nats-io/kv on a bucket of its own (same size limits) and responding with the value read. ` +
            `Both roll over ${formatNumber(KVFN_KEYS)} keys, one per request, and answer a ${TRIGGER_PAYLOAD} B payload (checked with distinct payloads before timing), ` +
            `and get an untimed warm-up first (${KVFN_INFLIGHT} in flight, up to ${formatNumber(KVFN_WARMUP_REQUESTS)} requests or ${KVFN_WARMUP_MS / 1000} s each). ` +
            `16a, 16d: ${KVFN_CLIENTS} requester processes × ${KVFN_INFLIGHT / KVFN_CLIENTS} request loops, replies counted for ${o.kvfnMeasureMs ?? o.measureMs} ms after ${o.kvfnWarmupMs ?? o.warmupMs} ms warm-up; ` +
            `16b-c, 16e-f: one sequential requester, every request for ${o.kvfnMeasureMs ?? o.measureMs} ms after ${o.kvfnWarmupMs ?? o.warmupMs} ms warm-up. ` +
            `Best of ${o.reps} run(s) per cell, the order of the three reversed between runs.`
          : ""),
    );
    for (const n of notes) out.push(n);
  }

  for (const res of results) {
    if (res.row.workload !== "density") continue;
    if (out.length) out.push("");
    const body: string[][] = [];
    const d = res.density;
    if (!d) {
      body.push([String(res.row.id), `${res.row.name}`, errorCell(res)]);
    } else {
      const total = (x: { node: number | null; host: number | null }) => (x.node === null || x.host === null ? null : x.node + x.host);
      const all = total(d.rssAfterAll);
      const first = total(d.rssAfterFirst);
      body.push(["15a", `total deploy time, ${formatNumber(d.functions)} deploys one after another (s)`, `${d.deploySeconds.toFixed(1)} (${formatNumber(d.functions / d.deploySeconds)} deploys/s)`]);
      body.push(["15b", "deploy reply latency p50 / p99 (ms)", `${formatNumber(d.deployP50Ms)} / ${formatNumber(d.deployP99Ms)}`]);
      body.push(["15c", `RSS after ${formatNumber(d.functions)} deploys: \`nex node up\` process (MiB)`, mib(d.rssAfterAll.node)]);
      body.push(["15d", "RSS: its runtime-host child (MiB)", mib(d.rssAfterAll.host)]);
      body.push(["15e", "RSS: both (MiB)", mib(all)]);
      body.push([
        "15f",
        `RSS growth per function, from 1 to ${formatNumber(d.functions)} deployed (KiB)`,
        all === null || first === null ? "n/a" : formatNumber((all - first) / (d.functions - 1)),
      ]);
      body.push(["15g", `sampled subjects that answered correctly`, `${d.answered} / ${d.sampled}`]);
      if (d.answered !== d.sampled) problems.push(`row 15: ${d.sampled - d.answered} sampled subject(s) did not answer: ${d.sampleErrors.slice(0, 3).join("; ")}`);
    }
    out.push(renderTable(["#", `Density: ${formatNumber(DENSITY_FUNCTIONS)} functions on one fresh node (no peer)`, "value"], ["---:", ":---", "---:"], body));
    out.push("");
    if (d) {
      out.push(
        `Density method: ${formatNumber(d.functions)} distinct functions (each its own source and trigger subject, answering \`<tag> <subject>\`), ` +
          `artifacts uploaded first (untimed, ${d.uploadSeconds.toFixed(1)} s), then deployed one after another through the control API ` +
          `(the first deploy also starts the runtime host: ${formatNumber(d.firstDeployMs)} ms). Mean deploy time of deploys 2-101 ${formatNumber(d.first100MeanMs)} ms, ` +
          `of the last 100 ${formatNumber(d.last100MeanMs)} ms. RSS = VmRSS from /proc of the node process and of its runtime-host child (ps --ppid); ` +
          `after 1 deploy: ${mib(d.rssAfterFirst.node)} + ${mib(d.rssAfterFirst.host)} MiB; after the ${d.sampled} sample triggers: ` +
          `${mib(d.rssAfterSample.node)} + ${mib(d.rssAfterSample.host)} MiB. Time limit ${DENSITY_TIME_LIMIT_MS / 1000} s for the whole row.`,
      );
    } else {
      out.push(`Density: see the error above; the row is bounded to ${DENSITY_TIME_LIMIT_MS / 1000} s.`);
    }
  }

  for (const res of results) {
    if (res.error) problems.push(`row ${res.row.id}: ${res.error}`);
    for (const t of res.trials) {
      if (t.error) problems.push(`row ${res.row.id}, ${TARGET_LABEL[t.target]}${t.phase ? ` ${t.phase}` : ""} run ${t.rep}: ${t.error}`);
    }
    if (res.nodeWarnings.count) {
      problems.push(
        `row ${res.row.id}: the node logged ${res.nodeWarnings.count} warning/error line(s); first: ${firstLine(res.nodeWarnings.lines[0] ?? "")}`,
      );
    }
  }
  if (problems.length) {
    out.push("");
    out.push("Node row problems:");
    for (const p of problems) out.push(`- ${p}`);
  }
  return out;
}

/** The CPU and latency-under-load note of a throughput row (13, 16a). */
function loadNote(rowId: number, r: ReqcResult[]): string {
  const span = (v: (number | null)[]) => {
    const x = v.filter((y): y is number => y !== null);
    return x.length ? `${Math.min(...x).toFixed(2)}–${Math.max(...x).toFixed(2)}` : "n/a";
  };
  const fn = r.filter((x) => x.hostCores !== null);
  const bare = r.filter((x) => x.bareCores !== null);
  return (
    `Row ${rowId} CPU while measuring (cores, min–max over runs): function runs: node process (broker + agent) ${span(fn.map((x) => x.nodeCores))}, ` +
    `runtime host ${span(fn.map((x) => x.hostCores))}; bare runs: node process (broker) ${span(bare.map((x) => x.nodeCores))}, ` +
    `bare responder ${span(bare.map((x) => x.bareCores))}; client processes ${span(r.flatMap((x) => x.clientCores))} each. ` +
    `CPU per request (µs): runtime host ${perReq(fn, (x) => x.hostCores)}, bare responder ${perReq(bare, (x) => x.bareCores)}; ` +
    `node process ${perReq(fn, (x) => x.nodeCores)} (function) vs ${perReq(bare, (x) => x.nodeCores)} (bare). ` +
    `Latency under this load (p50/p99 µs, best run): function ${fmtPair(fn)}, bare ${fmtPair(bare)}.`
  );
}

/** CPU microseconds per answered request (min–max over runs). */
function perReq(rs: ReqcResult[], cores: (r: ReqcResult) => number | null): string {
  const v = rs.flatMap((r) => {
    const c = cores(r);
    return c === null || !(r.rate > 0) ? [] : [(c * 1e6) / r.rate];
  });
  return v.length ? `${formatNumber(Math.min(...v))}–${formatNumber(Math.max(...v))}` : "n/a";
}

function fmtPair(rs: ReqcResult[]): string {
  if (!rs.length) return "n/a";
  const b = rs.reduce((a, x) => (x.rate > a.rate ? x : a));
  return `${formatNumber(b.p50us)}/${formatNumber(b.p99us)}`;
}
