// Lifecycle events as CloudEvents 1.0 JSON on $NEX.FEED.<ns>.events.<type>, and workload log lines on
// $NEX.FEED.<ns>.logs.<workload>.<stream>. Log lines and trigger_failed events are rate-limited per
// workload (feed-limiter.ts); what is dropped is reported as a stderr line and a feed_dropped event.

import { randomUUID } from "node:crypto";
import type { NatsConnection } from "@nats-io/transport-node";
import { ControlSubjects } from "../protocol/control.js";
import { FAILURE_EVENT_RATE, FeedLimiter, LOG_RATE } from "./feed-limiter.js";

export type EventType =
  | "node_started"
  | "node_stopped"
  | "node_lame_duck"
  | "workload_preparing"
  | "workload_deployed"
  | "workload_started"
  | "workload_stopped"
  | "workload_moved"
  | "workload_failed"
  | "trigger_failed"
  | "workload_exited"
  | "workload_restarted"
  | "runtime_restarted"
  | "feed_dropped";

export interface CloudEvent<T> {
  specversion: "1.0";
  id: string;
  source: string;
  type: string;
  time: string;
  datacontenttype: "application/json";
  namespace: string;
  data: T;
}

/** Access-log lines go out at least this often, and at most this many in one message. */
const ACCESS_FLUSH_MS = 100;
const ACCESS_BATCH = 256;

export class EventPublisher {
  private readonly logLimiter = new FeedLimiter(LOG_RATE, (key, dropped) => {
    const [namespace, workloadId] = key.split(" ");
    this.publishLog(namespace, workloadId, "stderr", `[nex] ${dropped} log lines of this workload were dropped (limit: ${LOG_RATE.perSecond} lines/s, ${LOG_RATE.bytesPerSecond / 1024} KiB/s)`);
    this.emit(namespace, "feed_dropped", { workload_id: workloadId, feed: "logs", dropped });
  });
  private readonly failureLimiter = new FeedLimiter(FAILURE_EVENT_RATE, (key, dropped) => {
    const [namespace, workloadId] = key.split(" ");
    this.emit(namespace, "feed_dropped", { workload_id: workloadId, feed: "trigger_failed", dropped });
  });

  private readonly access = new Map<string, string[]>();
  private accessLines = 0;
  private accessTimer?: NodeJS.Timeout;

  constructor(
    private readonly nc: NatsConnection,
    private readonly nodeId: string,
  ) {}

  emit<T extends object>(namespace: string, type: EventType, data: T): void {
    const event: CloudEvent<T> = {
      specversion: "1.0",
      id: randomUUID(),
      source: `nex/node/${this.nodeId}`,
      type: `io.nats.nex.v1.${type}`,
      time: new Date().toISOString(),
      datacontenttype: "application/json",
      namespace,
      data,
    };
    if (!this.nc.isClosed()) this.nc.publish(ControlSubjects.events(namespace, type), JSON.stringify(event));
  }

  log(namespace: string, workloadId: string, stream: "stdout" | "stderr", line: string): void {
    if (this.logLimiter.admit(`${namespace} ${workloadId}`, line.length)) this.publishLog(namespace, workloadId, stream, line);
  }

  /** A trigger_failed event, within the workload's rate of them. */
  triggerFailed<T extends { workload_id: string }>(namespace: string, data: T): void {
    if (this.failureLimiter.admit(`${namespace} ${data.workload_id}`, 256)) this.emit(namespace, "trigger_failed", data);
  }

  /**
   * One HTTP request the gateway answered (or refused), on $NEX.FEED.<ns>.http: the access log. Lines are
   * sent together, one JSON object a line, every ACCESS_FLUSH_MS or ACCESS_BATCH lines, whichever is first,
   * so a busy gateway publishes a message per batch, not per request.
   */
  httpAccess(namespace: string, entry: object): void {
    const line = JSON.stringify(entry);
    const pending = this.access.get(namespace);
    if (pending) pending.push(line);
    else this.access.set(namespace, [line]);
    if (++this.accessLines >= ACCESS_BATCH) this.flushAccess();
    else this.accessTimer ??= setTimeout(() => this.flushAccess(), ACCESS_FLUSH_MS);
  }

  private flushAccess(): void {
    if (this.accessTimer) clearTimeout(this.accessTimer);
    this.accessTimer = undefined;
    this.accessLines = 0;
    const batches = [...this.access];
    this.access.clear();
    if (this.nc.isClosed()) return;
    for (const [namespace, lines] of batches) this.nc.publish(ControlSubjects.httpAccess(namespace), lines.join("\n"));
  }

  /** A workload is gone: reports what it dropped last and frees its budgets. */
  forget(namespace: string, workloadId: string): void {
    this.logLimiter.forget(`${namespace} ${workloadId}`);
    this.failureLimiter.forget(`${namespace} ${workloadId}`);
  }

  close(): void {
    this.flushAccess();
    this.logLimiter.close();
    this.failureLimiter.close();
  }

  private publishLog(namespace: string, workloadId: string, stream: "stdout" | "stderr", line: string): void {
    if (!this.nc.isClosed()) this.nc.publish(ControlSubjects.logs(namespace, workloadId, stream), line);
  }
}
