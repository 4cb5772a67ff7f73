// End to end through the real CLI and a real broker: `nex node up` in a child process, `nex run`,
// requests from a NATS client, bad deploy requests, failing functions, runtime-host crash, lame duck,
// and a node restart. Runs against the bundled broker and against nats-server -js.

import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect, headers as natsHeaders, type NatsConnection } from "@nats-io/transport-node";
import { createAccount, fromSeed } from "@nats-io/nkeys";
import { signRequest } from "../src/protocol/signing.js";
import { ControlSubjects, PROTOCOL_VERSION } from "../src/protocol/control.js";
import { describeEachServer } from "./helpers/servers.js";
import { eventually } from "./helpers/wait.js";
import { type NodeProcess, NodeUnderTest, removeDir, ROOT, runNex, tempDir } from "./helpers/nex-cli.js";

const ECHO = path.join(ROOT, "examples/echo/echo.js");
const fixture = (name: string): string => path.join(ROOT, "test/fixtures/node", name);
const decode = (b: Uint8Array): string => new TextDecoder().decode(b);

/** The first reply to `payload` on `subject`, asking again while nobody answers yet (a workload coming back). */
function firstAnswer(nc: NatsConnection, subject: string, payload: string): Promise<string> {
  return eventually(`an answer on ${subject}`, async () => decode((await nc.request(subject, payload, { timeout: 1000 })).data));
}

