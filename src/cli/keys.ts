// The CLI user's keys, created on first use under NEX_HOME (default ~/.nex): issuer.nk signs control
// requests (nodes may restrict deploys to known issuers), publisher.xk seals environment values to a
// node's xkey so nobody else on the bus can read them.

import path from "node:path";
import { createAccount, createCurve, fromCurveSeed, fromSeed, type KeyPair } from "@nats-io/nkeys";
import { loadOrCreateKey } from "../node-agent/identity.js";
import { nexHome } from "../util/nex-home.js";

export function issuerKey(): KeyPair {
  return loadOrCreateKey(path.join(nexHome(), "issuer.nk"), createAccount, fromSeed);
}

export function publisherXkey(): KeyPair {
  return loadOrCreateKey(path.join(nexHome(), "publisher.xk"), createCurve, fromCurveSeed);
}
