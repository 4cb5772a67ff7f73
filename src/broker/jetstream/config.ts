// Stream and consumer configurations: the JSON shapes of the JetStream API, their defaults as
// nats-server 2.9.10 fills them in, and validation with nats-server's error codes and texts.

import { ApiError, Errors } from "./errors.js";
import { isValidSubscriptionSubject, subjectIsSubset, subjectsOverlap } from "../../protocol/subjects.js";
import { literalFilter } from "./store/seq-index.js";

export const NS_PER_MS = 1_000_000;
const DEFAULT_DUPLICATE_WINDOW_NS = 120_000 * NS_PER_MS;
const DEFAULT_ACK_WAIT_NS = 30_000 * NS_PER_MS;
const DEFAULT_EPHEMERAL_INACTIVE_NS = 5_000 * NS_PER_MS;

export interface StreamConfig {
  name: string;
  description?: string;
  subjects: string[];
  retention: "limits" | "interest" | "workqueue";
  max_consumers: number;
  max_msgs: number;
  max_bytes: number;
  max_age: number; // ns
  max_msgs_per_subject: number;
  max_msg_size: number;
  discard: "old" | "new";
  discard_new_per_subject?: boolean;
  storage: "file" | "memory";
  num_replicas: number;
  duplicate_window: number; // ns
  allow_direct: boolean;
  mirror_direct: boolean;
  sealed: boolean;
  deny_delete: boolean;
  deny_purge: boolean;
  allow_rollup_hdrs: boolean;
  placement?: unknown;
  republish?: RePublish;
  metadata?: Record<string, string>;
}

/** Each stored message whose subject matches `src` is also published to `dest` (mapped). */
export interface RePublish {
  src: string;
  dest: string;
  headers_only?: boolean;
}

