// One run of a JavaScript service: its isolate (memory limit), its context with the bootstrap and the
// service's module, the events it is sent (start, messages to its subscriptions, timers, triggers for
// handle(), stop) and what holds them (its NATS subscriptions, its timers). A run ends when a callback
// loops or runs too long, when the isolate goes over its memory limit, when start fails, or when it is
// stopped; service-supervisor.ts decides whether another run follows.
//
// Events wait in a queue of the run (at most MAX_SERVICE_QUEUE of them, MAX_SERVICE_QUEUE_BYTES of
// payloads; past that a request is answered 503 "overloaded" and a message is dropped and counted) and go
// into the isolate in batches of up to SERVICE_BATCH, one call at a time, so a flood of messages costs
// the runtime host a bounded amount of memory and the other workloads (each on its own isolate thread)
// nothing but the main thread's share of reading them.
//
// Limits per callback: a batch call into the isolate has isolated-vm's `timeout` of the workload's CPU
// budget (min of cpu_ms and the trigger timeout), which stops a synchronous loop; a call that does not
// return within the wall-clock deadline (its isolate busy with something the timeout does not see, such
// as a continuation after a host call that loops) ends the run too, and an idle isolate is pinged so a
// loop is noticed without traffic. A request whose handler's promise does not settle within the
// deadline is answered 504 and the run goes on.

import { randomBytes } from "node:crypto";
import ivm from "isolated-vm";
import type { Msg, NatsConnection, Subscription } from "@nats-io/transport-node";
import type { Logger } from "pino";
import type { HostCallResult } from "../../host/host-bridge.js";
import { respondError } from "../../host/hosted-workload.js";
import { ErrorCodes, errorText, failure, type Outcome } from "../../host/outcome.js";
import type { ExitReason, LogStream, WorkloadLimits } from "../../types.js";
import { SERVICE_EVENT, SERVICE_RESULT, guestLimits } from "../isolate/bootstrap.js";
import { compileScript, evaluateWorkload, WorkloadLoadError, type WorkloadCode } from "./compile.js";
import { HostAnswers, type SetupResult } from "./host-answers.js";
import { compileBootstrap, guestLayout, isolateMemoryLimitMb, LOAD_TIMEOUT_MS } from "./blank-isolate.js";
import type { PoolHooks } from "./isolate-slot.js";
import { HostCallTurns } from "./host-call-turns.js";
import { ResultChannel } from "./result-channel.js";
import { settleWithin } from "../../../util/settle-within.js";
import { MAX_SERVICE_SUBSCRIPTIONS, MAX_SERVICE_TIMERS, type ServiceSubjects } from "./service-subjects.js";

/** Events (messages, triggers) waiting for the isolate, per service; past this they are refused. */
export const MAX_SERVICE_QUEUE = 1024;
export const MAX_SERVICE_QUEUE_BYTES = 16 * 1024 * 1024;
/** Events handed to the isolate in one call. */
export const SERVICE_BATCH = 64;
/** Largest message payload handed to a service (also at most a quarter of its memory limit). */
const MAX_MESSAGE_BYTES = 8 * 1024 * 1024;
const TICK_MS = 50;
/** An idle isolate is pinged this often, so a loop that holds it without traffic is noticed. */
const PING_EVERY_MS = 250;
const SYNC_TIMEOUT_MESSAGE = "Script execution timed out.";
const EMPTY = new Uint8Array(0);

export interface ServiceIdentity {
  id: string;
  name: string;
  namespace: string;
  node: string;
}

export interface ServiceRunConfig {
  code: WorkloadCode;
  limits: WorkloadLimits;
  env: Record<string, string>;
  /** The NATS server's max_payload: no reply or host-call value larger leaves the isolate. */
  maxPayload: number;
  workload: ServiceIdentity;
  nc: NatsConnection;
  subjects: ServiceSubjects;
  hooks: PoolHooks;
  log: Logger;
  /** The run ended on its own (not by stop()); called once. */
  onEnd(reason: ExitReason, message: string): void;
}

interface Queued {
  kind: number;
  id: number;
  subject: string;
  payload: Uint8Array;
  reqId: number;
}

