// Hostile senders and workloads against a real `nex node up`, while a bystander function keeps answering:
// deploys that try to read the node's files (file:// artifacts, other buckets, symlinks, FIFOs), replayed
// and future-dated signed requests, idempotent retries, a namespace reaching for another namespace's
// trigger subjects, and a workload flooding its log feed. The last test asserts the bystander failed no
// request throughout. Runs against the bundled broker and against nats-server -js.

import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect, headers as natsHeaders, type NatsConnection } from "@nats-io/transport-node";
import { Objm } from "@nats-io/obj";
import { fromSeed, type KeyPair } from "@nats-io/nkeys";
import { signRequest } from "../src/protocol/signing.js";
import { ARTIFACT_BUCKET, ControlSubjects, PROTOCOL_VERSION } from "../src/protocol/control.js";
import { containersLabelled, docker, ociSkipReason, testImage } from "./helpers/docker.js";
import { describeEachServer } from "./helpers/servers.js";
import { waitFor } from "./helpers/wait.js";
import { RawClient } from "./helpers/raw.js";
import { makeTestCertificates } from "./helpers/certs.js";
import { NodeUnderTest, removeDir, ROOT, runNex, startNodeUp, tempDir } from "./helpers/nex-cli.js";

const ECHO = path.join(ROOT, "examples/echo/echo.js");
const decode = (b: Uint8Array): string => new TextDecoder().decode(b);
const sha256 = (bytes: Uint8Array | string): string => createHash("sha256").update(bytes).digest("hex");

const ociSkip = await ociSkipReason();

interface ErrorReply {
  error: { code: number; message: string };
}

