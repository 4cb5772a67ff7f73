// A `nex node up` process for the node rows (trigger, trigger50, cold, density): the bundled broker
// and a node agent in one process, with its own temporary data directory and NEX_HOME, plus the
// JavaScript runtime-host child it forks on the first deploy. Both directories are removed by stop()
// (and by run.ts's exit handler on Ctrl-C); the runtime host is killed by pid if it outlives the node.

import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { liveProcesses } from "./children.js";
import { REPO_ROOT, bundledUnavailableReason, capture, liveDataDirs, removeDataDir } from "./servers.js";

const START_TIMEOUT_MS = 30_000;
/** A graceful stop drains every workload's triggers; with 1,000 workloads that takes a while. */
const STOP_TIMEOUT_MS = 20_000;
const OUTPUT_KEEP = 64 * 1024;
const MAX_WARNINGS = 20;
/**
 * Bench clients sign with keys of their own and connect anonymously, so bench nodes accept any issuer
 * (and say so) and run their broker with --no-auth (auth costs a CONNECT, not a message).
 */
const EXPECTED_WARNING = /allow_any_issuer is set/;

/** Runtime-host processes forked by nodes we started (killed on exit if still there). */
export const liveHostPids = new Set<number>();
/** `nex node up` processes we started and have not seen exit. */
const liveNodePids = new Set<number>();

/** True if `pid` is alive and is a nex runtime host (guards against a recycled pid). */
function isRuntimeHost(pid: number): boolean {
  try {
    const cmd = readFileSync(`/proc/${pid}/cmdline`, "latin1");
    return /runtime-host|nex-js-runtime-host/.test(cmd);
  } catch {
    return false;
  }
}

/**
 * SIGKILLs the runtime hosts still alive, including those of running nodes not looked up yet
 * (synchronous: used from the exit handler, before the nodes themselves are killed).
 */
export function killHosts(): void {
  for (const node of liveNodePids) {
    const h = findHostPid(node);
    if (h !== null) liveHostPids.add(h);
  }
  for (const pid of [...liveHostPids]) {
    if (isRuntimeHost(pid)) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
    liveHostPids.delete(pid);
  }
}

/** VmRSS of a process in KiB, from /proc/<pid>/status; null if unreadable. */
export function rssKiB(pid: number | null | undefined): number | null {
  if (!pid) return null;
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, "latin1"));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}


export interface RunningNode {
  pid: number;
  url: string;
  nodeId: string;
  dataDir: string;
  /** NEX_HOME for CLI commands run against this node (issuer keys). */
  home: string;
  /** Environment for `nex` CLI child processes (NEX_HOME set). */
  env: NodeJS.ProcessEnv;
  /** Last bytes of the node's stdout+stderr. */
  output(): string;
  /**
   * Log lines at warn level or above (pino level >= 40), except the expected "allow_any_issuer"
   * warning; the first MAX_WARNINGS are kept, `count` counts them all.
   */
  warnings(): { count: number; lines: string[] };
  /** How the process ended, or null while it runs. */
  exitStatus(): string | null;
  /** The runtime-host child (`ps --ppid`), or null before the first deploy. */
  hostPid(): number | null;
  stop(): Promise<void>;
}

/** Children of `pid` whose command line looks like the runtime host (ps --ppid). */
function findHostPid(pid: number): number | null {
  const r = spawnSync("ps", ["--ppid", String(pid), "-o", "pid=,args="], { encoding: "utf8", timeout: 5000 });
  if (r.error || typeof r.stdout !== "string") return null;
  const rows = r.stdout
    .split("\n")
    .map((l) => l.trim())
    .filter(Boolean)
    .map((l) => {
      const sp = l.indexOf(" ");
      return { pid: Number(sp < 0 ? l : l.slice(0, sp)), args: sp < 0 ? "" : l.slice(sp + 1) };
    })
    .filter((x) => Number.isInteger(x.pid) && x.pid > 0);
  const host = rows.find((x) => /runtime-host/.test(x.args)) ?? (rows.length === 1 ? rows[0] : undefined);
  return host ? host.pid : null;
}

/**
 * Starts `nex node up --port 0` (its bundled broker; or, with `server`, only the agent on that NATS
 * server or cluster) with fresh temporary directories; resolves once it printed its id and URL.
 */
