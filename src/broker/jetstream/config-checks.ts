// The stream and consumer configurations nats-server 2.9.10 refuses, with its codes and texts, checked
// on configurations that already have their defaults. Clients (and people) see these texts, so they are
// copied as nats-server words them, typos included.

import { isValidSubscriptionSubject, subjectsOverlap } from "../../protocol/subjects.js";
import { type ConsumerConfig, NS_PER_MS, type StreamConfig } from "./config.js";
import { Errors } from "./errors.js";
import { SubjectTransform } from "./subject-transform.js";

const MAX_DESCRIPTION_BYTES = 4096;
const INT64_MAX = 2n ** 63n - 1n;
const MAX_STREAM_REPLICAS = 5;
const MIN_WINDOW_NS = 100 * NS_PER_MS;
const MIN_MAX_EXPIRES_NS = NS_PER_MS;

function tooLong(description: string | undefined): boolean {
  return description !== undefined && Buffer.byteLength(description) > MAX_DESCRIPTION_BYTES;
}

/** Every check of a stream configuration, in nats-server's order. */
export function checkStreamConfig(cfg: StreamConfig): void {
  if (tooLong(cfg.description)) throw Errors.streamConfig(`stream description is too long, maximum allowed is ${MAX_DESCRIPTION_BYTES}`);
  if (cfg.num_replicas > MAX_STREAM_REPLICAS) throw Errors.streamConfig(`maximum replicas is ${MAX_STREAM_REPLICAS}`);
  if (cfg.num_replicas < 0) throw Errors.replicasNegative();
  checkWindows(cfg);
  if (cfg.mirror_direct) throw Errors.streamConfig("stream has no mirror but does have mirror direct"); // no mirrors here
  if (cfg.deny_purge && cfg.allow_rollup_hdrs) throw Errors.streamConfig("roll-ups require the purge permission");
  if (cfg.discard_new_per_subject) {
    if (cfg.discard !== "new") throw Errors.streamConfig("discard new per subject requires discard new policy to be set");
    if (cfg.max_msgs_per_subject <= 0) throw Errors.streamConfig("discard new per subject requires max msgs per subject > 0");
  }
  checkSubjects(cfg.subjects);
  if (cfg.republish) checkRepublish(cfg);
  if (cfg.num_replicas > 1) throw Errors.replicasNotSupported();
}

/** max_age and duplicate_window; a negative max_age shows up as a negative (defaulted) window. */
function checkWindows(cfg: StreamConfig): void {
  const maxAge = cfg.max_age;
  const window = cfg.duplicate_window;
  if (maxAge > 0 && maxAge < MIN_WINDOW_NS) throw Errors.streamConfig("max age needs to be >= 100ms");
  if (window < 0) throw Errors.streamConfig("duplicates window can not be negative");
  if (maxAge !== 0 && window > maxAge) throw Errors.streamConfig("duplicates window can not be larger then max age");
  if (window > 0 && window < MIN_WINDOW_NS) throw Errors.streamConfig("duplicates window needs to be >= 100ms");
}

function checkSubjects(subjects: string[]): void {
  const seen = new Set<string>();
  for (const subject of subjects) {
    if (seen.has(subject)) throw Errors.streamConfig("duplicate subjects detected");
    if (!isValidSubscriptionSubject(subject)) throw Errors.streamConfig("invalid subject");
    seen.add(subject);
  }
  // Overlapping subjects would store a message twice.
  for (const subject of subjects) {
    for (const other of subjects) {
      if (other !== subject && subjectsOverlap(other, subject)) {
        throw Errors.streamConfig(`subject ${JSON.stringify(subject)} overlaps with ${JSON.stringify(other)}`);
      }
    }
  }
}

function checkRepublish(cfg: StreamConfig): void {
  const { src, dest } = cfg.republish as NonNullable<StreamConfig["republish"]>;
  if (!isValidSubscriptionSubject(src) || !cfg.subjects.some((s) => subjectsOverlap(src, s))) {
    throw Errors.streamConfig("stream configuration for republish source is not valid subset of subjects");
  }
  if (cfg.subjects.some((s) => subjectsOverlap(dest, s))) {
    throw Errors.streamConfig("stream configuration for republish destination forms a cycle");
  }
  if (SubjectTransform.parse(src, dest) === null) throw Errors.streamConfig("stream configuration for republish not valid");
}

/** What an update may not change, as nats-server refuses it. */
export function checkStreamUpdate(old: StreamConfig, next: StreamConfig): void {
  const refuse = (what: string) => Errors.streamConfig(`stream configuration update ${what}`);
  if (next.max_consumers !== old.max_consumers) throw refuse("can not change MaxConsumers");
  if (next.storage !== old.storage) throw refuse("can not change storage type");
  if (next.retention !== old.retention) throw refuse("can not change retention policy");
  if (old.sealed && !next.sealed) throw refuse("can not unseal a sealed stream");
  if (old.deny_delete && !next.deny_delete) throw refuse("can not cancel deny message deletes");
  if (old.deny_purge && !next.deny_purge) throw refuse("can not cancel deny purge");
  if (JSON.stringify(old.republish) !== JSON.stringify(next.republish)) throw refuse("can not change RePublish");
}

