// The worker thread that runs one wasm workload's triggers, one at a time, inside the wasm runtime-host
// child process. The child's main thread (GuestPool) owns its deadline and ends it with terminate();
// everything the guest can do wrong short of that (trap, exit, a failed memory.grow or table.grow, a
// stack overflow) ends only the trigger, answered here.
//
// - WASI preview1 command: a fresh node:wasi instance per trigger, argv = [name, subject], env as
//   deployed, no preopens. stdin, stdout and stderr are served from memory by wrapping fd_read and
//   fd_write for fds 0-2 (the real descriptors behind them are /dev/null), so the payload never touches
//   a file and nothing reaches the process's own stdio.
// - Component: one instance per worker, kept warm across triggers (like a warm JS context) and rebuilt
//   after a trap. Host imports block on Atomics.wait while the main thread makes the call.
//
// Output is bounded here, before anything is posted: the reply by maxReplyBytes, log lines by
// TRIGGER_LOG_LIMITS per trigger. What is over the limit is only counted (in the shared `dropped`
// counters), so a flooding guest neither fills the main thread's queue nor delays its deadline timer.

import fs from "node:fs";
import { getHeapStatistics } from "node:v8";
import { WASI } from "node:wasi";
import { parentPort, receiveMessageOnPort, workerData } from "node:worker_threads";
import { TRIGGER_LOG_LIMITS } from "../../host/trigger-log-limits.js";
import type { ComponentSetup, FromGuest, GuestSetup, HostCallRequest, HostCallResult, RunTrigger, TriggerDone, WasiSetup } from "./guest-messages.js";
import { pollOneoff } from "./wasi-poll.js";
import type { LogStream } from "../../types.js";

const setup = workerData as GuestSetup;
const port = parentPort!;
const EMPTY = new Uint8Array(0);
const NEWLINE = 0x0a;
const INT32_MAX = 0x7fffffff;
const WASI_ESUCCESS = 0;
const WASI_EBADF = 8;
const WASI_EFBIG = 22;
const WASI_ENOSYS = 52;

function post(message: FromGuest): void {
  port.postMessage(message);
}

function newlines(bytes: Uint8Array): number {
  let n = 0;
  for (let i = bytes.indexOf(NEWLINE); i >= 0; i = bytes.indexOf(NEWLINE, i + 1)) n++;
  return n;
}

/** The current trigger's share of TRIGGER_LOG_LIMITS; lines past it are counted, never posted. */
class LogBudget {
  private linesLeft: number = TRIGGER_LOG_LIMITS.maxLogLines;

  constructor(private readonly dropped: Int32Array) {}

  reset(): void {
    this.linesLeft = TRIGGER_LOG_LIMITS.maxLogLines;
    Atomics.store(this.dropped, 0, 0);
    Atomics.store(this.dropped, 1, 0);
  }

  /** Lines the current trigger may still log. */
  get left(): number {
    return Math.max(0, this.linesLeft);
  }

  /** Posts the lines the budget allows (each cut at maxLogChars) as one message; counts the rest. */
  lines(stream: LogStream, lines: string[]): void {
    if (lines.length === 0) return;
    const kept = lines.slice(0, Math.max(0, this.linesLeft));
    this.linesLeft -= kept.length;
    const max = TRIGGER_LOG_LIMITS.maxLogChars;
    if (kept.length > 0) post({ type: "log", stream, text: kept.map((l) => (l.length > max ? `${l.slice(0, max)} [truncated]` : l)).join("\n") });
    let bytes = 0;
    for (let i = kept.length; i < lines.length; i++) bytes += Buffer.byteLength(lines[i]) + 1;
    this.drop(lines.length - kept.length, bytes);
  }

  /** A log import's text: split only as far as the budget goes, the rest counted. */
  text(stream: LogStream, text: string): void {
    const kept = text.split("\n", this.left);
    this.lines(stream, kept);
    const rest = kept.reduce((at, line) => at + line.length + 1, 0);
    if (rest > text.length) return;
    let lines = 1;
    for (let i = text.indexOf("\n", rest); i >= 0; i = text.indexOf("\n", i + 1)) lines++;
    this.drop(lines, Buffer.byteLength(text.slice(rest)) + 1);
  }

