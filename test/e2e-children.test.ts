// Workloads that deploy workloads (lobby and shard), end to end through the real CLI and a real broker:
// `nex run --allow-deploy`, a parent's this.hostServices.workloads, the grant and the node-signed child
// deploys, and what an attacker on the bus tries: a grant outside its artifacts or count, another's
// child, a captured grant reused, a child deploy replayed raw, one forged with a key of its own. Then a
// node restart, and two nodes (children spread, the cascade reaches the other). Both brokers.

import { readFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect, headers as natsHeaders, type Msg, type MsgHdrs, type NatsConnection } from "@nats-io/transport-node";
import { createAccount, createCurve, createServer, fromSeed, type KeyPair } from "@nats-io/nkeys";
import { Kvm } from "@nats-io/kv";
import { signNodeXkey, signRequest } from "../src/protocol/signing.js";
import { ControlSubjects, PROTOCOL_VERSION } from "../src/protocol/control.js";
import { ChildSubjects, signAsNode } from "../src/protocol/grants.js";
import { describeEachServer } from "./helpers/servers.js";
import { eventually, waitFor } from "./helpers/wait.js";
import { type NodeProcess, NodeUnderTest, removeDir, ROOT, runNex, startNodeUp, tempDir } from "./helpers/nex-cli.js";

const F = (name: string): string => path.join(ROOT, "test/fixtures/children", name);
const decode = (b: Uint8Array): string => new TextDecoder().decode(b);

interface Child {
  workload_id: string;
  node_id: string;
  name?: string;
}
interface Refusal {
  error: { code: string; message: string };
}

