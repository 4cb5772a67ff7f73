// The start-up rows: from spawn to the first PONG on the client port, as a test harness that starts a
// server and connects at once sees it. `nex broker` beside `nats-server -js` (both with JetStream, in a
// fresh store dir), and `nex node up` (its bundled broker accepting clients; the node itself finishes
// starting after that) beside the same nats-server; and, for scale, a bare Node.js listener. Runs alternate so drift on a busy machine hits both.
// Targets: nex broker < 150 ms, nex node up < 400 ms.

import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { percentileOf } from "./nexload.js";
import { freePort, removeDataDir, REPO_ROOT } from "./servers.js";
import { formatNumber, formatRatio, renderTable } from "./table.js";

export const STARTUP_ROW_IDS = [26, 27] as const;
const RUNS = 10;
const GIVE_UP_MS = 20_000;
const TARGETS_MS = { broker: 150, node: 400 };

type Contender = "nats" | "broker" | "node" | "floor";

/**
 * The least any Node.js server takes: a process that listens and answers PING with PONG, nothing
 * loaded. What nex adds to it is the module graph and its own start.
 */
const FLOOR_SERVER = `require("node:net").createServer((s) => { s.on("error", () => {}); s.write("INFO {}\\r\\n"); s.on("data", (d) => { if (String(d).includes("PING")) s.write("PONG\\r\\n"); }); }).listen(Number(process.argv[1]), "127.0.0.1");`;

/** Connects, sends CONNECT and PING, resolves on PONG; rejects when the port is not open (yet). */
function pingOnce(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1");
    let seen = "";
    socket.once("connect", () => socket.write('CONNECT {"verbose":false,"pedantic":false}\r\nPING\r\n'));
    socket.on("data", (d: Buffer) => {
      seen += d.toString("latin1");
      if (seen.includes("PONG\r\n")) {
        socket.destroy();
        resolve();
      }
    });
    socket.once("error", (err) => {
      socket.destroy();
      reject(err);
    });
  });
}

/** Spawns one contender and times spawn → PONG (ms); the process and its store are removed after. */
async function timeStart(who: Contender, natsBin: string): Promise<number> {
  const port = await freePort();
  const dir = mkdtempSync(path.join(os.tmpdir(), "nex-bench-startup-"));
  const nex = (args: string[]): ChildProcess => spawn(process.execPath, [path.join(REPO_ROOT, "bin", "nex.js"), ...args], { cwd: REPO_ROOT, env: { ...process.env, NEX_HOME: dir }, stdio: "ignore" });
  const started = performance.now();
  const child =
    who === "nats"
      ? spawn(natsBin, ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", dir], { stdio: "ignore" })
      : who === "floor"
        ? spawn(process.execPath, ["-e", FLOOR_SERVER, String(port)], { stdio: "ignore" })
        : who === "broker"
        ? nex(["broker", "--port", String(port), "--data-dir", dir])
        : nex(["node", "up", "--port", String(port), "--data-dir", dir, "--no-auth", "--allow-any-issuer"]);
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  try {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`${who} exited with ${child.exitCode} before it answered`);
      try {
        await pingOnce(port);
        return performance.now() - started;
      } catch {
        if (performance.now() - started > GIVE_UP_MS) throw new Error(`${who} did not answer PING within ${GIVE_UP_MS} ms`);
        await new Promise((r) => setTimeout(r, 1));
      }
    }
  } finally {
    child.kill("SIGKILL");
    await exited;
    removeDataDir(dir);
  }
}

/** Runs the rows and returns their lines for the report. */
export async function runStartupRows(natsBin: string, only: (id: number) => boolean, log: (msg: string) => void): Promise<string[]> {
  const rows: string[][] = [];
  const notes: string[] = [];
  for (const [id, who] of [
    [STARTUP_ROW_IDS[0], "broker"],
    [STARTUP_ROW_IDS[1], "node"],
  ] as const) {
    if (!only(id)) continue;
    const title = who === "broker" ? "start-up: spawn → first PONG; `nex broker` vs `nats-server -js`" : "start-up: spawn → first PONG from the bundled broker; `nex node up` vs `nats-server -js`";
    log(`[row ${id}] ${title}`);
    const ours: number[] = [];
    const peer: number[] = [];
    const floor: number[] = [];
    try {
      // One untimed start of each warms the page cache.
      await timeStart(who, natsBin);
      await timeStart("nats", natsBin);
      for (let i = 0; i < RUNS; i++) {
        if (i % 2 === 0) {
          ours.push(await timeStart(who, natsBin));
          peer.push(await timeStart("nats", natsBin));
        } else {
          peer.push(await timeStart("nats", natsBin));
          ours.push(await timeStart(who, natsBin));
        }
        floor.push(await timeStart("floor", natsBin));
      }
    } catch (err) {
      notes.push(`Row ${id} not run: ${(err as Error).message}`);
      continue;
    }
    const o = percentileOf(ours, 0.5);
    const p = percentileOf(peer, 0.5);
    const target = TARGETS_MS[who];
    const f = percentileOf(floor, 0.5);
    rows.push([String(id), `${title}, p50 of ${RUNS}`, formatNumber(o), formatNumber(p), formatNumber(f), `${formatRatio(o, p)} (lower is better; ${o < target ? "meets" : "above"} target < ${target} ms)`]);
    notes.push(`row ${id}: nex ${ours.map((v) => v.toFixed(0)).join(", ")} ms; nats-server ${peer.map((v) => v.toFixed(0)).join(", ")} ms; bare Node.js server ${floor.map((v) => v.toFixed(0)).join(", ")} ms.`);
  }
  if (rows.length === 0) return notes;
  return [
    renderTable(["#", "Benchmark", "nex (ms)", "nats-server (ms)", "bare Node.js server (ms)", "ratio (nex / nats-server)"], ["---:", ":---", "---:", "---:", "---:", "---:"], rows),
    ...notes,
    "The bare Node.js server is `node -e` with a listener that answers PING: what any Node.js process takes to start on this machine, nothing of nex loaded.",
  ];
}
