// Isolates, contexts and limits for one workload, inside the runtime host.
//
// A WorkloadPool owns `concurrency` IsolateSlots. A trigger goes to an idle slot, or waits in a bounded
// queue (beyond it: "overloaded"). A slot is one isolate (memoryLimit = limits.memoryMb) with either
// one warm context reused by every trigger (module state persists), or, in fresh mode, a few spare
// contexts prepared ahead (bootstrap + workload code already evaluated) so each trigger gets a clean one
// without waiting for it; spares are refilled in the background after each trigger.
//
// Limits per trigger:
// - wall clock: our own timer (isolated-vm's `timeout` does not bound promises); on expiry the isolate is
//   disposed, the trigger answers "timeout" and the pool builds a replacement isolate;
// - CPU: isolated-vm's `timeout` (min of cpuMs and timeoutMs) stops synchronous runaways, and a pool
//   ticker compares isolate.cpuTime against the trigger's budget for asynchronous code;
// - memory: isolated-vm disposes an isolate over its memoryLimit; the trigger answers an error and the
//   isolate is replaced.

import ivm from "isolated-vm";
import type { Logger } from "pino";
import type { LogStream, WorkloadLimits } from "../types.js";
import { BOOTSTRAP_SOURCE, CONSOLE_LIMITS } from "./bootstrap.js";
import { compileModule, compileScript, WorkloadLoadError, type WorkloadCode } from "./compile.js";
import type { HostCallResult } from "./host-bridge.js";

export type Outcome =
  | { ok: true; data: string | Uint8Array | undefined }
  | { ok: false; code: number; message: string };

/** Error codes of error replies (the Nats-Service-Error-Code header), HTTP-like. */
export const ErrorCodes = {
  failed: 500,
  overloaded: 503,
  timeout: 504,
  tooLarge: 413,
} as const;

/** Time allowed for evaluating the workload's top-level code in a new context. */
export const LOAD_TIMEOUT_MS = 5000;
/** Pre-warmed contexts kept per isolate in fresh-context mode. */
export const SPARE_CONTEXTS = 2;
/** Triggers waiting for an isolate, per workload; beyond this they are answered "overloaded". */
export const MAX_QUEUED_TRIGGERS = 1024;

const SYNC_TIMEOUT_MESSAGE = "Script execution timed out.";

export interface PoolHooks {
  /** A console line from inside the isolate. */
  log(stream: LogStream, line: string): void;
  /** A host-service call from inside the isolate; never rejects. */
  hostCall(service: unknown, method: unknown, headers: unknown, body: unknown, deadlineAt: number): Promise<HostCallResult>;
  /** isolated-vm lost control of an isolate; the process must stop. */
  catastrophic(message: string): void;
}

export interface PoolConfig {
  code: WorkloadCode;
  limits: WorkloadLimits;
  fresh: boolean;
  concurrency: number;
  env: Record<string, string>;
  hooks: PoolHooks;
  log: Logger;
}

function failure(code: number, message: string): Outcome {
  return { ok: false, code, message };
}

function timeoutOutcome(ms: number): Outcome {
  return failure(ErrorCodes.timeout, `timeout: the trigger did not finish within ${ms} ms`);
}

function cpuOutcome(ms: number): Outcome {
  return failure(ErrorCodes.timeout, `timeout: the trigger used more than ${ms} ms of CPU time`);
}

function memoryOutcome(mb: number): Outcome {
  return failure(ErrorCodes.failed, `memory limit exceeded: the isolate went over ${mb} MB and was disposed`);
}

const UNAVAILABLE: Outcome = failure(ErrorCodes.overloaded, "unavailable: the workload is stopping");

interface Prepared {
  context: ivm.Context;
  invoke: ivm.Reference<(subject: string, payload: unknown) => unknown>;
}

function releasePrepared(p: Prepared): void {
  try {
    p.invoke.release();
    p.context.release();
  } catch {
    // The isolate is gone already.
  }
}

