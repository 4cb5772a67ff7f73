// Monitoring over HTTP with nats-server's endpoint names and JSON field names, so nats-top, Telegraf,
// the Prometheus exporter and Kubernetes probes read it unchanged.

import http from "node:http";
import os from "node:os";
import type { Broker } from "./server.js";
import type { ClientConnection } from "./client.js";
import type { Subscription } from "./sublist.js";
import { SERVER_VERSION } from "./options.js";
import type { JetStream } from "./jetstream/jetstream.js";
import { brokerMetrics } from "./metrics.js";
import { PROMETHEUS_CONTENT_TYPE } from "../util/prometheus.js";
import { closeNow, listenOn } from "../util/listen.js";
import { badTarget, requestUrl } from "../util/request-url.js";

const NS_PER_MS = 1_000_000;

function utf8(latin1: string): string {
  return Buffer.from(latin1, "latin1").toString("utf8");
}

/** "1h2m3s" style, as Go's time.Duration prints (whole seconds are enough here). */
function goDuration(ms: number): string {
  let s = Math.floor(ms / 1000);
  const d = Math.floor(s / 86400);
  s -= d * 86400;
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  return `${d ? `${d}d` : ""}${d || h ? `${h}h` : ""}${d || h || m ? `${m}m` : ""}${s}s`;
}

/** A short duration as Go prints it: "250.123µs", "1.5ms", "0s" (nats-server's connz rtt). */
function goDurationFine(ms: number): string {
  const ns = Math.round(ms * 1e6);
  if (ns === 0) return "0s";
  const trim = (v: number): string => String(Number(v.toFixed(6)));
  if (ns < 1000) return `${ns}ns`;
  if (ns < 1e6) return `${trim(ns / 1e3)}µs`;
  if (ns < 1e9) return `${trim(ns / 1e6)}ms`;
  return `${trim(ns / 1e9)}s`;
}

export class Monitor {
  private server: http.Server | null = null;
  private port = 0;
  private readonly requests: Record<string, number> = {};
  private lastCpu = process.cpuUsage();
  private lastCpuAt = Date.now();

  constructor(
    private readonly broker: Broker,
    private readonly jetstream?: JetStream,
  ) {}

  get httpPort(): number {
    return this.port;
  }

  async listen(host: string, port: number): Promise<void> {
    const server = http.createServer((req, res) => this.handle(req, res));
    this.port = await listenOn(server, port, host);
    this.server = server;
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (server) await closeNow(server);
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = requestUrl(req);
    if (!url) return badTarget(res);
    const path = url.pathname.replace(/\/+$/, "") || "/";
    if (path === "/metrics") {
      this.countRequest(path);
      res.writeHead(200, { "Content-Type": PROMETHEUS_CONTENT_TYPE });
      res.end(brokerMetrics(this.broker, this.jetstream));
      return;
    }
    let body: object;
    let status = 200;
    switch (path) {
      case "/varz":
        body = this.varz();
        break;
      case "/connz":
        body = this.connz(url.searchParams);
        break;
      case "/subsz":
      case "/subscriptionsz":
        body = this.subsz(url.searchParams);
        break;
      case "/healthz":
        body = { status: "ok" };
        break;
      case "/":
        body = { endpoints: ["/varz", "/connz", "/subsz", "/healthz", "/metrics"] };
        break;
      default:
        status = 404;
        body = { error: `unknown endpoint ${path}` };
    }
    if (status !== 404) this.countRequest(path);
    res.writeHead(status, { "Content-Type": "application/json" });
    res.end(JSON.stringify(body, null, 2));
  }

  /** http_req_stats counts the endpoints served only: a path any client makes up must not grow it. */
  private countRequest(path: string): void {
    this.requests[path] = (this.requests[path] ?? 0) + 1;
  }

  private cpuPercent(): number {
    const now = Date.now();
    const usage = process.cpuUsage(this.lastCpu);
    const elapsedUs = (now - this.lastCpuAt) * 1000;
    this.lastCpu = process.cpuUsage();
    this.lastCpuAt = now;
    return elapsedUs > 0 ? Math.round(((usage.user + usage.system) / elapsedUs) * 1000) / 10 : 0;
  }

  varz(): object {
    const b = this.broker;
    const o = b.options;
    const totals = b.totals();
    const now = new Date();
    return {
      server_id: b.serverId,
      server_name: b.name,
      version: SERVER_VERSION,
      proto: 1,
      go: `node${process.versions.node}`,
      host: o.host,
      port: b.port,
      max_connections: o.maxConnections,
      ping_interval: o.pingIntervalMs * NS_PER_MS,
      ping_max: o.maxPingsOut,
      http_host: o.host,
      http_port: this.port,
      auth_timeout: o.authTimeoutMs / 1000,
      max_control_line: o.maxControlLine,
      max_payload: o.maxPayload,
      max_pending: o.maxPending,
      websocket: this.websocketVarz(),
      tls_timeout: 0,
      write_deadline: o.writeDeadlineMs * NS_PER_MS,
      start: b.started.toISOString(),
      now: now.toISOString(),
      uptime: goDuration(now.getTime() - b.started.getTime()),
      mem: process.memoryUsage.rss(),
      cores: os.cpus().length,
      gomaxprocs: 1,
      cpu: this.cpuPercent(),
      connections: b.clients.size,
      total_connections: b.totalConnections,
      routes: 0,
      remotes: 0,
      leafnodes: 0,
      in_msgs: totals.inMsgs,
      out_msgs: totals.outMsgs,
      in_bytes: totals.inBytes,
      out_bytes: totals.outBytes,
      slow_consumers: b.slowConsumers,
      subscriptions: b.sublist.count,
      http_req_stats: { ...this.requests },
      config_load_time: b.started.toISOString(),
    };
  }

