// Which namespace serves which trigger subjects, on every node of the bus. A workload in namespace b that
// subscribed a subject namespace a serves would take a's requests (and read their payloads), so a deploy
// is refused when one of its trigger subjects overlaps one that another namespace already serves, unless
// the operator allows sharing (--allow-shared-triggers).
//
// Claims live in the KV bucket NEX_TRIGGERS, one entry per workload (key <node>.<workload>, value
// {namespace, subjects}; a JavaScript service's own subscriptions under <node>.<workload>.subscriptions),
// of which every node keeps a live copy (live-claims.ts), so the check costs no request.

import type { NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "pino";
import { subjectsOverlap } from "../protocol/subjects.js";
import { LiveClaims } from "./live-claims.js";

const BUCKET = "NEX_TRIGGERS";
/** The key part under which a service's own subscriptions are claimed: <node>.<workload>.subscriptions. */
const SUBSCRIPTIONS_SUFFIX = ".subscriptions";

interface Claim {
  namespace: string;
  subjects: string[];
}

function readClaim(json: unknown): Claim | null {
  const c = json as Claim | null;
  return typeof c?.namespace === "string" && Array.isArray(c.subjects) && c.subjects.every((s) => typeof s === "string") ? c : null;
}

export class TriggerClaims {
  private constructor(private readonly claims: LiveClaims<Claim>) {}

  static async open(nc: NatsConnection, nodeId: string, log?: Logger): Promise<TriggerClaims> {
    return new TriggerClaims(await LiveClaims.open(nc, BUCKET, nodeId, readClaim, undefined, log));
  }

  /** The first of `subjects` that overlaps a subject another namespace serves, with that namespace (also read by JavaScript services' subscriptions). */
  conflict(namespace: string, subjects: string[]): { subject: string; other: string; namespace: string } | undefined {
    for (const claim of this.claims.values()) {
      if (claim.namespace === namespace) continue;
      for (const subject of subjects) {
        const other = claim.subjects.find((s) => subjectsOverlap(s, subject));
        if (other !== undefined) return { subject, other, namespace: claim.namespace };
      }
    }
    return undefined;
  }

  /**
   * Claims the subjects; with `refuseOverlap`, returns the conflict instead when another namespace serves
   * an overlapping subject. The check and the local record happen in one turn, so two deploys on this
   * node cannot both pass; the bucket write then tells the other nodes.
   */
  async claim(workloadId: string, namespace: string, subjects: string[], refuseOverlap: boolean): Promise<ReturnType<TriggerClaims["conflict"]>> {
    const conflict = refuseOverlap ? this.conflict(namespace, subjects) : undefined;
    if (conflict) return conflict;
    await this.claims.put(workloadId, { namespace, subjects });
    return undefined;
  }

  /**
   * What a JavaScript service subscribes now (none: an empty list), claimed under its own key beside the
   * workload's trigger subjects (by the runtime host, which has already checked them against the other
   * namespaces'). The local view has it at once, so the next check on this runtime host sees it;
   * publishSubscriptions() then writes the latest set to the bucket for the other nodes.
   */
  noteSubscriptions(workloadId: string, namespace: string, subjects: string[]): void {
    this.claims.record(`${workloadId}${SUBSCRIPTIONS_SUFFIX}`, subjects.length > 0 ? { namespace, subjects } : null);
  }

  /** Writes the service's subscriptions as noted last (noteSubscriptions) to the bucket. */
  publishSubscriptions(workloadId: string): Promise<void> {
    return this.claims.publish(`${workloadId}${SUBSCRIPTIONS_SUFFIX}`);
  }

  /** Releases the workload's trigger subjects, and what it subscribed if it is a service. */
  async release(workloadId: string): Promise<void> {
    await this.claims.drop(workloadId);
    if (this.claims.has(`${workloadId}${SUBSCRIPTIONS_SUFFIX}`)) await this.claims.drop(`${workloadId}${SUBSCRIPTIONS_SUFFIX}`);
  }

  /** After a restart: drops this node's claims for workloads it no longer runs. */
  keepOnly(workloadIds: Set<string>): Promise<void> {
    return this.claims.keepOnly(workloadIds);
  }

  close(): void {
    this.claims.close();
  }
}
