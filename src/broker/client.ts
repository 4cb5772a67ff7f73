// One client connection: protocol state, subscriptions, keepalive, its outbound buffer and the
// backpressure on it. A PUB goes to the publish path (publish.ts), which frames deliveries into the
// receivers' outbound buffers; the server flushes them (server.ts).

import type { AuthenticatedUser } from "./auth.js";
import { Outbound } from "./outbound.js";
import { ConnectionPermissions } from "./permissions.js";
import { ParseError, ProtocolParser, type ProtocolSink, type PubFrame } from "./parser.js";
import { isValidQueueName, isValidSubscriptionSubject } from "../protocol/subjects.js";
import type { Subscription } from "./sublist.js";
import { goQuote } from "./go-quote.js";
import { LastSubjectCache, processPub } from "./publish.js";
import type { Broker } from "./server.js";
import type { ClientTransport } from "./transport.js";
import { WriteWatch } from "./write-watch.js";

const CRLF = "\r\n";
/**
 * A producer feeding a receiver with a high backlog pauses for this long, longer the fuller the
 * receiver is; the receiver draining ends it early (nats-server stalls a producer 2-5 ms at most).
 */
const STALL_MIN_MS = 2;
const STALL_MAX_MS = 5;

export interface ConnectOptions {
  verbose: boolean;
  pedantic: boolean;
  echo: boolean;
  headers: boolean;
  noResponders: boolean;
  name: string;
  lang: string;
  version: string;
  protocol: number;
  user?: string;
}

export class ClientConnection implements ProtocolSink {
  readonly subs = new Map<string, Subscription>();
  readonly out = new Outbound();
  readonly parser: ProtocolParser;
  readonly start = new Date();
  readonly ip: string;
  readonly port: number;
  /** nats-server's defaults before (or without) CONNECT: verbose and pedantic on, echo on. */
  opts: ConnectOptions = {
    verbose: true,
    pedantic: true,
    echo: true,
    headers: false,
    noResponders: false,
    name: "",
    lang: "",
    version: "",
    protocol: 0,
  };
  connected = false; // CONNECT received
  closed = false;
  dirty = false; // queued in the server's flush list
  inMsgs = 0;
  outMsgs = 0;
  inBytes = 0;
  outBytes = 0;
  lastActivity = Date.now();
  rttMs = 0;
  /** The user this connection authenticated as (null: anonymous or the token). */
  user: AuthenticatedUser | null = null;
  /** The user's permissions as this connection applies them; null when unrestricted. */
  perms: ConnectionPermissions | null = null;
  /** Set only when publishing is restricted, so the unrestricted publish path checks one field. */
  pubPerms: ConnectionPermissions | null = null;
  /** Set only when subscribing is restricted: then a reply subject must be one it could subscribe to. */
  replyPerms: ConnectionPermissions | null = null;
  /** What this connection's last published subject matched (publish.ts). */
  readonly lastSubject = new LastSubjectCache();
  /** The nonce an NKey user signs, sent in INFO when NKey users exist. */
  readonly nonce: string | undefined;

  private heardFrom = false;
  private pingsOut = 0;
  private pingSentAt = 0;
  private lastWrite = 0;
  private lastClientPing = 0;
  private pingTimer: NodeJS.Timeout | null = null;
  private authTimer: NodeJS.Timeout | null = null;
  /** Publishers paused because this connection's outbound backlog is high. */
  private stalledProducers: ClientConnection[] = [];
  private stalledOn: ClientConnection | null = null;
  private stallTimer: NodeJS.Timeout | null = null;
  /** Internal producers (push consumers) waiting for this connection's backlog to drain. */
  private drainWaiters: (() => void)[] = [];
  private readonly writeWatch: WriteWatch;

