// One stream: takes publishes on its subjects, applies de-duplication, expectations, rollups and limits,
// stores, acks, and tells its consumers. The store below it (memory or file) only keeps messages.

import type { PubFrame } from "../parser.js";
import type { Broker } from "../server.js";
import type { Subscription } from "../sublist.js";
import { type ConsumerConfig, filterMatcher, NS_PER_MS, type StreamConfig } from "./config.js";
import type { Consumer } from "./consumer.js";
import { ApiError, Errors } from "./errors.js";
import { appendHeaders, HeaderReader } from "./headers.js";
import type { MessageStore, PurgeRequest, StoreState, StoredMessage } from "./store/types.js";
import { literalFilter } from "./store/seq-index.js";
import { SubjectTransform } from "./subject-transform.js";
import { rfc3339 } from "./time.js";

const EMPTY = Buffer.alloc(0);

/**
 * Streams may republish into each other's subjects, round and round (nats-server allows it). Past this
 * depth a republish waits for the next turn of the event loop, so the loop neither overflows the stack
 * nor keeps the broker from its sockets.
 */
const MAX_REPUBLISH_NESTING = 16;
let republishNesting = 0;

interface Republisher {
  transform: SubjectTransform;
  headersOnly: boolean;
}

function republisherOf(config: StreamConfig): Republisher | null {
  const transform = config.republish ? SubjectTransform.parse(config.republish.src, config.republish.dest) : null;
  return transform ? { transform, headersOnly: config.republish?.headers_only === true } : null;
}

export interface StreamHost {
  readonly broker: Broker;
  /** Marks the stream's store for flushing before the next output leaves the broker. */
  markDirty(stream: Stream): void;
  /** Wakes the push consumer when a subscription for its deliver subject arrives. */
  awaitInterest(consumer: Consumer): void;
  forgetConsumer(consumer: Consumer): void;
  /** Persists the stream's configuration (file streams). */
  saveStreamMeta(stream: Stream): void;
  removeConsumerState(stream: Stream, consumer: Consumer): void;
  saveConsumerState(stream: Stream, consumer: Consumer): void;
}

interface Dedupe {
  seq: number;
  time: number;
}

export class Stream {
  readonly consumers = new Map<string, Consumer>();
  private readonly ingestSubs: Subscription[] = [];
  private directSubs: Subscription[] = [];
  private readonly dedupe = new Map<string, Dedupe>();
  private lastMsgId = "";
  private expiryTimer: NodeJS.Timeout | null = null;
  private republisher: Republisher | null;
  closed = false;

  constructor(
    public config: StreamConfig,
    readonly store: MessageStore,
    readonly created: number,
    private readonly host: StreamHost,
  ) {
    this.republisher = republisherOf(config);
  }

  get name(): string {
    return this.config.name;
  }

  /** Starts taking messages: ingest subscriptions, direct get, expiry. */
  start(): void {
    this.rebuildDedupe();
    this.subscribeIngest();
    this.updateDirect();
    this.scheduleExpiry();
  }

  stop(): void {
    this.closed = true;
    const broker = this.host.broker;
    for (const sub of [...this.ingestSubs, ...this.directSubs]) broker.unsubscribeInternal(sub);
    this.ingestSubs.length = 0;
    this.directSubs = [];
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    for (const consumer of this.consumers.values()) {
      consumer.stop();
      this.host.forgetConsumer(consumer);
    }
  }

  /** Applies a new configuration (subjects and limits may change; storage and name may not). */
  update(config: StreamConfig): void {
    const broker = this.host.broker;
    for (const sub of this.ingestSubs) broker.unsubscribeInternal(sub);
    this.ingestSubs.length = 0;
    this.config = config;
    this.republisher = republisherOf(config);
    this.subscribeIngest();
    this.updateDirect();
    this.enforceLimits();
    this.scheduleExpiry();
    for (const consumer of this.consumers.values()) consumer.recount();
  }

