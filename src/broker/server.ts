// The broker: accepts connections, owns the sublist and the internal subscriptions, and flushes
// output once per read. A socket read → ProtocolParser.parse → ClientConnection.onPub → the publish
// path (publish.ts: match, route, frame MSG/HMSG into each receiver's Outbound) → after the whole read
// is parsed, Broker.flush writes each touched socket once.

import net from "node:net";
import { randomBytes } from "node:crypto";
import pino, { type Logger } from "pino";
import { type AuthenticatedUser, Authenticator, type BrokerUserSpec } from "./auth.js";
import { ClientConnection } from "./client.js";
import type { PubFrame } from "./parser.js";
import { publishFromServer } from "./publish.js";
import { type ResolvedOptions, SERVER_VERSION } from "./options.js";
import { Sublist, type Subscription } from "./sublist.js";
import { TlsUpgrader } from "./tls.js";
import { type ClientTransport, SocketTransport } from "./transport.js";
import type { WebSocketListener } from "./websocket.js";
import { listenOn } from "../util/listen.js";

/** Above this backlog a receiver stalls the publishers feeding it (nats-server stalls at max_pending/2). */
const STALL_BYTES_CAP = 4 * 1024 * 1024;

export class Broker {
  readonly sublist = new Sublist();
  readonly clients = new Map<number, ClientConnection>();
  /** Connections with output pending since the last flush. */
  readonly dirty: ClientConnection[] = [];
  readonly serverId: string;
  readonly started = new Date();
  readonly stallBytes: number;
  readonly auth: Authenticator;
  private readonly tls: TlsUpgrader | null;
  inMsgs = 0;
  outMsgs = 0;
  inBytes = 0;
  outBytes = 0;
  slowConsumers = 0;
  jetstreamEnabled = false;
  totalConnections = 0;
  /** Run before output leaves: JetStream writes stored messages to disk before their acks go out. */
  readonly beforeFlushHooks: (() => void)[] = [];
  readonly subscribeListeners = new Set<(sub: Subscription) => void>();
  private flushScheduled = false;
  private nextInternalSid = 1;
  private nextCid = 1;
  private listener: net.Server | null = null;
  private listenPort = 0;
  private ws: WebSocketListener | null = null;
  /** Stats of closed connections, so totals stay monotonic. */
  private closedStats = { inMsgs: 0, outMsgs: 0, inBytes: 0, outBytes: 0 };

  constructor(
    readonly options: ResolvedOptions,
    readonly log: Logger = pino({ level: "silent" }),
  ) {
    this.serverId = "N" + randomBytes(27).toString("base64url").toUpperCase().replace(/[^A-Z0-9]/g, "X").slice(0, 55);
    this.stallBytes = Math.min(options.maxPending / 2, STALL_BYTES_CAP);
    const auth = options.auth;
    this.auth = new Authenticator(auth?.token || undefined, auth?.users ?? [], auth?.defaultPermissions);
    this.tls = options.tls ? new TlsUpgrader(options.tls) : null;
  }

  get authRequired(): boolean {
    return this.auth.required;
  }

  /**
   * Adds a user while running. When this turns auth on, connections made without credentials are
   * closed, as nats-server does when a config reload turns auth on.
   */
  addUser(spec: BrokerUserSpec): void {
    const wasRequired = this.authRequired;
    this.auth.add(spec);
    if (!wasRequired) this.closeUnauthorized((client) => client.connected);
  }

  /** Removes a user and closes its connections with 'Authorization Violation' (nats-server's reload). */
  removeUser(name: string): boolean {
    const user = this.auth.remove(name);
    if (user === undefined) return false;
    this.closeUnauthorized((client) => client.user === user);
    return true;
  }

  private closeUnauthorized(matches: (client: ClientConnection) => boolean): void {
    for (const client of [...this.clients.values()]) if (matches(client)) client.closeWithError("Authorization Violation");
    this.flush(null);
  }

