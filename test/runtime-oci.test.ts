// The oci runtime against the real Docker engine: a service container answering on NATS, its log lines
// (none lost when it exits at once), limits and dropped privileges as the engine reports them, exits,
// crashes and OOM kills reported and restarted with backoff, stop with SIGTERM then SIGKILL, adoption and
// clean-up after a node restart, and deploys that fail without leaving a container.

import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { describeZodError } from "../src/protocol/control.js";
import { DeployRequestSchema } from "../src/protocol/deploy-request.js";
import { natsUrlWithAuth } from "../src/runtimes/oci/container-config.js";
import { lineWriter } from "../src/runtimes/oci/log-lines.js";
import { OciRuntime } from "../src/runtimes/oci/oci-runtime.js";
import type { ContainerOptions, RuntimeObserver, ContainerSpec } from "../src/runtimes/types.js";
import { containersLabelled, docker, killSignals, ociSkipReason, removeLabelled, testImage } from "./helpers/docker.js";
import { runNex } from "./helpers/nex-cli.js";
import { type RunningServer, startServer } from "./helpers/servers.js";
import { RuntimeRecorder } from "./helpers/recorder.js";
import { eventually, waitFor } from "./helpers/wait.js";

const skip = await ociSkipReason();

describe("container options in deploy requests and on the command line", () => {
  const base = { version: 1, name: "svc", type: "oci", artifact: { url: "nex-examples/greeter:latest" }, requested_at: new Date().toISOString() };
  const problem = (body: object): string | undefined => {
    const r = DeployRequestSchema.safeParse(body);
    return r.success ? undefined : describeZodError(r.error);
  };

  it("accepts restart, argv, cpus, pids and read_only_rootfs for oci, and only there", () => {
    expect(problem({ ...base, argv: ["sh", "-c", "true"], restart: { policy: "on-failure", max_retries: 3 }, limits: { cpus: 0.5, pids: 64 }, read_only_rootfs: false })).toBeUndefined();
    const js = { ...base, type: "javascript", artifact: { url: "nats://NEX_ARTIFACTS/x", sha256: "0".repeat(64) }, trigger_subjects: ["a"] };
    expect(problem({ ...js, restart: { policy: "always" } })).toBe("restart: is for oci workloads and javascript services only");
    expect(problem({ ...js, limits: { pids: 5 } })).toBe("limits.pids: is for oci workloads only");
    expect(problem({ ...base, restart: { policy: "sometimes" } })).toMatch(/^restart\.policy: /);
    expect(problem({ ...base, artifact: { url: "oci://not an image" } })).toBe("artifact.url: must be an image reference such as nex-examples/greeter:latest");
  });

  it("refuses container flags for other workload types and a bad --restart before connecting", async () => {
    const js = await runNex(["run", "examples/echo/echo.js", "-t", "echo", "--restart", "always", "-s", "nats://127.0.0.1:1"]);
    expect(js.code).toBe(2);
    expect(js.stderr).toMatch(/--restart is for --type oci and --service only/);
    const bad = await runNex(["run", "--type", "oci", "img", "--restart", "sometimes", "-s", "nats://127.0.0.1:1"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/expected never, on-failure\[:max-retries\] or always\[:max-retries\]/);
  });

  it("puts the node's credentials into NEX_NATS_URL, percent-encoded, for every server", () => {
    expect(natsUrlWithAuth("nats://127.0.0.1:4222", undefined)).toBe("nats://127.0.0.1:4222");
    expect(natsUrlWithAuth("nats://127.0.0.1:4222, 10.0.0.2:4222", { user: "a b", pass: "p@ss" })).toBe("nats://a%20b:p%40ss@127.0.0.1:4222,nats://a%20b:p%40ss@10.0.0.2:4222");
    expect(natsUrlWithAuth("nats://127.0.0.1:4222", { token: "s3cret" })).toBe("nats://s3cret@127.0.0.1:4222");
  });
});

describe("container output as log lines", () => {
  it("splits chunks into lines, keeps split UTF-8 whole, flushes the last partial line and cuts endless ones", async () => {
    const lines: string[] = [];
    const w = lineWriter((l) => lines.push(l));
    const euro = Buffer.from("€");
    w.write(Buffer.from("one\r\ntw"));
    w.write(Buffer.concat([Buffer.from("o "), euro.subarray(0, 1)]));
    w.write(Buffer.concat([euro.subarray(1), Buffer.from("\n\nlast")]));
    await new Promise<void>((resolve) => w.end(resolve));
    expect(lines).toEqual(["one", "two €", "", "last"]);

    const long: string[] = [];
    const l = lineWriter((line) => long.push(line));
    l.write(Buffer.from("x".repeat(40_000)));
    await new Promise<void>((resolve) => l.end(resolve));
    expect(long.map((line) => line.length)).toEqual([16_384, 16_384, 40_000 - 2 * 16_384]);
  });
});

describe.skipIf(skip !== undefined)(`oci runtime on the Docker engine${skip ? ` (skipped: ${skip})` : ""}`, () => {
  const nodeId = `NTEST${randomBytes(8).toString("hex").toUpperCase()}`;
  const nodeLabel = `io.nex.node=${nodeId}`;
  let server: RunningServer;
  let nc: NatsConnection;
  let image: string;
  let runtime: OciRuntime;
  const seen = new RuntimeRecorder();

  const newRuntime = (observer: RuntimeObserver = seen, dockerHost?: string) =>
    new OciRuntime({ nodeId, natsUrl: server.url, observer, stopGraceS: 1, dockerHost });

  function spec(name: string, container: Partial<ContainerOptions> = {}, over: Partial<ContainerSpec> = {}): ContainerSpec {
    return {
      id: `${name}-${randomBytes(4).toString("hex")}`,
      name,
      namespace: "default",
      type: "oci",
      image,
      triggerSubjects: [],
      limits: { memoryMb: 64, timeoutMs: 1000, cpuMs: 1000 },
      env: {},
      ...over,
      container: { restart: { policy: "never" }, readOnlyRootfs: true, ...container },
    };
  }

  const containersOf = async (workloadId: string) => containersLabelled(`io.nex.workload=${workloadId}`);

  beforeAll(async () => {
    [server, image] = await Promise.all([startServer("bundled"), testImage()]);
    nc = await connect({ servers: server.url });
    runtime = newRuntime();
  }, 60_000);

  afterAll(async () => {
    await runtime?.close();
    await removeLabelled(nodeLabel);
    await nc?.close();
    await server?.stop();
  });

  it("runs a service that answers on its trigger subject with the injected connection and env", async () => {
    const s = spec("greeter", {}, { triggerSubjects: ["rt.greet"], env: { GREETING: "howdy" } });
    await runtime.deploy(s);
    await waitFor("the greeter's ready line", () => seen.linesOf(s.id).some((l) => l.startsWith("greeter ready")));
    const reply = await nc.request("rt.greet", "oci", { timeout: 5000 });
    expect(reply.string()).toBe("howdy, oci");
    await waitFor("the request's log line", () => seen.linesOf(s.id).includes("greet on rt.greet: 3 bytes"));

    const [info] = await containersOf(s.id);
    const inspect = await docker.getContainer(info.Id).inspect();
    expect(inspect.Config.Env).toEqual(
      expect.arrayContaining([`NEX_NATS_URL=${server.url}`, `NEX_WORKLOAD_ID=${s.id}`, "NEX_NAMESPACE=default", "NEX_WORKLOAD_NAME=greeter", "NEX_TRIGGER_SUBJECTS=rt.greet", "GREETING=howdy"]),
    );
    const stats = await runtime.stats(s.id);
    expect(stats?.container).toMatchObject({ id: info.Id, image, state: "running", restarts: 0, memory_limit_bytes: 64 * 1024 * 1024 });
    expect(stats?.container?.memory_bytes).toBeGreaterThan(0);
    expect(stats?.container?.pids).toBeGreaterThanOrEqual(1);

    const started = Date.now();
    await runtime.undeploy(s.id);
    // The greeter stops on SIGTERM: it says so, and the engine never needed SIGKILL.
    expect(seen.linesOf(s.id)).toContain("greeter stopping");
    expect(await killSignals(info.Id, started)).toEqual(["15"]);
    expect(await containersOf(s.id)).toEqual([]);
    expect(await runtime.stats(s.id)).toBeUndefined();
  });

  it("applies memory, CPU and pids limits, labels, and drops privileges", async () => {
    const s = spec("limited", { argv: ["sh", "-c", "touch /data/written || echo read-only; touch /tmp/ok && echo tmp-writable; sleep 60"] }, { limits: { memoryMb: 48, timeoutMs: 1000, cpuMs: 1000, cpus: 0.5, pids: 32 } });
    await runtime.deploy(s);
    const [info] = await containersOf(s.id);
    const { HostConfig: host, Config: config } = await docker.getContainer(info.Id).inspect();
    expect(host).toMatchObject({
      Memory: 48 * 1024 * 1024,
      NanoCpus: 500_000_000,
      PidsLimit: 32,
      CapDrop: ["ALL"],
      SecurityOpt: ["no-new-privileges"],
      ReadonlyRootfs: true,
      NetworkMode: "host",
    });
    expect(config.User).toBe("65534:65534"); // not root inside the container
    expect(config.Labels).toMatchObject({ "io.nex.node": nodeId, "io.nex.workload": s.id, "io.nex.namespace": "default", "io.nex.name": "limited" });
    await waitFor("the filesystem checks", () => seen.linesOf(s.id).length >= 2);
    expect(seen.linesOf(s.id)).toEqual(["read-only", "tmp-writable"]);
    await runtime.undeploy(s.id);

    const writable = spec("writable", { argv: ["sh", "-c", "touch /data/written && echo root-writable"], readOnlyRootfs: false });
    await runtime.deploy(writable);
    await waitFor("the write", () => seen.linesOf(writable.id).includes("root-writable"));
    await runtime.undeploy(writable.id);
  });

  it("loses no log line of a container that exits at once, and reports the exit", async () => {
    const s = spec("burst", { argv: ["sh", "-c", "seq 1 2000; echo to-stderr >&2"] });
    await runtime.deploy(s);
    await waitFor("the exit", () => seen.eventsOf(s.id).length > 0);
    expect(seen.linesOf(s.id)).toEqual(Array.from({ length: 2000 }, (_, i) => String(i + 1)));
    expect(seen.linesOf(s.id, "stderr")).toEqual(["to-stderr"]);
    expect(seen.eventsOf(s.id).map((e) => e.event)).toEqual([expect.objectContaining({ type: "exited", reason: "exited", exitCode: 0, restartInMs: null })]);
    expect((await runtime.stats(s.id))?.container).toMatchObject({ state: "exited", exit_code: 0, oom_killed: false });
    await runtime.undeploy(s.id);
    expect(await containersOf(s.id)).toEqual([]);
  });

  it("restarts a crashing container with a growing backoff until max_retries, then it stays down", async () => {
    const s = spec("crasher", { argv: ["sh", "-c", "echo run; exit 3"], restart: { policy: "on-failure", max_retries: 3 } });
    await runtime.deploy(s);
    await waitFor("the last exit", () => seen.eventsOf(s.id).some((e) => e.event.type === "exited" && e.event.restartInMs === null), 20_000);
    const events = seen.eventsOf(s.id);
    expect(events.map((e) => e.event.type)).toEqual(["exited", "restarted", "exited", "restarted", "exited", "restarted", "exited"]);
    const exits = events.map((e) => e.event).filter((e) => e.type === "exited");
    expect(exits.map((e) => e.reason)).toEqual(["crashed", "crashed", "crashed", "crashed"]);
    expect(exits.map((e) => e.exitCode)).toEqual([3, 3, 3, 3]);
    expect(exits.map((e) => e.restartInMs)).toEqual([100, 200, 400, null]);
    // Each restart came no sooner than its backoff.
    for (let i = 1; i < events.length; i += 2) expect(events[i].at - events[i - 1].at).toBeGreaterThanOrEqual((exits[(i - 1) / 2].restartInMs ?? 0) - 5);
    expect(seen.linesOf(s.id)).toEqual(["run", "run", "run", "run"]);
    expect((await runtime.stats(s.id))?.container).toMatchObject({ state: "exited", restarts: 3, exit_code: 3 });
    await runtime.undeploy(s.id);
  }, 30_000);

  it("reports an OOM kill and restarts the container when the policy says always", async () => {
    const s = spec("hog", { argv: ["sh", "-c", "echo hog; dd if=/dev/zero of=/dev/null bs=64M count=1"], restart: { policy: "always", max_retries: 1 } }, {
      limits: { memoryMb: 16, timeoutMs: 1000, cpuMs: 1000 },
    });
    await runtime.deploy(s);
    await waitFor("the second exit", () => seen.eventsOf(s.id).filter((e) => e.event.type === "exited").length === 2, 20_000);
    const events = seen.eventsOf(s.id).map((e) => e.event);
    expect(events).toEqual([
      expect.objectContaining({ type: "exited", reason: "oom_killed", exitCode: 137, restartInMs: 100 }),
      expect.objectContaining({ type: "restarted", restarts: 1 }),
      expect.objectContaining({ type: "exited", reason: "oom_killed", restartInMs: null }),
    ]);
    expect((await runtime.stats(s.id))?.container).toMatchObject({ state: "exited", oom_killed: true, restarts: 1 });
    await runtime.undeploy(s.id);
  }, 30_000);

  it("stops a container that ignores SIGTERM with SIGKILL after the grace period", async () => {
    const s = spec("stubborn", { argv: ["sh", "-c", "trap '' TERM; echo up; while true; do sleep 1; done"] });
    await runtime.deploy(s);
    await waitFor("the container", () => seen.linesOf(s.id).includes("up"));
    const [info] = await containersOf(s.id);
    const started = Date.now();
    await runtime.undeploy(s.id);
    // SIGTERM, then SIGKILL once the grace period (1 s) has passed.
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    expect(await killSignals(info.Id, started)).toEqual(["15", "9"]);
    expect(await containersOf(s.id)).toEqual([]);
    expect(seen.eventsOf(s.id)).toEqual([]); // a stop is not an exit to report
  });

  it("after a node restart, adopts the containers it is asked for again and removes the others", async () => {
    const first = newRuntime(new RuntimeRecorder());
    const kept = spec("kept", {}, { triggerSubjects: ["rt.kept"] });
    const dropped = spec("dropped", { argv: ["sleep", "60"] });
    await first.deploy(kept);
    await first.deploy(dropped);
    const keptId = (await containersOf(kept.id))[0].Id;

    // The node died without stopping anything; the next run gets a fresh runtime with the same node id.
    const second = newRuntime();
    await second.deploy(kept);
    await second.removeUnclaimed();
    expect((await containersOf(kept.id)).map((c) => c.Id)).toEqual([keptId]);
    expect(await containersOf(dropped.id)).toEqual([]);
    expect((await nc.request("rt.kept", "again", { timeout: 5000 })).string()).toBe("hello, again");
    await waitFor("the log line of the adopted container", () => seen.linesOf(kept.id).includes("greet on rt.kept: 5 bytes"));

    // A different spec is not adopted: the old container makes way for a new one.
    const third = newRuntime();
    await third.deploy({ ...kept, env: { GREETING: "changed" } });
    expect((await containersOf(kept.id)).map((c) => c.Id)).not.toEqual([keptId]);
    // A new container subscribes a moment after it is running: ask until it answers.
    expect(await eventually("the new container's answer", async () => (await nc.request("rt.kept", "again", { timeout: 1000 })).string(), 15_000)).toBe("changed, again");
    await third.close();
    expect(await containersOf(kept.id)).toEqual([]);
    await Promise.all([first.close(), second.close()]);
  }, 30_000);

  it("refuses an image the engine does not have, leaving no container", async () => {
    const s = spec("ghost", {}, { image: "nex-test/no-such-image:1" });
    await expect(runtime.deploy(s)).rejects.toThrow(/image nex-test\/no-such-image:1 is not on the node's engine and could not be pulled/);
    expect(await containersOf(s.id)).toEqual([]);
    expect(await runtime.stats(s.id)).toBeUndefined();
  });

  it("refuses a command the image does not have, leaving no container", async () => {
    const s = spec("nocmd", { argv: ["/no/such/program"] });
    await expect(runtime.deploy(s)).rejects.toThrow(/cannot start a container from nex-test\/oci:.*no such file/i);
    expect(await containersOf(s.id)).toEqual([]);
  });

  it("says where it looked when the engine is not there", async () => {
    const down = newRuntime(seen, "unix:///nonexistent/docker.sock");
    const s = spec("nowhere");
    await expect(down.deploy(s)).rejects.toThrow(/^Docker engine not reachable at \/nonexistent\/docker\.sock: .*ENOENT/);
    await down.removeUnclaimed(); // logs and carries on
    await down.close();
    expect(await containersOf(s.id)).toEqual([]);
  });
});
