// Per-user publish/subscribe permissions, enforced as nats-server 2.9 enforces them:
// - publish: allow (absent = all) then deny; results cached per connection, except that a subject
//   denied but answerable through allow_responses is re-checked each time;
// - subscribe: a literal SUB subject is matched against the allow/deny patterns; a wildcard one must lie
//   wholly inside an allow entry (`foo.*` is allowed by `foo.*` or `foo.>`, not by `foo.bar`, and `foo.>`
//   not by `foo.*`: nats-server 2.9 matches it as a literal, so there `*` lets `>` through); an entry
//   `"subject queue"` restricts queue subscriptions; a wildcard SUB that a deny entry matches as a literal
//   is refused, and one that merely shares subjects with a deny entry (`*.x` and `secret.*`) is accepted,
//   and the connection then filters deliveries on denied subjects (nats-server 2.9 filters only when the
//   deny entry lies inside the SUB, so `*.x` would receive `secret.x`);
// - allow_responses: a user may publish to the reply subject of a message it received, at most
//   `max` times within `expires`.

import { isValidQueueName, isValidSubscriptionSubject, subjectIsSubset, subjectsOverlap } from "../protocol/subjects.js";
import { Sublist, type Subscription } from "./sublist.js";

/** Subjects allowed and denied; a bare list (or a string) in the config file means `allow`. */
export interface SubjectPermission {
  allow?: string[];
  deny?: string[];
}

export interface ResponsePermission {
  /** Replies allowed per received request. Default 1. */
  max?: number;
  /** How long the right to reply lasts, in ms. Default 2 minutes. */
  expires_ms?: number;
}

/** nats-server's `permissions` block. */
export interface UserPermissions {
  publish?: SubjectPermission;
  subscribe?: SubjectPermission;
  allow_responses?: boolean | ResponsePermission;
}

const DEFAULT_RESPONSE_MAX = 1;
const DEFAULT_RESPONSE_EXPIRES_MS = 2 * 60_000;
/** nats-server's maxPermCacheSize. */
const PUB_CACHE_MAX = 128;
/** Reply rights kept before expired and used ones are swept (nats-server's replyPermLimit). */
const REPLY_PRUNE_AT = 4096;

/**
 * A permission pattern as a sublist entry: `"foo.* q1"` is subject `foo.*` with queue `q1`. An invalid
 * subject is refused (as nats-server refuses it at load): the sublist would keep it but never match it,
 * so a deny entry such as `"foo..bar"` or `"> x y"` would silently deny nothing.
 */
function patternEntry(pattern: unknown): Subscription {
  const fields = typeof pattern === "string" ? pattern.trim().split(/\s+/) : [];
  const [subject, queue] = fields;
  if (fields.length === 0 || fields.length > 2 || !isValidSubscriptionSubject(subject) || (queue !== undefined && !isValidQueueName(queue))) {
    throw new Error(`invalid permission subject ${JSON.stringify(pattern)}`);
  }
  return { subject, queue, sid: "", sidBytes: Buffer.alloc(0), max: 0, delivered: 0, owner: null };
}

function patternList(patterns: string[] | undefined, keepEmpty: boolean): Sublist | null {
  if (patterns === undefined) return null;
  // A string here would be iterated as characters ("foo" as allow ["f", "o", "o"]).
  if (!Array.isArray(patterns)) throw new Error(`permission subjects must be a list, got ${JSON.stringify(patterns)}`);
  if (patterns.length === 0 && !keepEmpty) return null;
  const list = new Sublist();
  for (const p of patterns) list.insert(patternEntry(p));
  return list;
}

/** A queue name matches a permission's queue literally, or as a subject pattern (nats-server's queueMatches). */
function queueMatches(queue: string, groups: readonly Subscription[][]): boolean {
  for (const group of groups) {
    const name = group[0].queue as string;
    if (queue === name || (hasWildcard(name) && isSubsetMatch(queue, name))) return true;
  }
  return false;
}

function hasWildcard(subject: string): boolean {
  return subject.split(".").some((t) => t === "*" || t === ">");
}