describeEachServer("workloads that deploy workloads", (kind) => {
  let t: NodeUnderTest;
  let nc: NatsConnection;
  let issuer: KeyPair;

  const nex = (...args: string[]) => runNex([...args, "-s", t.node.url], t.env);
  /** Asks a lobby fixture to do something with its children; its answer (or the refusal it caught). */
  const lobby = async <T = Child>(subject: string, cmd: object): Promise<T> => JSON.parse(decode((await nc.request(subject, JSON.stringify(cmd), { timeout: 8000 })).data)) as T;
  const run = async (...args: string[]): Promise<string> => {
    const r = await nex("run", ...args);
    expect(r.stderr).not.toMatch(/nex: /);
    expect(r.code).toBe(0);
    return r.stdout.trim();
  };
  const workloads = async (): Promise<{ id: string; name: string; node_id: string; parent_id?: string }[]> => JSON.parse((await nex("workload", "ls", "--json")).stdout);
  const noAnswer = async (subject: string): Promise<boolean> => {
    try {
      await nc.request(subject, "x", { timeout: 500 });
      return false;
    } catch {
      return true;
    }
  };

  beforeAll(async () => {
    t = await NodeUnderTest.start(kind, "children");
    nc = await connect(t.connectOptions());
    issuer = fromSeed(new TextEncoder().encode(readFileSync(path.join(t.home, "issuer.nk"), "utf8").trim()));
  }, 60_000);

  afterAll(async () => {
    await nc?.close();
    await t?.stop();
  });

  it("a parent deploys children through the auction, lists them and stops them (sync and async faces)", async () => {
    const parent = await run(F("lobby.js"), "-t", "lobby.a", "--allow-deploy", F("table.js"), "--max-children", "3");
    const child = await lobby("lobby.a", { op: "deploy", spec: { name: "t1", artifact: "table.js", trigger_subjects: ["table.a1"], env: { TABLE: "one" } } });
    expect(child).toMatchObject({ node_id: t.node.nodeId });
    expect(child.workload_id).toMatch(/^[0-9a-f]{20}$/);
    // The child runs its own code with the environment its parent gave it (sealed to its node).
    expect(decode((await nc.request("table.a1", "deal", { timeout: 5000 })).data)).toBe("table one: deal");
    // By SHA-256 as well as by file name.
    const sha = JSON.parse((await nex("workload", "info", child.workload_id, "--json")).stdout).sha256 as string;
    const second = await lobby("lobby.a", { op: "deploy", spec: { name: "t2", artifact: sha, trigger_subjects: ["table.a2"] } });
    expect(decode((await nc.request("table.a2", "x", { timeout: 5000 })).data)).toBe("table ?: x");
    const listed = await lobby<Child[]>("lobby.a", { op: "list" });
    expect(listed.map((c) => c.workload_id).sort()).toEqual([child.workload_id, second.workload_id].sort());
    expect(listed.find((c) => c.workload_id === child.workload_id)).toMatchObject({ name: "t1", node_id: t.node.nodeId });
    // workload ls names the parent.
    expect((await workloads()).find((w) => w.id === child.workload_id)?.parent_id).toBe(parent);

    expect(await lobby("lobby.a", { op: "undeploy", id: child.workload_id })).toEqual({ ok: true });
    expect(await noAnswer("table.a1")).toBe(true);
    expect((await lobby<Child[]>("lobby.a", { op: "list" })).map((c) => c.workload_id)).toEqual([second.workload_id]);
    expect((await workloads()).some((w) => w.id === child.workload_id)).toBe(false);

    // The async face, in an async function.
    await run(F("lobby-async.js"), "-t", "lobby.async", "--allow-deploy", F("table.js"));
    const c = await lobby("lobby.async", { op: "deploy", spec: { name: "ta", artifact: "table.js", trigger_subjects: ["table.async"], env: { TABLE: "async" } } });
    expect(decode((await nc.request("table.async", "hi", { timeout: 5000 })).data)).toBe("table async: hi");
    expect((await lobby<Child[]>("lobby.async", { op: "list" })).map((x) => x.workload_id)).toEqual([c.workload_id]);
    expect(await lobby("lobby.async", { op: "undeploy", id: c.workload_id })).toEqual({ ok: true });
    expect(await lobby("lobby.async", { op: "list" })).toEqual([]);
  }, 60_000);

  it("a parent's deploy that fails after its grant is bound (a trigger subject another namespace serves) leaves no binding", async () => {
    const registry = await new Kvm(nc).open("NEX_GRANTS");
    const bindings = async (): Promise<number> => {
      let n = 0;
      for await (const key of await registry.keys("g.>")) if ((await registry.get(key))?.operation === "PUT") n++;
      return n;
    };
    const before = await bindings();
    const owner = await nex("run", F("table.js"), "-t", "taken.by.other", "-n", "other");
    expect(owner.code).toBe(0);
    const refused = await nex("run", F("lobby.js"), "-t", "taken.by.other", "--allow-deploy", F("table.js"));
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/namespace other/);
    expect(await bindings()).toBe(before);
    expect((await nex("workload", "stop", owner.stdout.trim(), "-n", "other")).code).toBe(0);
  }, 60_000);

  it("refuses what the grant does not give: other artifacts, more children, another workload's child, no grant at all", async () => {
    await run(F("lobby.js"), "-t", "lobby.b", "--allow-deploy", F("table.js"), "--max-children", "2");
    const before = (await workloads()).length;
    // An artifact outside the grant (by name or by hash), or a path.
    for (const artifact of ["other.js", "0".repeat(64), "../other.js"]) {
      const r = await lobby<Refusal>("lobby.b", { op: "deploy", spec: { name: "x", artifact, trigger_subjects: ["other.b"] } });
      expect(r.error.code).toBe("forbidden");
      expect(r.error.message).toMatch(/not in this workload's grant \(it may deploy: table\.js\)/);
    }
    // A bad spec is told as such, before anything starts.
    const bad = await lobby<Refusal>("lobby.b", { op: "deploy", spec: { name: "no subjects", artifact: "table.js" } });
    expect(bad.error.code).toBe("bad_request");
    expect((await workloads()).length).toBe(before);

    const one = await lobby("lobby.b", { op: "deploy", spec: { name: "b1", artifact: "table.js", trigger_subjects: ["table.b1"] } });
    await lobby("lobby.b", { op: "deploy", spec: { name: "b2", artifact: "table.js", trigger_subjects: ["table.b2"] } });
    const third = await lobby<Refusal>("lobby.b", { op: "deploy", spec: { name: "b3", artifact: "table.js", trigger_subjects: ["table.b3"] } });
    expect(third.error).toMatchObject({ code: "forbidden" });
    expect(third.error.message).toMatch(/already has the 2 children its grant allows/);
    expect(await noAnswer("table.b3")).toBe(true);
    // Stopping one frees its slot.
    expect(await lobby("lobby.b", { op: "undeploy", id: one.workload_id })).toEqual({ ok: true });
    const again = await lobby("lobby.b", { op: "deploy", spec: { name: "b3", artifact: "table.js", trigger_subjects: ["table.b3"] } });
    expect(again.workload_id).toMatch(/^[0-9a-f]{20}$/);

    // Another parent may not stop b's child, nor may a workload stop itself through it.
    await run(F("lobby.js"), "-t", "lobby.c", "--allow-deploy", F("table.js"));
    const theirs = await lobby<Refusal>("lobby.c", { op: "undeploy", id: again.workload_id });
    expect(theirs.error).toMatchObject({ code: "forbidden", message: `workload ${again.workload_id} is not a child of this workload` });
    // Nor do wildcards, an empty id or a huge one stop anything (ids are compared, never matched as subjects).
    for (const id of ["*", ">", "", again.workload_id.slice(0, 10), "a".repeat(100_000)]) {
      const r = await lobby<Refusal>("lobby.b", { op: "undeploy", id });
      expect(["bad_request", "forbidden"], id.slice(0, 20)).toContain(r.error?.code);
    }
    expect(decode((await nc.request("table.b3", "still", { timeout: 5000 })).data)).toBe("table ?: still");

    // A workload deployed without --allow-deploy.
    await run(F("lobby.js"), "-t", "lobby.none");
    for (const cmd of [{ op: "deploy", spec: { name: "x", artifact: "table.js", trigger_subjects: ["x.none"] } }, { op: "list" }, { op: "undeploy", id: again.workload_id }]) {
      const r = await lobby<Refusal>("lobby.none", cmd);
      expect(r.error.code).toBe("forbidden");
      expect(r.error.message).toMatch(/deployed without a grant/);
    }
    expect(decode((await nc.request("table.b3", "still", { timeout: 5000 })).data)).toBe("table ?: still");

    // The CLI's own checks.
    const notAFunction = await nex("run", F("lobby.js"), "-t", "x.y", "--allow-deploy", path.join(ROOT, "README.md"));
    expect(notAFunction.code).toBe(2);
    expect(notAFunction.stderr).toMatch(/a child must be a JavaScript/);
    const alone = await nex("run", F("lobby.js"), "-t", "x.y", "--max-children", "3");
    expect(alone.code).toBe(2);
    expect(alone.stderr).toMatch(/--max-children goes with --allow-deploy/);
  }, 60_000);

  it("a child spec too large to send (a huge env) is refused and takes no slot", async () => {
    await run(F("lobby.js"), "-t", "lobby.m", "--allow-deploy", F("table.js"), "--max-children", "1");
    const huge = await lobby<Refusal>("lobby.m", { op: "deploy", spec: { name: "m1", artifact: "table.js", trigger_subjects: ["table.m1"], env: { BIG: "x".repeat(300_000) } } });
    expect(huge.error?.code).toBe("bad_request");
    expect(huge.error?.message).toMatch(/env/);
    expect(await lobby("lobby.m", { op: "list" })).toEqual([]);
    // Its one slot is still free.
    const ok = await lobby("lobby.m", { op: "deploy", spec: { name: "m2", artifact: "table.js", trigger_subjects: ["table.m2"], env: { SMALL: "y" } } });
    expect(ok.workload_id).toMatch(/^[0-9a-f]{20}$/);
  }, 60_000);

  it("a captured grant cannot serve another parent, and a raw replay of a deploy is refused", async () => {
    const captured: Msg[] = [];
    const sub = nc.subscribe(`$NEX.SVC.default.control.DEPLOY.${t.node.nodeId}`, { callback: (_e, m) => void captured.push(m) });
    await nc.flush();
    await run(F("lobby.js"), "-t", "lobby.d", "--allow-deploy", F("table.js"));
    sub.unsubscribe();
    expect(captured.length).toBe(1);
    const original = JSON.parse(decode(captured[0].data)) as Record<string, unknown>;
    expect(original.grant).toBeDefined();

    // The same issuer's new, validly signed deploy of another parent, with the captured grant.
    const subject = ControlSubjects.deploy("default", t.node.nodeId);
    const reuse = { ...original, name: "thief", trigger_subjects: ["thief.d"], requested_at: new Date().toISOString() };
    const r1 = await signed(subject, reuse, issuer);
    expect(r1.error).toMatchObject({ code: 409 });
    expect(r1.error?.message).toMatch(/already bound to another workload/);
    // Another issuer (not allowed here, and not the grant's).
    const r2 = await signed(subject, reuse, createAccount());
    expect(r2.error?.code).toBe(403);
    // The grant's own issuer deploying into another namespace: the grant names default.
    const r4 = await signed(ControlSubjects.deploy("other", t.node.nodeId), reuse, issuer);
    expect(r4.error).toMatchObject({ code: 403, message: "the deploy grant is for namespace default, not other" });
    // The captured request itself, replayed byte for byte.
    const r3 = reply(await nc.request(captured[0].subject, captured[0].data, { headers: copyHeaders(captured[0].headers), timeout: 5000 }));
    expect(r3.error).toMatchObject({ code: 409 });
    expect(await noAnswer("thief.d")).toBe(true);
    expect((await workloads()).filter((w) => w.name === "thief")).toEqual([]);
    // lobby.d's grant is still its own.
    const child = await lobby("lobby.d", { op: "deploy", spec: { name: "d1", artifact: "table.js", trigger_subjects: ["table.d1"] } });
    expect(child.workload_id).toMatch(/^[0-9a-f]{20}$/);
  }, 60_000);

  it("a child deploy replayed on the bus, or forged with a key that is not the parent's node's, starts nothing", async () => {
    await run(F("lobby.js"), "-t", "lobby.e", "--allow-deploy", F("table.js"), "--max-children", "3");
    const captured: Msg[] = [];
    const sub = nc.subscribe(ChildSubjects.deploy("default", t.node.nodeId), { callback: (_e, m) => void captured.push(m) });
    await nc.flush();
    const child = await lobby("lobby.e", { op: "deploy", spec: { name: "e1", artifact: "table.js", trigger_subjects: ["table.e1"] } });
    sub.unsubscribe();
    expect(captured.length).toBe(1);
    const count = (await workloads()).length;

    // Replayed raw: refused while the child runs, and after it has stopped.
    const raw = async (): Promise<{ error?: { code: number; message: string } }> =>
      reply(await nc.request(captured[0].subject, captured[0].data, { headers: copyHeaders(captured[0].headers), timeout: 5000 }));
    expect((await raw()).error).toMatchObject({ code: 409 });
    await lobby("lobby.e", { op: "undeploy", id: child.workload_id });
    expect((await raw()).error).toMatchObject({ code: 409 });
    expect(await noAnswer("table.e1")).toBe(true);

    // Forged: the captured grant and parent, a new child and slot, signed with a node key of the attacker's own.
    const body = JSON.parse(decode(captured[0].data)) as Record<string, unknown>;
    const forged = { ...body, child_id: "ab".repeat(10), slot: 1, requested_at: new Date().toISOString() };
    const data = new TextEncoder().encode(JSON.stringify(forged));
    const h = natsHeaders();
    for (const [k, v] of Object.entries(signAsNode(createServer(), captured[0].subject, data))) h.set(k, v);
    const f1 = reply(await nc.request(captured[0].subject, data, { headers: h, timeout: 5000 }));
    expect(f1.error).toMatchObject({ code: 403 });
    expect(f1.error?.message).toMatch(/bound to another parent or another node/);
    // Signed as an issuer (the person's own key), not as a node: still no.
    const f2 = reply(await nc.request(captured[0].subject, data, { headers: hdrs(signRequest(issuer, captured[0].subject, data)), timeout: 5000 }));
    expect(f2.error?.code).toBe(401);
    // Unsigned.
    const f3 = reply(await nc.request(captured[0].subject, data, { timeout: 5000 }));
    expect(f3.error?.code).toBe(401);
    expect((await workloads()).length).toBe(count - 1);
    expect((await workloads()).some((w) => w.id === "ab".repeat(10))).toBe(false);
  }, 60_000);

  it("a child stop forged with a key that is not the parent's node's, or unsigned, stops nothing", async () => {
    const parent = await run(F("lobby.js"), "-t", "lobby.k", "--allow-deploy", F("table.js"), "--max-children", "3");
    const k1 = await lobby("lobby.k", { op: "deploy", spec: { name: "k1", artifact: "table.js", trigger_subjects: ["table.k1"] } });
    // What an attacker on the bus can learn: the grant binding (NEX_GRANTS) and the ids.
    const grants = await new Kvm(nc).open("NEX_GRANTS");
    let grantId = "";
    for await (const key of await grants.keys("g.*")) {
      const entry = await grants.get(key);
      if (entry && (JSON.parse(entry.string()) as { parent: string }).parent === parent) grantId = key.slice(2);
    }
    expect(grantId).toMatch(/^[0-9a-f]{32}$/);
    const subject = ChildSubjects.undeploy("default", t.node.nodeId);
    const body = new TextEncoder().encode(
      JSON.stringify({ version: 1, requested_at: new Date().toISOString(), grant_id: grantId, parent_id: parent, child_id: k1.workload_id, reason: "undeployed by its parent" }),
    );
    // Signed with a node key of the attacker's own: the binding names another node.
    const h = natsHeaders();
    for (const [k, v] of Object.entries(signAsNode(createServer(), subject, body))) h.set(k, v);
    const f1 = reply(await nc.request(subject, body, { headers: h, timeout: 5000 }));
    expect(f1.error?.code).toBe(403);
    expect(f1.error?.message).toMatch(/not a child of the parent named, on the node that signed/);
    // Signed as the issuer (a person's key, not a node's), and unsigned.
    expect(reply(await nc.request(subject, body, { headers: hdrs(signRequest(issuer, subject, body)), timeout: 5000 })).error?.code).toBe(401);
    expect(reply(await nc.request(subject, body, { timeout: 5000 })).error?.code).toBe(401);
    // The child still runs.
    expect(decode((await nc.request("table.k1", "x", { timeout: 5000 })).data)).toBe("table ?: x");
    expect((await workloads()).some((w) => w.id === k1.workload_id)).toBe(true);
  }, 60_000);

  it("undeploying the parent undeploys its children", async () => {
    const parent = await run(F("lobby.js"), "-t", "lobby.f", "--allow-deploy", F("table.js"));
    const kids = [];
    for (const i of [1, 2]) kids.push(await lobby("lobby.f", { op: "deploy", spec: { name: `f${i}`, artifact: "table.js", trigger_subjects: [`table.f${i}`] } }));
    expect(decode((await nc.request("table.f2", "x", { timeout: 5000 })).data)).toBe("table ?: x");
    const stop = await nex("workload", "stop", parent);
    expect(stop.code).toBe(0);
    const ids = new Set(kids.map((k) => k.workload_id));
    await waitFor("the children to stop", async () => !(await workloads()).some((w) => ids.has(w.id)));
    expect(await noAnswer("table.f1")).toBe(true);
    expect(await noAnswer("table.f2")).toBe(true);
  }, 60_000);

  it("a child survives a node restart under its parent", async () => {
    const parent = await run(F("lobby.js"), "-t", "lobby.g", "--allow-deploy", F("table.js"));
    const child = await lobby("lobby.g", { op: "deploy", spec: { name: "g1", artifact: "table.js", trigger_subjects: ["table.g1"], env: { TABLE: "kept" } } });
    await t.node.stop();
    await t.up();
    await nc.close();
    nc = await connect(t.connectOptions());
    const answer = await eventually("the child after the restart", async () => decode((await nc.request("table.g1", "back", { timeout: 1000 })).data));
    expect(answer).toBe("table kept: back");
    expect((await workloads()).find((w) => w.id === child.workload_id)?.parent_id).toBe(parent);
    expect((await lobby<Child[]>("lobby.g", { op: "list" })).map((c) => c.workload_id)).toEqual([child.workload_id]);
    // Still its parent's to stop, and the cascade still works.
    const more = await lobby("lobby.g", { op: "deploy", spec: { name: "g2", artifact: "table.js", trigger_subjects: ["table.g2"] } });
    expect((await nex("workload", "stop", parent)).code).toBe(0);
    await waitFor("the children to stop", async () => !(await workloads()).some((w) => w.id === child.workload_id || w.id === more.workload_id));
  }, 90_000);

  it("with --trusted-node, a rogue bidder with a node key of its own never gets a child (nor its sealed env)", async () => {
    // The list names some other node: this node itself stays trusted without being listed.
    const trusted = await NodeUnderTest.start(kind, "children-trusted", ["--trusted-node", createServer().getPublicKey()]);
    const tnc = await connect(trusted.connectOptions());
    const run2 = (...args: string[]) => runNex([...args, "-s", trusted.node.url], trusted.env);
    try {
      // The rogue answers auctions for children tagged zone=rogue (which this node does not bid for, so the
      // rogue is the only bidder, with a correctly self-signed xkey) and listens for the child deploy that
      // would carry the env sealed to it.
      const rogue = createServer();
      const rogueX = createCurve();
      const stolen: Msg[] = [];
      let asked = 0;
      const bids = tnc.subscribe(ControlSubjects.auction("default"), {
        callback: (_e, m) => {
          if (JSON.parse(decode(m.data)).tags?.zone !== "rogue") return;
          asked++;
          m.respond(JSON.stringify({ node_id: rogue.getPublicKey(), name: "rogue", version: "0", uptime_s: 1, tags: { zone: "rogue" }, xkey: rogueX.getPublicKey(), xkey_sig: signNodeXkey(rogue, rogueX.getPublicKey()), workload_types: ["javascript", "wasm", "oci"], workload_count: 0, lame_duck: false }));
        },
      });
      const deploys = tnc.subscribe(ChildSubjects.deploy("default", rogue.getPublicKey()), { callback: (_e, m) => void stolen.push(m) });
      await tnc.flush();
      const parent = await run2("run", F("lobby.js"), "-t", "lobby.t", "--allow-deploy", F("table.js"));
      expect(parent.code).toBe(0);
      const ask = async (spec: object) => JSON.parse(decode((await tnc.request("lobby.t", JSON.stringify({ op: "deploy", spec }), { timeout: 8000 })).data));
      const refused = await ask({ name: "r1", artifact: "table.js", trigger_subjects: ["table.r1"], tags: { zone: "rogue" }, env: { SECRET: "s3" } });
      expect(asked).toBeGreaterThan(0);
      expect(refused.error).toMatchObject({ code: "no_responders" });
      expect(stolen).toEqual([]);
      // Children still go to this node itself.
      const child = (await ask({ name: "t1", artifact: "table.js", trigger_subjects: ["table.t1"] })) as Child;
      expect(child.node_id).toBe(trusted.node.nodeId);
      expect(decode((await tnc.request("table.t1", "x", { timeout: 5000 })).data)).toBe("table ?: x");
      bids.unsubscribe();
      deploys.unsubscribe();
    } finally {
      await tnc.close();
      await trusted.stop();
    }
  }, 90_000);

  describe("two nodes", () => {
    let second: NodeProcess | undefined;
    let secondDir = "";

    beforeAll(async () => {
      secondDir = tempDir("nex-children-second-");
      const auth = t.connectOptions();
      second = await startNodeUp(["--server", t.node.url, ...(auth.user ? ["--user", auth.user, "--password", auth.pass ?? ""] : []), "--data-dir", secondDir], t.env);
      await waitFor("both nodes to answer", async () => JSON.parse((await nex("node", "ls", "--json")).stdout).length === 2);
      // Both bid for a JavaScript child before the tests below count on where the auction sends it.
      await waitFor("both nodes to bid", async () => {
        const replies = await nc.requestMany(ControlSubjects.auction("default"), JSON.stringify({ version: PROTOCOL_VERSION, type: "javascript", tags: {} }), { strategy: "stall", stall: 200, maxWait: 2000 });
        let bids = 0;
        for await (const m of replies) if (m.data.length > 0) bids++;
        return bids === 2;
      });
    }, 60_000);

    afterAll(async () => {
      await second?.stop();
      if (secondDir) removeDir(secondDir);
    });

    it("children go by auction to the other node, and undeploying the parent reaches them there", async () => {
      const secondId = second?.nodeId;
      const parent = await run(F("lobby.js"), "-t", "lobby.h", "--allow-deploy", F("table.js"), "--max-children", "4", "--node", t.node.nodeId);
      const kids: Child[] = [];
      for (const i of [1, 2, 3, 4]) {
        kids.push(await lobby("lobby.h", { op: "deploy", spec: { name: `h${i}`, artifact: "table.js", trigger_subjects: [`table.h${i}`], env: { TABLE: `h${i}` } } }));
      }
      // The auction goes to the least-loaded bidder: the second node starts empty (the first runs this
      // suite's other workloads), so the children land there, away from their parent.
      expect(kids.every((k) => k.node_id === secondId)).toBe(true);
      for (const i of kids.keys()) expect(decode((await nc.request(`table.h${i + 1}`, "x", { timeout: 5000 })).data)).toBe(`table h${i + 1}: x`);
      const remote = kids.filter((k) => k.node_id === secondId);
      expect(remote.length).toBeGreaterThan(0);
      // The parent stops a child on the other node.
      expect(await lobby("lobby.h", { op: "undeploy", id: remote[0].workload_id })).toEqual({ ok: true });
      const idx = kids.indexOf(remote[0]) + 1;
      expect(await noAnswer(`table.h${idx}`)).toBe(true);
      // And undeploying the parent stops the rest, on both nodes.
      expect((await nex("workload", "stop", parent)).code).toBe(0);
      const ids = new Set(kids.map((k) => k.workload_id));
      await waitFor("the children on both nodes to stop", async () => !(await workloads()).some((w) => ids.has(w.id)));
      for (const i of [1, 2, 3, 4]) expect(await noAnswer(`table.h${i}`)).toBe(true);
    }, 90_000);

    it("a child whose slot is released stops on its node, even when no stop message reaches it", async () => {
      const parent = await run(F("lobby.js"), "-t", "lobby.i", "--allow-deploy", F("table.js"), "--node", t.node.nodeId);
      const kid = await lobby("lobby.i", { op: "deploy", spec: { name: "i1", artifact: "table.js", trigger_subjects: ["table.i1"] } });
      // The second node runs nothing else, so the auction sends the child there, away from its parent.
      expect(kid.node_id).toBe(second?.nodeId);
      expect(decode((await nc.request("table.i1", "x", { timeout: 5000 })).data)).toBe("table ?: x");
      // The parent's node releases a slot after its stop message to the child's node failed (a timeout,
      // a partition): here the release alone, with no UNDEPLOY_CHILD sent at all.
      const registry = await new Kvm(nc).open("NEX_GRANTS");
      let slotKey = "";
      for await (const key of await registry.keys("s.>")) {
        const entry = await registry.get(key);
        if (entry && (JSON.parse(entry.string()) as { child: string }).child === kid.workload_id) slotKey = key;
      }
      expect(slotKey).toMatch(/^s\./);
      await registry.delete(slotKey);
      await waitFor("the released child to stop on the other node", async () => !(await workloads()).some((w) => w.id === kid.workload_id));
      expect(await noAnswer("table.i1")).toBe(true);
      expect((await nex("workload", "stop", parent)).code).toBe(0);
    }, 60_000);
  });

  /** Sends a deploy body signed by `key`; the reply's error, if any. */
  async function signed(subject: string, body: object, key: KeyPair): Promise<{ error?: { code: number; message: string } }> {
    const data = new TextEncoder().encode(JSON.stringify(body));
    return reply(await nc.request(subject, data, { headers: hdrs(signRequest(key, subject, data)), timeout: 5000 }));
  }
});

function reply(m: Msg): { error?: { code: number; message: string } } {
  return JSON.parse(decode(m.data)) as { error?: { code: number; message: string } };
}

function hdrs(fields: Record<string, string>): MsgHdrs {
  const h = natsHeaders();
  for (const [k, v] of Object.entries(fields)) h.set(k, v);
  return h;
}

function copyHeaders(from: MsgHdrs | undefined): MsgHdrs {
  const h = natsHeaders();
  for (const k of from?.keys() ?? []) h.set(k, from?.get(k) ?? "");
  return h;
}
