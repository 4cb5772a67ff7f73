// Signed control requests. The issuer (an nkey the CLI creates on first use) signs the subject and the
// body together, so a captured request cannot be replayed to another node, namespace or workload; the
// body's requested_at bounds replay in time. Signatures travel in headers, the body stays plain JSON.

import { fromPublic, fromSeed, type KeyPair } from "@nats-io/nkeys";

export const ISSUER_HEADER = "Nex-Issuer";
export const SIGNATURE_HEADER = "Nex-Signature";
/** How far requested_at may be from the node's clock. */
export const REPLAY_WINDOW_MS = 5 * 60 * 1000;

function signedBytes(subject: string, body: Uint8Array): Uint8Array {
  const prefix = new TextEncoder().encode(`${subject}\n`);
  const out = new Uint8Array(prefix.length + body.length);
  out.set(prefix, 0);
  out.set(body, prefix.length);
  return out;
}

export function signRequest(issuer: KeyPair, subject: string, body: Uint8Array): Record<string, string> {
  const signature = Buffer.from(issuer.sign(signedBytes(subject, body))).toString("base64url");
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
  let key: KeyPair;
  try {
    key = fromPublic(issuer);
  } catch {
    return { problem: `issuer ${issuer} is not a valid public nkey` };
  }
  let ok = false;
  try {
    ok = key.verify(signedBytes(subject, body), Buffer.from(signature, "base64url"));
  } catch {
    ok = false;
  }
  return ok ? { issuer } : { problem: "signature does not match the request" };
}

export function requestAgeProblem(requestedAt: string, now = Date.now()): string | undefined {
  const at = Date.parse(requestedAt);
  if (Number.isNaN(at)) return "requested_at is not a date";
  if (Math.abs(now - at) > REPLAY_WINDOW_MS) return "requested_at is outside the 5 minute window (clock skew or a replayed request)";
  return undefined;
}

export function keyPairFromSeed(seed: string): KeyPair {
  return fromSeed(new TextEncoder().encode(seed.trim()));
}
