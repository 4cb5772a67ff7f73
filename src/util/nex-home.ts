// NEX_HOME (default ~/.nex): the local user's nex files. The CLI keeps its keys there: issuer.nk signs
// control requests (a node accepts the local issuer by default), publisher.xk seals environment values
// to a node's xkey so nobody else on the bus can read them. A node started without --data-dir keeps its
// own data in NEX_HOME/node, a directory of its own, so nothing it serves to others sits beside the keys.

import os from "node:os";
import path from "node:path";
import { createAccount, createCurve, fromCurveSeed, fromSeed, type KeyPair } from "@nats-io/nkeys";
import { loadOrCreateKey } from "./key-file.js";

export function nexHome(): string {
  return process.env.NEX_HOME ?? path.join(os.homedir(), ".nex");
}

export function defaultNodeDataDir(): string {
  return path.join(nexHome(), "node");
}

/** The local issuer key (NEX_HOME/issuer.nk) that `nex run` signs with; created on first use. */
export function issuerKey(): KeyPair {
  return loadOrCreateKey(path.join(nexHome(), "issuer.nk"), createAccount, fromSeed);
}

export function publisherXkey(): KeyPair {
  return loadOrCreateKey(path.join(nexHome(), "publisher.xk"), createCurve, fromCurveSeed);
}