  private subscribeIngest(): void {
    const broker = this.host.broker;
    for (const subject of this.config.subjects) {
      this.ingestSubs.push(broker.subscribeInternal(subject, (frame) => this.ingest(frame)));
    }
  }

  private updateDirect(): void {
    const broker = this.host.broker;
    for (const sub of this.directSubs) broker.unsubscribeInternal(sub);
    this.directSubs = [];
    if (!this.config.allow_direct) return;
    const prefix = `$JS.API.DIRECT.GET.${this.name}`;
    this.directSubs.push(broker.subscribeInternal(prefix, (frame) => this.directGet(frame, null)));
    this.directSubs.push(
      broker.subscribeInternal(`${prefix}.>`, (frame) => {
        const subject = frame.buf.toString("latin1", frame.subjectStart, frame.subjectEnd);
        this.directGet(frame, subject.slice(prefix.length + 1));
      }),
    );
  }

  // ---- publishing ------------------------------------------------------------------------------------

  private ingest(frame: PubFrame): void {
    if (this.closed) return;
    const reply = frame.buf.toString("latin1", frame.replyStart, frame.replyEnd);
    const subject = frame.buf.toString("latin1", frame.subjectStart, frame.subjectEnd);
    const headerEnd = frame.payloadStart + frame.headerSize;
    // Views into the read buffer, valid during this call: the stores copy what they keep.
    const header = frame.hasHeaders ? frame.buf.subarray(frame.payloadStart, headerEnd) : null;
    const data = frame.buf.subarray(headerEnd, frame.payloadStart + frame.size);
    let ack: string;
    try {
      const result = this.store_(subject, header, data);
      ack = result.duplicate
        ? `{"stream":${JSON.stringify(this.name)}, "seq":${result.seq},"duplicate": true}`
        : `{"stream":${JSON.stringify(this.name)}, "seq":${result.seq}}`;
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      ack = JSON.stringify({ error: err.toJSON(), stream: this.name, seq: 0 });
    }
    if (reply !== "") this.host.broker.publishInternal(reply, reply, "", null, Buffer.from(ack));
  }

  /** Stores one message after every check; throws ApiError with the reason it was refused. */
  private store_(subject: string, header: Buffer | null, data: Buffer): { seq: number; duplicate: boolean } {
    const cfg = this.config;
    const now = Date.now();
    const headers = new HeaderReader(header);
    const msgId = headers.get("Nats-Msg-Id");
    if (msgId) {
      this.pruneDedupe(now);
      const seen = this.dedupe.get(msgId);
      if (seen !== undefined) return { seq: seen.seq, duplicate: true };
    }
    if (cfg.sealed) throw new ApiError(400, 10109, "invalid operation on sealed stream");
    if (header !== null) this.checkExpectations(subject, headers);
    const rollup = headers.get("Nats-Rollup");
    if (rollup !== undefined) {
      if (!cfg.allow_rollup_hdrs || cfg.deny_purge) throw Errors.rollupNotPermitted();
      if (rollup !== "sub" && rollup !== "all") throw Errors.rollupInvalid(rollup);
    }
    const size = (header ? header.length : 0) + data.length;
    if (cfg.max_msg_size > 0 && size > cfg.max_msg_size) throw Errors.messageTooLarge();
    if (size > this.host.broker.options.maxPayload) throw Errors.messageTooLarge();
    if (cfg.discard_new_per_subject && this.store.countOnSubject(subject) >= cfg.max_msgs_per_subject) {
      throw Errors.maximumMessagesPerSubjectExceeded();
    }
    if (cfg.discard === "new" && (cfg.max_msgs > 0 || cfg.max_bytes > 0)) {
      const state = this.store.state();
      if (cfg.max_msgs > 0 && state.messages + 1 > cfg.max_msgs) throw Errors.maximumMessagesExceeded();
      if (cfg.max_bytes > 0 && state.bytes + this.store.sizeOf(subject, header, data) > cfg.max_bytes) {
        throw Errors.maximumBytesExceeded();
      }
    }
    const republishTo = this.republisher?.transform.apply(subject) ?? null;
    const lastOnSubject = republishTo === null ? 0 : (this.store.lastSeqsPerSubject(literalFilter(subject))[0] ?? 0);
    const seq = this.store.append(subject, header, data, now);
    this.host.markDirty(this);
    if (republishTo !== null) this.republish(republishTo, subject, seq, lastOnSubject, header, data);
    if (msgId) {
      this.dedupe.set(msgId, { seq, time: now });
      this.lastMsgId = msgId;
    }
    if (rollup === "sub") this.purge({ filter: literalFilter(subject), beforeSeq: seq, keep: 0 });
    else if (rollup === "all") this.purge({ filter: null, beforeSeq: seq, keep: 0 });
    this.enforceLimits(subject);
    for (const consumer of this.consumers.values()) consumer.onStored(seq, subject);
    return { seq, duplicate: false };
  }

