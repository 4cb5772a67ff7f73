// NATS over WebSocket, as nats-server's `websocket {}` listener serves it to browsers and nats.ws.
//
// The HTTP/1.1 upgrade is checked here, in nats-server's order and with its status codes; the frame
// layer (masking, fragmentation, control frames, close handshake, permessage-deflate) is the `ws`
// library's. Each upgraded connection becomes a WebSocketTransport under an ordinary ClientConnection,
// so a WebSocket client is a full NATS client of the same broker.

import http from "node:http";
import https from "node:https";
import type net from "node:net";
import type { Duplex } from "node:stream";
import { WebSocket, WebSocketServer } from "ws";
import type { Logger } from "pino";
import type { BrokerWebSocket } from "./options.js";
import { type AllowedOrigin, hostAndPort, parseAllowedOrigin } from "./origin.js";
import { tlsServerOptions } from "./tls.js";
import { type ClientTransport, socketSent, type TransportEvents } from "./transport.js";
import { listenOn } from "../util/listen.js";

/** nats-server's default time for the HTTP upgrade, from the first byte to the 101. */
const DEFAULT_HANDSHAKE_TIMEOUT_MS = 2000;
/** A peer that does not answer the broker's close frame is dropped after this long. */
const CLOSE_TIMEOUT_MS = 2000;
/**
 * Slack on top of max_payload + max_control_line for one WebSocket message. nats.js batches what it has
 * pending (up to 32 KiB) into one frame, so a full-size publish may share its frame with earlier commands.
 */
const FRAME_SLACK_BYTES = 64 * 1024;
/** nats-server compresses only output larger than this. */
const COMPRESS_THRESHOLD_BYTES = 64;
const MAX_CLOSE_REASON_BYTES = 123;

/** What the listener needs from the broker: a new client on a transport. */
export interface WebSocketHost {
  readonly log: Logger;
  acceptTransport(transport: ClientTransport): void;
}

export class WebSocketListener {
  private readonly http: http.Server;
  private readonly wss: WebSocketServer;
  private readonly origins: AllowedOrigin[];
  private readonly handshakeTimeoutMs: number;
  /** Connections still in the HTTP upgrade, with the timer that drops them. */
  private readonly handshakes = new WeakMap<net.Socket, NodeJS.Timeout>();
  private listenPort = 0;

  constructor(
    private readonly config: BrokerWebSocket,
    maxMessageBytes: number,
    private readonly host: WebSocketHost,
  ) {
    this.origins = (config.allowedOrigins ?? []).map((origin) => {
      try {
        return parseAllowedOrigin(origin);
      } catch (err) {
        throw new Error(`websocket: allowed origin: ${(err as Error).message}`);
      }
    });
    this.handshakeTimeoutMs = config.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
    this.wss = new WebSocketServer({
      noServer: true,
      maxPayload: maxMessageBytes + FRAME_SLACK_BYTES,
      // ws >= 8.19 (its typings lag): how long a close frame waits for the peer's before the socket goes.
      ...({ closeTimeout: CLOSE_TIMEOUT_MS } as object),
      clientTracking: false,
      perMessageDeflate: config.compression
        ? { threshold: COMPRESS_THRESHOLD_BYTES, serverNoContextTakeover: true, clientNoContextTakeover: true }
        : false,
    });
    this.http = config.tls
      ? https.createServer({ ...tlsServerOptions(config.tls), handshakeTimeout: this.handshakeTimeoutMs })
      : http.createServer();
    // Every request goes through the same checks, so a plain GET gets nats-server's 400, a POST its 405.
    this.http.on("request", (req: http.IncomingMessage, res: http.ServerResponse) => {
      const refusal = this.refusal(req) ?? { status: 400, why: "invalid value for header 'Upgrade'" };
      res.writeHead(refusal.status, { "Content-Type": "text/plain; charset=utf-8", "Sec-WebSocket-Version": "13" });
      res.end(`${http.STATUS_CODES[refusal.status]}\n`);
    });
    this.http.on("upgrade", (req: http.IncomingMessage, socket: Duplex, head: Buffer) => this.upgrade(req, socket as net.Socket, head));
    // With TLS the TLS handshake has its own timeout, and the upgrade's starts once it is done.
    this.http.on(config.tls ? "secureConnection" : "connection", (socket: net.Socket) => {
      socket.setNoDelay(true);
      this.limitHandshake(socket);
    });
  }

