// Creating a KV key only if it is absent: the one atomic step the node's registries (the replay guard,
// deploy grants and child slots) build on.

import type { KV } from "@nats-io/kv";

/** True when this call created the key, false when it existed already; other failures throw. */
export async function createIfAbsent(kv: KV, key: string, value: string): Promise<boolean> {
  try {
    await kv.create(key, value);
    return true;
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    if (/wrong last sequence|key exists/i.test(message)) return false;
    throw err;
  }
}
