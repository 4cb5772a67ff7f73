// A consumer: a cursor over a stream with delivery state. Push consumers deliver to their deliver subject
// while it has interest (ordered consumers behind KV watch/keys/history and object gets are push
// consumers with ack none, heartbeats and flow control); pull consumers deliver to the inboxes of waiting
// MSG.NEXT requests. Explicit/all ack policies track pending acks, redeliver after ack_wait, and honour
// max_deliver and max_ack_pending.

import type { ClientConnection } from "../client.js";
import type { Subscription } from "../sublist.js";
import { AckReplies } from "./ack-reply.js";
import { type ConsumerConfig, filterMatcher, NS_PER_MS } from "./config.js";
import { FlowControl } from "./flow-control.js";
import { RedeliveryQueue } from "./redelivery-queue.js";
import { appendHeaders } from "./headers.js";
import { pendingHeaders, type PullRequest, readPullRequest } from "./pull-request.js";
import type { Stream } from "./stream.js";
import type { StoredMessage } from "./store/types.js";
import { rfc3339 } from "./time.js";

/** Messages or bytes per delivery turn before yielding to the event loop. */
const TURN_MESSAGES = 512;
const TURN_BYTES = 4 * 1024 * 1024;
/** Receiver backlog above which a push consumer waits for the socket to drain. */
const RECEIVER_BACKLOG_LIMIT = 2 * 1024 * 1024;
const EMPTY = Buffer.alloc(0);
/**
 * How often a pull request's idle heartbeat is looked at, at most: a request may ask for 1 ns, and up to
 * max_waiting of them per consumer would each run a timer that often (clients ask for seconds).
 */
const MIN_PULL_HEARTBEAT_MS = 100;

interface PendingAck {
  dseq: number;
  deliveries: number;
  sentAt: number;
  subject: string;
}

export interface ConsumerState {
  dseq: number;
  sseq: number;
  nextSeq: number;
  ackFloorDseq: number;
  ackFloorSseq: number;
  pending: [number, number, number, string][]; // sseq, dseq, deliveries, subject
}

export class Consumer {
  private readonly matcher: ((subject: string) => boolean) | null;
  private dseq = 0; // last consumer (delivery) sequence
  private sseq = 0; // highest stream sequence delivered
  private nextSeq = 1; // next stream sequence to look at
  private initial: number[] | null = null; // last_per_subject / last: the starting set, in order
  private numPending = 0;
  private ackFloorDseq = 0;
  private ackFloorSseq = 0;
  private readonly pending = new Map<number, PendingAck>();
  private readonly redeliver = new RedeliveryQueue();
  private readonly waiting: PullRequest[] = [];
  private scheduled = false;
  private stopped = false;
  private lastDeliveryAt = Date.now();
  private lastActivity = Date.now();
  private inactiveSince = 0;
  private waitingForDrain = false;
  private timer: NodeJS.Timeout | null = null;
  /** Push consumers with flow_control: the window that pauses delivery until the client answers. */
  private readonly flowControl: FlowControl | null;
  private readonly ackReplies: AckReplies;

  constructor(
    readonly name: string,
    public config: ConsumerConfig,
    readonly created: number,
    private readonly stream: Stream,
    restored?: ConsumerState,
  ) {
    this.matcher = filterMatcher(config.filter_subject);
    this.ackReplies = new AckReplies(stream.name, name);
    this.flowControl = config.flow_control && this.isPush ? new FlowControl(stream.broker, stream.name, name, () => this.kick()) : null;
    if (restored) this.restore(restored);
    else this.position();
    this.startTimer();
  }

  get isPush(): boolean {
    return this.config.deliver_subject !== undefined;
  }

  get isDurable(): boolean {
    return this.config.durable_name !== undefined;
  }

  matches(subject: string): boolean {
    return this.matcher === null || this.matcher(subject);
  }