interface Waiting {
  resolve(o: Outcome): void;
  deadline: number;
}

interface Sub {
  subject: string;
  queue?: string;
  sub: Subscription;
}

/** A guest timer: the run keeps a table of them and one host timer armed for the earliest due. */
interface Timer {
  /** When it fires next (Date.now() ms). */
  due: number;
  /** Its period for setInterval, 0 for setTimeout. */
  interval: number;
  /** A fire of it waits in the queue already (fires of one timer do not pile up). */
  queued: boolean;
}

/**
 * Timer fires a service gets per second, and as many at once: each fire costs the shared runtime host's
 * main thread (the scan, the queue, the copy into the isolate), which the service's CPU budget does not
 * see, so 1,000 setInterval(f, 1) would otherwise take it whole. Past the rate, due timers wait.
 */
export const TIMER_FIRES_PER_SECOND = 1000;
/** While a service has used up its fires, its timers are looked at again no sooner than this. */
const TIMER_STARVED_WAIT_MS = 10;

/** What a request that was still waiting hears when its run ends. */
function endOutcome(reason: ExitReason, message: string): Outcome {
  return failure(reason === "timeout" ? ErrorCodes.timeout : ErrorCodes.failed, `the service's run ended: ${message}`);
}

export class ServiceRun {
  readonly isolate: ivm.Isolate;
  private context?: ivm.Context;
  private dispatch?: ivm.Reference<(events: unknown) => unknown>;
  private readonly queue: Queued[] = [];
  private queuedBytes = 0;
  /** When the call into the isolate now running started (0: none runs). */
  private callSince = 0;
  private lastCallEnd = Date.now();
  private readonly waiting = new Map<number, Waiting>();
  private nextReq = 1;
  private readonly subs = new Map<number, Sub>();
  private nextSub = 1;
  private readonly timers = new Map<number, Timer>();
  /** The one host timer of the run, armed for the earliest due guest timer, and when it fires. */
  private wake?: NodeJS.Timeout;
  private wakeAt = Infinity;
  /** Timer fires left to this run now (TIMER_FIRES_PER_SECOND), refilled as time passes since fireTokensAt. */
  private fireTokens = TIMER_FIRES_PER_SECOND;
  private fireTokensAt = Date.now();
  private ticker?: NodeJS.Timeout;
  private readonly callbackMs: number;
  private readonly maxMessage: number;
  private readonly hostCalls = new HostCallTurns("this service");
  private readonly refs: { release(): void }[] = [];
  private stopping = false;
  ended = false;
  /** Messages dropped or refused because the queue was full. */
  dropped = 0;
  requests = 0;
  failures = 0;
  totalMs = 0;
  lastMs = 0;
  private lastHeapBytes = 0;
  private lastCpuNs = 0n;

  private constructor(private readonly cfg: ServiceRunConfig) {
    this.isolate = new ivm.Isolate({
      memoryLimit: isolateMemoryLimitMb(cfg.limits.memoryMb),
      onCatastrophicError: (message: string) => cfg.hooks.catastrophic(message),
    });
    this.callbackMs = Math.max(1, Math.min(cfg.limits.timeoutMs, cfg.limits.cpuMs));
    this.maxMessage = Math.min(MAX_MESSAGE_BYTES, Math.floor((cfg.limits.memoryMb * 1024 * 1024) / 4));
  }

  /** A new isolate with the service's module loaded and its runner ready (start not called yet); rejects with a WorkloadLoadError. */
  static async create(cfg: ServiceRunConfig): Promise<ServiceRun> {
    const run = new ServiceRun(cfg);
    try {
      await run.load();
    } catch (err) {
      const disposed = run.isolate.isDisposed;
      run.ended = true;
      run.release();
      throw run.loadError(err, disposed);
    }
    run.ticker = setInterval(() => run.tick(), TICK_MS);
    return run;
  }