  /** Authenticates a CONNECT: the user (null for the token or when auth is off), or false when refused. */
  authenticate(connect: Record<string, unknown>, nonce: string | undefined): AuthenticatedUser | null | false {
    if (!this.authRequired) return null;
    const result = this.auth.authenticate(connect, nonce);
    return result === null ? false : result === "token" ? null : result;
  }

  get port(): number {
    return this.listenPort;
  }

  get name(): string {
    return this.options.serverName ?? this.serverId;
  }

  async listen(): Promise<void> {
    const server = net.createServer({ noDelay: true }, (socket) => this.accept(socket));
    server.maxConnections = this.options.maxConnections + 1; // one over, so we can say why we refuse
    this.listenPort = await listenOn(server, this.options.port, this.options.host);
    server.on("error", (err) => this.log.error({ err }, "listener error"));
    this.listener = server;
    const wsConfig = this.options.websocket;
    if (wsConfig !== undefined) {
      // Loaded only when asked for: the ws library is a good part of a plain broker's start-up.
      const { WebSocketListener } = await import("./websocket.js");
      const ws = new WebSocketListener(wsConfig, this.options.maxPayload + this.options.maxControlLine, this);
      try {
        await ws.listen(this.options.host);
      } catch (err) {
        await new Promise((resolve) => server.close(resolve));
        throw err;
      }
      this.ws = ws;
    }
  }

  /** The WebSocket listener's URL (ws:// or wss://), when there is one. */
  get wsUrl(): string | undefined {
    const ws = this.ws;
    if (ws === null) return undefined;
    const host = this.options.websocket?.host ?? this.options.host;
    return `${ws.scheme}://${host.includes(":") ? `[${host}]` : host}:${ws.port}`;
  }

  get wsPort(): number | undefined {
    return this.ws?.port;
  }

  /** INFO for a client. TLS over WebSocket is the HTTP listener's (wss), so those clients are not told to upgrade. */
  info(client: ClientConnection): object {
    const o = this.options;
    return {
      server_id: this.serverId,
      server_name: this.name,
      version: SERVER_VERSION,
      proto: 1,
      go: `node${process.versions.node}`,
      host: o.host,
      port: this.listenPort,
      headers: true,
      ...(this.authRequired ? { auth_required: true } : {}),
      ...(o.tls && client.transport.kind === "tcp" ? { tls_required: true, ...(o.tls.verify ? { tls_verify: true } : {}) } : {}),
      ...(this.jetstreamEnabled ? { jetstream: true } : {}),
      max_payload: o.maxPayload,
      client_id: client.cid,
      client_ip: client.ip,
      ...(client.nonce !== undefined ? { nonce: client.nonce } : {}),
    };
  }

  private accept(socket: net.Socket): void {
    if (this.tls) {
      // The server's TLS side speaks only after the client hello, so INFO goes first on the raw socket.
      const client = this.admit(new SocketTransport(this.tls.upgrade(socket)));
      if (client !== null) socket.write(`INFO ${JSON.stringify(this.info(client))} \r\n`);
      return;
    }
    this.acceptTransport(new SocketTransport(socket));
  }

  /** A new client on an open transport (a TCP socket, or a WebSocket after its upgrade): INFO goes out. */
  acceptTransport(transport: ClientTransport): void {
    const client = this.admit(transport);
    if (client === null) return;
    client.sendInfo(this.info(client));
    this.flush(null);
  }

  /** The connection over a transport, or null when the connection limit refuses it. */
  private admit(transport: ClientTransport): ClientConnection | null {
    const client = new ClientConnection(this.nextCid++, transport, this);
    this.totalConnections++;
    if (this.clients.size >= this.options.maxConnections) {
      client.closeWithError("maximum connections exceeded");
      return null;
    }
    this.clients.set(client.cid, client);
    return client;
  }

