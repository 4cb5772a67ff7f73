// Asking the nodes of the bus which can take a workload: the AUCTION request, answered only by nodes that
// can (node.ts auction()). Used by a parent's node to place a child and by failover to place the
// workloads of a lost node. A bid is input from the bus: it counts only when its node signed its xkey,
// the caller trusts that node and it can run the type now.

import type { NatsConnection } from "@nats-io/transport-node";
import { type AuctionBid, ControlSubjects, PROTOCOL_VERSION } from "../protocol/control.js";
import { nodeXkeyIsSigned } from "../protocol/signing.js";

export interface AuctionAsk {
  namespace: string;
  type: string;
  tags: Record<string, string>;
  memoryMb: number | undefined;
}

/** How long bids are gathered after the last one came in, and at most. */
// The stall leaves room for a busy node's bid on a loaded machine; when every live node has bid
// (`expected`, from the heartbeats) the auction ends before it.
const STALL_MS = 100;
const MAX_WAIT_MS = 1000;

/** The usable bids; `answered` counts every answer; `expected` answers end the auction early. */
export async function collectBids(nc: NatsConnection, ask: AuctionAsk, trusted: (nodeId: string) => boolean, expected = Infinity): Promise<{ bids: AuctionBid[]; answered: number }> {
  const bids: AuctionBid[] = [];
  let answered = 0;
  const body = auctionBody(ask);
  try {
    const replies = await nc.requestMany(ControlSubjects.auction(ask.namespace), body, { strategy: "stall", stall: STALL_MS, maxWait: MAX_WAIT_MS });
    for await (const m of replies) {
      if (m.data.length === 0) continue;
      answered++;
      const bid = parseBid(m.string());
      if (bid && !bid.unavailable && trusted(bid.node_id) && nodeXkeyIsSigned(bid.node_id, bid.xkey, bid.xkey_sig)) bids.push(bid);
      if (answered >= expected) {
        (replies as { stop?: () => void }).stop?.();
        break;
      }
    }
  } catch {
    // no responders or a timeout: no bids
  }
  return { bids, answered };
}

function auctionBody(ask: AuctionAsk): string {
  return JSON.stringify({ version: PROTOCOL_VERSION, type: ask.type, tags: ask.tags, memory_mb: ask.memoryMb });
}

function parseBid(text: string): AuctionBid | null {
  try {
    const bid = JSON.parse(text) as AuctionBid;
    return typeof bid?.node_id === "string" && typeof bid.workload_count === "number" ? bid : null;
  } catch {
    return null;
  }
}
