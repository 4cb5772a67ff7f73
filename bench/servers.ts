// Start and stop the two servers under test: the bundled broker (its own
// process, via the nex CLI) and Debian's nats-server. With `jetstream: true`
// each gets a fresh temporary data directory (nats-server: -js -sd DIR;
// bundled: --data-dir DIR), removed once the server has stopped. With
// `websocket: true` each also opens a plain-ws listener on 127.0.0.1 (nats-server:
// a config file with `websocket { listen: "127.0.0.1:P", no_tls: true }`;
// bundled: --ws-port 0).

import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";
import { liveProcesses, nodeArgsFromEnv } from "./children.js";

export type ServerKind = "bundled" | "nats";

export const SERVER_LABEL: Record<ServerKind, string> = {
  bundled: "bundled",
  nats: "nats-server",
};

/** Repository root (this file runs from dist/bench/). */
export const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));

const START_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 5_000;
const OUTPUT_KEEP = 32 * 1024;

export interface StartOptions {
  /** Enable JetStream with a fresh temporary data directory. */
  jetstream?: boolean;
  /** Also listen for WebSocket clients (plain ws on 127.0.0.1, no compression). */
  websocket?: boolean;
}

/** Data directories of servers that may still be running (removed on exit). */
export const liveDataDirs = new Set<string>();

export function removeDataDir(dir: string): void {
  try {
    rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
  } catch {
    // best effort
  }
  liveDataDirs.delete(dir);
}

export interface RunningServer {
  kind: ServerKind;
  port: number;
  url: string;
  /** The websocket listener's port and ws:// url, or null when not started with `websocket`. */
  wsPort: number | null;
  wsUrl: string | null;
  /** JetStream data directory (removed by stop()), or null without JetStream. */
  dataDir: string | null;
  /** Last bytes of the server's stdout+stderr. */
  output(): string;
  /** How the process ended, or null while it is still running. */
  exitStatus(): string | null;
  /** CPU time (user + system, seconds) the server process has used so far; null if unknown. */
  cpuSeconds(): number | null;
  stop(): Promise<void>;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => (port ? resolve(port) : reject(new Error("no port"))));
    });
  });
}

export function natsServerVersion(bin: string): string | null {
  const r = spawnSync(bin, ["--version"], { encoding: "utf8", timeout: 5000 });
  if (r.error || r.status !== 0) return null;
  const m = /v?\d+\.\d+\.\d+\S*/.exec(r.stdout + r.stderr);
  return m ? (m[0].startsWith("v") ? m[0] : `v${m[0]}`) : (r.stdout || r.stderr).trim();
}

/** Why the bundled broker cannot be run, or null if its CLI looks present. */
export function bundledUnavailableReason(): string | null {
  const cli = path.join(REPO_ROOT, "bin", "nex.js");
  const main = path.join(REPO_ROOT, "dist", "src", "cli", "main.js");
  if (!existsSync(cli)) return "bin/nex.js is missing";
  if (!existsSync(main)) return "dist/src/cli/main.js is missing (the broker CLI is not built yet)";
  return null;
}

/** The last `keep` characters a child wrote to stdout and stderr, for error messages. */
export function capture(proc: ChildProcess, keep = OUTPUT_KEEP): () => string {
  let buf = "";
  const add = (d: Buffer) => {
    buf += d.toString("utf8");
    if (buf.length > keep) buf = buf.slice(buf.length - keep);
  };
  proc.stdout?.on("data", add);
  proc.stderr?.on("data", add);
  return () => buf;
}

function stopper(proc: ChildProcess): () => Promise<void> {
  let stopping: Promise<void> | null = null;
  return () => {
    if (stopping) return stopping;
    stopping = new Promise<void>((resolve) => {
      if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
      const t = setTimeout(() => proc.kill("SIGKILL"), STOP_TIMEOUT_MS);
      proc.once("exit", () => {
        clearTimeout(t);
        resolve();
      });
      proc.kill("SIGTERM");
    });
    return stopping;
  };
}

