// The scale-out promise under fire: three nats-server processes clustered on loopback with JetStream,
// three `nex node up --server` processes, examples/todo/create.js with two replicas writing to its KV
// bucket under a steady request load. Then kill -9 of the server leading the todo bucket's stream and of
// a node running a replica. What a user relies on, asserted:
//   - every acknowledged todo is readable afterwards (no acknowledged KV write lost);
//   - no request fails from 15 s after the kills to the end of the run;
//   - both replicas run again within 30 s (the killed node's moved by failover, default grace 10 s);
//   - the killed node, restarted on its data dir, runs nothing twice.
// The figures (requests, failures in the first 15 s, time to re-place) are printed; none is a pass/fail
// timing beyond the promises above.

import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NatsConnection } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import { type NatsCluster, startNatsCluster } from "../bench/nats-cluster.js";
import { type NodeProcess, removeDir, ROOT, runNex, startNodeUp, tempDir } from "./helpers/nex-cli.js";
import { waitFor } from "./helpers/wait.js";

const TODO = path.join(ROOT, "examples/todo/create.js");
const RUN_MS = 50_000;
const KILL_AT_MS = 5_000;
const SETTLE_MS = 15_000;
const RATE_PER_S = 40;
const REQUEST_TIMEOUT_MS = 2000;

interface Sent {
  id: string;
  at: number;
  ok: boolean;
  error?: string;
}

interface Listed {
  id: string;
  name: string;
  node_id: string;
  state: string;
}