function errorText(err: unknown): string {
  const e = err as Error;
  if (e && typeof e.message === "string") return e.name && e.name !== "Error" ? `${e.name}: ${e.message}` : e.message;
  return String(err);
}

/** One isolate of a workload, with its warm context or its spare fresh contexts. */
class IsolateSlot {
  readonly isolate: ivm.Isolate;
  private script?: ivm.Script;
  private warm?: Prepared;
  private readonly spares: Prepared[] = [];
  private refilling = 0;
  private readonly hostRef: ivm.Reference<(...args: unknown[]) => Promise<unknown>>;
  private readonly logCallback: ivm.Callback;
  private readonly applyOptions: { result: { promise: true; copy: true }; timeout: number };
  private triggerDeadline = 0;
  private abort?: (o: Outcome) => void;
  busy = false;
  dead = false;
  /** isolate.cpuTime when the current trigger started. */
  startCpu = 0n;
  lastHeapBytes = 0;

  private constructor(private readonly cfg: PoolConfig) {
    this.isolate = new ivm.Isolate({
      memoryLimit: Math.max(8, Math.floor(cfg.limits.memoryMb)),
      onCatastrophicError: (message: string) => cfg.hooks.catastrophic(message),
    });
    this.hostRef = new ivm.Reference(async (service: unknown, method: unknown, headers: unknown, body: unknown) => {
      const deadline = this.busy ? this.triggerDeadline : Date.now() + LOAD_TIMEOUT_MS;
      const result = await cfg.hooks.hostCall(service, method, headers, body, deadline);
      return new ivm.ExternalCopy(result).copyInto({ release: true });
    });
    this.logCallback = new ivm.Callback(
      (stream: unknown, line: unknown) => {
        if ((stream === "stdout" || stream === "stderr") && typeof line === "string") cfg.hooks.log(stream, line);
      },
      { ignored: true },
    );
    const { timeoutMs, cpuMs } = cfg.limits;
    this.applyOptions = { result: { promise: true, copy: true }, timeout: Math.max(1, Math.min(timeoutMs, cpuMs)) };
  }

  /** A new isolate with the workload compiled and a context ready; rejects with a WorkloadLoadError. */
  static async create(cfg: PoolConfig): Promise<IsolateSlot> {
    const slot = new IsolateSlot(cfg);
    try {
      slot.script = await compileScript(slot.isolate, cfg.code);
      const first = await slot.prepare();
      if (cfg.fresh) {
        slot.spares.push(first);
        slot.refill();
      } else {
        slot.warm = first;
      }
      return slot;
    } catch (err) {
      const disposed = slot.isolate.isDisposed;
      slot.dispose();
      throw slot.loadError(err, disposed);
    }
  }

  private loadError(err: unknown, disposed: boolean): WorkloadLoadError {
    if (err instanceof WorkloadLoadError) return err;
    const name = this.cfg.code.name;
    if (disposed) {
      return new WorkloadLoadError(`JavaScript workload '${name}' went over its memory limit (${this.cfg.limits.memoryMb} MB) while loading`);
    }
    const message = (err as Error)?.message;
    if (message === SYNC_TIMEOUT_MESSAGE) {
      return new WorkloadLoadError(`JavaScript workload '${name}' took longer than ${LOAD_TIMEOUT_MS} ms to load`);
    }
    return new WorkloadLoadError(`JavaScript workload '${name}' threw while loading: ${errorText(err)}`);
  }

