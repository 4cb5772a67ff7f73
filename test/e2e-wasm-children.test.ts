// Workloads that deploy workloads, from a WebAssembly component: examples/wasm/component/lobby.ts calls
// nex:host/workloads (wit/nex.wit) under a grant from `nex run lobby-component.wasm --allow-deploy`,
// through the real CLI and a real broker (both kinds). A JavaScript child and a wasm child, listed,
// answering and undeployed; `forbidden` without a grant, for an artifact outside it and for another
// parent's child; a bad spec told as `bad_request`; the parent's undeploy taking its children along.

import path from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { connect, type Msg, type NatsConnection } from "@nats-io/transport-node";
import { describeEachServer } from "./helpers/servers.js";
import { NodeUnderTest, runNex } from "./helpers/nex-cli.js";
import { buildWasmExamples } from "./helpers/wasm-fixtures.js";
import { eventually } from "./helpers/wait.js";

const decode = (b: Uint8Array): string => new TextDecoder().decode(b);

interface Child {
  workload_id: string;
  node_id: string;
  name?: string;
}

describeEachServer("a wasm component that deploys workloads", (kind) => {
  let t: NodeUnderTest;
  let nc: NatsConnection;
  let lobbyWasm: string;
  let echoWasm: string;

  const nex = (...args: string[]) => runNex([...args, "-s", t.node.url], t.env);
  const run = async (...args: string[]): Promise<string> => {
    const r = await nex("run", ...args);
    expect(r.stderr).not.toMatch(/nex: /);
    expect(r.code).toBe(0);
    return r.stdout.trim();
  };
  const ask = (subject: string, command: string): Promise<Msg> => nc.request(subject, command, { timeout: 10_000 });
  /** The lobby's JSON answer to a command (fails on an error reply). */
  const lobby = async <T = Child>(subject: string, command: string): Promise<T> => {
    const reply = await ask(subject, command);
    expect(reply.headers?.get("Nex-Error"), command).toBeUndefined();
    return JSON.parse(decode(reply.data)) as T;
  };
  /** The lobby's error reply to a command: "<code>: <message>". */
  const refusal = async (subject: string, command: string): Promise<string> => {
    const reply = await ask(subject, command);
    const error = reply.headers?.get("Nex-Error");
    expect(error, `${command} answered ${decode(reply.data)}`).toBeDefined();
    return error!;
  };
  const workloads = async (): Promise<{ id: string; name: string; parent_id?: string }[]> => JSON.parse((await nex("workload", "ls", "--json")).stdout);
  const noAnswer = async (subject: string): Promise<boolean> => {
    try {
      await nc.request(subject, "x", { timeout: 500 });
      return false;
    } catch {
      return true;
    }
  };

  beforeAll(async () => {
    const examples = buildWasmExamples();
    lobbyWasm = path.join(examples, "lobby-component.wasm");
    echoWasm = path.join(examples, "echo-component.wasm");
    t = await NodeUnderTest.start(kind, "wasm-children");
    nc = await connect(t.connectOptions());
  }, 60_000);

  afterAll(async () => {
    await nc?.close();
    await t?.stop();
  });

  it("deploys a JavaScript child and a wasm child, lists them, they answer, it undeploys them", async () => {
    // As a person types it: relative paths, from the repository's root (runNex's working directory).
    const parent = await run(path.relative(process.cwd(), lobbyWasm), "-t", "wlobby.a", "--allow-deploy", "./test/fixtures/children/table.js", "--allow-deploy", echoWasm, "--max-children", "3", "--trigger-timeout", "10s");

    const table = await lobby("wlobby.a", "deploy t1 wtable.a1 table.js TABLE=one");
    expect(table).toEqual({ workload_id: expect.stringMatching(/^[0-9a-f]{20}$/), node_id: t.node.nodeId });
    expect(decode((await nc.request("wtable.a1", "deal", { timeout: 5000 })).data)).toBe("table one: deal");
    // The default artifact is table.js.
    const plain = await lobby("wlobby.a", "deploy t2 wtable.a2");
    expect(decode((await nc.request("wtable.a2", "x", { timeout: 5000 })).data)).toBe("table ?: x");
    const echo = await lobby("wlobby.a", "deploy e1 wecho.a1 echo-component.wasm");
    expect(decode((await nc.request("wecho.a1", "from a wasm child", { timeout: 10_000 })).data)).toBe("from a wasm child");

    const listed = await lobby<Child[]>("wlobby.a", "list");
    expect(listed.map((c) => [c.name, c.workload_id, c.node_id]).sort()).toEqual(
      [["e1", echo.workload_id, t.node.nodeId], ["t1", table.workload_id, t.node.nodeId], ["t2", plain.workload_id, t.node.nodeId]].sort(),
    );
    const all = await workloads();
    for (const child of [table, plain, echo]) expect(all.find((w) => w.id === child.workload_id)?.parent_id).toBe(parent);
    // A fourth is one more than --max-children 3.
    expect(await refusal("wlobby.a", "deploy t4 wtable.a4")).toMatch(/^forbidden: .*already has the 3 children its grant allows/);

    expect(await lobby("wlobby.a", `undeploy ${table.workload_id}`)).toEqual({ ok: true });
    expect(await noAnswer("wtable.a1")).toBe(true);
    expect(await lobby("wlobby.a", `undeploy ${echo.workload_id}`)).toEqual({ ok: true });
    expect(await noAnswer("wecho.a1")).toBe(true);
    expect((await lobby<Child[]>("wlobby.a", "list")).map((c) => c.workload_id)).toEqual([plain.workload_id]);

    // Undeploying the parent stops the child it still has.
    const stop = await nex("workload", "stop", parent);
    expect(stop.code, stop.stderr).toBe(0);
    await eventually("the child stops with its parent", async () => expect(await noAnswer("wtable.a2")).toBe(true));
    expect((await workloads()).some((w) => w.id === plain.workload_id)).toBe(false);
  }, 90_000);

  it("is refused what the grant does not give: no grant, an artifact outside it, another parent's child, a bad spec", async () => {
    await run(lobbyWasm, "-t", "wlobby.b", "--allow-deploy", "./test/fixtures/children/table.js");
    const before = (await workloads()).length;
    for (const command of ["deploy x wother.b other.js", "deploy x wother.b echo-component.wasm", `deploy x wother.b ${"0".repeat(64)}`, "deploy x wother.b ../table.js"]) {
      expect(await refusal("wlobby.b", command)).toMatch(/^forbidden: artifact .* is not in this workload's grant \(it may deploy: table\.js\)$/);
    }
    // A spec of the JavaScript face's shape, passed as it is: checked by the node the same way.
    expect(await refusal("wlobby.b", 'deploy {"name":"x","artifact":"table.js","trigger_subjects":["wother.b"],"colour":"red"}')).toMatch(/^bad_request: workloads\.deploy: /);
    expect(await refusal("wlobby.b", 'deploy {"name":"no subjects","artifact":"table.js"}')).toMatch(/^bad_request: /);
    expect(await refusal("wlobby.b", "deploy {not json")).toMatch(/^bad_request: workloads\.deploy takes an object/);
    expect((await workloads()).length).toBe(before);
    expect(await noAnswer("wother.b")).toBe(true);

    // A spec in JSON works too, and that child is b's alone.
    const child = await lobby("wlobby.b", 'deploy {"name":"b1","artifact":"table.js","trigger_subjects":["wtable.b1"],"env":{"TABLE":"b"}}');
    expect(decode((await nc.request("wtable.b1", "hi", { timeout: 5000 })).data)).toBe("table b: hi");
    await run(lobbyWasm, "-t", "wlobby.c", "--allow-deploy", "./test/fixtures/children/table.js");
    expect(await refusal("wlobby.c", `undeploy ${child.workload_id}`)).toBe(`forbidden: workload ${child.workload_id} is not a child of this workload`);
    expect(await lobby("wlobby.c", "list")).toEqual([]);

    // Deployed without --allow-deploy: every call is forbidden.
    await run(lobbyWasm, "-t", "wlobby.none");
    for (const command of ["deploy x wnone.x", "list", `undeploy ${child.workload_id}`]) {
      expect(await refusal("wlobby.none", command)).toMatch(/^forbidden: this workload may not deploy workloads: it was deployed without a grant/);
    }
    expect(decode((await nc.request("wtable.b1", "still", { timeout: 5000 })).data)).toBe("table b: still");
    expect(await lobby("wlobby.b", `undeploy ${child.workload_id}`)).toEqual({ ok: true });
  }, 90_000);
});