  constructor(
    readonly cid: number,
    readonly transport: ClientTransport,
    private readonly server: Broker,
  ) {
    const o = server.options;
    this.nonce = server.auth.nonceRequired ? server.auth.newNonce() : undefined;
    this.ip = transport.remoteAddress;
    this.port = transport.remotePort;
    this.parser = new ProtocolParser(this, o.maxControlLine, o.maxPayload);
    this.writeWatch = new WriteWatch(transport, o.writeDeadlineMs, () => this.closeAsSlowConsumer("write deadline exceeded"));
    transport.start({
      data: (chunk) => this.onData(chunk),
      drain: () => this.onDrain(),
      close: (error) => this.close(error ? "connection error" : "client closed"),
    });
    const timeout = server.authRequired ? o.authTimeoutMs : o.connectTimeoutMs;
    this.authTimer = setTimeout(() => this.closeWithError("Authentication Timeout"), timeout);
    this.authTimer.unref();
    // The first keepalive comes early (as nats-server: min(interval, 2 s)) so dead peers are found fast.
    this.schedulePing(Math.min(o.pingIntervalMs, 2000));
  }

  get headersEnabled(): boolean {
    return this.opts.headers;
  }

  sendInfo(info: object): void {
    this.queueText(`INFO ${JSON.stringify(info)} ${CRLF}`); // nats-server puts a space before the CRLF
  }

  // ---- inbound ----------------------------------------------------------------------------------------

  private onData(chunk: Buffer): void {
    if (this.closed) return;
    this.lastActivity = Date.now();
    this.parser.parse(chunk);
    this.server.flush(this);
  }

  /** Every operation but CONNECT: enforces auth-first and cancels the silent-connection timer. */
  private admit(): boolean {
    if (this.heardFrom) return true;
    if (this.server.authRequired && !this.connected) {
      this.closeWithError("Authorization Violation");
      return false;
    }
    this.heardFrom = true;
    this.clearAuthTimer();
    return true;
  }

  onConnect(json: string): void {
    let raw: Record<string, unknown>;
    try {
      raw = JSON.parse(json) as Record<string, unknown>;
      if (raw === null || typeof raw !== "object" || Array.isArray(raw)) throw new Error("not an object");
    } catch {
      this.close("malformed CONNECT"); // nats-server closes without an -ERR
      return;
    }
    const flag = (key: string, fallback: boolean): boolean => (typeof raw[key] === "boolean" ? (raw[key] as boolean) : fallback);
    const text = (key: string): string => (typeof raw[key] === "string" ? (raw[key] as string) : "");
    const protocol = typeof raw.protocol === "number" ? raw.protocol : 0;
    if (protocol < 0 || protocol > 1) return this.closeWithError("invalid client protocol");
    const opts: ConnectOptions = {
      verbose: flag("verbose", true),
      pedantic: flag("pedantic", true),
      echo: flag("echo", true),
      headers: flag("headers", false),
      noResponders: flag("no_responders", false),
      name: text("name"),
      lang: text("lang"),
      version: text("version"),
      protocol,
      user: typeof raw.user === "string" ? raw.user : undefined,
    };
    if (opts.noResponders && !opts.headers) return this.closeWithError("no responders requires headers support");
    const user = this.server.authenticate(raw, this.nonce);
    if (user === false) return this.closeWithError("Authorization Violation");
    this.user = user;
    if (user !== null && user.permissions !== null) {
      this.perms = new ConnectionPermissions(user.permissions);
      if (!user.permissions.publishOpen) this.pubPerms = this.perms;
      if (!user.permissions.subscribeOpen) this.replyPerms = this.perms;
    }
    this.opts = opts;
    this.connected = true;
    this.heardFrom = true;
    this.clearAuthTimer();
    if (opts.verbose) this.queueText("+OK\r\n");
  }

  onPub(frame: PubFrame): void {
    if (this.admit()) processPub(this.server, this, frame);
  }