/** Connects until the server sends its INFO line (it is then accepting clients). */
async function waitForInfo(port: number, proc: ChildProcess, output: () => string): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (let attempt = 0; attempt < 1000; attempt++) {
    if (proc.exitCode !== null || proc.signalCode !== null) {
      throw new Error(`server exited during startup (code ${proc.exitCode}):\n${output().slice(-2000)}`);
    }
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host: "127.0.0.1", port });
      let got = "";
      const done = (v: boolean) => {
        clearTimeout(t);
        s.destroy();
        resolve(v);
      };
      const t = setTimeout(() => done(false), 1000);
      s.on("data", (d) => {
        got += d.toString("latin1");
        if (got.includes("\n")) done(got.toUpperCase().startsWith("INFO"));
      });
      s.on("error", () => done(false));
      s.on("close", () => done(false));
    });
    if (ok) return;
    if (Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`server on port ${port} did not send INFO within ${START_TIMEOUT_MS} ms:\n${output().slice(-2000)}`);
}

/** Opens WebSocket connections until the server sends its INFO in a message (the ws listener is up). */
async function waitForWsInfo(port: number, proc: ChildProcess, output: () => string): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  let last = "";
  for (let attempt = 0; attempt < 1000; attempt++) {
    if (proc.exitCode !== null || proc.signalCode !== null) {
      throw new Error(`server exited during startup (code ${proc.exitCode}):\n${output().slice(-2000)}`);
    }
    const ok = await new Promise<boolean>((resolve) => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: false });
      const done = (v: boolean) => {
        clearTimeout(t);
        ws.terminate();
        resolve(v);
      };
      const t = setTimeout(() => done(false), 1000);
      ws.on("message", (d: Buffer) => done(d.toString("latin1").toUpperCase().startsWith("INFO")));
      ws.on("error", (e) => {
        last = e.message;
        done(false);
      });
      ws.on("close", () => done(false));
    });
    if (ok) return;
    if (Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`server's websocket port ${port} sent no INFO within ${START_TIMEOUT_MS} ms (${last}):\n${output().slice(-2000)}`);
}

function exitStatus(proc: ChildProcess): () => string | null {
  return () =>
    proc.exitCode !== null
      ? `exit code ${proc.exitCode}`
      : proc.signalCode !== null
        ? `signal ${proc.signalCode}`
        : null;
}

let clockTicks: number | null | undefined;

/** User + system CPU seconds of a process, from /proc/<pid>/stat (Linux only); null if unknown. */
export function cpuSecondsOf(pid: number | null | undefined): number | null {
  if (!pid || process.platform !== "linux") return null;
  if (clockTicks === undefined) {
    const r = spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8", timeout: 2000 });
    const n = Number(r.stdout?.trim());
    clockTicks = Number.isInteger(n) && n > 0 ? n : null;
  }
  if (clockTicks === null) return null;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "latin1");
    // Fields after the ")" that closes the command name; utime and stime are fields 14 and 15.
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) / clockTicks;
  } catch {
    return null;
  }
}

function cpuSeconds(proc: ChildProcess): () => number | null {
  return () => cpuSecondsOf(proc.pid);
}

/** Rejects when `p` has not settled within `ms`. */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      t = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(t));
}

function track(proc: ChildProcess): void {
  liveProcesses.add(proc);
  proc.once("exit", () => liveProcesses.delete(proc));
}

export async function startNatsServer(bin: string, dataDir: string | null = null, websocket = false): Promise<RunningServer> {
  let lastErr: unknown;
  // A port from the OS can in principle be taken again before nats-server binds it; retry.
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const args = ["-a", "127.0.0.1", "-p", String(port)];
    let wsPort: number | null = null;
    let confDir: string | null = null;
    if (websocket) {
      wsPort = await freePort();
      confDir = mkdtempSync(path.join(os.tmpdir(), "nex-bench-natsws-"));
      const conf = path.join(confDir, "nats-server.conf");
      writeFileSync(conf, `websocket {\n  listen: "127.0.0.1:${wsPort}"\n  no_tls: true\n}\n`);
      args.unshift("-c", conf);
    }
    if (dataDir) args.push("-js", "-sd", dataDir);
    const proc = spawn(bin, args, {
      stdio: ["ignore", "pipe", "pipe"],
    });
    track(proc);
    const output = capture(proc);
    const stopProc = stopper(proc);
    const stop = async () => {
      await stopProc();
      if (confDir) rmSync(confDir, { recursive: true, force: true });
    };
    proc.on("error", () => {});
    try {
      return await whenReady("nats", proc, port, wsPort, dataDir, output, stop);
    } catch (e) {
      lastErr = e;
      await stop();
    }
  }
  throw lastErr instanceof Error ? lastErr : new Error(String(lastErr));
}

