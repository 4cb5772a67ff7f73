// One oci workload's container from start to removal: its logs (attached before every start, so a
// container that exits at once loses no line), the watch for its exit, restarts with backoff when the
// restart policy asks, and the stop (SIGTERM, SIGKILL after the grace period, remove).

import { setTimeout as sleep } from "node:timers/promises";
import type Docker from "dockerode";
import type { Logger } from "pino";
import type { ContainerInfo } from "../../protocol/control.js";
import type { ContainerSpec, ExitReason, RuntimeObserver } from "../types.js";
import { settleWithin } from "../../util/settle-within.js";
import { engineMessage, statusCode } from "./engine.js";
import { lineWriter } from "./log-lines.js";

const RESTART_BASE_MS = 100;
const RESTART_MAX_MS = 30_000;
/** A container that ran this long before exiting starts the backoff (and max_retries) from scratch. */
const HEALTHY_AFTER_MS = 10_000;
/** After an exit, how long the last log lines may take to arrive before the exit is reported. */
const LOG_DRAIN_MS = 2_000;
/** While the engine does not answer, how often the watch looks again (doubling up to this). */
const REWATCH_MAX_MS = 10_000;

export interface ContainerWorkloadOptions {
  docker: Docker;
  observer: RuntimeObserver;
  log: Logger;
  /** Seconds between SIGTERM and SIGKILL when stopping. */
  stopGraceS: number;
}

export class ContainerWorkload {
  /** Restarts since deploy. */
  private restarts = 0;
  /** Restarts since the container last stayed up for HEALTHY_AFTER_MS: the backoff exponent. */
  private restartsInARow = 0;
  private startedAt = 0;
  /** What the engine would say, kept here so listings need not ask it: created, running, restarting, exited. */
  private state = "created";
  private lastExit: { exitCode: number; oomKilled: boolean } | undefined;
  private stopping = false;
  private restartTimer: NodeJS.Timeout | undefined;
  private logsEnded: Promise<void> = Promise.resolve();

  constructor(
    private readonly o: ContainerWorkloadOptions,
    readonly spec: ContainerSpec,
    readonly container: Docker.Container,
  ) {}

  /** Starts the created (or exited) container and watches it. */
  async start(): Promise<void> {
    await this.attachLogs();
    await this.container.start();
    this.running();
  }

  /** Takes over a running container that a previous run of the node left behind. */
  async adopt(): Promise<void> {
    await this.attachLogs();
    this.running();
  }

  private running(): void {
    this.startedAt = Date.now();
    this.state = "running";
    void this.watch();
  }