  removeClient(client: ClientConnection, reason: string): void {
    if (!this.clients.delete(client.cid)) return;
    const c = this.closedStats;
    c.inMsgs += client.inMsgs;
    c.outMsgs += client.outMsgs;
    c.inBytes += client.inBytes;
    c.outBytes += client.outBytes;
    this.log.debug({ cid: client.cid, reason }, "connection closed");
  }

  /**
   * Publishes from inside the server (JetStream replies and deliveries). `routeSubject` picks the
   * subscribers; the MSG line carries `subject`, which differs for consumer deliveries (nats-server's
   * "match on one subject, deliver with another"). Output is flushed in a microtask, or by the read
   * batch that is running.
   */
  publishInternal(routeSubject: string, subject: string, reply: string, header: Buffer | null, data: Buffer): number {
    const deliveries = publishFromServer(this, routeSubject, subject, reply, header, data);
    this.scheduleFlush();
    return deliveries;
  }

  /** A subscription served by a callback inside the server (JetStream API, stream ingest, acks). */
  subscribeInternal(subject: string, handler: (frame: PubFrame, publisher: unknown) => void, queue?: string): Subscription {
    const sid = `internal-${this.nextInternalSid++}`;
    const sub: Subscription = { subject, queue, sid, sidBytes: Buffer.from(sid), max: 0, delivered: 0, owner: null, handler };
    this.sublist.insert(sub);
    return sub;
  }

  unsubscribeInternal(sub: Subscription): void {
    this.sublist.remove(sub);
  }

  /** Called after a client subscription is added (JetStream starts push consumers on interest). */
  notifySubscribed(sub: Subscription): void {
    for (const listener of this.subscribeListeners) listener(sub);
  }

  /** Whether anything would receive a publish on the subject. */
  hasInterest(subject: string): boolean {
    const result = this.sublist.match(subject);
    return result.plain.length > 0 || result.queues.length > 0;
  }

  /**
   * The subscriptions made on exactly this subject (in this queue group, or in none), as nats-server's
   * interest notifications see them: a wildcard subscription that merely covers the subject is not one.
   */
  exactSubscriptions(subject: string, queue: string | undefined): Subscription[] {
    const result = this.sublist.match(subject);
    if (queue === undefined) return result.plain.filter((sub) => sub.subject === subject);
    return result.queues.flat().filter((sub) => sub.subject === subject && sub.queue === queue);
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    queueMicrotask(() => {
      this.flushScheduled = false;
      this.flush(null);
    });
  }

  /** Writes every connection that has pending output, once each, after persisting what acks promise. */
  flush(producer: ClientConnection | null): void {
    const list = this.dirty;
    if (list.length === 0) return;
    for (const hook of this.beforeFlushHooks) hook();
    for (let i = 0; i < list.length; i++) {
      const client = list[i];
      client.dirty = false;
      client.flushOutbound(producer);
    }
    list.length = 0;
  }

  totals(): { inMsgs: number; outMsgs: number; inBytes: number; outBytes: number } {
    const t = { ...this.closedStats };
    for (const c of this.clients.values()) {
      t.inMsgs += c.inMsgs;
      t.outMsgs += c.outMsgs;
      t.inBytes += c.inBytes;
      t.outBytes += c.outBytes;
    }
    return t;
  }

  /** Stops accepting, flushes and closes every connection, and waits (bounded) for the sockets to end. */
  async close(): Promise<void> {
    const listener = this.listener;
    this.listener = null;
    const closedListener = listener ? new Promise<void>((resolve) => listener.close(() => resolve())) : Promise.resolve();
    const clients = [...this.clients.values()];
    const transports = clients.map((c) => c.transport.closed());
    this.flush(null);
    for (const client of clients) client.close("server shutdown");
    await Promise.race([Promise.all(transports), new Promise((r) => setTimeout(r, 3000).unref())]);
    for (const client of clients) client.transport.destroy();
    await Promise.all([closedListener, this.ws?.close()]);
    this.ws = null;
  }
}
