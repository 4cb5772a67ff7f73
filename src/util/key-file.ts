// Key files: an nkey seed per file, created owner-only on first use.

import fs from "node:fs";
import path from "node:path";
import type { KeyPair } from "@nats-io/nkeys";

/** Reads an nkey seed file, or creates the key and writes its seed there (owner-only). */
export function loadOrCreateKey(file: string, create: () => KeyPair, load: (seed: Uint8Array) => KeyPair): KeyPair {
  if (fs.existsSync(file)) return load(new TextEncoder().encode(fs.readFileSync(file, "utf8").trim()));
  const kp = create();
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  fs.writeFileSync(file, new TextDecoder().decode(kp.getSeed()) + "\n", { mode: 0o600 });
  return kp;
}
