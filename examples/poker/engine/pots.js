// @ts-check
// Side pots and their award. Plain, dependency-free ES module (runs inside a V8 isolate).

/**
 * @typedef {object} Contribution
 * @property {string} playerId
 * @property {number} amount chips the player put in during the whole hand
 * @property {boolean} folded folded players' chips stay in the pots, but they cannot win any
 */

/**
 * @typedef {object} Pot
 * @property {number} amount
 * @property {string[]} eligible ids of the players who can win it (not folded, contributed up to its level)
 */

/**
 * Builds the main pot and the side pots from each player's total contribution.
 * Levels are the distinct contributions of the players still in the hand (so every all-in amount makes a
 * level); each pot takes, from every contributor (folded or not), what they put in between the previous level
 * and this one. Chips a folded player put in above the highest live level (rare: it needs the live players to
 * be all-in for less) go to the last pot. Uncalled bets should be returned before calling this (the table
 * does), otherwise they form a pot with a single eligible player.
 * @param {Contribution[]} contributions
 * @returns {Pot[]} main pot first
 */
export function buildPots(contributions) {
  for (const c of contributions) {
    if (!Number.isInteger(c.amount) || c.amount < 0) throw new Error(`bad contribution for ${c.playerId}: ${c.amount}`);
  }
  const live = contributions.filter((c) => !c.folded);
  const levels = [...new Set(live.map((c) => c.amount).filter((a) => a > 0))].sort((a, b) => a - b);
  /** @type {Pot[]} */
  const pots = [];
  let prev = 0;
  for (const level of levels) {
    let amount = 0;
    for (const c of contributions) amount += Math.max(0, Math.min(c.amount, level) - prev);
    const eligible = live.filter((c) => c.amount >= level).map((c) => c.playerId);
    pots.push({ amount, eligible });
    prev = level;
  }
  let excess = 0;
  for (const c of contributions) excess += Math.max(0, c.amount - prev);
  if (excess > 0) {
    if (pots.length === 0) {
      // everyone folded (cannot happen at a table): the chips have nobody to go to
      pots.push({ amount: excess, eligible: [] });
    } else pots[pots.length - 1].amount += excess;
  }
  return pots;
}

/**
 * @typedef {object} PotAward
 * @property {number} amount
 * @property {string[]} eligible
 * @property {{playerId: string, amount: number}[]} winners in clockwise order from the button
 * @property {number | null} score the winning score (null when won uncontested)
 */

/**
 * Awards every pot to the best eligible hand(s).
 * Split rule: a pot is divided evenly among the tied winners; the odd chips left over (amount mod winners)
 * go one each to the tied winners in clockwise order starting from the first seat left of the button.
 * @param {Pot[]} pots
 * @param {Record<string, number>} scores score of each player's hand (higher wins); players without a score
 *   (e.g. when everybody else folded) are treated as equal, so a pot with one eligible player goes to them
 * @param {string[]} clockwiseFromButton player ids in seat order starting left of the button
 * @returns {PotAward[]}
 */
export function awardPots(pots, scores, clockwiseFromButton) {
  const position = (/** @type {string} */ id) => {
    const i = clockwiseFromButton.indexOf(id);
    return i < 0 ? Number.MAX_SAFE_INTEGER : i;
  };
  return pots.map((pot) => {
    if (pot.eligible.length === 0) return { amount: pot.amount, eligible: [], winners: [], score: null };
    const score = (/** @type {string} */ id) => (id in scores ? scores[id] : -1);
    const best = Math.max(...pot.eligible.map(score));
    const ids = pot.eligible.filter((id) => score(id) === best).sort((a, b) => position(a) - position(b));
    const share = Math.floor(pot.amount / ids.length);
    const odd = pot.amount - share * ids.length;
    const winners = ids.map((playerId, i) => ({ playerId, amount: share + (i < odd ? 1 : 0) }));
    return { amount: pot.amount, eligible: pot.eligible.slice(), winners, score: best >= 0 ? best : null };
  });
}