  drop(lines: number, bytes: number): void {
    if (lines === 0 && bytes === 0) return;
    Atomics.store(this.dropped, 0, Math.min(INT32_MAX, Atomics.load(this.dropped, 0) + lines));
    Atomics.store(this.dropped, 1, Math.min(INT32_MAX, Atomics.load(this.dropped, 1) + bytes));
  }
}

const budget = new LogBudget(setup.dropped);

/**
 * Collects a stream's bytes and forwards whole lines to the log feed as they complete, within the
 * budget. Only what can be kept is decoded: at most maxLogChars of a line, and nothing once the
 * trigger's lines are used up (the rest of a write is only counted), so a flood costs the worker no
 * more memory than the lines it may keep.
 */
class LineLog {
  private pending = "";
  /** The pending line was cut at maxLogChars: the rest of it, up to its newline, is skipped. */
  private skipping = false;
  private readonly decoder = new TextDecoder();

  constructor(private readonly stream: LogStream) {}

  write(bytes: Uint8Array): void {
    const lines: string[] = [];
    let from = 0;
    while (from < bytes.byteLength && lines.length < budget.left) {
      const nl = bytes.indexOf(NEWLINE, from);
      const end = nl < 0 ? bytes.byteLength : nl;
      const cut = this.append(bytes.subarray(from, end));
      if (cut !== undefined) lines.push(cut);
      from = end;
      if (nl < 0) break;
      if (this.skipping) this.skipping = false;
      else lines.push(this.pending + this.decoder.decode());
      this.pending = "";
      from = nl + 1;
    }
    budget.lines(this.stream, lines);
    // Past the budget: not even decoded, only counted.
    if (from < bytes.byteLength) budget.drop(newlines(bytes.subarray(from)), bytes.byteLength - from);
  }

  /** Adds part of the current line (no newline in it); returns the line once it is longer than maxLogChars. */
  private append(part: Uint8Array): string | undefined {
    if (this.skipping || part.byteLength === 0) return undefined;
    // A character takes at most 4 bytes: this many decode to more than the room left, if the line has them.
    const take = Math.min(part.byteLength, 4 * (TRIGGER_LOG_LIMITS.maxLogChars - this.pending.length + 1));
    this.pending += this.decoder.decode(part.subarray(0, take), { stream: true });
    if (this.pending.length <= TRIGGER_LOG_LIMITS.maxLogChars && take === part.byteLength) return undefined;
    const line = this.pending;
    this.pending = "";
    this.skipping = true;
    this.decoder.decode();
    return line;
  }

  flush(): void {
    if (this.pending !== "") budget.lines(this.stream, [this.pending + this.decoder.decode()]);
    this.pending = "";
    this.skipping = false;
  }
}

function describeThrow(err: unknown): string {
  if (err instanceof WebAssembly.RuntimeError) return `trap: ${err.message.replace(/^wasm trap: /, "")}`;
  if (err instanceof RangeError && /call stack/i.test(err.message)) return `trap: ${err.message}`;
  if (err instanceof Error) return `${err.name}: ${err.message}`;
  return String(err);
}

// --- WASI preview1 commands -------------------------------------------------------------------------

type WasiFn = (...args: number[]) => number;

/** A descriptor the guest's stdio can point at without reaching anything real. */
const devNull = setup.form === "module" ? fs.openSync("/dev/null", "r+") : -1;