/** Consumer settings nats-server refuses beyond those normalizeConsumerConfig checks while parsing. */
export function checkConsumerConfig(cfg: ConsumerConfig, raw: Record<string, unknown>, stream: StreamConfig): void {
  if (tooLong(cfg.description)) throw Errors.consumerDescriptionTooLong(MAX_DESCRIPTION_BYTES);
  if (cfg.backoff !== undefined && cfg.backoff.length > 0 && cfg.max_deliver <= cfg.backoff.length) {
    throw Errors.consumerMaxDeliverBackoff();
  }
  const push = cfg.deliver_subject !== undefined;
  if (!push && typeof raw.rate_limit_bps === "number" && raw.rate_limit_bps > 0) throw Errors.consumerPullRateLimit();
  if (typeof raw.max_waiting === "number" && raw.max_waiting < 0) throw Errors.consumerMaxWaitingNegative();
  if (typeof raw.max_batch === "number" && raw.max_batch < 0) throw Errors.consumerMaxRequestBatchNegative();
  const maxExpires = typeof raw.max_expires === "number" ? raw.max_expires : 0;
  if (maxExpires !== 0 && maxExpires < MIN_MAX_EXPIRES_NS) throw Errors.consumerMaxRequestExpiresTooSmall();
  checkDeliverPolicy(cfg);
  if (cfg.sample_freq !== undefined) checkSampleFrequency(cfg.sample_freq);
  if (push && stream.subjects.some((s) => subjectsOverlap(s, cfg.deliver_subject as string))) throw Errors.consumerDeliverCycle();
  const replicas = typeof raw.num_replicas === "number" ? raw.num_replicas : 0;
  if (replicas < 0) throw Errors.replicasNegative();
  if (replicas > 1) throw Errors.replicasNotSupported();
}

/**
 * A new consumer on a workqueue stream, next to the consumers it already has: each message goes to one
 * consumer, so filters may not overlap, and every consumer starts at the beginning.
 */
export function checkWorkQueueConsumer(cfg: ConsumerConfig, others: ConsumerConfig[]): void {
  if (others.length > 0) {
    const filter = cfg.filter_subject;
    if (filter === undefined) throw Errors.workqueueMultipleUnfiltered();
    if (others.some((o) => o.filter_subject === undefined || subjectsOverlap(o.filter_subject, filter))) throw Errors.workqueueFilterNotUnique();
  }
  if (cfg.deliver_policy !== "all") throw Errors.workqueueNotDeliverAll();
}

/** What nats-server refuses to change on an existing consumer (500 / 10012, its texts). */
export function checkConsumerUpdate(old: ConsumerConfig, next: ConsumerConfig): void {
  const refuse = (what: string) => Errors.consumerCreate(`${what} can not be updated`);
  if (next.deliver_policy !== old.deliver_policy) throw refuse("deliver policy");
  if (next.opt_start_seq !== old.opt_start_seq) throw refuse("start sequence");
  if (startTime(next) !== startTime(old)) throw refuse("start time");
  if (next.ack_policy !== old.ack_policy) throw refuse("ack policy");
  if (next.replay_policy !== old.replay_policy) throw refuse("replay policy");
  if (next.idle_heartbeat !== old.idle_heartbeat) throw refuse("heart beats");
  if (next.flow_control !== old.flow_control) throw refuse("flow control");
  if (next.max_waiting !== old.max_waiting) throw refuse("max waiting");
}

/** The start time as an instant, so that equal times written differently compare equal. */
function startTime(cfg: ConsumerConfig): number | undefined {
  return cfg.opt_start_time === undefined ? undefined : Date.parse(cfg.opt_start_time);
}

/** A whole number, with an optional '%', read as nats-server (Go's strconv.Atoi) reads it. */
function checkSampleFrequency(frequency: string): void {
  const digits = frequency.endsWith("%") ? frequency.slice(0, -1) : frequency;
  const refuse = (why: string) => Errors.consumerInvalidSampling(`strconv.Atoi: parsing ${JSON.stringify(digits)}: ${why}`);
  if (!/^[+-]?\d+$/.test(digits)) throw refuse("invalid syntax");
  const value = BigInt(digits);
  if (value > INT64_MAX || value < -INT64_MAX - 1n) throw refuse("value out of range");
  // sic: nats-server refuses a negative frequency with no error to tell, and so prints Go's nil.
  if (value < 0n) throw Errors.consumerInvalidSampling("<nil>");
}

const POLICY_WORDS: Record<ConsumerConfig["deliver_policy"], string> = {
  all: "all",
  last: "last",
  new: "new",
  last_per_subject: "last per subject",
  by_start_sequence: "by start sequence",
  by_start_time: "by start time",
};

/** Each deliver policy takes only its own start option (a start sequence, a start time, or a filter). */
function checkDeliverPolicy(cfg: ConsumerConfig): void {
  const policy = POLICY_WORDS[cfg.deliver_policy];
  const alsoSet = (what: string) => Errors.consumerInvalidPolicy(`consumer delivery policy is deliver ${policy}, but optional start ${what} is also set`);
  const notSet = (what: string) => Errors.consumerInvalidPolicy(`consumer delivery policy is deliver ${policy}, but optional ${what} is not set`);
  const hasSeq = cfg.opt_start_seq !== undefined;
  const hasTime = cfg.opt_start_time !== undefined;
  switch (cfg.deliver_policy) {
    case "by_start_sequence":
      if (!hasSeq) throw notSet("start sequence");
      if (hasTime) throw alsoSet("time");
      return;
    case "by_start_time":
      if (!hasTime) throw notSet("start time");
      if (hasSeq) throw alsoSet("start sequence"); // sic: nats-server says "start start sequence"
      return;
    default:
      if (hasSeq) throw alsoSet("sequence");
      if (hasTime) throw alsoSet("time");
      if (cfg.deliver_policy === "last_per_subject" && cfg.filter_subject === undefined) throw notSet("filter subject");
  }
}
