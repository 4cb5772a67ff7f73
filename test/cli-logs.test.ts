// The operator's view of `nex node up` and `nex run` (issue 21): pretty log lines on a terminal and JSON
// lines otherwise, a banner no log line lands in, workload fields on every line about a workload, upload
// progress and what a deploy waits for. Terminal runs use util-linux `script`, which gives the command a
// pseudo-terminal (sized with stty: ora and pino-pretty want a width).

import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { ControlSubjects } from "../src/protocol/control.js";
import { deployWait } from "../src/node-agent/deploy-waits.js";
import type { WorkloadSpec } from "../src/runtimes/types.js";
import { NodeUnderTest, removeDir, ROOT, runNex, tempDir } from "./helpers/nex-cli.js";
import { waitFor } from "./helpers/wait.js";

const NEX_BIN = path.join(ROOT, "bin/nex.js");
const ECHO = path.join(ROOT, "examples/echo/echo.js");

const quote = (arg: string): string => `'${arg.replace(/'/g, "'\\''")}'`;
/** The text a person sees: without colours and cursor moves, and with \n line ends (a pty sends \r\n). */
const visible = (raw: string): string => raw.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, "").replace(/\r\n/g, "\n");

interface PtyRun {
  output(): string;
  /** The nex process's pid (the shell execs it), to signal it. */
  pid(): number;
  exited: Promise<number | null>;
}

/** `nex <args>` in a pseudo-terminal of 120 columns (unsized: of no width, as `script` makes it); output() is what the terminal got. */
function nexInPty(args: string[], env: Record<string, string>, dir: string, sized = true): PtyRun {
  const pidFile = path.join(dir, `pty-${randomBytes(4).toString("hex")}.pid`);
  const command = `${sized ? "stty cols 120 rows 40; " : ""}echo $$ > ${quote(pidFile)}; exec ${quote(process.execPath)} ${quote(NEX_BIN)} ${args.map(quote).join(" ")}`;
  // stdin stays open: script passes it to the terminal, and some versions stop at its end.
  // A person at a terminal: without CI in the environment, which makes ora (is-interactive) show no spinner.
  const { CI: _ci, ...outside } = process.env;
  const child: ChildProcess = spawn("script", ["-qfec", command, "/dev/null"], { cwd: ROOT, env: { ...outside, ...env }, stdio: ["pipe", "pipe", "pipe"] });
  let out = "";
  child.stdout?.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  return { output: () => out, pid: () => Number(readFileSync(pidFile, "utf8")), exited };
}

/** Stops a `node up` started in a pty, and waits until it is gone. */
async function stopPty(run: PtyRun): Promise<void> {
  try {
    process.kill(run.pid(), "SIGTERM");
  } catch {
    // already gone
  }
  await run.exited;
}

const BANNER_START = /^nex node \S+ is up$/;
const PRETTY_LINE = /^\[\d\d:\d\d:\d\d\.\d{3}\] (TRACE|DEBUG|INFO|WARN|ERROR|FATAL): /;

