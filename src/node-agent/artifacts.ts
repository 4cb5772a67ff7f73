// Fetches a workload's artifact and checks its SHA-256 before anything runs it. Two sources only, because a
// deploy request is written by someone else and must not read what the node can read:
// - nats://NEX_ARTIFACTS/<key>: the object store bucket `nex run` uploads to (no other bucket: another
//   bucket may be a tenant's host-service store);
// - file:///abs/path: a regular file under the artifact directory the node's operator configured
//   (--artifact-dir), after symlinks are resolved; with none configured, file:// is refused.
// Errors never carry the computed hash or any artifact bytes, so a wrong guess teaches the sender nothing.

import { constants as fsConstants } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { NatsConnection } from "@nats-io/transport-node";
import { Objm, type ObjectStore } from "@nats-io/obj";
import { jetstream } from "@nats-io/jetstream";
import { ARTIFACT_BUCKET } from "../protocol/control.js";
import { transientCause } from "../host-services/jetstream-errors.js";
import { retryWhileTransient } from "../host-services/jetstream-retry.js";
import { sha256Hex } from "../util/sha256.js";
import { ControlError } from "./errors.js";

export interface ArtifactSource {
  /** The operator's artifact directory (resolved, no symlinks), or undefined: file:// artifacts are refused. */
  artifactDir?: string;
  maxBytes: number;
}

export async function fetchArtifact(nc: NatsConnection, url: string, expectedSha256: string, source: ArtifactSource): Promise<Uint8Array> {
  let bytes: Uint8Array;
  if (url.startsWith("nats://")) bytes = await fromObjectStore(nc, url, source.maxBytes);
  else if (url.startsWith("file://")) bytes = await fromArtifactDir(url, source);
  else throw new ControlError(400, `unsupported artifact url ${url}`);
  if (sha256Hex(bytes) !== expectedSha256) throw new ControlError(400, "artifact hash mismatch: the artifact's SHA-256 is not the one the request names");
  return bytes;
}

/** How long one JetStream API request of an artifact read may take before it is tried again. */
const ARTIFACT_API_TIMEOUT_MS = 1500;

/** The artifact store opened once per connection: opening asks for the stream's info, a round trip every deploy would pay. */
const openStores = new WeakMap<NatsConnection, Promise<ObjectStore>>();

function artifactStore(nc: NatsConnection): Promise<ObjectStore> {
  let store = openStores.get(nc);
  if (!store) {
    // Reads are retried, so each JetStream API request gets a short time: a consumer that nats-server 2.9
    // places on a server that is down only times out, and the next try usually lands on a live one.
    const js = jetstream(nc, { timeout: ARTIFACT_API_TIMEOUT_MS });
    store = retryWhileTransient(() => new Objm(js).open(ARTIFACT_BUCKET));
    store.catch(() => openStores.delete(nc));
    openStores.set(nc, store);
  }
  return store;
}

/** Reads a stream to its end, refusing it past maxBytes (the size the object's info gave may be wrong). */
async function readAll(data: ReadableStream<Uint8Array>, size: number, maxBytes: number): Promise<Uint8Array> {
  const out = new Uint8Array(size);
  let at = 0;
  for await (const chunk of data as unknown as AsyncIterable<Uint8Array>) {
    if (at + chunk.length > Math.min(size, maxBytes)) throw new ControlError(400, "the artifact is larger than its object info says");
    out.set(chunk, at);
    at += chunk.length;
  }
  return at === size ? out : out.subarray(0, at);
}

