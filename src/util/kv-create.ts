// Creating a KV key only if it is absent, and telling a compare-and-set that lost from other failures:
// the atomic steps the node's registries (the replay guard, deploy grants, child slots, the workload
// registry) and the kv host service build on.

import type { KV } from "@nats-io/kv";

/** True when this call created the key, false when it existed already; other failures throw. */
export async function createIfAbsent(kv: KV, key: string, value: string): Promise<boolean> {
  try {
    await kv.create(key, value);
    return true;
  } catch (err) {
    if (isCasConflict(err) || /key exists/i.test(errorText(err))) return false;
    throw err;
  }
}

/** A KV create, update or delete at a revision that the key was no longer at (JetStream's "wrong last sequence"). */
export function isCasConflict(err: unknown): boolean {
  return /wrong last sequence/i.test(errorText(err));
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
