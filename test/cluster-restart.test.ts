// Issue #18: nex on a 3-server JetStream cluster keeps serving while servers restart. Real processes: three
// nats-server (bench/nats-cluster.ts), two `nex node up --server <all three>`, the todo example's
// create function, and a steady load of todo.create requests from a client connected to all three.
// Asserted: every acknowledged todo is readable afterwards; failures fall only inside windows around the
// restarts; once the cluster is whole again a final window of requests all succeed. And without a quorum
// (2 of 3 stopped) a JavaScript and a wasm function whose host call cannot get through answer 503 with
// the cause, then work again. Timings are printed, never asserted.

import { randomBytes } from "node:crypto";
import path from "node:path";
import { Kvm, type KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type NodeProcess, removeDir, ROOT, runNex, startNodeUp, tempDir } from "./helpers/nex-cli.js";
import { type NatsCluster, startNatsCluster } from "../bench/nats-cluster.js";
import { unavailableReason } from "./helpers/servers.js";
import { buildWasmExamples } from "./helpers/wasm-fixtures.js";
import { eventually, waitFor } from "./helpers/wait.js";

const BUCKET = "hs_default_create"; // kvBucketName("default", workload name "create")
const STREAM = `KV_${BUCKET}`;
const RATE_PER_S = 50;
const REQUEST_TIMEOUT_MS = 2000;
/**
 * A failure counts inside a restart's window when its request was sent from REQUEST_TIMEOUT_MS before the
 * server was stopped (in flight then) to this long after it was back (routes, JetStream current).
 */
const SETTLE_MS = 5000;
/** The final window after the last restart, in which every request must succeed. */
const FINAL_WINDOW_MS = 5000;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const dec = new TextDecoder();

interface Failure {
  /** When the request was sent and when it failed, ms since the load started. */
  sentAt: number;
  at: number;
  id: string;
  error: string;
}

/** todo.create requests at a fixed rate, each with a unique id; what was acknowledged and what failed. */
class Load {
  readonly acked: string[] = [];
  readonly ackedAt: number[] = [];
  readonly failures: Failure[] = [];
  sent = 0;
  private timer?: NodeJS.Timeout;
  private readonly inFlight = new Set<Promise<void>>();
  private readonly t0 = Date.now();

  constructor(
    private readonly nc: NatsConnection,
    private readonly prefix: string,
  ) {}

  /** Milliseconds since the load started. */
  now(): number {
    return Date.now() - this.t0;
  }

  start(): void {
    this.timer = setInterval(() => this.one(), 1000 / RATE_PER_S);
  }

  private one(): void {
    const id = `${this.prefix}-${++this.sent}`;
    const sentAt = this.now();
    const p = this.nc
      .request("todo.create", JSON.stringify({ id, title: `todo ${id}` }), { timeout: REQUEST_TIMEOUT_MS })
      .then((m) => {
        const code = m.headers?.get("Nats-Service-Error-Code");
        if (code) throw new Error(`${code} ${m.headers?.get("Nex-Error") ?? dec.decode(m.data)}`);
        const r = JSON.parse(dec.decode(m.data)) as { id?: string; status?: string };
        if (r.status !== "success" || r.id !== id) throw new Error(`unexpected reply ${dec.decode(m.data)}`);
        this.acked.push(id);
        this.ackedAt.push(this.now());
      })
      .catch((e: unknown) => {
        const err = e as Error;
        this.failures.push({ sentAt, at: this.now(), id, error: `${err.name}: ${err.message}` });
      })
      .finally(() => this.inFlight.delete(p));
    this.inFlight.add(p);
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await Promise.all([...this.inFlight]);
  }

  /** The longest time without an acknowledged request. */
  maxGapMs(): number {
    const at = [...this.ackedAt].sort((a, b) => a - b);
    let gap = 0;
    for (let i = 1; i < at.length; i++) gap = Math.max(gap, at[i] - at[i - 1]);
    return gap;
  }