  private loadError(err: unknown, disposed: boolean): WorkloadLoadError {
    if (err instanceof WorkloadLoadError) return err;
    const name = this.cfg.code.name;
    if (disposed) return new WorkloadLoadError(`JavaScript service '${name}' went over its memory limit (${this.cfg.limits.memoryMb} MB) while loading`);
    const message = (err as Error)?.message;
    if (message === SYNC_TIMEOUT_MESSAGE) return new WorkloadLoadError(`JavaScript service '${name}' took longer than ${LOAD_TIMEOUT_MS} ms to load`);
    return new WorkloadLoadError(`JavaScript service '${name}' ${message?.startsWith("a service") ? "is not a service: " : "threw while loading: "}${errorText(err)}`);
  }

  private async load(): Promise<void> {
    const { cfg, isolate } = this;
    const bootstrap = await compileBootstrap(isolate);
    const script = await compileScript(isolate, cfg.code);
    const context = await isolate.createContext();
    this.context = context;
    const hostRef = new ivm.Reference(async (service: unknown, method: unknown, headers: unknown, body: unknown) => {
      const result = await this.hostCall(service, method, headers, body, Date.now() + cfg.limits.timeoutMs);
      return new ivm.ExternalCopy(result).copyInto({ release: true });
    });
    this.refs.push(hostRef);
    const answers = new HostAnswers({
      deadline: () => Date.now() + cfg.limits.timeoutMs,
      call: (service, method, headers, body, deadline) => this.hostCall(service, method, headers, body, deadline),
    });
    this.refs.push({ release: () => answers.close() });
    const log = new ivm.Callback(
      (stream: unknown, line: unknown) => {
        if ((stream === "stdout" || stream === "stderr") && typeof line === "string") cfg.hooks.log(stream as LogStream, line);
      },
      { ignored: true },
    );
    const control = new ivm.Callback((op: unknown, a: unknown, b: unknown, c: unknown) => this.control(op, a, b, c));
    const reply = new ivm.Callback((reqId: unknown, kind: unknown, value: unknown) => this.settle(reqId, kind, value), { ignored: true });
    const unused = new ivm.Callback(() => undefined, { ignored: true });
    const setup = (await bootstrap.run(context, { reference: true, timeout: LOAD_TIMEOUT_MS })) as ivm.Reference<unknown>;
    this.refs.push(setup);
    const made = (await setup.apply(
      undefined,
      [
        log,
        hostRef,
        answers.out,
        new ivm.ExternalCopy(cfg.env).copyInto({ release: true }),
        new ivm.ExternalCopy(guestLimits(cfg.maxPayload)).copyInto({ release: true }),
        unused,
        new ivm.ExternalCopy(new ResultChannel().shared).copyInto({ release: true }),
        new ivm.ExternalCopy(new Uint8Array(randomBytes(32))).copyInto({ release: true }),
        guestLayout(),
      ],
      { result: { reference: true }, timeout: LOAD_TIMEOUT_MS },
    )) as ivm.Reference<SetupResult>;
    this.refs.push(made);
    const makeRunner = await answers.takeSetup(made);
    this.refs.push(makeRunner);
    const mod = await evaluateWorkload(this.isolate, context, this.cfg.code, script, LOAD_TIMEOUT_MS);
    this.refs.push(mod);
    const info = { workload: { ...cfg.workload }, maxTimers: MAX_SERVICE_TIMERS, maxSubscriptions: MAX_SERVICE_SUBSCRIPTIONS };
    this.dispatch = (await makeRunner.apply(undefined, [mod.derefInto(), new ivm.ExternalCopy(info).copyInto({ release: true }), control, reply], {
      result: { reference: true },
      timeout: LOAD_TIMEOUT_MS,
    })) as ivm.Reference<(events: unknown) => unknown>;
    this.refs.push(this.dispatch);
  }

  // ---- what the service asks of the host --------------------------------------------------------

  /** One host call, when a turn is free (host-call-turns.ts, as for functions). */
  private hostCall(service: unknown, method: unknown, headers: unknown, body: unknown, deadline: number): Promise<HostCallResult> {
    if (this.ended) return Promise.resolve({ ok: false, code: "internal", message: "the service's run ended" });
    return this.hostCalls.run(body, () => this.cfg.hooks.hostCall(service, method, headers, body, deadline));
  }

