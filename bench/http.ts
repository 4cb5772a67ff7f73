// The HTTP trigger rows (issue #16): a JavaScript fetch handler returning 16 B through the node's gateway
// (`nex node up --web-port 0`, one NATS hop to the function's runtime host) against a bare node:http
// server returning the same 16 B in a process of its own, both measured in the same run with autocannon
// at 50 connections (10 s each, alternated, after a 2 s warm-up of each), and the p50 of sequential
// requests over one keep-alive connection. Targets: ≥ 0.5× the bare server's requests/s; p50 < 2 ms.

import { spawn, type ChildProcess } from "node:child_process";
import http from "node:http";
import { createRequire } from "node:module";
import { connect } from "@nats-io/transport-node";
import { createAccount } from "@nats-io/nkeys";
import { Objm } from "@nats-io/obj";
import { ControlClient } from "../src/cli/control-client.js";
import { ARTIFACT_BUCKET, DEFAULT_NAMESPACE, PROTOCOL_VERSION } from "../src/protocol/control.js";
import { sha256Hex } from "../src/util/sha256.js";
import { liveProcesses } from "./children.js";
import { cpuSecondsOf } from "./servers.js";
import { startNode } from "./node.js";
import { formatNumber, formatRatio, renderTable } from "./table.js";

export const HTTP_ROW_IDS = [23, 24] as const;
const CONNECTIONS = 50;
const SECONDS = 10;
const WARMUP_SECONDS = 2;
const SEQUENTIAL = 2000;
const BODY = "0123456789abcdef";
const FUNCTION = `export default { fetch() { return new Response(${JSON.stringify(BODY)}); } };`;
const BARE = `require("node:http").createServer((q, s) => { s.writeHead(200, { "content-type": "text/plain;charset=UTF-8" }); s.end(${JSON.stringify(BODY)}); })` +
  `.listen(0, "127.0.0.1", function () { console.log(this.address().port); });`;

interface CannonResult {
  requests: { average: number; total: number };
  latency: { p50: number; p99: number };
  duration: number;
  non2xx: number;
  errors: number;
}
type Cannon = (o: { url: string; connections: number; duration: number; pipelining?: number }) => Promise<CannonResult>;

/** autocannon is a devDependency; the row says so when it is missing. */
function loadAutocannon(): Cannon | undefined {
  try {
    return createRequire(import.meta.url)("autocannon") as Cannon;
  } catch {
    return undefined;
  }
}

async function bareServer(): Promise<{ url: string; proc: ChildProcess }> {
  const proc = spawn(process.execPath, ["-e", BARE], { stdio: ["ignore", "pipe", "inherit"] });
  liveProcesses.add(proc);
  proc.once("exit", () => liveProcesses.delete(proc));
  const port = await new Promise<number>((resolve, reject) => {
    proc.stdout?.once("data", (d: Buffer) => resolve(Number(d.toString().trim())));
    proc.once("exit", (c) => reject(new Error(`the bare server exited with ${c}`)));
  });
  return { url: `http://127.0.0.1:${port}`, proc };
}

/** p50 and p99 (µs) of sequential GETs over one keep-alive connection. */
async function sequential(url: string, n: number): Promise<{ p50: number; p99: number }> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const u = new URL(url);
  const one = (): Promise<number> =>
    new Promise((resolve, reject) => {
      const t0 = process.hrtime.bigint();
      const req = http.get({ host: u.hostname, port: Number(u.port), path: u.pathname, agent }, (res) => {
        res.resume();
        res.on("end", () => (res.statusCode === 200 ? resolve(Number(process.hrtime.bigint() - t0) / 1000) : reject(new Error(`status ${res.statusCode}`))));
      });
      req.on("error", reject);
    });
  for (let i = 0; i < 200; i++) await one();
  const times: number[] = [];
  for (let i = 0; i < n; i++) times.push(await one());
  agent.destroy();
  times.sort((a, b) => a - b);
  return { p50: times[Math.floor(n * 0.5)], p99: times[Math.floor(n * 0.99)] };
}

async function cannon(run: Cannon, url: string, seconds: number): Promise<CannonResult> {
  const r = await run({ url, connections: CONNECTIONS, duration: seconds });
  if (r.non2xx > 0 || r.errors > 0) throw new Error(`${url}: ${r.non2xx} non-2xx responses, ${r.errors} errors`);
  return r;
}

