// Hostile JavaScript workloads against one real runtime host (bundled broker, runtime-host child from
// dist/; build first). Each attack runs while a bystander function in the same runtime host answers a
// steady stream of requests: after every test the bystander has failed no request and the runtime host
// was never restarted. No timing thresholds: deadlines only bound waits.

import fs from "node:fs";
import { connect, type Msg, type NatsConnection } from "@nats-io/transport-node";
import { AckPolicy, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { startBroker, type RunningBroker } from "../src/broker/index.js";
import { defaultHostScript, JsRuntime } from "../src/runtimes/js/js-runtime.js";
import { DATA_BYTES, DATA_OFFSET, ENTRY, HEAD, MAX_RESULTS, RESULT_KIND, ResultChannel, TABLE_OFFSET } from "../src/runtimes/js/host/result-channel.js";
import { RunningBatch } from "../src/runtimes/js/host/running-batch.js";
import { TIMER_FIRES_PER_SECOND } from "../src/runtimes/js/host/service-run.js";
import type { Outcome } from "../src/runtimes/host/outcome.js";
import type { JavaScriptSpec } from "../src/runtimes/types.js";
import { RuntimeRecorder } from "./helpers/recorder.js";
import { waitFor } from "./helpers/wait.js";

const dec = new TextDecoder();
/** The broker's max_payload: every reply over it must be refused inside the isolate. */
const MAX_PAYLOAD = 1024 * 1024;
/** A string V8 keeps small (a rope) that is 512 MiB once flattened. */
const HUGE = "2**29-64";
/** Generous: a runtime host that copied one HUGE string out would pass it. */
const RSS_LIMIT_BYTES = 1.5 * 1024 * 1024 * 1024;

let seq = 0;
function spec(source: string, over: Partial<JavaScriptSpec> = {}): JavaScriptSpec {
  const n = ++seq;
  const name = `hostile-${n}`;
  return {
    id: `hw-${n}`,
    name,
    namespace: "hostile",
    type: "javascript",
    artifact: new TextEncoder().encode(source),
    sha256: "",
    triggerSubjects: [`hostile.${name}`],
    limits: { memoryMb: 64, timeoutMs: 3000, cpuMs: 3000 },
    env: {},
    freshContextPerTrigger: false,
    concurrency: 1,
    deploysWorkloads: false,
    ...over,
  };
}

const text = (m: Msg): string => dec.decode(m.data);
const errorCode = (m: Msg): string | undefined => m.headers?.get("Nats-Service-Error-Code") || undefined;

/** Peak resident set of a process (VmHWM), in bytes. */
function peakRss(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
  if (!m) throw new Error(`no VmHWM for ${pid}`);
  return Number(m[1]) * 1024;
}

/** An echo function in the same runtime host, asked one request after another for as long as the suite runs. */
class Bystander {
  answered = 0;
  readonly failures: string[] = [];
  private stopped = false;
  private loop?: Promise<void>;

  constructor(
    private readonly nc: NatsConnection,
    private readonly subject: string,
  ) {}

  start(): void {
    this.loop = (async () => {
      for (let i = 0; !this.stopped; i++) {
        try {
          const m = await this.nc.request(this.subject, `b${i}`, { timeout: 15_000 });
          if (text(m) !== `${this.subject}: b${i}`) this.failures.push(`request ${i}: ${errorCode(m) ?? ""} ${text(m).slice(0, 200)}`);
          else this.answered++;
        } catch (err) {
          this.failures.push(`request ${i}: ${(err as Error).message}`);
        }
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
  }

  /** Waits until the bystander has answered `n` more requests. */
  async answersAgain(n = 3): Promise<void> {
    const target = this.answered + n;
    await waitFor("the bystander to answer", () => this.answered >= target || this.failures.length > 0, 30_000);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }
}

describe("hostile JavaScript workloads", { timeout: 90_000 }, () => {
  let broker: RunningBroker;
  let nc: NatsConnection;
  let observer: RuntimeRecorder;
  let runtime: JsRuntime;
  let bystander: Bystander;
  let hostPid: number;
  const deployed: string[] = [];

  beforeAll(async () => {
    if (!fs.existsSync(defaultHostScript())) throw new Error(`${defaultHostScript()} is missing: build first (npm run build)`);
    broker = await startBroker({ port: 0, maxPayload: MAX_PAYLOAD });
    nc = await connect({ servers: broker.url });
    observer = new RuntimeRecorder();
    runtime = new JsRuntime({ natsUrl: broker.url, observer });
    await runtime.start();
    const echo = spec("(subject, payload) => `${subject}: ${new TextDecoder().decode(payload)}`", { name: "bystander" });
    await runtime.deploy(echo);
    hostPid = runtime.childPid!;
    bystander = new Bystander(nc, echo.triggerSubjects[0]);
    bystander.start();
    await bystander.answersAgain();
  }, 60_000);

  beforeEach(async () => {
    await bystander.answersAgain(1);
  }, 60_000);

  afterEach(async () => {
    await bystander.answersAgain();
    await Promise.all(deployed.splice(0).map((id) => runtime.undeploy(id)));
    expect(bystander.failures).toEqual([]);
    expect(observer.restarts).toEqual([]);
    expect(runtime.childPid).toBe(hostPid);
    expect(peakRss(hostPid)).toBeLessThan(RSS_LIMIT_BYTES);
  }, 60_000);

  afterAll(async () => {
    await bystander?.stop();
    await runtime?.close();
    await nc?.close();
    await broker?.close();
  });

  async function deploy(source: string, over: Partial<JavaScriptSpec> = {}): Promise<JavaScriptSpec> {
    const s = spec(source, over);
    await runtime.deploy(s);
    deployed.push(s.id);
    return s;
  }

  function request(s: JavaScriptSpec, payload: string, timeout = 30_000): Promise<Msg> {
    return nc.request(s.triggerSubjects[0], payload, { timeout });
  }

  // Replaces TypedArray.prototype.set, keeps every view of shared memory it is handed, and after the
  // trigger's result is recorded (a microtask runs after the batch call returns) rewrites the result
  // table: "forge" points every entry at the bytes "FORGED", "crash" at an offset far past the area.
  const SET_HIJACK = `
    const TA = Object.getPrototypeOf(Uint8Array.prototype);
    const realSet = TA.set;
    const seen = [];
    const isShared = (b) => Object.prototype.toString.call(b) === "[object SharedArrayBuffer]";
    TA.set = function (src, offset) {
      if (isShared(this.buffer)) seen.push(this);
      return realSet.call(this, src, offset);
    };
    function rewrite(mode) {
      for (const view of seen) {
        const table = new Int32Array(view.buffer, ${TABLE_OFFSET}, ${MAX_RESULTS * ENTRY.size});
        const data = new Uint8Array(view.buffer, ${DATA_OFFSET}, ${DATA_BYTES});
        const forged = [70, 79, 82, 71, 69, 68];
        for (let i = 0; i < forged.length; i++) data[i] = forged[i];
        for (let k = 0; k < ${MAX_RESULTS}; k++) {
          const at = k * ${ENTRY.size};
          table[at + ${ENTRY.offset}] = mode === "crash" ? 0x7fff0000 : 0;
          table[at + ${ENTRY.length}] = mode === "crash" ? 1000 : forged.length;
          Atomics.store(table, at + ${ENTRY.kind}, ${RESULT_KIND.ok});
        }
      }
    }
    (subject, payload) => {
      const mode = new TextDecoder().decode(payload);
      if (mode === "probe") return seen.length > 0 ? "GOT THE SHARED AREA" : "nothing";
      Promise.resolve().then(() => rewrite(mode));
      return new Uint8Array([104, 111, 110, 101, 115, 116]);
    }`;

  describe("a replaced TypedArray.prototype.set", () => {
    for (const fresh of [false, true]) {
      const mode = fresh ? "a fresh context per trigger" : "the warm context";
      it(`never sees the shared result area, so it forges no reply (${mode})`, async () => {
        const s = await deploy(SET_HIJACK, { freshContextPerTrigger: fresh });
        const replies = await Promise.all(Array.from({ length: 6 }, () => request(s, "forge")));
        for (const r of replies) expect(text(r)).toBe("honest");
        // A later trigger of the same context finds nothing kept from the earlier ones.
        expect(text(await request(s, "probe"))).toBe("nothing");
      });
    }

    it("cannot point a result past the shared area and crash the runtime host", async () => {
      const s = await deploy(SET_HIJACK);
      for (let i = 0; i < 3; i++) expect(text(await request(s, "crash"))).toBe("honest");
    });
  });

  it("refuses six concurrent replies of a 512 MiB rope inside the isolate (413), without copying them out", async () => {
    const s = await deploy(`(subject, payload) => "x".repeat(${HUGE})`, { concurrency: 6 });
    const replies = await Promise.all(Array.from({ length: 6 }, () => request(s, "")));
    for (const r of replies) {
      expect(errorCode(r)).toBe("413");
      expect(r.headers?.get("Nex-Error")).toMatch(/reply too large/);
    }
  });

  it("refuses replies over max_payload (413): bytes, JSON, a JSON that would only grow too large when built, and UTF-8", async () => {
    const s = await deploy(`(subject, payload) => {
      const mode = new TextDecoder().decode(payload);
      if (mode === "bytes") return new Uint8Array(${MAX_PAYLOAD} + 1);
      if (mode === "json") return { big: "x".repeat(${MAX_PAYLOAD}) };
      if (mode === "rope") return { big: "x".repeat(${HUGE}) };
      // Within max_payload by its length, over it once UTF-8: the runtime host refuses it.
      if (mode === "utf8") return "\u00e9".repeat(${MAX_PAYLOAD / 2 + 1});
      return "ok";
    }`);
    for (const mode of ["bytes", "json", "rope", "utf8"]) {
      const r = await request(s, mode);
      expect(errorCode(r), mode).toBe("413");
      expect(r.headers?.get("Nex-Error"), mode).toMatch(/reply too large/);
    }
    expect(text(await request(s, "small"))).toBe("ok");
  });

  it("answers a JSON reply within max_payload in full, however many elements it has", async () => {
    // 300,000 zeros: about 600 KB of JSON, though their indices alone are about 1.7 million characters.
    const s = await deploy(`() => new Array(300000).fill(0)`);
    const r = await request(s, "");
    expect(errorCode(r)).toBeUndefined();
    expect((JSON.parse(text(r)) as number[]).length).toBe(300000);
  });

  it("refuses a boxed string over max_payload inside the isolate (413), even one whose toString makes it huge", async () => {
    const s = await deploy(`(subject, payload) => {
      const mode = new TextDecoder().decode(payload);
      if (mode === "boxed") return { big: new String("x".repeat(${HUGE})) };
      const small = new String("s");
      small.toString = () => "x".repeat(${HUGE});
      return [small];
    }`);
    for (const mode of ["boxed", "toString"]) {
      const r = await request(s, mode);
      expect(errorCode(r), mode).toBe("413");
      expect(r.headers?.get("Nex-Error"), mode).toMatch(/reply too large/);
    }
  });

  it("bounds a huge thrown value or error message before it leaves the isolate", async () => {
    const s = await deploy(`(subject, payload) => {
      const mode = new TextDecoder().decode(payload);
      const huge = "x".repeat(2 ** 26);
      if (mode === "string") throw huge;
      if (mode === "error") throw new Error(huge);
      if (mode === "object") throw { toString() { return huge; }, toJSON() { return huge; } };
      return Promise.reject(new Error(huge));
    }`);
    for (const mode of ["string", "error", "object", "rejection"]) {
      const r = await request(s, mode);
      expect(errorCode(r), mode).toBe("500");
    }
    await waitFor("four failures", () => observer.failures.filter((f) => f.id === s.id).length === 4);
    for (const f of observer.failures.filter((f) => f.id === s.id)) expect(f.error.length).toBeLessThanOrEqual(16 * 1024 + 100);
  });

  it("bounds console lines even with String.prototype.slice replaced", async () => {
    const s = await deploy(`
      String.prototype.slice = function () { return String(this); };
      String.prototype.substring = function () { return String(this); };
      (subject, payload) => { console.log("x".repeat(2 ** 26)); console.error(new Error("y".repeat(2 ** 26))); return "logged"; }`);
    expect(text(await request(s, ""))).toBe("logged");
    await waitFor("two log lines", () => observer.logs.filter((l) => l.id === s.id).length >= 2);
    for (const l of observer.logs.filter((l) => l.id === s.id)) expect(l.line.length).toBeLessThanOrEqual(16 * 1024 + 100);
  });

  it("refuses host-service arguments over their limits inside the isolate, sync and async", async () => {
    const s = await deploy(
      `async (subject, payload) => {
        const mode = new TextDecoder().decode(payload);
        const huge = "k".repeat(${HUGE});
        try {
          if (mode === "key") hostServices.kv.get(huge);
          else if (mode === "value") hostServices.kv.set("k", huge);
          else if (mode === "bytes") hostServices.messaging.publish("a.b", new Uint8Array(${MAX_PAYLOAD} * 2));
          else if (mode === "async-key") await hostServices.async.kv.get(huge);
          else if (mode === "entry") hostServices.kv.getEntry(huge);
          else if (mode === "async-entry") await hostServices.async.kv.getEntry(huge);
          else await hostServices.async.messaging.publish(huge, "x");
          return "called";
        } catch (e) {
          return "refused: " + e.code;
        }
      }`,
      { concurrency: 6 },
    );
    const modes = ["key", "value", "bytes", "async-key", "async-subject", "key", "entry", "async-entry"];
    const replies = await Promise.all(modes.map((m) => request(s, m)));
    for (const [i, r] of replies.entries()) expect(text(r), modes[i]).toMatch(/^refused: (too_large|bad_request)$/);
  });

  it("answers results whose getters, toJSON or Proxy traps throw or return junk with an error for that trigger alone", async () => {
    const s = await deploy(`(subject, payload) => {
      const mode = new TextDecoder().decode(payload);
      if (mode === "getter") return { get a() { throw new Error("getter threw"); } };
      if (mode === "toJSON") return { toJSON() { throw new Error("toJSON threw"); } };
      if (mode === "proxy") return new Proxy({}, { ownKeys() { throw new Error("trap threw"); } });
      if (mode === "fake-bytes") {
        const u = new Uint8Array(64);
        Object.defineProperty(u, "byteLength", { value: -1000 });
        Object.defineProperty(u, "byteOffset", { value: 0x7fff0000 });
        return u;
      }
      if (mode === "long-bytes") {
        // A byteLength longer than the bytes: recorded by it, the reply would carry whatever lay beyond.
        const u = new Uint8Array(64);
        Object.defineProperty(u, "byteLength", { value: 4096 });
        return u;
      }
      if (mode === "instanceof") {
        Object.defineProperty(Uint8Array, Symbol.hasInstance, { value: () => true });
        return { byteLength: -5, byteOffset: 1e9, buffer: 7, length: 3 };
      }
      return "fine";
    }`);
    for (const [mode, expected] of [
      ["getter", /getter threw/],
      ["toJSON", /toJSON threw/],
      ["proxy", /trap threw/],
    ] as const) {
      const r = await request(s, mode);
      expect(errorCode(r), mode).toBe("500");
      expect(r.headers?.get("Nex-Error"), mode).toMatch(expected);
    }
    expect((await request(s, "fake-bytes")).data.length).toBe(64);
    expect((await request(s, "long-bytes")).data.length).toBe(64);
    expect(errorCode(await request(s, "instanceof"))).toBeUndefined();
    expect(text(await request(s, "again"))).toBe("fine");
  });

  it("stops a toJSON that never returns as that trigger's own timeout", async () => {
    const s = await deploy(`(subject, payload) => new TextDecoder().decode(payload) === "loop" ? { toJSON() { for (;;) {} } } : "fine"`, {
      limits: { memoryMb: 64, timeoutMs: 500, cpuMs: 500 },
    });
    const r = await request(s, "loop");
    expect(errorCode(r)).toBe("504");
    expect(text(await request(s, "again"))).toBe("fine");
  });

  it("blames the trigger whose toJSON runs away, not an older one awaiting beside it", async () => {
    // CPU is the limit here (the deadline would find both overdue): the isolate is stopped for the trigger
    // whose code runs, and a result's toJSON is that trigger's code.
    const s = await deploy(
      `async (subject, payload) => {
        const mode = new TextDecoder().decode(payload);
        if (mode === "busy") { const end = Date.now() + 150; while (Date.now() < end); return "done busy"; }
        if (mode === "wait") return new Promise(() => {});
        if (mode === "loop") return { toJSON() { for (;;) {} } };
        return "fine";
      }`,
      { limits: { memoryMb: 64, timeoutMs: 20_000, cpuMs: 400 } },
    );
    // The busy trigger holds the isolate, so "wait" and "loop" go in as one batch, "wait" first.
    const busy = request(s, "busy");
    await nc.flush();
    const [wait, loop] = await Promise.all([request(s, "wait"), request(s, "loop")]);
    expect(text(await busy)).toBe("done busy");
    expect(loop.headers?.get("Nex-Error")).toMatch(/^timeout: the trigger used more than 400 ms of CPU time/);
    expect(wait.headers?.get("Nex-Error")).toMatch(/^stopped with its isolate, because a trigger running beside it ended so: timeout/);
    expect(text(await request(s, "again"))).toBe("fine");
  });

  it("keeps answering correctly after the workload tampers with Promise, JSON, Object and Array built-ins", async () => {
    const s = await deploy(`
      let tampered = false;
      function tamper() {
        tampered = true;
        const then = Promise.prototype.then;
        Promise.prototype.then = function (a, b) { return then.call(this, a, b); };
        Object.defineProperty(Promise, Symbol.species, { get() { throw new Error("species"); } });
        JSON.stringify = () => "FORGED";
        Object.defineProperty(Object.prototype, "then", { get() { return undefined; }, set() {}, configurable: true });
        Object.defineProperty(Array.prototype, "0", { set() { throw new Error("index setter"); }, configurable: true });
        Reflect.apply = () => "FORGED";
        Function.prototype.call = function () { return "FORGED"; };
        Function.prototype.apply = function () { return "FORGED"; };
        Atomics.store = () => 0;
        Date.now = () => 0;
        Uint8Array.prototype.slice = function () { return new Uint8Array(2 ** 20); };
      }
      async (subject, payload) => {
        const mode = new TextDecoder().decode(payload);
        if (mode === "tamper") { tamper(); return "tampered"; }
        await null;
        if (mode === "json") return { n: 1 };
        if (mode === "bytes") return new Uint8Array([1, 2, 3]);
        return "still " + (tampered ? "here" : "untouched");
      }`);
    expect(text(await request(s, "tamper"))).toBe("tampered");
    const replies = await Promise.all(["json", "bytes", "text", "json", "bytes", "text"].map((m) => request(s, m)));
    for (const [i, r] of replies.entries()) {
      expect(errorCode(r)).toBeUndefined();
      const want = ['{"n":1}', "\u0001\u0002\u0003", "still here"][i % 3];
      expect(text(r)).toBe(want);
    }
  });

  it("sends an awaitable call's value as it was when called, and answers it past an Object.prototype.then", async () => {
    const s = await deploy(`
      (async function (subject, payload) {
        const kv = this.hostServices.async.kv;
        const mode = new TextDecoder().decode(payload);
        if (mode === "mutate") {
          const b = new TextEncoder().encode("aaaa");
          const set = kv.set("m", b);
          b[0] = 98; // after the call, before it leaves the isolate
          await set;
          return kv.getString("m");
        }
        // A then() getter on every object: resolving with a host answer would hand it a forged one.
        await kv.set("t", "real");
        Object.defineProperty(Object.prototype, "then", {
          configurable: true,
          get() { return (resolve) => resolve({ ok: false, code: "unavailable", message: "forged by the workload" }); },
        });
        try {
          return await kv.getString("t");
        } finally {
          delete Object.prototype.then;
        }
      })`, { namespace: "hostile-kv" });
    expect(text(await request(s, "mutate"))).toBe("aaaa");
    const forged = await request(s, "then");
    expect(errorCode(forged)).toBeUndefined();
    expect(text(forged)).toBe("real");
  });

  it("answers triggers that await a host call after the workload made Promise[Symbol.species] throw", async () => {
    const s = await deploy(`
      (async function (subject, payload) {
        const mode = new TextDecoder().decode(payload);
        if (mode === "tamper") {
          Object.defineProperty(Promise, Symbol.species, { configurable: true, get() { throw new Error("species getter ran"); } });
          return "tampered";
        }
        // The batch still awaits when its call returns (the answer comes in a later turn).
        await this.hostServices.async.kv.set("s-" + mode, mode);
        return "after " + (await this.hostServices.async.kv.getString("s-" + mode));
      })`, { namespace: "hostile-kv" });
    expect(text(await request(s, "tamper"))).toBe("tampered");
    const replies = await Promise.all(["a", "b", "c"].map((m) => request(s, m)));
    expect(replies.map((r) => errorCode(r) ?? text(r))).toEqual(["after a", "after b", "after c"]);
  });

  it("gives code left running after its trigger returned no host calls, and stops it when it runs away", async () => {
    const s = await deploy(`
      let n = 0;
      (async function (subject, payload) {
        const kv = this.hostServices.async.kv;
        const mode = new TextDecoder().decode(payload);
        if (mode === "leave") {
          // Not awaited: the first call goes out with the trigger; what its answer resumes runs after the return.
          kv.set("first", "1").then(() => kv.set("after", "2")).catch((e) => kv.set("refused", e.code + ": " + e.message).catch(() => undefined));
          return "left";
        }
        if (mode === "spin") {
          kv.set("spin", "1").then(() => { for (;;) {} });
          return "spinning";
        }
        if (mode === "read") return JSON.stringify([await kv.getString("first"), await kv.getString("after"), await kv.getString("refused"), ++n]);
        return "?";
      })`, { namespace: "hostile-kv", limits: { memoryMb: 64, timeoutMs: 2000, cpuMs: 300 } });
    expect(text(await request(s, "leave"))).toBe("left");
    await new Promise((r) => setTimeout(r, 300));
    // The call made before the return went out; the ones made after it were refused (even the one reporting it).
    expect(JSON.parse(text(await request(s, "read")))).toEqual(["1", null, null, 1]);
    // A continuation that never ends is stopped at the CPU bound and the isolate replaced: the next
    // trigger is answered (by a fresh isolate, so its counter starts again), not left behind the loop.
    expect(text(await request(s, "spin"))).toBe("spinning");
    await new Promise((r) => setTimeout(r, 600));
    const after = await request(s, "read", 10_000);
    expect(errorCode(after)).toBeUndefined();
    expect(JSON.parse(text(after))).toEqual(["1", null, null, 1]);
  });

  // ---- services (nex run --service): the same bystander must fail nothing --------------------------

  describe("services", () => {
    let serviceSeq = 0;
    async function deployService(source: string, namespace = "hostile"): Promise<JavaScriptSpec> {
      const s = spec(source, { namespace, triggerSubjects: [], service: { restart: { policy: "never" } }, name: `hostile-svc-${++serviceSeq}` });
      await runtime.deploy(s);
      deployed.push(s.id);
      return s;
    }

    it("bounds a flood into a slow subscription: a capped queue, 503 replies past it, drops counted", async () => {
      const s = await deployService(`export default { start(ctx) {
        ctx.subscribe("flood." + ctx.workload.name, () => { const end = Date.now() + 2; while (Date.now() < end) {} return "ok"; });
      } }`);
      const subject = `flood.${s.name}`;
      await waitFor("the subscription", async () => ((await runtime.stats(s.id))?.service?.subscriptions.length ?? 0) === 1);
      // From a connection of its own, as an attacker would: 20,000 messages of 1 KiB at once.
      const attacker = await connect({ servers: broker.url });
      const payload = new Uint8Array(1024);
      for (let i = 0; i < 20_000; i++) attacker.publish(subject, payload);
      const replies = await Promise.all(Array.from({ length: 200 }, () => attacker.request(subject, "", { timeout: 60_000 })));
      await attacker.close();
      const codes = replies.map((r) => errorCode(r) ?? "ok");
      expect(codes.every((c) => c === "ok" || c === "503" || c === "504")).toBe(true);
      const stats = await runtime.stats(s.id);
      expect(stats?.service?.dropped).toBeGreaterThan(0);
      expect(stats?.service?.state).toBe("running");
    });

    it("cannot subscribe to subjects another namespace serves, nor to system subjects", async () => {
      // The claim a node records for the bystander's trigger subject (cluster/trigger-claims.ts), with a
      // subject no one sends to: once that is refused, the runtime host's view has the whole claim.
      const kv = await new Kvm(nc).create("NEX_TRIGGERS", { history: 1 });
      await kv.put("NTEST.bystander", JSON.stringify({ namespace: "hostile", subjects: ["hostile.bystander", "hostile-claim.seen"] }));
      // A subscribe that passes is dropped in the same turn (nothing reaches it): a probe that ran before
      // the claim was seen takes nothing from the bystander, and probes never pile up.
      const s = await deployService(`export default { start(ctx) {
        ctx.subscribe("evil." + ctx.workload.name, (subject, payload) => {
          try { ctx.subscribe(new TextDecoder().decode(payload), () => "stolen", { queue: "q" })(); return "subscribed"; }
          catch (e) { return e.code + ": " + e.message; }
        });
      } }`, "evil");
      const probe = async (subject: string): Promise<string> => text(await nc.request(`evil.${s.name}`, subject, { timeout: 10_000 }));
      await waitFor("the claim to be seen", async () => (await probe("hostile-claim.seen")) !== "subscribed", 10_000);
      expect(await probe("hostile-claim.seen")).toBe('forbidden: subject "hostile-claim.seen" overlaps hostile-claim.seen, which namespace hostile serves');
      for (const subject of ["hostile.bystander", "hostile.*", "hostile.>"]) {
        expect(await probe(subject)).toBe(`forbidden: subject ${JSON.stringify(subject)} overlaps hostile.bystander, which namespace hostile serves`);
      }
      for (const subject of [">", "*.bystander", "$NEX.HOST.>", "_INBOX.>", "$JS.API.>"]) expect(await probe(subject)).toMatch(/^forbidden: /);
      expect(await probe("evil.own.subject")).toBe("subscribed");
      await kv.delete("NTEST.bystander");
    });

    it("cannot take a subject another namespace's service subscribed a moment ago, however many of its claim writes wait", async () => {
      const a = await deployService(`export default { start(ctx) {
        ctx.subscribe("claim-a." + ctx.workload.name, () => {
          for (let i = 0; i < 60; i++) ctx.subscribe("filler." + i + "." + ctx.workload.name, () => "");
          ctx.subscribe("pay.x", () => "A");
          return "subscribed";
        });
      } }`, "tenant-a");
      const b = await deployService(`export default { start(ctx) {
        ctx.subscribe("claim-b." + ctx.workload.name, (subject, payload) => {
          try { ctx.subscribe(new TextDecoder().decode(payload), () => "B", { queue: "q" }); return "subscribed"; }
          catch (e) { return e.code + ": " + e.message; }
        });
      } }`, "tenant-b");
      await waitFor("both services", async () => ((await runtime.stats(a.id))?.service?.subscriptions.length ?? 0) === 1 && ((await runtime.stats(b.id))?.service?.subscriptions.length ?? 0) === 1);
      expect(text(await nc.request(`claim-a.${a.name}`, "", { timeout: 10_000 }))).toBe("subscribed");
      // At once, while A's claim writes still go to the bucket: the runtime host's own view has pay.x.
      expect(text(await nc.request(`claim-b.${b.name}`, "pay.>", { timeout: 10_000 }))).toBe('forbidden: subject "pay.>" overlaps pay.x, which namespace tenant-a serves');
      for (let i = 0; i < 10; i++) expect(text(await nc.request("pay.x", "", { timeout: 10_000 }))).toBe("A");
    });

    it("coalesces the claim writes of a service that subscribes and unsubscribes in a loop: at most one in flight and one owed, the latest set last", async () => {
      const s = await deployService(`export default { start(ctx) {
        ctx.subscribe("churn." + ctx.workload.name, () => {
          for (let i = 0; i < 300; i++) ctx.subscribe("churn.x." + ctx.workload.name, () => "")();
          ctx.subscribe("churn.done." + ctx.workload.name, () => "");
          return "churned";
        });
      } }`);
      const kv = await new Kvm(nc).create("NEX_TRIGGERS", { history: 1 });
      const key = `runtime-host.${s.id}.subscriptions`;
      const subjectsIn = async (): Promise<string | undefined> => {
        const e = await kv.get(key);
        return e?.operation === "PUT" ? (JSON.parse(e.string()) as { subjects: string[] }).subjects.sort().join() : undefined;
      };
      await waitFor("the claim", async () => (await subjectsIn()) === `churn.${s.name}`);
      expect(text(await nc.request(`churn.${s.name}`, "", { timeout: 10_000 }))).toBe("churned");
      // 601 changes of the set just now: one write per change would leave hundreds queued.
      expect((await runtime.stats(s.id))?.service?.claim_writes_queued).toBeLessThanOrEqual(2);
      // The latest set (never held before the loop ended) is written last.
      const latest = [`churn.${s.name}`, `churn.done.${s.name}`].sort().join();
      await waitFor("the latest set in the bucket", async () => (await subjectsIn()) === latest);
      await waitFor("the writes to end", async () => (await runtime.stats(s.id))?.service?.claim_writes_queued === 0);
      expect(await subjectsIn()).toBe(latest);
    });

    it("a storm of 1 ms intervals that burn CPU and tamper with Array, Promise and timers keeps to its own isolate", async () => {
      const s = await deployService(`
        Object.defineProperty(Array.prototype, "0", { set() { throw new Error("gotcha"); }, configurable: true });
        Promise.prototype.then = function () { throw new Error("no then"); };
        export default { start(ctx) {
          for (let i = 0; i < 900; i++) setInterval(() => { const end = Date.now() + 1; while (Date.now() < end) {} }, 1);
          ctx.subscribe("storm." + ctx.workload.name, () => "still answering");
          globalThis.setTimeout = () => { throw new Error("replaced"); };
        } }`);
      await waitFor("the storm to run", async () => ((await runtime.stats(s.id))?.service?.timers ?? 0) === 900);
      // 900 guest intervals cost the shared runtime host one timer, not 900 main-thread callbacks a tick.
      expect((await runtime.stats(s.id))?.service?.host_timers).toBeLessThanOrEqual(1);
      await bystander.answersAgain(20);
      const reply = await nc.request(`storm.${s.name}`, "", { timeout: 30_000 });
      expect(errorCode(reply) === undefined ? text(reply) : errorCode(reply)).toMatch(/still answering|503/);
    });

    it("gets at most TIMER_FIRES_PER_SECOND timer fires a second, however many 1 ms intervals it sets", async () => {
      const s = await deployService(`
        let fires = 0;
        export default { start(ctx) {
          for (let i = 0; i < 1000; i++) setInterval(() => { fires++; }, 1);
          ctx.subscribe("fires." + ctx.workload.name, () => String(fires));
        } }`);
      const fires = async () => Number(text(await nc.request(`fires.${s.name}`, "", { timeout: 10_000 })));
      await waitFor("the intervals to run", async () => (await fires()) > 0);
      const before = await fires();
      const started = Date.now();
      await new Promise((r) => setTimeout(r, 2000));
      const after = await fires();
      const seconds = (Date.now() - started) / 1000;
      // 1,000 intervals of 1 ms would be a million fires a second; the run gets its rate (and one burst).
      expect(after - before).toBeGreaterThan(0);
      expect(after - before).toBeLessThanOrEqual(TIMER_FIRES_PER_SECOND * (seconds + 1));
      await bystander.answersAgain(20);
    });
  });
});

// Its own runtime host: the claims view is one per runtime host, and this one must not have loaded it.
describe("JavaScript services while the trigger claims cannot be read", { timeout: 90_000 }, () => {
  let broker: RunningBroker;
  let nc: NatsConnection;
  let runtime: JsRuntime;

  beforeAll(async () => {
    broker = await startBroker({ port: 0 });
    nc = await connect({ servers: broker.url });
    // The bucket's stream with its only consumer taken: the runtime host cannot watch it, so the claims do not load.
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: "KV_NEX_TRIGGERS", subjects: ["$KV.NEX_TRIGGERS.>"], max_consumers: 1, max_msgs_per_subject: 1, allow_rollup_hdrs: true });
    await jsm.consumers.add("KV_NEX_TRIGGERS", { durable_name: "squatter", ack_policy: AckPolicy.None });
    runtime = new JsRuntime({ natsUrl: broker.url, observer: new RuntimeRecorder() });
    await runtime.start();
  }, 60_000);

  afterAll(async () => {
    await runtime?.close();
    await nc?.close();
    await broker?.close();
  });

  it("refuses a service's subscriptions (unavailable) rather than letting them through unchecked, and checks them once the claims load", async () => {
    const s = spec(
      `export default { start(ctx) {
        ctx.subscribe("avail." + ctx.workload.name, (subject, payload) => {
          try { ctx.subscribe(new TextDecoder().decode(payload), () => "taken")(); return "subscribed"; }
          catch (e) { return e.code + ": " + e.message; }
        });
      } }`,
      { namespace: "avail", triggerSubjects: [], service: { restart: { policy: "always" } }, name: "avail-svc" },
    );
    await runtime.deploy(s);
    try {
      await waitFor("start to be refused", async () => /unavailable/.test((await runtime.stats(s.id))?.service?.last_exit ?? ""));
      expect((await runtime.stats(s.id))?.service?.last_exit).toMatch(/^crashed: start failed: subject "avail\.avail-svc" cannot be checked: the trigger claims are unavailable/);
      expect((await runtime.stats(s.id))?.service?.subscriptions).toEqual([]);
      // The bucket becomes readable: a later restart opens the claims again and subscribes, checked.
      await (await jetstreamManager(nc)).streams.delete("KV_NEX_TRIGGERS");
      await waitFor("the service to subscribe", async () => ((await runtime.stats(s.id))?.service?.subscriptions.length ?? 0) === 1, 60_000);
      const probe = async (subject: string): Promise<string> => text(await nc.request(`avail.${s.name}`, subject, { timeout: 10_000 }));
      expect(await probe("avail.own")).toBe("subscribed");
      const kv = await new Kvm(nc).create("NEX_TRIGGERS", { history: 1 });
      await kv.put("NTEST.other", JSON.stringify({ namespace: "other", subjects: ["other.x"] }));
      await waitFor("the claim to be seen", async () => (await probe("other.x")) !== "subscribed");
      expect(await probe("other.>")).toBe('forbidden: subject "other.>" overlaps other.x, which namespace other serves');
    } finally {
      await runtime.undeploy(s.id);
    }
  });
});

describe("ResultChannel.read", () => {
  it("turns an entry that points outside the shared area into an error for that trigger alone", () => {
    const channel = new ResultChannel();
    const table = new Int32Array(channel.shared, TABLE_OFFSET, MAX_RESULTS * ENTRY.size);
    const bad: [number, number][] = [
      [0x7fff0000, 10],
      [-8, 4],
      [0, DATA_BYTES + 1],
      [DATA_BYTES - 2, 4],
      [0, -1],
    ];
    for (const [k, [offset, length]] of bad.entries()) {
      table[k * ENTRY.size + ENTRY.offset] = offset;
      table[k * ENTRY.size + ENTRY.length] = length;
      table[k * ENTRY.size + ENTRY.kind] = k % 2 === 0 ? RESULT_KIND.ok : RESULT_KIND.error;
    }
    table[bad.length * ENTRY.size + ENTRY.kind] = 99;
    for (let k = 0; k <= bad.length; k++) {
      const outcome = channel.read(k, 1000);
      expect(outcome, `entry ${k}`).toMatchObject({ ok: false, code: 500 });
    }
  });
});

describe("RunningBatch.onResult", () => {
  it("answers only this batch's triggers, once each, with what the isolate may send, whatever else it sends", () => {
    const channel = new ResultChannel();
    const answers: (Outcome | undefined)[] = [undefined, undefined, undefined, undefined];
    const resolved = answers.map(() => 0);
    const jobs = answers.map((_, k) => ({
      subject: `s${k}`,
      payload: new Uint8Array(0),
      enqueuedAt: Date.now(),
      resolve: (o: Outcome) => {
        answers[k] = o;
        resolved[k]++;
      },
    }));
    const batch = new RunningBatch(7, jobs, channel, 1000, () => {});
    // Another trigger's slot, or none: indices outside the batch, or not indices at all.
    for (const index of [4, 63, 64, -2, 1.5, Number.NaN, Infinity, "0", null, undefined, { valueOf: () => 0 }]) {
      batch.onResult(index, RESULT_KIND.ok, "forged");
    }
    expect(resolved).toEqual([0, 0, 0, 0]);
    // Wrong types and kinds: an error for that trigger, never a reply made of them.
    batch.onResult(0, RESULT_KIND.ok, { forged: true });
    batch.onResult(1, 99, "kind 99");
    batch.onResult(2, RESULT_KIND.tooLarge, 12345);
    batch.onResult(3, RESULT_KIND.ok, new Uint8Array([1, 2]));
    expect(answers[0]).toMatchObject({ ok: false, code: 500, message: "the function failed" });
    expect(answers[1]).toMatchObject({ ok: false, code: 500, message: "kind 99" });
    expect(answers[2]).toMatchObject({ ok: false, code: 413, message: "reply too large" });
    expect(answers[3]).toEqual({ ok: true, data: new Uint8Array([1, 2]) });
    // A replay, by callback or through the shared area, changes no answer.
    for (let k = 0; k < 4; k++) batch.onResult(k, RESULT_KIND.ok, "replayed");
    const table = new Int32Array(channel.shared, TABLE_OFFSET, MAX_RESULTS * ENTRY.size);
    Atomics.store(new Int32Array(channel.shared, 0, 4), HEAD.batch, 7);
    for (let k = 0; k < 4; k++) Atomics.store(table, k * ENTRY.size + ENTRY.kind, RESULT_KIND.ok);
    batch.onResult(-1, RESULT_KIND.none, undefined);
    expect(resolved).toEqual([1, 1, 1, 1]);
    expect(answers[3]).toEqual({ ok: true, data: new Uint8Array([1, 2]) });
  });

  it("answers timeout to its triggers past their deadline when the isolate is stopped for another reason", async () => {
    const channel = new ResultChannel();
    const answers: (Outcome | undefined)[] = [undefined, undefined];
    const jobs = answers.map((_, k) => ({ subject: `s${k}`, payload: new Uint8Array(0), enqueuedAt: Date.now(), resolve: (o: Outcome) => (answers[k] = o) }));
    const batch = new RunningBatch(9, jobs, channel, 1000, () => {});
    const table = new Int32Array(channel.shared, TABLE_OFFSET, MAX_RESULTS * ENTRY.size);
    // Trigger 0 started as the batch was handed over, trigger 1 300 ms later (start times are
    // base-relative, plus 1, and never taken as later than now).
    await new Promise((r) => setTimeout(r, 300));
    Atomics.store(table, 0 * ENTRY.size + ENTRY.started, 1);
    Atomics.store(table, 1 * ENTRY.size + ENTRY.started, 301);
    Atomics.store(new Int32Array(channel.shared, 0, 4), HEAD.batch, 9);
    const timeout: Outcome = { ok: false, code: 504, message: "timeout: the trigger did not finish within 1000 ms" };
    batch.answerOverdue(batch.dispatchedAt + 1200, timeout);
    expect(answers[0]).toEqual(timeout);
    expect(answers[1]).toBeUndefined();
    // The stop then answers the others as bystanders, and the overdue one keeps its timeout.
    batch.end({ ok: false, code: 500, message: "memory" }, []);
    expect(answers[0]).toEqual(timeout);
    expect(answers[1]).toMatchObject({ code: 500, message: expect.stringMatching(/stopped with its isolate/) });
  });

  it("answers a too-large refusal written to the shared area with 413", () => {
    const channel = new ResultChannel();
    const message = new TextEncoder().encode("reply too large: 2000000 bytes");
    new Uint8Array(channel.shared, DATA_OFFSET, DATA_BYTES).set(message);
    const table = new Int32Array(channel.shared, TABLE_OFFSET, MAX_RESULTS * ENTRY.size);
    table[ENTRY.offset] = 0;
    table[ENTRY.length] = message.length;
    Atomics.store(table, ENTRY.kind, RESULT_KIND.tooLarge);
    expect(channel.read(0, 1000)).toEqual({ ok: false, code: 413, message: "reply too large: 2000000 bytes" });
  });
});