  /** nats-server's varz.websocket: empty when off, the listener's settings (zero values left out) when on. */
  private websocketVarz(): object {
    const ws = this.broker.options.websocket;
    if (ws === undefined) return {};
    return {
      host: ws.host ?? this.broker.options.host,
      port: this.broker.wsPort,
      ...(ws.handshakeTimeoutMs !== undefined ? { handshake_timeout: ws.handshakeTimeoutMs * NS_PER_MS } : {}),
      ...(ws.tls === undefined ? { no_tls: true } : {}),
      ...(ws.allowedOrigins?.length ? { allowed_origins: ws.allowedOrigins } : {}),
      ...(ws.sameOrigin ? { same_origin: true } : {}),
      ...(ws.compression ? { compression: true } : {}),
    };
  }

  connz(params: URLSearchParams): object {
    const b = this.broker;
    const offset = Math.max(0, Number(params.get("offset") ?? 0) || 0);
    const limit = Math.max(1, Number(params.get("limit") ?? 1024) || 1024);
    const subsMode = params.get("subs");
    const cidFilter = params.get("cid");
    let clients = [...b.clients.values()];
    if (cidFilter !== null) clients = clients.filter((c) => String(c.cid) === cidFilter);
    const sort = params.get("sort") ?? "cid";
    const sorters: Record<string, (a: ClientConnection, c: ClientConnection) => number> = {
      cid: (a, c) => a.cid - c.cid,
      start: (a, c) => a.start.getTime() - c.start.getTime(),
      subs: (a, c) => c.subs.size - a.subs.size,
      msgs_to: (a, c) => c.outMsgs - a.outMsgs,
      msgs_from: (a, c) => c.inMsgs - a.inMsgs,
      bytes_to: (a, c) => c.outBytes - a.outBytes,
      bytes_from: (a, c) => c.inBytes - a.inBytes,
      last: (a, c) => c.lastActivity - a.lastActivity,
      idle: (a, c) => a.lastActivity - c.lastActivity,
      uptime: (a, c) => a.start.getTime() - c.start.getTime(),
    };
    clients.sort(sorters[sort] ?? sorters.cid);
    const now = Date.now();
    const page = clients.slice(offset, offset + limit).map((c) => {
      const info: Record<string, unknown> = {
        cid: c.cid,
        kind: "Client",
        type: c.transport.kind === "websocket" ? "websocket" : "nats",
        ip: c.ip,
        port: c.port,
        start: c.start.toISOString(),
        last_activity: new Date(c.lastActivity).toISOString(),
        rtt: goDurationFine(c.rttMs),
        uptime: goDuration(now - c.start.getTime()),
        idle: goDuration(now - c.lastActivity),
        pending_bytes: c.transport.backlog + c.out.pending,
        in_msgs: c.inMsgs,
        out_msgs: c.outMsgs,
        in_bytes: c.inBytes,
        out_bytes: c.outBytes,
        subscriptions: c.subs.size,
        name: c.opts.name,
        lang: c.opts.lang,
        version: c.opts.version,
      };
      if (c.opts.user) info.authorized_user = c.opts.user;
      if (subsMode === "1" || subsMode === "true") {
        info.subscriptions_list = [...c.subs.values()].map((s) => utf8(s.subject));
      } else if (subsMode === "detail") {
        info.subscriptions_list_detail = [...c.subs.values()].map(subscriptionDetail);
      }
      return info;
    });
    return {
      server_id: b.serverId,
      now: new Date(now).toISOString(),
      num_connections: page.length,
      total: clients.length,
      offset,
      limit,
      connections: page,
    };
  }

  subsz(params: URLSearchParams): object {
    const sl = this.broker.sublist;
    const body: Record<string, unknown> = {
      server_id: this.broker.serverId,
      now: new Date().toISOString(),
      num_subscriptions: sl.count,
      num_cache: sl.cacheSize(),
      num_inserts: sl.inserts,
      num_removes: sl.removes,
      num_matches: sl.matches,
      cache_hit_rate: sl.matches > 0 ? sl.cacheHits / sl.matches : 0,
      max_fanout: 0,
      avg_fanout: 0,
    };
    const subsMode = params.get("subs");
    if (subsMode === "1" || subsMode === "true" || subsMode === "detail") {
      const test = params.get("test");
      let subs = sl.all();
      if (test) {
        const matched = sl.match(Buffer.from(test, "utf8").toString("latin1"));
        const set = new Set([...matched.plain, ...matched.queues.flat()]);
        subs = subs.filter((s) => set.has(s));
      }
      const offset = Math.max(0, Number(params.get("offset") ?? 0) || 0);
      const limit = Math.max(1, Number(params.get("limit") ?? 1024) || 1024);
      body.total = subs.length;
      body.offset = offset;
      body.limit = limit;
      body.subscriptions_list = subs.slice(offset, offset + limit).map(subscriptionDetail);
    }
    return body;
  }
}

/** One subscription as nats-server's /connz?subs=detail and /subsz?subs=1 show it (cid 0: the server's own). */
function subscriptionDetail(s: Subscription): Record<string, unknown> {
  return {
    account: "$G",
    subject: utf8(s.subject),
    ...(s.queue !== undefined ? { qgroup: utf8(s.queue) } : {}),
    sid: s.sid,
    msgs: s.delivered,
    ...(s.max > 0 ? { max: s.max } : {}),
    cid: (s.owner as ClientConnection | null)?.cid ?? 0,
  };
}