  /** Sets the starting cursor from the deliver policy. */
  private position(): void {
    const store = this.stream.store;
    const state = store.state();
    const cfg = this.config;
    switch (cfg.deliver_policy) {
      case "all":
        this.nextSeq = Math.max(1, state.firstSeq);
        break;
      case "new":
        this.nextSeq = state.lastSeq + 1;
        break;
      case "by_start_sequence":
        this.nextSeq = Math.max(cfg.opt_start_seq ?? 1, 1);
        break;
      case "by_start_time": {
        const start = Date.parse(cfg.opt_start_time ?? "");
        let msg = store.next(0, this.matcher);
        while (msg !== null && msg.time < start) msg = store.next(msg.seq + 1, this.matcher);
        this.nextSeq = msg ? msg.seq : state.lastSeq + 1;
        break;
      }
      case "last": {
        const seqs = store.lastSeqsPerSubject(this.matcher);
        this.initial = seqs.length > 0 ? [seqs[seqs.length - 1]] : [];
        this.nextSeq = state.lastSeq + 1;
        break;
      }
      case "last_per_subject":
        this.initial = store.lastSeqsPerSubject(this.matcher);
        this.nextSeq = state.lastSeq + 1;
        break;
    }
    this.recount();
  }

  private restore(state: ConsumerState): void {
    this.dseq = state.dseq;
    this.sseq = state.sseq;
    this.nextSeq = state.nextSeq;
    this.ackFloorDseq = state.ackFloorDseq;
    this.ackFloorSseq = state.ackFloorSseq;
    const now = Date.now();
    for (const [sseq, dseq, deliveries, subject] of state.pending) {
      this.pending.set(sseq, { dseq, deliveries, sentAt: now, subject });
    }
    this.recount();
  }

  snapshot(): ConsumerState {
    return {
      dseq: this.dseq,
      sseq: this.sseq,
      nextSeq: this.nextSeq,
      ackFloorDseq: this.ackFloorDseq,
      ackFloorSseq: this.ackFloorSseq,
      pending: [...this.pending].map(([sseq, p]) => [sseq, p.dseq, p.deliveries, p.subject]),
    };
  }

  /** Recomputes num_pending from the store (after purges and config changes). */
  recount(): void {
    const store = this.stream.store;
    if (this.initial !== null) this.initial = this.initial.filter((seq) => store.subjectOf(seq) !== null);
    this.numPending = (this.initial?.length ?? 0) + store.countFrom(this.nextSeq, this.matcher);
    for (const sseq of [...this.pending.keys()]) if (store.subjectOf(sseq) === null) this.pending.delete(sseq);
    this.kick();
  }

  // ---- stream events ---------------------------------------------------------------------------------

  onStored(seq: number, subject: string): void {
    if (!this.matches(subject) || seq < this.nextSeq) return;
    this.numPending++;
    this.kick();
  }

  onRemoved(seq: number, subject: string): void {
    if (!this.matches(subject)) return;
    if (this.initial !== null) {
      const at = this.initial.indexOf(seq);
      if (at >= 0) {
        this.initial.splice(at, 1);
        this.numPending--;
        return;
      }
    }
    if (seq >= this.nextSeq) this.numPending--;
    this.pending.delete(seq);
  }

  // ---- delivery --------------------------------------------------------------------------------------

