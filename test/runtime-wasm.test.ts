// The WebAssembly runtime against a real bundled broker: WASI commands and components (the examples
// from examples/wasm, built on demand, and hostile guests written as WAT in test/helpers/wasm-fixtures),
// host services from a component, the transpile cache, and every way a guest can fail. Needs dist/
// for the worker script (`npm test` builds it). No timing thresholds.

import fs from "node:fs";
import { Objm } from "@nats-io/obj";
import { connect, type Msg, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startBroker, type RunningBroker } from "../src/broker/index.js";
import type { WorkloadSpec } from "../src/runtimes/types.js";
import { defaultWorkerScript, WasmRuntime } from "../src/runtimes/wasm/wasm-runtime.js";
import { removeDir, tempDir } from "./helpers/nex-cli.js";
import { buildWasmExamples, command, component, example, GROW_LOOP, GROW_UNTIL_REFUSED, handleModule, wat } from "./helpers/wasm-fixtures.js";
import { RuntimeRecorder } from "./helpers/recorder.js";

const dec = new TextDecoder();

let seq = 0;
function spec(artifact: Uint8Array, over: Partial<WorkloadSpec> = {}): WorkloadSpec {
  const n = ++seq;
  const name = over.name ?? `wasm-${n}`;
  return {
    id: `wasm-wl-${n}`,
    name,
    namespace: "test",
    type: "wasm",
    artifact,
    sha256: "",
    triggerSubjects: [`wasm.${name}`],
    limits: { memoryMb: 16, timeoutMs: 2000, cpuMs: 2000 },
    env: {},
    freshContextPerTrigger: false,
    concurrency: 1,
    ...over,
  };
}

function errorOf(m: Msg): string | undefined {
  return m.headers?.get("Nex-Error") || undefined;
}

