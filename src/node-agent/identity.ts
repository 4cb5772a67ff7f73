// The node's identity: an nkey (its id, "N...") and an xkey (curve25519, "X...") that deployers seal
// environment values to. Both seeds live in the data directory so the id survives restarts.

import fs from "node:fs";
import path from "node:path";
import { createCurve, createServer, fromCurveSeed, fromSeed, type KeyPair } from "@nats-io/nkeys";

export interface NodeIdentity {
  /** Public nkey, the node id. */
  readonly id: string;
  readonly xkey: string;
  readonly signer: KeyPair;
  readonly curve: KeyPair;
}

/** Reads an nkey seed file, or creates the key and writes its seed there (owner-only). */
export function loadOrCreateKey(file: string, create: () => KeyPair, load: (seed: Uint8Array) => KeyPair): KeyPair {
  if (fs.existsSync(file)) return load(new TextEncoder().encode(fs.readFileSync(file, "utf8").trim()));
  const kp = create();
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  fs.writeFileSync(file, new TextDecoder().decode(kp.getSeed()) + "\n", { mode: 0o600 });
  return kp;
}

export function loadNodeIdentity(dataDir: string): NodeIdentity {
  const signer = loadOrCreateKey(path.join(dataDir, "node.nk"), createServer, fromSeed);
  const curve = loadOrCreateKey(path.join(dataDir, "node.xk"), createCurve, fromCurveSeed);
  return { id: signer.getPublicKey(), xkey: curve.getPublicKey(), signer, curve };
}
