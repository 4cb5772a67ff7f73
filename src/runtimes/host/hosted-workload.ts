// The trigger path of one deployed function workload (JavaScript or WebAssembly): its trigger
// subscriptions (queue group = namespace and workload name), one message → one pool submission → one reply.
// Successful results go back as the reply body; failures as an error reply with
// Nats-Service-Error-Code / Nats-Service-Error / Nex-Error headers and a {"error":{code,message}} body.

import type { Msg, NatsConnection, Subscription } from "@nats-io/transport-node";
import type { Logger } from "pino";
import { triggerQueueGroup } from "../../protocol/control.js";
import { DEFAULT_WORKLOAD_LIMITS, type FunctionStats, type WorkloadLimits } from "../types.js";
import { ErrorCodes, type Outcome } from "./outcome.js";
import { HTTP_SUBJECT_PREFIX } from "../../protocol/http.js";
import { errorReply } from "../../protocol/errors.js";
import { replyFromFrame, requestFrame } from "./http-frames.js";
import { DurationHistogram } from "../../util/histogram.js";

/** Largest trigger payload handed to a guest (also at most a quarter of its memory limit). */
const MAX_TRIGGER_PAYLOAD_BYTES = 8 * 1024 * 1024;
/** Isolates or workers serving one workload at most. */
const MAX_CONCURRENCY = 64;
const EMPTY = new Uint8Array(0);
const encoder = new TextEncoder();

/** Triggers waiting for an isolate or worker, per workload; beyond this they are answered "overloaded". */
export const MAX_QUEUED_TRIGGERS = 1024;

/** A trigger waiting for, or running in, an isolate or worker. */
export interface Job {
  subject: string;
  payload: Uint8Array;
  enqueuedAt: number;
  resolve: (o: Outcome) => void;
}

/** What runs the triggers of one workload (isolates for JS, worker threads for wasm). */
export interface TriggerPool {
  /** Runs one trigger; always resolves, never rejects. */
  submit(subject: string, payload: Uint8Array): Promise<Outcome>;
  /** Resolves when nothing runs and nothing waits. */
  drained(): Promise<void>;
  close(): void;
  heapBytes(): Promise<number>;
  /** HTTP triggers go in as request frames and come back as reply frames (JavaScript functions: http-frames.ts). */
  readonly httpFrames?: boolean;
}

/** The parts of a workload's spec its trigger path reads. */
export interface TriggeredSpec {
  id: string;
  name: string;
  namespace: string;
  triggerSubjects: string[];
  limits: WorkloadLimits;
}

export interface TriggerEvents {
  failure(workloadId: string, subject: string, error: string): void;
}

function positive(n: unknown, fallback: number): number {
  return typeof n === "number" && Number.isFinite(n) && n > 0 ? n : fallback;
}

/** A deploy's limits with the defaults filled in and the CPU budget inside the deadline. */
export function normalizeLimits(l: Partial<WorkloadLimits> | undefined): WorkloadLimits {
  const d = DEFAULT_WORKLOAD_LIMITS;
  const timeoutMs = positive(l?.timeoutMs, d.timeoutMs);
  return { memoryMb: Math.max(8, positive(l?.memoryMb, d.memoryMb)), timeoutMs, cpuMs: Math.min(positive(l?.cpuMs, d.cpuMs), timeoutMs) };
}

/** How many isolates or workers serve a workload: its concurrency, 1 to MAX_CONCURRENCY. */
export function poolSize(concurrency: unknown): number {
  return Math.min(MAX_CONCURRENCY, Math.max(1, Math.floor(positive(concurrency, 1))));
}

/** An error reply, as every workload's failures are answered (also a JavaScript service's). */
export function respondError(msg: Msg, code: number, message: string, log: Logger): void {
  try {
    const { body, headers } = errorReply(code, message);
    msg.respond(encoder.encode(body), { headers });
  } catch (err) {
    log.warn({ err: (err as Error).message }, "could not send an error reply");
  }
}

export class HostedWorkload {
  private readonly subs: Subscription[] = [];
  private readonly maxPayload: number;
  private failures = 0;
  private lastMs = 0;
  /**
   * Every trigger's duration, read by the node only when asked (stats): a trigger pays an increment, never
   * a message. The trigger count and the mean come from it.
   */
  private readonly durations = new DurationHistogram();
  private readonly failureCodes: Record<string, number> = {};
  private stopping?: Promise<void>;

  constructor(
    readonly spec: TriggeredSpec,
    private readonly nc: NatsConnection,
    private readonly pool: TriggerPool,
    private readonly events: TriggerEvents,
    private readonly log: Logger,
  ) {
    this.maxPayload = Math.min(MAX_TRIGGER_PAYLOAD_BYTES, Math.floor((spec.limits.memoryMb * 1024 * 1024) / 4));
  }