  /** The stored message again on its mapped subject, with where it is stored (nats-server's republish). */
  private republish(to: string, subject: string, seq: number, lastOnSubject: number, header: Buffer | null, data: Buffer): void {
    const headersOnly = (this.republisher as Republisher).headersOnly;
    const entries: [string, string][] = [
      ["Nats-Stream", this.name],
      ["Nats-Subject", subject],
      ["Nats-Sequence", String(seq)],
      ["Nats-Last-Sequence", String(lastOnSubject)],
    ];
    if (headersOnly) entries.push(["Nats-Msg-Size", String(data.length)]);
    const block = appendHeaders(header, entries);
    const body = headersOnly ? EMPTY : data;
    const broker = this.host.broker;
    if (republishNesting >= MAX_REPUBLISH_NESTING) {
      const kept = Buffer.from(body); // `data` is a view into the read buffer, valid during this call only
      setImmediate(() => broker.publishInternal(to, to, "", block, kept));
      return;
    }
    republishNesting++;
    try {
      broker.publishInternal(to, to, "", block, body);
    } finally {
      republishNesting--;
    }
  }

  private checkExpectations(subject: string, headers: HeaderReader): void {
    const expectedStream = headers.get("Nats-Expected-Stream");
    if (expectedStream !== undefined && expectedStream !== this.name) throw Errors.expectedStreamMismatch();
    const expectedLast = headers.get("Nats-Expected-Last-Sequence");
    if (expectedLast !== undefined) {
      const last = this.store.state().lastSeq;
      if (Number(expectedLast) !== last) throw Errors.wrongLastSequence(last);
    }
    const expectedSubjectLast = headers.get("Nats-Expected-Last-Subject-Sequence");
    if (expectedSubjectLast !== undefined) {
      const last = this.store.lastOnSubject(subject)?.seq ?? 0;
      if (Number(expectedSubjectLast) !== last) throw Errors.wrongLastSequence(last);
    }
    const expectedMsgId = headers.get("Nats-Expected-Last-Msg-Id");
    if (expectedMsgId !== undefined && expectedMsgId !== this.lastMsgId) throw Errors.wrongLastMsgId(this.lastMsgId);
  }

  /** After a restart, the Nats-Msg-Id de-duplication window comes back from the stored messages in it. */
  private rebuildDedupe(): void {
    const since = Date.now() - this.config.duplicate_window / NS_PER_MS;
    for (const seq of this.store.seqsSince(since)) {
      const msg = this.store.get(seq);
      const id = msg ? new HeaderReader(msg.header).get("Nats-Msg-Id") : undefined;
      if (msg && id) {
        this.dedupe.set(id, { seq, time: msg.time });
        this.lastMsgId = id;
      }
    }
  }

  private pruneDedupe(now: number): void {
    const windowMs = this.config.duplicate_window / NS_PER_MS;
    for (const [id, entry] of this.dedupe) {
      if (now - entry.time < windowMs) break; // insertion order is time order
      this.dedupe.delete(id);
    }
  }

