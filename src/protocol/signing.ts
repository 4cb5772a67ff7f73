// Signed control requests. The issuer (an nkey the CLI creates on first use) signs the subject and the
// body together, so a captured request cannot be replayed to another node, namespace or workload; the
// body's requested_at bounds replay in time, and the node refuses a signature it has seen
// (node-agent/replay-guard.ts). Signatures travel in headers, the body stays plain JSON.

import { createPrivateKey, createPublicKey, type KeyObject, sign as edSign, verify as edVerify } from "node:crypto";
import { fromPublic, type KeyPair } from "@nats-io/nkeys";

export const ISSUER_HEADER = "Nex-Issuer";
export const SIGNATURE_HEADER = "Nex-Signature";
/** How old requested_at may be by the node's clock. */
export const REPLAY_WINDOW_MS = 5 * 60 * 1000;
/** How far ahead of the node's clock requested_at may be (clock skew); a later one would stretch the window. */
export const MAX_CLOCK_AHEAD_MS = 30 * 1000;

function signedBytes(subject: string, body: Uint8Array): Uint8Array {
  const prefix = new TextEncoder().encode(`${subject}\n`);
  const out = new Uint8Array(prefix.length + body.length);
  out.set(prefix, 0);
  out.set(body, prefix.length);
  return out;
}

// nkeys signs with a pure-JS Ed25519 (about 16 ms a signature, 19 ms a check on this machine); Node's
// native Ed25519 takes well under 0.1 ms. The keys are the same: an nkey is base32 of a prefix, the 32
// raw key bytes and a CRC16.
const BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const PKCS8_ED25519_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");
const SPKI_ED25519_PREFIX = Buffer.from("302a300506032b6570032100", "hex");

function base32Decode(text: string): Buffer {
  const out: number[] = [];
  let bits = 0;
  let value = 0;
  for (const ch of text) {
    const v = BASE32.indexOf(ch);
    if (v < 0) throw new Error("invalid base32");
    value = (value << 5) | v;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

const privateKeys = new WeakMap<KeyPair, KeyObject>();
const publicKeys = new Map<string, KeyObject>();

function privateKeyOf(kp: KeyPair): KeyObject {
  let key = privateKeys.get(kp);
  if (!key) {
    const raw = base32Decode(new TextDecoder().decode(kp.getSeed())).subarray(2, 34); // 2 prefix bytes, then the seed
    key = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, raw]), format: "der", type: "pkcs8" });
    privateKeys.set(kp, key);
  }
  return key;
}

function publicKeyOf(nkey: string): KeyObject {
  let key = publicKeys.get(nkey);
  if (!key) {
    fromPublic(nkey); // validates prefix and checksum
    const raw = base32Decode(nkey).subarray(1, 33);
    key = createPublicKey({ key: Buffer.concat([SPKI_ED25519_PREFIX, raw]), format: "der", type: "spki" });
    if (publicKeys.size > 1024) publicKeys.clear();
    publicKeys.set(nkey, key);
  }
  return key;
}

export function signRequest(issuer: KeyPair, subject: string, body: Uint8Array): Record<string, string> {
  const signature = edSign(null, signedBytes(subject, body), privateKeyOf(issuer)).toString("base64url");
  return { [ISSUER_HEADER]: issuer.getPublicKey(), [SIGNATURE_HEADER]: signature };
}

/** Returns the issuer's public key when the signature is valid, or a reason it is not. */
export function verifyRequest(
  subject: string,
  body: Uint8Array,
  issuer: string | undefined,
  signature: string | undefined,
): { issuer: string } | { problem: string } {
  if (!issuer || !signature) return { problem: "request is not signed (Nex-Issuer and Nex-Signature headers are required)" };
  let key: KeyObject;
  try {
    key = publicKeyOf(issuer);
  } catch {
    return { problem: `issuer ${issuer} is not a valid public nkey` };
  }
  // One signature, one spelling: base64url decoding ignores a last character's spare bits and takes
  // base64's '+' and '/' too, so a replay could otherwise pass as a request never seen (replay-guard.ts).
  const bytes = Buffer.from(signature, "base64url");
  if (bytes.toString("base64url") !== signature) return { problem: "signature is not in canonical base64url" };
  let ok = false;
  try {
    ok = edVerify(null, signedBytes(subject, body), key, bytes);
  } catch {
    ok = false;
  }
  return ok ? { issuer } : { problem: "signature does not match the request" };
}

export function requestAgeProblem(requestedAt: string, now = Date.now()): string | undefined {
  const at = Date.parse(requestedAt);
  if (Number.isNaN(at)) return "requested_at is not a date";
  if (at - now > MAX_CLOCK_AHEAD_MS) return "requested_at is more than 30 s in the future (check the sender's clock)";
  if (now - at > REPLAY_WINDOW_MS) return "requested_at is older than the 5 minute window (clock skew or a replayed request)";
  return undefined;
}

/**
 * A node's xkey, signed with its nkey: whoever seals environment values checks it, so nobody who answers
 * an auction or a ping can pass its own xkey off as a node's (the node id is the public key that verifies).
 */
function xkeyBinding(nodeId: string, xkey: string): Uint8Array {
  return new TextEncoder().encode(`nex-node-xkey\n${nodeId}\n${xkey}`);
}

export function signNodeXkey(node: KeyPair, xkey: string): string {
  return edSign(null, xkeyBinding(node.getPublicKey(), xkey), privateKeyOf(node)).toString("base64url");
}

export function nodeXkeyIsSigned(nodeId: string, xkey: string, signature: string | undefined): boolean {
  if (!signature || !/^N[A-Z2-7]{55}$/.test(nodeId)) return false;
  try {
    return edVerify(null, xkeyBinding(nodeId, xkey), publicKeyOf(nodeId), Buffer.from(signature, "base64url"));
  } catch {
    return false;
  }
}
