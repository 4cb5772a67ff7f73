// WebAssembly workloads end to end through the real CLI: `nex node up` in a child process (with its
// bundled broker, and against nats-server -js), `nex run ./x.wasm` for a WASI command and for components (type detected from the file,
// form from the wasm header), host services from a component, guests that fail, and deploys refused
// with a clear message while everything else keeps serving.

import fs from "node:fs";
import { readFileSync } from "node:fs";
import path from "node:path";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type NodeProcess, NodeUnderTest, removeDir, runNex, tempDir } from "./helpers/nex-cli.js";
import { describeEachServer } from "./helpers/servers.js";
import { Bystander } from "./helpers/bystander.js";
import { buildWasmExamples, command, component, handleModule, TABLE_BOMB, TABLE_BOMB_THEN_TRAP, wat, writeLoop } from "./helpers/wasm-fixtures.js";

const decode = (b: Uint8Array): string => new TextDecoder().decode(b);

/** The process ids of `pid`'s children whose command line matches `pattern`. */
function childrenOf(pid: number, pattern: RegExp): number[] {
  const children = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
  return children.filter((c) => {
    try {
      return pattern.test(readFileSync(`/proc/${c}/cmdline`, "latin1"));
    } catch {
      return false;
    }
  });
}

describeEachServer("WebAssembly workloads end to end", (kind) => {
  let t: NodeUnderTest;
  let node: NodeProcess;
  let nc: NatsConnection;
  let fixtures: string;
  let examples: string;

  const nex = (...args: string[]) => runNex([...args, "-s", node.url], t.env);

  async function fixture(name: string, bytes: Promise<Uint8Array>): Promise<string> {
    const file = path.join(fixtures, name);
    fs.writeFileSync(file, await bytes);
    return file;
  }

  beforeAll(async () => {
    examples = buildWasmExamples();
    fixtures = tempDir("nex-wasm-fixtures-");
    t = await NodeUnderTest.start(kind, "wasm");
    node = t.node;
    nc = await connect(t.connectOptions());
  }, 60_000);

  afterAll(async () => {
    await nc?.close();
    await t?.stop();
    if (fixtures) removeDir(fixtures);
  });

  it("runs a WASI command: nex run ./echo-wasi.wasm --trigger-subject", async () => {
    const run = await nex("run", path.join(examples, "echo-wasi.wasm"), "--trigger-subject", "wasi.echo");
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout.trim()).toMatch(/^[0-9a-f]{20}$/);
    expect(decode((await nc.request("wasi.echo", "hello wasi", { timeout: 5000 })).data)).toBe("hello wasi");
    const req = await nex("req", "wasi.echo", "from the cli");
    expect(req.stdout.trim()).toBe("from the cli");
  });

  it("runs a component, and one using KV host services keeps its count across triggers", async () => {
    const echo = await nex("run", path.join(examples, "echo-component.wasm"), "--trigger-subject", "component.echo");
    expect(echo.code, echo.stderr).toBe(0);
    expect(decode((await nc.request("component.echo", "hello component", { timeout: 5000 })).data)).toBe("hello component");

    const counter = await nex("run", path.join(examples, "counter-component.wasm"), "--trigger-subject", "visits.>");
    expect(counter.code, counter.stderr).toBe(0);
    const id = counter.stdout.trim();
    const logs = nc.subscribe(`$NEX.FEED.default.logs.${id}.stdout`, { max: 1 });
    await nc.flush();
    const counts: string[] = [];
    for (const subject of ["visits.home", "visits.home", "visits.about", "visits.home"]) {
      counts.push(decode((await nc.request(subject, "", { timeout: 5000 })).data));
    }
    expect(counts).toEqual(["1", "2", "1", "3"]);
    for await (const m of logs) expect(m.string()).toBe("visits.home is at 1");
    const stored = await nex("kv", "get", "counter-component", "visits.home");
    expect(stored.stdout.trim()).toBe("3");
  });

  it("answers a trap, an exit code and a loop with error replies, and keeps every workload serving", async () => {
    const trap = await nex("run", await fixture("trap.wasm", command("unreachable")), "--trigger-subject", "bad.trap");
    const exit = await nex("run", await fixture("exit.wasm", command("(call $exit (i32.const 7))")), "--trigger-subject", "bad.exit");
    const loop = await nex("run", await fixture("loop.wasm", component(handleModule("(loop $spin (br $spin))"))), "--trigger-subject", "bad.loop", "--trigger-timeout", "300ms");
    for (const r of [trap, exit, loop]) expect(r.code, r.stderr).toBe(0);
    expect((await nc.request("bad.trap", "", { timeout: 5000 })).headers?.get("Nex-Error")).toMatch(/^trap: unreachable/);
    expect((await nc.request("bad.exit", "", { timeout: 5000 })).headers?.get("Nex-Error")).toBe("the module exited with code 7");
    const timedOut = await nc.request("bad.loop", "", { timeout: 5000 });
    expect(timedOut.headers?.get("Nats-Service-Error-Code")).toBe("504");
    expect(decode((await nc.request("wasi.echo", "still here", { timeout: 5000 })).data)).toBe("still here");
    expect(decode((await nc.request("component.echo", "still here", { timeout: 5000 })).data)).toBe("still here");
  });

  it("refuses invalid wasm, a module without _start and a component without handle, with the reason", async () => {
    const garbage = await fixture("garbage.wasm", Promise.resolve(new TextEncoder().encode("this is not wasm")));
    const reactor = await fixture("reactor.wasm", wat(`(module (memory (export "memory") 1) (func (export "init")))`));
    const noHandle = await fixture("no-handle.wasm", component(`(module (func (export "run")))`, "package test:other;\nworld other { export run: func(); }", "other"));
    const cases: [string, RegExp][] = [
      [garbage, /not a WebAssembly binary/],
      [reactor, /no _start export/],
      [noHandle, /does not export a handle function/],
    ];
    for (const [file, reason] of cases) {
      const run = await nex("run", file, "--trigger-subject", `refused.${path.basename(file, ".wasm")}`);
      expect(run.code).toBe(4);
      expect(run.stderr).toMatch(reason);
    }
    const workloads = JSON.parse((await nex("workload", "ls", "--json")).stdout) as { name: string }[];
    expect(workloads.map((w) => w.name)).not.toContain("garbage");
    expect(decode((await nc.request("wasi.echo", "unaffected", { timeout: 5000 })).data)).toBe("unaffected");
  });

  it("survives issue 12's table bomb (--memory 32): an error reply, the node alive, and a bystander that failed nothing", async () => {
    const bomb = await nex("run", await fixture("table-bomb.wasm", wat(TABLE_BOMB)), "--trigger-subject", "hostile.table", "--memory", "32");
    const trapping = await nex("run", await fixture("table-bomb-trap.wasm", wat(TABLE_BOMB_THEN_TRAP)), "--trigger-subject", "hostile.table.trap", "--memory", "32");
    for (const r of [bomb, trapping]) expect(r.code, r.stderr).toBe(0);
    const watcher = new Bystander(nc, "wasi.echo");
    try {
      // table.grow is refused at the cap: the bomb returns, its trapping twin answers with the trap.
      expect((await nc.request("hostile.table", "", { timeout: 10_000 })).headers?.get("Nex-Error")).toBeUndefined();
      for (let i = 0; i < 3; i++) {
        expect((await nc.request("hostile.table.trap", "", { timeout: 10_000 })).headers?.get("Nex-Error")).toMatch(/^trap: unreachable/);
      }
    } finally {
      await watcher.stop();
    }
    expect(watcher.failures).toEqual([]);
    expect(watcher.answered).toBeGreaterThan(0);
    expect(node.child.exitCode).toBeNull();
    expect(node.child.signalCode).toBeNull();
  });

  it("answers a stderr flood at its 3 s deadline while a bystander fails nothing", async () => {
    const flood = await nex("run", await fixture("flood.wasm", writeLoop(2, `${"x".repeat(1023)}\n`)), "--trigger-subject", "hostile.flood", "--trigger-timeout", "3s");
    expect(flood.code, flood.stderr).toBe(0);
    const watcher = new Bystander(nc, "wasi.echo");
    let reply;
    try {
      reply = await nc.request("hostile.flood", "", { timeout: 30_000 }); // bounds the wait only
    } finally {
      await watcher.stop();
    }
    expect(reply.headers?.get("Nats-Service-Error-Code")).toBe("504");
    expect(reply.headers?.get("Nats-Service-Error")).toMatch(/did not finish within 3000 ms/);
    expect(watcher.failures).toEqual([]);
  });

  it("runs wasm in a runtime-host child: killed, it comes back (runtime_restarted) with its workloads serving", async () => {
    const survivor = path.join(fixtures, "survivor.wasm");
    fs.copyFileSync(path.join(examples, "echo-wasi.wasm"), survivor);
    const run = await nex("run", survivor, "--trigger-subject", "wasi.survivor");
    expect(run.code, run.stderr).toBe(0);
    const hosts = childrenOf(node.child.pid!, /nex-wasm-runtime-host|wasm\/runtime-host\.js/);
    expect(hosts).toHaveLength(1);
    const restarted = nc.subscribe("$NEX.FEED.default.events.runtime_restarted", { timeout: 30_000 });
    await nc.flush();
    process.kill(hosts[0], "SIGKILL");
    for await (const m of restarted) {
      if ((m.json() as { data: { name: string } }).data.name === "survivor") break;
    }
    expect(decode((await nc.request("wasi.survivor", "back again", { timeout: 10_000 })).data)).toBe("back again");
    expect(childrenOf(node.child.pid!, /nex-wasm-runtime-host|wasm\/runtime-host\.js/)).not.toContain(hosts[0]);
    expect(node.child.exitCode).toBeNull();
  });
});
