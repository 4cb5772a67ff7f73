// The failover row: the chaos setup of test/cluster-chaos.test.ts as a figure. Three nats-server
// processes clustered on loopback with JetStream, three `nex node up --server` nodes,
// examples/todo/create.js with two replicas writing to its KV bucket under a steady request load; then
// kill -9 of a node running a replica and, once both replicas run again, of the server leading the todo
// bucket's stream. Reported for each kill: failed requests and the longest time without an answer; for
// the node, the time until both replicas run again. There is no peer to compare with; the goal is under 5 s without answers.

import { spawn } from "node:child_process";
import path from "node:path";
import type { NatsConnection } from "@nats-io/transport-node";
import { type NatsCluster, startNatsCluster } from "./nats-cluster.js";
import { type RunningNode, startNode } from "./node.js";
import { REPO_ROOT } from "./servers.js";
import { formatNumber, renderTable } from "./table.js";

export const FAILOVER_ROW_ID = 25;
const TODO = path.join(REPO_ROOT, "examples/todo/create.js");
const KILL_AT_MS = 6_000;
/** How long the load runs after the leader's kill (a third of it also before that kill). */
const AFTER_MS = 15_000;
const REPLACE_LIMIT_MS = 30_000;
const RATE_PER_S = 40;
const REQUEST_TIMEOUT_MS = 2000;
const GOAL_S = 5;

interface Answer {
  /** When the request was sent and when it ended, ms from the start of the load. */
  sent: number;
  ended: number;
  ok: boolean;
}

interface Listed {
  id: string;
  node_id: string;
  state: string;
}

/** `nex <args> -s <cluster>` as a user types it; stdout, or an error with stderr. */
function nex(env: NodeJS.ProcessEnv, servers: string, args: string[], timeoutMs = 30_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(REPO_ROOT, "bin", "nex.js"), ...args, "-s", servers], { cwd: REPO_ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString("utf8")));
    child.stderr.on("data", (d: Buffer) => (err += d.toString("utf8")));
    const t = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("close", (code) => {
      clearTimeout(t);
      if (code === 0) resolve(out);
      else reject(new Error(`nex ${args.join(" ")} exited with ${code}: ${err.trim().slice(-400)}`));
    });
  });
}

/** The longest stretch between `from` and `to` in which no request got its answer (ms). */
function longestSilence(answers: Answer[], from: number, to: number): number {
  const oks = answers.filter((a) => a.ok && a.ended > from && a.ended < to).map((a) => a.ended).sort((a, b) => a - b);
  let longest = 0;
  let last = from;
  for (const t of [...oks, to]) {
    longest = Math.max(longest, t - last);
    last = t;
  }
  return longest;
}

