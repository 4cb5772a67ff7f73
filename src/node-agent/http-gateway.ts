// The node's HTTP gateway (`nex node up --web-port`): turns each web request into one NATS request to the
// workload whose route matches (longest prefix; routes of every node, http-routes.ts) and the reply into
// the response. The mapping is in protocol/http.ts and the README ("HTTP triggers").
//
// What it bounds: requests in flight (503 past the cap, and past a route's share of it: half, so one slow
// route cannot take every tenant's routes down with it), header size (431, Node's parser), the time to
// receive the headers (408: slowloris) and the whole request, the body (413 over what fits in one NATS
// message), the wait for the reply (504). Errors from the workload become a short status body, never
// its message (which may carry a stack). Every request goes to the access feed with status and duration.
// Replies come back through reply-mux.ts, not nc.request(): a reply whose headers NATS' client
// cannot parse must cost that one request (502), not the node's connection.

import http from "node:http";
import type { AddressInfo } from "node:net";
import { headers as natsHeaders, type MsgHdrs, type NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "pino";
import { HttpHeaders, methodAllowed, reservedHeader } from "../protocol/http.js";
import type { HttpRoutes, ServedRoute } from "./http-routes.js";
import { ReplyMux, type ReplyOutcome } from "./reply-mux.js";
import { StaticFiles } from "./static-files.js";
import type { GatewayOptions } from "./gateway-options.js";
import { listenOn } from "../util/listen.js";

export interface GatewayHost {
  nc: NatsConnection;
  routes: () => HttpRoutes | null;
  access: (namespace: string, entry: object) => void;
  nodeId: string;
  log: Logger;
}

const STATUS_TEXT = http.STATUS_CODES;
const EMPTY = new Uint8Array(0);

export class HttpGateway {
  private server?: http.Server;
  private inFlight = 0;
  /**
   * Requests in flight by namespace, each at most namespaceMaxInFlight: a tenant's slow routes (or a
   * client holding them) cannot take every slot; counted by route, two slow routes of one tenant could.
   */
  private readonly namespaceInFlight = new Map<string, number>();
  private readonly namespaceMaxInFlight: number;
  private readonly staticFiles: StaticFiles;
  private readonly replies: ReplyMux;
  url = "";

  constructor(
    private readonly o: GatewayOptions,
    private readonly host: GatewayHost,
  ) {
    this.staticFiles = new StaticFiles(host.nc);
    const inboxPrefix = (host.nc as { options?: { inboxPrefix?: string } }).options?.inboxPrefix;
    this.replies = new ReplyMux(host.nc, o.replyTimeoutMs, inboxPrefix);
    this.namespaceMaxInFlight = namespaceShare(o.maxInFlight);
  }

  async start(): Promise<string> {
    const o = this.o;
    const server = http.createServer(
      {
        maxHeaderSize: o.maxHeaderBytes,
        headersTimeout: o.headersTimeoutMs,
        requestTimeout: o.requestTimeoutMs,
        // Node checks the two timeouts on this interval: often enough for the header timeout to hold.
        connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(o.headersTimeoutMs / 4))),
        keepAliveTimeout: 5_000,
      },
      (req, res) => this.handle(req, res),
    );
    server.on("clientError", (err: NodeJS.ErrnoException, socket) => this.clientError(err, socket));
    await listenOn(server, o.port, o.host);
    this.server = server;
    const address = server.address() as AddressInfo;
    const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
    this.url = `http://${host}:${address.port}`;
    return this.url;
  }

  async close(): Promise<void> {
    const server = this.server;
    if (server) {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
        setTimeout(() => server.closeAllConnections(), 2_000).unref();
      });
    }
    // After the server: requests still in flight get their replies while it closes.
    this.replies.close();
  }

  /** What Node's parser refused (bad request line, headers too large, a header timeout): logged, answered as Node would. */
  private clientError(err: NodeJS.ErrnoException, socket: import("node:stream").Duplex): void {
    const status = err.code === "HPE_HEADER_OVERFLOW" ? 431 : err.code === "ERR_HTTP_REQUEST_TIMEOUT" ? 408 : 400;
    this.host.access("system", { node_id: this.host.nodeId, status, error: err.code ?? "bad request", ms: 0 });
    if (socket.writable && !(socket as { _httpMessage?: unknown })._httpMessage) {
      socket.end(`HTTP/1.1 ${status} ${STATUS_TEXT[status]}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    } else socket.destroy();
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const started = performance.now();
    let route: ServedRoute | undefined;
    let done = false;
    /** The namespace whose share this request holds, if it got that far. */
    let counted: string | undefined;
    const release = (): void => {
      this.inFlight--;
      if (counted === undefined) return;
      const n = (this.namespaceInFlight.get(counted) ?? 1) - 1;
      if (n <= 0) this.namespaceInFlight.delete(counted);
      else this.namespaceInFlight.set(counted, n);
      counted = undefined;
    };
    const method = req.method ?? "GET";
    const rawUrl = req.url ?? "/";
    const q = rawUrl.indexOf("?");
    const path = q === -1 ? rawUrl : rawUrl.slice(0, q);
    const finish = (status: number, headers: http.OutgoingHttpHeaders, body: Uint8Array | string, close = false): void => {
      if (done) return;
      done = true;
      release();
      const length = typeof body === "string" ? Buffer.byteLength(body) : body.byteLength;
      try {
        if (close) headers.connection = "close";
        res.writeHead(status, status === 204 || status === 304 ? headers : { ...headers, "content-length": length });
        res.end(body);
      } catch (err) {
        // A workload's header that Node refuses (a bad name or value).
        this.host.log.debug({ err: (err as Error).message }, "http response refused");
        if (!res.headersSent) {
          res.removeHeader("content-length");
          status = 502;
          res.writeHead(502, { "content-type": "text/plain; charset=utf-8", "content-length": 16 }).end("502 Bad Gateway\n");
        } else res.destroy();
      }
      const entry = {
        node_id: this.host.nodeId,
        method,
        host: req.headers.host,
        path,
        status,
        ms: Math.round((performance.now() - started) * 1000) / 1000,
        ...(route ? { route: route.route.path, workload: route.name } : {}),
      };
      this.host.access(route?.namespace ?? "system", entry);
    };
    const plain = (status: number, extra: http.OutgoingHttpHeaders = {}, close = false): void =>
      finish(status, { "content-type": "text/plain; charset=utf-8", ...extra }, `${status} ${STATUS_TEXT[status] ?? ""}\n`, close);

    this.inFlight++;
    res.on("close", () => {
      if (!done) {
        done = true;
        release();
      }
    });
    if (this.inFlight > this.o.maxInFlight) return plain(503, { "retry-after": "1" });
    if (!path.startsWith("/")) return plain(400);
    if (path.split("/").some((s) => s === "." || s === ".." || /^%2e(%2e|\.)?$|^\.%2e$/i.test(s))) return plain(400);
    const hostHeader = req.headers.host;
    // The Host header goes into the URL the workload sees: `a.com:1/admin#` would make its path /admin.
    if (hostHeader !== undefined && !HOST_HEADER.test(hostHeader)) return plain(400);
    const host = hostName(hostHeader);
    route = this.host.routes()?.match(host, path);
    if (!route) return plain(404);
    const held = this.namespaceInFlight.get(route.namespace) ?? 0;
    if (held >= this.namespaceMaxInFlight) return plain(503, { "retry-after": "1" });
    this.namespaceInFlight.set(route.namespace, held + 1);
    counted = route.namespace;
    if (route.static) {
      // Static assets: served from the object store by this gateway, no workload in the path.
      if (method !== "GET" && method !== "HEAD") return plain(405, { allow: "GET, HEAD" });
      const rest = route.route.path === "/" ? path : path.slice(route.route.path.length);
      const files = route.static.files;
      const prefix = route.route.path === "/" ? "" : route.route.path;
      req.resume();
      this.staticFiles.serve(files, prefix, rest, q === -1 ? "" : rawUrl.slice(q), req).then(
        (a) => finish(a.status, a.headers, a.body),
        (err: unknown) => {
          this.host.log.warn({ err: (err as Error)?.message }, "static file not served");
          plain(503);
        },
      );
      return;
    }
    if (!methodAllowed(route.route.methods, method)) {
      const allow = route.route.methods?.includes("GET") && !route.route.methods.includes("HEAD") ? [...route.route.methods, "HEAD"] : (route.route.methods ?? []);
      return plain(405, { allow: allow.join(", ") });
    }
    const h = natsHeaders();
    h.set(HttpHeaders.method, method);
    h.set(HttpHeaders.path, path);
    if (q !== -1) h.set(HttpHeaders.query, rawUrl.slice(q + 1));
    h.set(HttpHeaders.url, `http://${hostHeader ?? "localhost"}${rawUrl}`);
    h.set(HttpHeaders.route, route.route.path);
    h.set(HttpHeaders.remote, req.socket.remoteAddress ?? "");
    const raw = req.rawHeaders;
    try {
      for (let i = 0; i + 1 < raw.length; i += 2) {
        if (!reservedHeader(raw[i].toLowerCase())) h.append(raw[i], raw[i + 1]);
      }
    } catch {
      // a header NATS cannot carry (a name it refuses)
      return plain(400);
    }
    // The body may take what the headers leave of max_payload. Their size is known only by encoding them
    // (which nats.js does again to send), so that is done only for a body that could come close.
    const serverMax = this.host.nc.info?.max_payload ?? 1024 * 1024;
    // Node bounds the request line and headers together by maxHeaderBytes; the NATS headers carry them, the
    // path and query again in Nex-Http-Url (with the host), and a few of ours: 3x that and 4 KiB is room enough.
    const headerRoom = 3 * this.o.maxHeaderBytes + 4096;
    let bodyMax = -1;
    const maxPayload = (size: number): number => (size <= serverMax - headerRoom ? serverMax : bodyMax >= 0 ? bodyMax : (bodyMax = serverMax - headerBytes(h)));
    const declared = req.headers["content-length"];
    if (declared !== undefined && Number(declared) > maxPayload(Number(declared))) {
      // Too much to read at all: answer and close. Otherwise read and drop it first, so the client has sent
      // its body when the 413 comes (answering mid-body races the client's writes into a reset).
      if (Number(declared) > DISCARD_MAX_BYTES) return plain(413, {}, true);
      return discardBody(req, (cut) => plain(413, {}, cut));
    }
    const target = route;
    const chunks: Buffer[] = [];
    let size = 0;
    let refused = false;
    req.on("data", (chunk: Buffer) => {
      if (refused) return;
      size += chunk.length;
      if (size > maxPayload(size)) {
        refused = true;
        chunks.length = 0;
        discardBody(req, (cut) => plain(413, {}, cut));
        return;
      }
      chunks.push(chunk);
    });
    req.on("error", () => undefined);
    req.on("end", () => {
      if (refused || done) return;
      const body = chunks.length === 0 ? EMPTY : chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
      this.replies.request(target.subject, body, h, (outcome) => {
        if ("failed" in outcome) {
          // A reply whose headers cannot be read is the workload's fault: logged, and a 502 for this request only.
          if (outcome.failed === "unreadable") this.host.log.debug({ namespace: target.namespace, workload: target.name }, "http reply headers unreadable");
          return plain(FAILED_STATUS[outcome.failed]);
        }
        const mapped = mapReply(outcome.reply.headers, outcome.reply.data);
        finish(mapped.status, mapped.headers, mapped.body);
      });
    });
  }

  get port(): number {
    return (this.server?.address() as AddressInfo | null)?.port ?? 0;
  }
}

/** A namespace's share of the requests in flight: half the gateway's, at least 1. */
function namespaceShare(maxInFlight: number): number {
  return Math.max(1, Math.floor(maxInFlight / 2));
}

/** A Host header as it may be: a name or an IP literal, and an optional port; nothing after them. */
const HOST_HEADER = /^(?:\[[0-9a-f:.]+\]|[a-z0-9._-]+)(?::\d{1,5})?$/i;

/** The Host header's host name, lowercase, without a port. */
function hostName(header: string | undefined): string {
  if (!header) return "";
  const h = header.toLowerCase();
  if (h.startsWith("[")) return h.slice(0, h.indexOf("]") + 1);
  const colon = h.indexOf(":");
  return colon === -1 ? h : h.slice(0, colon);
}

function headerBytes(h: MsgHdrs): number {
  return (h as unknown as { encode(): Uint8Array }).encode().byteLength;
}

/** No responders 503, a deadline 504; a reply it cannot read or a connection gone 502. */
const FAILED_STATUS: Record<Extract<ReplyOutcome, { failed: string }>["failed"], number> = { no_responders: 503, timeout: 504, unreadable: 502, closed: 502 };

/** A refused body is read on (and dropped) up to this much, so the client reads our 413 instead of a reset. */
const DISCARD_MAX_BYTES = 8 * 1024 * 1024;
const DISCARD_MAX_MS = 2000;

/**
 * A body too large to pass on is read and dropped before the 413 goes out: answering while the client is
 * still sending would race its writes into a connection reset (EPIPE on its side, the answer unread).
 * Within a bound of bytes and time; past it the 413 goes out at once with `Connection: close` (`cut`).
 * A body that ends in time leaves the connection reusable.
 */
function discardBody(req: http.IncomingMessage, answer: (cut: boolean) => void): void {
  let dropped = 0;
  let answered = false;
  const reply = (cut: boolean): void => {
    if (answered) return;
    answered = true;
    clearTimeout(timer);
    answer(cut);
  };
  const timer = setTimeout(() => reply(true), DISCARD_MAX_MS);
  timer.unref();
  req.on("data", (chunk: Buffer) => {
    dropped += chunk.length;
    if (dropped > DISCARD_MAX_BYTES) reply(true);
  });
  req.on("end", () => reply(false));
  req.on("close", () => clearTimeout(timer));
  req.resume();
}

/** Error codes of a workload's error reply that keep their meaning over HTTP; the rest are 500. */
const KEPT_ERROR_CODES = new Set([413, 503, 504]);

/** A reply as an HTTP response: Nex-Status and the other headers, or an error reply as a short status body. */
export function mapReply(h: MsgHdrs | undefined, data: Uint8Array): { status: number; headers: http.OutgoingHttpHeaders; body: Uint8Array | string } {
  const errorCode = h?.get("Nats-Service-Error-Code");
  if (errorCode) {
    const code = Number(errorCode);
    const status = KEPT_ERROR_CODES.has(code) ? code : 500;
    return { status, headers: { "content-type": "text/plain; charset=utf-8" }, body: `${status} ${STATUS_TEXT[status]}\n` };
  }
  const headers: http.OutgoingHttpHeaders = {};
  let status = 200;
  if (h) {
    const given = h.get(HttpHeaders.status);
    if (given) {
      // Three digits, 200-599: not whatever Number() reads as one ("2e2", "0xc8", "200.0").
      if (!/^[2-5][0-9]{2}$/.test(given)) return { status: 502, headers: { "content-type": "text/plain; charset=utf-8" }, body: "502 Bad Gateway\n" };
      status = Number(given);
    }
    for (const key of h.keys()) {
      if (reservedHeader(key.toLowerCase())) continue;
      const values = h.values(key);
      headers[key] = values.length === 1 ? values[0] : values;
    }
  }
  // No body for these statuses (RFC 9110).
  if (status === 204 || status === 304) return { status, headers, body: EMPTY };
  return { status, headers, body: data };
}
