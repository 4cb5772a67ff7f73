// The node's identity: an nkey (its id, "N...") and an xkey (curve25519, "X...") that deployers seal
// environment values to. Both seeds live in the data directory so the id survives restarts.

import path from "node:path";
import { createCurve, createServer, fromCurveSeed, fromSeed, type KeyPair } from "@nats-io/nkeys";
import { loadOrCreateKey } from "../util/key-file.js";

export interface NodeIdentity {
  /** Public nkey, the node id. */
  readonly id: string;
  readonly xkey: string;
  readonly signer: KeyPair;
  readonly curve: KeyPair;
}

export function loadNodeIdentity(dataDir: string): NodeIdentity {
  const signer = loadOrCreateKey(path.join(dataDir, "node.nk"), createServer, fromSeed);
  const curve = loadOrCreateKey(path.join(dataDir, "node.xk"), createCurve, fromCurveSeed);
  return { id: signer.getPublicKey(), xkey: curve.getPublicKey(), signer, curve };
}