describe("a 3-server cluster and 3 nodes lose a server and a node under load", () => {
  let cluster: NatsCluster;
  let nc: NatsConnection;
  const home = tempDir("nex-chaos-home-");
  const dataDirs = [1, 2, 3].map((i) => tempDir(`nex-chaos-node${i}-`));
  const nodes: NodeProcess[] = [];

  const nex = (...args: string[]) => runNex([...args, "-s", cluster.urls], { NEX_HOME: home });
  // 90 s: a node starting while the cluster still settles retries each JetStream step (and says which, at warn).
  const startNode = (i: number): Promise<NodeProcess> =>
    startNodeUp(["--server", cluster.urls, "--data-dir", dataDirs[i], "--name", `chaos${i + 1}`, "--workload-types", "javascript"], { NEX_HOME: home }, 90_000);
  /** What the nodes logged at warn and above, and about moves: shown when a wait fails. */
  const nodeLogs = (): string =>
    nodes
      .map((n, i) => `node ${i + 1}:\n${n.output().split("\n").filter((l) => /"level":[456]0|moved|adopted|registry|lost/.test(l)).slice(-15).join("\n")}`)
      .join("\n");
  const listed = async (): Promise<Listed[]> => {
    const r = await nex("workload", "ls", "--json");
    return r.code === 0 ? (JSON.parse(r.stdout) as Listed[]) : [];
  };

  beforeAll(async () => {
    cluster = await startNatsCluster({ size: 3 });
    await cluster.waitForJetStream();
    nc = await cluster.connect({ name: "chaos-load" });
    // A bucket left with one replica (by an older nex, say): the first node scales it up.
    await new Kvm(nc).create("NEX_TRIGGERS", { history: 1, replicas: 1 });
    for (let i = 0; i < 3; i++) nodes.push(await startNode(i));
  }, 120_000);

  afterAll(async () => {
    await nc?.close();
    for (const n of nodes) await n.stop();
    await cluster?.stop();
    for (const d of [home, ...dataDirs]) removeDir(d);
  }, 60_000);

  it("keeps every acknowledged write and serves again within 15 s; both replicas run again; nothing runs twice", async () => {
    const deployed = await nex("run", TODO, "--trigger-subject", "todo.create", "--replicas", "2");
    expect(deployed.code, deployed.stderr).toBe(0);
    const replicaIds = deployed.stdout.trim().split(/\s+/);
    expect(replicaIds).toHaveLength(2);
    await waitFor("both replicas listed", async () => (await listed()).filter((w) => w.name === "create").length === 2, 20_000);
    // nex's own buckets and the todo bucket are replicated on all three servers.
    // The first call makes the todo bucket (host services create it on first use).
    expect((await nc.request("todo.create", JSON.stringify({ id: "first", title: "first" }), { timeout: 10_000 })).string()).toMatch(/success/);
    const kvm = new Kvm(nc);
    const todos = await kvm.open("hs_default_create");
    for (const bucket of ["NEX_WORKLOADS", "NEX_TRIGGERS", "hs_default_create"]) expect((await (await kvm.open(bucket)).status()).replicas, bucket).toBe(3);
    expect(nodes.map((p) => p.output()).join("\n")).toMatch(/scaled KV_NEX_TRIGGERS from 1 to 3 replicas/);

    // A steady load: one request every 1/RATE s, each with its own todo id, for RUN_MS.
    const sent: Sent[] = [];
    const started = Date.now();
    let n = 0;
    const pending: Promise<void>[] = [];
    const load = setInterval(() => {
      const id = `t${n++}`;
      const at = Date.now() - started;
      pending.push(
        nc
          .request("todo.create", JSON.stringify({ id, title: `todo ${id}` }), { timeout: REQUEST_TIMEOUT_MS })
          .then((m) => {
            const reply = m.string();
            sent.push({ id, at, ok: /"status":"success"/.test(reply), ...(/"status":"success"/.test(reply) ? {} : { error: reply.slice(0, 200) }) });
          })
          .catch((err: Error) => void sent.push({ id, at, ok: false, error: err.message })),
      );
    }, 1000 / RATE_PER_S);

    await new Promise((r) => setTimeout(r, KILL_AT_MS));
    // The server leading the todo bucket, and a node running one of the replicas.
    const leader = await cluster.streamLeader("KV_hs_default_create");
    expect(leader).toBeDefined();
    const before = await listed();
    const victimNodeId = before.find((w) => w.id === replicaIds[0])?.node_id as string;
    const victim = nodes.findIndex((p) => p.nodeId === victimNodeId);
    expect(victim).toBeGreaterThanOrEqual(0);
    const killedAt = Date.now() - started;
    await Promise.all([cluster.server(leader as string).kill9(), new Promise<void>((resolve) => {
      nodes[victim].child.kill("SIGKILL");
      void nodes[victim].exited.then(() => resolve());
    })]);

    // Both replicas running again, on the nodes left.
    let replacedAfterMs = -1;
    const survivors = new Set(nodes.filter((_, i) => i !== victim).map((p) => p.nodeId));
    await waitFor(
      "both replicas running on surviving nodes",
      async () => {
        const running = (await listed()).filter((w) => replicaIds.includes(w.id) && w.state === "running" && survivors.has(w.node_id));
        if (new Set(running.map((w) => w.id)).size < 2) return false;
        replacedAfterMs = Date.now() - started - killedAt;
        return true;
      },
      30_000,
      500,
    ).catch((err: Error) => {
      throw new Error(`${err.message}; the nodes said:\n${nodeLogs()}`);
    });
    const placement = (await listed()).filter((w) => replicaIds.includes(w.id));

    // The rest of the run.
    const left = RUN_MS - (Date.now() - started);
    if (left > 0) await new Promise((r) => setTimeout(r, left));
    clearInterval(load);
    await Promise.all(pending);

    // A request sent within its timeout before the kills is still in flight when they happen.
    const hit = killedAt - REQUEST_TIMEOUT_MS;
    const settled = killedAt + SETTLE_MS;
    const early = sent.filter((s) => !s.ok && s.at >= hit && s.at < settled);
    const late = sent.filter((s) => !s.ok && s.at >= settled);
    const beforeKill = sent.filter((s) => !s.ok && s.at < hit);
    console.log(
      `[chaos] ${sent.length} requests over ${RUN_MS / 1000} s at ${RATE_PER_S}/s; killed server ${leader} (stream leader) and node ${victimNodeId.slice(0, 8)} at ${killedAt} ms\n` +
        `[chaos] failures: ${beforeKill.length} before the kills, ${early.length} around them and in the first 15 s after, ${late.length} after that\n` +
        `[chaos] both replicas running again ${replacedAfterMs} ms after the kills, on ${placement.map((w) => w.node_id.slice(0, 8)).join(", ")}\n` +
        `[chaos] failure kinds: ${JSON.stringify(countBy(early.map((s) => s.error ?? "")))}`,
    );
    expect(late, `failures after ${SETTLE_MS} ms: ${JSON.stringify(late.slice(0, 5))}; the nodes said:\n${nodeLogs()}`).toEqual([]);
    expect(beforeKill).toEqual([]);

    // Every acknowledged todo reads back.
    const acknowledged = sent.filter((s) => s.ok);
    expect(acknowledged.length).toBeGreaterThan(RUN_MS / 1000 * RATE_PER_S * 0.5);
    const missing: string[] = [];
    for (const s of acknowledged) {
      const e = await todos.get(s.id);
      if (!e || e.operation !== "PUT" || e.json<{ id: string }>().id !== s.id) missing.push(s.id);
    }
    expect(missing, `acknowledged but unreadable: ${missing.slice(0, 10).join(", ")}`).toEqual([]);

    // The killed node comes back on its data dir: the moved replica stays where it went.
    nodes[victim] = await startNode(victim);
    expect(nodes[victim].nodeId).toBe(victimNodeId);
    await new Promise((r) => setTimeout(r, 3000));
    const after = (await listed()).filter((w) => w.name === "create");
    const ids = after.map((w) => w.id).sort();
    expect(ids).toEqual([...replicaIds].sort());
    console.log(`[chaos] after the node's restart: ${after.map((w) => `${w.id.slice(0, 6)}@${w.node_id.slice(0, 8)}`).join(", ")}`);
  }, 200_000);
});

function countBy(items: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const i of items) out[i] = (out[i] ?? 0) + 1;
  return out;
}
