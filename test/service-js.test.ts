// JavaScript services (nex run --service) on one real runtime host: a bundled broker on an OS-chosen
// port, the runtime-host child from dist/ (build first), host services in-process (KV on the broker's
// JetStream). No timing thresholds: deadlines only bound waits.

import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { connect, type Msg, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startBroker, type RunningBroker } from "../src/broker/index.js";
import { defaultHostScript, JsRuntime } from "../src/runtimes/js/js-runtime.js";
import { MAX_SERVICE_SUBSCRIPTIONS, MAX_SERVICE_TIMERS } from "../src/runtimes/js/host/service-subjects.js";
import type { RestartPolicy } from "../src/protocol/deploy-request.js";
import type { FunctionStats, JavaScriptSpec } from "../src/runtimes/types.js";
import { RuntimeRecorder } from "./helpers/recorder.js";
import { waitFor } from "./helpers/wait.js";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const FIXTURES = path.join(HERE, "fixtures", "js", "service");
const dec = new TextDecoder();
const text = (m: Msg): string => dec.decode(m.data);
const errorOf = (m: Msg): string | undefined => m.headers?.get("Nex-Error") || undefined;

let seq = 0;
function service(fixture: string, over: Partial<JavaScriptSpec> & { restart?: RestartPolicy } = {}): JavaScriptSpec {
  const n = ++seq;
  const { restart, ...rest } = over;
  return {
    id: `svc-${n}`,
    name: over.name ?? `${fixture.replace(/\.js$/, "")}${n}`,
    namespace: "svc",
    type: "javascript",
    artifact: new Uint8Array(fs.readFileSync(path.join(FIXTURES, fixture))),
    sha256: "",
    triggerSubjects: [],
    limits: { memoryMb: 32, timeoutMs: 1000, cpuMs: 1000 },
    env: {},
    freshContextPerTrigger: false,
    concurrency: 1,
    deploysWorkloads: false,
    service: { restart: restart ?? { policy: "never" } },
    ...rest,
  };
}

