// Placement that heals: the workloads of a lost node (no heartbeat, node-heartbeats.ts) move to the
// nodes that are left, and a node in lame duck with --move hands its workloads over.
//
// Once a second every node looks at the registry (workload-registry.ts) for workloads whose owner is
// lost. The alive nodes that take workloads are ranked by id; rank 0 acts when the owner has been lost
// for the grace period, rank k waits k × RANK_STEP_MS longer, so one node normally does the work and a
// node that never acts (a stuck one, or a fake peer with a small id) only delays it. Acting is: one
// auction per kind of workload among the alive nodes, a winner per workload (least loaded, preferring a
// node that does not run a copy of the same workload already), and a compare-and-set of the owner in
// the registry. The winner's registry watch sees itself named and starts the workload; a second node
// acting at the same time loses the compare-and-set and moves nothing.
//
// Parents and children (grants, child-workloads.ts) are bound to their node in NEX_GRANTS, and a sealed
// env opens only with its node's xkey: those are not moved, they come back when their node does.

import type { NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "pino";
import type { AuctionBid } from "../protocol/control.js";
import { workloadLimits } from "./workload-spec.js";
import type { NodeConfig } from "./config.js";
import { collectBids } from "./auction.js";
import type { NodeHeartbeats } from "./node-heartbeats.js";
import type { PlacedWorkload, WorkloadRegistry } from "./workload-registry.js";

export const DEFAULT_FAILOVER_GRACE_MS = 10_000;
const SWEEP_MS = 1000;
/** How much later each next-ranked node steps in. */
const RANK_STEP_MS = 3000;

export interface FailoverHost {
  nc: NatsConnection;
  nodeId: string;
  config: NodeConfig;
  log: Logger;
  registry: WorkloadRegistry;
  heartbeats: NodeHeartbeats;
  /** Whether this node may give a workload to that node (trusted_nodes). */
  nodeTrusted(nodeId: string): boolean;
  /** Told of each workload moved (for the event feed). */
  moved(entry: PlacedWorkload, to: string, reason: string): void;
}

/**
 * Where a node hears that a workload was placed on it: the mover tells the new owner directly, which
 * reads the entry again, rather than rely only on its registry watch (a watch whose consumer was on a
 * lost server can stall). The notice carries only an id: the registry entry is what counts.
 */
export const placedSubject = (node: string): string => `$NEX.SVC.system.control.PLACED.${node}`;

type Placed = { revision: number; entry: PlacedWorkload };

export class Failover {
  private timer?: NodeJS.Timeout;
  private sweeping = false;
  /** Lost nodes already reported, so the log says it once. */
  private readonly reportedLost = new Set<string>();
  /** Workloads already reported as not movable. */
  private readonly reportedStuck = new Set<string>();

  constructor(
    private readonly h: FailoverHost,
    private readonly graceMs: number,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.sweep(), SWEEP_MS);
    this.timer.unref();
  }

  close(): void {
    clearInterval(this.timer);
  }

  /**
   * Lame duck with --move: gives each of this node's movable workloads to another node. Returns the ids
   * that moved; the rest stay here (and come back when this node starts again).
   */
  async handOver(): Promise<string[]> {
    const mine = this.h.registry.all().filter(({ entry }) => entry.owner === this.h.nodeId && movable(entry));
    return this.place(mine, "its node went into lame duck");
  }

  private async sweep(): Promise<void> {
    if (this.sweeping) return;
    this.sweeping = true;
    try {
      const { heartbeats, nodeId } = this.h;
      const takers = heartbeats.takers().filter((n) => this.h.nodeTrusted(n)).sort();
      const rank = takers.indexOf(nodeId);
      const due: Placed[] = [];
      for (const placed of this.h.registry.all()) {
        const owner = placed.entry.owner;
        const lost = heartbeats.lostForMs(owner);
        if (lost === 0) {
          this.reportedLost.delete(owner);
          continue;
        }
        if (!this.reportedLost.has(owner)) {
          this.reportedLost.add(owner);
          this.h.log.warn({ node: owner, grace_ms: this.graceMs }, "node lost (no heartbeat): its workloads move after the grace period");
        }
        if (rank < 0 || lost < this.graceMs + rank * RANK_STEP_MS) continue;
        if (movable(placed.entry)) due.push(placed);
        else if (!this.reportedStuck.has(placed.entry.id)) {
          this.reportedStuck.add(placed.entry.id);
          this.h.log.warn({ workload_id: placed.entry.id, namespace: placed.entry.namespace, workload: placed.entry.request.name, node: owner }, "a workload with a deploy grant, a parent or a sealed env stays with its lost node until it returns");
        }
      }
      if (due.length > 0) await this.place(due, "its node was lost");
    } catch (err) {
      this.h.log.warn({ err: err instanceof Error ? err.message : String(err) }, "failover sweep failed");
    } finally {
      this.sweeping = false;
    }
  }

  /** One auction per kind of workload, then a compare-and-set per workload; returns the ids moved. */
  private async place(list: Placed[], reason: string): Promise<string[]> {
    const moved: string[] = [];
    for (const group of groupByAsk(list, this.h.config)) {
      const { bids } = await collectBids(this.h.nc, group.ask, (n) => this.h.nodeTrusted(n));
      const load = new Map(bids.map((b) => [b.node_id, b.workload_count]));
      for (const placed of group.members) {
        const winner = choose(placed.entry, bids, load, this.h.registry);
        if (!winner) {
          this.h.log.warn({ workload_id: placed.entry.id, namespace: placed.entry.namespace, workload: placed.entry.request.name }, "no node bid to take the workload; asking again at the next sweep");
          continue;
        }
        if (!(await this.h.registry.move(placed.entry.id, placed.revision, winner))) continue; // someone moved it first
        load.set(winner, (load.get(winner) ?? 0) + 1);
        this.h.nc.publish(placedSubject(winner), JSON.stringify({ workload_id: placed.entry.id }));
        moved.push(placed.entry.id);
        this.h.log.info({ workload_id: placed.entry.id, namespace: placed.entry.namespace, workload: placed.entry.request.name, from: placed.entry.owner, to: winner }, `workload moved: ${reason}`);
        this.h.moved(placed.entry, winner, reason);
      }
    }
    return moved;
  }
}

