// @ts-check
// `crypto.getRandomValues` and `crypto.randomUUID` inside workload isolates (Web Crypto's two
// synchronous calls; no `crypto.subtle`). isolated-vm contexts have no source of randomness but
// Math.random (V8's xorshift, whose state can be recovered from a few outputs), and tokens, ids and a
// card deck need a CSPRNG.
//
// Each context gets 32 bytes from the runtime host's CSPRNG (crypto.randomBytes) when it is set up and
// runs ChaCha20 over them (RFC 8439 block function, zero nonce, counter from 0), as Linux's getrandom
// does. After each call the generator rekeys itself with 32 more bytes of its own keystream ("fast key
// erasure"), so state read later does not give earlier outputs away. The generator's state lives only in
// the bootstrap's closure: workload code cannot reach it, and it is the workload's own context anyway.
//
// makeRandom (key bytes → fill(bytes)) uses nothing but arithmetic and the typed-array constructors it
// is given, so the same text is tested against Node's ChaCha20 (test/crypto-bootstrap.test.ts) and is
// part of BOOTSTRAP_SOURCE; crypto.js builds the global `crypto` on it.

/**
 * @param {Uint8Array} seed
 * @param {Uint8ArrayConstructor} U8
 * @param {Uint32ArrayConstructor} U32
 * @returns {(bytes: Uint8Array, n: number) => void}
 */
function makeRandom(seed, U8, U32) {
  const key = new U32(8);
  for (let i = 0; i < 8; i++) key[i] = (seed[4 * i] | (seed[4 * i + 1] << 8) | (seed[4 * i + 2] << 16) | (seed[4 * i + 3] << 24)) >>> 0;
  const x = new U32(16);
  const block = new U8(64);
  let counter = 0;
  function chachaBlock() {
    x[0] = 0x61707865; x[1] = 0x3320646e; x[2] = 0x79622d32; x[3] = 0x6b206574;
    for (let i = 0; i < 8; i++) x[4 + i] = key[i];
    x[12] = counter >>> 0; x[13] = 0; x[14] = 0; x[15] = 0;
    counter = (counter + 1) >>> 0;
    let s0 = x[0], s1 = x[1], s2 = x[2], s3 = x[3], s4 = x[4], s5 = x[5], s6 = x[6], s7 = x[7];
    let s8 = x[8], s9 = x[9], s10 = x[10], s11 = x[11], s12 = x[12], s13 = x[13], s14 = x[14], s15 = x[15];
    for (let r = 0; r < 10; r++) {
      s0 = (s0 + s4) | 0; s12 ^= s0; s12 = (s12 << 16) | (s12 >>> 16);
      s8 = (s8 + s12) | 0; s4 ^= s8; s4 = (s4 << 12) | (s4 >>> 20);
      s0 = (s0 + s4) | 0; s12 ^= s0; s12 = (s12 << 8) | (s12 >>> 24);
      s8 = (s8 + s12) | 0; s4 ^= s8; s4 = (s4 << 7) | (s4 >>> 25);
      s1 = (s1 + s5) | 0; s13 ^= s1; s13 = (s13 << 16) | (s13 >>> 16);
      s9 = (s9 + s13) | 0; s5 ^= s9; s5 = (s5 << 12) | (s5 >>> 20);
      s1 = (s1 + s5) | 0; s13 ^= s1; s13 = (s13 << 8) | (s13 >>> 24);
      s9 = (s9 + s13) | 0; s5 ^= s9; s5 = (s5 << 7) | (s5 >>> 25);
      s2 = (s2 + s6) | 0; s14 ^= s2; s14 = (s14 << 16) | (s14 >>> 16);
      s10 = (s10 + s14) | 0; s6 ^= s10; s6 = (s6 << 12) | (s6 >>> 20);
      s2 = (s2 + s6) | 0; s14 ^= s2; s14 = (s14 << 8) | (s14 >>> 24);
      s10 = (s10 + s14) | 0; s6 ^= s10; s6 = (s6 << 7) | (s6 >>> 25);
      s3 = (s3 + s7) | 0; s15 ^= s3; s15 = (s15 << 16) | (s15 >>> 16);
      s11 = (s11 + s15) | 0; s7 ^= s11; s7 = (s7 << 12) | (s7 >>> 20);
      s3 = (s3 + s7) | 0; s15 ^= s3; s15 = (s15 << 8) | (s15 >>> 24);
      s11 = (s11 + s15) | 0; s7 ^= s11; s7 = (s7 << 7) | (s7 >>> 25);
      s0 = (s0 + s5) | 0; s15 ^= s0; s15 = (s15 << 16) | (s15 >>> 16);
      s10 = (s10 + s15) | 0; s5 ^= s10; s5 = (s5 << 12) | (s5 >>> 20);
      s0 = (s0 + s5) | 0; s15 ^= s0; s15 = (s15 << 8) | (s15 >>> 24);
      s10 = (s10 + s15) | 0; s5 ^= s10; s5 = (s5 << 7) | (s5 >>> 25);
      s1 = (s1 + s6) | 0; s12 ^= s1; s12 = (s12 << 16) | (s12 >>> 16);
      s11 = (s11 + s12) | 0; s6 ^= s11; s6 = (s6 << 12) | (s6 >>> 20);
      s1 = (s1 + s6) | 0; s12 ^= s1; s12 = (s12 << 8) | (s12 >>> 24);
      s11 = (s11 + s12) | 0; s6 ^= s11; s6 = (s6 << 7) | (s6 >>> 25);
      s2 = (s2 + s7) | 0; s13 ^= s2; s13 = (s13 << 16) | (s13 >>> 16);
      s8 = (s8 + s13) | 0; s7 ^= s8; s7 = (s7 << 12) | (s7 >>> 20);
      s2 = (s2 + s7) | 0; s13 ^= s2; s13 = (s13 << 8) | (s13 >>> 24);
      s8 = (s8 + s13) | 0; s7 ^= s8; s7 = (s7 << 7) | (s7 >>> 25);
      s3 = (s3 + s4) | 0; s14 ^= s3; s14 = (s14 << 16) | (s14 >>> 16);
      s9 = (s9 + s14) | 0; s4 ^= s9; s4 = (s4 << 12) | (s4 >>> 20);
      s3 = (s3 + s4) | 0; s14 ^= s3; s14 = (s14 << 8) | (s14 >>> 24);
      s9 = (s9 + s14) | 0; s4 ^= s9; s4 = (s4 << 7) | (s4 >>> 25);
    }
    const out = [s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11, s12, s13, s14, s15];
    for (let i = 0; i < 16; i++) {
      const v = (out[i] + x[i]) >>> 0;
      block[4 * i] = v & 255; block[4 * i + 1] = (v >>> 8) & 255; block[4 * i + 2] = (v >>> 16) & 255; block[4 * i + 3] = v >>> 24;
    }
  }
  // Fills bytes (a Uint8Array) with keystream, then rekeys from the next 32 bytes of it.
  return function fill(bytes, n) {
    let i = 0;
    while (i < n) {
      chachaBlock();
      for (let j = 0; j < 64 && i < n; j++) bytes[i++] = block[j];
    }
    chachaBlock();
    for (let k = 0; k < 8; k++) key[k] = (block[4 * k] | (block[4 * k + 1] << 8) | (block[4 * k + 2] << 16) | (block[4 * k + 3] << 24)) >>> 0;
    for (let j = 0; j < 64; j++) block[j] = 0;
    counter = 0;
  };
}