  /** SIGTERM, SIGKILL after the grace period, then remove; a container already gone is fine. */
  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    try {
      await this.container.stop({ t: this.o.stopGraceS });
    } catch (err) {
      // 304: not running; 404: already removed.
      if (statusCode(err) !== 304 && statusCode(err) !== 404) this.o.log.warn({ err: engineMessage(err) }, "container stop failed; removing it by force");
    }
    try {
      await this.container.remove({ force: true, v: true });
    } catch (err) {
      if (statusCode(err) !== 404) throw new Error(`cannot remove container ${this.container.id.slice(0, 12)}: ${engineMessage(err)}`);
    }
    await settleWithin(this.logsEnded, LOG_DRAIN_MS);
  }

  /** The container as the node last saw it; no engine call. */
  info(): ContainerInfo {
    const info: ContainerInfo = { id: this.container.id, image: this.spec.image ?? "", state: this.state, restarts: this.restarts };
    return this.lastExit ? { ...info, exit_code: this.lastExit.exitCode, oom_killed: this.lastExit.oomKilled } : info;
  }

  /** CPU, memory and processes of the running container (nothing when it is not running). */
  async usage(): Promise<Partial<ContainerInfo>> {
    if (this.state !== "running") return {};
    // one-shot: the current counters, without waiting a second for a second sample.
    const stats = await this.container.stats({ stream: false, "one-shot": true });
    const memory = stats.memory_stats;
    // Like `docker stats`: page cache that can be reclaimed is not the workload's memory.
    const inactive = memory.stats?.total_inactive_file ?? memory.stats?.inactive_file ?? 0;
    return {
      cpu_seconds: (stats.cpu_stats?.cpu_usage?.total_usage ?? 0) / 1e9,
      memory_bytes: Math.max(0, (memory.usage ?? 0) - inactive),
      memory_limit_bytes: memory.limit,
      pids: stats.pids_stats?.current,
    };
  }

  /** stdout and stderr of the next run, as lines to the observer, until the container stops. */
  private async attachLogs(): Promise<void> {
    const stream = await this.container.attach({ stream: true, stdout: true, stderr: true, logs: false });
    const id = this.spec.id;
    const stdout = lineWriter((line) => this.o.observer.log(id, "stdout", line));
    const stderr = lineWriter((line) => this.o.observer.log(id, "stderr", line));
    this.o.docker.modem.demuxStream(stream, stdout, stderr);
    this.logsEnded = new Promise((resolve) => {
      const end = (): void => {
        stdout.end();
        stderr.end();
        resolve();
      };
      stream.once("end", end);
      stream.once("close", end);
      stream.once("error", end);
    });
  }

  /** Waits for the container to exit; an engine that stops answering is asked again, with backoff. */
  private async watch(): Promise<void> {
    let exitCode: number | undefined;
    for (let attempt = 0; exitCode === undefined; attempt++) {
      try {
        exitCode = (await this.container.wait()).StatusCode as number;
      } catch (err) {
        if (this.stopping) return;
        if (statusCode(err) === 404) {
          this.o.log.warn("container was removed outside nex; the workload stays down");
          this.state = "removed";
          this.report("crashed", -1, null);
          return;
        }
        this.o.log.warn({ err: engineMessage(err) }, "lost the watch on the container; looking again");
        await sleep(Math.min(500 * 2 ** attempt, REWATCH_MAX_MS));
        if (this.stopping) return;
      }
    }
    if (this.stopping) return;
    await settleWithin(this.logsEnded, LOG_DRAIN_MS);
    const oomKilled = await this.container
      .inspect()
      .then((i) => i.State.OOMKilled)
      .catch(() => false);
    if (this.stopping) return;
    this.exited(oomKilled ? "oom_killed" : exitCode === 0 ? "exited" : "crashed", exitCode);
  }

  /** Reports the exit and, when the restart policy asks and retries are left, schedules the restart. */
  private exited(reason: ExitReason, exitCode: number): void {
    this.lastExit = { exitCode, oomKilled: reason === "oom_killed" };
    const restart = this.spec.container.restart;
    if (Date.now() - this.startedAt >= HEALTHY_AFTER_MS) this.restartsInARow = 0;
    const wanted = restart.policy === "always" || (restart.policy === "on-failure" && reason !== "exited");
    const retriesLeft = restart.max_retries === undefined || this.restartsInARow < restart.max_retries;
    const delay = wanted && retriesLeft ? Math.min(RESTART_BASE_MS * 2 ** this.restartsInARow, RESTART_MAX_MS) : null;
    this.o.log.info({ reason, exit_code: exitCode, restart_in_ms: delay }, "container exited");
    this.state = delay === null ? "exited" : "restarting";
    this.report(reason, exitCode, delay);
    if (delay !== null) this.restartTimer = setTimeout(() => void this.restart(), delay);
  }

  private report(reason: ExitReason, exitCode: number, restartInMs: number | null): void {
    this.o.observer.workloadEvent(this.spec.id, { type: "exited", containerId: this.container.id, reason, exitCode, restarts: this.restarts, restartInMs });
  }

  private async restart(): Promise<void> {
    if (this.stopping) return;
    this.restartsInARow++;
    this.restarts++;
    try {
      await this.start();
    } catch (err) {
      if (this.stopping) return;
      // A failed start counts as another crash that ran for no time: the same backoff and retry budget apply.
      this.startedAt = Date.now();
      this.o.log.warn({ err: engineMessage(err) }, "container restart failed");
      this.exited("crashed", -1);
      return;
    }
    if (this.stopping) return;
    this.o.observer.workloadEvent(this.spec.id, { type: "restarted", containerId: this.container.id, restarts: this.restarts });
  }
}