  /** subscribe/unsubscribe/timer/untimer from the isolate (synchronous): "" or an id, or "code\0message". */
  private control(op: unknown, a: unknown, b: unknown, c: unknown): string | number {
    if (this.ended || this.stopping) return "unavailable\u0000the service is stopping";
    switch (op) {
      case "subscribe":
        return this.subscribe(a, b);
      case "unsubscribe": {
        const s = this.subs.get(Number(a));
        this.subs.delete(Number(a));
        if (s) s.sub.unsubscribe();
        this.cfg.subjects.claim([...this.subs.values()].map((x) => x.subject));
        return "";
      }
      case "timer": {
        const id = Number(a);
        if (!Number.isSafeInteger(id) || this.timers.has(id)) return "bad_request\u0000bad timer id";
        if (this.timers.size >= MAX_SERVICE_TIMERS) return `overloaded\u0000too many pending timers: a service may have at most ${MAX_SERVICE_TIMERS}`;
        const delay = Math.min(2 ** 31 - 1, Math.max(1, Math.floor(Number(b)) || 1));
        const due = Date.now() + delay;
        this.timers.set(id, { due, interval: c === true ? delay : 0, queued: false });
        if (due < this.wakeAt) this.arm(due);
        return "";
      }
      case "untimer":
        // The host timer stays armed: when it fires it finds nothing due and re-arms for what is left.
        this.timers.delete(Number(a));
        return "";
      default:
        return "bad_request\u0000unknown operation";
    }
  }

  private subscribe(subject: unknown, queue: unknown): string | number {
    if (typeof subject !== "string" || typeof queue !== "string") return "bad_request\u0000subject and queue must be strings";
    if (this.subs.size >= MAX_SERVICE_SUBSCRIPTIONS) return `overloaded\u0000too many subscriptions: a service may have at most ${MAX_SERVICE_SUBSCRIPTIONS}`;
    const problem = this.cfg.subjects.problem(subject);
    if (problem) return `${problem.code}\u0000${problem.message}`;
    const group = this.cfg.subjects.queueGroup(queue);
    if (typeof group === "object") return `${group.code}\u0000${group.message}`;
    const id = this.nextSub++;
    let sub: Subscription;
    try {
      sub = this.cfg.nc.subscribe(subject, {
        ...(group ? { queue: group } : {}),
        callback: (err, msg) => {
          if (err) this.cfg.log.warn({ subject, err: err.message }, "service subscription failed");
          else {
            // As for triggers (../../host/hosted-workload.ts): a throw here would stop the runtime host's reader.
            try {
              this.onMessage(id, msg);
            } catch (e) {
              this.cfg.log.debug({ subject, err: (e as Error)?.message }, "service message refused");
            }
          }
        },
      });
    } catch (err) {
      return `bad_request\u0000cannot subscribe to ${JSON.stringify(subject)}: ${(err as Error).message}`;
    }
    this.subs.set(id, { subject, ...(queue ? { queue } : {}), sub });
    this.cfg.subjects.claim([...this.subs.values()].map((x) => x.subject));
    return id;
  }

  // ---- events into the isolate ------------------------------------------------------------------

  private onMessage(subId: number, msg: Msg): void {
    if (this.ended || this.stopping) {
      if (msg.reply) respondError(msg, ErrorCodes.overloaded, "unavailable: the service is stopping", this.cfg.log);
      return;
    }
    const data = msg.data;
    if (data.byteLength > this.maxMessage) {
      this.dropped++;
      if (msg.reply) respondError(msg, ErrorCodes.tooLarge, `payload too large: ${data.byteLength} bytes, the limit is ${this.maxMessage}`, this.cfg.log);
      return;
    }
    if (this.queue.length >= MAX_SERVICE_QUEUE || this.queuedBytes + data.byteLength > MAX_SERVICE_QUEUE_BYTES) {
      this.dropped++;
      if (msg.reply) respondError(msg, ErrorCodes.overloaded, `overloaded: the service has ${this.queue.length} messages waiting`, this.cfg.log);
      return;
    }
    // The message is a view into the connection's read buffer: copy its own bytes.
    const payload = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength ? data : new Uint8Array(data);
    let reqId = 0;
    if (msg.reply) {
      const started = performance.now();
      reqId = this.expect((o) => this.answer(msg, started, o));
    }
    this.enqueue({ kind: SERVICE_EVENT.message, id: subId, subject: msg.subject, payload, reqId });
  }