function runCommand(wasiSetup: WasiSetup, subject: string, payload: Uint8Array): TriggerDone {
  const wasi = new WASI({
    version: "preview1",
    args: [wasiSetup.name, subject],
    env: wasiSetup.env,
    preopens: {},
    returnOnExit: true,
    stdin: devNull,
    stdout: devNull,
    stderr: devNull,
  });
  const base = (wasi.getImportObject() as { wasi_snapshot_preview1: Record<string, WasiFn> }).wasi_snapshot_preview1;
  let memory: WebAssembly.Memory | undefined;
  const view = (): DataView => new DataView(memory!.buffer);
  const reply: Uint8Array[] = [];
  let replyBytes = 0;
  let replyTooLarge = false;
  let stdinAt = 0;
  const stderr = new LineLog("stderr");

  const imports: Record<string, WasiFn> = {
    ...base,
    fd_read(fd, iovs, iovsLen, nreadPtr) {
      if (fd > 2) return base.fd_read(fd, iovs, iovsLen, nreadPtr);
      if (fd !== 0) return WASI_EBADF;
      const dv = view();
      let n = 0;
      for (let i = 0; i < iovsLen && stdinAt < payload.byteLength; i++) {
        const ptr = dv.getUint32(iovs + i * 8, true);
        const len = dv.getUint32(iovs + i * 8 + 4, true);
        const take = Math.min(len, payload.byteLength - stdinAt);
        new Uint8Array(memory!.buffer, ptr, take).set(payload.subarray(stdinAt, stdinAt + take));
        stdinAt += take;
        n += take;
      }
      dv.setUint32(nreadPtr, n, true);
      return WASI_ESUCCESS;
    },
    fd_write(fd, iovs, iovsLen, nwrittenPtr) {
      if (fd > 2) return base.fd_write(fd, iovs, iovsLen, nwrittenPtr);
      if (fd === 0) return WASI_EBADF;
      const dv = view();
      let n = 0;
      for (let i = 0; i < iovsLen; i++) {
        const ptr = dv.getUint32(iovs + i * 8, true);
        const len = dv.getUint32(iovs + i * 8 + 4, true);
        const bytes = new Uint8Array(memory!.buffer, ptr, len);
        if (fd === 2) stderr.write(bytes);
        else if (replyBytes + len > setup.maxReplyBytes) {
          replyTooLarge = true;
          return WASI_EFBIG;
        } else {
          reply.push(bytes.slice());
          replyBytes += len;
        }
        n += len;
      }
      dv.setUint32(nwrittenPtr, n, true);
      return WASI_ESUCCESS;
    },
    // The stdio descriptors are ours: closing or renumbering them must not reach /dev/null's fd.
    fd_close(fd) {
      return fd <= 2 ? WASI_ESUCCESS : base.fd_close(fd);
    },
    fd_renumber(from, to) {
      return from <= 2 || to <= 2 ? WASI_EBADF : base.fd_renumber(from, to);
    },
    // node:wasi's sends a real signal to the runtime host's own process (SIGKILL, SIGSTOP, or SIGUSR1,
    // which opens Node's inspector on loopback): a guest raises nothing.
    proc_raise() {
      return WASI_ENOSYS;
    },
    poll_oneoff: pollOneoff(() => memory!.buffer),
  };

  let failure: string | undefined;
  try {
    const instance = new WebAssembly.Instance(wasiSetup.module, { wasi_snapshot_preview1: imports });
    memory = instance.exports.memory as WebAssembly.Memory;
    const code = wasi.start(instance);
    if (code !== 0) failure = `the module exited with code ${code}`;
  } catch (err) {
    failure = describeThrow(err);
    // A guest whose memory.grow failed at the cap usually traps next: say how close it was.
    const used = memory?.buffer.byteLength ?? 0;
    if (used >= wasiSetup.maxMemoryBytes * 0.75) {
      failure += ` (linear memory: ${(used / 1048576).toFixed(1)} MiB of the workload's ${wasiSetup.maxMemoryBytes / 1048576} MiB limit)`;
    }
  }
  stderr.flush();
  if (replyTooLarge) failure = `reply too large: the module wrote more than ${setup.maxReplyBytes} bytes to stdout`;
  if (failure !== undefined) return { type: "done", ok: false, message: failure };
  return { type: "done", ok: true, data: joined(reply, replyBytes) };
}

/** The chunks as one array that owns its whole buffer (which main() hands over instead of copying). */
function joined(chunks: Uint8Array[], byteLength: number): Uint8Array {
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(byteLength);
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.byteLength;
  }
  return out;
}

// --- Components -------------------------------------------------------------------------------------

type Tagged<T> = { tag: "ok"; val: T } | { tag: "err"; val: { code: string; message: string } };

interface ComponentInstance {
  handle(subject: string, payload: Uint8Array): Uint8Array;
}

type Instantiate = (getCoreModule: (name: string) => WebAssembly.Module, imports: Record<string, unknown>) => ComponentInstance;

/**
 * The `unavailable` host errors of the running trigger (JetStream briefly without a leader), and whether
 * the last call was one: a trigger that then fails with that error's text, or traps right after it (an
 * unwrap), let it through, and answers 503 rather than 500.
 */
const unavailable = { messages: [] as string[], last: false };