describeEachServer("nex node end to end", (kind) => {
  let t: NodeUnderTest;
  let node: NodeProcess;
  let nc: NatsConnection;
  let env: Record<string, string>;

  const nex = (...args: string[]) => runNex([...args, "-s", node.url], env);

  beforeAll(async () => {
    t = await NodeUnderTest.start(kind, "node");
    node = t.node;
    env = t.env;
    nc = await connect(t.connectOptions());
  }, 60_000);

  afterAll(async () => {
    await nc?.close();
    await t?.stop();
  });

  let echoId = "";

  it("runs a function from a file and answers requests on its trigger subject", async () => {
    const run = await nex("run", ECHO, "--trigger-subject", "echo");
    expect(run.stderr).not.toMatch(/nex: /);
    expect(run.code).toBe(0);
    echoId = run.stdout.trim();
    expect(echoId).toMatch(/^[0-9a-f]{20}$/);
    const reply = await nc.request("echo", "hello", { timeout: 5000 });
    expect(decode(reply.data)).toBe("hello");
    const req = await nex("req", "echo", "from the cli");
    expect(req.code).toBe(0);
    expect(req.stdout.trim()).toBe("from the cli");
  });

  it("lists the node and its workload", async () => {
    const nodes = JSON.parse((await nex("node", "ls", "--json")).stdout) as { node_id: string; workload_count: number }[];
    expect(nodes.map((n) => n.node_id)).toEqual([node.nodeId]);
    expect(nodes[0].workload_count).toBeGreaterThanOrEqual(1);
    const workloads = JSON.parse((await nex("workload", "ls", "--json")).stdout) as { id: string; name: string; state: string }[];
    expect(workloads.find((w) => w.id === echoId)).toMatchObject({ name: "echo", state: "running" });
    // What the runtime reports of a function that has answered: counts, durations, its isolate's memory.
    const echo = JSON.parse((await nex("workload", "info", echoId, "--json")).stdout) as Record<string, number>;
    expect(echo.triggers).toBeGreaterThanOrEqual(2);
    expect(echo.failures).toBe(0);
    expect(echo.mean_ms).toBeGreaterThan(0);
    expect(echo.last_ms).toBeGreaterThan(0);
    expect(echo.memory_bytes).toBeGreaterThan(0);
    const info = JSON.parse((await nex("node", "info", node.nodeId, "--json")).stdout) as { node_id: string; xkey: string };
    expect(info.node_id).toBe(node.nodeId);
    expect(info.xkey).toMatch(/^X/);
  });

  it("is discoverable as a NATS micro service", async () => {
    const replies = await nc.requestMany("$SRV.PING.nex-node", "", { strategy: "stall", stall: 300, maxWait: 2000 });
    const ids: string[] = [];
    for await (const m of replies) ids.push((m.json() as { id: string }).id);
    expect(ids).toContain(node.nodeId);
  });

  it("sends console.log lines to the log feed", async () => {
    const sub = nc.subscribe(ControlSubjects.logs("default", echoId, "stdout"), { max: 1 });
    await nc.flush();
    await nc.request("echo", "12345", { timeout: 5000 });
    for await (const m of sub) expect(m.string()).toBe("echo on echo: 5 bytes");
  });

  it("passes --env values sealed to the node's xkey into the function", async () => {
    const run = await nex("run", fixture("env.js"), "--trigger-subject", "env.greet", "--env", "GREETING=hello from the sealed box");
    expect(run.code, run.stderr).toBe(0);
    expect(decode((await nc.request("env.greet", "", { timeout: 5000 })).data)).toBe("hello from the sealed box");
  });

  it("turns a throw into an error reply and a trigger_failed event", async () => {
    const run = await nex("run", fixture("throw.js"), "--trigger-subject", "fail.now");
    expect(run.code).toBe(0);
    const events = nc.subscribe("$NEX.FEED.default.events.trigger_failed", { max: 1 });
    await nc.flush();
    const reply = await nc.request("fail.now", "x", { timeout: 5000 });
    expect(reply.headers?.get("Nex-Error")).toContain("refusing x");
    for await (const e of events) expect((e.json() as { data: { error: string } }).data.error).toContain("refusing x");
  });

  it("ends a looping trigger at its deadline and keeps serving", async () => {
    const run = await nex("run", fixture("loop.js"), "--trigger-subject", "loop", "--trigger-timeout", "300ms");
    expect(run.code).toBe(0);
    const reply = await nc.request("loop", "", { timeout: 10_000 });
    expect(reply.headers?.get("Nex-Error")).toMatch(/time/i);
    expect(decode((await nc.request("echo", "still here", { timeout: 5000 })).data)).toBe("still here");
    const again = await nc.request("loop", "", { timeout: 10_000 });
    expect(again.headers?.get("Nex-Error")).toMatch(/time/i);
  });

  let tableId = "";

  it("runs a JavaScript service (nex run --service): subscriptions, timers, state, workload info, restart with events", async () => {
    const run = await nex("run", fixture("table-service.js"), "--service", "--restart", "on-failure:3", "--env", "TABLE=e2e", "--trigger-timeout", "500ms");
    expect(run.code, run.stderr).toBe(0);
    tableId = run.stdout.trim();
    expect(JSON.parse(await firstAnswer(nc, "table.e2e.join", "ann"))).toEqual({ seats: ["ann"] });
    const again = await nc.request("table.e2e.join", "ann", { timeout: 5000 });
    expect(again.headers?.get("Nex-Error")).toBe("ann is seated already");
    const state = JSON.parse(decode((await nc.request("table.e2e.state", "", { timeout: 5000 })).data)) as { turn: number; seats: string[]; node: string };
    expect(state).toMatchObject({ seats: ["ann"], node: node.nodeId });
    const info = JSON.parse((await nex("workload", "info", tableId, "--json")).stdout) as { state: string; memory_bytes: number; service: Record<string, unknown> };
    expect(info.state).toBe("running");
    expect(info.memory_bytes).toBeGreaterThan(0);
    expect(info.service).toMatchObject({ state: "running", restarts: 0, subscriptions: ["table.e2e.join", "table.e2e.state", "table.e2e.hang"], timers: 1 });
    const text = await nex("workload", "info", tableId);
    expect(text.stdout).toMatch(/service\.subscriptions\s+table\.e2e\.join, table\.e2e\.state, table\.e2e\.hang/);
    // A handler that loops ends the run; the node restarts it and says so on the event feed.
    const exited = nc.subscribe("$NEX.FEED.default.events.workload_exited", { max: 1 });
    const restarted = nc.subscribe("$NEX.FEED.default.events.workload_restarted", { max: 1 });
    await nc.flush();
    const hung = await nc.request("table.e2e.hang", "", { timeout: 10_000 });
    expect(hung.headers?.get("Nex-Error")).toMatch(/time|run ended/);
    for await (const e of exited) expect((e.json() as { data: unknown }).data).toMatchObject({ workload_id: tableId, reason: "timeout", restarts: 0, restart_in_ms: 100 });
    for await (const e of restarted) expect((e.json() as { data: unknown }).data).toMatchObject({ workload_id: tableId, restarts: 1 });
    // Memory state starts over with the run (state that must survive goes to KV).
    expect(JSON.parse(await firstAnswer(nc, "table.e2e.join", "bob"))).toEqual({ seats: ["bob"] });
    expect(JSON.parse((await nex("workload", "info", tableId, "--json")).stdout).service).toMatchObject({ restarts: 1, last_exit: expect.stringMatching(/^timeout: /) });
    // Bad input gets a clear error.
    const bad = await nex("run", fixture("table-service.js"), "--service", "--concurrency", "2");
    expect(bad.code).toBe(4);
    expect(bad.stderr).toMatch(/concurrency: is for javascript functions only/);
  });

  describe("refuses bad deploy requests and changes nothing", () => {
    // The node accepts the local issuer by default: the key `nex run` signs with in this NEX_HOME.
    const localIssuer = () => fromSeed(new TextEncoder().encode(readFileSync(path.join(t.home, "issuer.nk"), "utf8").trim()));
    const sha = "0".repeat(64);
    const valid = () => ({
      version: PROTOCOL_VERSION,
      name: "bad",
      type: "javascript",
      artifact: { url: "nats://NEX_ARTIFACTS/none", sha256: sha },
      trigger_subjects: ["bad.subject"],
      requested_at: new Date().toISOString(),
    });
    async function deploy(body: unknown, sign = true, issuer = localIssuer()): Promise<{ code: number; message: string }> {
      const subject = ControlSubjects.deploy("default", node.nodeId);
      const data = new TextEncoder().encode(typeof body === "string" ? body : JSON.stringify(body));
      const h = natsHeaders();
      if (sign) for (const [k, v] of Object.entries(signRequest(issuer, subject, data))) h.set(k, v);
      const reply = await nc.request(subject, data, { timeout: 10_000, headers: h });
      expect(reply.headers?.get("Nex-Error")).toBeTruthy();
      return (reply.json() as { error: { code: number; message: string } }).error;
    }
    async function workloadCount(): Promise<number> {
      return (JSON.parse((await nex("workload", "ls", "--json")).stdout) as unknown[]).length;
    }

    it.each([
      ["not JSON", "{nope", 400, /not valid JSON/],
      ["missing fields", { version: 1 }, 400, /name/],
      ["unknown type", { ...valid(), type: "cobol" }, 400, /type/],
      ["forbidden $JS trigger", { ...valid(), trigger_subjects: ["$JS.API.>"] }, 400, /\$JS/],
      ["forbidden $NEX trigger", { ...valid(), trigger_subjects: ["$NEX.>"] }, 400, /\$NEX/],
      ["stale request", { ...valid(), requested_at: "2020-01-01T00:00:00Z" }, 401, /window/],
      ["a wildcard idempotency key", { ...valid(), idempotency_key: "orders.*" }, 400, /idempotency_key/],
      ["an oversized idempotency key", { ...valid(), idempotency_key: "k".repeat(65) }, 400, /idempotency_key/],
      ["an idempotency key of the wrong type", { ...valid(), idempotency_key: 42 }, 400, /idempotency_key/],
      ["missing artifact", valid(), 404, /not found/],
    ])("%s", async (_name, body, code, message) => {
      const before = await workloadCount();
      const error = await deploy(body);
      expect(error.code).toBe(code);
      expect(error.message).toMatch(message);
      expect(await workloadCount()).toBe(before);
    });

    it("a request signed by an issuer the node does not allow", async () => {
      const error = await deploy(valid(), true, createAccount());
      expect(error.code).toBe(403);
      expect(error.message).toMatch(/not allowed/);
    });

    it("an unsigned request", async () => {
      const error = await deploy(valid(), false);
      expect(error.code).toBe(401);
      expect(error.message).toMatch(/not signed/);
    });

    it("a wrong artifact hash", async () => {
      const run = await nex("run", ECHO, "--trigger-subject", "echo.hash"); // uploads the echo artifact
      expect(run.code).toBe(0);
      const sha256 = execFileSync("sha256sum", [ECHO], { encoding: "utf8" }).split(" ")[0];
      const error = await deploy({ ...valid(), artifact: { url: `nats://NEX_ARTIFACTS/${sha256}`, sha256: "f".repeat(64) } });
      expect(error.code).toBe(400);
      expect(error.message).toMatch(/hash mismatch/);
    });

    it("an unknown node, through the CLI", async () => {
      const res = await nex("run", ECHO, "--trigger-subject", "x.y", "--node", "N" + "A".repeat(55));
      expect(res.code).toBe(3);
      expect(res.stderr).toMatch(/^nex: no node/m);
    });
  });

  it("recovers from a runtime-host crash and redeploys its workloads", async () => {
    const restarted = nc.subscribe("$NEX.FEED.default.events.runtime_restarted", { max: 1 });
    await nc.flush();
    const children = execFileSync("ps", ["-o", "pid=,args=", "--ppid", String(node.child.pid)], { encoding: "utf8" })
      .split("\n")
      .filter((l) => l.includes("runtime-host"))
      .map((l) => Number(l.trim().split(/\s+/)[0]));
    expect(children.length).toBe(1);
    process.kill(children[0], "SIGKILL");
    for await (const e of restarted) expect((e.json() as { data: { workload_id: string } }).data.workload_id).toBeTruthy();
    expect(await firstAnswer(nc, "echo", "back")).toBe("back");
    // The service was redeployed on the new runtime host and its start ran again.
    expect(JSON.parse(await firstAnswer(nc, "table.e2e.join", "cy"))).toEqual({ seats: ["cy"] });
  });

  it("calls a service's stop(ctx) on nex workload stop", async () => {
    const closed = nc.subscribe("table.e2e.closed", { max: 1 });
    await nc.flush();
    expect((await nex("workload", "stop", tableId)).code).toBe(0);
    for await (const m of closed) expect(JSON.parse(m.string())).toEqual({ seats: ["cy"] });
  });

  it("stops a workload, and only for its issuer", async () => {
    const otherHome = tempDir("nex-other-");
    // Another user's issuer key, connecting with this broker's credentials (when it has any).
    const { user, pass } = t.connectOptions();
    const credentials = user ? ["--user", user, "--password", pass ?? ""] : [];
    const other = await runNex(["workload", "stop", echoId, "-s", node.url, ...credentials], { NEX_HOME: otherHome });
    removeDir(otherHome);
    expect(other.code).toBe(4);
    expect(other.stderr).toMatch(/is not allowed on this node/);
    const stop = await nex("workload", "stop", echoId);
    expect(stop.code).toBe(0);
    const req = await nex("req", "echo", "gone?");
    expect(req.code).toBe(3);
  });

  it("brings its workloads back after a restart", async () => {
    const run = await nex("run", fixture("counter.js"), "--trigger-subject", "count");
    expect(run.code).toBe(0);
    await nc.close();
    await node.stop();
    node = await t.up();
    nc = await connect(t.connectOptions());
    expect(await firstAnswer(nc, "count", "")).toBe("1");
    expect(decode((await nc.request("count", "", { timeout: 5000 })).data)).toBe("2");
  }, 60_000);

  it("drains and exits in lame duck mode", async () => {
    const res = await nex("node", "lameduck", node.nodeId);
    expect(res.code).toBe(0);
    expect(await node.exited).toBe(0);
  }, 30_000);
});
