// The WebAssembly runtime (its runtime-host child process) against a real bundled broker: WASI commands and components (the examples
// from examples/wasm, built on demand, and hostile guests written as WAT in test/helpers/wasm-fixtures),
// host services from a component, the transpile cache, and every way a guest can fail. Needs dist/
// for the worker script (`npm test` builds it). No timing thresholds.

import fs from "node:fs";
import { sha256Hex } from "../src/util/sha256.js";
import { Objm } from "@nats-io/obj";
import { connect, type Msg, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startBroker, type RunningBroker } from "../src/broker/index.js";
import type { WasmSpec } from "../src/runtimes/types.js";
import { defaultHostScript, WasmRuntime } from "../src/runtimes/wasm/wasm-runtime.js";
import { Transpiler } from "../src/runtimes/wasm/host/transpiler.js";
import { RuntimeHostSupervisor } from "../src/runtimes/runtime-host-supervisor.js";
import pino from "pino";
import path from "node:path";
import { removeDir, tempDir } from "./helpers/nex-cli.js";
import { TRIGGER_LOG_LIMITS } from "../src/runtimes/host/trigger-log-limits.js";
import { capGrowth, tableElementsFor, WasmFormatError } from "../src/runtimes/wasm/binary.js";
import { Bystander } from "./helpers/bystander.js";
import {
  buildWasmExamples,
  command,
  component,
  example,
  GROW_LOOP,
  GROW_UNTIL_REFUSED,
  handleModule,
  oneBigWrite,
  TABLE_BOMB,
  TABLE_BOMB_THEN_TRAP,
  wat,
  writeLoop,
} from "./helpers/wasm-fixtures.js";
import { RuntimeRecorder } from "./helpers/recorder.js";
import { waitFor } from "./helpers/wait.js";

const dec = new TextDecoder();

