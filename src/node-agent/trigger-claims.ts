// Which namespace serves which trigger subjects, on every node of the bus. A workload in namespace b that
// subscribed a subject namespace a serves would take a's requests (and read their payloads), so a deploy
// is refused when one of its trigger subjects overlaps one that another namespace already serves, unless
// the operator allows sharing (--allow-shared-triggers).
//
// Claims live in the KV bucket NEX_TRIGGERS, one entry per workload (key <node>.<workload>, value
// {namespace, subjects}), and every node keeps a live copy through a watch, so the check costs no request.
// Two deploys racing on two nodes within a watch delay may both pass; the window is milliseconds.

import type { NatsConnection } from "@nats-io/transport-node";
import { Kvm, type KV, type KvEntry } from "@nats-io/kv";
import { subjectsOverlap } from "../protocol/subjects.js";

const BUCKET = "NEX_TRIGGERS";
/** The key part under which a service's own subscriptions are claimed: <node>.<workload>.subscriptions. */
const SUBSCRIPTIONS_SUFFIX = ".subscriptions";

interface Claim {
  namespace: string;
  subjects: string[];
}

export class TriggerClaims {
  private readonly claims = new Map<string, { revision: number; claim: Claim }>();
  private stopWatching?: () => void;

  private constructor(
    private readonly kv: KV,
    private readonly nodeId: string,
  ) {}

  static async open(nc: NatsConnection, nodeId: string): Promise<TriggerClaims> {
    const claims = new TriggerClaims(await new Kvm(nc).create(BUCKET, { history: 1 }), nodeId);
    await claims.load();
    return claims;
  }

  /** The first of `subjects` that overlaps a subject another namespace serves, with that namespace (also read by JavaScript services' subscriptions). */
  conflict(namespace: string, subjects: string[]): { subject: string; other: string; namespace: string } | undefined {
    for (const { claim } of this.claims.values()) {
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
    const key = this.key(workloadId);
    const claim: Claim = { namespace, subjects };
    this.claims.set(key, { revision: this.claims.get(key)?.revision ?? 0, claim });
    let revision: number;
    try {
      revision = await this.kv.put(key, JSON.stringify(claim));
    } catch (err) {
      this.claims.delete(key);
      throw err;
    }
    this.apply(key, revision, claim);
    return undefined;
  }

  /**
   * What a JavaScript service subscribes, claimed under its own key beside the workload's trigger
   * subjects (by the runtime host, which has already checked them against the other namespaces').
   */
  async claimSubscriptions(workloadId: string, namespace: string, subjects: string[]): Promise<void> {
    await this.claim(`${workloadId}${SUBSCRIPTIONS_SUFFIX}`, namespace, subjects, false);
  }

  async releaseSubscriptions(workloadId: string): Promise<void> {
    await this.drop(this.key(`${workloadId}${SUBSCRIPTIONS_SUFFIX}`));
  }

  /** Releases the workload's trigger subjects, and what it subscribed if it is a service. */
  async release(workloadId: string): Promise<void> {
    await this.drop(this.key(workloadId));
    const subscriptions = this.key(`${workloadId}${SUBSCRIPTIONS_SUFFIX}`);
    if (this.claims.has(subscriptions)) await this.drop(subscriptions);
  }

  private async drop(key: string): Promise<void> {
    await this.kv.delete(key).catch(() => undefined);
    this.claims.delete(key);
  }

  /** After a restart: drops this node's claims for workloads it no longer runs. */
  async keepOnly(workloadIds: Set<string>): Promise<void> {
    const prefix = `${this.nodeId}.`;
    const workloadOf = (key: string): string => key.slice(prefix.length).split(".")[0];
    const stale = [...this.claims.keys()].filter((k) => k.startsWith(prefix) && !workloadIds.has(workloadOf(k)));
    for (const key of stale) {
      await this.kv.delete(key).catch(() => undefined);
      this.claims.delete(key);
    }
  }

  close(): void {
    this.stopWatching?.();
  }

  private key(workloadId: string): string {
    return `${this.nodeId}.${workloadId}`;
  }

  /** Watches updates first, then reads what is there, so nothing that changes in between is missed. */
  private async load(): Promise<void> {
    const watch = await this.kv.watch({ include: "updates" });
    this.stopWatching = () => watch.stop();
    void (async () => {
      for await (const entry of watch) this.applyEntry(entry);
    })().catch(() => undefined);
    const keys: string[] = [];
    for await (const key of await this.kv.keys()) keys.push(key);
    for (const key of keys) {
      const entry = await this.kv.get(key);
      if (entry) this.applyEntry(entry);
    }
  }

  private applyEntry(entry: KvEntry): void {
    let claim: Claim | null = null;
    if (entry.operation === "PUT") {
      try {
        claim = JSON.parse(entry.string()) as Claim;
      } catch {
        claim = null;
      }
    }
    this.apply(entry.key, entry.revision, claim);
  }

  private apply(key: string, revision: number, claim: Claim | null): void {
    const known = this.claims.get(key);
    if (known && known.revision >= revision) return;
    if (claim) this.claims.set(key, { revision, claim });
    else this.claims.delete(key);
  }
}
