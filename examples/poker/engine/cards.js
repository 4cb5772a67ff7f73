// @ts-check
// Cards are 2-character strings: rank ("2".."9", "T", "J", "Q", "K", "A") then suit ("c", "d", "h", "s").
// Plain, dependency-free ES module: it runs inside a V8 isolate with no Node APIs.

export const RANKS = "23456789TJQKA";
export const SUITS = "cdhs";

/** @typedef {string} Card */

/**
 * The numeric rank of a card: 2..14 (ace high).
 * @param {Card} card
 * @returns {number}
 */
export function rankOf(card) {
  const r = RANKS.indexOf(card[0]);
  if (r < 0 || card.length !== 2) throw new Error(`not a card: ${JSON.stringify(card)}`);
  return r + 2;
}

/**
 * @param {Card} card
 * @returns {string} one of "c", "d", "h", "s"
 */
export function suitOf(card) {
  const s = card[1];
  if (card.length !== 2 || !SUITS.includes(s)) throw new Error(`not a card: ${JSON.stringify(card)}`);
  return s;
}

/**
 * @param {unknown} card
 * @returns {boolean}
 */
export function isCard(card) {
  return typeof card === "string" && card.length === 2 && RANKS.includes(card[0]) && SUITS.includes(card[1]);
}

/**
 * A fresh 52-card deck in a fixed order (2c 2d 2h 2s 3c ... As).
 * @returns {Card[]}
 */
export function newDeck() {
  /** @type {Card[]} */
  const deck = [];
  for (const r of RANKS) for (const s of SUITS) deck.push(r + s);
  return deck;
}

/**
 * Fisher-Yates shuffle. Returns a new array; the input is not modified.
 * @template T
 * @param {readonly T[]} deck
 * @param {(n: number) => number} randomInt returns a uniform integer in [0, n)
 * @returns {T[]}
 */
export function shuffle(deck, randomInt) {
  const out = deck.slice();
  for (let i = out.length - 1; i > 0; i--) {
    const j = randomInt(i + 1);
    if (!Number.isInteger(j) || j < 0 || j > i) throw new Error(`randomInt(${i + 1}) returned ${j}`);
    const t = out[i];
    out[i] = out[j];
    out[j] = t;
  }
  return out;
}

/**
 * Builds a uniform `randomInt(n)` from a `crypto.getRandomValues`-like function, by rejection sampling
 * on 32-bit words (no modulo bias): words at or above the largest multiple of n below 2^32 are drawn again.
 * @param {(array: Uint32Array) => Uint32Array} getRandomValues
 * @returns {(n: number) => number}
 */
export function randomIntFrom(getRandomValues) {
  const buf = new Uint32Array(1);
  return (n) => {
    if (!Number.isInteger(n) || n < 1 || n > 0x100000000) throw new Error(`randomInt: bad range ${n}`);
    const limit = 0x100000000 - (0x100000000 % n); // largest multiple of n that fits in 2^32
    for (;;) {
      getRandomValues(buf);
      const x = buf[0];
      if (x < limit) return x % n;
    }
  };
}

/**
 * A small deterministic PRNG (mulberry32) giving `randomInt(n)`, for tests and replays. Not for real games.
 * @param {number} seed
 * @returns {(n: number) => number}
 */
export function seededRandomInt(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0);
  };
  return randomIntFrom((arr) => {
    for (let i = 0; i < arr.length; i++) arr[i] = next();
    return arr;
  });
}
