// One node process per data directory: two nodes on one --data-dir would run the same node id twice and
// share one JetStream store. The lock is a file holding the owner's pid, created exclusively; a file left
// by a process that is gone (kill -9, a lost machine's restart) is taken over.

import fs from "node:fs";
import path from "node:path";

const LOCK_FILE = "nex-node.lock";
/** Directories this process holds (a second node in the same process is refused too). */
const held = new Set<string>();

export interface DataDirLock {
  release(): void;
}

export function lockDataDir(dataDir: string): DataDirLock {
  const dir = path.resolve(dataDir);
  if (held.has(dir)) throw new Error(`data dir ${dir} is in use by another node in this process`);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = path.join(dir, LOCK_FILE);
  for (let attempt = 0; ; attempt++) {
    try {
      fs.writeFileSync(file, `${process.pid}\n`, { flag: "wx", mode: 0o600 });
      held.add(dir);
      return { release: () => release(dir, file) };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST" || attempt > 0) throw err;
    }
    const pid = Number.parseInt(readOr(file, ""), 10);
    if (Number.isInteger(pid) && pid > 0 && isAlive(pid)) {
      throw new Error(`data dir ${dir} is in use by another nex node (pid ${pid}): stop it, or give this node a --data-dir of its own`);
    }
    fs.rmSync(file, { force: true }); // left by a process that is gone
  }
}

function release(dir: string, file: string): void {
  if (!held.delete(dir)) return;
  if (readOr(file, "").trim() === String(process.pid)) fs.rmSync(file, { force: true });
}

function readOr(file: string, fallback: string): string {
  try {
    return fs.readFileSync(file, "utf8");
  } catch {
    return fallback;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM"; // alive, another user's
  }
}