  private answer(msg: Msg, started: number, outcome: Outcome): void {
    const ms = performance.now() - started;
    this.requests++;
    this.totalMs += ms;
    this.lastMs = ms;
    if (outcome.ok) {
      try {
        msg.respond(outcome.data ?? EMPTY);
      } catch (err) {
        this.cfg.log.warn({ err: (err as Error).message }, "could not send a service reply");
      }
      return;
    }
    this.failures++;
    respondError(msg, outcome.code, outcome.message, this.cfg.log);
  }

  /** A trigger on the service's trigger subjects, for handle(subject, payload). */
  trigger(subject: string, payload: Uint8Array): Promise<Outcome> {
    if (this.ended || this.stopping) return Promise.resolve(failure(ErrorCodes.overloaded, "unavailable: the service is stopping"));
    if (this.queue.length >= MAX_SERVICE_QUEUE || this.queuedBytes + payload.byteLength > MAX_SERVICE_QUEUE_BYTES) {
      this.dropped++;
      return Promise.resolve(failure(ErrorCodes.overloaded, `overloaded: the service has ${this.queue.length} messages waiting`));
    }
    return new Promise((resolve) => {
      const reqId = this.expect(resolve);
      this.enqueue({ kind: SERVICE_EVENT.trigger, id: 0, subject, payload, reqId });
    });
  }

  /** Runs start(ctx); resolves with its outcome (a failure has ended the run). */
  async start(): Promise<Outcome> {
    const o = await new Promise<Outcome>((resolve) => {
      const reqId = this.expect(resolve);
      this.enqueue({ kind: SERVICE_EVENT.start, id: 0, subject: "", payload: EMPTY, reqId });
    });
    if (!o.ok) this.end(o.code === ErrorCodes.timeout ? "timeout" : "crashed", `start failed: ${o.message}`);
    return o;
  }

  /** (Re)arms the run's one host timer for `at` (Date.now() ms). */
  private arm(at: number): void {
    clearTimeout(this.wake);
    this.wake = undefined;
    this.wakeAt = at;
    if (at === Infinity || this.ended) return;
    this.wake = setTimeout(() => this.fireDue(), Math.min(2 ** 31 - 1, Math.max(1, at - Date.now())));
  }

  /** The host timer fired: every due guest timer becomes an event (once while queued), intervals are rescheduled, and it re-arms. */
  private fireDue(): void {
    this.wake = undefined;
    this.wakeAt = Infinity;
    if (this.ended) return;
    const now = Date.now();
    this.fireTokens = Math.min(TIMER_FIRES_PER_SECOND, this.fireTokens + ((now - this.fireTokensAt) * TIMER_FIRES_PER_SECOND) / 1000);
    this.fireTokensAt = now;
    let next = Infinity;
    let starved = false;
    const due: number[] = [];
    for (const [id, t] of this.timers) {
      if (t.due <= now) {
        if (!t.queued && this.fireTokens < 1) {
          starved = true; // stays due, and fires once the run has fires again
          continue;
        }
        if (t.interval === 0) this.timers.delete(id);
        else t.due = Math.max(t.due + t.interval, now + 1);
        if (!t.queued) {
          t.queued = true;
          this.fireTokens--;
          due.push(id);
        }
      }
      if (t.interval !== 0 || t.due > now) next = Math.min(next, t.due);
    }
    this.arm(starved ? now + TIMER_STARVED_WAIT_MS : next);
    for (const id of due) this.fire(id);
  }

  private fire(id: number): void {
    this.enqueue({ kind: SERVICE_EVENT.timer, id, subject: "", payload: EMPTY, reqId: 0 });
  }

  private expect(resolve: (o: Outcome) => void): number {
    const reqId = this.nextReq++;
    this.waiting.set(reqId, { resolve, deadline: Date.now() + this.cfg.limits.timeoutMs });
    return reqId;
  }

  private enqueue(e: Queued): void {
    this.queue.push(e);
    this.queuedBytes += e.payload.byteLength;
    this.pump();
  }

