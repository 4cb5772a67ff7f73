// OCI workloads end to end: `nex node up` (against nats-server with a password, so the container must use
// the credentials the node hands it) and the real CLI against the real Docker engine. A container deployed
// with `nex run --type oci` answers requests, its lines reach the log feed, `nex workload info` shows the
// container, crashes come back as events and restarts, a bad deploy leaves nothing, a node killed with
// SIGKILL adopts its container on the next start and removes strays, stop and lame duck leave no container,
// and a node whose engine is away still starts and says so on deploy.

import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import { containersLabelled, docker, ociSkipReason, removeLabelled, testImage } from "./helpers/docker.js";
import { type NodeProcess, removeDir, runNex, startNodeUp, tempDir } from "./helpers/nex-cli.js";
import { type RunningServer, startServer, unavailableReason } from "./helpers/servers.js";
import { waitFor } from "./helpers/wait.js";

const skip = (await ociSkipReason()) ?? unavailableReason("nats-server");

interface Event {
  type: string;
  data: Record<string, unknown>;
}

/** Everything published on a subject, in order, for later assertions. */
function record<T>(sub: Subscription, map: (subject: string, data: Uint8Array) => T): T[] {
  const seen: T[] = [];
  void (async () => {
    for await (const m of sub) seen.push(map(m.subject, m.data));
  })();
  return seen;
}

const decoder = new TextDecoder();

