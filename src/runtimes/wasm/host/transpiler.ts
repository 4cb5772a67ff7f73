// Transpiling a component with jco takes tens to hundreds of milliseconds (and loading jco about a
// second), all of it synchronous work. The node process also hosts the bundled broker, so jco runs on a
// thread of its own: one transpiler thread, started on the first cache miss and kept (unref'd) for the
// next, answering one request at a time. A transpile past TRANSPILE_TIMEOUT_MS ends the thread.

import { Worker } from "node:worker_threads";
import { builtScript } from "../../../util/built-script.js";
import { WasmFormatError } from "../binary.js";

/** Interfaces a component may import; the guest worker supplies each (see guest-worker.ts). */
export const PROVIDED_IMPORTS = ["nex:host/kv", "nex:host/object-store", "nex:host/messaging", "nex:host/log", "nex:host/workloads", "nex:host/types"];
/** The ES module jco writes for the component; its core modules sit beside it. */
export const ENTRY = "component.js";

export interface TranspileRequest {
  id: number;
  bytes: Uint8Array;
}

/**
 * A transpile (jco's load included) that takes longer, counted from when the thread starts on it, ends
 * the thread, and with it every transpile then waiting: a component built to keep jco busy holds up
 * other deploys no longer than this.
 */
export const TRANSPILE_TIMEOUT_MS = 30_000;
/** jco's JavaScript heap; its own wasm tools' memory is outside it (and not bounded here). */
const TRANSPILER_HEAP_MB = 512;

export type TranspileReply =
  | { id: number; ok: true; files: Record<string, Uint8Array> }
  /** `format`: the component does not fit the contract (a WasmFormatError), rather than a failure of jco itself. */
  | { id: number; ok: false; format: boolean; message: string };

export class Transpiler {
  private worker?: Worker;
  private nextId = 0;
  private readonly pending = new Map<number, { resolve(files: Record<string, Uint8Array>): void; reject(err: Error): void }>();
  /** The deadline of the request the thread works on: the oldest pending (the thread answers them in order). */
  private deadline?: NodeJS.Timeout;

  constructor(
    private readonly script: string = builtScript(import.meta.url, "../worker/transpile-worker.js"),
    private readonly timeoutMs = TRANSPILE_TIMEOUT_MS,
  ) {}

  /** jco's output files for a component that fits the contract; rejects with a WasmFormatError if it does not. */
  transpile(bytes: Uint8Array): Promise<Record<string, Uint8Array>> {
    const worker = this.start();
    const id = ++this.nextId;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      if (this.pending.size === 1) this.armDeadline(worker);
      worker.ref();
      const request: TranspileRequest = { id, bytes };
      worker.postMessage(request);
    });
  }

  /** The time allowed to the request the thread starts now, if one waits; time spent queued behind another does not count. */
  private armDeadline(worker: Worker): void {
    clearTimeout(this.deadline);
    this.deadline = undefined;
    if (this.pending.size === 0) return;
    this.deadline = setTimeout(() => this.abandon(worker, `transpiling a component took over ${this.timeoutMs / 1000} s: the transpiler was restarted`), this.timeoutMs);
    this.deadline.unref();
  }

  /** Forgets `worker` (if it is still the thread) and fails every request waiting on it. */
  private abandon(worker: Worker, message: string): void {
    if (this.worker !== worker) return;
    this.worker = undefined;
    clearTimeout(this.deadline);
    this.deadline = undefined;
    for (const w of this.pending.values()) w.reject(new Error(message));
    this.pending.clear();
    void worker.terminate();
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(this.script, { resourceLimits: { maxOldGenerationSizeMb: TRANSPILER_HEAP_MB } });
    worker.unref();
    worker.on("message", (reply: TranspileReply) => {
      const waiting = this.pending.get(reply.id);
      this.pending.delete(reply.id);
      // Idle, the thread must not keep the node alive.
      if (this.pending.size === 0) worker.unref();
      if (this.worker === worker) this.armDeadline(worker);
      if (!waiting) return;
      if (reply.ok) waiting.resolve(reply.files);
      else waiting.reject(reply.format ? new WasmFormatError(reply.message) : new Error(`transpiling the component failed: ${reply.message}`));
    });
    // A thread ended for its deadline took its requests with it; a later thread's are not its to fail.
    worker.on("error", (err) => this.abandon(worker, `the component transpiler stopped: ${err.message}`));
    worker.on("exit", (code) => this.abandon(worker, `the component transpiler stopped: exit code ${code}`));
    this.worker = worker;
    return worker;
  }

  async close(): Promise<void> {
    const worker = this.worker;
    if (worker) this.abandon(worker, "the component transpiler was closed");
    await worker?.terminate();
  }
}
