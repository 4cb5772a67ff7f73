// Refuses a signed control request the node has seen before, and remembers deploys by idempotency key.
//
// Each request's signature is recorded with a KV create (which fails when the key exists) in a bucket of
// the node's own whose entries expire after REMEMBER_MS, longer than the window in which requested_at is
// accepted: a captured request is refused for as long as its timestamp would pass, also after a node
// restart, and the bucket never grows past the requests of the last few minutes.

import type { NatsConnection } from "@nats-io/transport-node";
import type { KV } from "@nats-io/kv";
import { createKv } from "../util/replicated-buckets.js";
import { REPLAY_WINDOW_MS } from "../protocol/signing.js";
import { ControlError } from "./errors.js";
import { createIfAbsent } from "../util/kv-create.js";

/** How long signatures and idempotency keys are remembered: past the replay window, with margin for skew. */
export const REMEMBER_MS = 2 * REPLAY_WINDOW_MS;

export type IdempotentDeploy = { workloadId: string; fresh: true } | { workloadId: string; fresh: false };

export class ReplayGuard {
  private constructor(private readonly kv: KV) {}

  static async open(nc: NatsConnection, nodeId: string): Promise<ReplayGuard> {
    return new ReplayGuard(await createKv(nc, `NEX_SEEN_${nodeId}`, { history: 1, ttl: REMEMBER_MS }));
  }

  /** Records the request's signature; a second request with the same signature is a replay (409). */
  async admit(signature: string): Promise<void> {
    if (!(await this.claim(`sig.${signature}`, ""))) {
      throw new ControlError(409, "replayed request: this signed request was already received (sign a new one)");
    }
  }

  /**
   * Claims an issuer's idempotency key for a new workload id. When the key was claimed before (a client
   * retrying after a timeout), returns the workload id the first request was given instead.
   */
  async deployOnce(issuer: string, namespace: string, key: string, newWorkloadId: string): Promise<IdempotentDeploy> {
    const entryKey = `idem.${issuer}.${namespace}.${key}`;
    if (await this.claim(entryKey, newWorkloadId)) return { workloadId: newWorkloadId, fresh: true };
    const entry = await this.kv.get(entryKey);
    if (!entry || entry.operation !== "PUT") throw new ControlError(409, "idempotency key is being released; try again");
    return { workloadId: entry.string(), fresh: false };
  }

  /** Forgets an idempotency key whose deploy failed, so a retry may try again. */
  async release(issuer: string, namespace: string, key: string): Promise<void> {
    await this.kv.delete(`idem.${issuer}.${namespace}.${key}`).catch(() => undefined);
  }

  /** True when this call created the key; false when it existed. */
  private async claim(key: string, value: string): Promise<boolean> {
    try {
      return await createIfAbsent(this.kv, key, value);
    } catch (err) {
      throw new ControlError(503, `cannot check for replayed requests right now: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
}
