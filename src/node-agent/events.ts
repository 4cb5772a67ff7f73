// Lifecycle events as CloudEvents 1.0 JSON on $NEX.FEED.<ns>.events.<type>, and workload log lines on
// $NEX.FEED.<ns>.logs.<workload>.<stream>.

import { randomUUID } from "node:crypto";
import type { NatsConnection } from "@nats-io/transport-node";
import { ControlSubjects } from "../protocol/control.js";

export type EventType =
  | "node_started"
  | "node_stopped"
  | "node_lame_duck"
  | "workload_deployed"
  | "workload_started"
  | "workload_stopped"
  | "workload_failed"
  | "trigger_failed"
  | "workload_exited"
  | "workload_restarted"
  | "runtime_restarted";

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

export class EventPublisher {
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
    if (!this.nc.isClosed()) this.nc.publish(ControlSubjects.logs(namespace, workloadId, stream), line);
  }
}
