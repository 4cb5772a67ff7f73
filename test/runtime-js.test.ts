// The JavaScript runtime end to end: a real bundled broker on an OS-chosen port, the runtime-host child
// from dist/ (run `npx tsc -p .` first; `npm test` does), and @nats-io/transport-node as the requester.
// No timing thresholds: deadlines only decide which error comes back, never whether a test passes.

import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { connect, headers as natsHeaders, type Msg, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import pino from "pino";
import { startBroker, type RunningBroker } from "../src/broker/index.js";
import { defaultHostScript, JsRuntime } from "../src/runtimes/js/js-runtime.js";
import { BOOTSTRAP_SOURCE } from "../src/runtimes/js/isolate/bootstrap.js";
import { MAX_HOST_BYTES_WAITING, MAX_HOST_CALLS_IN_FLIGHT, MAX_HOST_CALLS_WAITING } from "../src/runtimes/js/host/host-call-turns.js";
import type { JavaScriptSpec } from "../src/runtimes/types.js";
import { HostServices, type HostAnswer } from "../src/host-services/server.js";
import { NO_DEPLOY_GRANT } from "../src/protocol/host-services.js";
import { RuntimeRecorder } from "./helpers/recorder.js";
import { waitFor } from "./helpers/wait.js";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const FIXTURES = path.join(HERE, "fixtures", "js");
const dec = new TextDecoder();

let seq = 0;
function spec(fixture: string, over: Partial<JavaScriptSpec> = {}): JavaScriptSpec {
  const n = ++seq;
  const name = over.name ?? `${fixture.replace(/\.js$/, "")}-${n}`;
  const artifact = over.artifact ?? new Uint8Array(fs.readFileSync(path.join(FIXTURES, fixture)));
  return {
    id: `wl-${n}`,
    name,
    namespace: "test",
    type: "javascript",
    artifact,
    sha256: "",
    triggerSubjects: [`rt.${name}`],
    limits: { memoryMb: 32, timeoutMs: 2000, cpuMs: 2000 },
    env: {},
    freshContextPerTrigger: false,
    concurrency: 1,
    deploysWorkloads: false,
    ...over,
  };
}

function text(m: Msg): string {
  return dec.decode(m.data);
}

function json(m: Msg): unknown {
  return JSON.parse(text(m));
}

describe("JavaScript runtime", () => {
  it("keeps the bootstrap source in Latin-1, so V8 stores it one byte a character in each isolate", () => {
    expect([...BOOTSTRAP_SOURCE].filter((c) => c.charCodeAt(0) > 0xff)).toEqual([]);
  });


  let broker: RunningBroker;
  let nc: NatsConnection;
  let observer: RuntimeRecorder;
  let runtime: JsRuntime;
  const deployed: string[] = [];

  beforeAll(async () => {
    if (!fs.existsSync(defaultHostScript())) {
      throw new Error(`${defaultHostScript()} is missing: build first (npx tsc -p .)`);
    }
    // Room for a payload over the runtime's cap (a quarter of the isolate's memory limit).
    broker = await startBroker({ port: 0, maxPayload: 4 * 1024 * 1024 });
    nc = await connect({ servers: broker.url });
    observer = new RuntimeRecorder();
    runtime = new JsRuntime({ natsUrl: broker.url, observer });
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

  function request(s: JavaScriptSpec, payload: string | Uint8Array = "", timeout = 10_000): Promise<Msg> {
    return nc.request(s.triggerSubjects[0], payload, { timeout });
  }

  it("answers a request on its trigger subject", async () => {
    const s = await deploy(spec("echo.js"));
    expect(text(await request(s, "hi"))).toBe(`${s.triggerSubjects[0]}: hi`);
    expect(runtime.childPid).toBeGreaterThan(0);
  });

  it("replies with strings, bytes and JSON as documented", async () => {
    const bytes = await deploy(spec("bytes.js"));
    const reply = await request(bytes, new Uint8Array([1, 2, 3, 255]));
    expect([...reply.data]).toEqual([255, 3, 2, 1]);

    const obj = await deploy(spec("json.js"));
    expect(json(await request(obj, "abcd"))).toEqual({ subject: obj.triggerSubjects[0], size: 4, ok: true });
    // undefined → empty reply
    const empty = await request(obj, "");
    expect(empty.data.length).toBe(0);
    expect(empty.headers?.get("Nats-Service-Error-Code") ?? "").toBe("");
  });

  it("runs async functions and `export default` modules", async () => {
    const a = await deploy(spec("async.js"));
    expect(json(await request(a, "shout"))).toEqual({ upper: "SHOUT" });
    const m = await deploy(spec("export-default.js"));
    expect(text(await request(m, "world"))).toBe("hello from a module, world");
  });

  it("turns a throw or a rejection into an error reply and reports it", async () => {
    const s = await deploy(spec("throws.js"));
    for (const [kind, message] of [
      ["sync", "sync failure: sync"],
      ["async", "async failure: async"],
      ["string", "a thrown string"],
    ]) {
      const reply = await request(s, kind);
      expect(reply.headers?.get("Nats-Service-Error-Code")).toBe("500");
      expect(reply.headers?.get("Nats-Service-Error")).toBe(message);
      expect(reply.headers?.get("Nex-Error")).toBe(message);
      expect(json(reply)).toEqual({ error: { code: 500, message } });
    }
    await waitFor("three triggerFailed calls", () => observer.failures.filter((f) => f.id === s.id).length === 3);
    expect(observer.failures.find((f) => f.id === s.id)).toMatchObject({ subject: s.triggerSubjects[0] });
  });

  it("still runs a trigger without a reply subject (fire-and-forget)", async () => {
    const s = await deploy(spec("console.js"));
    nc.publish(s.triggerSubjects[0], "no-reply");
    await waitFor("the console line", () => observer.logs.some((l) => l.id === s.id && l.line.includes("no-reply")));
  });

  it("sends console output to the observer, stdout and stderr apart", async () => {
    const s = await deploy(spec("console.js"));
    expect(text(await request(s, "x"))).toBe("logged");
    await waitFor("four console calls", () => observer.logs.filter((l) => l.id === s.id).length >= 4);
    const mine = observer.logs.filter((l) => l.id === s.id);
    expect(mine).toContainEqual({ id: s.id, stream: "stdout", line: 'log line x {"n":1}' });
    expect(mine).toContainEqual({ id: s.id, stream: "stdout", line: "info n=2" });
    expect(mine).toContainEqual({ id: s.id, stream: "stderr", line: "warn line x" });
    expect(mine.some((l) => l.stream === "stderr" && l.line === "Error: an error object")).toBe(true);
  });

  it("gives workloads crypto.getRandomValues and randomUUID from a CSPRNG of their own context", async () => {
    type R = { bytes: string; words: string; untouched: boolean; uuid: string; frozen: boolean };
    const a = await deploy(spec("random.js"));
    const b = await deploy(spec("random.js", { freshContextPerTrigger: true }));
    const seen = new Set<string>();
    for (const s of [a, b, a, b, a]) {
      const r = json(await request(s, "")) as R;
      expect(r.bytes).toMatch(/^[0-9a-f]{64}$/);
      expect(r.words).toMatch(/^[0-9a-f]{32}$/);
      expect(r.uuid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      expect(r.untouched).toBe(true); // only the view asked for is filled
      expect(r.frozen).toBe(true);
      for (const v of [r.bytes, r.words, r.uuid]) {
        expect(seen.has(v)).toBe(false);
        seen.add(v);
      }
    }
    // Tampering with its own Math.random and typed-array prototypes changes nothing.
    const t = json(await request(a, "tamper")) as R;
    expect(t.bytes).toMatch(/^[0-9a-f]{64}$/);
    expect(t.bytes).not.toBe("0".repeat(64));
    expect(seen.has(t.bytes)).toBe(false);
    // Web Crypto's refusals: not an integer array, over 65,536 bytes.
    expect(json(await request(b, "bad"))).toEqual({
      float: expect.stringMatching(/^TypeMismatchError: crypto.getRandomValues: the argument must be an integer-typed array/),
      plain: expect.stringMatching(/^TypeMismatchError: /),
      big: "QuotaExceededError: crypto.getRandomValues: 65537 bytes asked, at most 65536 per call",
      max: "no error",
    });
  });

  it("keeps module state in the warm context across triggers", async () => {
    const s = await deploy(spec("counter.js"));
    const counts = [];
    for (let i = 0; i < 3; i++) counts.push((json(await request(s)) as { count: number }).count);
    expect(counts).toEqual([1, 2, 3]);
  });

  it("gives every trigger a fresh context when asked", async () => {
    const s = await deploy(spec("counter.js", { freshContextPerTrigger: true }));
    const replies = [];
    for (let i = 0; i < 5; i++) replies.push(json(await request(s)) as { count: number; id: string });
    expect(replies.map((r) => r.count)).toEqual([1, 1, 1, 1, 1]);
    expect(new Set(replies.map((r) => r.id)).size).toBe(5);
  });

  it("keeps giving a module fresh contexts for hundreds of triggers within a small memory limit", async () => {
    // Each context evaluates the module again; whatever one keeps alive after its trigger adds up, and at
    // 32 MB a leaked context per trigger ended the isolate in about 150 triggers.
    const s = await deploy(spec("export-default.js", { freshContextPerTrigger: true, limits: { memoryMb: 32, timeoutMs: 2000, cpuMs: 2000 } }));
    const failures: string[] = [];
    for (let i = 0; i < 600; i++) {
      const m = await request(s, `n${i}`);
      if (m.headers?.get("Nats-Service-Error-Code")) failures.push(`${i}: ${m.headers.get("Nex-Error")}`);
    }
    expect(failures).toEqual([]);
  });

  it("serves triggers in parallel on `concurrency` isolates", async () => {
    const two = await deploy(spec("counter.js", { concurrency: 2 }));
    const [a, b] = (await Promise.all([request(two, "400"), request(two, "400")])).map((m) => json(m) as { count: number; id: string });
    // Both isolates served one trigger each, so each saw its own first trigger.
    expect(a.id).not.toBe(b.id);
    expect([a.count, b.count]).toEqual([1, 1]);

    const one = await deploy(spec("counter.js", { concurrency: 1 }));
    const [c, d] = (await Promise.all([request(one, "100"), request(one, "100")])).map((m) => json(m) as { count: number; id: string });
    expect(c.id).toBe(d.id);
    expect([c.count, d.count].sort()).toEqual([1, 2]);
  });

  it("answers triggers that waited past their deadline for a busy isolate with a timeout", async () => {
    const s = await deploy(spec("counter.js", { limits: { memoryMb: 32, timeoutMs: 1000, cpuMs: 1000 } }));
    const replies = await Promise.all(Array.from({ length: 6 }, () => request(s, "300")));
    const errors = replies.map((m) => m.headers?.get("Nex-Error") ?? "");
    expect(errors[0]).toBe("");
    expect(errors.some((e) => /^timeout: the trigger waited more than 1000 ms/.test(e))).toBe(true);
    for (const e of errors) expect(e === "" || /^timeout/.test(e)).toBe(true);
  });

  it("answers \"overloaded\" beyond the bounded queue", async () => {
    const s = await deploy(spec("never.js", { limits: { memoryMb: 32, timeoutMs: 1500, cpuMs: 1500 } }));
    const stuck = request(s, "never");
    await nc.flush();
    const replies = await Promise.all(Array.from({ length: 1100 }, () => request(s, "x")));
    const codes = replies.map((m) => m.headers?.get("Nats-Service-Error-Code") ?? "ok");
    expect(codes).toContain("503");
    expect(replies.find((m) => m.headers?.get("Nats-Service-Error-Code") === "503")?.headers?.get("Nex-Error")).toMatch(/^overloaded/);
    for (const c of codes) expect(["ok", "503", "504"]).toContain(c);
    expect((await stuck).headers?.get("Nats-Service-Error-Code")).toBe("504");
    expect(text(await request(s, "x"))).toBe("alive");
  });

  it("answers many concurrent requests through the queue", async () => {
    const s = await deploy(spec("counter.js"));
    const replies = await Promise.all(Array.from({ length: 200 }, () => request(s)));
    const counts = replies.map((m) => (json(m) as { count: number }).count).sort((x, y) => x - y);
    expect(counts).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
  });

  it("answers every trigger of a batch with its own result: large, async, and around one that overruns", async () => {
    const s = await deploy(spec("batch.js", { limits: { memoryMb: 32, timeoutMs: 1000, cpuMs: 1000 } }));
    // The first trigger holds the isolate, so the rest queue up and go in as one batch.
    const busy = request(s, "busy:200");
    await nc.flush();
    const before = ["e1", "e2", "big:100000", "async:a", "e3", "big:10", "async:b", "e4"];
    const after = ["e5", "e6"];
    const pending = [...before, "loop", ...after].map((p) => request(s, p));
    const replies = await Promise.all(pending);
    expect(text(await busy)).toBe("done busy");
    const expected = (p: string): string => (p.startsWith("big:") ? "x".repeat(Number(p.slice(4))) : p.startsWith("async:") ? `async ${p.slice(6)}` : `echo ${p}`);
    before.forEach((p, i) => {
      const error = replies[i].headers?.get("Nex-Error") ?? "";
      if (p.startsWith("async:")) {
        // Still awaiting when the runaway took the isolate (its continuation never got a turn): it ends
        // with the isolate and says so, as its own timeout or as the runaway's bystander.
        expect(error, p).toMatch(/^timeout: the trigger did not finish within 1000 ms|^stopped with its isolate, because a trigger running beside it ended so: timeout/);
        return;
      }
      expect(error, p).toBe("");
      expect(text(replies[i]), p).toBe(expected(p));
    });
    const loop = replies[before.length];
    expect(loop.headers?.get("Nex-Error")).toMatch(/^timeout: the trigger did not finish within 1000 ms/);
    // Triggers behind the runaway never started in that isolate: they run on its replacement, or (having
    // waited their whole deadline) answer a queue timeout. Either way they are answered, and correctly.
    after.forEach((p, i) => {
      const reply = replies[before.length + 1 + i];
      const error = reply.headers?.get("Nex-Error");
      if (error) expect(error).toMatch(/^timeout: the trigger waited more than 1000 ms/);
      else expect(text(reply)).toBe(expected(p));
    });
    expect(text(await request(s, "again"))).toBe("echo again");
  });

  it("overlaps the async triggers of a batch, each answering its own result", async () => {
    const s = await deploy(spec("batch.js"));
    const busy = request(s, "busy:200");
    await nc.flush();
    const payloads = ["async:a", "e1", "async:b", "big:20000", "async:c", "async:d", "e2", "async:e"];
    const replies = await Promise.all(payloads.map((p) => request(s, p)));
    expect(text(await busy)).toBe("done busy");
    expect(replies.map((m) => m.headers?.get("Nex-Error") ?? "")).toEqual(payloads.map(() => ""));
    expect(replies.map(text)).toEqual(["async a", "echo e1", "async b", "x".repeat(20000), "async c", "async d", "echo e2", "async e"]);
  });

  describe("limits", () => {
    const limits = { memoryMb: 32, timeoutMs: 300, cpuMs: 300 };

    async function survives(fixture: string, bad: string, expected: RegExp, over: Partial<JavaScriptSpec> = {}): Promise<void> {
      const other = await deploy(spec("echo.js"));
      const s = await deploy(spec(fixture, { limits, ...over }));
      const pending = request(s, bad);
      // Another workload keeps answering while this one misbehaves.
      for (let i = 0; i < 3; i++) expect(text(await request(other, `ping ${i}`))).toBe(`${other.triggerSubjects[0]}: ping ${i}`);
      const reply = await pending;
      expect(reply.headers?.get("Nats-Service-Error-Code")).toMatch(/^5\d\d$/);
      expect(reply.headers?.get("Nex-Error")).toMatch(expected);
      expect((json(reply) as { error: { message: string } }).error.message).toMatch(expected);
      // The same workload (on a fresh isolate) answers the next request.
      expect(text(await request(s, "again"))).toBe("alive");
      await waitFor("triggerFailed", () => observer.failures.some((f) => f.id === s.id && expected.test(f.error)));
    }

    it("stops an infinite loop", async () => {
      await survives("loop.js", "loop", /^timeout/);
    });

    it("stops an unbounded allocation at the memory limit", async () => {
      // A deadline far beyond the allocation's time, so the memory limit decides even on a busy machine.
      await survives("alloc.js", "alloc", /memory limit/, { limits: { memoryMb: 32, timeoutMs: 10_000, cpuMs: 10_000 } });
    });

    it("ends a never-settling promise at the deadline", async () => {
      await survives("never.js", "never", /^timeout/);
    });

    it("stops a CPU runaway after an await at the CPU budget", async () => {
      await survives("cpu.js", "spin", /CPU time/, { limits: { memoryMb: 32, timeoutMs: 5000, cpuMs: 100 } });
    });

    it("refuses payloads over the cap before they reach the isolate", async () => {
      // 8 MB of memory → payloads up to 2 MB.
      const s = await deploy(spec("echo.js", { limits: { memoryMb: 8, timeoutMs: 1000, cpuMs: 1000 } }));
      const reply = await request(s, new Uint8Array(3 * 1024 * 1024));
      expect(reply.headers?.get("Nats-Service-Error-Code")).toBe("413");
      expect(reply.headers?.get("Nex-Error")).toMatch(/payload too large/);
      expect(text(await request(s, "small"))).toBe(`${s.triggerSubjects[0]}: small`);
    });
  });

  it("exposes no Node globals and copies only the payload into the isolate", async () => {
    const s = await deploy(spec("sandbox.js", { env: { GREETING: "hej" } }));
    const big = new Uint8Array(1000).fill(7);
    const r = json(await request(s, big.subarray(10, 20))) as Record<string, unknown>;
    expect(r).toMatchObject({
      require: "undefined",
      process: "undefined",
      module: "undefined",
      fs: "undefined",
      ivm: "undefined",
      payloadLength: 10,
      bufferLength: 10,
      hostServices: "object",
      globals: [],
      env: "hej",
      WebAssembly: "undefined",
      resize: "undefined",
      grow: "undefined",
    });
  });

  it("rejects a deploy that does not compile or is not a function, with a clear message", async () => {
    await expect(runtime.deploy(spec("syntax-error.js"))).rejects.toThrow(/has a syntax error: Unexpected token/);
    await expect(runtime.deploy(spec("not-a-function.js"))).rejects.toThrow(/must evaluate to a function.*number/);
    const imports = new TextEncoder().encode('import x from "y";\nexport default () => x;');
    await expect(runtime.deploy(spec("x.js", { artifact: imports }))).rejects.toThrow(/imports 'y'/);
    const throws = new TextEncoder().encode('throw new Error("no config");');
    await expect(runtime.deploy(spec("x.js", { artifact: throws }))).rejects.toThrow(/threw while loading: no config/);
    await expect(runtime.deploy(spec("echo.js", { triggerSubjects: ["not valid"] }))).rejects.toThrow(/trigger subject 'not valid'/);
    // The runtime is fine afterwards.
    const s = await deploy(spec("echo.js"));
    expect(text(await request(s, "ok"))).toBe(`${s.triggerSubjects[0]}: ok`);
  });

  it("undeploys (no responders afterwards) and reports stats", async () => {
    const s = await deploy(spec("echo.js"));
    for (let i = 0; i < 3; i++) await request(s, "x");
    const stats = await runtime.stats(s.id);
    expect(stats).toBeDefined();
    expect(stats!.triggers).toBe(3);
    expect(stats!.failures).toBe(0);
    expect(typeof stats!.meanMs).toBe("number");
    expect(stats!.memoryBytes).toBeGreaterThan(0);
    await runtime.undeploy(s.id);
    deployed.splice(deployed.indexOf(s.id), 1);
    expect(await runtime.stats(s.id)).toBeUndefined();
    await expect(request(s, "x", 1000)).rejects.toThrow();
  });

  describe("host services", () => {
    // The runtime host serves kv, objectStore and messaging itself, with the real handlers on this broker's
    // JetStream; the test writes and reads the same buckets through a HostServices of its own.
    const ns = "hs";
    let seed: HostServices;
    const GATHER = 4;
    const gathering: Msg[] = [];

    async function kvCall(owner: string, method: string, key: string, value = "", bucket?: string): Promise<HostAnswer> {
      const fields: Record<string, string> = { "Nex-Key": key, ...(bucket ? { "Nex-Bucket": bucket } : {}) };
      const answer = await seed.invoke({ id: "seed", name: owner, namespace: ns }, "kv", method, (k) => fields[k], new TextEncoder().encode(value));
      expect(answer.headers["Nex-Error-Code"], `kv.${method} ${key}: ${String(answer.body)}`).toBeUndefined();
      return answer;
    }
    const put = (owner: string, key: string, value: string, bucket?: string): Promise<HostAnswer> => kvCall(owner, "set", key, value, bucket);
    const stored = async (owner: string, key: string): Promise<string> => dec.decode((await kvCall(owner, "get", key)).body as Uint8Array);

    beforeAll(async () => {
      seed = new HostServices(nc, pino({ level: "silent" }));
      nc.subscribe("echo.svc", { callback: (_err, m) => void m.respond(`pong: ${dec.decode(m.data)}`) });
      // Answers only once GATHER requests are out at the same time.
      nc.subscribe("gather.svc", {
        callback: (_err, m) => {
          gathering.push(m);
          if (gathering.length === GATHER) for (const g of gathering.splice(0)) g.respond(`gathered ${GATHER}: ${dec.decode(g.data)}`);
        },
      });
      nc.subscribe("slow.svc", { callback: () => undefined }); // never answers
      // Plays the node for `workloads.*`, the one host service a function reaches over NATS (with a grant):
      // the node keeps children's records in KV, and here that stream has no leader.
      nc.subscribe(`$NEX.HOST.${ns}.*.workloads.>`, {
        callback: (_err, m) => {
          const h = natsHeaders();
          h.set("Nex-Error-Code", "unavailable");
          m.respond("JetStream temporarily unavailable: stream KV_NEX_CHILDREN has no leader (retried for 4900 ms)", { headers: h });
        },
      });
      await nc.flush();
    });

    it("calls KV synchronously from a synchronous function", async () => {
      const s = spec("kv-sync.js", { namespace: ns });
      await put(s.name, "greeting", "hello");
      await put(s.name, "greeting", "hello", "shared");
      await deploy(s);
      const r = json(await request(s, "greeting")) as { keys: string[] };
      expect(r).toEqual({
        key: "greeting",
        value: "hello",
        revision: expect.any(Number),
        missing: null,
        keys: expect.arrayContaining(["greeting", "greeting.seen"]),
        shared: "hello",
      });
      expect(r.keys).toHaveLength(2);
      expect(JSON.parse(await stored(s.name, "greeting.seen"))).toEqual({ value: "hello" });
    });

    it("answers 503 when a host service's `unavailable` error escapes the function", async () => {
      const s = await deploy(spec("kv-unavailable.js", { namespace: ns, deploysWorkloads: true }));
      for (const how of ["sync", "async"]) {
        const reply = await request(s, how);
        expect(reply.headers?.get("Nats-Service-Error-Code")).toBe("503");
        expect(reply.headers?.get("Nex-Error")).toMatch(/^JetStream temporarily unavailable: stream KV_NEX_CHILDREN has no leader/);
      }
      expect(json(await request(s, "caught"))).toEqual({ code: "unavailable", message: expect.stringMatching(/^JetStream temporarily unavailable/) });
      expect((await request(s, "forged")).headers?.get("Nats-Service-Error-Code")).toBe("500");
    });

    it("answers 503 when a host service's `unavailable` error escapes a service's handler", async () => {
      const s = await deploy(spec("service/kv-unavailable.js", { namespace: ns, deploysWorkloads: true, service: { restart: { policy: "never" } } }));
      const reply = await request(s, "x");
      expect(reply.headers?.get("Nats-Service-Error-Code")).toBe("503");
      expect(reply.headers?.get("Nex-Error")).toMatch(/^JetStream temporarily unavailable: stream KV_NEX_CHILDREN has no leader/);
    });

    it("calls host services synchronously from an async function", async () => {
      const s = spec("kv-async.js", { namespace: ns });
      await put(s.name, "color", "blue");
      await deploy(s);
      expect(json(await request(s, "color"))).toEqual({ value: "blue", reply: "pong: ping" });
    });

    it("offers every host service as promises too (hostServices.async)", async () => {
      const s = spec("kv-promises.js", { namespace: ns });
      await put(s.name, "greeting", "hello");
      await put(s.name, "greeting", "hello", "shared");
      await deploy(s);
      const r = json(await request(s, "go"));
      expect(r).toEqual({
        value: "hello",
        revision: expect.any(Number),
        missing: null,
        keys: expect.arrayContaining(["greeting", "greeting.async"]),
        shared: "hello",
        reply: "pong: ping",
      });
      expect(JSON.parse(await stored(s.name, "greeting.async"))).toEqual({ value: "hello" });
      expect(json(await request(s, "forbidden"))).toEqual({ name: "Error", code: "forbidden", message: "workloads may not use $JS.> subjects" });
      expect(json(await request(s, "bad-key"))).toEqual({ rejected: "key must be a string" });
    });

    it("lets the async triggers of a batch have their host calls out at the same time", async () => {
      // gather.svc answers only when 4 requests are out together: one isolate taking its triggers in
      // turn would never get there, and each would time out.
      const s = await deploy(spec("gather.js", { namespace: ns }));
      const busy = request(s, "busy:200");
      await nc.flush();
      const replies = await Promise.all(["a", "b", "c", "d"].map((p) => request(s, p)));
      expect(text(await busy)).toBe("done busy");
      expect(replies.map(text)).toEqual(["gathered 4: a", "gathered 4: b", "gathered 4: c", "gathered 4: d"]);
    });

    describe("triggers that arrive while earlier ones await", () => {
      // hold.svc answers only when the test says: a trigger holding on it keeps its batch open.
      const held: Msg[] = [];
      beforeAll(async () => {
        nc.subscribe("hold.svc", { callback: (_err, m) => void held.push(m) });
        await nc.flush();
      });
      afterEach(() => {
        for (const m of held.splice(0)) m.respond("released");
      });

      it("start at once on the same isolate, instead of waiting behind a host call (no head-of-line blocking)", async () => {
        // One isolate; each "hold" stays out until released. Without batches beside each other, the second
        // "hold" and the quick triggers would wait for the first to end, and time out.
        const s = await deploy(spec("hold.js", { namespace: ns, limits: { memoryMb: 32, timeoutMs: 15_000, cpuMs: 15_000 } }));
        const first = request(s, "hold", 20_000);
        await waitFor("first hold out", () => held.length === 1);
        const second = request(s, "hold", 20_000);
        await waitFor("second hold out", () => held.length === 2);
        const quick = await Promise.all(["a", "b", "c"].map((p) => request(s, p, 5000)));
        expect(quick.map(text)).toEqual(["quick a", "quick b", "quick c"]);
        held[1].respond("two");
        expect(text(await second)).toBe("held: two");
        held[0].respond("one");
        expect(text(await first)).toBe("held: one");
        held.splice(0);
        expect(text(await request(s, "after"))).toBe("quick after");
      });

      it("stop with their isolate when a trigger beside them overruns its deadline: it answers timeout, they say why", async () => {
        const s = await deploy(spec("hold.js", { namespace: ns, limits: { memoryMb: 32, timeoutMs: 1500, cpuMs: 1500 } }));
        const overrunning = request(s, "never");
        // Answered while "never" awaits, so the isolate takes batches beside it; the next "never" runs in one.
        expect(text(await request(s, "between"))).toBe("quick between");
        // Started well after the first, so only the first is past its deadline when the isolate stops:
        // two "never" triggers started in the same few milliseconds both overrun, and both answer timeout.
        await new Promise((r) => setTimeout(r, 300));
        const beside = await request(s, "never");
        const overran = await overrunning;
        expect(overran.headers?.get("Nex-Error")).toMatch(/^timeout/);
        expect(beside.headers?.get("Nats-Service-Error-Code")).toMatch(/^5\d\d$/);
        expect(beside.headers?.get("Nex-Error")).toMatch(/stopped with its isolate, because a trigger running beside it ended so: timeout/);
        // A fresh isolate serves the next trigger.
        expect(text(await request(s, "again"))).toBe("quick again");
      });
    });

    it("adds isolates while a synchronous function's isolates all wait on host services and triggers queue", async () => {
      // gather.sync answers only once 3 requests are out together: one isolate parked on its first
      // request could never send the second, so every trigger would time out.
      const held: Msg[] = [];
      const sub = nc.subscribe("gather.sync", {
        callback: (_err, m) => {
          held.push(m);
          if (held.length === 3) for (const h of held.splice(0)) h.respond(`gathered: ${dec.decode(h.data)}`);
        },
      });
      await nc.flush();
      try {
        const s = await deploy(spec("sync-gather.js", { namespace: ns, limits: { memoryMb: 32, timeoutMs: 8000, cpuMs: 8000 } }));
        const replies = await Promise.all(["a", "b", "c"].map((p) => request(s, p, 15_000)));
        expect(replies.map(text)).toEqual(["gathered: a", "gathered: b", "gathered: c"]);
      } finally {
        sub.unsubscribe();
      }
    });

    it("throttles a fan-out of host calls: the calls past the ones out at once wait for a turn", async () => {
      const s = spec("kv-promises.js", { namespace: ns });
      await put(s.name, "greeting", "hello");
      await deploy(s);
      const n = MAX_HOST_CALLS_IN_FLIGHT * 3;
      expect(json(await request(s, `fanout:${n}`))).toEqual(Array.from({ length: n }, () => "hello"));
    });

    it("sends the calls made so far when the workload makes another after computing a while, not only when its run ends", async () => {
      const arrived: Record<string, number> = {};
      const sub = nc.subscribe("early.svc", {
        callback: (_err, m) => {
          arrived[dec.decode(m.data)] = Date.now();
          m.respond("ok");
        },
      });
      await nc.flush();
      try {
        const s = await deploy(spec("kv-promises.js", { namespace: ns, limits: { memoryMb: 32, timeoutMs: 5000, cpuMs: 5000 } }));
        const { first, end } = json(await request(s, "early", 10_000)) as { first: number; end: number };
        // The first call left when the second was made, 300 ms into the run: not at once, and before the
        // run ended (without the rule it would leave after `end` was read). The second left at the end.
        // Bounds from the order of events on one clock, not margins.
        expect(arrived.a).toBeGreaterThanOrEqual(first + 300);
        expect(arrived.a).toBeLessThan(end);
        expect(arrived.b).toBeGreaterThanOrEqual(end);
      } finally {
        sub.unsubscribe();
      }
    });

    it("refuses host calls past the waiting limits, at once and with a code, and survives the flood", async () => {
      const pid = runtime.childPid;
      // A long deadline: what is asserted is the refusal, which must not turn into a timeout on a busy machine.
      const s = await deploy(spec("kv-promises.js", { namespace: ns, limits: { memoryMb: 32, timeoutMs: 10_000, cpuMs: 10_000 } }));
      const extra = 20;
      const queued = MAX_HOST_CALLS_IN_FLIGHT + MAX_HOST_CALLS_WAITING;
      expect(json(await request(s, `flood:${queued + extra}:${queued}`))).toEqual(Array.from({ length: extra }, () => "overloaded"));
      // By bytes: values of 1 MiB, of which only MAX_HOST_BYTES_WAITING may wait.
      const mib = 1024 * 1024;
      const fits = MAX_HOST_CALLS_IN_FLIGHT + MAX_HOST_BYTES_WAITING / mib;
      const big = await deploy(spec("kv-promises.js", { namespace: ns, limits: { memoryMb: 256, timeoutMs: 10_000, cpuMs: 10_000 } }));
      expect(json(await request(big, `flood:${fits + 3}:${fits}:${mib}`))).toEqual(["overloaded", "overloaded", "overloaded"]);
      // A far larger flood is refused inside the isolate, before it is copied out to the runtime host.
      expect(json(await request(s, "flood-why:20000", 15_000))).toEqual([`too many host calls out from this context: at most ${queued} at once`]);
      expect(runtime.childPid).toBe(pid);
    });

    it("turns host-service errors into exceptions with a code", async () => {
      const s = await deploy(spec("kv-error.js", { namespace: ns }));
      expect(json(await request(s, "forbidden"))).toEqual({ name: "Error", code: "forbidden", message: "workloads may not use $JS.> subjects" });
      expect(json(await request(s, "unreachable"))).toMatchObject({ code: "no_responders" });
      // `workloads.*` without a deploy grant is refused in the runtime host, before anything goes on the wire.
      expect(json(await request(s, "children"))).toEqual({ name: "Error", code: "forbidden", message: NO_DEPLOY_GRANT });
      // With a grant it is a request to the node; where no node serves it, the bridge says so.
      const orphan = await deploy(spec("kv-error.js", { namespace: "nonode", deploysWorkloads: true }));
      expect(json(await request(orphan, "children"))).toMatchObject({ name: "Error", code: "no_responders" });
      // Whoever answers on the bus may send any code: the guest (and the call counts) see only known ones.
      const odd = nc.subscribe("$NEX.HOST.oddnode.*.workloads.>", {
        callback: (_err, m) => {
          const h = natsHeaders();
          h.set("Nex-Error-Code", "made_up_code_é");
          m.respond("a made-up failure", { headers: h });
        },
      });
      await nc.flush();
      try {
        const lied = await deploy(spec("kv-error.js", { namespace: "oddnode", deploysWorkloads: true }));
        expect(json(await request(lied, "children"))).toEqual({ name: "Error", code: "internal", message: "a made-up failure" });
      } finally {
        odd.unsubscribe();
      }
    });

    it("bounds a host call by the trigger's deadline, and the runtime host survives it", async () => {
      const pid = runtime.childPid;
      const s = await deploy(spec("kv-error.js", { namespace: ns, limits: { memoryMb: 32, timeoutMs: 300, cpuMs: 300 } }));
      const reply = await request(s, "slow");
      // Either the deadline ended the trigger, or the call timed out first and the function caught it.
      if (reply.headers?.get("Nats-Service-Error-Code")) {
        expect(reply.headers.get("Nex-Error")).toMatch(/^timeout/);
      } else {
        expect(json(reply)).toMatchObject({ code: "timeout" });
      }
      expect(text(await request(s, "nothing"))).toBe("no error");
      // The same with the call out while the isolate is stopped at the deadline (its answer comes later).
      const promises = await deploy(spec("kv-promises.js", { namespace: ns, limits: { memoryMb: 32, timeoutMs: 300, cpuMs: 300 } }));
      const late = await request(promises, "slow");
      if (late.headers?.get("Nats-Service-Error-Code")) expect(late.headers.get("Nex-Error")).toMatch(/^timeout/);
      else expect(json(late)).toEqual({ code: "timeout" });
      expect(json(await request(promises, "bad-key"))).toEqual({ rejected: "key must be a string" });
      expect(runtime.childPid).toBe(pid);
      expect(observer.restarts).toEqual([]);
    });
  });
});

describe("JavaScript runtime supervision", () => {
  it("restarts a killed runtime host, redeploys its workloads and tells the observer", async () => {
    const broker = await startBroker({ port: 0 });
    const nc = await connect({ servers: broker.url });
    const observer = new RuntimeRecorder();
    const runtime = new JsRuntime({ natsUrl: broker.url, observer });
    try {
      const echo = spec("echo.js");
      const counter = spec("counter.js");
      await runtime.deploy(echo);
      await runtime.deploy(counter);
      expect(text(await nc.request(echo.triggerSubjects[0], "before"))).toBe(`${echo.triggerSubjects[0]}: before`);
      const pid = runtime.childPid!;
      expect(pid).toBeGreaterThan(0);

      process.kill(pid, "SIGKILL");
      await waitFor("observer.restarted", () => observer.restarts.length === 1, 15_000);
      expect(observer.restarts[0].reason).toMatch(/SIGKILL/);
      expect(observer.restarts[0].ids.sort()).toEqual([echo.id, counter.id].sort());
      expect(runtime.childPid).toBeGreaterThan(0);
      expect(runtime.childPid).not.toBe(pid);

      // Both workloads answer again (the redeploy subscribed them before restarted() was called).
      expect(text(await nc.request(echo.triggerSubjects[0], "after", { timeout: 5000 }))).toBe(`${echo.triggerSubjects[0]}: after`);
      expect(json(await nc.request(counter.triggerSubjects[0], "", { timeout: 5000 }))).toMatchObject({ count: 1 });
      // And new deploys go to the new host.
      const later = spec("echo.js");
      await runtime.deploy(later);
      expect(text(await nc.request(later.triggerSubjects[0], "new", { timeout: 5000 }))).toBe(`${later.triggerSubjects[0]}: new`);
    } finally {
      await runtime.close();
      await nc.close();
      await broker.close();
    }
  });

  it("closes cleanly: the child exits and deploys are refused", async () => {
    const broker = await startBroker({ port: 0 });
    const runtime = new JsRuntime({ natsUrl: broker.url, observer: new RuntimeRecorder() });
    try {
      await runtime.deploy(spec("echo.js"));
      const pid = runtime.childPid!;
      await runtime.close();
      expect(runtime.childPid).toBeUndefined();
      expect(() => process.kill(pid, 0)).toThrow();
      await expect(runtime.deploy(spec("echo.js"))).rejects.toThrow(/closed/);
    } finally {
      await runtime.close();
      await broker.close();
    }
  });
});

describe("JavaScript functions past the warm-slot budget", () => {
  it("unloads the least recently triggered idle function, loads it again on its next trigger, and never unloads a busy one", async () => {
    const broker = await startBroker({ port: 0 });
    const nc = await connect({ servers: broker.url });
    const runtime = new JsRuntime({ natsUrl: broker.url, observer: new RuntimeRecorder(), maxWarmSlots: 2 });
    const memory = async (s: JavaScriptSpec): Promise<number> => (await runtime.stats(s.id))?.memoryBytes ?? -1;
    const trigger = async (s: JavaScriptSpec, payload = ""): Promise<{ count: number; id: string }> =>
      json(await nc.request(s.triggerSubjects[0], payload, { timeout: 10_000 })) as { count: number; id: string };
    try {
      const [a, b, c] = [spec("counter.js"), spec("counter.js"), spec("counter.js")];
      await runtime.deploy(a);
      await runtime.deploy(b);
      await trigger(a);
      const aFirst = await trigger(a);
      expect(aFirst.count).toBe(2);
      // A third loaded isolate is one past the budget: b, the least recently used, unloads.
      await runtime.deploy(c);
      expect(await memory(b)).toBe(0);
      expect(await memory(a)).toBeGreaterThan(0);
      expect(await memory(c)).toBeGreaterThan(0);

      // b answers its next trigger from a new isolate (its globals start over); a, now the oldest, unloads.
      expect(await trigger(b)).toMatchObject({ count: 1 });
      expect(await memory(a)).toBe(0);
      const aAgain = await trigger(a);
      expect(aAgain.count).toBe(1);
      expect(aAgain.id).not.toBe(aFirst.id);

      // A busy function is never unloaded under it: c runs 600 ms while b and a are triggered.
      const busy = trigger(c, "600");
      await new Promise((r) => setTimeout(r, 100));
      await trigger(b);
      await trigger(a);
      expect(await busy).toMatchObject({ count: 1 });
      expect(await memory(c)).toBeGreaterThan(0);
    } finally {
      await runtime.close();
      await nc.close();
      await broker.close();
    }
  });
});
