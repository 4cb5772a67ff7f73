// The JetStream API on $JS.API.> and acks on $JS.ACK.>: parses each request, calls the stream or
// consumer, and answers with nats-server's JSON shapes and error codes. Unknown endpoints get no reply,
// as from nats-server.

import { randomBytes } from "node:crypto";
import type { PubFrame } from "../parser.js";
import type { Subscription } from "../sublist.js";
import { checkConsumerConfig, checkConsumerUpdate, checkStreamConfig, checkStreamUpdate, checkWorkQueueConsumer } from "./config-checks.js";
import { checkApiOverlap, type ConsumerConfig, filterMatcher, normalizeConsumerConfig, normalizeStreamConfig, sameConfig, type StreamConfig } from "./config.js";
import { subjectsOverlap } from "../../protocol/subjects.js";
import { Consumer } from "./consumer.js";
import { ApiError, Errors } from "./errors.js";
import type { JetStream } from "./jetstream.js";
import type { Stream } from "./stream.js";
import { rfc3339 } from "./time.js";

const TYPE_PREFIX = "io.nats.jetstream.api.v1.";
const NAMES_PAGE = 1024;
const LIST_PAGE = 256;
/**
 * Consumer settings an existing consumer may change. nats-server also lets the filter subject, deliver
 * subject and deliver group change; a consumer here keeps those for its lifetime.
 */
const MUTABLE_CONSUMER_FIELDS = [
  "description",
  "ack_wait",
  "max_deliver",
  "max_ack_pending",
  "headers_only",
  "backoff",
  "inactive_threshold",
  "metadata",
  "mem_storage",
  "num_replicas",
  "max_batch",
  "max_expires",
];

interface Request {
  tokens: string[]; // subject tokens after $JS.API
  body: string;
  reply: string;
}

function parseJson(body: string): unknown {
  try {
    return JSON.parse(body);
  } catch {
    throw Errors.invalidJson();
  }
}

function jsonOrEmpty(body: string): Record<string, unknown> {
  if (body.trim() === "") return {};
  const parsed = parseJson(body);
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw Errors.invalidJson();
  return parsed as Record<string, unknown>;
}

/** A sealed stream takes no more messages and loses none: nats-server sets its limits to say so. */
function seal(config: StreamConfig): void {
  config.max_age = 0;
  config.discard = "new";
  config.deny_delete = true;
  config.deny_purge = true;
  config.allow_rollup_hdrs = false;
}

function randomName(): string {
  return randomBytes(6).toString("base64url").replace(/[-_]/g, "x").slice(0, 8);
}

export class JetStreamApi {
  private subs: Subscription[] = [];
  private total = 0;
  private errors = 0;

  constructor(private readonly js: JetStream) {}

  start(): void {
    const broker = this.js.broker;
    this.subs.push(broker.subscribeInternal("$JS.API.>", (frame) => this.onRequest(frame)));
    this.subs.push(broker.subscribeInternal("$JS.ACK.>", (frame) => this.onAck(frame)));
  }

  stop(): void {
    for (const sub of this.subs) this.js.broker.unsubscribeInternal(sub);
    this.subs = [];
  }

  private onRequest(frame: PubFrame): void {
    const subject = frame.buf.toString("latin1", frame.subjectStart, frame.subjectEnd);
    const reply = frame.buf.toString("latin1", frame.replyStart, frame.replyEnd);
    const tokens = subject.split(".").slice(2);
    if (tokens[0] === "DIRECT" || reply === "") return; // direct gets are served by their stream
    const body = frame.buf.toString("utf8", frame.payloadStart + frame.headerSize, frame.payloadStart + frame.size);
    const request: Request = { tokens, body, reply };
    const route = this.route(tokens);
    if (route === null) return;
    const [kind, handler] = route;
    this.total++;
    let response: Record<string, unknown> | null;
    try {
      response = handler(request);
    } catch (err) {
      if (!(err instanceof ApiError)) {
        this.js.broker.log.error({ err, subject }, "JetStream API failure");
        err = new ApiError(500, 10051, err instanceof Error ? err.message : String(err));
      }
      this.errors++;
      response = { error: (err as ApiError).toJSON() };
      if (kind === "stream_info_response") response = { ...response, total: 0, offset: 0, limit: 0 };
      if (kind === "stream_purge_response") response = { ...response, success: false, purged: 0 };
    }
    if (response === null) return; // answered by the handler itself (pull requests)
    this.reply(reply, { type: TYPE_PREFIX + kind, ...response });
  }

  private reply(to: string, body: object): void {
    this.js.broker.publishInternal(to, to, "", null, Buffer.from(JSON.stringify(body)));
  }

