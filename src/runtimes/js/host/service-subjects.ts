// Which subjects a JavaScript service may subscribe with ctx.subscribe, and in which queue group. A
// service runs on the runtime host's connection (the node's credentials), so the checks are ours:
// - the messaging rules: no system subjects ($NEX, $JS, $SYS, $SRV, $KV, $O, _INBOX), no leading wildcard
//   (triggerSubjectProblem, the same rule as for trigger subjects);
// - a namespace owns its trigger subjects: a subject that overlaps a trigger subject another namespace
//   serves (the NEX_TRIGGERS claims every node keeps, see cluster/trigger-claims.ts) is refused, so a
//   service cannot read or take another tenant's requests; and what a service subscribes is claimed for
//   its namespace the same way, so a later deploy of another namespace cannot take the service's; while
//   those claims are not loaded (the bucket cannot be read), every subscription is refused (unavailable)
//   rather than let through unchecked;
// - a queue group is the service's own: `nex.<ns>.<name>.<queue>`, so it never joins another workload's
//   group, while replicas of one service share it;
// - at most MAX_SERVICE_SUBSCRIPTIONS at once.

import type { NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "pino";
import { token, triggerQueueGroup } from "../../../protocol/control.js";
import { triggerSubjectProblem } from "../../../protocol/subjects.js";
import { TriggerClaims } from "../../../cluster/trigger-claims.js";
import { settleWithin } from "../../../util/settle-within.js";

/** Subscriptions one service may hold at once. */
export const MAX_SERVICE_SUBSCRIPTIONS = 64;
/** Timers (setTimeout, setInterval) one service may have pending. */
export const MAX_SERVICE_TIMERS = 1000;
const CLAIMS_OPEN_TIMEOUT_MS = 5000;
/** After an open of the claims failed, a subscribe tries again no sooner than this (a deploy at once). */
const CLAIMS_RETRY_MS = 1000;

/** A refusal: the code the guest's Error gets, and why. */
export interface SubjectRefusal {
  code: "forbidden" | "bad_request" | "unavailable";
  message: string;
}

/**
 * The trigger claims of every namespace, as one live view per runtime host: opened on the first service,
 * and again after an open failed (on the next deploy, or a subscribe past CLAIMS_RETRY_MS), one open at a
 * time. Until it is loaded a service's subscriptions are refused (unavailable), never let through unchecked.
 */
export class ClaimsView {
  private view?: TriggerClaims;
  private opening?: Promise<TriggerClaims | undefined>;
  private retryAt = 0;

  constructor(
    private readonly open: () => Promise<TriggerClaims>,
    private readonly log: Logger,
  ) {}

  /** The claims if they are loaded; otherwise undefined, and an open starts (unless one runs, or one failed within CLAIMS_RETRY_MS). */
  current(): TriggerClaims | undefined {
    if (!this.view && Date.now() >= this.retryAt) void this.start();
    return this.view;
  }

  /** The claims, opening them if they are not (a failed open is tried again at once); undefined when they do not load within `ms`. */
  async ready(ms: number): Promise<TriggerClaims | undefined> {
    if (this.view) return this.view;
    const view = await settleWithin(this.start(), ms);
    if (!view && this.opening) this.log.warn(`the trigger claims did not load within ${ms} ms; services' subscriptions are refused until they do`);
    return view;
  }

  private start(): Promise<TriggerClaims | undefined> {
    this.opening ??= this.open().then(
      (view) => (this.view = view),
      (err: Error) => {
        this.log.warn({ err: err.message }, "cannot read the trigger claims; services' subscriptions are refused until they load");
        this.opening = undefined;
        this.retryAt = Date.now() + CLAIMS_RETRY_MS;
        return undefined;
      },
    );
    return this.opening;
  }
}

let claims: ClaimsView | undefined;

/** This runtime host's view of the trigger claims, waiting up to CLAIMS_OPEN_TIMEOUT_MS for it to load. */
export async function openClaims(nc: NatsConnection, nodeId: string, log: Logger): Promise<ClaimsView> {
  claims ??= new ClaimsView(() => TriggerClaims.open(nc, nodeId), log);
  await claims.ready(CLAIMS_OPEN_TIMEOUT_MS);
  return claims;
}

export class ServiceSubjects {
  /** A bucket write runs (one at a time). */
  private writing = false;
  /** The set changed since the running write took it: one more write follows, of the latest set. */
  private dirty = false;

  constructor(
    private readonly workloadId: string,
    private readonly namespace: string,
    private readonly name: string,
    private readonly claims: ClaimsView,
  ) {}

  /**
   * Records the subjects the service holds now as its namespace's (an empty list releases them). The
   * local view changes at once, so the next check here (this service's or another's) sees it; the
   * bucket writes are coalesced: one in flight, then one of the latest set, however often it changes.
   */
  claim(subjects: string[]): void {
    const claims = this.claims.current();
    if (!claims) return; // nothing was subscribed without them
    claims.noteSubscriptions(this.workloadId, this.namespace, [...new Set(subjects)]);
    this.dirty = true;
    if (!this.writing) void this.write(claims);
  }

  /** Bucket writes of the service's claims running or owed: at most 2 (one in flight, one of the latest set after it). */
  get queuedWrites(): number {
    return (this.writing ? 1 : 0) + (this.dirty ? 1 : 0);
  }

  private async write(claims: TriggerClaims): Promise<void> {
    this.writing = true;
    try {
      while (this.dirty) {
        this.dirty = false;
        await claims.publishSubscriptions(this.workloadId).catch(() => undefined);
      }
    } finally {
      this.writing = false;
    }
  }

  /** Why `subject` may not be subscribed by this service, or undefined when it may. */
  problem(subject: string): SubjectRefusal | undefined {
    const p = triggerSubjectProblem(subject);
    if (p) return { code: /may not/.test(p) ? "forbidden" : "bad_request", message: `subject ${JSON.stringify(subject)} ${p}` };
    const claims = this.claims.current();
    if (!claims) {
      return { code: "unavailable", message: `subject ${JSON.stringify(subject)} cannot be checked: the trigger claims are unavailable (not loaded); try again later` };
    }
    const conflict = claims.conflict(this.namespace, [subject]);
    if (conflict) {
      return { code: "forbidden", message: `subject ${JSON.stringify(subject)} overlaps ${conflict.other}, which namespace ${conflict.namespace} serves` };
    }
    return undefined;
  }

  /** The queue group for a service's `queue` option ("" for none), or a refusal. */
  queueGroup(queue: string): string | SubjectRefusal | undefined {
    if (queue === "") return undefined;
    if (!token.safeParse(queue).success) return { code: "bad_request", message: `queue ${JSON.stringify(queue)} must be 1-64 letters, digits, '_' or '-'` };
    return `${triggerQueueGroup(this.namespace, this.name)}.${queue}`;
  }
}
