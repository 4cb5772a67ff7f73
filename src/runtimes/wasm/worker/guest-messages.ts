// Messages between the wasm runtime host's main thread (../host/guest-pool.ts) and its guest workers
// (guest-worker.ts), both inside the wasm runtime-host child process.
//
// workerData (GuestSetup) says what to run. Triggers go over the worker's parentPort (RunTrigger →
// TriggerDone, with LogLines in between). Host calls go over their own MessagePort: the worker posts
// a HostCallRequest and blocks in Atomics.wait on `signal` until the main thread has posted the
// HostCallResult and set signal[0] to 1, then takes it with receiveMessageOnPort.

import type { MessagePort } from "node:worker_threads";
import type { HostCallResult } from "../../host/host-bridge.js";
import type { LogStream } from "../../types.js";

export interface WasiSetup {
  form: "module";
  module: WebAssembly.Module;
  /** argv[0] (argv[1] is the trigger subject). */
  name: string;
  env: Record<string, string>;
  /** The cap written into the module's memory section, to explain a trap at that size. */
  maxMemoryBytes: number;
}

export interface ComponentSetup {
  form: "component";
  /** file: URL of the transpiled component's ES module. */
  entryUrl: string;
  /** The component's core modules by the file name jco gave them, memory-capped and compiled. */
  coreModules: Record<string, WebAssembly.Module>;
  hostPort: MessagePort;
  /** Int32Array view over a SharedArrayBuffer: [0] is 1 when a host call's result is waiting. */
  signal: Int32Array;
}

/** What bounds one worker's triggers, besides the deadline the main thread enforces. */
export interface OutputBounds {
  /** Largest reply: the NATS server's max_payload, at most MAX_REPLY_BYTES. */
  maxReplyBytes: number;
  /**
   * Int32Array view over a SharedArrayBuffer: [0] log lines and [1] bytes the worker dropped in the
   * current trigger over TRIGGER_LOG_LIMITS. Shared so the main thread can say so even after it
   * terminated the worker at the deadline.
   */
  dropped: Int32Array;
}

export type GuestSetup = (WasiSetup | ComponentSetup) & OutputBounds;

export interface RunTrigger {
  type: "run";
  subject: string;
  payload: Uint8Array;
}

export type TriggerDone = (
  | { type: "done"; ok: true; data: Uint8Array }
  /** unavailable: the failure is a host service's `unavailable` error let through (answers 503, not 500). */
  | { type: "done"; ok: false; message: string; unavailable?: boolean }
) & {
  /** The worker's V8 heap plus external memory (linear memories among it) after the trigger. */
  heapBytes?: number;
};

export interface LogLines {
  type: "log";
  stream: LogStream;
  text: string;
}

/** Sent once the worker can take triggers (or why it cannot). */
export type GuestReady = { type: "ready" } | { type: "setup_failed"; message: string };

export type FromGuest = TriggerDone | LogLines | GuestReady;

export interface HostCallRequest {
  service: string;
  method: string;
  headers: Record<string, string>;
  body: Uint8Array;
}

export type { HostCallResult };