  /** Maps the subject to a response type and a handler, or null for an unknown endpoint. */
  private route(t: string[]): [string, (r: Request) => Record<string, unknown> | null] | null {
    const path = `${t[0]}.${t[1] ?? ""}`;
    if (t[0] === "INFO" && t.length === 1) return ["account_info_response", () => this.js.accountInfo(this.total, this.errors)];
    if (t[0] === "STREAM") {
      if (t[1] === "MSG" && t.length === 4) {
        if (t[2] === "GET") return ["stream_msg_get_response", (r) => this.msgGet(r)];
        if (t[2] === "DELETE") return ["stream_msg_delete_response", (r) => this.msgDelete(r)];
        return null;
      }
      if ((t[1] === "NAMES" || t[1] === "LIST") && t.length === 2) {
        return t[1] === "NAMES" ? ["stream_names_response", (r) => this.streamNames(r)] : ["stream_list_response", (r) => this.streamList(r)];
      }
      if (t.length !== 3) return null;
      switch (t[1]) {
        case "CREATE":
          return ["stream_create_response", (r) => this.streamCreate(r)];
        case "UPDATE":
          return ["stream_update_response", (r) => this.streamUpdate(r)];
        case "INFO":
          return ["stream_info_response", (r) => this.streamInfo(r)];
        case "DELETE":
          return ["stream_delete_response", (r) => this.streamDelete(r)];
        case "PURGE":
          return ["stream_purge_response", (r) => this.streamPurge(r)];
      }
      return null;
    }
    if (t[0] === "CONSUMER") {
      if (path === "CONSUMER.CREATE" && t.length >= 3) return ["consumer_create_response", (r) => this.consumerCreate(r, false)];
      if (path === "CONSUMER.DURABLE" && t[2] === "CREATE" && t.length === 5) {
        return ["consumer_create_response", (r) => this.consumerCreate(r, true)];
      }
      if (path === "CONSUMER.MSG" && t[2] === "NEXT" && t.length === 5) return ["consumer_next", (r) => this.consumerNext(r)];
      if ((t[1] === "NAMES" || t[1] === "LIST") && t.length === 3) {
        return t[1] === "NAMES"
          ? ["consumer_names_response", (r) => this.consumerNames(r)]
          : ["consumer_list_response", (r) => this.consumerList(r)];
      }
      if (t.length === 4 && t[1] === "INFO") {
        return [
          "consumer_info_response",
          (r) => {
            if (r.body.trim() !== "") throw Errors.notEmptyRequest();
            return this.consumerOf(r).info();
          },
        ];
      }
      if (t.length === 4 && t[1] === "DELETE") return ["consumer_delete_response", (r) => this.consumerDelete(r)];
    }
    return null;
  }

  private streamOf(name: string): Stream {
    const stream = this.js.streams.get(name);
    if (!stream) throw Errors.streamNotFound();
    return stream;
  }

  // ---- streams ---------------------------------------------------------------------------------------

  private streamCreate(r: Request): Record<string, unknown> {
    const config = normalizeStreamConfig(parseJson(r.body), r.tokens[2]);
    checkStreamConfig(config);
    if (config.sealed) throw Errors.streamConfig("stream configuration for create can not be sealed");
    const existing = this.js.streams.get(config.name);
    if (existing) {
      if (!sameConfig(existing.config, config)) throw Errors.streamNameInUse();
      return { ...existing.info(), did_create: true };
    }
    this.checkOverlap(config.name, config.subjects);
    checkApiOverlap(config);
    return { ...this.js.createStream(config).info(), did_create: true };
  }

  private streamUpdate(r: Request): Record<string, unknown> {
    const stream = this.streamOf(r.tokens[2]);
    const config = normalizeStreamConfig(parseJson(r.body), r.tokens[2]);
    checkStreamConfig(config);
    checkStreamUpdate(stream.config, config);
    if (config.sealed) seal(config);
    this.checkOverlap(config.name, config.subjects);
    checkApiOverlap(config);
    stream.update(config);
    this.js.saveStreamMeta(stream);
    return stream.info();
  }

  private checkOverlap(name: string, subjects: string[]): void {
    for (const other of this.js.streams.values()) {
      if (other.name === name) continue;
      if (other.config.subjects.some((a) => subjects.some((b) => subjectsOverlap(a, b)))) throw Errors.subjectOverlap();
    }
  }

