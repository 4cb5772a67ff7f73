// A JavaScript service across its runs (service-run.ts): the first run at deploy, a new run after one
// ends (a loop, its memory limit, a throw from start) as its restart policy says, with the same
// semantics as an OCI container's --restart (never, on-failure[:N], always[:N]; backoff from 100 ms
// doubling to 30 s, reset by a run of 10 s), reported to the node as WorkloadEvents ("exited" with the
// reason and message, "restarted"); stop(ctx) with a deadline on undeploy; and what `nex workload info`
// shows. A service's run only ends on a failure, so on-failure and always behave alike.

import type { Logger } from "pino";
import type { ServiceInfo } from "../../../protocol/control.js";
import type { RestartPolicy } from "../../../protocol/deploy-request.js";
import type { Served } from "../../host/runtime-host-child.js";
import type { TriggerPool } from "../../host/hosted-workload.js";
import { ErrorCodes, failure, type Outcome } from "../../host/outcome.js";
import type { ExitReason, FunctionStats, WorkloadEvent } from "../../types.js";
import { ServiceRun, type ServiceRunConfig } from "./service-run.js";

const RESTART_BASE_MS = 100;
const RESTART_MAX_MS = 30_000;
/** A run that lasted this long starts the backoff (and max_retries) from scratch. */
const HEALTHY_AFTER_MS = 10_000;
/** stop(ctx) gets at most this long (and at most the workload's timeout). */
export const STOP_DEADLINE_MS = 5_000;

export interface ServiceConfig extends Omit<ServiceRunConfig, "onEnd"> {
  restart: RestartPolicy;
  report(event: WorkloadEvent): void;
}

export class JsService implements Served {
  private run?: ServiceRun;
  private state: ServiceInfo["state"] = "starting";
  private restarts = 0;
  private restartsInARow = 0;
  private runStartedAt = 0;
  private restartTimer?: NodeJS.Timeout;
  private lastExit?: string;
  private stopped = false;
  private stopping?: Promise<void>;
  /** Counts of the runs that ended. */
  private done = { requests: 0, failures: 0, totalMs: 0, dropped: 0 };
  private lastMs = 0;
  private readonly log: Logger;

  private constructor(private readonly cfg: ServiceConfig) {
    this.log = cfg.log;
  }

  /**
   * Loads the service and runs start(ctx). Rejects when the code does not load (a syntax error, no
   * start): the deploy fails. A start that throws or loops ends the first run like any other, and the
   * restart policy applies; the deploy succeeds.
   */
  static async start(cfg: ServiceConfig): Promise<JsService> {
    const service = new JsService(cfg);
    await service.begin(await service.newRun());
    return service;
  }

  /** A run whose end (onEnd) is told as its own. */
  private async newRun(): Promise<ServiceRun> {
    let self: ServiceRun | undefined;
    const run = await ServiceRun.create({
      ...this.cfg,
      onEnd: (reason, message) => {
        if (self) this.ended(self, reason, message);
      },
    });
    self = run;
    return run;
  }

  /** Makes `run` the current one and runs its start(ctx); true when start succeeded. */
  private async begin(run: ServiceRun): Promise<boolean> {
    if (this.stopped) {
      run.dispose(); // start never ran, so neither does stop
      return false;
    }
    this.run = run;
    this.runStartedAt = Date.now();
    this.state = "running";
    const o = await run.start();
    return o.ok && this.run === run;
  }

  private ended(run: ServiceRun, reason: ExitReason, message: string): void {
    if (this.run !== run) return;
    this.keepCounts(run);
    this.run = undefined;
    this.afterRun(reason, message);
  }