  /** Drops the oldest messages until the stream is within max_msgs, max_bytes and max_msgs_per_subject. */
  private enforceLimits(subject?: string): void {
    const cfg = this.config;
    let removed = false;
    if (cfg.max_msgs_per_subject > 0 && subject !== undefined) {
      while (this.store.countOnSubject(subject) > cfg.max_msgs_per_subject) {
        removed = this.removeSeq(this.store.firstSeqOnSubject(subject)) || removed;
      }
    }
    if (cfg.max_msgs > 0 || cfg.max_bytes > 0) {
      const over = (s: StoreState): boolean => (cfg.max_msgs > 0 && s.messages > cfg.max_msgs) || (cfg.max_bytes > 0 && s.bytes > cfg.max_bytes);
      removed = this.dropOldestWhile(over) || removed;
    }
    if (removed) this.host.markDirty(this);
  }

  /** Removes the oldest message for as long as the store's state is over a limit; whether any went. */
  private dropOldestWhile(over: (state: StoreState) => boolean): boolean {
    let removed = false;
    for (let s = this.store.state(); over(s) && this.removeSeq(s.firstSeq); s = this.store.state()) removed = true;
    return removed;
  }

  /** Removes one message and tells the consumers; the message itself is not loaded. */
  private removeSeq(seq: number): boolean {
    const subject = this.store.subjectOf(seq);
    if (subject === null || !this.store.remove(seq)) return false;
    for (const consumer of this.consumers.values()) consumer.onRemoved(seq, subject);
    return true;
  }

  private scheduleExpiry(): void {
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    this.expiryTimer = null;
    const maxAgeMs = this.config.max_age / NS_PER_MS;
    if (maxAgeMs <= 0 || this.closed) return;
    this.expiryTimer = setTimeout(() => {
      this.expire(maxAgeMs);
      this.scheduleExpiry();
    }, Math.max(10, Math.min(maxAgeMs / 4, 1000)));
    this.expiryTimer.unref();
  }

  private expire(maxAgeMs: number): void {
    const cutoff = Date.now() - maxAgeMs;
    let removed = false;
    for (let msg = this.store.next(0, null); msg !== null && msg.time <= cutoff; msg = this.store.next(msg.seq + 1, null)) {
      removed = this.removeSeq(msg.seq) || removed;
    }
    if (removed) {
      this.host.markDirty(this);
      this.host.broker.flush(null);
    }
  }

  // ---- removal ---------------------------------------------------------------------------------------

  purge(request: PurgeRequest): number {
    const purged = this.store.purge(request);
    if (purged > 0) {
      this.host.markDirty(this);
      for (const consumer of this.consumers.values()) consumer.recount();
    }
    return purged;
  }

  deleteMessage(seq: number): void {
    if (this.config.deny_delete) throw new ApiError(400, 10057, "message delete not permitted");
    if (!this.removeSeq(seq)) throw Errors.sequenceNotFound(seq);
    this.host.markDirty(this);
  }

  /** After a consumer acked: workqueue streams drop the message; interest streams once every consumer has. */
  onAcked(seq: number, subject: string): void {
    const retention = this.config.retention;
    if (retention === "limits") return;
    if (retention === "interest") {
      for (const consumer of this.consumers.values()) if (consumer.matches(subject) && !consumer.hasAcked(seq)) return;
    }
    if (this.removeSeq(seq)) this.host.markDirty(this);
  }

  // ---- reading ---------------------------------------------------------------------------------------

  /** STREAM.MSG.GET: by sequence, last by subject, or next by subject from a sequence. */
  getMessage(request: Record<string, unknown>): StoredMessage {
    const seq = typeof request.seq === "number" ? request.seq : 0;
    let msg: StoredMessage | null = null;
    if (typeof request.last_by_subj === "string" && request.last_by_subj !== "") {
      const filter = request.last_by_subj;
      msg = filter.includes("*") || filter.includes(">") ? this.lastMatching(filter) : this.store.lastOnSubject(filter);
    } else if (typeof request.next_by_subj === "string" && request.next_by_subj !== "") {
      msg = this.store.next(Math.max(seq, 1), filterMatcher(request.next_by_subj));
    } else if (seq > 0) {
      msg = this.store.get(seq);
    } else {
      throw Errors.badRequest();
    }
    if (msg === null) throw Errors.noMessageFound();
    return msg;
  }