/** Whether every subject matching `subject` also matches `test` (nats-server's subjectIsSubsetMatch). */
function isSubsetMatch(subject: string, test: string): boolean {
  const tokens = subject.split(".");
  const testTokens = test.split(".");
  for (let i = 0; i < testTokens.length; i++) {
    if (i >= tokens.length) return false;
    const t2 = testTokens[i];
    if (t2.length === 0) return false;
    if (t2 === ">") return true;
    const t1 = tokens[i];
    if (t1.length === 0 || t1 === ">") return false;
    if (t1 === "*") {
      if (t2 !== "*") return false;
      continue;
    }
    if (t2 !== "*" && t1 !== t2) return false;
  }
  return tokens.length === testTokens.length;
}

/** A user's permissions, compiled once and shared by all of the user's connections. */
export class CompiledPermissions {
  readonly pubAllow: Sublist | null;
  readonly pubDeny: Sublist | null;
  readonly subAllow: Sublist | null;
  /** The allow entries themselves, for a wildcard SUB (see allowCovering). */
  private readonly subAllowEntries: Subscription[];
  readonly subDeny: Sublist | null;
  /** Plain deny subjects, for the delivery filter a wildcard SUB can switch on. */
  readonly subDenySubjects: string[];
  readonly responses: { max: number; expiresMs: number } | null;

  constructor(perms: UserPermissions) {
    const resp = perms.allow_responses;
    this.responses =
      resp === undefined || resp === false
        ? null
        : resp === true
          ? { max: DEFAULT_RESPONSE_MAX, expiresMs: DEFAULT_RESPONSE_EXPIRES_MS }
          : { max: resp.max ?? DEFAULT_RESPONSE_MAX, expiresMs: resp.expires_ms ?? DEFAULT_RESPONSE_EXPIRES_MS };
    // allow_responses turns off the blanket publish allow: only replies, plus what is listed, may go out.
    const pubAllow = perms.publish?.allow ?? (this.responses !== null ? [] : undefined);
    this.pubAllow = patternList(pubAllow, true);
    this.pubDeny = patternList(perms.publish?.deny, false);
    this.subAllow = patternList(perms.subscribe?.allow, false);
    this.subAllowEntries = this.subAllow === null ? [] : (perms.subscribe?.allow ?? []).map((p) => patternEntry(p));
    this.subDeny = patternList(perms.subscribe?.deny, false);
    this.subDenySubjects = (perms.subscribe?.deny ?? []).map((p) => patternEntry(p)).filter((e) => e.queue === undefined).map((e) => e.subject);
  }

  /** The allow entries that hold every subject of a wildcard SUB, grouped as a sublist match groups them. */
  allowCovering(subject: string): { plain: Subscription[]; queues: Subscription[][] } {
    const plain: Subscription[] = [];
    const queues: Subscription[][] = [];
    for (const e of this.subAllowEntries) {
      if (!subjectIsSubset(subject, e.subject)) continue;
      if (e.queue === undefined) plain.push(e);
      else queues.push([e]);
    }
    return { plain, queues };
  }

  /** Nothing is restricted on subscribe: reply subjects are not checked either. */
  get subscribeOpen(): boolean {
    return this.subAllow === null && this.subDeny === null;
  }

  /** Nothing is restricted on publish: the hot path skips the check entirely. */
  get publishOpen(): boolean {
    return this.pubAllow === null && this.pubDeny === null;
  }
}

/** One connection's view of its user's permissions: caches, reply rights and the delivery filter. */
export class ConnectionPermissions {
  private readonly pubCache = new Map<string, boolean>();
  private readonly replies = new Map<string, { at: number; sent: number }>();
  /**
   * The size at which grantReply next sweeps. After a sweep that freed little (many live rights) it
   * moves to twice what is left, so a flood of unanswered requests costs amortized O(1) per delivery
   * instead of a full sweep on every one.
   */
  private pruneAt = REPLY_PRUNE_AT;
  /** Deny patterns checked on delivery, switched on by a wildcard SUB that covers one of them. */
  private deliveryDeny: Sublist | null = null;
  private readonly deliveryDenyCache = new Map<string, boolean>();
  readonly tracksReplies: boolean;

  constructor(readonly compiled: CompiledPermissions) {
    this.tracksReplies = compiled.responses !== null;
  }

