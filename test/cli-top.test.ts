// `nex top` in a pseudo-terminal (util-linux `script`, its input fed from here) against two nodes on one
// bundled broker: it shows both nodes' workloads, leaves on q and on Ctrl-C with exit code 0, and gives
// the terminal back (main screen, cursor); without a terminal it refuses.

import { spawn } from "node:child_process";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type NodeProcess, NodeUnderTest, ROOT, runNex } from "./helpers/nex-cli.js";
import { waitFor } from "./helpers/wait.js";

const NEX_BIN = path.join(ROOT, "bin/nex.js");
const LEAVE_SCREEN = "\x1b[?1049l";
const SHOW_CURSOR = "\x1b[?25h";

interface Top {
  output(): string;
  type(keys: string): void;
  exited: Promise<number | null>;
}

/** `nex top` under `script`, which gives it a pseudo-terminal and passes what is written here as keys. */
function startTop(url: string, env: Record<string, string>): Top {
  const child = spawn("script", ["-qfec", `${process.execPath} ${NEX_BIN} top -s ${url}`, "/dev/null"], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ["pipe", "pipe", "pipe"],
  });
  let out = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr.on("data", (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  return { output: () => out, type: (keys) => child.stdin.write(keys), exited };
}

describe("nex top", () => {
  let t: NodeUnderTest;
  let peer: NodeProcess;
  const nex = (...args: string[]) => runNex([...args, "-s", t.node.url], t.env);

  beforeAll(async () => {
    t = await NodeUnderTest.start("bundled", "top");
    peer = await t.peer(["--name", "peer"]);
    // One workload on each node.
    for (const [name, node] of [["top-first", t.node.nodeId], ["top-second", peer.nodeId]]) {
      const run = await nex("run", path.join(ROOT, "examples/echo/echo.js"), "--name", name, "--trigger-subject", name, "--node", node);
      expect(run.code, run.stderr).toBe(0);
    }
  }, 60_000);

  afterAll(async () => {
    await t?.stop();
  });

  it("shows every node's workloads and leaves on q, giving the terminal back", async () => {
    const top = startTop(t.node.url, t.env);
    await waitFor("both workloads and both nodes on the screen", () => /top-first/.test(top.output()) && /top-second/.test(top.output()) && /2 node\(s\)/.test(top.output()), 15_000);
    // A sort key redraws with that column marked in the footer.
    top.type("r");
    await waitFor("the rate column chosen", () => /\[r rate/.test(top.output()));
    top.type("q");
    expect(await top.exited).toBe(0);
    const tail = top.output().slice(-200);
    expect(tail).toContain(LEAVE_SCREEN);
    expect(tail).toContain(SHOW_CURSOR);
  });

  it("leaves on Ctrl-C with exit code 0", async () => {
    const top = startTop(t.node.url, t.env);
    await waitFor("the workloads on the screen", () => /top-first/.test(top.output()), 15_000);
    top.type("\x03");
    expect(await top.exited).toBe(0);
    expect(top.output().slice(-200)).toContain(LEAVE_SCREEN);
  });

  it("refuses to run without a terminal", async () => {
    const r = await nex("top");
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/needs a terminal/);
  });
});