  private lastMatching(filter: string): StoredMessage | null {
    const seqs = this.store.lastSeqsPerSubject(filterMatcher(filter));
    return seqs.length > 0 ? this.store.get(seqs[seqs.length - 1]) : null;
  }

  /** DIRECT.GET: answers with the stored message itself plus Nats-Stream/Subject/Sequence/Time-Stamp headers. */
  private directGet(frame: PubFrame, lastBySubject: string | null): void {
    const reply = frame.buf.toString("latin1", frame.replyStart, frame.replyEnd);
    if (reply === "") return;
    const broker = this.host.broker;
    const body = frame.buf.toString("utf8", frame.payloadStart + frame.headerSize, frame.payloadStart + frame.size);
    let msg: StoredMessage | null = null;
    if (lastBySubject !== null) {
      if (body.trim() !== "") return this.directStatus(reply, "408 Bad Request");
      msg = this.store.lastOnSubject(lastBySubject);
    } else {
      if (body.trim() === "") return this.directStatus(reply, "408 Empty Request");
      let request: unknown;
      try {
        request = JSON.parse(body);
      } catch {
        return this.directStatus(reply, "408 Malformed Request");
      }
      try {
        msg = this.getMessage(request as Record<string, unknown>);
      } catch {
        msg = null;
      }
    }
    if (msg === null) return this.directStatus(reply, "404 Message Not Found");
    const extra =
      `Nats-Stream: ${this.name}\r\nNats-Subject: ${msg.subject}\r\nNats-Sequence: ${msg.seq}\r\n` +
      `Nats-Time-Stamp: ${rfc3339(msg.time)}\r\n`;
    const base = msg.header ? msg.header.toString("latin1").replace(/\r\n\r\n$/, "\r\n") : "NATS/1.0\r\n";
    broker.publishInternal(reply, reply, "", Buffer.from(`${base}${extra}\r\n`, "latin1"), msg.data);
  }

  private directStatus(reply: string, status: string): void {
    this.host.broker.publishInternal(reply, reply, "", Buffer.from(`NATS/1.0 ${status}\r\n\r\n`, "latin1"), Buffer.alloc(0));
  }

  // ---- info ------------------------------------------------------------------------------------------

  stateJson(): Record<string, unknown> {
    const s = this.store.state();
    const empty = s.messages === 0;
    return {
      messages: s.messages,
      bytes: s.bytes,
      first_seq: s.lastSeq === 0 ? 0 : s.firstSeq,
      first_ts: rfc3339(empty ? 0 : s.firstTime),
      last_seq: s.lastSeq,
      last_ts: rfc3339(s.lastTime),
      ...(s.numSubjects > 0 ? { num_subjects: s.numSubjects } : {}),
      ...(s.numDeleted > 0 ? { num_deleted: s.numDeleted } : {}),
      consumer_count: this.consumers.size,
    };
  }

  info(): Record<string, unknown> {
    return { config: this.config, created: rfc3339(this.created), state: this.stateJson() };
  }

  /** Consumers persist through the host. */
  saveConsumer(consumer: Consumer): void {
    this.host.saveConsumerState(this, consumer);
  }

  awaitInterest(consumer: Consumer): void {
    this.host.awaitInterest(consumer);
  }

  removeConsumer(consumer: Consumer): void {
    if (this.consumers.get(consumer.name) !== consumer) return;
    this.consumers.delete(consumer.name);
    consumer.stop();
    this.host.forgetConsumer(consumer);
    this.host.removeConsumerState(this, consumer);
  }

  /** Exposed for consumers: the broker to deliver through. */
  get broker(): Broker {
    return this.host.broker;
  }

  consumerConfigs(): ConsumerConfig[] {
    return [...this.consumers.values()].map((c) => c.config);
  }
}
