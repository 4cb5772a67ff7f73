// The node's GET /metrics (Prometheus text format) on a port of its own (--metrics-port), apart from the
// HTTP gateway so no workload route can take the path. Every scrape asks the runtimes for each
// workload's counts (runtime hosts answer over their IPC channel), so triggers do no work for metrics.

import http from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "pino";
import type { WorkloadSummary } from "../protocol/control.js";
import { Exposition, PROMETHEUS_CONTENT_TYPE, type HistogramSample, type Sample } from "../util/prometheus.js";
import type { NodeAgent } from "./node.js";
import { closeNow, listenOn } from "../util/listen.js";
import { badTarget, requestUrl } from "../util/request-url.js";

function workloadLabels(w: WorkloadSummary): Record<string, string> {
  return { workload_id: w.id, name: w.name, namespace: w.namespace, type: w.type };
}

/** The node's metrics text: the node itself, then one series per workload (and per code, service, outcome). */
export async function nodeMetrics(node: NodeAgent): Promise<string> {
  const info = node.ping();
  const workloads = await node.allSummaries();
  const each = (value: (w: WorkloadSummary) => number | undefined): Sample[] =>
    workloads.flatMap((w) => {
      const v = value(w);
      return v === undefined ? [] : [{ labels: workloadLabels(w), value: v }];
    });
  const failures: Sample[] = [];
  const hostCalls: Sample[] = [];
  const durations: HistogramSample[] = [];
  for (const w of workloads) {
    const labels = workloadLabels(w);
    for (const [code, n] of Object.entries(w.failures_by_code ?? {})) failures.push({ labels: { ...labels, code }, value: n });
    for (const [service, outcomes] of Object.entries(w.host_calls ?? {})) {
      for (const [outcome, n] of Object.entries(outcomes)) hostCalls.push({ labels: { ...labels, service, outcome }, value: n });
    }
    const d = w.durations;
    if (d) durations.push({ labels, histogram: { boundsMs: d.le_ms, counts: d.counts, sumMs: d.sum_ms } });
  }
  return new Exposition()
    .gauge("nex_node_info", "The node: its id, name and version (always 1).", [{ labels: { node_id: info.node_id, name: info.name, version: info.version }, value: 1 }])
    .gauge("nex_node_uptime_seconds", "Seconds since the node started.", [{ value: info.uptime_s }])
    .gauge("nex_node_lame_duck", "1 while the node is in lame duck mode.", [{ value: info.lame_duck ? 1 : 0 }])
    .gauge("nex_node_workloads", "Workloads the node runs.", [{ value: workloads.length }])
    .counter("nex_workload_triggers_total", "Triggers a function answered (or failed), since its runtime host started.", each((w) => w.triggers))
    .counter("nex_workload_failures_total", "Triggers that failed, by error code (the Nats-Service-Error-Code of the reply).", failures)
    .histogramSeconds("nex_workload_trigger_duration_seconds", "Time from a trigger's arrival in the runtime host to its reply.", durations)
    .gauge("nex_workload_memory_bytes", "Memory the workload holds: its isolates or wasm workers, or its container.", each((w) => w.memory_bytes ?? w.container?.memory_bytes))
    .counter("nex_workload_restarts_total", "Times the workload came back: its runtime host restarted, or its service or container ran again.", each((w) => w.restarts))
    .counter("nex_workload_host_calls_total", "Host-service calls, by service and outcome (ok, or the host error code).", hostCalls)
    .text();
}

/** The HTTP listener of GET /metrics. */
export class MetricsServer {
  private server: http.Server | null = null;
  private port = 0;

  constructor(
    private readonly node: NodeAgent,
    private readonly log: Logger,
  ) {}

  get url(): string {
    const a = this.server?.address() as AddressInfo | null;
    const host = a?.family === "IPv6" ? `[${a.address}]` : a?.address;
    return `http://${host}:${this.port}/metrics`;
  }

  async listen(host: string, port: number): Promise<void> {
    const server = http.createServer((req, res) => void this.handle(req, res));
    this.port = await listenOn(server, port, host);
    this.server = server;
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = requestUrl(req);
    if (!url) return badTarget(res);
    if (url.pathname !== "/metrics") {
      res.writeHead(404, { "Content-Type": "text/plain" });
      res.end("not found: the node serves GET /metrics\n");
      return;
    }
    try {
      const body = await nodeMetrics(this.node);
      res.writeHead(200, { "Content-Type": PROMETHEUS_CONTENT_TYPE });
      res.end(body);
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, "metrics scrape failed");
      res.writeHead(500, { "Content-Type": "text/plain" });
      res.end("metrics unavailable\n");
    }
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (server) await closeNow(server);
  }
}