function hostCall(c: ComponentSetup, service: string, method: string, headers: Record<string, string>, body: Uint8Array = EMPTY): HostCallResult {
  const result = askHost(c, service, method, headers, body);
  unavailable.last = !result.ok && result.code === "unavailable";
  if (!result.ok && unavailable.last) unavailable.messages.push(result.message);
  return result;
}

function askHost(c: ComponentSetup, service: string, method: string, headers: Record<string, string>, body: Uint8Array): HostCallResult {
  Atomics.store(c.signal, 0, 0);
  const request: HostCallRequest = { service, method, headers, body };
  c.hostPort.postMessage(request);
  // The main thread always answers (every call is bounded by the trigger's deadline); waiting in
  // slices keeps the thread responsive to terminate() meanwhile.
  while (Atomics.wait(c.signal, 0, 0, 1000) === "timed-out");
  const answer = receiveMessageOnPort(c.hostPort);
  if (!answer) return { ok: false, code: "internal", message: "the host call's answer went missing" };
  return answer.message as HostCallResult;
}

function tagged<T>(r: HostCallResult, value: (ok: Extract<HostCallResult, { ok: true }>) => T): Tagged<T> {
  if (!r.ok) return { tag: "err", val: { code: r.code, message: r.message } };
  return { tag: "ok", val: value(r) };
}

/** A get: the bytes, none when there are none (not_found), or the host error. */
function optional(r: HostCallResult): Tagged<Uint8Array | undefined> {
  if (!r.ok && r.code === "not_found") return { tag: "ok", val: undefined };
  return tagged(r, (ok) => ok.body);
}

/** A child as wit `workloads.child` (jco's bindings name record fields in lowerCamelCase). */
interface WitChild {
  workloadId: string;
  nodeId: string;
  name: string;
}

/**
 * The host side of wit/nex.wit, as jco's generated bindings call it. An import table has every
 * interface; a component built against an earlier text of nex.wit simply uses fewer of them.
 */
function hostImports(c: ComponentSetup): Record<string, unknown> {
  const decoder = new TextDecoder();
  const encoder = new TextEncoder();
  const json = (body: Uint8Array): unknown => (body.byteLength === 0 ? [] : JSON.parse(decoder.decode(body)));
  /** The node's JSON answer turned into a WIT value; an answer of another shape is an `internal` error, never a trap. */
  const shaped = <T>(r: HostCallResult, shape: (body: unknown) => T | undefined): Tagged<T> => {
    if (!r.ok) return { tag: "err", val: { code: r.code, message: r.message } };
    let value: T | undefined;
    try {
      value = shape(json(r.body));
    } catch {
      value = undefined;
    }
    if (value === undefined) return { tag: "err", val: { code: "internal", message: "the node's workloads answer does not have the shape nex.wit gives it" } };
    return { tag: "ok", val: value };
  };
  const text = (v: unknown): v is string => typeof v === "string";
  const child = (v: unknown): WitChild | undefined => {
    const o = v as { workload_id?: unknown; node_id?: unknown; name?: unknown } | null;
    if (!o || !text(o.workload_id) || !text(o.node_id)) return undefined;
    return { workloadId: o.workload_id, nodeId: o.node_id, name: text(o.name) ? o.name : "" };
  };
  const log = (stream: LogStream) => (line: string) => budget.text(stream, String(line));
  return {
    "nex:host/kv": {
      get: (key: string): Tagged<Uint8Array | undefined> => optional(hostCall(c, "kv", "get", { "Nex-Key": key })),
      set: (key: string, value: Uint8Array): Tagged<bigint> =>
        tagged(hostCall(c, "kv", "set", { "Nex-Key": key }, value), (ok) => BigInt(ok.headers["Nex-Revision"] ?? "0")),
      delete: (key: string): Tagged<undefined> => tagged(hostCall(c, "kv", "delete", { "Nex-Key": key }), () => undefined),
      keys: (): Tagged<string[]> => tagged(hostCall(c, "kv", "keys", {}), (ok) => json(ok.body) as string[]),
    },
    "nex:host/object-store": {
      get: (name: string): Tagged<Uint8Array | undefined> => optional(hostCall(c, "objectStore", "get", { "Nex-Key": name })),
      put: (name: string, data: Uint8Array): Tagged<undefined> =>
        tagged(hostCall(c, "objectStore", "put", { "Nex-Key": name }, data), () => undefined),
      delete: (name: string): Tagged<undefined> => tagged(hostCall(c, "objectStore", "delete", { "Nex-Key": name }), () => undefined),
      names: (): Tagged<string[]> => tagged(hostCall(c, "objectStore", "list", {}), (ok) => (json(ok.body) as { name: string }[]).map((o) => o.name)),
    },
    "nex:host/messaging": {
      publish: (subject: string, payload: Uint8Array): Tagged<undefined> =>
        tagged(hostCall(c, "messaging", "publish", { "Nex-Subject": subject }, payload), () => undefined),
      request: (subject: string, payload: Uint8Array, timeoutMs: number): Tagged<Uint8Array> =>
        tagged(hostCall(c, "messaging", "request", { "Nex-Subject": subject, "Nex-Timeout-Ms": String(Math.max(1, timeoutMs)) }, payload), (ok) => ok.body),
    },
    "nex:host/log": { info: log("stdout"), error: log("stderr") },
    // Always a request to the node that runs this workload (../../host/host-bridge.ts): it holds the grant.
    "nex:host/workloads": {
      deploy: (specJson: string): Tagged<{ workloadId: string; nodeId: string }> =>
        shaped(hostCall(c, "workloads", "deploy", {}, encoder.encode(String(specJson))), (body) => {
          const d = child(body);
          return d && { workloadId: d.workloadId, nodeId: d.nodeId };
        }),
      undeploy: (workloadId: string): Tagged<undefined> =>
        tagged(hostCall(c, "workloads", "undeploy", { "Nex-Key": String(workloadId) }), () => undefined),
      children: (): Tagged<WitChild[]> =>
        shaped(hostCall(c, "workloads", "list", {}), (body) => {
          if (!Array.isArray(body)) return undefined;
          const out = body.map(child);
          return out.every((x) => x !== undefined) ? (out as WitChild[]) : undefined;
        }),
    },
    "nex:host/types": {},
  };
}

