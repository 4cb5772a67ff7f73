// How many host calls one isolate (a function's, or a service's) may have out, and how many may wait.
// Calls beyond MAX_HOST_CALLS_IN_FLIGHT wait for a turn, at most MAX_HOST_CALLS_WAITING of them holding
// at most MAX_HOST_BYTES_WAITING of values; past that a call fails at once with code "overloaded". So a
// fan-out (Promise.all over many keys) works, throttled, and a workload cannot pile up requests, or
// answers of up to 8 MiB each, in the runtime host.

import type { HostCallResult } from "../../host/host-bridge.js";

/** Only the awaitable calls can overlap; a batch holds 16 triggers, so this leaves each several. */
export const MAX_HOST_CALLS_IN_FLIGHT = 64;
export const MAX_HOST_CALLS_WAITING = 1024;
export const MAX_HOST_BYTES_WAITING = 16 * 1024 * 1024;

export class HostCallTurns {
  private inFlight = 0;
  private readonly waiting: (() => void)[] = [];
  private bytesWaiting = 0;
  private closed = false;

  /** `who` names the caller in the overloaded message ("this isolate", "this service"). */
  constructor(private readonly who: string) {}

  /** Runs `call` when a turn is free; refuses at once when too much already waits, or once closed. */
  async run(body: unknown, call: () => Promise<HostCallResult>): Promise<HostCallResult> {
    if (this.closed) return stopped(this.who);
    if (this.inFlight >= MAX_HOST_CALLS_IN_FLIGHT) {
      const bytes = body instanceof Uint8Array ? body.byteLength : 0;
      if (this.waiting.length >= MAX_HOST_CALLS_WAITING || this.bytesWaiting + bytes > MAX_HOST_BYTES_WAITING) {
        return {
          ok: false,
          code: "overloaded",
          message: `too many host calls from ${this.who}: ${MAX_HOST_CALLS_IN_FLIGHT} out and ${this.waiting.length} waiting (${this.bytesWaiting} bytes)`,
        };
      }
      this.bytesWaiting += bytes;
      await new Promise<void>((turn) => this.waiting.push(turn));
      this.bytesWaiting -= bytes;
      if (this.closed) return stopped(this.who);
    }
    this.inFlight++;
    try {
      return await call();
    } finally {
      this.inFlight--;
      this.waiting.shift()?.();
    }
  }

  /** Waiting calls end without being made; later ones are refused. */
  close(): void {
    this.closed = true;
    for (const w of this.waiting.splice(0)) w();
  }
}

function stopped(who: string): HostCallResult {
  return { ok: false, code: "internal", message: `${who} was stopped` };
}
