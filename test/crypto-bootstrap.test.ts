// The isolate's CSPRNG (src/runtimes/js/isolate/guest/make-random.js) is ChaCha20 (RFC 8439) with fast key
// erasure: checked here against Node's (OpenSSL's) ChaCha20 keystream, the same text the isolates run.

import { createCipheriv, randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { guestSource } from "../src/runtimes/js/isolate/bootstrap.js";

type Fill = (bytes: Uint8Array, n: number) => void;
const makeRandom = new Function(`${guestSource("make-random.js")}\nreturn makeRandom;`)() as (seed: Uint8Array, u8: typeof Uint8Array, u32: typeof Uint32Array) => Fill;

/** `n` bytes of ChaCha20 keystream for `key`, block counter from 0, nonce 0 (OpenSSL's IV: counter LE ‖ nonce). */
function keystream(key: Uint8Array, n: number): Buffer {
  return createCipheriv("chacha20", key, Buffer.alloc(16)).update(Buffer.alloc(n));
}

describe("crypto.getRandomValues's generator", () => {
  it("is the ChaCha20 keystream of its seed (RFC 8439 test vector key: 00..1f)", () => {
    const key = Uint8Array.from({ length: 32 }, (_, i) => i);
    const fill = makeRandom(key, Uint8Array, Uint32Array);
    const out = new Uint8Array(200);
    fill(out, 200);
    expect(Buffer.from(out).equals(keystream(key, 200))).toBe(true);
  });

  it("rekeys after each call from the keystream block after the last one it gave (fast key erasure)", () => {
    const seed = new Uint8Array(randomBytes(32));
    const fill = makeRandom(seed, Uint8Array, Uint32Array);
    const first = new Uint8Array(100);
    fill(first, 100);
    // 100 bytes used blocks 0 and 1; block 2's first 32 bytes are the next key.
    const stream = keystream(seed, 3 * 64);
    expect(Buffer.from(first).equals(stream.subarray(0, 100))).toBe(true);
    const nextKey = new Uint8Array(stream.subarray(128, 160));
    const second = new Uint8Array(64);
    fill(second, 64);
    expect(Buffer.from(second).equals(keystream(nextKey, 64))).toBe(true);
    // Never the same bytes twice from one seed.
    expect(Buffer.from(second).equals(Buffer.from(first.subarray(0, 64)))).toBe(false);
  });
});