async function componentRunner(c: ComponentSetup): Promise<(subject: string, payload: Uint8Array) => TriggerDone> {
  const { instantiate } = (await import(c.entryUrl)) as { instantiate: Instantiate };
  const imports = hostImports(c);
  const build = (): ComponentInstance =>
    instantiate((name) => {
      const module = c.coreModules[name];
      if (!module) throw new Error(`the component needs a core module ${name} that was not compiled`);
      return module;
    }, imports);
  let instance: ComponentInstance | undefined = build();
  return (subject, payload) => {
    try {
      instance ??= build();
      const data = instance.handle(subject, payload);
      if (data.byteLength > setup.maxReplyBytes) {
        return { type: "done", ok: false, message: `reply too large: ${data.byteLength} bytes, the limit is ${setup.maxReplyBytes}` };
      }
      return { type: "done", ok: true, data };
    } catch (err) {
      // An `err` result arrives as the thrown string; anything else is a trap and poisons the instance.
      if (typeof err === "string") return { type: "done", ok: false, message: err, unavailable: unavailable.messages.some((m) => m !== "" && err.includes(m)) };
      instance = undefined;
      return { type: "done", ok: false, message: describeThrow(err), unavailable: unavailable.last };
    }
  };
}

// --- Serving ----------------------------------------------------------------------------------------

async function main(): Promise<void> {
  let run: (subject: string, payload: Uint8Array) => TriggerDone;
  try {
    run = setup.form === "module" ? (subject, payload) => runCommand(setup, subject, payload) : await componentRunner(setup);
  } catch (err) {
    post({ type: "setup_failed", message: describeThrow(err) });
    return;
  }
  port.on("message", (m: RunTrigger) => {
    if (m?.type !== "run") return;
    budget.reset();
    unavailable.messages = [];
    unavailable.last = false;
    const done = run(m.subject, m.payload);
    const heap = getHeapStatistics();
    done.heapBytes = heap.used_heap_size + heap.external_memory;
    // A command's reply is ours alone: transfer it rather than copy it (a copy would also carry the
    // whole backing buffer of a view). A component's bytes come from jco's bindings: copied.
    if (done.ok && setup.form === "module") port.postMessage(done, [done.data.buffer as ArrayBuffer]);
    else post(done);
  });
  post({ type: "ready" });
}

void main();