  private streamInfo(r: Request): Record<string, unknown> {
    const stream = this.streamOf(r.tokens[2]);
    const request = jsonOrEmpty(r.body);
    const info: Record<string, unknown> = { total: 0, offset: 0, limit: 0, ...stream.info() };
    if (typeof request.subjects_filter === "string" && request.subjects_filter !== "") {
      const counts = stream.store.subjectCounts(filterMatcher(request.subjects_filter));
      (info.state as Record<string, unknown>).subjects = Object.fromEntries(counts);
    }
    return info;
  }

  private streamDelete(r: Request): Record<string, unknown> {
    this.js.deleteStream(this.streamOf(r.tokens[2]));
    return { success: true };
  }

  private streamPurge(r: Request): Record<string, unknown> {
    const stream = this.streamOf(r.tokens[2]);
    if (stream.config.deny_purge) throw new ApiError(400, 10110, "stream purge not permitted");
    const request = jsonOrEmpty(r.body);
    const filter = typeof request.filter === "string" && request.filter !== "" ? request.filter : undefined;
    const seq = typeof request.seq === "number" ? request.seq : 0;
    const keep = typeof request.keep === "number" ? request.keep : 0;
    if (seq > 0 && keep > 0) throw Errors.badRequest();
    const purged = stream.purge({ filter: filterMatcher(filter), beforeSeq: seq, keep });
    return { success: true, purged };
  }

  private streamNames(r: Request): Record<string, unknown> {
    const request = jsonOrEmpty(r.body);
    const offset = typeof request.offset === "number" ? Math.max(0, request.offset) : 0;
    const names = this.filteredStreams(request).map((s) => s.name);
    return { total: names.length, offset, limit: NAMES_PAGE, streams: names.slice(offset, offset + NAMES_PAGE) };
  }

  private streamList(r: Request): Record<string, unknown> {
    const request = jsonOrEmpty(r.body);
    const offset = typeof request.offset === "number" ? Math.max(0, request.offset) : 0;
    const streams = this.filteredStreams(request);
    return { total: streams.length, offset, limit: LIST_PAGE, streams: streams.slice(offset, offset + LIST_PAGE).map((s) => s.info()) };
  }

