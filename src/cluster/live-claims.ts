// A KV bucket of per-workload claims that every node keeps a live copy of: one entry per workload, key
// <node>.<workload>[.<part>], so a check against every namespace's claims costs no request. What is
// claimed (trigger subjects, HTTP routes) and what conflicts is the owner's (trigger-claims.ts,
// node-agent/http-routes.ts); the bucket, the watch, the revisions and the clean-up after a restart are here. A
// claim is recorded here before it is written (record, then publish), so a check on this node sees it at once.
// Two claims racing on two nodes within a watch delay may both pass; the window is milliseconds.

import type { NatsConnection } from "@nats-io/transport-node";
import type { KV, KvEntry } from "@nats-io/kv";
import type { Logger } from "pino";
import { createKv } from "../util/replicated-buckets.js";
import { KvFollower } from "./kv-follower.js";
import { retryWhileTransient } from "../host-services/jetstream-retry.js";

interface Entry<T> {
  revision: number;
  /** null: none (a local release not written yet). */
  claim: T | null;
  /** Recorded here ahead of the bucket (record()): the watch does not undo it until a write of it comes back. */
  local: boolean;
}

export class LiveClaims<T> {
  private readonly entries = new Map<string, Entry<T>>();
  private stopWatching?: () => void;

  private constructor(
    private readonly kv: KV,
    private readonly nodeId: string,
    /** A stored value as a claim, or null when it is not one (a malformed entry is ignored). */
    private readonly read: (json: unknown) => T | null,
    /** Called after the claims changed (the owner rebuilds what it derives from them). */
    private readonly changed: () => void,
  ) {}

  static async open<T>(nc: NatsConnection, bucket: string, nodeId: string, read: (json: unknown) => T | null, changed: () => void = () => undefined, log?: Logger): Promise<LiveClaims<T>> {
    const claims = new LiveClaims<T>(await retryWhileTransient(() => createKv(nc, bucket, { history: 1 })), nodeId, read, changed);
    await claims.load(log);
    return claims;
  }

  /** Every claim of every node. */
  *values(): IterableIterator<T> {
    for (const { claim } of this.entries.values()) if (claim !== null) yield claim;
  }

  /** Every claim with its revision in the bucket (later writes have higher ones). */
  withRevisions(): { revision: number; claim: T }[] {
    const out: { revision: number; claim: T }[] = [];
    for (const { revision, claim } of this.entries.values()) if (claim !== null) out.push({ revision, claim });
    return out;
  }

  /** Whether this node holds a claim under `id` (a workload id, with an optional .part). */
  has(id: string): boolean {
    return (this.entries.get(this.key(id))?.claim ?? null) !== null;
  }

  /**
   * Records the claim (null: none) under `id` here at once, ahead of the bucket, so a check in the same
   * turn sees it; until a write of it (publish) comes back, the watch (an older write of ours) does not
   * undo it. The key is this node's, so only this node writes it.
   */
  record(id: string, claim: T | null): void {
    const key = this.key(id);
    const known = this.entries.get(key);
    this.entries.set(key, { revision: known?.revision ?? 0, claim, local: true });
    this.changed();
  }

  /**
   * Writes what is recorded under `id` now (record()) to the bucket, for the other nodes: a put, or a
   * delete for none. Rejects when the write fails (the local record stays).
   */
  async publish(id: string): Promise<void> {
    const key = this.key(id);
    const entry = this.entries.get(key);
    if (!entry) return;
    const claim = entry.claim;
    const revision = claim === null ? (await this.kv.delete(key), 0) : await this.kv.put(key, JSON.stringify(claim));
    this.confirm(key, revision, claim);
  }

  /**
   * Records the claim here at once (so a check in the same turn sees it), then in the bucket for the
   * other nodes; the local record goes again when the write fails.
   */
  async put(id: string, claim: T): Promise<void> {
    const key = this.key(id);
    this.record(id, claim);
    let revision: number;
    try {
      revision = await this.kv.put(key, JSON.stringify(claim));
    } catch (err) {
      if (this.entries.get(key)?.claim === claim) this.remove(key);
      throw err;
    }
    this.confirm(key, revision, claim);
  }

  async drop(id: string): Promise<void> {
    const key = this.key(id);
    await this.kv.delete(key).catch(() => undefined);
    this.remove(key);
  }

  /** After a restart: drops this node's claims (every part) of workloads it no longer runs. */
  async keepOnly(workloadIds: Set<string>): Promise<void> {
    const prefix = `${this.nodeId}.`;
    const workloadOf = (key: string): string => key.slice(prefix.length).split(".")[0];
    for (const key of [...this.entries.keys()]) {
      if (!key.startsWith(prefix) || workloadIds.has(workloadOf(key))) continue;
      await this.kv.delete(key).catch(() => undefined);
      this.remove(key);
    }
  }

  close(): void {
    this.stopWatching?.();
  }

  private key(id: string): string {
    return `${this.nodeId}.${id}`;
  }

  /** Follows the bucket: the claims there now and every change after (kv-follower.ts). */
  private async load(log?: Logger): Promise<void> {
    const follower = await KvFollower.follow(this.kv, (entry) => this.applyEntry(entry), { readExisting: true, log });
    this.stopWatching = () => follower.stop();
  }

  private applyEntry(entry: KvEntry): void {
    let claim: T | null = null;
    if (entry.operation === "PUT") {
      try {
        claim = this.read(JSON.parse(entry.string()));
      } catch {
        claim = null;
      }
    }
    this.apply(entry.key, entry.revision, claim);
  }

  /** A newer revision wins; an older one (a watch event behind our own write) changes nothing, nor does any while a local record waits for its write. */
  private apply(key: string, revision: number, claim: T | null): void {
    const known = this.entries.get(key);
    if (known && (known.local || known.revision >= revision)) return;
    if (claim) this.set(key, revision, claim);
    else this.remove(key);
  }

  /** Our write of `claim` came back: the bucket has it now, unless a newer local record waits for its own write. */
  private confirm(key: string, revision: number, claim: T | null): void {
    const known = this.entries.get(key);
    if (!known) return;
    if (known.claim !== claim) {
      known.revision = Math.max(known.revision, revision);
      return;
    }
    if (claim === null) this.remove(key);
    else this.entries.set(key, { revision: Math.max(known.revision, revision), claim, local: false });
  }

  private set(key: string, revision: number, claim: T): void {
    this.entries.set(key, { revision, claim, local: false });
    this.changed();
  }

  private remove(key: string): void {
    if (this.entries.delete(key)) this.changed();
  }
}