export async function runHttpRows(log: (msg: string) => void): Promise<string[]> {
  const [rateRow, latencyRow] = HTTP_ROW_IDS;
  const run = loadAutocannon();
  if (!run) return [`Rows ${rateRow}-${latencyRow} (http) not run: autocannon is not installed (npm install -D autocannon)`];
  log(`[rows ${rateRow}-${latencyRow}] http: fetch function through the gateway vs a bare node:http server`);
  const node = await startNode(["--web-port", "0"]);
  const bare = await bareServer();
  const nc = await connect({ servers: node.url, name: "nex-bench-http" });
  try {
    const web = /web:\s+(http:\/\/\S+)/.exec(node.output())?.[1];
    if (!web) throw new Error(`the node printed no web URL: ${node.output().slice(-500)}`);
    const bytes = new TextEncoder().encode(FUNCTION);
    const sha256 = sha256Hex(bytes);
    const store = await new Objm(nc).create(ARTIFACT_BUCKET);
    await store.putBlob({ name: sha256 }, bytes);
    const control = new ControlClient(nc, DEFAULT_NAMESPACE, 30_000);
    await control.deploy(createAccount(), node.nodeId, {
      version: PROTOCOL_VERSION,
      name: "http-bench",
      type: "javascript",
      artifact: { url: `nats://${ARTIFACT_BUCKET}/${sha256}`, sha256 },
      trigger_subjects: [],
      http: { path: "/bench" },
      limits: {},
      tags: {},
      requested_at: new Date().toISOString(),
    });
    const fnUrl = `${web}/bench`;
    const bareUrl = `${bare.url}/bench`;
    await cannon(run, fnUrl, WARMUP_SECONDS);
    await cannon(run, bareUrl, WARMUP_SECONDS);
    const fnCpu = cpuPerRequest({ "node process": node.pid, "runtime host": node.hostPid(), bench: process.pid });
    const fn = await cannon(run, fnUrl, SECONDS);
    const fnCpuUs = fnCpu(fn.requests.total);
    const peerCpu = cpuPerRequest({ "bare server": bare.proc.pid, bench: process.pid });
    const peer = await cannon(run, bareUrl, SECONDS);
    const peerCpuUs = peerCpu(peer.requests.total);
    const fnSeq = await sequential(fnUrl, SEQUENTIAL);
    const peerSeq = await sequential(bareUrl, SEQUENTIAL);
    const rate = (r: CannonResult): number => r.requests.total / r.duration;
    log(`[rows ${rateRow}-${latencyRow}] function ${rate(fn).toFixed(0)} req/s (p50 ${fn.latency.p50} ms at ${CONNECTIONS} connections), bare ${rate(peer).toFixed(0)} req/s (p50 ${peer.latency.p50} ms)`);
    log(`[rows ${rateRow}-${latencyRow}] CPU per request (µs; the bench runs autocannon): through the gateway ${fnCpuUs}; bare ${peerCpuUs}`);
    const ratio = rate(fn) / rate(peer);
    const title = (what: string): string => `HTTP trigger: fetch function returning 16 B through the gateway; peer: bare node:http server returning 16 B: ${what}`;
    return [
      renderTable(
        ["#", "HTTP benchmark (peer named in the row)", "nex function", "peer", "ratio (function / peer)"],
        ["---:", ":---", "---:", "---:", "---:"],
        [
          [`${rateRow}a`, title(`requests/s, autocannon, ${CONNECTIONS} connections, ${SECONDS} s`), formatNumber(rate(fn)), formatNumber(rate(peer)), `${formatRatio(rate(fn), rate(peer))} (${ratio >= 0.5 ? "meets" : "below"} target ≥ 0.5)`],
          [`${rateRow}b`, title(`p50 latency at ${CONNECTIONS} connections (ms, autocannon)`), formatNumber(fn.latency.p50), formatNumber(peer.latency.p50), `${formatRatio(fn.latency.p50, peer.latency.p50)} (lower is better)`],
          [`${latencyRow}a`, title("p50 of sequential requests, one keep-alive connection (µs)"), formatNumber(fnSeq.p50), formatNumber(peerSeq.p50), `${formatRatio(fnSeq.p50, peerSeq.p50)} (lower is better; function ${fnSeq.p50 < 2000 ? "meets" : "misses"} target < 2 ms)`],
          [`${latencyRow}b`, title("p99 of sequential requests, one keep-alive connection (µs)"), formatNumber(fnSeq.p99), formatNumber(peerSeq.p99), `${formatRatio(fnSeq.p99, peerSeq.p99)} (lower is better)`],
        ],
      ),
    ];
  } finally {
    await nc.close();
    bare.proc.kill("SIGKILL");
    await node.stop();
  }
}

/** Starts counting the CPU of these processes; the returned function says µs of each per request. */
function cpuPerRequest(pids: Record<string, number | null | undefined>): (requests: number) => string {
  const before = Object.entries(pids).map(([name, pid]) => [name, pid, cpuSecondsOf(pid)] as const);
  return (requests) =>
    before
      .map(([name, pid, t0]) => {
        const t1 = cpuSecondsOf(pid);
        return `${name} ${t0 === null || t1 === null || requests === 0 ? "?" : (((t1 - t0) * 1e6) / requests).toFixed(0)}`;
      })
      .join(", ");
}