  onSub(subject: string, queue: string | undefined, sid: string): void {
    if (!this.admit()) return;
    // nats-server checks permissions first, and the connection stays after a violation.
    if (this.perms !== null && !this.perms.canSubscribe(subject, queue)) {
      const using = queue === undefined ? "" : ` using queue ${goQuote(queue)}`;
      this.queueText(`-ERR 'Permissions Violation for Subscription to ${goQuote(subject)}${using}'\r\n`);
      return;
    }
    if (!isValidSubscriptionSubject(subject) || (queue !== undefined && !isValidQueueName(queue))) {
      this.queueText("-ERR 'Invalid Subject'\r\n");
      return;
    }
    if (this.subs.size >= this.server.options.maxSubscriptions) {
      this.queueText("-ERR 'maximum subscriptions exceeded'\r\n"); // the connection stays, as nats-server's
      return;
    }
    if (!this.subs.has(sid)) {
      // A repeated sid is ignored; the first subscription stays (as nats-server).
      const sub: Subscription = { subject, queue, sid, sidBytes: Buffer.from(sid, "latin1"), max: 0, delivered: 0, owner: this };
      this.subs.set(sid, sub);
      this.server.sublist.insert(sub);
      this.server.notifySubscribed(sub);
    }
    if (this.opts.verbose) this.queueText("+OK\r\n");
  }

  onUnsub(sid: string, max: number): void {
    if (!this.admit()) return;
    const sub = this.subs.get(sid);
    if (sub !== undefined) {
      if (max > 0 && max > sub.delivered) sub.max = max;
      else this.removeSubscription(sub);
    }
    if (this.opts.verbose) this.queueText("+OK\r\n");
  }

  onPing(): void {
    if (!this.admit()) return;
    this.lastClientPing = Date.now();
    this.queueText("PONG\r\n");
  }

  onPong(): void {
    if (!this.admit()) return;
    this.pingsOut = 0;
    if (this.pingSentAt > 0) {
      // Sub-millisecond on loopback: a whole-millisecond clock would report 0 (and "rtt unknown").
      this.rttMs = Math.max(0.001, performance.now() - this.pingSentAt);
      this.pingSentAt = 0;
    }
  }

  onParseError(error: ParseError): void {
    switch (error) {
      case ParseError.UnknownOperation:
        return this.closeWithError("Unknown Protocol Operation");
      case ParseError.MaxControlLine:
        return this.closeWithError("maximum control line exceeded");
      case ParseError.MaxPayload:
        return this.closeWithError("Maximum Payload Violation");
      case ParseError.BadArguments:
        return this.close("protocol violation");
      case ParseError.ClientError:
        return this.close("client sent -ERR");
    }
  }

  // ---- outbound ---------------------------------------------------------------------------------------

  queueText(text: string): void {
    this.out.reserve(text.length);
    this.out.ascii(text);
    this.markDirty();
  }

  /** Queues this connection for the server's next flush. */
  markDirty(): void {
    if (!this.dirty) {
      this.dirty = true;
      this.server.dirty.push(this);
    }
  }

  /**
   * Hands everything pending to the socket in one write. `producer` is the connection whose input
   * produced it: when this connection's backlog is high, that producer pauses for a few milliseconds
   * (backpressure); past max_pending, or when its output stops moving for write_deadline, this
   * connection is a slow consumer.
   */
  flushOutbound(producer: ClientConnection | null): void {
    if (this.out.pending === 0) return;
    if (this.closed) {
      this.out.take(); // a closing connection already sent its last bytes
      return;
    }
    const data = this.out.take();
    this.transport.write(data);
    this.lastWrite = Date.now();
    const backlog = this.transport.backlog;
    this.writeWatch.wrote(backlog);
    if (backlog > this.server.options.maxPending) {
      this.closeAsSlowConsumer("max_pending exceeded");
    } else if (backlog > this.server.stallBytes && producer !== null && producer !== this) {
      producer.stallOn(this, backlog);
    }
  }

  /** Runs `resume` once this connection's backlog has drained, or it has closed. */
  whenDrained(resume: () => void): void {
    if (this.closed) resume();
    else this.drainWaiters.push(resume);
  }