let seq = 0;
function spec(artifact: Uint8Array, over: Partial<WasmSpec> = {}): WasmSpec {
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
    concurrency: 1,
    deploysWorkloads: false,
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

  async function deploy(artifact: Uint8Array, over: Partial<WasmSpec> = {}): Promise<WasmSpec> {
    const s = spec(artifact, over);
    await runtime.deploy(s);
    return s;
  }

  const ask = (s: WasmSpec, payload: string | Uint8Array = "", timeout = 10_000) => nc.request(s.triggerSubjects[0], payload, { timeout });

  beforeAll(async () => {
    if (!fs.existsSync(defaultHostScript())) throw new Error(`${defaultHostScript()} is missing: build first (npx tsc -p .)`);
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
    let echo: WasmSpec;

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
      // Failed triggers reach the observer from the runtime host's batch, a moment after the reply.
      await expect.poll(() => observer.failures.find((f) => f.id === s.id)?.error).toBe("the module exited with code 3");
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

  describe("hostile guests", () => {
    let bystander: WasmSpec;

    beforeAll(async () => {
      bystander = await deploy(example("echo-wasi.wasm"));
    });

    it("raises no signal: proc_raise(SIGKILL, SIGSTOP, SIGUSR1) answers ENOSYS and the runtime host goes on", async () => {
      const pid = runtime.childPid;
      for (const signal of [9, 19, 10]) {
        // Writes proc_raise's result (the errno, one byte) to stdout.
        const raise = await deploy(await wat(`(module
          (import "wasi_snapshot_preview1" "proc_raise" (func $raise (param i32) (result i32)))
          (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (func (export "_start")
            (i32.store8 (i32.const 100) (call $raise (i32.const ${signal})))
            (i32.store (i32.const 0) (i32.const 100)) (i32.store (i32.const 4) (i32.const 1))
            (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))))`));
        const reply = await ask(raise);
        expect(errorOf(reply), `signal ${signal}`).toBeUndefined();
        expect([...reply.data], `signal ${signal}`).toEqual([52]); // ENOSYS
      }
      expect(dec.decode((await ask(bystander, "after the signals")).data)).toBe("after the signals");
      expect(runtime.childPid).toBe(pid);
      expect(observer.restarts).toEqual([]);
    });

    it("sleeps in poll_oneoff for the clock asked, and a sleep past the deadline leaves no thread behind", async () => {
      // One clock subscription at 64 (monotonic, relative `ns`), its event at 128; then "ok" to stdout.
      const sleeper = (ns: bigint) =>
        wat(`(module
          (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 300) "ok")
          (func (export "_start")
            (i64.store (i32.const 64) (i64.const 42))
            (i32.store (i32.const 80) (i32.const 1))
            (i64.store (i32.const 88) (i64.const ${ns}))
            (drop (call $poll (i32.const 64) (i32.const 128) (i32.const 1) (i32.const 200)))
            (if (i32.and (i64.eq (i64.load (i32.const 128)) (i64.const 42)) (i32.eq (i32.load (i32.const 200)) (i32.const 1)))
              (then
                (i32.store (i32.const 0) (i32.const 300)) (i32.store (i32.const 4) (i32.const 2))
                (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))))))`);
      const short = await deploy(await sleeper(20_000_000n));
      const started = Date.now();
      expect(dec.decode((await ask(short)).data)).toBe("ok");
      expect(Date.now() - started).toBeGreaterThanOrEqual(20);
      const threads = (): number => Number(/^Threads:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${runtime.childPid}/status`, "utf8"))![1]);
      const before = threads();
      const long = await deploy(await sleeper(3_600_000_000_000n), { limits: { memoryMb: 16, timeoutMs: 300, cpuMs: 300 } });
      for (let i = 0; i < 5; i++) expect(errorOf(await ask(long))).toMatch(/^timeout/);
      // Each timed-out trigger's worker is ended, not left asleep in native code (that was +1 thread each).
      await expect.poll(threads, { timeout: 10_000 }).toBeLessThanOrEqual(before + 1);
      expect(dec.decode((await ask(bystander, "still")).data)).toBe("still");
    });

    it("answers poll_oneoff's bad calls as errors of that trigger: no subscriptions, a huge count, pointers past memory", async () => {
      const pid = runtime.childPid;
      // poll_oneoff(in, out, n, nevents) with these arguments; its errno (one byte) to stdout.
      const poll = (args: string, prelude = "") =>
        wat(`(module
          (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (func (export "_start")
            ${prelude}
            (i32.store8 (i32.const 100) (call $poll ${args}))
            (i32.store (i32.const 0) (i32.const 100)) (i32.store (i32.const 4) (i32.const 1))
            (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))))`);
      const none = await deploy(await poll("(i32.const 64) (i32.const 128) (i32.const 0) (i32.const 200)"));
      expect([...(await ask(none)).data]).toEqual([28]); // EINVAL
      // A subscription at 200 of an unknown type (7), then a clock subscription naming an unknown clock (9).
      const oneSub = "(i32.const 200) (i32.const 300) (i32.const 1) (i32.const 400)";
      const unknownType = await deploy(await poll(oneSub, "(i32.store8 (i32.const 208) (i32.const 7))"));
      expect([...(await ask(unknownType)).data]).toEqual([28]);
      const unknownClock = await deploy(await poll(oneSub, "(i32.store (i32.const 216) (i32.const 9))"));
      expect([...(await ask(unknownClock)).data]).toEqual([28]);
      // A count with the sign bit set is a count of over 2^31, not a negative one.
      for (const args of ["(i32.const 65500) (i32.const 0) (i32.const 0x7fffffff) (i32.const 0)", "(i32.const 65500) (i32.const 0) (i32.const -1) (i32.const 0)", "(i32.const 64) (i32.const 0) (i32.const 1) (i32.const -4)"]) {
        const bad = await deploy(await poll(args));
        expect(errorOf(await ask(bad)), args).toMatch(/RangeError/);
      }
      expect(dec.decode((await ask(bystander, "after bad polls")).data)).toBe("after bad polls");
      expect(runtime.childPid).toBe(pid);
    });

    it("caps tables: issue 12's table bomb sees table.grow fail instead of ending the runtime host", async () => {
      const pid = runtime.childPid;
      const watcher = new Bystander(nc, bystander.triggerSubjects[0]);
      try {
        const limits = { memoryMb: 32, timeoutMs: 5000, cpuMs: 5000 };
        // The bomb returns once growing is refused; the variant traps then, so the refusal shows.
        const bomb = await deploy(await wat(TABLE_BOMB), { limits });
        expect(errorOf(await ask(bomb))).toBeUndefined();
        const trapping = await deploy(await wat(TABLE_BOMB_THEN_TRAP), { limits });
        expect(errorOf(await ask(trapping))).toMatch(/^trap: unreachable/);
        expect(errorOf(await ask(trapping))).toMatch(/^trap: unreachable/);
      } finally {
        await watcher.stop();
      }
      expect(watcher.failures).toEqual([]);
      expect(watcher.answered).toBeGreaterThan(0);
      expect(runtime.childPid).toBe(pid);
      expect(observer.restarts).toEqual([]);
    });

    it("caps imported tables and memories too, and refuses every truncation of a module with a WasmFormatError", async () => {
      const caps = { memoryPages: 4, tableElements: 100 };
      const bytes = await wat(`(module (import "env" "t" (table 1 funcref)) (import "env" "m" (memory 1)) (table 2 externref) (func (export "f")))`);
      const module = new WebAssembly.Module(capGrowth(bytes, caps));
      // An imported table or memory must declare a maximum within what the module now says.
      const link = (t: WebAssembly.Table, m: WebAssembly.Memory) => () => new WebAssembly.Instance(module, { env: { t, m } });
      const memory = new WebAssembly.Memory({ initial: 1, maximum: 4 });
      expect(link(new WebAssembly.Table({ initial: 1, maximum: 100, element: "anyfunc" }), memory)).not.toThrow();
      expect(link(new WebAssembly.Table({ initial: 1, element: "anyfunc" }), memory)).toThrow(WebAssembly.LinkError);
      expect(link(new WebAssembly.Table({ initial: 1, maximum: 100, element: "anyfunc" }), new WebAssembly.Memory({ initial: 1 }))).toThrow(WebAssembly.LinkError);
      const above = await wat(`(module (import "env" "t" (table 101 funcref)))`);
      expect(() => capGrowth(above, caps)).toThrow(/a table of 101 elements, over the workload's limit of 100/);
      // Two memories (multi-memory, on by default from Node 22), each within the cap, would together be
      // twice it: an imported and a defined one, written byte by byte (Node 20's tools refuse to make it).
      const twoMemories = Uint8Array.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 2, 8, 1, 1, 0x61, 1, 0x6d, 2, 0, 1, 5, 3, 1, 0, 1]);
      expect(() => capGrowth(twoMemories, caps)).toThrow(/one linear memory/);
      expect(() => capGrowth(twoMemories.subarray(0, 18), caps)).not.toThrow(); // the imported one alone
      for (let end = 9; end < bytes.byteLength; end++) {
        let outcome: unknown;
        try {
          WebAssembly.validate(capGrowth(bytes.subarray(0, end), caps));
        } catch (err) {
          outcome = err;
        }
        if (outcome !== undefined) expect(outcome, `cut at ${end}`).toBeInstanceOf(WasmFormatError);
      }
    });

    it("refuses a module whose table starts above the cap", async () => {
      const elements = tableElementsFor(16) + 1;
      const big = await wat(`(module (memory (export "memory") 1) (table ${elements} funcref) (func (export "_start")))`);
      await expect(runtime.deploy(spec(big))).rejects.toThrow(new RegExp(`a table of ${elements} elements, over the workload's limit of ${elements - 1}`));
    });

    it("answers a stderr flood at its deadline, keeps at most the per-trigger log limit, and says what it dropped", async () => {
      const timeoutMs = 3000;
      const flood = await deploy(await writeLoop(2, `${"x".repeat(1023)}\n`), { limits: { memoryMb: 16, timeoutMs, cpuMs: timeoutMs } });
      const watcher = new Bystander(nc, bystander.triggerSubjects[0]);
      let reply: Msg;
      try {
        reply = await ask(flood, "", 30_000); // bounds the wait only; the answer must be the deadline's
      } finally {
        await watcher.stop();
      }
      expect(reply.headers?.get("Nats-Service-Error-Code")).toBe("504");
      expect(errorOf(reply)).toBe(`timeout: the trigger did not finish within ${timeoutMs} ms`);
      expect(watcher.failures).toEqual([]);
      await expect.poll(() => observer.linesOf(flood.id, "stderr").at(-1), { timeout: 10_000 }).toMatch(/^\[nex\] log limit of this trigger reached: \d+ more lines \(\d+ bytes\) were dropped$/);
      const lines = observer.linesOf(flood.id, "stderr");
      expect(lines.length).toBe(TRIGGER_LOG_LIMITS.maxLogLines + 1);
      expect(lines[0]).toBe("x".repeat(1023));
    });

    it("cuts a line longer than the limit, and counts the lines of a trigger that ends past the limit", async () => {
      const long = await deploy(await writeLoop(2, `${"y".repeat(TRIGGER_LOG_LIMITS.maxLogChars * 2)}\n`, 1));
      expect(errorOf(await ask(long))).toBeUndefined();
      await expect.poll(() => observer.linesOf(long.id, "stderr")).toEqual([`${"y".repeat(TRIGGER_LOG_LIMITS.maxLogChars)} [truncated]`]);
      const many = await deploy(await writeLoop(2, "line\n", TRIGGER_LOG_LIMITS.maxLogLines + 500));
      expect(errorOf(await ask(many))).toBeUndefined();
      await expect.poll(() => observer.linesOf(many.id, "stderr").at(-1)).toBe("[nex] log limit of this trigger reached: 500 more lines (2500 bytes) were dropped");
      expect(observer.linesOf(many.id, "stderr").length).toBe(TRIGGER_LOG_LIMITS.maxLogLines + 1);
      // The limit is per trigger: the next one logs again.
      expect(errorOf(await ask(many))).toBeUndefined();
      await expect.poll(() => observer.linesOf(many.id, "stderr").length).toBe(2 * (TRIGGER_LOG_LIMITS.maxLogLines + 1));
    });

    it("keeps one huge stderr write within the log limit without running the worker out of memory", async () => {
      // 6 MiB of "a\n" in a single fd_write from a 16 MiB workload: splitting all of it into lines
      // before the limit applied took more than the worker's heap.
      const bytes = 6 * 1024 * 1024;
      const s = await deploy(await oneBigWrite(2, bytes), { limits: { memoryMb: 16, timeoutMs: 10_000, cpuMs: 10_000 } });
      expect(errorOf(await ask(s))).toBeUndefined();
      const dropped = bytes / 2 - TRIGGER_LOG_LIMITS.maxLogLines;
      await expect.poll(() => observer.linesOf(s.id, "stderr").at(-1)).toBe(`[nex] log limit of this trigger reached: ${dropped} more lines (${dropped * 2} bytes) were dropped`);
      expect(observer.linesOf(s.id, "stderr").slice(0, -1)).toEqual(Array(TRIGGER_LOG_LIMITS.maxLogLines).fill("a"));
    });

    it("bounds the reply (stdout) by the server's max_payload", async () => {
      const max = nc.info!.max_payload;
      const chunk = "z".repeat(64 * 1024);
      const s = await deploy(await writeLoop(1, chunk, Math.ceil(max / chunk.length) + 1));
      const reply = await ask(s);
      expect(reply.headers?.get("Nats-Service-Error-Code")).toBe("500");
      expect(errorOf(reply)).toBe(`reply too large: the module wrote more than ${max} bytes to stdout`);
    });
  });

  describe("components", () => {
    let echo: WasmSpec;

    it("transpiles a component with jco and answers with handle's ok bytes", async () => {
      const before = runtime.transpileCount;
      echo = await deploy(example("echo-component.wasm"));
      expect(runtime.transpileCount).toBe(before + 1);
      expect(dec.decode((await ask(echo, "hello component")).data)).toBe("hello component");
      const big = new Uint8Array(100_000).map((_, i) => i % 253);
      expect(new Uint8Array((await ask(echo, big)).data)).toEqual(big);
      expect((await runtime.stats(echo.id))?.memoryBytes).toBeGreaterThan(0);
    });

    /** Deploys the echo component on a new runtime over the same cache, checks it echoes; its transpile count. */
    async function echoOnFreshRuntime(text: string): Promise<number> {
      const fresh = new WasmRuntime({ natsUrl: broker.url, observer, cacheDir });
      try {
        const s = spec(example("echo-component.wasm"));
        await fresh.deploy(s);
        expect(dec.decode((await ask(s, text)).data)).toBe(text);
        return fresh.transpileCount;
      } finally {
        await fresh.close();
      }
    }

    it("keeps transpiled components on disk by SHA-256: the next deploy, even by a new runtime, skips jco", async () => {
      const before = runtime.transpileCount;
      const again = await deploy(example("echo-component.wasm"));
      expect(runtime.transpileCount).toBe(before);
      expect(dec.decode((await ask(again, "cached")).data)).toBe("cached");
      expect(await echoOnFreshRuntime("from the disk cache")).toBe(0);
    });

    it("makes a damaged cache entry again (a truncated entry module, a lost meta.json) instead of failing for good", async () => {
      const entry = path.join(cacheDir, sha256Hex(example("echo-component.wasm")));
      for (const damage of [() => fs.writeFileSync(path.join(entry, "component.js"), ""), () => fs.rmSync(path.join(entry, "meta.json"))]) {
        damage();
        expect(await echoOnFreshRuntime("repaired")).toBe(1);
        // Written whole again: the next runtime finds it and transpiles nothing.
        expect(await echoOnFreshRuntime("again")).toBe(0);
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

describe("the component transpiler", () => {
  it("ends a transpile that runs past its deadline, and the next one gets a fresh thread", async () => {
    // A stand-in for the jco thread: spins forever on a request whose first byte is 1, answers the rest.
    const dir = tempDir("nex-transpiler-");
    const script = path.join(dir, "stand-in.mjs");
    // Byte 4: works 400 ms, then answers.
    fs.writeFileSync(script, `import { parentPort } from "node:worker_threads";
      parentPort.on("message", ({ id, bytes }) => {
        if (bytes[0] === 1) for (;;) {}
        if (bytes[0] === 4) { const end = Date.now() + 400; while (Date.now() < end); }
        parentPort.postMessage({ id, ok: true, files: { "component.js": new Uint8Array([bytes[0]]) } });
      });`);
    const transpiler = new Transpiler(script, 1000);
    try {
      const stuck = transpiler.transpile(Uint8Array.of(1));
      const queued = transpiler.transpile(Uint8Array.of(2)); // behind it on the same thread
      await expect(stuck).rejects.toThrow(/took over 1 s: the transpiler was restarted/);
      await expect(queued).rejects.toThrow(/took over 1 s/);
      expect(await transpiler.transpile(Uint8Array.of(3))).toEqual({ "component.js": Uint8Array.of(3) });
      // Four transpiles of 400 ms each, sent together: each within its time, though the last waits 1.2 s
      // behind the others (the deadline counts from when the thread starts on a request).
      const burst = await Promise.all([4, 4, 4, 4].map((b) => transpiler.transpile(Uint8Array.of(b))));
      expect(burst).toEqual([4, 4, 4, 4].map((b) => ({ "component.js": Uint8Array.of(b) })));
    } finally {
      await transpiler.close();
      removeDir(dir);
    }
  });
});

describe("WebAssembly runtime supervision", () => {
  it("shrugs off malformed IPC messages from a runtime host (a guest that took over its process), and keeps relaying", async () => {
    // The child runs guest code, so what it sends is input to the node: a bad message must cost nothing more.
    const dir = tempDir("nex-forged-host-");
    const script = path.join(dir, "forged-host.cjs");
    fs.writeFileSync(
      script,
      `process.on("message", (m) => {
        if (m.type === "init") process.send({ type: "ready", pid: process.pid });
        else if (m.type === "deploy") {
          process.send({ type: "events" });
          process.send({ type: "events", logs: 7, failures: "x" });
          process.send({ type: "events", logs: [null, { workloadId: m.spec.id, stream: "stdout", line: "first" }], failures: [null] });
          process.send({ type: "result", reqId: { forged: true } });
          process.send({ type: "log", line: { not: "a string" } });
          process.send({ type: "events", logs: [{ workloadId: m.spec.id, stream: "stdout", line: "still relayed" }], failures: [] });
          process.send({ type: "result", reqId: m.reqId, ok: true, value: {} });
        } else if (m.type === "shutdown") process.send({ type: "result", reqId: m.reqId, ok: true, value: {} }, () => process.exit(0));
      });
      process.on("disconnect", () => process.exit(0));`,
    );
    const observer = new RuntimeRecorder();
    const supervisor = new RuntimeHostSupervisor(
      { label: "forged", script, execArgv: [], natsUrl: "nats://127.0.0.1:1", connectionName: "forged", settings: {}, observer, log: pino({ level: "silent" }) },
      (hp, s) => hp.request({ type: "deploy", spec: { ...s, artifact: new Uint8Array(0) } as never }, 10_000),
    );
    try {
      const s = spec(new Uint8Array(0));
      await supervisor.deploy(s);
      await expect.poll(() => observer.linesOf(s.id)).toContain("still relayed");
      expect(observer.restarts).toEqual([]);
      expect(supervisor.childPid).toBeGreaterThan(0);
    } finally {
      await supervisor.close();
      removeDir(dir);
    }
  }, 30_000);

  it("restarts a killed wasm runtime host, redeploys its workloads and tells the observer", async () => {
    buildWasmExamples();
    const broker = await startBroker({ port: 0 });
    const nc = await connect({ servers: broker.url });
    const observer = new RuntimeRecorder();
    const cacheDir = tempDir("nex-wasm-cache-");
    const runtime = new WasmRuntime({ natsUrl: broker.url, observer, cacheDir });
    try {
      const wasi = spec(example("echo-wasi.wasm"));
      const comp = spec(example("echo-component.wasm"));
      await runtime.deploy(wasi);
      await runtime.deploy(comp);
      expect(dec.decode((await nc.request(wasi.triggerSubjects[0], "before", { timeout: 10_000 })).data)).toBe("before");
      const pid = runtime.childPid!;
      expect(pid).toBeGreaterThan(0);
      expect(pid).not.toBe(process.pid);

      process.kill(pid, "SIGKILL");
      await waitFor("observer.restarted", () => observer.restarts.length === 1, 20_000);
      expect(observer.restarts[0].reason).toMatch(/SIGKILL/);
      expect(observer.restarts[0].ids.sort()).toEqual([wasi.id, comp.id].sort());
      expect(runtime.childPid).toBeGreaterThan(0);
      expect(runtime.childPid).not.toBe(pid);
      // Both answer again: the redeploy subscribed them before restarted() was called.
      expect(dec.decode((await nc.request(wasi.triggerSubjects[0], "after", { timeout: 10_000 })).data)).toBe("after");
      expect(dec.decode((await nc.request(comp.triggerSubjects[0], "after", { timeout: 10_000 })).data)).toBe("after");
    } finally {
      await runtime.close();
      await nc.close();
      await broker.close();
      removeDir(cacheDir);
    }
    expect(runtime.childPid).toBeUndefined();
  }, 60_000);

  it("with a runtime host per namespace, a host that dies costs only its own namespace", async () => {
    buildWasmExamples();
    const broker = await startBroker({ port: 0 });
    const nc = await connect({ servers: broker.url });
    const observer = new RuntimeRecorder();
    const cacheDir = tempDir("nex-wasm-cache-");
    const runtime = new WasmRuntime({ natsUrl: broker.url, observer, cacheDir, hostPerNamespace: true });
    try {
      const a = spec(example("echo-wasi.wasm"), { namespace: "tenant-a" });
      const b = spec(example("echo-wasi.wasm"), { namespace: "tenant-b" });
      await runtime.deploy(a);
      await runtime.deploy(b);
      const pidA = runtime.childPidFor("tenant-a")!;
      const pidB = runtime.childPidFor("tenant-b")!;
      expect(pidA).toBeGreaterThan(0);
      expect(pidB).toBeGreaterThan(0);
      expect(pidA).not.toBe(pidB);

      const watcher = new Bystander(nc, b.triggerSubjects[0]);
      try {
        process.kill(pidA, "SIGKILL");
        await waitFor("observer.restarted", () => observer.restarts.length === 1, 20_000);
        expect(dec.decode((await nc.request(a.triggerSubjects[0], "a again", { timeout: 10_000 })).data)).toBe("a again");
      } finally {
        await watcher.stop();
      }
      expect(observer.restarts[0].ids).toEqual([a.id]);
      expect(watcher.failures).toEqual([]);
      expect(runtime.childPidFor("tenant-b")).toBe(pidB);
      expect(runtime.childPidFor("tenant-a")).not.toBe(pidA);
    } finally {
      await runtime.close();
      await nc.close();
      await broker.close();
      removeDir(cacheDir);
    }
    await expect(runtime.deploy(spec(example("echo-wasi.wasm"), { namespace: "tenant-c" }))).rejects.toThrow(/closed/);
  }, 60_000);
});