  /** Reports the end of a run and, when the restart policy asks and retries are left, schedules the next. */
  private afterRun(reason: ExitReason, message: string): void {
    this.lastExit = `${reason}: ${message}`;
    if (this.stopped) return;
    const restart = this.cfg.restart;
    if (Date.now() - this.runStartedAt >= HEALTHY_AFTER_MS) this.restartsInARow = 0;
    const wanted = restart.policy !== "never";
    const retriesLeft = restart.max_retries === undefined || this.restartsInARow < restart.max_retries;
    const delay = wanted && retriesLeft ? Math.min(RESTART_BASE_MS * 2 ** this.restartsInARow, RESTART_MAX_MS) : null;
    this.state = delay === null ? "failed" : "restarting";
    this.log.warn({ reason, err: message, restart_in_ms: delay }, "service run ended");
    this.cfg.hooks.log("stderr", `[nex] the service's run ended (${reason}): ${message}${delay === null ? "; it stays down" : `; restarting in ${delay} ms`}`);
    this.cfg.report({ type: "exited", reason, message, restarts: this.restarts, restartInMs: delay });
    if (delay !== null) this.restartTimer = setTimeout(() => void this.restart(), delay);
  }

  private async restart(): Promise<void> {
    this.restartTimer = undefined;
    if (this.stopped) return;
    this.restartsInARow++;
    this.restarts++;
    let run: ServiceRun;
    try {
      run = await this.newRun();
    } catch (err) {
      // It loaded before, so this is rare (memory while loading): a run that ended at once.
      this.runStartedAt = Date.now();
      this.afterRun("crashed", (err as Error).message);
      return;
    }
    if (await this.begin(run)) {
      this.log.info({ restarts: this.restarts }, "service restarted");
      this.cfg.report({ type: "restarted", restarts: this.restarts });
    }
  }

  private readonly counted = new WeakSet<ServiceRun>();

  private keepCounts(run: ServiceRun): void {
    if (this.counted.has(run)) return;
    this.counted.add(run);
    this.done.requests += run.requests;
    this.done.failures += run.failures;
    this.done.totalMs += run.totalMs;
    this.done.dropped += run.dropped;
    if (run.lastMs) this.lastMs = run.lastMs;
  }

  /** The trigger pool for the service's trigger subjects: handle(subject, payload) in the current run. */
  triggers(): TriggerPool {
    return {
      submit: (subject, payload): Promise<Outcome> =>
        this.run && !this.run.ended
          ? this.run.trigger(subject, payload)
          : Promise.resolve(failure(ErrorCodes.overloaded, `unavailable: the service is ${this.state === "failed" ? "down" : this.state}`)),
      drained: () => Promise.resolve(),
      close: () => undefined,
      heapBytes: () => Promise.resolve(0),
    };
  }

  /** stop(ctx) within its deadline, then the isolate goes; no restart follows. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.stopped = true;
      this.state = "stopping";
      clearTimeout(this.restartTimer);
      const run = this.run;
      if (!run) return;
      await run.stop(Math.min(STOP_DEADLINE_MS, this.cfg.limits.timeoutMs));
      this.keepCounts(run);
      this.run = undefined;
    })();
    return this.stopping;
  }

  async stats(): Promise<FunctionStats> {
    const run = this.run;
    const usage = run ? await run.usage() : { memoryBytes: 0, cpuMs: 0, subscriptions: [], timers: 0, hostTimers: 0 };
    const live = run && !this.counted.has(run) ? run : undefined;
    const requests = this.done.requests + (live?.requests ?? 0);
    const totalMs = this.done.totalMs + (live?.totalMs ?? 0);
    return {
      triggers: requests,
      failures: this.done.failures + (live?.failures ?? 0),
      meanMs: requests === 0 ? 0 : totalMs / requests,
      lastMs: run?.lastMs || this.lastMs,
      memoryBytes: usage.memoryBytes,
      service: {
        state: this.state,
        restarts: this.restarts,
        subscriptions: usage.subscriptions,
        timers: usage.timers,
        host_timers: usage.hostTimers,
        claim_writes_queued: this.cfg.subjects.queuedWrites,
        cpu_ms: usage.cpuMs,
        dropped: this.done.dropped + (live?.dropped ?? 0),
        ...(this.lastExit ? { last_exit: this.lastExit } : {}),
      },
    };
  }
}