  get port(): number {
    return this.listenPort;
  }

  get scheme(): "ws" | "wss" {
    return this.config.tls ? "wss" : "ws";
  }

  async listen(defaultHost: string): Promise<void> {
    this.listenPort = await listenOn(this.http, this.config.port, this.config.host ?? defaultHost);
    this.http.on("error", (err) => this.host.log.error({ err }, "websocket listener error"));
    if (!this.config.tls) this.host.log.warn("websocket not configured with TLS: use it on trusted networks only");
  }

  async close(): Promise<void> {
    this.http.closeAllConnections();
    await new Promise<void>((resolve) => this.http.close(() => resolve()));
  }

  /** A connection that has not finished its upgrade in time is dropped (nats-server's handshake_timeout). */
  private limitHandshake(socket: net.Socket): void {
    const timer = setTimeout(() => socket.destroy(), this.handshakeTimeoutMs);
    timer.unref();
    socket.once("close", () => clearTimeout(timer));
    this.handshakes.set(socket, timer);
  }

  private upgrade(req: http.IncomingMessage, socket: net.Socket, head: Buffer): void {
    // Node's HTTP server has let go of the socket here: a peer that resets it while we answer must not
    // raise an 'error' nobody listens to (that ends the process). ws adds its own once it takes over.
    socket.on("error", () => socket.destroy());
    const refusal = this.refusal(req);
    if (refusal !== null) {
      this.host.log.debug({ remote: socket.remoteAddress, why: refusal.why }, "websocket handshake refused");
      const text = `${http.STATUS_CODES[refusal.status]}\n`;
      socket.end(
        `HTTP/1.1 ${refusal.status} ${http.STATUS_CODES[refusal.status]}\r\nContent-Type: text/plain; charset=utf-8\r\n` +
          `Sec-WebSocket-Version: 13\r\nConnection: close\r\nContent-Length: ${Buffer.byteLength(text)}\r\n\r\n${text}`,
      );
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      clearTimeout(this.handshakes.get(socket));
      this.host.acceptTransport(new WebSocketTransport(ws, socket));
    });
  }

  /** RFC 6455 section 4.2.1 in nats-server's order: the first failed check, or null to upgrade. */
  private refusal(req: http.IncomingMessage): { status: number; why: string } | null {
    const h = req.headers;
    if (req.method !== "GET") return { status: 405, why: "request method must be GET" };
    if (!h.host) return { status: 400, why: "'Host' missing in request" };
    if (!headerHasToken(h.upgrade, "websocket")) return { status: 400, why: "invalid value for header 'Upgrade'" };
    if (!headerHasToken(h.connection, "upgrade")) return { status: 400, why: "invalid value for header 'Connection'" };
    if (!h["sec-websocket-key"]) return { status: 400, why: "key missing" };
    if (!headerHasToken(h["sec-websocket-version"], "13")) return { status: 400, why: "invalid version" };
    const origin = h.origin ?? (h["sec-websocket-origin"] as string | undefined);
    const originRefusal = this.checkOrigin(origin, h.host, req.socket);
    if (originRefusal !== null) return { status: 403, why: `origin not allowed: ${originRefusal}` };
    return null;
  }

  /** nats-server's rule: no Origin header is accepted (non-browser clients); otherwise it must be allowed. */
  private checkOrigin(origin: string | undefined, host: string, socket: net.Socket): string | null {
    if ((!this.config.sameOrigin && this.origins.length === 0) || !origin) return null;
    let url: URL;
    try {
      url = new URL(origin);
    } catch {
      return "malformed origin";
    }
    const o = hostAndPort(url.protocol === "https:", url.host);
    if (this.config.sameOrigin) {
      const secure = (socket as net.Socket & { encrypted?: boolean }).encrypted === true;
      const own = hostAndPort(secure, host);
      if (own.host !== o.host || own.port !== o.port) return "not same origin";
    }
    if (this.origins.length > 0 && !this.origins.some((a) => a.scheme === url.protocol && a.host === o.host && a.port === o.port)) {
      return "not in the allowed list";
    }
    return null;
  }
}