describe("nex node up's log lines", () => {
  const dir = tempDir("nex-logs-");
  afterAll(() => removeDir(dir));
  const env = { NEX_HOME: dir };
  const upArgs = (name: string): string[] => ["node", "up", "--port", "0", "--data-dir", path.join(dir, name)];

  it("on a terminal: pretty lines, and the banner in one block", async () => {
    const run = nexInPty(upArgs("pretty"), env, dir);
    try {
      // "node started" is the start-up's last line: held until the banner is out.
      await waitFor("the node started line", () => /node started/.test(visible(run.output())), 30_000);
    } finally {
      await stopPty(run);
    }
    const text = visible(run.output());
    expect(text).not.toContain('{"level":');
    const lines = text.split("\n").filter((l) => l.trim() !== "");
    // The banner's lines together (the start-up's log lines are held until it is out, for a few seconds at most).
    const start = lines.findIndex((l) => BANNER_START.test(l));
    expect(start).toBeGreaterThanOrEqual(0);
    let end = start + 1;
    while (end < lines.length && lines[end].startsWith("  ")) end++;
    const banner = lines.slice(start, end);
    expect(banner.map((l) => l.split(":")[0].trim())).toEqual(expect.arrayContaining(["node id", "xkey", "version", "types", "tags", "broker", "clients"]));
    expect(banner.filter((l) => PRETTY_LINE.test(l))).toEqual([]);
    const logs = [...lines.slice(0, start), ...lines.slice(end)];
    expect(logs.some((l) => PRETTY_LINE.test(l) && l.includes("node started"))).toBe(true);
    // pino-pretty's one line per entry, its fields after the message (an err field goes on lines of its own).
    expect(logs.filter((l) => !PRETTY_LINE.test(l))).toEqual(logs.filter((l) => !PRETTY_LINE.test(l) && l.startsWith("    ")));
  }, 60_000);

  it("on a terminal with --log-format json: JSON lines", async () => {
    const run = nexInPty([...upArgs("tty-json"), "--log-format", "json"], env, dir);
    try {
      await waitFor("the node started line", () => /node started/.test(visible(run.output())), 30_000);
    } finally {
      await stopPty(run);
    }
    const lines = visible(run.output()).split("\n").filter((l) => l.trim() !== "");
    const logs = lines.filter((l) => !BANNER_START.test(l) && !l.startsWith("  "));
    expect(logs.length).toBeGreaterThan(0);
    for (const line of logs) expect(JSON.parse(line)).toHaveProperty("level");
    expect(logs.map((l) => (JSON.parse(l) as { msg?: string }).msg)).toContain("node started");
  }, 60_000);

  it("piped: JSON lines that parse, and the banner apart from them", async () => {
    const t = await NodeUnderTest.start("bundled", "logs-piped");
    try {
      await waitFor("the node started line", () => /"msg":"node started"/.test(t.node.output()));
      await t.node.stop();
      const lines = t.node.output().split("\n").filter((l) => l.trim() !== "");
      const json = lines.filter((l) => l.startsWith("{"));
      for (const line of json) expect(JSON.parse(line)).toHaveProperty("level");
      expect(json.map((l) => (JSON.parse(l) as { msg?: string }).msg)).toContain("node started");
      // Everything else is the banner.
      expect(lines.filter((l) => !l.startsWith("{")).every((l) => BANNER_START.test(l) || l.startsWith("  "))).toBe(true);
    } finally {
      await t.stop();
    }
  }, 60_000);

  it("piped with --log-format pretty: pretty lines, without colours", async () => {
    const t = await NodeUnderTest.start("bundled", "logs-piped-pretty", ["--log-format", "pretty"]);
    try {
      await waitFor("the node started line", () => /INFO: node started/.test(t.node.output()));
    } finally {
      await t.stop();
    }
    expect(t.node.output()).not.toContain("\x1b[");
    expect(t.node.output()).not.toContain('{"level":');
    expect(t.node.output().split("\n").some((l) => PRETTY_LINE.test(l) && l.includes("node started"))).toBe(true);
  }, 60_000);

  it.each([
    [["node", "up"], "--log-format", "xml", /^nex: option '--log-format <format>' argument 'xml' is invalid\. Allowed choices are json, pretty\./],
    [["broker"], "--log-format", "xml", /^nex: option '--log-format <format>' argument 'xml' is invalid\. Allowed choices are json, pretty\./],
    [["node", "up"], "--log-level", "loud", /^nex: option '--log-level <level>' argument 'loud' is invalid\. Allowed choices are trace, debug, info, warn, error, fatal, silent\./],
    [["broker"], "--log-level", "loud", /^nex: option '--log-level <level>' argument 'loud' is invalid\./],
  ])("%s %s %s is a usage error (exit 2)", async (command, flag, value, message) => {
    // Nothing listens on port 1: a command that went past the check would fail on connecting, not with this.
    const res = await runNex([...command, "--port", "1", flag, value], env);
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(message);
    expect(res.stdout).toBe("");
  });
});

describe("a node's lines about a workload", () => {
  let t: NodeUnderTest;
  beforeAll(async () => {
    t = await NodeUnderTest.start("bundled", "logs-fields");
  }, 60_000);
  afterAll(async () => t?.stop());

  it("carry its workload id, name and namespace", async () => {
    const nex = (...args: string[]) => runNex([...args, "-s", t.node.url], t.env);
    const run = await nex("run", ECHO, "--name", "fields-echo", "--trigger-subject", "fields.echo");
    expect(run.code).toBe(0);
    const id = run.stdout.trim();
    expect((await nex("workload", "stop", id)).code).toBe(0);
    const about = (): Record<string, unknown>[] =>
      t.node
        .output()
        .split("\n")
        .filter((l) => l.startsWith("{") && l.includes(id))
        .map((l) => JSON.parse(l) as Record<string, unknown>);
    // The node's own lines and the runtime host's (relayed through the node's logger).
    await waitFor("the started, deployed, undeployed and stopped lines", () => ["workload started", "workload deployed", "workload undeployed", "workload stopped"].every((m) => about().some((l) => l.msg === m)));
    for (const line of about().filter((l) => l.msg !== "workload undeployed")) {
      expect(line).toMatchObject({ workload_id: id, namespace: "default", workload: "fields-echo" });
    }
    expect(about().find((l) => l.msg === "workload undeployed")).toMatchObject({ workload_id: id });
  }, 60_000);
});

