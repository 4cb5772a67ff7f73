// Which nodes are alive. Every node says so once a second on $NEX.FEED.system.heartbeat.<node>, signed
// with its node key, and keeps the last time it heard each peer. A node silent for LOST_AFTER_MS is
// lost; failover.ts moves its workloads after a grace period.
//
// A heartbeat is input from the bus: it counts only when the node key signed it, it names the node of
// its subject, and its time is newer than the last one taken and close to this node's clock, so nobody
// can keep a dead node "alive" (which would stop its workloads from moving) by sending or replaying one.

import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import { headers as natsHeaders } from "@nats-io/transport-node";
import type { Logger } from "pino";
import { SYSTEM_NAMESPACE } from "../protocol/control.js";
import { NODE_HEADER, signAsNode, verifyNodeSigned } from "../protocol/grants.js";
import { SIGNATURE_HEADER } from "../protocol/signing.js";
import type { NodeIdentity } from "./identity.js";

export const HEARTBEAT_MS = 1000;
/** Silence after which a node counts as lost: three heartbeats and a half. */
export const LOST_AFTER_MS = 3500;
/** How far a heartbeat's time may be from this node's clock. */
const MAX_SKEW_MS = 30_000;
const NODE_ID = /^N[A-Z2-7]{55}$/;
/** Peers remembered at most: anyone can make a node key, so the map is bounded (the longest silent goes). */
const MAX_PEERS = 1024;

export const heartbeatSubject = (node: string): string => `$NEX.FEED.${SYSTEM_NAMESPACE}.heartbeat.${node}`;

interface Heartbeat {
  node_id: string;
  at: number;
  lame_duck: boolean;
}

interface Peer {
  /** When we heard it last, by our clock. */
  seen: number;
  /** Its own time in that heartbeat (replays must be newer). */
  at: number;
  lameDuck: boolean;
}

const encoder = new TextEncoder();

export class NodeHeartbeats {
  private readonly peers = new Map<string, Peer>();
  private readonly started = Date.now();
  private timer?: NodeJS.Timeout;
  private sub?: Subscription;

  constructor(
    private readonly nc: NatsConnection,
    private readonly identity: NodeIdentity,
    private readonly lameDuck: () => boolean,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.sub = this.nc.subscribe(heartbeatSubject("*"), {
      callback: (err, msg) => {
        if (err) return;
        const node = msg.subject.slice(msg.subject.lastIndexOf(".") + 1);
        if (node !== this.identity.id) this.heard(node, msg.data, msg.headers?.get(NODE_HEADER), msg.headers?.get(SIGNATURE_HEADER));
      },
    });
    this.beat();
    this.timer = setInterval(() => this.beat(), HEARTBEAT_MS);
    this.timer.unref();
  }

  /** Nodes heard from within LOST_AFTER_MS, and this one. */
  alive(): string[] {
    const now = Date.now();
    const out = [this.identity.id];
    for (const [id, p] of this.peers) if (now - p.seen < LOST_AFTER_MS) out.push(id);
    return out;
  }

  /** Alive nodes that take workloads (not in lame duck), this one included unless it is. */
  takers(): string[] {
    const now = Date.now();
    const out = this.lameDuck() ? [] : [this.identity.id];
    for (const [id, p] of this.peers) if (now - p.seen < LOST_AFTER_MS && !p.lameDuck) out.push(id);
    return out;
  }

  /**
   * How long `node` has been lost (0: it is not). A node never heard since this one started counts from
   * this node's start, so the workloads of a node that died while this one was down move too.
   */
  lostForMs(node: string): number {
    if (node === this.identity.id) return 0;
    const last = this.peers.get(node)?.seen ?? this.started;
    const silent = Date.now() - last;
    return silent < LOST_AFTER_MS ? 0 : silent - LOST_AFTER_MS;
  }

  close(): void {
    clearInterval(this.timer);
    this.sub?.unsubscribe();
  }

  private beat(): void {
    if (this.nc.isClosed()) return;
    const subject = heartbeatSubject(this.identity.id);
    const body = encoder.encode(JSON.stringify({ node_id: this.identity.id, at: Date.now(), lame_duck: this.lameDuck() } satisfies Heartbeat));
    const h = natsHeaders();
    for (const [k, v] of Object.entries(signAsNode(this.identity.signer, subject, body))) h.set(k, v);
    try {
      this.nc.publish(subject, body, { headers: h });
    } catch (err) {
      this.log.debug({ err: (err as Error).message }, "heartbeat not sent");
    }
  }

  private heard(node: string, data: Uint8Array, signer: string | undefined, signature: string | undefined): void {
    if (!NODE_ID.test(node) || signer !== node) return;
    if ("problem" in verifyNodeSigned(heartbeatSubject(node), data, signer, signature)) return;
    let beat: Heartbeat;
    try {
      beat = JSON.parse(new TextDecoder().decode(data)) as Heartbeat;
    } catch {
      return;
    }
    const now = Date.now();
    if (beat?.node_id !== node || typeof beat.at !== "number" || Math.abs(beat.at - now) > MAX_SKEW_MS) return;
    const known = this.peers.get(node);
    if (known && beat.at <= known.at) return;
    if (!known || now - known.seen >= LOST_AFTER_MS) this.log.info({ peer: node }, known ? "node is back" : "node joined");
    if (!known && this.peers.size >= MAX_PEERS) this.forgetLongestSilent();
    this.peers.set(node, { seen: now, at: beat.at, lameDuck: beat.lame_duck === true });
  }

  private forgetLongestSilent(): void {
    let oldest: string | undefined;
    for (const [id, p] of this.peers) if (oldest === undefined || p.seen < (this.peers.get(oldest) as Peer).seen) oldest = id;
    if (oldest !== undefined) this.peers.delete(oldest);
  }
}