describe.skipIf(skip !== undefined)(`oci workloads end to end${skip ? ` (skipped: ${skip})` : ""}`, () => {
  const user = "nex-node";
  const password = `p@ss ${randomBytes(4).toString("hex")}`;
  let server: RunningServer;
  let node: NodeProcess;
  let nc: NatsConnection;
  let image: string;
  let dataDir: string;
  let home: string;
  let events: Event[];
  let logs: { workload: string; stream: string; line: string }[];

  const env = () => ({ NEX_HOME: home });
  /** `nex <args>` with the connection flags, which go before a `--` (what follows is the container's command). */
  const nex = (...args: string[]) => {
    const at = args.includes("--") ? args.indexOf("--") : args.length;
    return runNex([...args.slice(0, at), "-s", server.url, "--user", user, "--password", password, ...args.slice(at)], env());
  };
  const up = (...extra: string[]) =>
    startNodeUp(["--server", server.url, "--user", user, "--password", password, "--data-dir", dataDir, "--workload-types", "javascript,oci", ...extra], env());
  const containersOf = (workloadId: string) => containersLabelled(`io.nex.workload=${workloadId}`);
  const eventsOf = (workloadId: string) => events.filter((e) => e.data.workload_id === workloadId);

  async function request(subject: string, body: string): Promise<string> {
    // The container subscribes a moment after `nex run` returns.
    for (let i = 0; ; i++) {
      try {
        return decoder.decode((await nc.request(subject, body, { timeout: 1000 })).data);
      } catch (err) {
        if (i >= 50) throw err;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  beforeAll(async () => {
    dataDir = tempDir("nex-oci-node-");
    home = tempDir("nex-oci-home-");
    [server, image] = await Promise.all([startServer("nats-server", { jetstream: true, auth: { users: [{ user, password }] } }), testImage()]);
    nc = await connect({ servers: server.url, user, pass: password });
    events = record(nc.subscribe("$NEX.FEED.default.events.>"), (_s, d) => JSON.parse(decoder.decode(d)) as Event);
    logs = record(nc.subscribe("$NEX.FEED.default.logs.>"), (subject, d) => {
      const [, , , , workload, stream] = subject.split(".");
      return { workload, stream, line: decoder.decode(d) };
    });
    node = await up();
  }, 60_000);

  afterAll(async () => {
    await node?.stop();
    if (node) await removeLabelled(`io.nex.node=${node.nodeId}`);
    await nc?.close();
    await server?.stop();
    removeDir(dataDir);
    removeDir(home);
  });

  let greeterId = "";

  it("deploys an image with nex run; the container answers with the credentials it was given", async () => {
    const run = await nex("run", "--type", "oci", image, "-t", "e2e.greet", "-e", "GREETING=hi", "--memory", "64", "--cpus", "0.5", "--pids", "64");
    expect(run.stderr).not.toMatch(/nex: /);
    expect(run.code).toBe(0);
    greeterId = run.stdout.trim();
    expect(greeterId).toMatch(/^[0-9a-f]{20}$/);
    expect(await request("e2e.greet", "there")).toBe("hi, there");

    const [container] = await containersOf(greeterId);
    const inspect = await docker.getContainer(container.Id).inspect();
    expect(inspect.HostConfig).toMatchObject({ Memory: 64 * 1024 * 1024, NanoCpus: 500_000_000, PidsLimit: 64 });
    expect(inspect.Config.Env).toContain(`NEX_NATS_URL=${server.url.replace("://", `://${user}:${encodeURIComponent(password)}@`)}`);
    // workload_preparing first: the node says it may pull the image before the container starts.
    expect(eventsOf(greeterId).map((e) => e.type)).toEqual(["io.nats.nex.v1.workload_preparing", "io.nats.nex.v1.workload_deployed", "io.nats.nex.v1.workload_started"]);
    expect(eventsOf(greeterId)[0].data).toMatchObject({ workload_id: greeterId, waiting_for: expect.stringContaining(image) });
  });

  it("sends the container's output to the log feed", async () => {
    await waitFor("the log lines", () => logs.some((l) => l.workload === greeterId && l.line === "greet on e2e.greet: 5 bytes"));
    expect(logs.filter((l) => l.workload === greeterId).map((l) => `${l.stream}: ${l.line}`)).toEqual([
      'stdout: greeter ready: 1 subject(s), greeting "hi"',
      "stdout: greet on e2e.greet: 5 bytes",
    ]);
  });

  it("shows the container, its state, restarts and resource use in workload info", async () => {
    const info = JSON.parse((await nex("workload", "info", greeterId, "--json")).stdout) as { state: string; container: Record<string, unknown> };
    const [container] = await containersOf(greeterId);
    expect(info.state).toBe("running");
    expect(info.container).toMatchObject({ id: container.Id, image, state: "running", restarts: 0, memory_limit_bytes: 64 * 1024 * 1024 });
    expect(info.container.memory_bytes).toBeGreaterThan(0);
    expect(info.container.cpu_seconds).toBeGreaterThanOrEqual(0);
    const text = await nex("workload", "info", greeterId);
    expect(text.stdout).toMatch(new RegExp(`container\\.id\\s+${container.Id}`));
  });

  it("reports a crash and restarts the container as its restart policy asks", async () => {
    const run = await nex("run", "--type", "oci", image, "--name", "crasher", "--restart", "on-failure:1", "--", "sh", "-c", "echo boom >&2; exit 7");
    expect(run.code, run.stderr).toBe(0);
    const id = run.stdout.trim();
    await waitFor("the last exit", () => eventsOf(id).some((e) => e.type.endsWith("workload_exited") && e.data.restart_in_ms === null));
    expect(eventsOf(id).map((e) => [e.type.replace("io.nats.nex.v1.", ""), e.data.reason ?? null, e.data.exit_code ?? null, e.data.restart_in_ms ?? null])).toEqual([
      ["workload_preparing", null, null, null],
      ["workload_deployed", null, null, null],
      ["workload_started", null, null, null],
      ["workload_exited", "crashed", 7, 100],
      ["workload_restarted", null, null, null],
      ["workload_exited", "crashed", 7, null],
    ]);
    expect(logs.filter((l) => l.workload === id).map((l) => `${l.stream}: ${l.line}`)).toEqual(["stderr: boom", "stderr: boom"]);
    const listed = JSON.parse((await nex("workload", "ls", "--json")).stdout) as { id: string; state: string; container: { restarts: number; exit_code: number } }[];
    expect(listed.find((w) => w.id === id)).toMatchObject({ state: "failed", container: { restarts: 1, exit_code: 7 } });
    expect((await nex("workload", "stop", id)).code).toBe(0);
    expect(await containersOf(id)).toEqual([]);
  });

  it("refuses an image the engine does not have, and keeps no record and no container", async () => {
    const before = (JSON.parse((await nex("workload", "ls", "--json")).stdout) as unknown[]).length;
    const containersBefore = (await containersLabelled(`io.nex.node=${node.nodeId}`)).length;
    const run = await nex("run", "--type", "oci", "nex-test/no-such-image:1", "-t", "e2e.ghost");
    expect(run.code).toBe(4);
    expect(run.stderr).toMatch(/image nex-test\/no-such-image:1 is not on the node's engine and could not be pulled/);
    expect((JSON.parse((await nex("workload", "ls", "--json")).stdout) as unknown[]).length).toBe(before);
    expect((await containersLabelled(`io.nex.node=${node.nodeId}`)).length).toBe(containersBefore);
    expect(events.some((e) => e.type.endsWith("workload_failed") && String(e.data.error).includes("no-such-image"))).toBe(true);
  });

  it("after SIGKILL, the restarted node adopts its container and removes one it does not know", async () => {
    const [before] = await containersOf(greeterId);
    const stray = await docker.createContainer({
      Image: image,
      Cmd: ["sleep", "60"],
      Labels: { "io.nex.node": node.nodeId, "io.nex.workload": "stray" },
      HostConfig: { NetworkMode: "none" },
    });
    await stray.start();
    node.child.kill("SIGKILL");
    await node.exited;
    node = await up();
    expect((await containersOf(greeterId)).map((c) => c.Id)).toEqual([before.Id]);
    expect(await containersOf("stray")).toEqual([]);
    expect(await request("e2e.greet", "again")).toBe("hi, again");
  }, 30_000);

  it("stops a workload and removes its container", async () => {
    const stop = await nex("workload", "stop", greeterId);
    expect(stop.code).toBe(0);
    expect(await containersOf(greeterId)).toEqual([]);
    expect((await nex("req", "e2e.greet", "gone?")).code).toBe(3);
  });

  it("stops every container in lame duck mode", async () => {
    const run = await nex("run", "--type", "oci", image, "-t", "e2e.duck");
    expect(run.code, run.stderr).toBe(0);
    expect(await request("e2e.duck", "quack")).toBe("hello, quack");
    expect((await nex("node", "lameduck", node.nodeId)).code).toBe(0);
    expect(await node.exited).toBe(0);
    expect(await containersLabelled(`io.nex.node=${node.nodeId}`)).toEqual([]);
  }, 30_000);

  it("starts without a reachable engine and says so when asked for an oci workload", async () => {
    const otherDir = tempDir("nex-oci-noengine-");
    const other = await startNodeUp(["--port", "0", "--data-dir", otherDir, "--workload-types", "oci", "--docker-host", "unix:///nonexistent/docker.sock"], env());
    try {
      // Auctioned: the node bids but says its engine is down, and no other node bids.
      const run = await runNex(["run", "--type", "oci", image, "-t", "e2e.none", "-s", other.url], env());
      expect(run.code).toBe(4);
      expect(run.stderr).toMatch(/no node can run oci workloads now: .*Docker engine not reachable at \/nonexistent\/docker\.sock/);
      // Sent to the node by id: the deploy itself is refused with the reason.
      const direct = await runNex(["run", "--type", "oci", image, "-t", "e2e.none", "--node", other.nodeId, "-s", other.url], env());
      expect(direct.code).toBe(4);
      expect(direct.stderr).toMatch(/deploy failed: Docker engine not reachable at \/nonexistent\/docker\.sock/);
      expect(JSON.parse((await runNex(["workload", "ls", "--json", "-s", other.url], env())).stdout)).toEqual([]);
    } finally {
      await other.stop();
      removeDir(otherDir);
    }
  }, 30_000);
});