  get filtersDeliveries(): boolean {
    return this.deliveryDeny !== null;
  }

  canPublish(subject: string): boolean {
    const c = this.compiled;
    if (c.publishOpen) return true;
    const cached = this.pubCache.get(subject);
    if (cached !== undefined) return cached;
    let allowed = c.pubAllow === null || c.pubAllow.match(subject).plain.length > 0;
    if (allowed && c.pubDeny !== null) allowed = c.pubDeny.match(subject).plain.length === 0;
    if (!allowed && c.responses !== null) return this.useReplyRight(subject, c.responses);
    if (this.pubCache.size >= PUB_CACHE_MAX) this.pubCache.clear();
    this.pubCache.set(subject, allowed);
    return allowed;
  }

  canSubscribe(subject: string, queue: string | undefined): boolean {
    const c = this.compiled;
    const wildcard = hasWildcard(subject);
    let allowed = true;
    if (c.subAllow !== null) {
      const r = wildcard ? c.allowCovering(subject) : c.subAllow.match(subject);
      allowed = r.plain.length > 0;
      if (queue !== undefined && r.queues.length > 0) allowed = queueMatches(queue, r.queues);
    }
    if (allowed && c.subDeny !== null) {
      const r = c.subDeny.match(subject);
      allowed = r.plain.length === 0;
      if (queue !== undefined && r.queues.length > 0) allowed = !queueMatches(queue, r.queues);
      if (allowed && this.deliveryDeny === null && wildcard && c.subDenySubjects.some((d) => subjectsOverlap(d, subject))) {
        this.deliveryDeny = new Sublist();
        for (const d of c.subDenySubjects) this.deliveryDeny.insert(patternEntry(d));
      }
    }
    return allowed;
  }

  /**
   * Whether a reply subject this connection publishes with is one it could subscribe to. Without this
   * check a client restricted to its own inbox could name another tenant's subject as the reply of a
   * request, and the responder (a service, a host service, JetStream delivering a pull) would publish
   * there for it, content and headers of the client's choosing. nats-server 2.9 checks only reserved
   * replies; a wildcard reply, which no responder could answer, is refused when subscribe is restricted.
   */
  canReceiveOn(reply: string): boolean {
    const c = this.compiled;
    if (c.subscribeOpen) return true;
    if (hasWildcard(reply)) return false;
    if (c.subAllow !== null && c.subAllow.match(reply).plain.length === 0) return false;
    return c.subDeny === null || c.subDeny.match(reply).plain.length === 0;
  }

  /** Whether a message on this subject must not be delivered (see canSubscribe). */
  deniesDelivery(subject: string): boolean {
    const deny = this.deliveryDeny;
    if (deny === null) return false;
    let denied = this.deliveryDenyCache.get(subject);
    if (denied === undefined) {
      denied = deny.match(subject).plain.length > 0;
      if (this.deliveryDenyCache.size >= PUB_CACHE_MAX) this.deliveryDenyCache.clear();
      this.deliveryDenyCache.set(subject, denied);
    }
    return denied;
  }

  /** A message with this reply subject was delivered: the user may now answer it. */
  grantReply(reply: string): void {
    this.replies.set(reply, { at: Date.now(), sent: 0 });
    if (this.replies.size > this.pruneAt) {
      this.pruneReplies();
      this.pruneAt = Math.max(REPLY_PRUNE_AT, 2 * this.replies.size);
    }
  }

  private useReplyRight(subject: string, limits: { max: number; expiresMs: number }): boolean {
    const right = this.replies.get(subject);
    if (right === undefined) return false;
    right.sent++;
    if ((limits.max > 0 && right.sent > limits.max) || (limits.expiresMs > 0 && Date.now() - right.at > limits.expiresMs)) {
      this.replies.delete(subject);
      return false;
    }
    return true;
  }

  private pruneReplies(): void {
    const limits = this.compiled.responses;
    if (limits === null) return;
    const now = Date.now();
    for (const [reply, right] of this.replies) {
      if ((limits.max > 0 && right.sent >= limits.max) || (limits.expiresMs > 0 && now - right.at > limits.expiresMs)) this.replies.delete(reply);
    }
  }
}