  /** A context with the shims installed, the workload evaluated and its invoker ready. */
  private async prepare(): Promise<Prepared> {
    const context = await this.isolate.createContext();
    try {
      const makeInvoker = (await context.evalClosure(
        BOOTSTRAP_SOURCE,
        [
          this.logCallback,
          this.hostRef,
          new ivm.ExternalCopy(this.cfg.env).copyInto({ release: true }),
          new ivm.ExternalCopy(CONSOLE_LIMITS).copyInto({ release: true }),
        ],
        { result: { reference: true }, timeout: LOAD_TIMEOUT_MS, filename: "nex:bootstrap" },
      )) as unknown as ivm.Reference<(handler: unknown) => unknown>;
      let handler: ivm.Reference<unknown> | undefined;
      try {
        handler = await this.evaluateWorkload(context);
        if (handler.typeof !== "function") {
          throw new WorkloadLoadError(
            `JavaScript workload '${this.cfg.code.name}' must evaluate to a function (subject, payload) => result, ` +
              `or export one as default; it evaluated to ${handler.typeof === "undefined" ? "undefined" : `a value of type ${handler.typeof}`}`,
          );
        }
        const invoke = (await makeInvoker.apply(undefined, [handler.derefInto()], {
          result: { reference: true },
          timeout: LOAD_TIMEOUT_MS,
        })) as unknown as Prepared["invoke"];
        return { context, invoke };
      } finally {
        handler?.release();
        makeInvoker.release();
      }
    } catch (err) {
      try {
        context.release();
      } catch {
        // isolate disposed
      }
      throw err;
    }
  }

  private async evaluateWorkload(context: ivm.Context): Promise<ivm.Reference<unknown>> {
    if (this.script) {
      return (await this.script.run(context, { reference: true, timeout: LOAD_TIMEOUT_MS })) as ivm.Reference<unknown>;
    }
    const mod = await compileModule(this.isolate, this.cfg.code);
    try {
      await mod.instantiate(context, (specifier: string) => {
        throw new Error(`cannot import '${specifier}'`);
      });
      await mod.evaluate({ timeout: LOAD_TIMEOUT_MS });
      return (await mod.namespace.get("default", { reference: true })) as ivm.Reference<unknown>;
    } finally {
      mod.release();
    }
  }

  private refill(): void {
    while (!this.dead && this.spares.length + this.refilling < SPARE_CONTEXTS) {
      this.refilling++;
      this.prepare().then(
        (p) => {
          this.refilling--;
          if (this.dead) releasePrepared(p);
          else this.spares.push(p);
        },
        (err) => {
          this.refilling--;
          if (!this.dead) this.cfg.log.warn({ err: errorText(err) }, "preparing a fresh context failed");
        },
      );
    }
  }

  /** Runs one trigger; always resolves. After it, `dead` says whether the isolate must be replaced. */
  async run(subject: string, payload: Uint8Array): Promise<Outcome> {
    const { timeoutMs } = this.cfg.limits;
    this.busy = true;
    this.triggerDeadline = Date.now() + timeoutMs;
    this.startCpu = this.isolate.cpuTime;
    let prepared: Prepared | undefined;
    if (this.cfg.fresh) {
      prepared = this.spares.pop();
      if (!prepared) {
        try {
          prepared = await this.prepare();
        } catch (err) {
          this.busy = false;
          this.dead = true;
          this.dispose();
          return failure(ErrorCodes.failed, `could not prepare a context: ${errorText(err)}`);
        }
      }
    } else {
      prepared = this.warm;
    }
    if (!prepared || this.dead) {
      this.busy = false;
      return failure(ErrorCodes.failed, "the isolate is gone");
    }
    const invoke = prepared.invoke;
    const outcome = await new Promise<Outcome>((resolve) => {
      let settled = false;
      const timer = setTimeout(() => this.kill(timeoutOutcome(timeoutMs)), Math.max(0, this.triggerDeadline - Date.now()));
      const done = (o: Outcome): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.abort = undefined;
        resolve(o);
      };
      this.abort = done;
      try {
        invoke
          .apply(undefined, [subject, new ivm.ExternalCopy(payload).copyInto({ release: true })], this.applyOptions)
          .then(
            (value: unknown) => done({ ok: true, data: value as string | Uint8Array | undefined }),
            (err: unknown) => done(this.classify(err)),
          );
      } catch (err) {
        done(this.classify(err));
      }
    });
    this.busy = false;
    if (this.cfg.fresh) {
      releasePrepared(prepared);
      if (!this.dead) this.refill();
    }
    return outcome;
  }

  private classify(err: unknown): Outcome {
    const { memoryMb, timeoutMs, cpuMs } = this.cfg.limits;
    if (this.isolate.isDisposed) {
      this.dead = true;
      return memoryOutcome(memoryMb);
    }
    const message = (err as Error)?.message;
    if (message === SYNC_TIMEOUT_MESSAGE) {
      // Terminated mid-run: the context's state is suspect, so start over with a new isolate.
      this.dead = true;
      this.dispose();
      return cpuMs < timeoutMs ? cpuOutcome(cpuMs) : timeoutOutcome(timeoutMs);
    }
    return failure(ErrorCodes.failed, typeof message === "string" ? message : String(err));
  }

  /** Ends the running trigger with `outcome` and disposes the isolate (the pool replaces it). */
  kill(outcome: Outcome): void {
    this.dead = true;
    this.dispose();
    this.abort?.(outcome);
  }

  cpuUsedNs(): bigint {
    try {
      return this.isolate.cpuTime - this.startCpu;
    } catch {
      return 0n;
    }
  }

  async heapBytes(): Promise<number> {
    if (this.dead) return 0;
    try {
      const stats = await Promise.race([
        this.isolate.getHeapStatistics(),
        new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 250).unref()),
      ]);
      if (stats) this.lastHeapBytes = stats.used_heap_size + stats.externally_allocated_size;
    } catch {
      // disposed meanwhile
    }
    return this.lastHeapBytes;
  }

  dispose(): void {
    this.dead = true;
    for (const p of this.spares.splice(0)) releasePrepared(p);
    if (!this.isolate.isDisposed) {
      try {
        this.isolate.dispose();
      } catch {
        // already gone
      }
    }
    try {
      this.hostRef.release();
    } catch {
      // released with the isolate
    }
  }
}