export async function startNode(extraArgs: string[] = [], server?: string): Promise<RunningNode> {
  const reason = bundledUnavailableReason();
  if (reason) throw new Error(reason);
  const dataDir = mkdtempSync(path.join(os.tmpdir(), "nex-bench-node-"));
  liveDataDirs.add(dataDir);
  const home = mkdtempSync(path.join(os.tmpdir(), "nex-bench-home-"));
  liveDataDirs.add(home);
  const env: NodeJS.ProcessEnv = { ...process.env, NEX_HOME: home };
  delete env.NEX_NAMESPACE;
  const args = [path.join(REPO_ROOT, "bin", "nex.js"), "node", "up", ...(server ? ["--server", server] : ["--port", "0", "--no-auth"]), "--data-dir", dataDir, "--name", "bench", "--allow-any-issuer", ...extraArgs];
  let proc: ChildProcess;
  try {
    proc = spawn(process.execPath, args, { cwd: REPO_ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
  } catch (e) {
    removeDataDir(dataDir);
    removeDataDir(home);
    throw e;
  }
  liveProcesses.add(proc);
  if (proc.pid) liveNodePids.add(proc.pid);
  proc.once("exit", () => {
    liveProcesses.delete(proc);
    if (proc.pid) liveNodePids.delete(proc.pid);
  });
  proc.on("error", () => {});

  const output = capture(proc, OUTPUT_KEEP);

  // The node logs pino JSON on stderr: keep what is at warn level or above.
  const warned = { count: 0, lines: [] as string[] };
  let partial = "";
  proc.stderr?.on("data", (d: Buffer) => {
    const text = partial + d.toString("utf8");
    const lines = text.split("\n");
    partial = (lines.pop() ?? "").slice(-8192);
    for (const line of lines) {
      const level = Number(/"level":(\d+)/.exec(line)?.[1] ?? 0);
      const plain = level === 0 && /error|fatal|warn/i.test(line);
      if ((level >= 40 || plain) && !EXPECTED_WARNING.test(line)) {
        warned.count++;
        if (warned.lines.length < MAX_WARNINGS) warned.lines.push(line.length > 600 ? `${line.slice(0, 597)}...` : line);
      }
    }
  });
  const warnings = () => warned;
  const exitStatus = () =>
    proc.exitCode !== null ? `exit code ${proc.exitCode}` : proc.signalCode !== null ? `signal ${proc.signalCode}` : null;

  let host: number | null = null;
  const hostPid = (): number | null => {
    if (host !== null && isRuntimeHost(host)) return host;
    host = proc.pid && exitStatus() === null ? findHostPid(proc.pid) : null;
    if (host !== null) liveHostPids.add(host);
    return host;
  };

  let stopping: Promise<void> | null = null;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      const h = hostPid();
      if (exitStatus() === null) {
        await new Promise<void>((resolve) => {
          const t = setTimeout(() => proc.kill("SIGKILL"), STOP_TIMEOUT_MS);
          proc.once("exit", () => {
            clearTimeout(t);
            resolve();
          });
          proc.kill("SIGTERM");
        });
      }
      // The runtime host exits when its IPC channel closes; make sure of it.
      if (h !== null) {
        for (let i = 0; i < 40 && isRuntimeHost(h); i++) await new Promise((r) => setTimeout(r, 50));
        if (isRuntimeHost(h)) {
          try {
            process.kill(h, "SIGKILL");
          } catch {
            // gone
          }
        }
        liveHostPids.delete(h);
      }
      removeDataDir(dataDir);
      removeDataDir(home);
    })();
    return stopping;
  };

  try {
    const { url, nodeId } = await new Promise<{ url: string; nodeId: string }>((resolve, reject) => {
      const t = setTimeout(() => {
        cleanup();
        reject(new Error(`nex node up printed no node id and broker URL within ${START_TIMEOUT_MS} ms:\n${output().slice(-2000)}`));
      }, START_TIMEOUT_MS);
      const check = () => {
        const url = /broker:\s+(nats:\/\/127\.0\.0\.1:\d+)/.exec(output())?.[1];
        const nodeId = /node id:\s+(N[A-Z2-7]{55})/.exec(output())?.[1];
        if (url && nodeId) {
          cleanup();
          resolve({ url, nodeId });
        }
      };
      const onExit = (code: number | null) => {
        cleanup();
        reject(new Error(`nex node up exited during startup (code ${code}):\n${output().slice(-2000)}`));
      };
      const cleanup = () => {
        clearTimeout(t);
        proc.stdout?.off("data", check);
        proc.off("exit", onExit);
      };
      proc.stdout?.on("data", check);
      proc.on("exit", onExit);
      check();
    });
    return { pid: proc.pid!, url, nodeId, dataDir, home, env, output, warnings, exitStatus, hostPid, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}