  /** Hands the next batch to the isolate when no call into it runs. */
  private pump(): void {
    if (this.callSince !== 0 || this.ended || this.queue.length === 0) return;
    const batch = this.queue.length <= SERVICE_BATCH ? this.queue.splice(0) : this.queue.splice(0, SERVICE_BATCH);
    for (const e of batch) {
      this.queuedBytes -= e.payload.byteLength;
      if (e.kind === SERVICE_EVENT.timer) {
        const t = this.timers.get(e.id);
        if (t) t.queued = false;
      }
    }
    this.call(batch);
  }

  private call(batch: Queued[]): void {
    const dispatch = this.dispatch;
    if (!dispatch) return;
    this.callSince = Date.now();
    let events: ivm.Copy<unknown>;
    try {
      events = new ivm.ExternalCopy([batch.map((e) => e.kind), batch.map((e) => e.id), batch.map((e) => e.subject), batch.map((e) => e.payload), batch.map((e) => e.reqId)]).copyInto({
        release: true,
      });
    } catch (err) {
      this.callSince = 0;
      this.failed(err);
      return;
    }
    dispatch.apply(undefined, [events], { result: { copy: true }, timeout: this.callbackMs }).then(
      (r) => {
        this.callSince = 0;
        this.lastCallEnd = Date.now();
        this.results(r);
        this.pump();
      },
      (err: unknown) => {
        this.callSince = 0;
        this.failed(err);
      },
    );
  }

  private results(r: unknown): void {
    if (!Array.isArray(r) || r.length !== 3) return;
    const [ids, kinds, values] = r as [unknown[], unknown[], unknown[]];
    if (!Array.isArray(ids) || !Array.isArray(kinds) || !Array.isArray(values)) return;
    for (let i = 0; i < ids.length; i++) this.settle(ids[i], kinds[i], values[i]);
  }

  /** A start, stop, reply or trigger's result, from the call's return or (settled later) emitReply. */
  private settle(reqId: unknown, kind: unknown, value: unknown): void {
    const w = typeof reqId === "number" ? this.waiting.get(reqId) : undefined;
    if (!w) return; // answered already (its deadline passed) or not ours
    this.waiting.delete(reqId as number);
    if (kind === SERVICE_RESULT.ok) {
      w.resolve({ ok: true, data: typeof value === "string" || value instanceof Uint8Array ? value : undefined });
    } else {
      const message = typeof value === "string" ? value : "the service failed";
      const code = kind === SERVICE_RESULT.tooLarge ? ErrorCodes.tooLarge : kind === SERVICE_RESULT.unavailable ? ErrorCodes.unavailable : ErrorCodes.failed;
      w.resolve(failure(code, message));
    }
  }

  /** The call into the isolate failed: it was stopped by its timeout, or disposed over its memory limit. */
  private failed(err: unknown): void {
    if (this.ended) return;
    if (this.isolate.isDisposed) {
      this.end("oom_killed", `memory limit exceeded: the isolate went over ${this.cfg.limits.memoryMb} MB`);
      return;
    }
    const message = (err as Error)?.message;
    if (message === SYNC_TIMEOUT_MESSAGE) {
      this.end("timeout", `a callback ran longer than ${this.callbackMs} ms`);
      return;
    }
    this.end("crashed", typeof message === "string" ? message : String(err));
  }

  /** Deadlines: a call into the isolate that does not come back, requests whose promise does not settle; pings an idle isolate. */
  private tick(): void {
    if (this.ended) return;
    const now = Date.now();
    if (this.callSince !== 0 && now - this.callSince > this.cfg.limits.timeoutMs + 2 * TICK_MS) {
      this.end("timeout", `a callback held the isolate for more than ${this.cfg.limits.timeoutMs} ms`);
      return;
    }
    for (const [reqId, w] of this.waiting) {
      if (w.deadline > now) break; // in deadline order: every one waits as long
      this.waiting.delete(reqId);
      w.resolve(failure(ErrorCodes.timeout, `timeout: the service did not answer within ${this.cfg.limits.timeoutMs} ms`));
    }
    if (this.callSince === 0 && this.queue.length === 0 && now - this.lastCallEnd >= PING_EVERY_MS) {
      this.enqueue({ kind: SERVICE_EVENT.ping, id: 0, subject: "", payload: EMPTY, reqId: 0 });
    }
  }