describe("WebAssembly runtime", () => {
  let broker: RunningBroker;
  let nc: NatsConnection;
  let observer: RuntimeRecorder;
  let runtime: WasmRuntime;
  let cacheDir: string;

  async function deploy(artifact: Uint8Array, over: Partial<WorkloadSpec> = {}): Promise<WorkloadSpec> {
    const s = spec(artifact, over);
    await runtime.deploy(s);
    return s;
  }

  const ask = (s: WorkloadSpec, payload: string | Uint8Array = "", timeout = 10_000) => nc.request(s.triggerSubjects[0], payload, { timeout });

  beforeAll(async () => {
    if (!fs.existsSync(defaultWorkerScript())) throw new Error(`${defaultWorkerScript()} is missing: build first (npx tsc -p .)`);
    buildWasmExamples();
    broker = await startBroker({ port: 0 });
    nc = await connect({ servers: broker.url });
    observer = new RuntimeRecorder();
    cacheDir = tempDir("nex-wasm-cache-");
    runtime = new WasmRuntime({ natsUrl: broker.url, observer, cacheDir });
  }, 60_000);

  afterAll(async () => {
    await runtime?.close();
    await nc?.close();
    await broker?.close();
    removeDir(cacheDir);
  });

  describe("WASI commands", () => {
    let echo: WorkloadSpec;

    it("echoes stdin to stdout, with a fresh instance per trigger", async () => {
      echo = await deploy(example("echo-wasi.wasm"));
      expect(dec.decode((await ask(echo, "hello wasm")).data)).toBe("hello wasm");
      expect((await ask(echo, "")).data.byteLength).toBe(0);
      const big = new Uint8Array(200_000).map((_, i) => i % 251);
      expect(new Uint8Array((await ask(echo, big)).data)).toEqual(big);
      // The worker reports its memory after each trigger (it used to report none).
      expect((await runtime.stats(echo.id))?.memoryBytes).toBeGreaterThan(0);
    });

    it("passes argv [name, subject] and the deployed env only, and sends stderr to the log feed", async () => {
      // Writes argv[1] and the environment count to stderr.
      const s = await deploy(
        await wat(`(module
          (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes (param i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "environ_sizes_get" (func $env_sizes (param i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (func (export "_start")
            (drop (call $args_sizes (i32.const 0) (i32.const 4)))
            (drop (call $args_get (i32.const 100) (i32.const 200)))
            ;; iovec at 16: argv[1] up to the buffer's end, less its NUL
            (i32.store (i32.const 16) (i32.load (i32.const 104)))
            (i32.store (i32.const 20) (i32.sub (i32.sub (i32.add (i32.const 200) (i32.load (i32.const 4))) (i32.load (i32.const 104))) (i32.const 1)))
            (drop (call $write (i32.const 2) (i32.const 16) (i32.const 1) (i32.const 24)))
            (drop (call $env_sizes (i32.const 40) (i32.const 44)))
            ;; "\\n" plus one digit: the environment count
            (i32.store8 (i32.const 60) (i32.const 32))
            (i32.store8 (i32.const 61) (i32.add (i32.const 48) (i32.load (i32.const 40))))
            (i32.store8 (i32.const 62) (i32.const 10))
            (i32.store (i32.const 16) (i32.const 60))
            (i32.store (i32.const 20) (i32.const 3))
            (drop (call $write (i32.const 2) (i32.const 16) (i32.const 1) (i32.const 24)))))`),
        { env: { A: "1", B: "2" } },
      );
      const reply = await ask(s, "x");
      expect(errorOf(reply)).toBeUndefined();
      await expect.poll(() => observer.logs.filter((l) => l.id === s.id).map((l) => `${l.stream}:${l.line}`)).toContain(`stderr:${s.triggerSubjects[0]} 2`);
    });

    it("turns a non-zero exit into an error reply", async () => {
      const s = await deploy(await command("(call $exit (i32.const 3))"));
      const reply = await ask(s);
      expect(reply.headers?.get("Nats-Service-Error-Code")).toBe("500");
      expect(errorOf(reply)).toBe("the module exited with code 3");
      expect(JSON.parse(dec.decode(reply.data))).toEqual({ error: { code: 500, message: "the module exited with code 3" } });
      expect(observer.failures.find((f) => f.id === s.id)?.error).toBe("the module exited with code 3");
      const ok = await deploy(await command("(call $exit (i32.const 0))"));
      expect(errorOf(await ask(ok))).toBeUndefined();
    });

    it("turns a trap into an error reply and keeps serving", async () => {
      const s = await deploy(await command("unreachable"));
      expect(errorOf(await ask(s))).toMatch(/^trap: unreachable/);
      expect(errorOf(await ask(s))).toMatch(/^trap: unreachable/);
      expect(dec.decode((await ask(echo, "still here")).data)).toBe("still here");
    });

    it("stops an infinite loop at the deadline, then serves the next trigger on a new worker", async () => {
      const s = await deploy(await command("(loop $spin (br $spin))"), { limits: { memoryMb: 16, timeoutMs: 300, cpuMs: 300 } });
      const reply = await ask(s);
      expect(reply.headers?.get("Nats-Service-Error-Code")).toBe("504");
      expect(errorOf(reply)).toMatch(/timeout: the trigger did not finish within 300 ms/);
      expect(errorOf(await ask(s))).toMatch(/timeout/);
      expect(dec.decode((await ask(echo, "unaffected")).data)).toBe("unaffected");
    });

    it("gives a trigger that waits behind a timed-out one to a new worker, not to the one being stopped", async () => {
      // Writes "spinning" to stderr, then loops.
      const spin = `(i32.store (i32.const 100) (i32.const 0x6e697073)) (i32.store (i32.const 104) (i32.const 0x676e696e)) (i32.store8 (i32.const 108) (i32.const 10))
        (i32.store (i32.const 0) (i32.const 100)) (i32.store (i32.const 4) (i32.const 9))
        (drop (call $write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 16)))
        (loop $spin (br $spin))`;
      const s = await deploy(await command(spin), { limits: { memoryMb: 16, timeoutMs: 1000, cpuMs: 1000 } });
      const first = ask(s, "first");
      // One worker, busy: the second trigger waits for it, and less than its own deadline.
      await expect.poll(() => observer.linesOf(s.id, "stderr")).toContain("spinning");
      const second = await ask(s, "second");
      expect(errorOf(await first)).toBe("timeout: the trigger did not finish within 1000 ms");
      expect(second.headers?.get("Nats-Service-Error-Code")).toBe("504");
      expect(errorOf(second)).toMatch(/^timeout: /);
    });

    it("caps linear memory at the workload's limit", async () => {
      const s = await deploy(await command(GROW_UNTIL_REFUSED), { limits: { memoryMb: 8, timeoutMs: 5000, cpuMs: 5000 } });
      expect(errorOf(await ask(s))).toMatch(/^trap: unreachable \(linear memory: 7\.\d MiB of the workload's 8 MiB limit\)$/);
      expect(dec.decode((await ask(echo, "fine")).data)).toBe("fine");
    });

    it("refuses a module that starts above the memory limit", async () => {
      const big = await wat(`(module (memory (export "memory") 512) (func (export "_start")))`);
      await expect(runtime.deploy(spec(big, { limits: { memoryMb: 16, timeoutMs: 1000, cpuMs: 1000 } }))).rejects.toThrow(/32 MiB of linear memory, over the workload's 16 MiB limit/);
    });

    it("refuses a module without _start, one importing outside WASI, and bytes that are not wasm", async () => {
      const reactor = await wat(`(module (memory (export "memory") 1) (func (export "main")))`);
      await expect(runtime.deploy(spec(reactor))).rejects.toThrow(/no _start export/);
      const foreign = await wat(`(module (import "env" "now" (func)) (memory (export "memory") 1) (func (export "_start")))`);
      await expect(runtime.deploy(spec(foreign))).rejects.toThrow(/imports env\.now \(function\); a WASI command may import only wasi_snapshot_preview1 functions/);
      await expect(runtime.deploy(spec(new TextEncoder().encode("console.log('hi')")))).rejects.toThrow(/not a WebAssembly binary/);
      const truncated = new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 1, 0x7f]);
      await expect(runtime.deploy(spec(truncated))).rejects.toThrow(/truncated|invalid WebAssembly module/);
      expect(dec.decode((await ask(echo, "after refusals")).data)).toBe("after refusals");
    });
  });

  describe("components", () => {
    let echo: WorkloadSpec;

    it("transpiles a component with jco and answers with handle's ok bytes", async () => {
      const before = runtime.transpileCount;
      echo = await deploy(example("echo-component.wasm"));
      expect(runtime.transpileCount).toBe(before + 1);
      expect(dec.decode((await ask(echo, "hello component")).data)).toBe("hello component");
      const big = new Uint8Array(100_000).map((_, i) => i % 253);
      expect(new Uint8Array((await ask(echo, big)).data)).toEqual(big);
      expect((await runtime.stats(echo.id))?.memoryBytes).toBeGreaterThan(0);
    });

    it("keeps transpiled components on disk by SHA-256: the next deploy, even by a new runtime, skips jco", async () => {
      const before = runtime.transpileCount;
      const again = await deploy(example("echo-component.wasm"));
      expect(runtime.transpileCount).toBe(before);
      expect(dec.decode((await ask(again, "cached")).data)).toBe("cached");
      const fresh = new WasmRuntime({ natsUrl: broker.url, observer, cacheDir });
      try {
        const s = spec(example("echo-component.wasm"));
        await fresh.deploy(s);
        expect(fresh.transpileCount).toBe(0);
        expect(dec.decode((await ask(s, "from the disk cache")).data)).toBe("from the disk cache");
      } finally {
        await fresh.close();
      }
    });

    it("calls KV host services synchronously: a counter per subject that persists across triggers", async () => {
      const s = await deploy(example("counter-component.wasm"), { triggerSubjects: ["count.>"] });
      const counts = [];
      for (const subject of ["count.a", "count.a", "count.b", "count.a"]) counts.push(dec.decode((await nc.request(subject, "", { timeout: 10_000 })).data));
      expect(counts).toEqual(["1", "2", "1", "3"]);
      await expect.poll(() => observer.logs.filter((l) => l.id === s.id).map((l) => l.line)).toContain("count.a is at 3");
    });

    it("keeps objects larger than one message through the object-store interface, in the workload's own store", async () => {
      const s = await deploy(example("notes-component.wasm"), { triggerSubjects: ["notes.>"] });
      const note = "milk, bread, ".repeat(25_000); // 325,000 bytes: several object-store chunks
      expect(dec.decode((await nc.request("notes.shopping", note, { timeout: 10_000 })).data)).toBe(`stored ${note.length} bytes`);
      expect(dec.decode((await nc.request("notes.shopping", "", { timeout: 10_000 })).data)).toBe(note);
      const missing = await nc.request("notes.nothing", "", { timeout: 10_000 });
      expect(errorOf(missing)).toBe("no note under notes.nothing");
      // The same bytes, read with the official object-store client from the workload's bucket.
      const store = await new Objm(nc).open(`hso_${s.namespace}_${s.name}`);
      expect(dec.decode((await store.getBlob("notes.shopping"))!)).toBe(note);
    });

    it("turns an err result into an error reply, a trap into one too, and rebuilds the instance", async () => {
      const err = await deploy(await component(handleModule("")));
      expect(errorOf(await ask(err))).toBe("nope");
      const trap = await deploy(await component(handleModule("unreachable")));
      expect(errorOf(await ask(trap))).toMatch(/^trap: .*unreachable/);
      expect(errorOf(await ask(trap))).toMatch(/^trap: .*unreachable/);
      expect(dec.decode((await ask(echo, "still here")).data)).toBe("still here");
    });

    it("stops a looping component at the deadline and keeps serving", async () => {
      const s = await deploy(await component(handleModule("(loop $spin (br $spin))")), { limits: { memoryMb: 16, timeoutMs: 300, cpuMs: 300 } });
      expect(errorOf(await ask(s))).toMatch(/timeout/);
      expect(errorOf(await ask(s))).toMatch(/timeout/);
      expect(dec.decode((await ask(echo, "unaffected")).data)).toBe("unaffected");
    });

    it("caps a component's linear memory at the workload's limit", async () => {
      // Grows until memory.grow fails, then traps only if that happened above 8 MiB (128 pages); within
      // the cap it returns handle's err("nope").
      const growThenCheck = `${GROW_LOOP} (if (i32.gt_u (memory.size) (i32.const 128)) (then unreachable))`;
      const s = await deploy(await component(handleModule(growThenCheck)), { limits: { memoryMb: 8, timeoutMs: 5000, cpuMs: 5000 } });
      expect(errorOf(await ask(s))).toBe("nope");
      expect(dec.decode((await ask(echo, "fine")).data)).toBe("fine");
    });

    it("refuses a component without handle, with another handle signature, or importing what nex does not provide", async () => {
      const other = await component(`(module (func (export "run")))`, "package test:other;\nworld other { export run: func(); }", "other");
      await expect(runtime.deploy(spec(other))).rejects.toThrow(/does not export a handle function \(it exports run\)/);
      const wrongSignature = await component(
        `(module (memory (export "memory") 1) (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) (i32.const 64)) (func (export "handle") (param i32 i32)))`,
        "package test:sig;\nworld sig { export handle: func(subject: string); }",
        "sig",
      );
      await expect(runtime.deploy(spec(wrongSignature))).rejects.toThrow(/handle is not func\(subject: string, payload: list<u8>\)/);
      const foreign = await component(
        `(module (import "acme:tools/clock" "now" (func (result i64))) (func (export "run")))`,
        "package acme:tools;\ninterface clock { now: func() -> u64; }\nworld w { import clock; export run: func(); }",
        "w",
      );
      await expect(runtime.deploy(spec(foreign))).rejects.toThrow(/does not export a handle function/);
      const foreignWithHandle = await component(
        handleModule("").replace("(module", `(module (import "acme:tools/clock" "now" (func (result i64)))`).replace("(i32.const 16)))", "(drop (call 0)) (i32.const 16)))"),
        `package acme:tools;\ninterface clock { now: func() -> u64; }\nworld w { import clock; export handle: func(subject: string, payload: list<u8>) -> result<list<u8>, string>; }`,
        "w",
      );
      await expect(runtime.deploy(spec(foreignWithHandle))).rejects.toThrow(/imports acme:tools\/clock, which nex does not provide/);
      const notAComponent = new Uint8Array([0, 0x61, 0x73, 0x6d, 0x0d, 0, 1, 0, 0xff]);
      await expect(runtime.deploy(spec(notAComponent))).rejects.toThrow(/invalid WebAssembly component/);
      expect(dec.decode((await ask(echo, "after refusals")).data)).toBe("after refusals");
    });

    it("undeploys: the subject stops answering and a redeploy works", async () => {
      const s = await deploy(example("echo-component.wasm"));
      await runtime.undeploy(s.id);
      await expect(ask(s, "gone", 500)).rejects.toThrow();
      expect(await runtime.stats(s.id)).toBeUndefined();
      const stats = await runtime.stats(echo.id);
      expect(stats?.triggers).toBeGreaterThan(0);
    });
  });
});