describe("nex run's progress", () => {
  let t: NodeUnderTest;
  let nc: NatsConnection;
  let dir: string;
  beforeAll(async () => {
    t = await NodeUnderTest.start("bundled", "logs-progress");
    nc = await connect(t.connectOptions());
    dir = tempDir("nex-progress-");
  }, 60_000);
  afterAll(async () => {
    await nc?.close();
    await t?.stop();
    if (dir) removeDir(dir);
  });

  /** An 8 MiB function of its own content (uploads are content-addressed: a known file would upload nothing). */
  function bigFunction(name: string): string {
    const file = path.join(dir, `${name}.js`);
    writeFileSync(file, `const pad = "${randomBytes(6 * 1024 * 1024).toString("base64").slice(0, 8 * 1024 * 1024 - 200)}";\nexport default function (subject, payload) { return pad.length ? payload : payload; }\n`);
    return file;
  }

  it("on a terminal: bytes sent of the total while a large artifact uploads", async () => {
    const run = nexInPty(["run", bigFunction("big-tty"), "--trigger-subject", "big.tty", "-s", t.node.url], t.env, dir);
    expect(await run.exited).toBe(0);
    const text = visible(run.output());
    const shown = [...text.matchAll(/uploading big-tty: (\d+\.\d) MiB \/ 8\.0 MiB \((\d+)%\)/g)].map((m) => Number(m[2]));
    // The text changes with every whole percent, each shown when it changes.
    expect(shown.some((p) => p > 0 && p < 100)).toBe(true);
    expect(shown).toContain(100);
    expect(text).toMatch(/uploaded big-tty \(\d+ bytes\) to NEX_ARTIFACTS/);
  }, 60_000);

  it("on a terminal of no width: no spinner (ora would clear lines without end), only the workload id", async () => {
    const run = nexInPty(["run", bigFunction("big-unsized"), "--trigger-subject", "big.unsized", "-s", t.node.url], t.env, dir, false);
    expect(await run.exited).toBe(0);
    expect(visible(run.output())).toMatch(/^[0-9a-f]{20}\n$/);
  }, 60_000);

  it("piped: only the workload id, no progress", async () => {
    const res = await runNex(["run", bigFunction("big-piped"), "--trigger-subject", "big.piped", "-s", t.node.url], t.env);
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(/^[0-9a-f]{20}\n$/);
    expect(res.stderr).toBe("");
  }, 60_000);

  it("a deploy says what it waits for: the node's workload_preparing event, shown in the spinner", async () => {
    // A registry on 127.0.0.1:1 answers nothing: the deploy fails at the pull (or at once, with no Docker
    // engine), after the node said what it waits for.
    const image = "127.0.0.1:1/nex-test/missing:1";
    const events: { name?: string; node_id?: string; waiting_for?: string }[] = [];
    const sub = nc.subscribe(ControlSubjects.events("default", "workload_preparing"), {
      callback: (_err, m) => void events.push((JSON.parse(m.string()) as { data: (typeof events)[number] }).data),
    });
    await nc.flush();
    const run = nexInPty(["run", "--type", "oci", image, "--name", "waits", "--node", t.node.nodeId, "-s", t.node.url], t.env, dir);
    expect(await run.exited).not.toBe(0);
    sub.unsubscribe();
    expect(events).toContainEqual({ workload_id: expect.any(String), name: "waits", node_id: t.node.nodeId, waiting_for: expect.stringContaining(`image ${image}`) });
    expect(visible(run.output())).toContain(`deploying waits to ${t.node.nodeId}: waiting for image ${image}`);
  }, 60_000);
});

describe("what a deploy waits for (the workload_preparing event's text)", () => {
  const wasm = (layer: number[]): WorkloadSpec => ({ type: "wasm", artifact: new Uint8Array([0, 0x61, 0x73, 0x6d, ...layer]) }) as unknown as WorkloadSpec;

  it("an image for a container, a transpile for a component, nothing for the rest", () => {
    expect(deployWait({ type: "oci", image: "registry.example/app:1" } as unknown as WorkloadSpec)).toBe("image registry.example/app:1 (pulled if the node's engine does not have it)");
    expect(deployWait(wasm([0x0d, 0, 0x01, 0]))).toBe("the component's transpile (once per artifact, then cached)");
    expect(deployWait(wasm([0x01, 0, 0, 0]))).toBeUndefined();
    expect(deployWait({ type: "wasm", artifact: new TextEncoder().encode("not wasm") } as unknown as WorkloadSpec)).toBeUndefined();
    expect(deployWait({ type: "javascript", artifact: new Uint8Array() } as unknown as WorkloadSpec)).toBeUndefined();
  });
});