/** Runs the row and returns its lines for the report (a table, or why it did not run). */
export async function runFailoverRow(natsBin: string, log: (msg: string) => void): Promise<string[]> {
  const title = "failover, 3 nats-server + 3 nodes, todo create with 2 replicas at 40 requests/s";
  log(`[row ${FAILOVER_ROW_ID}] ${title}`);
  let cluster: NatsCluster | undefined;
  let nc: NatsConnection | undefined;
  const nodes: RunningNode[] = [];
  try {
    cluster = await startNatsCluster({ size: 3, bin: natsBin });
    await cluster.waitForJetStream();
    for (let i = 0; i < 3; i++) nodes.push(await startNode(["--name", `failover${i + 1}`, "--workload-types", "javascript"], cluster.urls));
    const env = nodes[0]!.env;
    const replicaIds = (await nex(env, cluster.urls, ["run", TODO, "--trigger-subject", "todo.create", "--replicas", "2"])).trim().split(/\s+/);
    const listed = async (): Promise<Listed[]> => JSON.parse(await nex(env, cluster!.urls, ["workload", "ls", "--json"])) as Listed[];
    nc = await cluster.connect({ name: "nex-bench-failover" });
    // The first call creates the todo bucket; the load starts once it answers.
    for (let i = 0; ; i++) {
      try {
        await nc.request("todo.create", JSON.stringify({ id: "first", title: "first" }), { timeout: 10_000 });
        break;
      } catch (err) {
        if (i >= 20) throw err;
        await new Promise((r) => setTimeout(r, 250));
      }
    }

    const answers: Answer[] = [];
    const started = Date.now();
    const clock = () => Date.now() - started;
    let n = 0;
    const pending: Promise<void>[] = [];
    const conn = nc;
    const load = setInterval(() => {
      const id = `t${n++}`;
      const sent = clock();
      pending.push(
        conn
          .request("todo.create", JSON.stringify({ id, title: id }), { timeout: REQUEST_TIMEOUT_MS })
          .then((m) => void answers.push({ sent, ended: clock(), ok: /"status":"success"/.test(m.string()) }))
          .catch(() => void answers.push({ sent, ended: clock(), ok: false })),
      );
    }, 1000 / RATE_PER_S);
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

    // First a node running a replica, then (once both replicas run again) the stream's leader: each
    // kill's cost on its own.
    await sleep(KILL_AT_MS);
    const victimId = (await listed()).find((w) => w.id === replicaIds[0])?.node_id;
    const victim = nodes.find((p) => p.nodeId === victimId);
    if (!victim) throw new Error(`no node runs replica ${replicaIds[0]}`);
    const nodeKilledAt = clock();
    process.kill(victim.pid, "SIGKILL");
    let replacedMs: number | null = null;
    const survivors = new Set(nodes.filter((p) => p !== victim).map((p) => p.nodeId));
    while (replacedMs === null && clock() < nodeKilledAt + REPLACE_LIMIT_MS) {
      const running = (await listed().catch(() => [])).filter((w) => replicaIds.includes(w.id) && w.state === "running" && survivors.has(w.node_id));
      if (new Set(running.map((w) => w.id)).size === replicaIds.length) replacedMs = clock() - nodeKilledAt;
      else await sleep(250);
    }
    await sleep(AFTER_MS / 3);
    const leader = await cluster.streamLeader("KV_hs_default_create");
    if (!leader) throw new Error("the todo bucket's stream has no leader");
    const serverKilledAt = clock();
    await cluster.server(leader).kill9();
    await sleep(AFTER_MS);
    clearInterval(load);
    await Promise.all(pending);
    const end = clock();

    const failedIn = (from: number, to: number) => answers.filter((a) => !a.ok && a.sent >= from - REQUEST_TIMEOUT_MS && a.sent < to).length;
    const nodePhase = { failed: failedIn(nodeKilledAt, serverKilledAt), silentMs: longestSilence(answers, nodeKilledAt, serverKilledAt) };
    const serverPhase = { failed: failedIn(serverKilledAt, end), silentMs: longestSilence(answers, serverKilledAt, end) };
    const late = answers.filter((a) => !a.ok && a.sent >= serverKilledAt + 15_000).length;
    log(
      `[row ${FAILOVER_ROW_ID}] ${answers.length} requests; node kill: ${nodePhase.failed} failed, ${nodePhase.silentMs} ms without an answer, replicas again after ${replacedMs ?? "-"} ms; ` +
        `leader kill: ${serverPhase.failed} failed, ${serverPhase.silentMs} ms without an answer; ${late} failed 15 s or more after it`,
    );
    const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} (${ms / 1000 < GOAL_S ? "meets" : "above"} goal < ${GOAL_S} s)`;
    return [
      renderTable(
        ["#", "Benchmark", "requests", "failed", "longest without an answer (s)", "both replicas again after (s)"],
        ["---:", ":---", "---:", "---:", "---:", "---:"],
        [
          [`${FAILOVER_ROW_ID}a`, `${title}: kill -9 of a node running a replica`, "", formatNumber(nodePhase.failed), seconds(nodePhase.silentMs), replacedMs === null ? `not within ${REPLACE_LIMIT_MS / 1000} s` : (replacedMs / 1000).toFixed(1)],
          [`${FAILOVER_ROW_ID}b`, `${title}: then kill -9 of the todo bucket's stream leader`, "", formatNumber(serverPhase.failed), seconds(serverPhase.silentMs), ""],
          [String(FAILOVER_ROW_ID), `${title}: the whole run (${(end / 1000).toFixed(0)} s)`, formatNumber(answers.length), formatNumber(nodePhase.failed + serverPhase.failed), "", ""],
        ],
      ),
      `failover row: requests time out after ${REQUEST_TIMEOUT_MS / 1000} s; a replica moves once its node counts as lost (3.5 s) and the failover grace (10 s) ` +
        "has passed, while the other replica answers meanwhile; after a stream leader's loss, KV writes wait for the stream's Raft election, " +
        "which nats-server starts 4-9 s after the leader's last heartbeat (minElectionTimeout..maxElectionTimeout in its server/raft.go).",
    ];
  } catch (err) {
    return [`Row ${FAILOVER_ROW_ID} (failover) not run: ${(err as Error).message.split("\n")[0]}`];
  } finally {
    await nc?.close().catch(() => undefined);
    for (const node of nodes) await node.stop();
    await cluster?.stop();
  }
}