interface Job {
  subject: string;
  payload: Uint8Array;
  enqueuedAt: number;
  resolve: (o: Outcome) => void;
}

/** The isolates of one workload, the queue in front of them, and the limits' enforcement. */
export class WorkloadPool {
  private readonly slots = new Set<IsolateSlot>();
  private readonly idle: IsolateSlot[] = [];
  private queue: Job[] = [];
  private queueHead = 0;
  private running = 0;
  private replacing = 0;
  private closed = false;
  private ticker?: NodeJS.Timeout;
  private drainWaiters: (() => void)[] = [];

  private constructor(private readonly cfg: PoolConfig) {}

  /** Compiles the workload, builds its isolates and contexts; rejects with a WorkloadLoadError. */
  static async create(cfg: PoolConfig): Promise<WorkloadPool> {
    const pool = new WorkloadPool(cfg);
    // The first isolate finds the source kind and produces the code cache the others start from.
    const first = await IsolateSlot.create(cfg);
    pool.adopt(first);
    const rest = await Promise.allSettled(Array.from({ length: Math.max(0, cfg.concurrency - 1) }, () => IsolateSlot.create(cfg)));
    for (const r of rest) if (r.status === "fulfilled") pool.adopt(r.value);
    const failed = rest.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed) {
      pool.close();
      throw failed.reason;
    }
    pool.startTicker();
    return pool;
  }

  private adopt(slot: IsolateSlot): void {
    this.slots.add(slot);
    this.idle.push(slot);
  }

  get queued(): number {
    return this.queue.length - this.queueHead;
  }

  /** Runs a trigger on an idle isolate, or queues it. Always resolves. */
  submit(subject: string, payload: Uint8Array): Promise<Outcome> {
    if (this.closed) return Promise.resolve(UNAVAILABLE);
    const slot = this.idle.pop();
    if (slot) {
      return new Promise((resolve) => this.dispatch(slot, { subject, payload, enqueuedAt: 0, resolve }));
    }
    if (this.queued >= MAX_QUEUED_TRIGGERS) {
      return Promise.resolve(failure(ErrorCodes.overloaded, `overloaded: ${this.queued} triggers are already waiting`));
    }
    return new Promise((resolve) => this.queue.push({ subject, payload, enqueuedAt: Date.now(), resolve }));
  }

  private dispatch(slot: IsolateSlot, job: Job): void {
    this.running++;
    slot.run(job.subject, job.payload).then((outcome) => {
      this.running--;
      job.resolve(outcome);
      this.release(slot);
    });
  }

  private release(slot: IsolateSlot): void {
    if (slot.dead) {
      this.slots.delete(slot);
      slot.dispose();
      this.replace();
    } else if (this.closed) {
      slot.dispose();
    } else {
      const job = this.nextJob();
      if (job) this.dispatch(slot, job);
      else this.idle.push(slot);
    }
    this.checkDrained();
  }

  private nextJob(): Job | undefined {
    this.expireQueued();
    if (this.queueHead >= this.queue.length) return undefined;
    const job = this.queue[this.queueHead];
    this.queue[this.queueHead++] = undefined as unknown as Job;
    if (this.queueHead > 1024 && this.queueHead * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.queueHead);
      this.queueHead = 0;
    }
    return job;
  }

  /** Triggers that waited longer than their whole deadline are answered without running. */
  private expireQueued(): void {
    const { timeoutMs } = this.cfg.limits;
    const now = Date.now();
    while (this.queueHead < this.queue.length) {
      const job = this.queue[this.queueHead];
      if (now - job.enqueuedAt < timeoutMs) break;
      this.queue[this.queueHead++] = undefined as unknown as Job;
      job.resolve(failure(ErrorCodes.timeout, `timeout: the trigger waited more than ${timeoutMs} ms for a free isolate`));
    }
    if (this.queueHead === this.queue.length && this.queueHead > 0) {
      this.queue = [];
      this.queueHead = 0;
    }
  }

  private replace(delayMs = 0): void {
    if (this.closed) return;
    this.replacing++;
    const attempt = (): void => {
      IsolateSlot.create(this.cfg).then(
        (slot) => {
          this.replacing--;
          if (this.closed) {
            slot.dispose();
            this.checkDrained();
            return;
          }
          this.slots.add(slot);
          this.release(slot);
        },
        (err) => {
          this.replacing--;
          this.cfg.log.error({ err: errorText(err) }, "replacing an isolate failed; retrying");
          this.replace(Math.min(Math.max(delayMs * 2, 100), 5000));
        },
      );
    };
    if (delayMs > 0) setTimeout(attempt, delayMs).unref();
    else attempt();
  }

  private startTicker(): void {
    const { timeoutMs, cpuMs } = this.cfg.limits;
    const cpuLimited = cpuMs < timeoutMs;
    const cpuNs = BigInt(Math.floor(cpuMs)) * 1_000_000n;
    const every = Math.min(100, Math.max(5, Math.floor(Math.min(timeoutMs, cpuMs) / 4)));
    this.ticker = setInterval(() => {
      if (cpuLimited) {
        for (const slot of this.slots) {
          if (slot.busy && !slot.dead && slot.cpuUsedNs() > cpuNs) slot.kill(cpuOutcome(cpuMs));
        }
      }
      if (this.queued > 0) this.expireQueued();
    }, every);
    this.ticker.unref();
  }

  private checkDrained(): void {
    if (this.running === 0 && this.queued === 0 && this.drainWaiters.length > 0) {
      for (const w of this.drainWaiters.splice(0)) w();
    }
  }

  /** Resolves when nothing runs and nothing waits (each trigger is bounded by its deadline). */
  drained(): Promise<void> {
    if (this.running === 0 && this.queued === 0) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  async heapBytes(): Promise<number> {
    const sizes = await Promise.all([...this.slots].map((s) => s.heapBytes()));
    return sizes.reduce((a, b) => a + b, 0);
  }

  /** Disposes every isolate; queued triggers are answered "unavailable", running ones end with it. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.ticker) clearInterval(this.ticker);
    for (let i = this.queueHead; i < this.queue.length; i++) this.queue[i]?.resolve(UNAVAILABLE);
    this.queue = [];
    this.queueHead = 0;
    for (const slot of this.slots) {
      if (slot.busy) slot.kill(UNAVAILABLE);
      else slot.dispose();
    }
    this.slots.clear();
    this.idle.length = 0;
    this.checkDrained();
  }
}