async function fromObjectStore(nc: NatsConnection, url: string, maxBytes: number): Promise<Uint8Array> {
  const rest = url.slice("nats://".length);
  const slash = rest.indexOf("/");
  if (slash <= 0 || slash === rest.length - 1) throw new ControlError(400, `artifact url ${url} must be nats://${ARTIFACT_BUCKET}/<key>`);
  const bucket = rest.slice(0, slash);
  if (bucket !== ARTIFACT_BUCKET) throw new ControlError(403, `artifacts come from the ${ARTIFACT_BUCKET} object store only, not ${bucket}`);
  const key = decodeURIComponent(rest.slice(slash + 1));
  let store: ObjectStore;
  try {
    store = await artifactStore(nc);
  } catch (err) {
    const transient = transientCause(err);
    if (transient) throw new ControlError(503, `the artifact store is not available now: ${transient.cause}`);
    throw new ControlError(404, `artifact bucket ${bucket} not found`);
  }
  // One get: the object's info (its size checked before any chunk is read) and its chunks. A server of
  // the store lost: the read is tried again (retryWhileTransient) rather than failing the deploy.
  return retryWhileTransient(async () => {
    const object = await store.get(key);
    if (object === null) throw new ControlError(404, `artifact ${url} not found`);
    // get() follows links: one to another bucket (a tenant's store) is not an artifact.
    const refusal =
      object.info.bucket !== ARTIFACT_BUCKET
        ? new ControlError(403, `artifact ${url} is a link out of the ${ARTIFACT_BUCKET} object store`)
        : object.info.size > maxBytes
          ? new ControlError(413, `artifact is ${object.info.size} bytes; this node takes at most ${maxBytes}`)
          : undefined;
    if (refusal) {
      await object.data.cancel().catch(() => undefined);
      throw refusal;
    }
    const bytes = await readAll(object.data, object.info.size, maxBytes);
    const failed = await object.error;
    if (failed) throw failed;
    return bytes;
  });
}

async function fromArtifactDir(url: string, source: ArtifactSource): Promise<Uint8Array> {
  const dir = source.artifactDir;
  if (!dir) throw new ControlError(403, "this node takes no file:// artifacts (its operator configured no --artifact-dir)");
  let file: string;
  try {
    file = fileURLToPath(url);
  } catch {
    throw new ControlError(400, `artifact url ${url} is not a valid file:// url`);
  }
  // Refuse before touching the file system, so a request cannot probe which paths exist outside the directory.
  if (!isInside(dir, path.resolve(file))) throw new ControlError(403, `artifact ${url} is not under this node's artifact directory`);
  let real: string;
  try {
    real = await fs.realpath(file);
  } catch {
    throw new ControlError(404, `artifact ${url} not found in this node's artifact directory`);
  }
  if (!isInside(dir, real)) throw new ControlError(403, `artifact ${url} leads outside this node's artifact directory`);
  // O_NOFOLLOW: the path checked above cannot be swapped for a symlink before it is opened; O_NONBLOCK:
  // a FIFO does not hang the open (it is then refused as not a regular file).
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(real, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK);
  } catch {
    throw new ControlError(404, `artifact ${url} not readable on this node`);
  }
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw new ControlError(400, `artifact ${url} is not a regular file`);
    if (stat.size > source.maxBytes) throw new ControlError(413, `artifact is ${stat.size} bytes; this node takes at most ${source.maxBytes}`);
    return await handle.readFile();
  } finally {
    await handle.close();
  }
}

function isInside(dir: string, file: string): boolean {
  const relative = path.relative(dir, file);
  return relative !== "" && !relative.startsWith("..") && !path.isAbsolute(relative);
}

/**
 * Checks an operator's --artifact-dir at start-up and returns it resolved. It may neither hold nor lie
 * inside the node's own data (keys, broker store) or the issuer keys, since every file under it can be deployed.
 */
export async function resolveArtifactDir(dir: string, secretDirs: string[]): Promise<string> {
  let real: string;
  try {
    real = await fs.realpath(dir);
    if (!(await fs.stat(real)).isDirectory()) throw new Error("not a directory");
  } catch (err) {
    throw new Error(`artifact directory ${dir} is not a readable directory: ${err instanceof Error ? err.message : err}`);
  }
  for (const secret of secretDirs) {
    const realSecret = await fs.realpath(secret).catch(() => path.resolve(secret));
    if (realSecret === real || isInside(real, realSecret) || isInside(realSecret, real)) {
      throw new Error(`artifact directory ${dir} overlaps ${secret}, which holds keys and stored data: choose a directory of artifacts only`);
    }
  }
  return real;
}