  /** Schedules a delivery turn. */
  kick(): void {
    if (this.scheduled || this.stopped) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.deliverTurn();
    });
  }

  /**
   * The consumer's own delivery subscriptions: on exactly its deliver subject, in its deliver group if
   * it has one. As in nats-server, only these bind a push consumer (start delivery, keep an ephemeral
   * alive, report push_bound); a wildcard subscriber such as `>` receives the deliveries but binds nothing.
   */
  private deliverySubscriptions(): Subscription[] {
    return this.stream.broker.exactSubscriptions(this.config.deliver_subject as string, this.config.deliver_group);
  }

  private isBound(): boolean {
    return this.deliverySubscriptions().length > 0;
  }

  /** A bound subscriber whose connection has too much output waiting, if any. */
  private backloggedReceiver(subs: Subscription[]): ClientConnection | null {
    for (const sub of subs) {
      const owner = sub.owner as ClientConnection | null;
      if (owner !== null && owner.transport.backlog > RECEIVER_BACKLOG_LIMIT) return owner;
    }
    return null;
  }

  private deliverTurn(): void {
    if (this.stopped || this.waitingForDrain) return;
    if (this.isPush) {
      const subs = this.deliverySubscriptions();
      if (subs.length === 0) {
        if (this.inactiveSince === 0) this.inactiveSince = Date.now();
        this.stream.awaitInterest(this);
        return;
      }
      this.inactiveSince = 0;
      const subject = this.config.deliver_subject as string;
      const receiver = this.backloggedReceiver(subs);
      if (receiver !== null) {
        this.waitingForDrain = true;
        receiver.whenDrained(() => {
          this.waitingForDrain = false;
          this.kick();
        });
        return;
      }
      const flowControl = this.flowControl;
      let bytes = 0;
      for (let n = 0; n < TURN_MESSAGES && bytes < TURN_BYTES; n++) {
        if (!this.canDeliverMore() || flowControl?.paused) return; // an ack or the flow-control answer kicks again
        const next = this.nextMessage();
        if (next === null) return;
        const size = this.deliver(next.msg, next.deliveries, subject);
        bytes += size;
        flowControl?.delivered(size, subject);
      }
      this.kick(); // more may be waiting; yield first
    } else {
      this.servePullRequests();
    }
  }

  private canDeliverMore(): boolean {
    const maxAckPending = this.config.max_ack_pending ?? -1;
    return this.config.ack_policy === "none" || maxAckPending <= 0 || this.pending.size < maxAckPending;
  }

  /** Redeliveries first, then the initial set, then new stream messages. */
  private nextMessage(): { msg: StoredMessage; deliveries: number } | null {
    const store = this.stream.store;
    while (this.redeliver.length > 0) {
      const sseq = this.redeliver.shift()!;
      const pending = this.pending.get(sseq);
      const msg = store.get(sseq);
      if (pending && msg) return { msg, deliveries: pending.deliveries + 1 };
    }
    while (this.initial !== null && this.initial.length > 0) {
      const seq = this.initial.shift() as number;
      const msg = store.get(seq);
      if (msg !== null) {
        this.numPending--;
        return { msg, deliveries: 1 };
      }
    }
    this.initial = null;
    const msg = store.next(this.nextSeq, this.matcher);
    if (msg === null) {
      this.nextSeq = Math.max(this.nextSeq, store.state().lastSeq + 1);
      return null;
    }
    this.nextSeq = msg.seq + 1;
    this.numPending--;
    return { msg, deliveries: 1 };
  }

  /** Publishes one message to `to` with its ack reply subject; returns the bytes sent. */
  private deliver(msg: StoredMessage, deliveries: number, to: string): number {
    const now = Date.now();
    const dseq = ++this.dseq;
    if (msg.seq > this.sseq) this.sseq = msg.seq;
    const cfg = this.config;
    const reply = this.ackReplies.subject(deliveries, msg.seq, dseq, msg.time, Math.max(0, this.numPending));
    const header = cfg.headers_only ? appendHeaders(msg.header, [["Nats-Msg-Size", String(msg.data.length)]]) : msg.header;
    const data = cfg.headers_only ? EMPTY : msg.data;
    this.stream.broker.publishInternal(to, msg.subject, reply, header, data);
    if (cfg.ack_policy === "none") {
      this.ackFloorDseq = dseq;
      this.ackFloorSseq = msg.seq;
    } else {
      const existing = this.pending.get(msg.seq);
      if (existing) {
        existing.deliveries = deliveries;
        existing.dseq = dseq;
        existing.sentAt = now;
      } else {
        this.pending.set(msg.seq, { dseq, deliveries, sentAt: now, subject: msg.subject });
      }
    }
    this.lastDeliveryAt = now;
    this.lastActivity = now;
    if (this.isDurable) this.stream.saveConsumer(this);
    return msg.subject.length + reply.length + data.length + (header?.length ?? 0);
  }

  // ---- pull ------------------------------------------------------------------------------------------

  /** A CONSUMER.MSG.NEXT request (or the request in a "+NXT" ack): queued, served, or refused at once. */
  pull(reply: string, body: string): void {
    if (this.isPush) return this.sendStatus(reply, "409 Consumer is push based");
    const now = Date.now();
    const read = readPullRequest(reply, body, this.config, now);
    if ("refused" in read) return this.sendStatus(reply, read.refused);
    const request = read.request;
    this.lastActivity = now;
    const maxWaiting = this.config.max_waiting ?? 512;
    if (this.waiting.length >= maxWaiting) this.dropAbandonedRequests();
    if (request.noWait) {
      const refusal = this.noWaitRefusal(request);
      if (refusal !== null) return this.sendStatus(reply, refusal);
    }
    if (this.waiting.length >= maxWaiting) return this.sendStatus(reply, "409 Exceeded MaxWaiting");
    this.waiting.push(request);
    this.servePullRequests();
    if (!this.waiting.includes(request)) return;
    // Each waiting request keeps its own clock: the client counts missed heartbeats against it.
    if (request.expiresAt > 0) request.timers.push(setTimeout(() => this.expire(request), request.expiresAt - now));
    if (request.heartbeatMs > 0) {
      request.timers.push(
        setInterval(
          () => {
            // A requester that left takes its request with it (else its heartbeats went on until expiry).
            if (!this.stream.broker.hasInterest(request.reply)) {
              this.dropRequest(request);
              return;
            }
            if (Date.now() - request.lastSentAt < request.heartbeatMs) return;
            this.sendStatus(request.reply, "100 Idle Heartbeat");
            request.lastSentAt = Date.now();
          },
          Math.max(request.heartbeatMs, MIN_PULL_HEARTBEAT_MS),
        ),
      );
    }
  }

  /**
   * As nats-server: a no-wait request is refused when nothing is pending (unless it may wait for an
   * expiry), or when the requests already waiting want more than is pending.
   */
  private noWaitRefusal(request: PullRequest): string | null {
    const pending = Math.max(0, this.numPending) + this.redeliver.length;
    if (pending === 0) return request.expiresAt === 0 ? "404 No Messages" : null;
    this.dropAbandonedRequests();
    let claimed = 0;
    for (const waiting of this.waiting) claimed += waiting.remaining;
    return pending < claimed ? "408 Requests Pending" : null;
  }

  private expire(request: PullRequest): void {
    if (this.dropRequest(request)) this.sendStatus(request.reply, "408 Request Timeout", pendingHeaders(request));
  }

  /** Takes a request off the queue and stops its timers; false when it was already gone. */
  private dropRequest(request: PullRequest): boolean {
    const at = this.waiting.indexOf(request);
    if (at < 0) return false;
    this.waiting.splice(at, 1);
    for (const timer of request.timers) clearTimeout(timer);
    return true;
  }

  /**
   * Drops waiting requests nobody listens for any more (the requester left or unsubscribed), as
   * nats-server does, so they neither take messages nor count in num_waiting and max_waiting.
   */
  private dropAbandonedRequests(): void {
    for (const request of [...this.waiting]) {
      if (!this.stream.broker.hasInterest(request.reply)) this.dropRequest(request);
    }
  }

  private servePullRequests(): void {
    while (this.waiting.length > 0) {
      const request = this.waiting[0];
      if (!this.stream.broker.hasInterest(request.reply)) {
        this.dropRequest(request); // nothing it is sent would arrive
        continue;
      }
      while (request.remaining > 0) {
        if (!this.canDeliverMore()) return; // blocked by max_ack_pending: even no-wait requests wait
        const next = this.nextMessage();
        if (next === null) return this.endNoWaitRequests();
        const size = next.msg.data.length + (next.msg.header?.length ?? 0);
        if (request.maxBytes > 0 && size > request.maxBytes) {
          this.putBack(next.msg, next.deliveries);
          this.dropRequest(request);
          this.sendStatus(request.reply, "409 Message Size Exceeds MaxBytes", pendingHeaders(request));
          break;
        }
        this.deliver(next.msg, next.deliveries, request.reply);
        request.remaining--;
        request.delivered++;
        request.lastSentAt = Date.now();
        if (request.maxBytes > 0) request.maxBytes -= size;
      }
      this.dropRequest(request);
    }
  }

  /**
   * At the end of the stream, no-wait requests that got something are done (408 with what they still
   * wanted); those that got nothing keep waiting for their expiry, as in nats-server.
   */
  private endNoWaitRequests(): void {
    for (const request of [...this.waiting]) {
      if (!request.noWait || request.delivered === 0) continue;
      this.dropRequest(request);
      this.sendStatus(request.reply, "408 Request Timeout", pendingHeaders(request));
    }
  }

  /** Undoes taking a message that could not be delivered (pull max_bytes). */
  private putBack(msg: StoredMessage, deliveries: number): void {
    if (deliveries > 1) this.redeliver.unshift(msg.seq);
    else {
      this.nextSeq = Math.min(this.nextSeq, msg.seq);
      this.numPending++;
    }
  }

  private sendStatus(reply: string, status: string, extra: [string, string][] = []): void {
    let text = `NATS/1.0 ${status}\r\n`;
    for (const [k, v] of extra) text += `${k}: ${v}\r\n`;
    this.stream.broker.publishInternal(reply, reply, "", Buffer.from(text + "\r\n", "latin1"), EMPTY);
  }

  // ---- acks ------------------------------------------------------------------------------------------

  /** An ack on $JS.ACK.<stream>.<consumer>.<deliveries>.<sseq>.<dseq>.<ts>.<pending>. */
  ack(sseq: number, body: string, reply: string): void {
    this.lastActivity = Date.now();
    const kind = body.trim();
    if (kind.startsWith("+NXT")) {
      // Ack and pull in one: the reply subject is the new request's, not an ack confirmation's.
      this.acknowledge(sseq);
      if (this.isDurable) this.stream.saveConsumer(this);
      if (reply !== "") this.pull(reply, kind.slice(4));
      return;
    }
    if (kind === "" || kind === "+ACK") this.acknowledge(sseq);
    else if (kind.startsWith("-NAK")) this.nak(sseq, kind.slice(4).trim());
    else if (kind === "+WPI") {
      const pending = this.pending.get(sseq);
      if (pending) pending.sentAt = Date.now();
    } else if (kind.startsWith("+TERM")) {
      const pending = this.pending.get(sseq);
      if (pending) {
        this.pending.delete(sseq);
        this.advanceAckFloor();
        this.stream.onAcked(sseq, pending.subject);
      }
    }
    if (reply !== "") this.stream.broker.publishInternal(reply, reply, "", null, EMPTY);
    if (this.isDurable) this.stream.saveConsumer(this);
    this.kick();
  }

  private acknowledge(sseq: number): void {
    if (this.config.ack_policy === "all") {
      for (const [seq, pending] of [...this.pending]) {
        if (seq <= sseq) {
          this.pending.delete(seq);
          this.stream.onAcked(seq, pending.subject);
        }
      }
    } else {
      const pending = this.pending.get(sseq);
      if (!pending) return;
      this.pending.delete(sseq);
      this.stream.onAcked(sseq, pending.subject);
    }
    this.advanceAckFloor();
  }

  private nak(sseq: number, args: string): void {
    if (!this.pending.has(sseq)) return;
    let delayMs = 0;
    if (args !== "") {
      try {
        const parsed = JSON.parse(args) as { delay?: number };
        if (typeof parsed.delay === "number") delayMs = parsed.delay / NS_PER_MS;
      } catch {
        // a malformed delay means "now"
      }
    }
    if (delayMs > 0) {
      const pending = this.pending.get(sseq) as PendingAck;
      pending.sentAt = Date.now() - this.ackWaitMs() + delayMs; // comes due after the delay
    } else {
      this.redeliver.push(sseq);
    }
  }

  private advanceAckFloor(): void {
    if (this.pending.size === 0) {
      this.ackFloorDseq = this.dseq;
      this.ackFloorSseq = this.sseq;
      return;
    }
    let minS = Infinity;
    let minD = Infinity;
    for (const [seq, p] of this.pending) {
      if (seq < minS) minS = seq;
      if (p.dseq < minD) minD = p.dseq;
    }
    this.ackFloorSseq = Math.max(this.ackFloorSseq, minS - 1);
    this.ackFloorDseq = Math.max(this.ackFloorDseq, minD - 1);
  }

  hasAcked(seq: number): boolean {
    return seq <= this.sseq && !this.pending.has(seq) && (this.initial === null || !this.initial.includes(seq));
  }

  private ackWaitMs(): number {
    return (this.config.ack_wait ?? 30_000 * NS_PER_MS) / NS_PER_MS;
  }

  // ---- timers: heartbeats, redelivery, inactivity, pull expiry ---------------------------------------

  private startTimer(): void {
    const candidates = [1000];
    if (this.config.idle_heartbeat) candidates.push(this.config.idle_heartbeat / NS_PER_MS);
    if (this.config.inactive_threshold) candidates.push(this.config.inactive_threshold / NS_PER_MS / 2);
    if (this.config.ack_policy !== "none") candidates.push(this.ackWaitMs() / 2);
    const period = Math.max(20, Math.min(...candidates));
    this.timer = setInterval(() => this.tick(), period);
    this.timer.unref();
  }

  private tick(): void {
    if (this.stopped) return;
    const now = Date.now();
    const cfg = this.config;
    if (cfg.ack_policy !== "none") this.checkAckWait(now);
    if (this.isPush) {
      const active = this.isBound();
      if (!active && this.inactiveSince === 0) this.inactiveSince = now;
      if (active) {
        if (this.inactiveSince !== 0) this.kick();
        this.inactiveSince = 0;
        const heartbeatMs = (cfg.idle_heartbeat ?? 0) / NS_PER_MS;
        if (heartbeatMs > 0 && now - this.lastDeliveryAt >= heartbeatMs) this.heartbeat(cfg.deliver_subject as string, now);
      }
    } else {
      if (this.waiting.length === 0 && this.inactiveSince === 0) this.inactiveSince = now;
      if (this.waiting.length > 0) this.inactiveSince = 0;
    }
    const thresholdMs = (cfg.inactive_threshold ?? 0) / NS_PER_MS;
    if (thresholdMs > 0 && this.inactiveSince !== 0 && now - Math.max(this.inactiveSince, this.lastActivity) >= thresholdMs) {
      this.stream.removeConsumer(this);
    }
  }

  private heartbeat(to: string, now: number): void {
    // As nats-server: the last stream sequence looked at (not only delivered), and an unanswered
    // flow-control request, which the client answers again in case the first answer was lost.
    const lastStream = this.initial === null ? Math.max(this.sseq, this.nextSeq - 1) : this.sseq;
    let text = `NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: ${this.dseq}\r\nNats-Last-Stream: ${lastStream}\r\n`;
    const stalledOn = this.flowControl?.stalledOn ?? "";
    if (stalledOn !== "") text += `Nats-Consumer-Stalled: ${stalledOn}\r\n`;
    this.stream.broker.publishInternal(to, to, "", Buffer.from(text + "\r\n", "latin1"), EMPTY);
    this.lastDeliveryAt = now;
  }

  private checkAckWait(now: number): void {
    const waitMs = this.ackWaitMs();
    const maxDeliver = this.config.max_deliver;
    let due = false;
    for (const [sseq, pending] of this.pending) {
      if (now - pending.sentAt < waitMs || this.redeliver.has(sseq)) continue;
      if (maxDeliver > 0 && pending.deliveries >= maxDeliver) continue; // stays pending, never redelivered
      this.redeliver.push(sseq);
      pending.sentAt = now;
      due = true;
    }
    if (due) this.kick();
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.flowControl?.close();
    for (const request of [...this.waiting]) {
      this.dropRequest(request);
      this.sendStatus(request.reply, "409 Consumer Deleted");
    }
  }

  info(): Record<string, unknown> {
    this.dropAbandonedRequests(); // as nats-server, num_waiting counts only requests someone still listens for
    return {
      stream_name: this.stream.name,
      name: this.name,
      created: rfc3339(this.created),
      config: this.config,
      delivered: { consumer_seq: this.dseq, stream_seq: this.sseq, ...(this.dseq > 0 ? { last_active: rfc3339(this.lastDeliveryAt) } : {}) },
      ack_floor: { consumer_seq: this.ackFloorDseq, stream_seq: this.ackFloorSseq },
      num_ack_pending: this.pending.size,
      // As nats-server: messages waiting for an ack that were delivered more than once.
      num_redelivered: [...this.pending.values()].filter((p) => p.deliveries > 1).length,
      num_waiting: this.waiting.length,
      num_pending: Math.max(0, this.numPending),
      ...(this.isPush && this.isBound() ? { push_bound: true } : {}),
    };
  }
}
