// The cluster-wide desired state of every workload: the KV bucket NEX_WORKLOADS, one entry per workload
// (key: its id), holding its deploy request and the node that should run it (owner). Every node keeps a
// live copy (a watch), so the failover coordinator knows what a lost node ran without asking anyone.
//
// Fencing: a node runs a workload only while the entry names it as owner. An owner changes only by a KV
// update at the revision the writer read (compare-and-set), so when several nodes try to take one
// workload exactly one succeeds, and a node that comes back after its workloads were moved (or that was
// cut off while they were) sees owner ≠ itself and does not start, or stops, its copy. `epoch` counts
// the moves, for people reading the entry.
//
// Trust: a workload deployed by a user keeps the deploy message as its issuer signed it (`signed`); a
// node that restores or adopts it checks that signature and its own issuer allow-list again and takes
// the request and namespace from the signed bytes, so an entry written by someone else on the bus cannot
// make a node run code no allowed issuer signed.

import type { NatsConnection } from "@nats-io/transport-node";
import type { KV, KvEntry } from "@nats-io/kv";
import type { Logger } from "pino";
import { createKv } from "../util/replicated-buckets.js";
import { isCasConflict } from "../util/kv-create.js";
import { KvFollower } from "../cluster/kv-follower.js";
import { retryWhileTransient } from "../host-services/jetstream-retry.js";
import type { DeployRequest } from "../protocol/deploy-request.js";
import type { ChildLink } from "./child-workloads.js";

const BUCKET = "NEX_WORKLOADS";

/** A deploy message exactly as its issuer signed it. */
export interface SignedDeploy {
  subject: string;
  /** The body, base64. */
  body: string;
  issuer: string;
  signature: string;
}

export interface PlacedWorkload {
  id: string;
  namespace: string;
  issuer: string;
  request: DeployRequest;
  /** The node that should run it. */
  owner: string;
  /** How many times it moved to another node. */
  epoch: number;
  signed?: SignedDeploy;
  /** A child: its parent, grant and slot (child-workloads.ts). */
  parent?: ChildLink;
}

export interface RegistryChange {
  id: string;
  /** null: the entry was deleted. */
  entry: PlacedWorkload | null;
}

function readEntry(entry: KvEntry): PlacedWorkload | null {
  if (entry.operation !== "PUT") return null;
  try {
    const w = JSON.parse(entry.string()) as PlacedWorkload;
    const ok = typeof w?.id === "string" && w.id === entry.key && typeof w.owner === "string" && typeof w.namespace === "string" && typeof w.request === "object" && w.request !== null;
    return ok ? w : null;
  } catch {
    return null;
  }
}

export class WorkloadRegistry {
  private readonly entries = new Map<string, { revision: number; entry: PlacedWorkload }>();
  private stopWatching?: () => void;

  private constructor(
    private readonly kv: KV,
    /** Told of every change after open: seen on the bus, or a move made here. */
    private readonly changed: (change: RegistryChange) => void,
  ) {}

  static async open(nc: NatsConnection, log: Logger, changed: (change: RegistryChange) => void): Promise<WorkloadRegistry> {
    const registry = new WorkloadRegistry(await retryWhileTransient(() => createKv(nc, BUCKET, { history: 1 })), changed);
    await registry.load(log);
    return registry;
  }

  get(id: string): PlacedWorkload | undefined {
    return this.entries.get(id)?.entry;
  }

  /** Every entry with its revision. */
  all(): { revision: number; entry: PlacedWorkload }[] {
    return [...this.entries.values()];
  }

  /**
   * Reads one entry again (a KV get, no consumer needed) and tells what changed: the new owner's answer
   * to a "placed" notice, which does not depend on a watch that may be stalled with a lost server.
   */
  async refresh(id: string): Promise<void> {
    const e = await retryWhileTransient(() => this.kv.get(id));
    const entry = e ? readEntry(e) : null;
    if (e && this.apply(id, e.revision, entry)) this.changed({ id, entry });
  }

  /** Reads every entry again (a safety net behind the watch); tells what changed. */
  async resync(): Promise<void> {
    const keys: string[] = [];
    for await (const key of await retryWhileTransient(() => this.kv.keys())) keys.push(key);
    for (const id of keys) await this.refresh(id);
  }

  /** Records a workload that was just deployed on `entry.owner`. */
  async record(entry: PlacedWorkload): Promise<void> {
    const revision = await this.kv.put(entry.id, JSON.stringify(entry));
    this.apply(entry.id, revision, entry);
  }

  /**
   * Gives the workload to another node, at the revision read: false when someone changed it first
   * (another coordinator moved it, its owner forgot it).
   */
  async move(id: string, revision: number, owner: string): Promise<boolean> {
    const known = this.entries.get(id);
    if (!known || known.revision !== revision) return false;
    const moved: PlacedWorkload = { ...known.entry, owner, epoch: known.entry.epoch + 1 };
    try {
      const next = await this.kv.update(id, JSON.stringify(moved), revision);
      // Told here: the watch will bring this revision back as nothing new (the mover may be the new owner).
      if (this.apply(id, next, moved)) this.changed({ id, entry: moved });
      return true;
    } catch (err) {
      if (isCasConflict(err)) return false;
      throw err;
    }
  }

  /** Forgets a workload this node owns (undeployed); an entry another node owns now is left to it. */
  async forget(id: string, owner: string): Promise<void> {
    const known = this.entries.get(id);
    if (known && known.entry.owner !== owner) return;
    try {
      if (known) await this.kv.delete(id, { previousSeq: known.revision });
      else await this.kv.delete(id);
    } catch (err) {
      if (!isCasConflict(err)) throw err;
      return; // it moved meanwhile: the new owner's entry stays
    }
    this.entries.delete(id);
  }

  close(): void {
    this.stopWatching?.();
  }

  /** Follows the bucket (kv-follower.ts); changes after the first read are told to `changed`. */
  private async load(log: Logger): Promise<void> {
    let loaded = false;
    const follower = await KvFollower.follow(
      this.kv,
      (e) => {
        if (this.apply(e.key, e.revision, readEntry(e)) && loaded) this.changed({ id: e.key, entry: this.entries.get(e.key)?.entry ?? null });
      },
      { readExisting: true, log },
    );
    loaded = true;
    this.stopWatching = () => follower.stop();
  }

  /** A newer revision wins; returns whether anything changed. */
  private apply(id: string, revision: number, entry: PlacedWorkload | null): boolean {
    const known = this.entries.get(id);
    if (known && known.revision >= revision) return false;
    if (entry) this.entries.set(id, { revision, entry });
    else if (!this.entries.delete(id)) return false;
    return true;
  }
}