export async function startBundled(dataDir: string | null = null, websocket = false): Promise<RunningServer> {
  const reason = bundledUnavailableReason();
  if (reason) throw new Error(reason);
  // BENCH_BROKER_NODE_ARGS (profiling experiments only), e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof".
  const args = [
    ...nodeArgsFromEnv("BENCH_BROKER_NODE_ARGS"),
    path.join(REPO_ROOT, "bin", "nex.js"),
    "broker",
    "--host",
    "127.0.0.1",
    "--port",
    "0",
    "--http-port",
    "0",
  ];
  if (dataDir) args.push("--data-dir", dataDir);
  if (websocket) args.push("--ws-port", "0");
  const proc = spawn(process.execPath, args, { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe"] });
  track(proc);
  const output = capture(proc);
  const stop = stopper(proc);
  proc.on("error", () => {});
  try {
    // The `Listening for client connections on nats://...` line, and with `websocket` also
    // `Listening for websocket clients on ws://...`.
    const [port, wsPort] = await new Promise<[number, number | null]>((resolve, reject) => {
      const re = /nats:\/\/127\.0\.0\.1:(\d+)/;
      const wsRe = /ws:\/\/127\.0\.0\.1:(\d+)/;
      let seen = "";
      let found: number | null = null;
      let wsFound: number | null = null;
      const t = setTimeout(() => {
        cleanup();
        reject(
          new Error(
            `bundled broker printed no nats://127.0.0.1:PORT${websocket ? " and ws://127.0.0.1:PORT lines" : " line"} within ${START_TIMEOUT_MS} ms:\n${output().slice(-2000)}`,
          ),
        );
      }, START_TIMEOUT_MS);
      const onData = (d: Buffer) => {
        seen += d.toString("utf8");
        const m = re.exec(seen);
        if (m && Number(m[1]) > 0) found = Number(m[1]);
        const w = wsRe.exec(seen);
        if (w && Number(w[1]) > 0) wsFound = Number(w[1]);
        if (found !== null && (!websocket || wsFound !== null)) {
          cleanup();
          resolve([found, wsFound]);
        } else if (seen.length > OUTPUT_KEEP) {
          seen = seen.slice(-1024);
        }
      };
      const onExit = (code: number | null) => {
        cleanup();
        reject(new Error(`bundled broker exited during startup (code ${code}):\n${output().slice(-2000)}`));
      };
      const cleanup = () => {
        clearTimeout(t);
        proc.stdout?.off("data", onData);
        proc.off("exit", onExit);
      };
      proc.stdout?.on("data", onData);
      proc.on("exit", onExit);
    });
    return await whenReady("bundled", proc, port, wsPort, dataDir, output, stop);
  } catch (e) {
    await stop();
    throw e;
  }
}

/** Once the server speaks INFO on its client port (and its WebSocket port): the running server. */
async function whenReady(
  kind: ServerKind,
  proc: ChildProcess,
  port: number,
  wsPort: number | null,
  dataDir: string | null,
  output: () => string,
  stop: () => Promise<void>,
): Promise<RunningServer> {
  await waitForInfo(port, proc, output);
  if (wsPort !== null) await waitForWsInfo(wsPort, proc, output);
  return {
    kind,
    port,
    url: `nats://127.0.0.1:${port}`,
    wsPort,
    wsUrl: wsPort === null ? null : `ws://127.0.0.1:${wsPort}`,
    dataDir,
    output,
    exitStatus: exitStatus(proc),
    cpuSeconds: cpuSeconds(proc),
    stop,
  };
}

export async function startServer(kind: ServerKind, natsBin: string, opts: StartOptions = {}): Promise<RunningServer> {
  const ws = opts.websocket === true;
  if (!opts.jetstream) return kind === "nats" ? startNatsServer(natsBin, null, ws) : startBundled(null, ws);
  const dir = mkdtempSync(path.join(os.tmpdir(), `nex-bench-${kind === "nats" ? "nats" : "bundled"}-`));
  liveDataDirs.add(dir);
  let server: RunningServer;
  try {
    server = kind === "nats" ? await startNatsServer(natsBin, dir, ws) : await startBundled(dir, ws);
  } catch (e) {
    removeDataDir(dir);
    throw e;
  }
  const stop = server.stop;
  return {
    ...server,
    stop: async () => {
      await stop();
      removeDataDir(dir);
    },
  };
}
