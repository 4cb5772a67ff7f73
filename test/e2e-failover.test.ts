// Placement that heals, end to end with real node processes: a node killed with kill -9 loses its
// workloads to a surviving node after the grace period (forged heartbeats cannot keep it "alive"), and
// does not run them again when it returns; lame duck --move hands workloads over; a registry entry that no
// allowed issuer signed is never run; one node per data directory.

import { readFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { connect, headers as natsHeaders, type NatsConnection } from "@nats-io/transport-node";
import { Kvm, type KV } from "@nats-io/kv";
import { createServer, createUser, fromSeed } from "@nats-io/nkeys";
import { signRequest } from "../src/protocol/signing.js";
import { ControlSubjects, PROTOCOL_VERSION } from "../src/protocol/control.js";
import { signAsNode } from "../src/protocol/grants.js";
import { heartbeatSubject } from "../src/node-agent/node-heartbeats.js";
import { placedSubject } from "../src/node-agent/failover.js";
import { describeEachServer } from "./helpers/servers.js";
import { eventually, waitFor } from "./helpers/wait.js";
import { NodeUnderTest, ROOT, runNex, startNodeUp, tempDir } from "./helpers/nex-cli.js";

const ECHO = path.join(ROOT, "test/fixtures/js/echo.js");
const GRACE = ["--failover-grace", "1s"];
const encoder = new TextEncoder();

interface Listed {
  id: string;
  name: string;
  node_id: string;
}

describeEachServer("failover: workloads of a lost node move to the nodes left", (kind) => {
  let t: NodeUnderTest;
  let nc: NatsConnection;
  let registry: KV;

  const nex = (...args: string[]) => runNex([...args, "-s", t.node.url], t.env);
  const workloads = async (): Promise<Listed[]> => JSON.parse((await nex("workload", "ls", "--json")).stdout) as Listed[];
  const echo = async (subject: string): Promise<string> => (await nc.request(subject, "hi", { timeout: 2000 })).string();
  const deployOn = async (nodeId: string, name: string, subject: string): Promise<string> => {
    const r = await nex("run", ECHO, "--name", name, "-t", subject, "--node", nodeId);
    expect(r.code, r.stderr).toBe(0);
    return r.stdout.trim();
  };

  beforeAll(async () => {
    t = await NodeUnderTest.start(kind, "failover", GRACE);
    nc = await connect(t.connectOptions());
    registry = await new Kvm(nc).open("NEX_WORKLOADS");
  }, 60_000);

  afterAll(async () => {
    await nc?.close();
    await t?.stop();
  });

  it("refuses a second node on the same data dir, naming the process that holds it", async () => {
    await expect(startNodeUp(["--port", "0", "--data-dir", t.dataDir], t.env)).rejects.toThrow(/data dir .+ is in use by another nex node \(pid \d+\)/);
    // The first node never noticed.
    const id = await deployOn(t.node.nodeId, "still-here", "fo.still");
    expect(await echo("fo.still")).toBe("fo.still: hi");
    expect((await nex("workload", "stop", id)).code).toBe(0);
  });

  it("moves a killed node's workload to a survivor, despite forged heartbeats, and does not run it twice when the node returns", async () => {
    const peerDir = tempDir("nex-peer-data-");
    const peer = await t.peer(GRACE, peerDir);
    const id = await deployOn(peer.nodeId, "moving", "fo.moving");
    expect(await echo("fo.moving")).toBe("fo.moving: hi");
    expect((await registry.get(id))?.json<{ owner: string }>().owner).toBe(peer.nodeId);

    // Someone on the bus tries to keep the dead node "alive": heartbeats for its id signed by another
    // node key, and one naming the peer as signer with a signature that is not the peer's.
    const impostor = createServer();
    const forge = setInterval(() => {
      const subject = heartbeatSubject(peer.nodeId);
      const body = encoder.encode(JSON.stringify({ node_id: peer.nodeId, at: Date.now(), lame_duck: false }));
      const byImpostor = natsHeaders();
      for (const [k, v] of Object.entries(signAsNode(impostor, subject, body))) byImpostor.set(k, v);
      nc.publish(subject, body, { headers: byImpostor });
      byImpostor.set("Nex-Node", peer.nodeId);
      nc.publish(subject, body, { headers: byImpostor });
    }, 300);
    try {
      peer.child.kill("SIGKILL");
      await peer.exited;
      const killedAt = Date.now();
      await eventually(
        "the workload running on the surviving node",
        async () => {
          const w = (await workloads()).find((x) => x.id === id);
          if (w?.node_id !== t.node.nodeId) throw new Error(`on ${w?.node_id ?? "no node"}`);
        },
        30_000,
      );
      console.log(`[${kind}] workload moved ${Date.now() - killedAt} ms after kill -9 (lost after 3.5 s, grace 1 s)`);
    } finally {
      clearInterval(forge);
    }
    expect(await echo("fo.moving")).toBe("fo.moving: hi");
    const entry = (await registry.get(id))?.json<{ owner: string; epoch: number }>();
    expect(entry).toMatchObject({ owner: t.node.nodeId, epoch: 1 });

    // The killed node comes back on its data dir (its lock is stale): the registry names another owner.
    const again = await t.peer(GRACE, peerDir);
    expect(again.nodeId).toBe(peer.nodeId);
    const copies = (await workloads()).filter((w) => w.id === id);
    expect(copies.map((w) => w.node_id)).toEqual([t.node.nodeId]);
    await again.stop();
    expect((await nex("workload", "stop", id)).code).toBe(0);
    await waitFor("the registry entry gone", async () => (await registry.get(id))?.operation !== "PUT");
  });

  it("lame duck --move hands the workloads to another node before the node exits", async () => {
    const peer = await t.peer(GRACE);
    const id = await deployOn(peer.nodeId, "handed", "fo.handed");
    const r = await nex("node", "lameduck", "--move", peer.nodeId);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/moves its workloads/);
    await peer.exited;
    const w = (await workloads()).find((x) => x.id === id);
    expect(w?.node_id).toBe(t.node.nodeId);
    expect(await echo("fo.handed")).toBe("fo.handed: hi");
    expect((await nex("workload", "stop", id)).code).toBe(0);
  });

  it("shrugs off placed notices it cannot use, and refuses a lame duck whose move is not a boolean", async () => {
    const bystander = await deployOn(t.node.nodeId, "bystander", "fo.bystander");
    const notices: (string | object)[] = ["not json", { workload_id: "*" }, { workload_id: ">" }, { workload_id: 5 }, { workload_id: "x".repeat(100_000) }, {}];
    for (const n of notices) nc.publish(placedSubject(t.node.nodeId), typeof n === "string" ? n : JSON.stringify(n));
    // A flood of notices for ids the registry does not have: each costs a KV get, a bounded number at once.
    for (let i = 0; i < 2000; i++) nc.publish(placedSubject(t.node.nodeId), JSON.stringify({ workload_id: `nosuch${i}` }));
    await nc.flush();
    expect(await echo("fo.bystander")).toBe("fo.bystander: hi");
    const ids = (await workloads()).map((w) => w.id);
    expect(ids).toContain(bystander);
    expect(ids.some((id) => id.startsWith("nosuch") || id === "*")).toBe(false);

    const localIssuer = fromSeed(encoder.encode(readFileSync(path.join(t.home, "issuer.nk"), "utf8").trim()));
    const subject = ControlSubjects.lameDuck(t.node.nodeId);
    const body = encoder.encode(JSON.stringify({ version: PROTOCOL_VERSION, requested_at: new Date().toISOString(), move: "yes" }));
    const h = natsHeaders();
    for (const [k, v] of Object.entries(signRequest(localIssuer, subject, body))) h.set(k, v);
    const reply = await nc.request(subject, body, { headers: h, timeout: 5000 });
    expect(reply.json<{ error?: { code: number } }>().error?.code).toBe(400);
    // The node did not go into lame duck: it still serves and still takes deploys.
    expect(await echo("fo.bystander")).toBe("fo.bystander: hi");
    expect((await nex("workload", "stop", bystander)).code).toBe(0);
  });

  it("never runs a registry entry that no allowed issuer signed, and removes it", async () => {
    const localIssuer = fromSeed(encoder.encode(readFileSync(path.join(t.home, "issuer.nk"), "utf8").trim()));
    const subject = ControlSubjects.deploy("default", t.node.nodeId);
    const request = {
      version: PROTOCOL_VERSION,
      type: "javascript",
      name: "forged",
      trigger_subjects: ["fo.forged"],
      tags: {},
      requested_at: new Date().toISOString(),
      artifact: { url: "nats://NEX_ARTIFACTS/nothing", sha256: "0".repeat(64) },
    };
    const body = encoder.encode(JSON.stringify(request));
    const signedBy = (kp: ReturnType<typeof createUser>, bytes: Uint8Array, signedBody = bytes) => {
      const h = signRequest(kp, subject, signedBody);
      return { subject, body: Buffer.from(bytes).toString("base64"), issuer: h["Nex-Issuer"], signature: h["Nex-Signature"] };
    };
    const tampered = encoder.encode(JSON.stringify({ ...request, name: "tampered" }));
    const cases = {
      unsigned: undefined,
      "a stranger's key": signedBy(createUser(), body),
      "a tampered body": signedBy(localIssuer, tampered, body),
    };
    for (const [what, signed] of Object.entries(cases)) {
      const id = `forged${Object.keys(cases).indexOf(what)}`;
      const entry = { id, namespace: "default", issuer: localIssuer.getPublicKey(), request, owner: t.node.nodeId, epoch: 0, ...(signed ? { signed } : {}) };
      await registry.put(id, JSON.stringify(entry));
      await waitFor(`the node to remove the entry with ${what}`, async () => (await registry.get(id))?.operation !== "PUT", 10_000);
      expect((await workloads()).some((w) => w.id === id), what).toBe(false);
    }
    await expect(nc.request("fo.forged", "hi", { timeout: 500 })).rejects.toThrow();
  });
});
