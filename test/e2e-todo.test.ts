// The todo example end to end through the real CLI: create/list/get functions using KV host services,
// read back with `nex kv`, data surviving a node restart, host-service errors reaching the function,
// and namespace isolation. Against the bundled broker and nats-server -js.

import path from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { describeEachServer } from "./helpers/servers.js";
import { eventually } from "./helpers/wait.js";
import { type NodeProcess, NodeUnderTest, ROOT, runNex } from "./helpers/nex-cli.js";

const todo = (f: string): string => path.join(ROOT, "examples/todo", f);
const fixture = (f: string): string => path.join(ROOT, "test/fixtures/host", f);

describeEachServer("todo example end to end", (kind) => {
  let t: NodeUnderTest;
  let node: NodeProcess;
  const nex = (...args: string[]) => runNex([...args, "-s", node.url], t.env);

  /** Retries while a restarted node is still bringing its workloads back. */
  function reqEventually(subject: string, payload: string): Promise<string> {
    return eventually(`an answer on ${subject}`, async () => {
      const r = await nex("req", subject, payload, "--timeout", "1s");
      if (r.code !== 0) throw new Error(r.stderr);
      return r.stdout.trim();
    });
  }

  beforeAll(async () => {
    t = await NodeUnderTest.start(kind, "todo");
    node = t.node;
  }, 60_000);

  afterAll(async () => {
    await t?.stop();
  });

  it("creates, lists and gets todos", async () => {
    for (const [file, subject] of [["create.js", "todo.create"], ["list.js", "todo.list"], ["get.js", "todo.get"]]) {
      const run = await nex("run", todo(file), "--trigger-subject", subject);
      expect(run.code, run.stderr).toBe(0);
    }
    expect(JSON.parse((await nex("req", "todo.create", '{"id":"1","title":"milk"}')).stdout)).toEqual({ id: "1", status: "success" });
    expect(JSON.parse((await nex("req", "todo.create", '{"id":"2","title":"bread"}')).stdout)).toEqual({ id: "2", status: "success" });
    const bad = JSON.parse((await nex("req", "todo.create", "not json")).stdout) as { status: string; error: string };
    expect(bad.status).toBe("failed");
    expect(bad.error).toMatch(/not JSON/);
    expect(JSON.parse((await nex("req", "todo.list", "")).stdout)).toEqual([
      { id: "1", title: "milk" },
      { id: "2", title: "bread" },
    ]);
    expect(JSON.parse((await nex("req", "todo.get", "2")).stdout)).toEqual({ id: "2", title: "bread" });
    expect(JSON.parse((await nex("req", "todo.get", "9")).stdout).status).toBe("failed");
  });

  it("shows the data with nex kv", async () => {
    expect((await nex("kv", "ls", "create")).stdout.trim().split("\n")).toEqual(["1", "2"]);
    expect(JSON.parse((await nex("kv", "get", "create", "1")).stdout)).toEqual({ id: "1", title: "milk" });
    const missing = await nex("kv", "get", "create", "nope");
    expect(missing.code).toBe(3);
    // A name no workload's bucket can have is a usage error, named as the host services name it.
    const bad = await nex("kv", "get", "no/slash", "1");
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/bucket name "no\/slash" must be 1-64 letters, digits/);
    const buckets = JSON.parse((await nex("kv", "ls", "--json")).stdout) as { bucket: string; values: number }[];
    expect(buckets.find((b) => b.bucket === "create")?.values).toBe(2);
  });

  it("keeps the data across a node restart", async () => {
    await node.stop();
    node = await t.up();
    expect(JSON.parse(await reqEventually("todo.get", "1"))).toEqual({ id: "1", title: "milk" });
    expect(JSON.parse(await reqEventually("todo.list", ""))).toHaveLength(2);
  }, 60_000);

  it("turns host-service failures into exceptions with a code inside the function", async () => {
    const run = await nex("run", fixture("errors.js"), "--trigger-subject", "hs.errors");
    expect(run.code, run.stderr).toBe(0);
    const out = JSON.parse((await nex("req", "hs.errors", "")).stdout);
    expect(out.missing).toBeNull();
    expect(out.wrongRevision.code).toBe("wrong_revision");
    expect(out.tooLarge.code).toBe("too_large");
    expect(out.forbidden.code).toBe("forbidden");
    expect(out.noResponders.code).toBe("no_responders");
  });

  it("offers the same services as promises to an async function", async () => {
    const run = await nex("run", fixture("async-face.js"), "--trigger-subject", "hs.async");
    expect(run.code, run.stderr).toBe(0);
    expect(JSON.parse((await nex("req", "hs.async", "")).stdout)).toEqual({
      missing: null,
      updated: true,
      wrongRevision: "wrong_revision",
      tooLarge: "too_large",
      forbidden: "forbidden",
      noResponders: "no_responders",
      many: ["a", "b", "c", "d"],
    });
  });

  it("keeps namespaces apart", async () => {
    const run = await nex("run", fixture("peek.js"), "--trigger-subject", "peek", "--namespace", "other");
    expect(run.code, run.stderr).toBe(0);
    expect(JSON.parse((await nex("req", "peek", "")).stdout)).toEqual([]);
  });
});