/**
 * A workload bound to a grant (a parent) or to a parent (a child) stays on its node, and so does one with
 * an env sealed to its node's xkey (another node cannot open it).
 */
function movable(entry: PlacedWorkload): boolean {
  return !entry.parent && !entry.request.grant && !entry.request.env_sealed;
}

function groupByAsk(list: Placed[], config: NodeConfig): { ask: Parameters<typeof collectBids>[1]; members: Placed[] }[] {
  const groups = new Map<string, { ask: Parameters<typeof collectBids>[1]; members: Placed[] }>();
  for (const placed of list) {
    const { request, namespace } = placed.entry;
    const ask = { namespace, type: request.type, tags: request.tags ?? {}, memoryMb: workloadLimits(request, config.limits).memoryMb };
    const key = JSON.stringify(ask);
    const group = groups.get(key) ?? { ask, members: [] };
    group.members.push(placed);
    groups.set(key, group);
  }
  return [...groups.values()];
}

/** The least loaded bidder other than the lost owner, preferring one that runs no copy of the workload. */
function choose(entry: PlacedWorkload, bids: AuctionBid[], load: Map<string, number>, registry: WorkloadRegistry): string | undefined {
  const candidates = bids.map((b) => b.node_id).filter((n) => n !== entry.owner);
  if (candidates.length === 0) return undefined;
  const copies = new Set(
    registry
      .all()
      .filter(({ entry: e }) => e.id !== entry.id && e.namespace === entry.namespace && e.request.name === entry.request.name)
      .map(({ entry: e }) => e.owner),
  );
  const score = (n: string): number => (copies.has(n) ? 1_000_000 : 0) + (load.get(n) ?? 0);
  return candidates.sort((a, b) => score(a) - score(b))[0];
}