describe("JavaScript services", () => {
  let broker: RunningBroker;
  let nc: NatsConnection;
  let observer: RuntimeRecorder;
  let runtime: JsRuntime;
  const deployed: string[] = [];

  beforeAll(async () => {
    if (!fs.existsSync(defaultHostScript())) throw new Error(`${defaultHostScript()} is missing: build first (npm run build)`);
    broker = await startBroker({ port: 0 });
    nc = await connect({ servers: broker.url });
    observer = new RuntimeRecorder();
    runtime = new JsRuntime({ natsUrl: broker.url, observer, nodeId: "NODE-UNDER-TEST" });
    await runtime.start();
  });

  afterEach(async () => {
    await Promise.all(deployed.splice(0).map((id) => runtime.undeploy(id)));
  });

  afterAll(async () => {
    await runtime?.close();
    await nc?.close();
    await broker?.close();
  });

  async function deploy(s: JavaScriptSpec): Promise<JavaScriptSpec> {
    await runtime.deploy(s);
    deployed.push(s.id);
    return s;
  }

  const ask = (subject: string, payload = "", timeout = 5000): Promise<Msg> => nc.request(subject, payload, { timeout });

  it("runs a turn clock, answers requests through ctx.subscribe, keeps state, and calls stop() on undeploy", async () => {
    const s = await deploy(service("table.js", { env: { TABLE: "t1", TURN_MS: "20" } }));
    // The turn clock publishes through the messaging host service.
    const turns = nc.subscribe("table.t1.turn", { max: 3 });
    const seen: number[] = [];
    for await (const m of turns) seen.push(Number(text(m)));
    expect(seen.length).toBe(3);
    expect(seen[1]).toBeGreaterThan(seen[0]);
    // Replies as a function's results are encoded; state kept in memory across requests.
    expect(JSON.parse(text(await ask("table.t1.join", "ann")))).toEqual({ seat: 1, seats: ["ann"] });
    expect(JSON.parse(text(await ask("table.t1.join", "bob")))).toEqual({ seat: 2, seats: ["ann", "bob"] });
    // A throw is an error reply in the functions' format.
    const refused = await ask("table.t1.join", "ann");
    expect(refused.headers?.get("Nats-Service-Error-Code")).toBe("500");
    expect(errorOf(refused)).toBe("ann is seated already");
    expect(JSON.parse(text(refused))).toEqual({ error: { code: 500, message: "ann is seated already" } });
    // An async handler; ctx.workload says who and where.
    const state = JSON.parse(text(await ask("table.t1.state"))) as { turn: number; seats: string[]; workload: Record<string, string> };
    expect(state.seats).toEqual(["ann", "bob"]);
    expect(state.turn).toBeGreaterThan(0);
    expect(state.workload).toEqual({ id: s.id, name: s.name, namespace: "svc", node: "NODE-UNDER-TEST" });
    await waitFor("the expected state", () => observer.linesOf(s.id).includes("table table.t1 open"));
    // What workload info shows.
    const stats = (await runtime.stats(s.id)) as FunctionStats;
    expect(stats.service).toMatchObject({ state: "running", restarts: 0, subscriptions: ["table.t1.join", "table.t1.state"], timers: 1, dropped: 0 });
    expect(stats.service?.cpu_ms).toBeGreaterThan(0);
    expect(stats.memoryBytes).toBeGreaterThan(0);
    expect(stats.triggers).toBe(4);
    expect(stats.failures).toBe(1);
    // Undeploy calls stop(ctx), which may still use host services, then the service is gone.
    const closed = nc.subscribe("table.t1.closed", { max: 1 });
    await nc.flush();
    deployed.splice(deployed.indexOf(s.id), 1);
    await runtime.undeploy(s.id);
    for await (const m of closed) expect(JSON.parse(text(m))).toEqual({ seats: ["ann", "bob"] });
    await expect(ask("table.t1.state", "", 500)).rejects.toThrow(/no responders|timeout/i);
  });

  it("answers its trigger subjects with handle(), as a function would", async () => {
    const s = await deploy(service("handle.js", { triggerSubjects: ["svc.handle.a"] }));
    expect(text(await ask("svc.handle.a", "x"))).toBe("1: x");
    expect(text(await ask("svc.handle.a", "y"))).toBe("2: y");
    const t = await deploy(service("table.js", { env: { TABLE: "t2", TURN_MS: "1000" }, triggerSubjects: ["svc.handle.b"] }));
    expect(text(await ask("svc.handle.b", "z"))).toBe("handled svc.handle.b: z");
    expect((await runtime.stats(t.id))?.triggers).toBe(1);
    expect(s.id).toBeTruthy();
  });

  it("gives a service crypto.randomUUID and getRandomValues, different in each service", async () => {
    await deploy(service("random.js", { env: { NAME: "one" } }));
    await deploy(service("random.js", { env: { NAME: "two" } }));
    const seen = new Set<string>();
    for (const name of ["one", "two", "one", "two"]) {
      const r = JSON.parse(text(await ask(`svc.random.${name}`, ""))) as { uuid: string; bytes: string };
      expect(r.uuid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      expect(r.bytes).toMatch(/^[0-9a-f]{32}$/);
      expect(seen.has(r.uuid) || seen.has(r.bytes)).toBe(false);
      seen.add(r.uuid).add(r.bytes);
    }
  });

  it("refuses code that is not a service at deploy, with the reason", async () => {
    await expect(runtime.deploy(service("not-a-service.js"))).rejects.toThrow(/start is not a function/);
    await expect(runtime.deploy(service("table.js", { artifact: new TextEncoder().encode("export default {") }))).rejects.toThrow(/syntax error/);
  });

  it("restarts after a throw from start with backoff, then serves, reporting exited and restarted", async () => {
    const s = await deploy(service("crash.js", { env: { FAIL_RUNS: "2" }, restart: { policy: "on-failure" } }));
    await waitFor("the expected state", () => observer.eventsOf(s.id).some((e) => e.event.type === "restarted" && e.event.restarts === 2), 10_000);
    const events = observer.eventsOf(s.id).map((e) => e.event);
    expect(events.slice(0, 3)).toEqual([
      { type: "exited", reason: "crashed", message: "start failed: start refuses run 1", restarts: 0, restartInMs: 100 },
      { type: "exited", reason: "crashed", message: "start failed: start refuses run 2", restarts: 1, restartInMs: 200 },
      { type: "restarted", restarts: 2 },
    ]);
    const at = observer.eventsOf(s.id).map((e) => e.at);
    expect(at[1] - at[0]).toBeGreaterThanOrEqual(100);
    // The third run keeps its count from KV: state that must survive goes there.
    expect(text(await ask(`crash.${s.name}.runs`))).toBe("3");
    expect((await runtime.stats(s.id))?.service).toMatchObject({ state: "running", restarts: 2, last_exit: "crashed: start failed: start refuses run 2" });
  });

  it("ends a run whose handler loops, runs away with memory or loops after an await, and restarts it", async () => {
    const s = await deploy(service("crash.js", { restart: { policy: "always" } }));
    const cases: [string, string, RegExp][] = [
      // isolated-vm's own timeout says the first; on a loaded machine the run's watchdog may see the
      // stuck call before that error arrives and says the second. Either way the run ends as a timeout.
      ["loop", "timeout", /ran longer than 1000 ms|held the isolate for more than 1000 ms/],
      ["alloc", "oom_killed", /memory limit exceeded/],
      ["asyncloop", "timeout", /held the isolate/],
    ];
    for (const [what, reason, message] of cases) {
      const before = observer.eventsOf(s.id).length;
      const reply = await ask(`crash.${s.name}.${what}`, "", 10_000);
      expect(errorOf(reply)).toMatch(/the service's run ended|did not answer within/);
      await waitFor("the expected state", () => observer.eventsOf(s.id).length >= before + 2, 10_000);
      const [exited, restarted] = observer.eventsOf(s.id).slice(before).map((e) => e.event);
      expect(exited).toMatchObject({ type: "exited", reason });
      expect(exited.type === "exited" && exited.message).toMatch(message);
      expect(restarted).toMatchObject({ type: "restarted" });
      // Serving again (its run count comes from KV).
      await waitFor("serving again", async () => !errorOf(await ask(`crash.${s.name}.runs`)), 10_000);
    }
  });

  it("never calls stop(ctx) of a run that an undeploy overtook while it loaded for a restart", async () => {
    // Every load takes ~600 ms; start always throws, so a restart follows 100 ms after each end.
    const source = `
      const end = Date.now() + 600; while (Date.now() < end) {}
      console.log("loaded");
      export default { start() { throw new Error("no start"); }, stop() { console.log("stop without start"); } };`;
    const s = await deploy(service("crash.js", { artifact: new TextEncoder().encode(source), restart: { policy: "always" } }));
    await waitFor("the first run to end", () => observer.eventsOf(s.id).length > 0, 10_000);
    // The restart's run is loading now (100 ms after the end, for ~600 ms): undeploy overtakes it.
    await new Promise((r) => setTimeout(r, 300));
    await runtime.undeploy(s.id);
    deployed.splice(deployed.indexOf(s.id), 1);
    await waitFor("the second run to load", () => observer.linesOf(s.id).filter((l) => l === "loaded").length === 2, 10_000);
    await new Promise((r) => setTimeout(r, 300)); // what a stop(ctx) would have logged by now
    expect(observer.linesOf(s.id)).not.toContain("stop without start");
    expect(observer.linesOf(s.id, "stderr").filter((l) => /stop failed/.test(l))).toEqual([]);
  });

  it("ends a run whose timer loops; with restart never it stays down", async () => {
    const s = await deploy(service("crash.js", { env: { TIMER_LOOP: "1" } }));
    await waitFor("the expected state", () => observer.eventsOf(s.id).length > 0, 10_000);
    expect(observer.eventsOf(s.id)[0].event).toMatchObject({ type: "exited", reason: "timeout", restartInMs: null });
    expect((await runtime.stats(s.id))?.service?.state).toBe("failed");
    await expect(ask(`crash.${s.name}.runs`, "", 300)).rejects.toThrow();
  });

  it("keeps state in KV across a restart (the documented pattern)", async () => {
    const s = await deploy(service("counter.js", { restart: { policy: "always" } }));
    for (const n of ["1", "2", "3"]) expect(text(await ask(`counter.${s.name}.inc`))).toBe(n);
    const crash = await ask(`counter.${s.name}.crash`, "", 10_000);
    expect(errorOf(crash)).toMatch(/the service's run ended/);
    await waitFor("the expected state", () => observer.eventsOf(s.id).some((e) => e.event.type === "restarted"), 10_000);
    // The new run's subscription may reach the broker just after the event: no responders until then
    // (which increments nothing), so ask again on that alone.
    let next = "";
    await waitFor("the restarted run to answer", async () => {
      next = await ask(`counter.${s.name}.inc`).then(text, (err: Error) => {
        if (/no responders/i.test(err.message)) return "";
        throw err;
      });
      return next !== "";
    }, 10_000);
    expect(next).toBe("4");
  });

  it("gives clear errors for forbidden subjects, foreign queue groups, and the subscription and timer caps", async () => {
    const s = await deploy(service("caps.js"));
    const probe = async (what: string): Promise<string> => text(await ask(`caps.${s.name}`, what));
    for (const subject of ["$NEX.>", "$JS.API.>", "_INBOX.>", "$SYS.>", "$KV.x.>", "$O.x.>", "$SRV.PING", ">", "*.x"]) {
      expect(await probe(`subscribe ${subject}`)).toMatch(/^forbidden: subject .* may not/);
    }
    expect(await probe("subscribe a..b")).toMatch(/^bad_request: .*not a valid NATS subject/);
    expect(await probe("queue")).toMatch(/^bad_request: queue "a.b" must be/);
    expect(await probe("subs")).toBe(`${MAX_SERVICE_SUBSCRIPTIONS - 1} then overloaded: too many subscriptions: a service may have at most ${MAX_SERVICE_SUBSCRIPTIONS}`);
    expect(await probe("timers")).toBe(`${MAX_SERVICE_TIMERS} then overloaded: too many pending timers: a service may have at most ${MAX_SERVICE_TIMERS}`);
    expect((await runtime.stats(s.id))?.service).toMatchObject({ subscriptions: [`caps.${s.name}`], timers: 0 });
  });
});