  report(title: string, windows: { label: string; from: number; to: number }[]): void {
    const errors = new Map<string, number>();
    for (const f of this.failures) {
      const k = f.error.replace(new RegExp(`${this.prefix}-\\d+`, "g"), "<id>");
      errors.set(k, (errors.get(k) ?? 0) + 1);
    }
    console.log(
      [
        `${title}: ${this.sent} requests at ${RATE_PER_S}/s, ${this.acked.length} acknowledged, ${this.failures.length} failed, max gap between acks ${this.maxGapMs()} ms`,
        ...windows.map((w) => {
          const failed = this.failures.filter((f) => f.sentAt >= w.from - REQUEST_TIMEOUT_MS && f.sentAt <= w.to).length;
          return `  window ${w.label}: ${w.from}-${w.to} ms, ${failed} failed (sent from ${REQUEST_TIMEOUT_MS} ms before it)`;
        }),
        `  failures at (ms, when they failed): ${summarize(this.failures.map((f) => f.at))}`,
        ...[...errors].map(([e, n]) => `  ${n}x ${e}`),
      ].join("\n"),
    );
  }
}

/** "1200-1850 (14), 5300 (1)": runs of failure times less than 500 ms apart. */
function summarize(times: number[]): string {
  const t = [...times].sort((a, b) => a - b);
  const runs: string[] = [];
  for (let i = 0; i < t.length; ) {
    let j = i;
    while (j + 1 < t.length && t[j + 1] - t[j] < 500) j++;
    runs.push(i === j ? `${t[i]} (1)` : `${t[i]}-${t[j]} (${j - i + 1})`);
    i = j + 1;
  }
  return runs.join(", ") || "none";
}