/** One upgraded WebSocket: NATS bytes in from any data frame, out in binary frames. */
export class WebSocketTransport implements ClientTransport {
  readonly kind = "websocket";
  readonly remoteAddress: string;
  readonly remotePort: number;
  /** permessage-deflate was negotiated: frames go through ws, which compresses them. */
  private readonly compressed: boolean;

  constructor(
    private readonly ws: WebSocket,
    private readonly socket: net.Socket,
  ) {
    this.remoteAddress = socket.remoteAddress ?? "";
    this.remotePort = socket.remotePort ?? 0;
    this.compressed = ws.extensions !== "";
  }

  get backlog(): number {
    return this.ws.bufferedAmount;
  }

  /** From the socket under ws, so pongs and compressed frames count as the bytes they are on the wire. */
  get sent(): number {
    return socketSent(this.socket);
  }

  start(events: TransportEvents): void {
    // Binary and text frames alike carry protocol bytes; `ws` has already checked text frames are UTF-8.
    this.ws.on("message", (data: Buffer) => events.data(data));
    this.socket.on("drain", events.drain);
    // Frame errors (`ws` has sent the close code, 1002, 1007 or 1009, and closes) and socket errors
    // (which `ws` handles by destroying the socket) end the connection as a TCP socket error does, as a
    // "connection error"; the 'close' that follows finds it closed already.
    this.ws.on("error", () => events.close(true));
    this.socket.on("error", () => events.close(true));
    this.ws.on("close", () => events.close(false));
  }

  write(data: Buffer): void {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    if (this.compressed) {
      this.ws.send(data, { binary: true });
      return;
    }
    // One binary frame in one socket write: ws.send would cork, write header and data apart, and
    // uncork into a writev, which costs twice the copy. ws writes its own frames (pong, close) whole and
    // at once when nothing is compressed, so frames never interleave.
    this.socket.write(binaryFrame(data));
  }

  pause(): void {
    this.ws.pause();
  }

  resume(): void {
    this.ws.resume();
  }

  end(last: Buffer | null, reason: string): void {
    if (last !== null) this.write(last);
    if (this.ws.readyState === WebSocket.OPEN) this.ws.close(closeCode(reason), truncateReason(reason));
  }

  destroy(): void {
    this.ws.terminate();
  }

  closed(): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return Promise.resolve();
    return new Promise((resolve) => this.ws.once("close", () => resolve()));
  }
}

/**
 * The close code for a NATS close reason, as nats-server maps them. Where nats-server sends 1006 (stale
 * connection, broken writes), RFC 6455 forbids putting it in a frame and `ws` refuses it: 1011 instead.
 */
function closeCode(reason: string): number {
  switch (reason) {
    case "client closed":
    case "client sent -ERR":
      return 1000;
    case "server shutdown":
      return 1001;
    case "Maximum Payload Violation":
      return 1009;
    case "Authentication Timeout":
    case "Authorization Violation":
    case "maximum connections exceeded":
    case "maximum control line exceeded":
    case "slow consumer":
      return 1008;
    case "Unknown Protocol Operation":
    case "malformed CONNECT":
    case "invalid client protocol":
    case "protocol violation":
    case "no responders requires headers support":
      return 1002;
    default:
      return 1011;
  }
}

/** An unmasked, final binary frame (RFC 6455 section 5.2) around the data. */
function binaryFrame(data: Buffer): Buffer {
  const n = data.length;
  const header = n < 126 ? 2 : n < 65536 ? 4 : 10;
  const frame = Buffer.allocUnsafe(header + n);
  frame[0] = 0x82; // FIN + binary
  if (n < 126) frame[1] = n;
  else if (n < 65536) {
    frame[1] = 126;
    frame.writeUInt16BE(n, 2);
  } else {
    frame[1] = 127;
    frame.writeUInt32BE(Math.floor(n / 0x100000000), 2);
    frame.writeUInt32BE(n >>> 0, 6);
  }
  data.copy(frame, header);
  return frame;
}

function truncateReason(reason: string): string {
  return Buffer.byteLength(reason) <= MAX_CLOSE_REASON_BYTES ? reason : reason.slice(0, MAX_CLOSE_REASON_BYTES - 3) + "...";
}

function headerHasToken(value: string | string[] | undefined, token: string): boolean {
  const values = Array.isArray(value) ? value : value === undefined ? [] : [value];
  return values.some((v) => v.split(",").some((t) => t.trim().toLowerCase() === token));
}