export interface ConsumerConfig {
  durable_name?: string;
  name?: string;
  description?: string;
  deliver_subject?: string;
  deliver_group?: string;
  deliver_policy: "all" | "last" | "new" | "by_start_sequence" | "by_start_time" | "last_per_subject";
  opt_start_seq?: number;
  opt_start_time?: string;
  ack_policy: "none" | "all" | "explicit";
  ack_wait?: number; // ns
  max_deliver: number;
  filter_subject?: string;
  replay_policy: "instant" | "original";
  sample_freq?: string; // e.g. "50%": kept for clients, no ack samples are sent
  max_waiting?: number;
  max_ack_pending?: number;
  flow_control?: boolean;
  idle_heartbeat?: number; // ns
  headers_only?: boolean;
  inactive_threshold?: number; // ns
  num_replicas: number;
  mem_storage?: boolean;
  max_batch?: number;
  max_expires?: number;
  max_bytes?: number; // largest max_bytes a pull request may ask for
  backoff?: number[];
  metadata?: Record<string, string>;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function intOr(value: unknown, fallback: number): number {
  return typeof value === "number" && Number.isFinite(value) ? Math.trunc(value) : fallback;
}

/** A field of the wrong JSON type fails decoding in nats-server: "invalid JSON". */
function numberField(raw: Record<string, unknown>, key: string): void {
  const v = raw[key];
  if (v !== undefined && v !== null && typeof v !== "number") throw Errors.invalidJson();
}

/** Zero or absent means "unlimited" (-1) for the stream limits. */
function limit(value: unknown): number {
  const n = intOr(value, -1);
  return n === 0 ? -1 : n;
}

/** An enum field; an unknown value fails decoding in nats-server ("invalid JSON"). */
function oneOf<T extends string>(value: unknown, allowed: readonly T[], fallback: T): T {
  if (value === undefined || value === null || value === "") return fallback;
  if (typeof value === "string" && (allowed as readonly string[]).includes(value)) return value as T;
  throw Errors.invalidJson();
}

/** Stream and consumer names: no whitespace, '.', '*', '>' or path separators. */
export function isValidName(name: string): boolean {
  return name.length > 0 && !/[\s.*>/\\]/.test(name);
}

/** nats-server's limit on stream and consumer names, in bytes. */
const MAX_NAME_BYTES = 255;

function checkStreamName(name: string): void {
  if (name === "" || /[\s.*>]/.test(name)) throw Errors.streamConfig("stream name is required and can not contain '.', '*', '>'");
  if (/[/\\]/.test(name)) throw Errors.streamNameInvalid();
  if (Buffer.byteLength(name) > MAX_NAME_BYTES) throw Errors.streamConfig(`stream name is too long, maximum allowed is ${MAX_NAME_BYTES}`);
}

const API_PREFIXES = ["$JS.API.>", "$JS.ACK.>", "$JS.FC.>"];

export function normalizeStreamConfig(raw: unknown, nameFromSubject: string): StreamConfig {
  if (!isRecord(raw)) throw Errors.invalidJson();
  for (const key of ["max_consumers", "max_msgs", "max_bytes", "max_age", "max_msgs_per_subject", "max_msg_size", "num_replicas", "duplicate_window"]) {
    numberField(raw, key);
  }
  if (raw.name !== undefined && typeof raw.name !== "string") throw Errors.invalidJson();
  if (raw.subjects !== undefined && raw.subjects !== null && !(Array.isArray(raw.subjects) && raw.subjects.every((s) => typeof s === "string"))) {
    throw Errors.invalidJson();
  }
  const name = typeof raw.name === "string" ? raw.name : "";
  if (name !== nameFromSubject) throw Errors.streamMismatch(); // a missing name too, as nats-server
  checkStreamName(name);
  let subjects = (raw.subjects as string[] | undefined | null) ?? [];
  if (subjects.length === 0) subjects = [name];
  const maxAge = intOr(raw.max_age, 0);
  // As nats-server: an unset window follows a shorter max_age, even a negative one (refused later).
  let duplicateWindow = intOr(raw.duplicate_window, 0);
  if (duplicateWindow === 0) duplicateWindow = maxAge !== 0 && maxAge < DEFAULT_DUPLICATE_WINDOW_NS ? maxAge : DEFAULT_DUPLICATE_WINDOW_NS;
  const config: StreamConfig = {
    name,
    ...(typeof raw.description === "string" && raw.description ? { description: raw.description } : {}),
    subjects,
    retention: oneOf(raw.retention, ["limits", "interest", "workqueue"] as const, "limits"),
    max_consumers: limit(raw.max_consumers),
    max_msgs: limit(raw.max_msgs),
    max_bytes: limit(raw.max_bytes),
    max_age: maxAge,
    max_msgs_per_subject: limit(raw.max_msgs_per_subject),
    max_msg_size: limit(raw.max_msg_size),
    discard: oneOf(raw.discard, ["old", "new"] as const, "old"),
    ...(raw.discard_new_per_subject === true ? { discard_new_per_subject: true } : {}),
    storage: oneOf(raw.storage, ["file", "memory"] as const, "file"),
    num_replicas: intOr(raw.num_replicas, 0) || 1, // checked by checkStreamConfig
    duplicate_window: duplicateWindow,
    ...(isRecord(raw.republish) ? { republish: normalizeRepublish(raw.republish) } : {}),
    allow_direct: raw.allow_direct === true,
    mirror_direct: raw.mirror_direct === true,
    sealed: raw.sealed === true,
    deny_delete: raw.deny_delete === true,
    deny_purge: raw.deny_purge === true,
    allow_rollup_hdrs: raw.allow_rollup_hdrs === true,
  };
  if (raw.placement !== undefined && raw.placement !== null) config.placement = raw.placement;
  if (isRecord(raw.metadata)) config.metadata = raw.metadata as Record<string, string>;
  return config;
}

function normalizeRepublish(raw: Record<string, unknown>): RePublish {
  if (["src", "dest"].some((key) => raw[key] !== undefined && typeof raw[key] !== "string")) throw Errors.invalidJson();
  const src = typeof raw.src === "string" && raw.src !== "" ? raw.src : ">"; // nats-server's default: every subject
  return { src, dest: (raw.dest as string | undefined) ?? "", ...(raw.headers_only === true ? { headers_only: true } : {}) };
}

/** Checked after the overlap with other streams, as nats-server orders its errors. */
export function checkApiOverlap(config: StreamConfig): void {
  if (config.subjects.some((subject) => API_PREFIXES.some((api) => subjectsOverlap(api, subject)))) {
    throw Errors.streamConfig("subjects overlap with jetstream api");
  }
}

/** A predicate for a (possibly wildcard) filter subject; null when there is no filter. */
export function filterMatcher(filter: string | undefined): ((subject: string) => boolean) | null {
  if (!filter || filter === ">") return null;
  if (!filter.includes("*") && !filter.includes(">")) return literalFilter(filter); // lets the store use its subject index
  const tokens = filter.split(".");
  return (subject) => {
    const ts = subject.split(".");
    for (let i = 0; i < tokens.length; i++) {
      const t = tokens[i];
      if (t === ">") return ts.length > i;
      if (i >= ts.length) return false;
      if (t !== "*" && t !== ts[i]) return false;
    }
    return ts.length === tokens.length;
  };
}

export function normalizeConsumerConfig(raw: unknown, stream: StreamConfig): ConsumerConfig {
  if (!isRecord(raw)) throw Errors.consumerConfigRequired();
  const str = (v: unknown): string | undefined => (typeof v === "string" && v !== "" ? v : undefined);
  const durable = str(raw.durable_name);
  const name = str(raw.name);
  if ([durable, name].some((n) => n !== undefined && Buffer.byteLength(n) > MAX_NAME_BYTES)) throw Errors.consumerNameTooLong(MAX_NAME_BYTES);
  if (durable !== undefined && !isValidName(durable)) throw Errors.consumerBadDurableName();
  if (name !== undefined && !isValidName(name)) throw new ApiError(400, 10127, "Consumer name can not contain path separators");
  if (durable !== undefined && name !== undefined && durable !== name) {
    throw new ApiError(400, 10132, "Consumer Durable and Name have to be equal if both are provided");
  }
  const deliverSubject = str(raw.deliver_subject);
  const push = deliverSubject !== undefined;
  if (push) {
    if (!isValidSubscriptionSubject(deliverSubject)) throw Errors.consumerInvalidDeliverSubject();
    if (deliverSubject.split(".").some((t) => t === "*" || t === ">")) throw Errors.consumerDeliverToWildcards();
  }
  const heartbeat = intOr(raw.idle_heartbeat, 0);
  if (heartbeat > 0 && !push) throw new ApiError(400, 10088, "consumer idle heartbeat requires a push based consumer");
  if (heartbeat > 0 && heartbeat < 100 * NS_PER_MS) throw Errors.consumerSmallHeartbeat();
  if (raw.flow_control === true) {
    if (!push) throw new ApiError(400, 10089, "consumer flow control requires a push based consumer");
    if (heartbeat <= 0) throw Errors.consumerFlowControlNeedsHeartbeat();
  }
  const deliverPolicy = oneOfConsumer(raw.deliver_policy, ["all", "last", "new", "by_start_sequence", "by_start_time", "last_per_subject"] as const, "all");
  const ackPolicy = oneOfConsumer(raw.ack_policy, ["none", "all", "explicit"] as const, push ? "none" : "explicit");
  const optStartSeq = intOr(raw.opt_start_seq, 0);
  const optStartTime = str(raw.opt_start_time);
  const filter = str(raw.filter_subject);
  if (filter !== undefined) {
    if (!isValidSubscriptionSubject(filter)) throw Errors.consumerFilterNotSubset();
    // As nats-server: the filter is within a stream subject or covers one; merely overlapping is not enough.
    if (!stream.subjects.some((s) => subjectIsSubset(filter, s) || subjectIsSubset(s, filter))) throw Errors.consumerFilterNotSubset();
  }
  if (stream.retention === "workqueue" && ackPolicy !== "explicit") throw Errors.workqueueRequiresExplicitAck();
  if (push && raw.max_waiting !== undefined && intOr(raw.max_waiting, 0) !== 0) throw Errors.consumerPushMaxWaiting();
  const backoff = Array.isArray(raw.backoff) ? (raw.backoff as unknown[]).map((v) => intOr(v, 0)) : undefined;
  const config: ConsumerConfig = {
    ...(durable !== undefined ? { durable_name: durable } : {}),
    ...(name !== undefined || durable !== undefined ? { name: name ?? durable } : {}), // nats-server names a durable after itself
    ...(str(raw.description) !== undefined ? { description: str(raw.description) } : {}),
    ...(push ? { deliver_subject: deliverSubject } : {}),
    ...(str(raw.deliver_group) !== undefined ? { deliver_group: str(raw.deliver_group) } : {}),
    deliver_policy: deliverPolicy,
    ...(optStartSeq > 0 ? { opt_start_seq: optStartSeq } : {}),
    ...(optStartTime !== undefined ? { opt_start_time: optStartTime } : {}),
    ack_policy: ackPolicy,
    ...ackWait(raw, ackPolicy, backoff),
    max_deliver: intOr(raw.max_deliver, 0) || -1, // nats-server keeps a negative value (no limit, as -1)
    ...(filter !== undefined ? { filter_subject: filter } : {}),
    replay_policy: oneOfConsumer(raw.replay_policy, ["instant", "original"] as const, "instant"),
    ...(str(raw.sample_freq) !== undefined ? { sample_freq: str(raw.sample_freq) } : {}),
    ...(!push ? { max_waiting: intOr(raw.max_waiting, 0) > 0 ? intOr(raw.max_waiting, 0) : 512 } : {}),
    ...maxAckPending(raw, ackPolicy),
    ...(raw.flow_control === true ? { flow_control: true } : {}),
    ...(heartbeat > 0 ? { idle_heartbeat: heartbeat } : {}),
    ...(raw.headers_only === true ? { headers_only: true } : {}),
    num_replicas: intOr(raw.num_replicas, 0) === 1 ? 1 : 0, // as asked (more is refused by checkConsumerConfig)
    ...(raw.mem_storage === true ? { mem_storage: true } : {}),
    ...(intOr(raw.max_batch, 0) > 0 ? { max_batch: intOr(raw.max_batch, 0) } : {}),
    ...(intOr(raw.max_expires, 0) > 0 ? { max_expires: intOr(raw.max_expires, 0) } : {}),
    ...(intOr(raw.max_bytes, 0) > 0 ? { max_bytes: intOr(raw.max_bytes, 0) } : {}),
    ...(backoff !== undefined ? { backoff } : {}),
    ...(isRecord(raw.metadata) ? { metadata: raw.metadata as Record<string, string> } : {}),
  };
  const inactive = intOr(raw.inactive_threshold, 0);
  if (inactive > 0) config.inactive_threshold = inactive;
  else if (durable === undefined) config.inactive_threshold = DEFAULT_EPHEMERAL_INACTIVE_NS;
  return config;
}

/**
 * nats-server waits for the first backoff before a redelivery, whatever the ack policy; else ack_wait or
 * 30 s. A wait that is not positive (nats-server keeps it) is not taken: it would redeliver at once, always.
 */
function ackWait(raw: Record<string, unknown>, ackPolicy: ConsumerConfig["ack_policy"], backoff: number[] | undefined): { ack_wait?: number } {
  if (backoff !== undefined && backoff.length > 0 && backoff[0] > 0) return { ack_wait: backoff[0] };
  if (ackPolicy === "none") return {};
  const asked = intOr(raw.ack_wait, 0);
  return { ack_wait: asked > 0 ? asked : DEFAULT_ACK_WAIT_NS };
}

/** As nats-server: kept as asked (a negative value is no limit), else 1000 when acks are expected. */
function maxAckPending(raw: Record<string, unknown>, ackPolicy: ConsumerConfig["ack_policy"]): { max_ack_pending?: number } {
  const asked = intOr(raw.max_ack_pending, 0);
  if (asked !== 0) return { max_ack_pending: asked };
  return ackPolicy === "none" ? {} : { max_ack_pending: 1000 };
}

/** A durable's saved config from before durables carried `name`, as normalizeConsumerConfig gives it now. */
export function withDurableName(config: ConsumerConfig): ConsumerConfig {
  if (config.durable_name === undefined || config.name !== undefined) return config;
  return { durable_name: config.durable_name, name: config.durable_name, ...config };
}

function oneOfConsumer<T extends string>(value: unknown, allowed: readonly T[], fallback: T): T {
  if (value === undefined || value === null || value === "") return fallback;
  if (typeof value === "string" && (allowed as readonly string[]).includes(value)) return value as T;
  throw Errors.consumerInvalidPolicy(`invalid value ${JSON.stringify(value)}`);
}

/** Configs compare equal when their normalized JSON is the same (create is idempotent then). */
export function sameConfig(a: object, b: object): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