  private closeAsSlowConsumer(why: string): void {
    if (this.closed) return;
    this.server.slowConsumers++;
    this.server.log.warn({ cid: this.cid, backlog: this.transport.backlog, why }, "slow consumer detected, closing connection");
    this.close("slow consumer", true);
  }

  /** Pauses this producer's reads for 2-5 ms, scaled by how close the receiver is to max_pending. */
  private stallOn(receiver: ClientConnection, backlog: number): void {
    if (this.stalledOn !== null || this.closed) return;
    this.stalledOn = receiver;
    receiver.stalledProducers.push(this);
    this.transport.pause();
    const { stallBytes } = this.server;
    const fullness = Math.min(1, (backlog - stallBytes) / Math.max(1, this.server.options.maxPending - stallBytes));
    this.stallTimer = setTimeout(() => this.unstall(), STALL_MIN_MS + (STALL_MAX_MS - STALL_MIN_MS) * fullness);
    this.stallTimer.unref();
  }

  private unstall(): void {
    if (this.stalledOn === null) return;
    const receiver = this.stalledOn;
    this.stalledOn = null;
    receiver.stalledProducers = receiver.stalledProducers.filter((p) => p !== this);
    if (this.stallTimer) clearTimeout(this.stallTimer);
    this.stallTimer = null;
    if (!this.closed) this.transport.resume();
  }

  private onDrain(): void {
    this.writeWatch.stop();
    this.resumeProducers();
  }

  private resumeProducers(): void {
    if (this.stalledProducers.length > 0) {
      for (const producer of [...this.stalledProducers]) producer.unstall();
    }
    if (this.drainWaiters.length > 0) {
      const waiters = this.drainWaiters;
      this.drainWaiters = [];
      for (const resume of waiters) resume();
    }
  }

  // ---- keepalive --------------------------------------------------------------------------------------

  private schedulePing(delayMs: number): void {
    this.pingTimer = setTimeout(() => this.onPingTimer(), delayMs);
    this.pingTimer.unref();
  }

  /** As nats-server: skip the PING while there is traffic, close as stale after max_pings_out misses. */
  private onPingTimer(): void {
    if (this.closed) return;
    const now = Date.now();
    const interval = this.server.options.pingIntervalMs;
    const rttKnown = this.rttMs > 0;
    const recentlyActive = now - this.lastWrite < interval || now - this.lastClientPing < interval;
    if (!(recentlyActive && rttKnown)) {
      if (this.pingsOut + 1 > this.server.options.maxPingsOut) {
        this.closeWithError("Stale Connection");
        return;
      }
      this.pingsOut++;
      this.pingSentAt = performance.now();
      this.queueText("PING\r\n");
      this.server.flush(null);
    }
    this.schedulePing(interval);
  }

  // ---- closing ----------------------------------------------------------------------------------------

  removeSubscription(sub: Subscription): void {
    if (this.subs.get(sub.sid) === sub) this.subs.delete(sub.sid);
    this.server.sublist.remove(sub);
  }

  closeWithError(text: string): void {
    if (this.closed) return;
    this.queueText(`-ERR '${text}'\r\n`);
    this.close(text);
  }

  /** Closes once: drops subscriptions, flushes what is pending (unless abrupt), frees stalled producers. */
  close(reason: string, abrupt = false): void {
    if (this.closed) return;
    this.closed = true;
    this.parser.stopped = true;
    this.clearAuthTimer();
    if (this.pingTimer) clearTimeout(this.pingTimer);
    this.writeWatch.stop();
    for (const sub of this.subs.values()) this.server.sublist.remove(sub);
    this.subs.clear();
    this.unstall();
    this.resumeProducers();
    this.server.removeClient(this, reason);
    if (abrupt) {
      this.transport.destroy();
      return;
    }
    this.transport.end(this.out.pending > 0 ? this.out.take() : null, reason);
  }

  private clearAuthTimer(): void {
    if (this.authTimer) clearTimeout(this.authTimer);
    this.authTimer = null;
  }
}