describe.skipIf(unavailableReason("nats-server") !== undefined)("nex on a 3-server JetStream cluster, servers restarting", () => {
  const nodeUser = { user: "nex-node", password: randomBytes(12).toString("hex") };
  const cliUser = { user: "nex", password: randomBytes(12).toString("hex") };
  const home = tempDir("nex-cluster-home-");
  const dataDirs: string[] = [];
  const nodes: NodeProcess[] = [];
  const env = { NEX_HOME: home, NATS_USER: cliUser.user, NATS_PASSWORD: cliUser.password };
  let cluster: NatsCluster;
  let nc: NatsConnection;
  let kv: KV;

  async function startNode(): Promise<void> {
    const dataDir = tempDir("nex-cluster-data-");
    dataDirs.push(dataDir);
    nodes.push(await startNodeUp(["--server", cluster.urls, "--user", nodeUser.user, "--password", nodeUser.password, "--data-dir", dataDir], env));
  }

  /** What the nodes logged as warnings or errors since `from` (offsets into their output), counted. */
  function printNodeComplaints(title: string, from: number[]): void {
    nodes.forEach((n, i) => {
      const lines = n.output().slice(from[i] ?? 0).split("\n").filter((l) => /"level":(40|50|60)|warn|error|fail/i.test(l));
      const counted = new Map<string, number>();
      for (const l of lines) {
        const k = l.replace(/"time":\d+,?/, "").replace(/[a-z]-\d+/g, "<id>").slice(0, 400);
        counted.set(k, (counted.get(k) ?? 0) + 1);
      }
      console.log(`${title}, node ${i + 1} (${n.nodeId.slice(0, 8)}): ${lines.length} warning/error lines${[...counted].map(([l, c]) => `\n  ${c}x ${l}`).join("")}`);
    });
  }
  const outputMarks = (): number[] => nodes.map((n) => n.output().length);

  /** Where each stream lives (nex's own buckets are R1 until --js-replicas lands: a restart takes them away for a while). */
  async function printStreams(): Promise<void> {
    const m = await nc.request("$JS.API.STREAM.LIST", JSON.stringify({ offset: 0 }), { timeout: 2000 });
    const list = (JSON.parse(dec.decode(m.data)) as { streams?: { config: { name: string; num_replicas: number }; cluster?: { leader?: string } }[] }).streams ?? [];
    const rows = list.map((si) => `${si.config.name} R${si.config.num_replicas} on ${si.cluster?.leader ?? "(no leader)"}`).sort();
    console.log(`streams: ${rows.join(", ")}`);
  }

  /** Subscriptions matching `subject` on the running servers (their monitoring port's /subsz). */
  async function monitorSubscribed(subject: string): Promise<number> {
    let n = 0;
    for (const s of cluster.servers.filter((x) => x.running)) {
      const r = await fetch(`${s.monitorUrl}/subsz?subs=1&test=${encodeURIComponent(subject)}`);
      n += ((await r.json()) as { total?: number }).total ?? 0;
    }
    return n;
  }

  /** Every acknowledged todo is in the bucket with its own id. */
  async function expectAllReadable(load: Load): Promise<void> {
    const missing: string[] = [];
    for (const id of load.acked) {
      const entry = await kv.get(id);
      if (entry === null || entry.operation !== "PUT" || (JSON.parse(entry.string()) as { id: string }).id !== id) missing.push(id);
    }
    console.log(`read back ${load.acked.length - missing.length} of ${load.acked.length} acknowledged todos`);
    expect(missing).toEqual([]);
  }

  /** A server out and back: stopped gracefully, started again, in the cluster and current again. */
  async function restart(name: string): Promise<void> {
    const server = cluster.server(name);
    await server.stop();
    await sleep(3000);
    await server.start();
    await cluster.waitForRoutes();
    await cluster.waitForJetStream();
    await cluster.waitForStreamCurrent(STREAM);
  }

  beforeAll(async () => {
    cluster = await startNatsCluster({ size: 3, auth: { users: [cliUser, nodeUser] } });
    await cluster.waitForJetStream();
    nc = await cluster.connect({ name: "cluster-restart test" });
    // The function's bucket, replicated on all three servers before nex opens it (nex creates its host
    // service buckets with one replica until --js-replicas lands).
    kv = await new Kvm(nc).create(BUCKET, { replicas: 3, max_bytes: 64 * 1024 * 1024, maxValueSize: 1024 * 1024 });
    await cluster.waitForStreamCurrent(STREAM);
    await startNode();
    await startNode();
    const run = await runNex(["run", path.join(ROOT, "examples/todo/create.js"), "--trigger-subject", "todo.create", "-s", cluster.urls], env);
    expect(run.code, run.stderr).toBe(0);
    await eventually("todo.create to answer", async () => {
      const m = await nc.request("todo.create", JSON.stringify({ id: "warm-up", title: "first" }), { timeout: 2000 });
      if (m.headers?.get("Nats-Service-Error-Code")) throw new Error(m.headers.get("Nex-Error"));
    });
    await printStreams();
  }, 90_000);

  afterAll(async () => {
    for (const n of nodes) await n.stop();
    await nc?.close().catch(() => {});
    await cluster?.stop();
    for (const d of dataDirs) removeDir(d);
    removeDir(home);
  });

  it("keeps every acknowledged todo when the bucket's stream leader is restarted without a kill", async () => {
    const marks = outputMarks();
    const load = new Load(nc, "a");
    load.start();
    await sleep(2000);
    const leader = await cluster.streamLeader(STREAM);
    expect(leader).toBeDefined();
    const from = load.now();
    await restart(leader!);
    const to = load.now() + SETTLE_MS;
    await sleep(SETTLE_MS);
    const finalFrom = load.now();
    await sleep(FINAL_WINDOW_MS);
    await load.stop();
    load.report(`restart of ${leader} (the stream leader)`, [
      { label: `${leader} stopped .. back and current + ${SETTLE_MS} ms`, from, to },
      { label: "final", from: finalFrom, to: load.now() },
    ]);
    printNodeComplaints("restart of the stream leader", marks);
    expect(load.failures.filter((f) => f.sentAt < from - REQUEST_TIMEOUT_MS || f.sentAt > to)).toEqual([]);
    expect(load.acked.length).toBeGreaterThan(0);
    await expectAllReadable(load);
  }, 90_000);

  it("answers 503 naming the cause while JetStream has no quorum (JavaScript and wasm), and recovers", async () => {
    // The counter example's bucket, replicated like the todo one (an R1 bucket on the surviving server
    // would keep working without a quorum).
    const wasm = path.join(buildWasmExamples(), "counter-component.wasm");
    await new Kvm(nc).create("hs_default_counter-component", { replicas: 3, max_bytes: 64 * 1024 * 1024, maxValueSize: 1024 * 1024 });
    await cluster.waitForStreamCurrent("KV_hs_default_counter-component");
    const run = await runNex(["run", wasm, "--trigger-subject", "visits.>", "-s", cluster.urls], env);
    expect(run.code, run.stderr).toBe(0);
    await eventually("visits.home to answer", async () => {
      const m = await nc.request("visits.home", "", { timeout: 2000 });
      if (m.headers?.get("Nats-Service-Error-Code")) throw new Error(m.headers.get("Nex-Error"));
    });

    const [, b, c] = cluster.servers;
    await b.stop();
    await c.stop();
    try {
      // Longer than the 5 s a host call may retry (the triggers' own deadline is 10 s).
      const ask = async (subject: string, payload: string) => {
        // The runtime host serving it may have been on a stopped server: wait until it is subscribed again.
        await waitFor(`a responder on ${subject}`, async () => (await monitorSubscribed(subject)) > 0, 10_000, 100);
        const t = Date.now();
        const m = await nc.request(subject, payload, { timeout: 9000 });
        const code = m.headers?.get("Nats-Service-Error-Code") ?? "ok";
        const error = m.headers?.get("Nex-Error") ?? dec.decode(m.data);
        console.log(`no quorum: ${subject} answered ${code} in ${Date.now() - t} ms: ${error}`);
        return { code, error };
      };
      const js = await ask("todo.create", JSON.stringify({ id: "no-quorum", title: "x" }));
      expect(js.code).toBe("503");
      expect(js.error).toMatch(/^JetStream temporarily unavailable: .*KV_hs_default_create.* \(retried for \d+ ms\)$/);
      const w = await ask("visits.home", "");
      expect(w.code).toBe("503");
      expect(w.error).toMatch(/unavailable: JetStream temporarily unavailable: .*KV_hs_default_counter-component/);
    } finally {
      await b.start();
      await c.start();
      await cluster.waitForRoutes();
      await cluster.waitForJetStream();
    }
    await cluster.waitForStreamCurrent(STREAM);
    const t = Date.now();
    await eventually("todo.create to succeed again", async () => {
      const m = await nc.request("todo.create", JSON.stringify({ id: "after-no-quorum", title: "y" }), { timeout: 2000 });
      if (m.headers?.get("Nats-Service-Error-Code")) throw new Error(m.headers.get("Nex-Error"));
    });
    console.log(`todo.create succeeded again ${Date.now() - t} ms after the cluster was whole and the stream current`);
    expect(await kv.get("after-no-quorum")).not.toBeNull();
  }, 120_000);

  it("keeps every acknowledged todo through a rolling restart of all three servers under load", async () => {
    const marks = outputMarks();
    const load = new Load(nc, "b");
    load.start();
    await sleep(2000);
    const windows: { label: string; from: number; to: number }[] = [];
    for (const s of cluster.servers) {
      const from = load.now();
      await restart(s.name);
      windows.push({ label: `${s.name} stopped .. back and current + ${SETTLE_MS} ms`, from, to: load.now() + SETTLE_MS });
      // Past the window, and a second without a restart: the windows do not run into each other.
      await sleep(SETTLE_MS + 1000);
    }
    const finalFrom = load.now();
    await sleep(FINAL_WINDOW_MS);
    await load.stop();
    windows.push({ label: "final", from: finalFrom, to: load.now() });
    load.report("rolling restart n1, n2, n3", windows);
    printNodeComplaints("rolling restart", marks);
    const outside = load.failures.filter((f) => !windows.slice(0, -1).some((w) => f.sentAt >= w.from - REQUEST_TIMEOUT_MS && f.sentAt <= w.to));
    expect(outside).toEqual([]);
    expect(load.failures.filter((f) => f.sentAt >= finalFrom)).toEqual([]);
    await expectAllReadable(load);
  }, 120_000);
});
