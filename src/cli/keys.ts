// The CLI user's keys, created on first use under NEX_HOME (default ~/.nex): issuer.nk signs control
// requests (nodes may restrict deploys to known issuers), publisher.xk seals environment values to a
// node's xkey so nobody else on the bus can read them.

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createAccount, createCurve, fromCurveSeed, fromSeed, type KeyPair } from "@nats-io/nkeys";

export function nexHome(): string {
  return process.env.NEX_HOME ?? path.join(os.homedir(), ".nex");
}

function loadOrCreate(name: string, create: () => KeyPair, load: (seed: Uint8Array) => KeyPair): KeyPair {
  const file = path.join(nexHome(), name);
  if (fs.existsSync(file)) return load(new TextEncoder().encode(fs.readFileSync(file, "utf8").trim()));
  const kp = create();
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  fs.writeFileSync(file, new TextDecoder().decode(kp.getSeed()) + "\n", { mode: 0o600 });
  return kp;
}

export function issuerKey(): KeyPair {
  return loadOrCreate("issuer.nk", createAccount, fromSeed);
}

export function publisherXkey(): KeyPair {
  return loadOrCreate("publisher.xk", createCurve, fromCurveSeed);
}