  /** Subscribes every trigger subject and waits until the server has them (flush); stops itself when that fails. */
  async listen(): Promise<void> {
    try {
      await this.subscribeAll();
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  private async subscribeAll(): Promise<void> {
    const queue = triggerQueueGroup(this.spec.namespace, this.spec.name);
    const refused: string[] = [];
    let listening = false;
    const callback = (subject: string) => (err: Error | null, msg: Msg): void => {
      if (err) {
        if (!listening) refused.push(`${subject}: ${err.message}`);
        this.log.error({ subject, err: err.message }, "trigger subscription failed");
        return;
      }
      // Nothing a publisher sends may throw out of here: a throw would end nats.js's reader, and the runtime
      // host's connection (every workload it runs) would hear nothing more. Headers nats.js cannot parse
      // (a raw publisher's HPUB) throw when read, for one.
      try {
        this.onTrigger(msg);
      } catch (err) {
        this.log.debug({ subject: msg.subject, err: (err as Error)?.message }, "trigger refused");
        if (msg.reply) respondError(msg, ErrorCodes.badRequest, `the message cannot be read: ${(err as Error)?.message ?? err}`, this.log);
      }
    };
    for (const subject of this.spec.triggerSubjects) {
      try {
        this.subs.push(this.nc.subscribe(subject, { queue, callback: callback(subject) }));
      } catch (err) {
        throw new Error(`cannot subscribe to trigger subject '${subject}': ${(err as Error).message}`);
      }
    }
    await this.nc.flush();
    listening = true;
    if (refused.length > 0) throw new Error(`the NATS server refused trigger subscriptions: ${refused.join("; ")}`);
  }

  private onTrigger(msg: Msg): void {
    const started = performance.now();
    const data = msg.data;
    if (data.byteLength > this.maxPayload) {
      this.finish(msg, started, {
        ok: false,
        code: ErrorCodes.tooLarge,
        message: `payload too large: ${data.byteLength} bytes, the limit is ${this.maxPayload}`,
      });
      return;
    }
    // The message is a view into the connection's read buffer (a Buffer, whose slice() is a view too):
    // the guest gets bytes of its own, a copy or the HTTP request frame (which copies the body into it).
    const own = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength;
    const payload = this.pool.httpFrames && msg.subject.startsWith(HTTP_SUBJECT_PREFIX) ? requestFrame(msg, data) : own ? data : new Uint8Array(data);
    this.pool.submit(msg.subject, payload).then((outcome) => this.finish(msg, started, outcome));
  }

  private finish(msg: Msg, started: number, outcome: Outcome): void {
    const ms = performance.now() - started;
    this.lastMs = ms;
    this.durations.observe(ms);
    if (outcome.ok) {
      if (!msg.reply) return;
      const data = outcome.data ?? EMPTY;
      const max = this.nc.info?.max_payload ?? Number.MAX_SAFE_INTEGER;
      const size = typeof data === "string" ? (data.length * 3 > max ? Buffer.byteLength(data) : 0) : data.byteLength;
      if (size > max) {
        outcome = { ok: false, code: ErrorCodes.tooLarge, message: `reply too large: ${size} bytes, the server allows ${max}` };
      } else if (this.pool.httpFrames && msg.subject.startsWith(HTTP_SUBJECT_PREFIX)) {
        const reply = replyFromFrame(data);
        if (typeof reply !== "string") {
          try {
            msg.respond(reply.body, { headers: reply.headers });
          } catch (err) {
            this.log.warn({ err: (err as Error).message }, "could not send a trigger reply");
          }
          return;
        }
        outcome = { ok: false, code: ErrorCodes.failed, message: reply };
      } else {
        try {
          msg.respond(data);
        } catch (err) {
          this.log.warn({ err: (err as Error).message }, "could not send a trigger reply");
        }
        return;
      }
    }
    this.failures++;
    this.failureCodes[outcome.code] = (this.failureCodes[outcome.code] ?? 0) + 1;
    this.events.failure(this.spec.id, msg.subject, outcome.message);
    if (msg.reply) this.replyError(msg, outcome.code, outcome.message);
  }

  private replyError(msg: Msg, code: number, message: string): void {
    respondError(msg, code, message, this.log);
  }

  async stats(): Promise<FunctionStats> {
    const durations = this.durations.snapshot();
    const triggers = durations.counts.reduce((a, b) => a + b, 0);
    return {
      triggers,
      failures: this.failures,
      meanMs: triggers === 0 ? 0 : durations.sumMs / triggers,
      lastMs: this.lastMs,
      memoryBytes: await this.pool.heapBytes(),
      durations,
      failureCodes: { ...this.failureCodes },
    };
  }

  /** Stops taking triggers (drains the subscriptions), lets those in flight finish, closes the pool. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      await Promise.allSettled(this.subs.map((s) => Promise.resolve().then(() => s.drain())));
      await this.pool.drained();
      this.pool.close();
    })();
    return this.stopping;
  }
}