  private filteredStreams(request: Record<string, unknown>): Stream[] {
    const subject = typeof request.subject === "string" && request.subject !== "" ? request.subject : undefined;
    return [...this.js.streams.values()]
      .filter((s) => subject === undefined || s.config.subjects.some((x) => subjectsOverlap(x, subject)))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  private msgGet(r: Request): Record<string, unknown> {
    const stream = this.streamOf(r.tokens[3]);
    const request = jsonOrEmpty(r.body);
    const msg = stream.getMessage(request);
    return {
      message: {
        subject: msg.subject,
        seq: msg.seq,
        ...(msg.header ? { hdrs: msg.header.toString("base64") } : {}),
        ...(msg.data.length > 0 ? { data: msg.data.toString("base64") } : {}),
        time: rfc3339(msg.time),
      },
    };
  }

  private msgDelete(r: Request): Record<string, unknown> {
    const stream = this.streamOf(r.tokens[3]);
    const request = jsonOrEmpty(r.body);
    const seq = typeof request.seq === "number" ? request.seq : 0;
    if (seq <= 0) throw Errors.badRequest();
    stream.deleteMessage(seq);
    return { success: true };
  }

  // ---- consumers -------------------------------------------------------------------------------------

  /**
   * CONSUMER.CREATE.<stream>[.<name>[.<filter>]] and CONSUMER.DURABLE.CREATE.<stream>.<durable>.
   * The same config again returns the existing consumer; a changed config updates mutable fields only.
   */
  private consumerCreate(r: Request, durableSubject: boolean): Record<string, unknown> {
    const t = r.tokens;
    const streamName = durableSubject ? t[3] : t[2];
    const request = jsonOrEmpty(r.body);
    if (typeof request.stream_name === "string" && request.stream_name !== streamName) throw Errors.streamMismatch();
    const stream = this.streamOf(streamName);
    if (request.config === undefined || request.config === null) throw Errors.consumerConfigRequired();
    const config = normalizeConsumerConfig(request.config, stream.config);
    checkConsumerConfig(config, request.config as Record<string, unknown>, stream.config);
    const subjectName = durableSubject ? t[4] : t[3];
    if (!durableSubject && t.length === 3 && config.durable_name !== undefined) {
      throw new ApiError(400, 10020, "consumer expected to be ephemeral but a durable name was set in request");
    }
    if (durableSubject) {
      if (config.durable_name === undefined) throw new ApiError(400, 10018, "consumer expected to be durable but a durable name was not set");
      if (config.durable_name !== subjectName) throw Errors.consumerDurableNameMismatch();
    }
    const subjectFilter = !durableSubject && t.length > 4 ? t.slice(4).join(".") : undefined;
    if (subjectFilter !== undefined && subjectFilter !== (config.filter_subject ?? "")) throw Errors.consumerFilterMismatch();
    const bodyName = config.durable_name ?? config.name;
    if (subjectName !== undefined && bodyName !== undefined && subjectName !== bodyName) throw Errors.consumerDurableNameMismatch();
    const name = subjectName ?? bodyName ?? randomName();
    const existing = stream.consumers.get(name);
    if (existing) return this.updateConsumer(stream, existing, config, request.action);
    if (request.action === "update") throw Errors.consumerNotFound();
    if (stream.config.retention === "workqueue") checkWorkQueueConsumer(config, stream.consumerConfigs());
    if (stream.config.max_consumers > 0 && stream.consumers.size >= stream.config.max_consumers) {
      throw new ApiError(400, 10026, "maximum consumers limit reached");
    }
    const consumer = new Consumer(name, config, Date.now(), stream);
    stream.consumers.set(name, consumer);
    stream.saveConsumer(consumer);
    return consumer.info();
  }

  private updateConsumer(stream: Stream, existing: Consumer, config: ConsumerConfig, action: unknown): Record<string, unknown> {
    if (sameConfig(existing.config, config)) return existing.info();
    if (action === "create") throw new ApiError(400, 10148, "consumer already exists");
    checkConsumerUpdate(existing.config, config);
    const before = { ...existing.config } as Record<string, unknown>;
    const after = { ...config } as Record<string, unknown>;
    for (const field of MUTABLE_CONSUMER_FIELDS) {
      delete before[field];
      delete after[field];
    }
    if (!sameConfig(before, after)) throw Errors.consumerNameExists();
    existing.config = config;
    stream.saveConsumer(existing);
    return existing.info();
  }

  private consumerOf(r: Request): Consumer {
    const stream = this.streamOf(r.tokens[2]);
    const consumer = stream.consumers.get(r.tokens[3]);
    if (!consumer) throw Errors.consumerNotFound();
    return consumer;
  }

  private consumerDelete(r: Request): Record<string, unknown> {
    const consumer = this.consumerOf(r);
    this.streamOf(r.tokens[2]).removeConsumer(consumer);
    return { success: true };
  }

  private consumerNames(r: Request): Record<string, unknown> {
    const stream = this.streamOf(r.tokens[2]);
    const offset = Math.max(0, Number(jsonOrEmpty(r.body).offset) || 0);
    const names = [...stream.consumers.keys()].sort();
    return { total: names.length, offset, limit: NAMES_PAGE, consumers: names.slice(offset, offset + NAMES_PAGE) };
  }

  private consumerList(r: Request): Record<string, unknown> {
    const stream = this.streamOf(r.tokens[2]);
    const offset = Math.max(0, Number(jsonOrEmpty(r.body).offset) || 0);
    const consumers = [...stream.consumers.values()].sort((a, b) => (a.name < b.name ? -1 : 1));
    return { total: consumers.length, offset, limit: LIST_PAGE, consumers: consumers.slice(offset, offset + LIST_PAGE).map((c) => c.info()) };
  }

  /** Pull requests are answered with messages or a status, not with an API response. */
  private consumerNext(r: Request): null {
    const stream = this.js.streams.get(r.tokens[3]);
    const consumer = stream?.consumers.get(r.tokens[4]);
    if (!consumer) {
      this.js.broker.publishInternal(r.reply, r.reply, "", Buffer.from("NATS/1.0 404 No Messages\r\n\r\n"), Buffer.alloc(0));
      return null;
    }
    consumer.pull(r.reply, r.body);
    return null;
  }

  // ---- acks ------------------------------------------------------------------------------------------

  /** $JS.ACK.<stream>.<consumer>.<deliveries>.<sseq>.<dseq>.<ts>.<pending> */
  private onAck(frame: PubFrame): void {
    const subject = frame.buf.toString("latin1", frame.subjectStart, frame.subjectEnd);
    const t = subject.split(".");
    if (t.length !== 9) return;
    const consumer = this.js.streams.get(t[2])?.consumers.get(t[3]);
    const sseq = Number(t[5]);
    if (!consumer || !Number.isInteger(sseq)) return;
    const reply = frame.buf.toString("latin1", frame.replyStart, frame.replyEnd);
    const body = frame.buf.toString("latin1", frame.payloadStart + frame.headerSize, frame.payloadStart + frame.size);
    consumer.ack(sseq, body, reply);
  }
}
