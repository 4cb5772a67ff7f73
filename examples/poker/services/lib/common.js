// Helpers of the poker services (bundled into each by examples/poker/build.mjs): JSON requests and
// {"error"} answers, SHA-256 and HMAC (the isolate has no crypto.subtle), random bytes from
// crypto.getRandomValues, KV entries with their revision.
import nacl from "tweetnacl";

// tweetnacl finds no random source in an isolate (no self.crypto, no require): give it the isolate's.
nacl.setPRNG((x, n) => x.set(crypto.getRandomValues(new Uint8Array(n))));

const enc = new TextEncoder();
const dec = new TextDecoder();
const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

/** SHA-256 of bytes (or a string, as UTF-8): 32 bytes. The isolate has no crypto.subtle. */
function sha256(input) {
  const data = typeof input === "string" ? enc.encode(input) : input;
  const len = data.length;
  const padded = new Uint8Array(((len + 9 + 63) >> 6) << 6);
  padded.set(data);
  padded[len] = 0x80;
  const bits = len * 8;
  const view = new DataView(padded.buffer);
  view.setUint32(padded.length - 8, Math.floor(bits / 0x100000000));
  view.setUint32(padded.length - 4, bits >>> 0);
  const h = new Uint32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
  const w = new Uint32Array(64);
  for (let off = 0; off < padded.length; off += 64) {
    for (let i = 0; i < 16; i++) w[i] = view.getUint32(off + i * 4);
    for (let i = 16; i < 64; i++) {
      const a = w[i - 15], b = w[i - 2];
      const s0 = ((a >>> 7) | (a << 25)) ^ ((a >>> 18) | (a << 14)) ^ (a >>> 3);
      const s1 = ((b >>> 17) | (b << 15)) ^ ((b >>> 19) | (b << 13)) ^ (b >>> 10);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) | 0;
    }
    let [a, b, c, d, e, f, g, hh] = h;
    for (let i = 0; i < 64; i++) {
      const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
      const t1 = (hh + S1 + ((e & f) ^ (~e & g)) + K[i] + w[i]) | 0;
      const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
      const t2 = (S0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
      hh = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
  }
  const out = new Uint8Array(32);
  const ov = new DataView(out.buffer);
  for (let i = 0; i < 8; i++) ov.setUint32(i * 4, h[i]);
  return out;
}

function concatBytes(a, b) {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** HMAC-SHA-256 (RFC 2104). */
function hmacSha256(key, message) {
  let k = typeof key === "string" ? enc.encode(key) : key;
  if (k.length > 64) k = sha256(k);
  const ipad = new Uint8Array(64), opad = new Uint8Array(64);
  for (let i = 0; i < 64; i++) {
    ipad[i] = (k[i] ?? 0) ^ 0x36;
    opad[i] = (k[i] ?? 0) ^ 0x5c;
  }
  const m = typeof message === "string" ? enc.encode(message) : message;
  return sha256(concatBytes(opad, sha256(concatBytes(ipad, m))));
}

function hex(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i++) s += (bytes[i] < 16 ? "0" : "") + bytes[i].toString(16);
  return s;
}

/** Compares two strings without stopping at the first difference. */
function sameString(a, b) {
  if (typeof a !== "string" || typeof b !== "string" || a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return d === 0;
}

/** Random bytes from the isolate's CSPRNG (nex's crypto.getRandomValues: ChaCha20 seeded by the runtime host). */
function randomBytes(n) {
  return crypto.getRandomValues(new Uint8Array(n));
}

/** A KV entry's parsed JSON value with its revision (for kv.update), or null when the key is missing. */
async function readEntry(kv, key) {
  const e = await kv.getEntry(key);
  if (e === null) return null;
  return { value: JSON.parse(dec.decode(e.value)), revision: e.revision };
}

function parseRequest(payload) {
  let req;
  try {
    req = JSON.parse(dec.decode(payload));
  } catch {
    throw new Refusal("the request is not JSON");
  }
  if (req === null || typeof req !== "object" || Array.isArray(req)) throw new Refusal("the request must be a JSON object");
  return req;
}

class Refusal extends Error {}

/** A player's id: 24 hex digits (the user service makes them). */
const USER_ID = /^[0-9a-f]{24}$/;

/** A request to another poker service through the messaging host service; its JSON answer. */
async function askService(hostServices, subject, body, timeoutMs) {
  const reply = await hostServices.async.messaging.request(subject, JSON.stringify(body), timeoutMs);
  return JSON.parse(dec.decode(reply));
}

/** Checks a player's id and token with poker.user.verify: their name, or a Refusal saying why not. */
async function verifyPlayer(hostServices, user, token) {
  if (typeof user !== "string" || !USER_ID.test(user)) throw new Refusal("user must be a user id (24 hex digits)");
  if (typeof token !== "string" || token.length === 0 || token.length > 128) throw new Refusal("wrong token");
  const r = await askService(hostServices, "poker.user.verify", { user, token }, 5000);
  if (r.error) throw new Refusal(r.error);
  return r.name;
}

/** A handler that answers {"error": "..."} (a JSON body, not an error reply) when it refuses. */
function answering(fn) {
  return async (subject, payload) => {
    try {
      return await fn(payload);
    } catch (e) {
      if (e instanceof Refusal) return { error: e.message };
      console.log(`[${subject}] ${e && e.stack ? e.stack : e}`);
      return { error: `internal error${e && e.code ? ` (${e.code})` : ""}: try again` };
    }
  };
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
function fromHex(s, bytes) {
  if (typeof s !== "string" || s.length !== bytes * 2 || !/^[0-9a-f]*$/.test(s)) return null;
  const out = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i++) out[i] = parseInt(s.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/**
 * Secrets in replies are sealed: every browser shares one broker user that may subscribe to `_INBOX.>`,
 * so any of them could read any reply. A token goes out in a box for the browser's one-time X25519 key
 * (nacl.box from a fresh key pair of ours); hole cards in a secretbox keyed with the first 32 bytes of
 * SHA-512 (nacl.hash) of the player's token, which the page computes the same way.
 */
function sealForKey(publicKeyHex, text) {
  const theirs = fromHex(publicKeyHex, nacl.box.publicKeyLength);
  if (theirs === null) throw new Refusal("box_key must be 64 hex digits (an X25519 public key)");
  const ours = nacl.box.keyPair();
  const nonce = nacl.randomBytes(nacl.box.nonceLength);
  return { key: hex(ours.publicKey), nonce: hex(nonce), box: hex(nacl.box(enc.encode(text), nonce, theirs, ours.secretKey)) };
}

/** The secretbox key of a player's token: SHA-512 (nacl.hash), first 32 bytes. */
function tokenKey(token) {
  return nacl.hash(enc.encode(token)).subarray(0, nacl.secretbox.keyLength);
}

function sealWithToken(token, text) {
  const nonce = nacl.randomBytes(nacl.secretbox.nonceLength);
  return { nonce: hex(nonce), box: hex(nacl.secretbox(enc.encode(text), nonce, tokenKey(token))) };
}

export { enc, dec, fromHex, sealForKey, sealWithToken, sha256, hmacSha256, hex, sameString, randomBytes, readEntry, parseRequest, Refusal, answering, sleep, USER_ID, askService, verifyPlayer };