  // ---- the end of the run -----------------------------------------------------------------------

  /** Ends the run on its own: everything it holds goes, waiting requests are answered, the supervisor is told. */
  end(reason: ExitReason, message: string): void {
    if (this.ended) return;
    this.shutdown(endOutcome(reason, message));
    this.cfg.onEnd(reason, message);
  }

  private shutdown(waitingHear: Outcome): void {
    this.ended = true;
    clearInterval(this.ticker);
    this.dropSubscriptionsAndTimers();
    for (const w of this.waiting.values()) w.resolve(waitingHear);
    this.waiting.clear();
    this.queue.length = 0;
    this.queuedBytes = 0;
    this.hostCalls.close();
    this.release();
  }

  /** No more messages or timers reach the isolate. */
  private dropSubscriptionsAndTimers(): void {
    for (const s of this.subs.values()) {
      try {
        s.sub.unsubscribe();
      } catch {
        // connection closing
      }
    }
    this.subs.clear();
    this.cfg.subjects.claim([]);
    this.timers.clear();
    this.arm(Infinity);
  }

  /**
   * Stops the run: no more messages or timers, then stop(ctx) within `deadlineMs` (with what is already
   * queued before it), then the isolate is disposed.
   */
  async stop(deadlineMs: number): Promise<void> {
    if (this.ended || this.stopping) return;
    this.stopping = true;
    this.dropSubscriptionsAndTimers();
    const outcome = await new Promise<Outcome>((resolve) => {
      const reqId = this.nextReq++;
      this.waiting.set(reqId, { resolve, deadline: Date.now() + deadlineMs });
      this.enqueue({ kind: SERVICE_EVENT.stop, id: 0, subject: "", payload: EMPTY, reqId });
      // The tick's sweep answers in deadline order; stop's own deadline may be shorter than the others'.
      setTimeout(() => this.settle(reqId, SERVICE_RESULT.error, `stop did not finish within ${deadlineMs} ms`), deadlineMs).unref();
    });
    if (!outcome.ok) {
      this.cfg.log.warn({ err: outcome.message }, "the service's stop failed");
      this.cfg.hooks.log("stderr", `[nex] stop failed: ${outcome.message}`);
    }
    if (!this.ended) this.shutdown(failure(ErrorCodes.overloaded, "unavailable: the service stopped"));
  }

  /**
   * Ends the run at once without stop(ctx): for a run whose start never ran (an undeploy overtook its
   * restart while it loaded), so the service sees no stop without a start.
   */
  dispose(): void {
    if (this.ended) return;
    this.stopping = true;
    this.shutdown(failure(ErrorCodes.overloaded, "unavailable: the service stopped"));
  }

  private release(): void {
    for (const r of this.refs.splice(0)) {
      try {
        r.release();
      } catch {
        // gone with the isolate
      }
    }
    try {
      this.context?.release();
    } catch {
      // gone with the isolate
    }
    if (!this.isolate.isDisposed) {
      try {
        this.isolate.dispose();
      } catch {
        // already gone
      }
    }
  }

  // ---- what `nex workload info` shows -----------------------------------------------------------

  async usage(): Promise<{ memoryBytes: number; cpuMs: number; subscriptions: string[]; timers: number; hostTimers: number }> {
    if (!this.ended) {
      try {
        this.lastCpuNs = this.isolate.cpuTime;
        const stats = await settleWithin(this.isolate.getHeapStatistics(), 250);
        if (stats) this.lastHeapBytes = stats.used_heap_size + stats.externally_allocated_size;
      } catch {
        // disposed meanwhile
      }
    }
    return {
      memoryBytes: this.ended ? 0 : this.lastHeapBytes,
      cpuMs: Math.round(Number(this.lastCpuNs) / 1e4) / 100,
      subscriptions: [...this.subs.values()].map((s) => (s.queue ? `${s.subject} (queue ${s.queue})` : s.subject)),
      timers: this.timers.size,
      hostTimers: this.wake ? 1 : 0,
    };
  }
}
