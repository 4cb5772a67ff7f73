// Fetches a workload's artifact (object store nats://<bucket>/<key>, or file:///path on the node) and
// checks its SHA-256 before anything runs it.

import fs from "node:fs/promises";
import { fileURLToPath } from "node:url";
import type { NatsConnection } from "@nats-io/transport-node";
import { Objm } from "@nats-io/obj";
import { sha256Hex } from "../util/sha256.js";
import { ControlError } from "./errors.js";

export async function fetchArtifact(nc: NatsConnection, url: string, expectedSha256: string, maxBytes: number): Promise<Uint8Array> {
  let bytes: Uint8Array;
  if (url.startsWith("nats://")) {
    const rest = url.slice("nats://".length);
    const slash = rest.indexOf("/");
    if (slash <= 0 || slash === rest.length - 1) throw new ControlError(400, `artifact url ${url} must be nats://<bucket>/<key>`);
    const bucket = rest.slice(0, slash);
    const key = decodeURIComponent(rest.slice(slash + 1));
    let store;
    try {
      store = await new Objm(nc).open(bucket);
    } catch {
      throw new ControlError(404, `artifact bucket ${bucket} not found`);
    }
    const info = await store.info(key);
    if (info === null) throw new ControlError(404, `artifact ${url} not found`);
    if (info.size > maxBytes) throw new ControlError(413, `artifact is ${info.size} bytes; this node takes at most ${maxBytes}`);
    const blob = await store.getBlob(key);
    if (blob === null) throw new ControlError(404, `artifact ${url} not found`);
    bytes = blob;
  } else if (url.startsWith("file://")) {
    const file = fileURLToPath(url);
    try {
      const stat = await fs.stat(file);
      if (stat.size > maxBytes) throw new ControlError(413, `artifact is ${stat.size} bytes; this node takes at most ${maxBytes}`);
      bytes = await fs.readFile(file);
    } catch (err) {
      if (err instanceof ControlError) throw err;
      throw new ControlError(404, `artifact ${url} not readable on this node`);
    }
  } else {
    throw new ControlError(400, `unsupported artifact url ${url}`);
  }
  const actual = sha256Hex(bytes);
  if (actual !== expectedSha256) throw new ControlError(400, `artifact hash mismatch: request says ${expectedSha256}, artifact is ${actual}`);
  return bytes;
}