describeEachServer("hostile senders and workloads", (kind) => {
  let t: NodeUnderTest;
  let nc: NatsConnection;
  let artifactDir: string;
  let issuer: KeyPair;
  const bystander = { sent: 0, failed: [] as string[], stop: false, done: Promise.resolve() };

  /** `nex <args>` against the node; the connection flag goes before a `--` (what follows is a container's command). */
  const nex = (...args: string[]) => {
    const at = args.includes("--") ? args.indexOf("--") : args.length;
    return runNex([...args.slice(0, at), "-s", t.node.url, ...args.slice(at)], t.env);
  };

  /** Sends a DEPLOY signed by `issuer` (or the given headers) and returns the parsed reply. */
  async function sendDeploy(body: Record<string, unknown>, namespace = "default"): Promise<Record<string, unknown> & Partial<ErrorReply>> {
    const subject = ControlSubjects.deploy(namespace, t.node.nodeId);
    const data = new TextEncoder().encode(JSON.stringify(body));
    return sendSigned(subject, data, signRequest(issuer, subject, data));
  }

  async function sendSigned(subject: string, data: Uint8Array, signed: Record<string, string>): Promise<Record<string, unknown> & Partial<ErrorReply>> {
    const h = natsHeaders();
    for (const [k, v] of Object.entries(signed)) h.set(k, v);
    return (await nc.request(subject, data, { timeout: 15_000, headers: h })).json();
  }

  const deployBody = (url: string, hash: string, extra: Record<string, unknown> = {}) => ({
    version: PROTOCOL_VERSION,
    name: "probe",
    type: "javascript",
    artifact: { url, sha256: hash },
    trigger_subjects: ["probe.x"],
    requested_at: new Date().toISOString(),
    ...extra,
  });

  /** Counts a workload's log lines, and keeps the node's dropped-lines notice apart. */
  function watchLogs(workloadId: string): { lines: number; notice: string; stop(): void } {
    const seen = { lines: 0, notice: "", stop: () => sub.unsubscribe() };
    const sub = nc.subscribe(`$NEX.FEED.default.logs.${workloadId}.*`, {
      callback: (_e, m) => {
        if (/^\[nex\] \d+ log lines of this workload were dropped/.test(m.string())) seen.notice = m.string();
        else seen.lines++;
      },
    });
    return seen;
  }

  async function workloadIds(namespace = "default"): Promise<string[]> {
    const res = await nex("workload", "ls", "--json", "-n", namespace);
    return (JSON.parse(res.stdout) as { id: string }[]).map((w) => w.id);
  }

  async function undeployIn(namespace: string, workloadId: string): Promise<void> {
    const subject = ControlSubjects.undeploy(namespace, workloadId);
    const data = new TextEncoder().encode(JSON.stringify({ version: PROTOCOL_VERSION, workload_id: workloadId, requested_at: new Date().toISOString() }));
    const reply = await sendSigned(subject, data, signRequest(issuer, subject, data));
    expect(reply.error).toBeUndefined();
  }

  async function uploadArtifact(source: string): Promise<{ url: string; hash: string }> {
    const hash = sha256(source);
    const store = await new Objm(nc).create(ARTIFACT_BUCKET);
    await store.putBlob({ name: hash }, new TextEncoder().encode(source));
    return { url: `nats://${ARTIFACT_BUCKET}/${hash}`, hash };
  }

  beforeAll(async () => {
    artifactDir = tempDir("nex-hostile-artifacts-");
    t = await NodeUnderTest.start(kind, "hostile", ["--artifact-dir", artifactDir]);
    nc = await connect(t.connectOptions());
    issuer = fromSeed(new TextEncoder().encode(readFileSync(path.join(t.home, "issuer.nk"), "utf8").trim())); // the node's default allow-list
    const run = await nex("run", ECHO, "--trigger-subject", "bystander", "--name", "bystander");
    expect(run.code, run.stderr).toBe(0);
    // The bystander: one request every 20 ms for the whole suite; every failure is kept with its reason.
    bystander.done = (async () => {
      while (!bystander.stop) {
        const body = `ping ${bystander.sent++}`;
        try {
          const reply = await nc.request("bystander", body, { timeout: 5000 });
          if (decode(reply.data) !== body) bystander.failed.push(`wrong answer ${decode(reply.data)} for ${body}`);
        } catch (err) {
          bystander.failed.push(`${body}: ${(err as Error).message}`);
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
  }, 60_000);

  afterAll(async () => {
    bystander.stop = true;
    await bystander.done;
    await nc?.close();
    await t?.stop();
    removeDir(artifactDir);
  });

  describe("artifacts come only from the object store or the operator's artifact directory", () => {
    it("refuses the node's own key files and system files, without echoing their hash or text", async () => {
      for (const file of [path.join(t.dataDir, "node.xk"), path.join(t.dataDir, "node.nk"), path.join(t.home, "issuer.nk"), "/etc/shadow", "/etc/hostname"]) {
        let real = "0".repeat(64);
        try {
          real = sha256(readFileSync(file));
        } catch {
          // unreadable here: the wrong-hash request is enough
        }
        for (const hash of ["f".repeat(64), real]) {
          const reply = await sendDeploy(deployBody(`file://${file}`, hash));
          expect(reply.error?.code, file).toBe(403);
          expect(reply.error?.message).not.toContain(real);
          expect(reply.error?.message).not.toMatch(/S[XNAU][A-Z2-7]{20}/);
        }
      }
      const escaped = await sendDeploy(deployBody(`file://${artifactDir}/../${path.basename(t.dataDir)}/node.xk`, "f".repeat(64)));
      expect(escaped.error?.code).toBe(403);
    });

    it("runs a file from the artifact directory", async () => {
      const source = readFileSync(ECHO);
      writeFileSync(path.join(artifactDir, "echo.js"), source);
      const reply = await sendDeploy(deployBody(`file://${artifactDir}/echo.js`, sha256(source), { name: "from-dir", trigger_subjects: ["from.dir"] }));
      expect(reply.error).toBeUndefined();
      expect(decode((await nc.request("from.dir", "via the artifact dir", { timeout: 5000 })).data)).toBe("via the artifact dir");
    });

    it("refuses a symlink that leads out of the artifact directory, even with the right hash", async () => {
      const target = path.join(t.dataDir, "node.xk");
      symlinkSync(target, path.join(artifactDir, "innocent.js"));
      const reply = await sendDeploy(deployBody(`file://${artifactDir}/innocent.js`, sha256(readFileSync(target))));
      expect(reply.error?.code).toBe(403);
      expect(reply.error?.message).toMatch(/outside/);
      expect(reply.error?.message).not.toMatch(/S[XN][A-Z2-7]{20}/);
    });

    it("refuses a FIFO at once instead of hanging on it", async () => {
      execFileSync("mkfifo", [path.join(artifactDir, "pipe.js")]);
      const reply = await sendDeploy(deployBody(`file://${artifactDir}/pipe.js`, "f".repeat(64)));
      expect(reply.error?.code).toBe(400);
      expect(reply.error?.message).toMatch(/not a regular file/);
    });

    it("does not quote a file artifact that fails to load", async () => {
      const source = "SECRET_TOKEN_4f9a2b;\n";
      writeFileSync(path.join(artifactDir, "secret.js"), source);
      const reply = await sendDeploy(deployBody(`file://${artifactDir}/secret.js`, sha256(source)));
      expect(reply.error?.code).toBe(422);
      expect(reply.error?.message).not.toContain("SECRET_TOKEN");
    });

    it("refuses buckets other than NEX_ARTIFACTS, and never names the real hash", async () => {
      const other = await sendDeploy(deployBody("nats://hso_default_probe/secret", "f".repeat(64)));
      expect(other.error?.code).toBe(403);
      const { url, hash } = await uploadArtifact("(s, p) => p");
      const wrong = await sendDeploy(deployBody(url, "e".repeat(64)));
      expect(wrong.error?.code).toBe(400);
      expect(wrong.error?.message).toMatch(/hash mismatch/);
      expect(wrong.error?.message).not.toContain(hash);
    });

    it("will not start with an artifact directory that holds its keys or lies inside its data", async () => {
      const parent = path.dirname(t.dataDir);
      await expect(startNodeUp(["--port", "0", "--data-dir", t.dataDir, "--artifact-dir", parent], t.env, 15_000)).rejects.toThrow(/holds keys/);
      // Under the data dir lie the node's keys and the broker's streams (every tenant's KV values).
      const inside = path.join(t.dataDir, "uploads");
      mkdirSync(inside);
      await expect(startNodeUp(["--port", "0", "--data-dir", t.dataDir, "--artifact-dir", inside], t.env, 15_000)).rejects.toThrow(/holds keys/);
    });
  });

  describe("signed requests are used once", () => {
    it("refuses a replayed DEPLOY and creates no second workload", async () => {
      const { url, hash } = await uploadArtifact("(s, p) => 'replayed? ' + new TextDecoder().decode(p)");
      const subject = ControlSubjects.deploy("default", t.node.nodeId);
      const data = new TextEncoder().encode(JSON.stringify(deployBody(url, hash, { name: "once", trigger_subjects: ["once.x"] })));
      const signed = signRequest(issuer, subject, data);
      const first = await sendSigned(subject, data, signed);
      expect(first.error).toBeUndefined();
      const before = await workloadIds();
      const again = await sendSigned(subject, data, signed);
      expect(again.error?.code).toBe(409);
      expect(again.error?.message).toMatch(/replayed/);
      expect(await workloadIds()).toEqual(before);
    });

    it("refuses a request dated more than 30 s ahead, and takes one a few seconds ahead", async () => {
      const { url, hash } = await uploadArtifact("(s, p) => 'ahead'");
      const ahead = (ms: number) => new Date(Date.now() + ms).toISOString();
      const far = await sendDeploy(deployBody(url, hash, { name: "ahead", trigger_subjects: ["ahead.far"], requested_at: ahead(270_000) }));
      expect(far.error?.code).toBe(401);
      expect(far.error?.message).toMatch(/future/);
      const near = await sendDeploy(deployBody(url, hash, { name: "ahead", trigger_subjects: ["ahead.near"], requested_at: ahead(5_000) }));
      expect(near.error).toBeUndefined();
    });

    it("gives a retried deploy with the same idempotency key the same workload", async () => {
      const { url, hash } = await uploadArtifact("(s, p) => 'idempotent'");
      const body = () => deployBody(url, hash, { name: "idem", trigger_subjects: ["idem.x"], idempotency_key: "order-42" });
      const first = await sendDeploy(body());
      const retry = await sendDeploy(body()); // signed anew, as a client retrying after a timeout does
      expect(first.error).toBeUndefined();
      expect(retry.workload_id).toBe(first.workload_id);
      expect((await workloadIds()).filter((id) => id === first.workload_id)).toHaveLength(1);
      const cli = await nex("run", ECHO, "--trigger-subject", "idem.cli", "--idempotency-key", "cli-1");
      const cliAgain = await nex("run", ECHO, "--trigger-subject", "idem.cli", "--idempotency-key", "cli-1");
      expect(cli.code, cli.stderr).toBe(0);
      expect(cliAgain.stdout.trim()).toBe(cli.stdout.trim());
    });
  });

  describe("rogue bidders get nothing sealed to them", () => {
    /** Answers every auction first, with `bid(real)` built from the real node's ping. */
    async function rogueAnswering(bid: (real: Record<string, unknown>) => Record<string, unknown>): Promise<{ deploys: string[]; stop(): void }> {
      const rogue = await connect(t.connectOptions());
      const real = JSON.parse((await nex("node", "ls", "--json")).stdout)[0] as Record<string, unknown>;
      const deploys: string[] = [];
      rogue.subscribe(ControlSubjects.auction("default"), { callback: (_e, m) => void m.respond(JSON.stringify(bid(real))) });
      rogue.subscribe("$NEX.SVC.default.control.DEPLOY.*", { callback: (_e, m) => void deploys.push(m.subject) });
      await rogue.flush();
      return { deploys, stop: () => void rogue.close() };
    }

    it("drops a bid whose xkey is not signed by its node id, and seals to the real node", async () => {
      const { createCurve } = await import("@nats-io/nkeys");
      const rogueXkey = createCurve().getPublicKey();
      const rogue = await rogueAnswering((real) => ({ ...real, xkey: rogueXkey, workload_count: 0 }));
      try {
        const run = await nex("run", path.join(ROOT, "test/fixtures/node/env.js"), "--trigger-subject", "sealed.greet", "--name", "sealed", "--env", "GREETING=for the real node only");
        expect(run.code, run.stderr).toBe(0);
        expect(decode((await nc.request("sealed.greet", "", { timeout: 5000 })).data)).toBe("for the real node only");
      } finally {
        rogue.stop();
      }
    });

    it("ignores a validly signed stranger when the sender pins its trusted nodes", async () => {
      const { createServer, createCurve } = await import("@nats-io/nkeys");
      const { signNodeXkey } = await import("../src/protocol/signing.js");
      const strangerKey = createServer();
      const strangerXkey = createCurve().getPublicKey();
      const stranger = await rogueAnswering((real) => ({
        ...real,
        node_id: strangerKey.getPublicKey(),
        xkey: strangerXkey,
        xkey_sig: signNodeXkey(strangerKey, strangerXkey),
        workload_count: 0,
      }));
      try {
        const run = await nex("run", ECHO, "--trigger-subject", "pinned.echo", "--name", "pinned", "--env", "K=v", "--trusted-node", t.node.nodeId);
        expect(run.code, run.stderr).toBe(0);
        expect(decode((await nc.request("pinned.echo", "pinned", { timeout: 5000 })).data)).toBe("pinned");
        expect(stranger.deploys.filter((subject) => subject.endsWith(strangerKey.getPublicKey()))).toEqual([]);
      } finally {
        stranger.stop();
      }
    });
  });

  describe("namespaces keep their trigger subjects", () => {
    it("refuses another namespace's subject, or one that overlaps it, and keeps a's requests with a", async () => {
      const a = await uploadArtifact("(s, p) => 'served by a'");
      const b = await uploadArtifact("(s, p) => 'served by b'");
      const mine = await sendDeploy(deployBody(a.url, a.hash, { name: "svc", trigger_subjects: ["orders.new"] }), "a");
      expect(mine.error).toBeUndefined();
      for (const subject of ["orders.new", "orders.*", "orders.>"]) {
        const theirs = await sendDeploy(deployBody(b.url, b.hash, { name: "svc", trigger_subjects: [subject] }), "b");
        expect(theirs.error?.code, subject).toBe(409);
        expect(theirs.error?.message).toMatch(/namespace a/);
      }
      const elsewhere = await sendDeploy(deployBody(b.url, b.hash, { name: "svc", trigger_subjects: ["b.orders.new"] }), "b");
      expect(elsewhere.error).toBeUndefined();
      for (let i = 0; i < 40; i++) expect(decode((await nc.request("orders.new", `${i}`, { timeout: 5000 })).data)).toBe("served by a");
      // The same namespace may add copies (they share the load in its queue group).
      const copy = await sendDeploy(deployBody(a.url, a.hash, { name: "svc", trigger_subjects: ["orders.new"] }), "a");
      expect(copy.error).toBeUndefined();
    });

    it("claims what a JavaScript service subscribes, so another namespace cannot deploy over it", async () => {
      const svc = await uploadArtifact(`export default { start(ctx) { ctx.subscribe("tables.1", () => "served by g's service"); } };`);
      const other = await uploadArtifact("(s, p) => 'served by h'");
      const service = await sendDeploy(deployBody(svc.url, svc.hash, { name: "lobby", service: true, trigger_subjects: [] }), "g");
      expect(service.error).toBeUndefined();
      expect(decode((await nc.request("tables.1", "hi", { timeout: 5000 })).data)).toBe("served by g's service");
      // The claim reaches this node's view through the bucket's watch: poll until the refusal comes.
      let theirs = await sendDeploy(deployBody(other.url, other.hash, { name: "grab", trigger_subjects: ["tables.>"] }), "h");
      for (let i = 0; i < 50 && theirs.error === undefined; i++) {
        await undeployIn("h", theirs.workload_id as string);
        await new Promise((r) => setTimeout(r, 100));
        theirs = await sendDeploy(deployBody(other.url, other.hash, { name: "grab", trigger_subjects: ["tables.>"] }), "h");
      }
      expect(theirs.error?.code).toBe(409);
      expect(theirs.error?.message).toMatch(/namespace g/);
      for (let i = 0; i < 20; i++) expect(decode((await nc.request("tables.1", `${i}`, { timeout: 5000 })).data)).toBe("served by g's service");
      // Undeployed, the service's subjects are free again.
      await undeployIn("g", service.workload_id as string);
      const after = await sendDeploy(deployBody(other.url, other.hash, { name: "grab", trigger_subjects: ["tables.>"] }), "h");
      expect(after.error).toBeUndefined();
      await undeployIn("h", after.workload_id as string);
    });

    it("lets only one of two namespaces racing for the same subject on one node have it", async () => {
      const e = await uploadArtifact("(s, p) => 'served by e'");
      const [first, second] = await Promise.all(
        ["e", "f"].map((ns) => sendDeploy(deployBody(e.url, e.hash, { name: "racer", trigger_subjects: ["race.x"] }), ns)),
      );
      const codes = [first.error?.code, second.error?.code].sort();
      expect(codes).toEqual([409, undefined]);
    });

    it("frees a namespace's subjects when its workload stops", async () => {
      const c = await uploadArtifact("(s, p) => 'served by c'");
      const first = await sendDeploy(deployBody(c.url, c.hash, { name: "lease", trigger_subjects: ["lease.x"] }), "c");
      expect(first.error).toBeUndefined();
      const refused = await sendDeploy(deployBody(c.url, c.hash, { name: "lease", trigger_subjects: ["lease.x"] }), "d");
      expect(refused.error?.code).toBe(409);
      const subject = ControlSubjects.undeploy("c", first.workload_id as string);
      const data = new TextEncoder().encode(JSON.stringify({ version: PROTOCOL_VERSION, workload_id: first.workload_id, requested_at: new Date().toISOString() }));
      expect((await sendSigned(subject, data, signRequest(issuer, subject, data))).error).toBeUndefined();
      const taken = await sendDeploy(deployBody(c.url, c.hash, { name: "lease", trigger_subjects: ["lease.x"] }), "d");
      expect(taken.error).toBeUndefined();
    });
  });

  it("rate-limits a workload's log feed and says how much it dropped", async () => {
    const flood = await uploadArtifact("(s, p) => { for (let i = 0; i < 1000; i++) console.log('flood line ' + i + ' ' + 'x'.repeat(40)); return 'flooded'; }");
    const deployed = await sendDeploy(deployBody(flood.url, flood.hash, { name: "flood", trigger_subjects: ["flood.x"] }));
    expect(deployed.error).toBeUndefined();
    const id = deployed.workload_id as string;
    const logs = watchLogs(id);
    const dropped = nc.subscribe("$NEX.FEED.default.events.feed_dropped");
    await nc.flush();
    const started = Date.now();
    for (let i = 0; i < 20; i++) expect(decode((await nc.request("flood.x", "", { timeout: 10_000 })).data)).toBe("flooded");
    const seconds = (Date.now() - started) / 1000 + 1;
    await waitFor("the dropped-lines notice", () => logs.notice !== "", 5_000);
    logs.stop();
    // 20,000 lines were written; the feed carries the burst and the rate, no more.
    expect(logs.lines).toBeLessThanOrEqual(1_000 + Math.ceil(200 * seconds));
    expect(logs.lines).toBeGreaterThan(0);
    expect(logs.notice).toMatch(/\d+ log lines of this workload were dropped/);
    for await (const e of dropped) {
      expect((e.json() as { data: { workload_id: string; dropped: number } }).data).toMatchObject({ workload_id: id });
      break;
    }
  }, 60_000);

  // Containers reach the broker as users the node mints, which only the bundled broker can: they run there.
  if (kind === "bundled") describe.skipIf(ociSkip !== undefined)(`containers${ociSkip ? ` (skipped: ${ociSkip})` : ""}`, () => {
    it("a container flooding its output reaches the feed only at its rate", async () => {
      const image = await testImage();
      const run = await nex("run", image, "--type", "oci", "--name", "loud", "--cpus", "0.5", "--", "sh", "-c", "while :; do echo flooding-the-feed-with-one-more-line; done");
      expect(run.code, run.stderr).toBe(0);
      const id = run.stdout.trim();
      const logs = watchLogs(id);
      const started = Date.now();
      await waitFor("the dropped-lines notice", () => logs.notice !== "", 15_000);
      await new Promise((r) => setTimeout(r, 2000));
      logs.stop();
      expect(logs.lines).toBeGreaterThan(0);
      expect(logs.lines).toBeLessThanOrEqual(1_000 + Math.ceil(200 * ((Date.now() - started) / 1000 + 1)));
      expect((await nex("workload", "stop", id, "--timeout", "30s")).code).toBe(0); // sh as PID 1 ignores SIGTERM: the grace period passes
    }, 60_000);

    it("a container connects as a user of its own, confined to its grant, and loses it at undeploy", async () => {
      const image = await testImage();
      const run = await nex("run", image, "--type", "oci", "--name", "greeter", "-t", "greet.me", "-e", "GREETING=hi");
      expect(run.code, run.stderr).toBe(0);
      const id = run.stdout.trim();
      await waitFor("the greeter to answer", async () => {
        try {
          return decode((await nc.request("greet.me", "you", { timeout: 1000 })).data) === "hi, you";
        } catch {
          return false;
        }
      }, 30_000, 200);
      const [container] = await containersLabelled(`io.nex.workload=${id}`);
      const env = (await docker.getContainer(container.Id).inspect()).Config.Env;
      const url = new URL(env.find((e) => e.startsWith("NEX_NATS_URL="))!.slice("NEX_NATS_URL=".length));
      expect(decodeURIComponent(url.username)).toBe(`wl-${id}`);
      expect(env).toContain(`NEX_INBOX_PREFIX=_INBOX.${id}`);
      // Acting as the container, with its credentials, on raw sockets.
      const raw = await RawClient.connect(Number(url.port));
      raw.send(`CONNECT ${JSON.stringify({ user: decodeURIComponent(url.username), pass: decodeURIComponent(url.password), verbose: false, pedantic: false })}\r\n`);
      await raw.sync();
      for (const [op, subject] of [["SUB", ">"], ["SUB", "bystander"], ["SUB", "$NEX.FEED.default.logs.>"], ["PUB", "bystander"], ["PUB", "$NEX.SVC.default.control.WORKLOADS"], ["PUB", `$NEX.HOST.default.someone-else.kv.get`], ["PUB", "$JS.API.STREAM.INFO.KV_hs_default_create"]]) {
        raw.send(op === "SUB" ? `SUB ${subject} 9\r\n` : `PUB ${subject} 0\r\n\r\n`);
        await raw.waitFor(new RegExp(`-ERR 'Permissions Violation for ${op === "SUB" ? "Subscription" : "Publish"} to "${subject.replace(/[.*+?^$()|[\]\\>]/g, "\\$&")}"'`));
      }
      // Its own host services answer (kv.keys on its own bucket), through its own inbox.
      raw.send(`SUB _INBOX.${id}.r 7\r\nPUB $NEX.HOST.default.${id}.kv.keys _INBOX.${id}.r 0\r\n\r\n`);
      await raw.waitFor(/MSG _INBOX\.\S+ 7 /);
      // ...but not to a subject it does not hold: its own host services (or a pull on its own KV stream)
      // would otherwise publish there for it.
      raw.send(`PUB $NEX.HOST.default.${id}.kv.keys bystander 0\r\n\r\n`);
      await raw.waitFor(/-ERR 'Permissions Violation for Publish with Reply of "bystander"'/);
      expect(raw.closed).toBe(false);
      expect((await nex("workload", "stop", id, "--timeout", "30s")).code).toBe(0);
      await raw.waitClose(10_000);
      expect(raw.text()).toMatch(/Authorization Violation/);
    }, 90_000);

    it("a fork bomb stops at the container's pids limit", async () => {
      const image = await testImage();
      const run = await nex("run", image, "--type", "oci", "--name", "bomb", "--pids", "64", "--cpus", "0.5", "--", "sh", "-c", "b() { b | b & }; b; sleep 60");
      expect(run.code, run.stderr).toBe(0);
      const id = run.stdout.trim();
      await new Promise((r) => setTimeout(r, 3000));
      const [container] = await containersLabelled(`io.nex.workload=${id}`);
      const stats = (await docker.getContainer(container.Id).stats({ stream: false })) as { pids_stats?: { current?: number } };
      expect(stats.pids_stats?.current).toBeGreaterThan(1);
      expect(stats.pids_stats?.current).toBeLessThanOrEqual(64);
      expect((await nex("workload", "stop", id, "--timeout", "30s")).code).toBe(0); // sh as PID 1 ignores SIGTERM: the grace period passes
      expect(await containersLabelled(`io.nex.workload=${id}`)).toEqual([]);
    }, 60_000);
  });

  it("the bystander failed no request throughout", async () => {
    await new Promise((r) => setTimeout(r, 200));
    expect(bystander.sent).toBeGreaterThan(50);
    expect(bystander.failed).toEqual([]);
  });
});

describe("the bundled broker of nex node up", () => {
  it("refuses anonymous clients and wrong passwords; nex commands and the recorded URL get in", async () => {
    const t = await NodeUnderTest.start("bundled", "auth");
    try {
      const { servers, user, pass } = t.connectOptions();
      expect(user).toBe("nex");
      await expect(connect({ servers, reconnect: false })).rejects.toThrow(/Authorization Violation/);
      await expect(connect({ servers, user, pass: `${pass}x`, reconnect: false })).rejects.toThrow(/Authorization Violation/);
      const local = JSON.parse(readFileSync(path.join(t.home, "local-broker.json"), "utf8")) as { url_with_credentials: string };
      for (const file of [path.join(t.home, "local-broker.json"), path.join(t.dataDir, "broker-users.json")]) expect(statSync(file).mode & 0o777).toBe(0o600);
      const run = await runNex(["run", ECHO, "--trigger-subject", "auth.echo", "-s", t.node.url], t.env);
      expect(run.code, run.stderr).toBe(0);
      // From anywhere, with the URL that carries the credentials (as the nats CLI takes them).
      const elsewhere = tempDir("nex-auth-elsewhere-");
      try {
        const req = await runNex(["req", "auth.echo", "via the url", "-s", local.url_with_credentials], { NEX_HOME: elsewhere });
        expect(req.stdout.trim(), req.stderr).toBe("via the url");
        const refused = await runNex(["req", "auth.echo", "anonymous", "-s", t.node.url], { NEX_HOME: elsewhere });
        expect(refused.code).toBe(1);
        expect(refused.stderr).toMatch(/authorization failed/);
        expect(refused.stderr).not.toContain(pass);
      } finally {
        removeDir(elsewhere);
      }
    } finally {
      await t.stop();
    }
  }, 60_000);

  it("serves TLS with --tls-cert/--tls-key: plain clients are refused, the runtimes and the CLI connect over TLS", async () => {
    const certDir = tempDir("nex-node-tls-");
    const certs = makeTestCertificates(certDir);
    const t = await NodeUnderTest.start("bundled", "tls", ["--tls-cert", certs.serverCert, "--tls-key", certs.serverKey, "--tls-ca", certs.ca]);
    try {
      const { servers, user, pass } = t.connectOptions();
      await expect(connect({ servers, user, pass, reconnect: false, timeout: 3000 })).rejects.toThrow();
      const nc = await connect({ servers, user, pass, tls: { caFile: certs.ca } });
      try {
        // The node's runtime host connects over TLS too: the function answers.
        const run = await runNex(["run", ECHO, "--trigger-subject", "tls.echo", "-s", t.node.url], t.env);
        expect(run.code, run.stderr).toBe(0);
        expect(decode((await nc.request("tls.echo", "over tls", { timeout: 5000 })).data)).toBe("over tls");
        const req = await runNex(["req", "tls.echo", "from the cli", "-s", t.node.url], t.env);
        expect(req.stdout.trim(), req.stderr).toBe("from the cli");
      } finally {
        await nc.close();
      }
    } finally {
      await t.stop();
      removeDir(certDir);
    }
  }, 60_000);

  it("with a broker config of tenant users, a tenant reads its own namespace and not another's", async () => {
    const dir = tempDir("nex-tenants-");
    const conf = path.join(dir, "broker.conf");
    writeFileSync(
      conf,
      `authorization { users: [
  { user: nex-node, password: node-secret }
  { user: alice, password: alice-secret, permissions: {
      publish: { allow: ["$NEX.SVC.a.>"] }
      subscribe: { allow: ["_INBOX_alice.>", "$NEX.FEED.a.>"] } } }
] }
`,
    );
    // The node must be told which of the file's users it is.
    await expect(NodeUnderTest.start("bundled", "tenants-nouser", ["--broker-config", conf])).rejects.toThrow(/give the node one of its users/);
    const t = await NodeUnderTest.start("bundled", "tenants", ["--broker-config", conf, "--user", "nex-node", "--password", "node-secret"]);
    const aliceHome = tempDir("nex-alice-");
    try {
      // The operator (the node's user, recorded for this NEX_HOME) deploys one workload in a and one in b.
      for (const ns of ["a", "b"]) {
        const run = await runNex(["run", ECHO, "--trigger-subject", `${ns}.echo`, "--name", `echo-${ns}`, "-n", ns, "-s", t.node.url], t.env);
        expect(run.code, run.stderr).toBe(0);
      }
      const alice = (ns: string) =>
        runNex(["workload", "ls", "--json", "-n", ns, "-s", t.node.url, "--user", "alice", "--password", "alice-secret", "--inbox-prefix", "_INBOX_alice"], { NEX_HOME: aliceHome });
      const own = await alice("a");
      expect(own.code, own.stderr).toBe(0);
      expect((JSON.parse(own.stdout) as { name: string }[]).map((w) => w.name)).toEqual(["echo-a"]);
      const other = await alice("b");
      expect(other.stdout).not.toContain("echo-b");
      // Without the inbox prefix, alice cannot even hear answers.
      const noPrefix = await runNex(["workload", "ls", "--json", "-n", "a", "-s", t.node.url, "--user", "alice", "--password", "alice-secret"], { NEX_HOME: aliceHome });
      expect(noPrefix.stdout).not.toContain("echo-a");
    } finally {
      await t.stop();
      removeDir(aliceHome);
      removeDir(dir);
    }
  }, 60_000);

  it("admits anonymous clients with --no-auth", async () => {
    const t = await NodeUnderTest.start("bundled", "noauth", ["--no-auth"]);
    try {
      const nc = await connect({ servers: t.node.url, reconnect: false });
      await nc.close();
      expect(t.node.output()).toMatch(/auth: +off/);
    } finally {
      await t.stop();
    }
  }, 60_000);
});

describe("the default data directory", () => {
  it("is NEX_HOME/node, apart from the issuer's key", async () => {
    const home = tempDir("nex-home-default-");
    try {
      const node = await startNodeUp(["--port", "0"], { NEX_HOME: home });
      try {
        const run = await runNex(["run", ECHO, "--trigger-subject", "home.echo", "-s", node.url], { NEX_HOME: home });
        expect(run.code, run.stderr).toBe(0);
      } finally {
        await node.stop();
      }
      expect(readFileSync(path.join(home, "node", "node.nk"), "utf8")).toMatch(/^SN/);
      expect(readFileSync(path.join(home, "issuer.nk"), "utf8")).toMatch(/^SA/);
    } finally {
      removeDir(home);
    }
  }, 30_000);
});
