// @ts-check
// Texas hold'em hand evaluation: the best 5 cards out of 5..7, as a comparable numeric score.
// Plain, dependency-free ES module (runs inside a V8 isolate).
import { rankOf, suitOf } from "./cards.js";

export const CATEGORIES = [
  "High Card",
  "Pair",
  "Two Pair",
  "Three of a Kind",
  "Straight",
  "Flush",
  "Full House",
  "Four of a Kind",
  "Straight Flush",
];

const RANK_NAMES = ["", "", "Two", "Three", "Four", "Five", "Six", "Seven", "Eight", "Nine", "Ten", "Jack", "Queen", "King", "Ace"];
const RANK_PLURALS = ["", "", "Twos", "Threes", "Fours", "Fives", "Sixes", "Sevens", "Eights", "Nines", "Tens", "Jacks", "Queens", "Kings", "Aces"];

/**
 * @typedef {object} HandValue
 * @property {number} score higher is better; equal scores split the pot
 * @property {number} category 0 (high card) .. 8 (straight flush)
 * @property {string} categoryName e.g. "Two Pair"
 * @property {string} name e.g. "Two Pair, Kings and Nines"
 * @property {string[]} cards the 5 cards used, most significant first
 * @property {number[]} ranks the tie-break ranks, most significant first (a straight's is its high card: 5 for the wheel)
 */

/**
 * Evaluates exactly 5 cards.
 * @param {string[]} cards
 * @returns {HandValue}
 */
export function evaluate5(cards) {
  if (cards.length !== 5) throw new Error(`evaluate5 needs 5 cards, got ${cards.length}`);
  if (new Set(cards).size !== 5) throw new Error(`duplicate cards: ${cards.join(" ")}`);
  const ranks = cards.map(rankOf);
  const suits = cards.map(suitOf);
  /** @type {Map<number, number>} */
  const counts = new Map();
  for (const r of ranks) counts.set(r, (counts.get(r) ?? 0) + 1);
  // groups: [rank, count] sorted by count desc then rank desc
  const groups = [...counts.entries()].sort((a, b) => b[1] - a[1] || b[0] - a[0]);
  const flush = suits.every((s) => s === suits[0]);
  let straightHigh = 0;
  if (groups.length === 5) {
    const sorted = ranks.slice().sort((a, b) => b - a);
    if (sorted[0] - sorted[4] === 4) straightHigh = sorted[0];
    else if (sorted[0] === 14 && sorted[1] === 5) straightHigh = 5; // the wheel A-2-3-4-5
  }
  /** @type {number} */
  let category;
  /** @type {number[]} */
  let tiebreak;
  if (straightHigh && flush) {
    category = 8;
    tiebreak = [straightHigh];
  } else if (groups[0][1] === 4) {
    category = 7;
    tiebreak = [groups[0][0], groups[1][0]];
  } else if (groups[0][1] === 3 && groups[1][1] === 2) {
    category = 6;
    tiebreak = [groups[0][0], groups[1][0]];
  } else if (flush) {
    category = 5;
    tiebreak = groups.map((g) => g[0]);
  } else if (straightHigh) {
    category = 4;
    tiebreak = [straightHigh];
  } else if (groups[0][1] === 3) {
    category = 3;
    tiebreak = groups.map((g) => g[0]);
  } else if (groups[0][1] === 2 && groups[1][1] === 2) {
    category = 2;
    tiebreak = groups.map((g) => g[0]);
  } else if (groups[0][1] === 2) {
    category = 1;
    tiebreak = groups.map((g) => g[0]);
  } else {
    category = 0;
    tiebreak = groups.map((g) => g[0]);
  }
  let score = category;
  for (let i = 0; i < 5; i++) score = score * 15 + (tiebreak[i] ?? 0);
  // order the cards: by group (count desc, rank desc); a wheel shows 5-4-3-2-A
  const order = (/** @type {string} */ c) => {
    const r = rankOf(c);
    const eff = straightHigh === 5 && r === 14 ? 1 : r;
    return (counts.get(r) ?? 0) * 100 + eff;
  };
  const used = cards.slice().sort((a, b) => order(b) - order(a) || suitOf(a).localeCompare(suitOf(b)));
  return { score, category, categoryName: CATEGORIES[category], name: handName(category, tiebreak), cards: used, ranks: tiebreak };
}

/**
 * @param {number} category
 * @param {number[]} t tie-break ranks
 */
function handName(category, t) {
  switch (category) {
    case 8:
      return t[0] === 14 ? "Royal Flush" : `Straight Flush, ${RANK_NAMES[t[0]]} High`;
    case 7:
      return `Four of a Kind, ${RANK_PLURALS[t[0]]}`;
    case 6:
      return `Full House, ${RANK_PLURALS[t[0]]} full of ${RANK_PLURALS[t[1]]}`;
    case 5:
      return `Flush, ${RANK_NAMES[t[0]]} High`;
    case 4:
      return `Straight, ${RANK_NAMES[t[0]]} High`;
    case 3:
      return `Three of a Kind, ${RANK_PLURALS[t[0]]}`;
    case 2:
      return `Two Pair, ${RANK_PLURALS[t[0]]} and ${RANK_PLURALS[t[1]]}`;
    case 1:
      return `Pair of ${RANK_PLURALS[t[0]]}`;
    default:
      return `High Card, ${RANK_NAMES[t[0]]}`;
  }
}

/**
 * The best 5-card hand out of 5, 6 or 7 cards (hole cards + board).
 * @param {string[]} cards
 * @returns {HandValue}
 */
export function bestHand(cards) {
  if (cards.length < 5 || cards.length > 7) throw new Error(`bestHand needs 5 to 7 cards, got ${cards.length}`);
  if (new Set(cards).size !== cards.length) throw new Error(`duplicate cards: ${cards.join(" ")}`);
  /** @type {HandValue | null} */
  let best = null;
  const n = cards.length;
  for (let a = 0; a < n; a++)
    for (let b = a + 1; b < n; b++)
      for (let c = b + 1; c < n; c++)
        for (let d = c + 1; d < n; d++)
          for (let e = d + 1; e < n; e++) {
            const v = evaluate5([cards[a], cards[b], cards[c], cards[d], cards[e]]);
            if (best === null || v.score > best.score) best = v;
          }
  return /** @type {HandValue} */ (best);
}

/**
 * Compares two evaluated hands: > 0 if a wins, < 0 if b wins, 0 for a split.
 * @param {{score: number}} a
 * @param {{score: number}} b
 * @returns {number}
 */
export function compareHands(a, b) {
  return a.score - b.score;
}
