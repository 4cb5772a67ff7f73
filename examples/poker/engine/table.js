// @ts-check
// No-limit Texas hold'em table for 2-6 seats, as a pure state machine: state in, new state out.
// No I/O, no timers, no Node APIs; randomness is injected (`randomInt(n)`); state is plain JSON.
//
// Errors: every refused operation throws a PokerError (name "PokerError", a `code` and a readable message);
// the state passed in is never modified (functions work on a JSON copy), so a refusal leaves it unchanged.
// Amounts for "bet" and "raise" are "to" amounts: the total the player has put in on this street after the
// action (a raise to 300 over a bet of 100 adds 300 minus what the player already has in front of them).
import { newDeck, shuffle } from "./cards.js";
import { bestHand } from "./hand-rank.js";
import { buildPots, awardPots } from "./pots.js";

export class PokerError extends Error {
  /**
   * @param {string} code machine-readable: "not_your_turn", "below_minimum", "above_stack", ...
   * @param {string} message
   */
  constructor(code, message) {
    super(message);
    this.name = "PokerError";
    this.code = code;
  }
}

/**
 * @param {string} code
 * @param {string} message
 * @returns {never}
 */
function fail(code, message) {
  throw new PokerError(code, message);
}

/**
 * @typedef {object} TableConfig
 * @property {number} maxSeats 2..6
 * @property {number} smallBlind
 * @property {number} bigBlind
 * @property {number} minBuyIn
 * @property {number} maxBuyIn
 *
 * @typedef {object} Seat
 * @property {string} id
 * @property {string} name
 * @property {number} stack chips behind (not counting what is in front of the player this hand)
 * @property {boolean} sittingOut not dealt in while true
 * @property {boolean} connected informational (the service's turn clock may act for disconnected players)
 *
 * @typedef {object} HandPlayer
 * @property {number} seat
 * @property {string} id
 * @property {string[]} holeCards
 * @property {number} startStack
 * @property {number} bet chips put in on the current street
 * @property {number} total chips put in during the whole hand
 * @property {boolean} folded
 * @property {boolean} allIn
 * @property {boolean} acted has acted since the last bet or raise on this street
 * @property {number} actedAt the street's highest bet when the player last acted on this street (-1: not yet)
 *
 * @typedef {object} LogAction
 * @property {string} playerId
 * @property {string} action
 * @property {number | null} amount
 *
 * @typedef {object} HandLog
 * @property {number} handNumber
 * @property {TableConfig} config
 * @property {number} button
 * @property {{seat: number, id: string, name: string, stack: number}[]} players the players dealt in
 * @property {string[]} deck the shuffled deck, top card first
 * @property {LogAction[]} actions
 *
 * @typedef {object} Hand
 * @property {number} number
 * @property {number} button
 * @property {number} smallBlindSeat
 * @property {number} bigBlindSeat
 * @property {string[]} deck
 * @property {number} deckIndex next card to deal
 * @property {string[]} board
 * @property {"preflop"|"flop"|"turn"|"river"|"showdown"|"complete"} street "complete" when won without showdown
 * @property {HandPlayer[]} players in seat order
 * @property {number | null} toAct seat to act, null when no action is pending
 * @property {number} currentBet highest bet on this street
 * @property {number} minRaise size of the last full bet or raise on this street (at least the big blind)
 * @property {boolean} finished
 * @property {{playerId: string, amount: number} | null} uncalled the bet returned because nobody called it
 * @property {HandResult | null} result
 * @property {HandLog} log
 *
 * @typedef {object} HandResult
 * @property {boolean} showdown
 * @property {{playerId: string, amount: number} | null} uncalled a bet returned to its maker (already in `total`s)
 * @property {{amount: number, eligible: string[], winners: {playerId: string, amount: number}[], hand: string | null}[]} pots
 * @property {{playerId: string, seat: number, holeCards: string[], name: string, cards: string[], score: number}[]} hands
 *   the hands shown at showdown (every player who reached it shows)
 * @property {Record<string, number>} won chips won per player
 *
 * @typedef {object} TableState
 * @property {TableConfig} config
 * @property {(Seat | null)[]} seats
 * @property {number} button seat of the button, -1 before the first hand
 * @property {number} handNumber hands started so far
 * @property {Hand | null} hand the current or last hand
 */

/**
 * @template T
 * @param {T} x
 * @returns {T}
 */
function clone(x) {
  return JSON.parse(JSON.stringify(x));
}

/**
 * @param {unknown} n
 * @returns {n is number}
 */
function isChips(n) {
  return typeof n === "number" && Number.isSafeInteger(n) && n >= 0;
}

/**
 * Creates an empty table.
 * @param {Partial<TableConfig>} [config]
 * @returns {TableState}
 */
export function createTable(config = {}) {
  const bigBlind = config.bigBlind ?? 2;
  const smallBlind = config.smallBlind ?? Math.max(1, Math.floor(bigBlind / 2));
  const maxSeats = config.maxSeats ?? 6;
  if (!Number.isInteger(maxSeats) || maxSeats < 2 || maxSeats > 6) fail("bad_config", "maxSeats must be 2 to 6");
  if (!isChips(smallBlind) || !isChips(bigBlind) || smallBlind < 1 || bigBlind < smallBlind)
    fail("bad_config", "blinds must be positive integers with smallBlind <= bigBlind");
  const minBuyIn = config.minBuyIn ?? bigBlind * 20;
  const maxBuyIn = config.maxBuyIn ?? bigBlind * 200;
  if (!isChips(minBuyIn) || !isChips(maxBuyIn) || minBuyIn < 1 || maxBuyIn < minBuyIn)
    fail("bad_config", "buy-ins must be positive integers with minBuyIn <= maxBuyIn");
  return {
    config: { maxSeats, smallBlind, bigBlind, minBuyIn, maxBuyIn },
    seats: Array.from({ length: maxSeats }, () => null),
    button: -1,
    handNumber: 0,
    hand: null,
  };
}

/**
 * @param {TableState} state
 * @returns {boolean}
 */
export function handInProgress(state) {
  return state.hand !== null && !state.hand.finished;
}

/**
 * @param {TableState} state
 * @param {string} playerId
 * @returns {number} seat index or -1
 */
export function seatOf(state, playerId) {
  return state.seats.findIndex((s) => s !== null && s.id === playerId);
}

/**
 * Seats a player. `seat` null/undefined takes the first empty seat. A player joining during a hand is dealt
 * in from the next hand.
 * @param {TableState} state
 * @param {number | null | undefined} seat
 * @param {{id: string, name?: string}} player
 * @param {number} buyIn chips brought to the table (the bank debits them)
 * @returns {TableState}
 */
export function join(state, seat, player, buyIn) {
  if (!player || typeof player.id !== "string" || player.id === "") fail("bad_player", "a player needs an id");
  if (seatOf(state, player.id) >= 0) fail("already_seated", `player ${player.id} is already seated`);
  const { minBuyIn, maxBuyIn, maxSeats } = state.config;
  if (!isChips(buyIn) || buyIn < minBuyIn || buyIn > maxBuyIn)
    fail("bad_buy_in", `buy-in must be a whole number of chips from ${minBuyIn} to ${maxBuyIn}, got ${buyIn}`);
  let s = seat ?? state.seats.findIndex((x) => x === null);
  if (s < 0) fail("table_full", "the table is full");
  if (!Number.isInteger(s) || s < 0 || s >= maxSeats) fail("bad_seat", `seat must be 0 to ${maxSeats - 1}`);
  if (state.seats[s] !== null) fail("seat_taken", `seat ${s} is taken`);
  const next = clone(state);
  next.seats[s] = { id: player.id, name: player.name ?? player.id, stack: buyIn, sittingOut: false, connected: true };
  return next;
}

/**
 * Removes a player: allowed between hands, when the player is not in the current hand, or after folding.
 * @param {TableState} state
 * @param {string} playerId
 * @returns {{state: TableState, stack: number}} `stack` is what the bank credits back to the player
 */
export function leave(state, playerId) {
  const s = seatOf(state, playerId);
  if (s < 0) fail("unknown_player", `player ${playerId} is not seated`);
  if (handInProgress(state)) {
    const hp = /** @type {Hand} */ (state.hand).players.find((p) => p.id === playerId);
    if (hp && !hp.folded) fail("in_hand", `player ${playerId} is in the hand: fold first or wait for it to end`);
  }
  const next = clone(state);
  const stack = /** @type {Seat} */ (next.seats[s]).stack;
  next.seats[s] = null;
  return { state: next, stack };
}

/**
 * Sitting out takes effect from the next hand.
 * @param {TableState} state
 * @param {string} playerId
 * @param {boolean} sittingOut
 * @returns {TableState}
 */
export function setSittingOut(state, playerId, sittingOut) {
  const s = seatOf(state, playerId);
  if (s < 0) fail("unknown_player", `player ${playerId} is not seated`);
  const next = clone(state);
  /** @type {Seat} */ (next.seats[s]).sittingOut = !!sittingOut;
  return next;
}

/**
 * @param {TableState} state
 * @param {string} playerId
 * @param {boolean} connected
 * @returns {TableState}
 */
export function setConnected(state, playerId, connected) {
  const s = seatOf(state, playerId);
  if (s < 0) fail("unknown_player", `player ${playerId} is not seated`);
  const next = clone(state);
  /** @type {Seat} */ (next.seats[s]).connected = !!connected;
  return next;
}

/**
 * Adds chips to a seated player's stack between hands (a rebuy), up to the maximum buy-in.
 * @param {TableState} state
 * @param {string} playerId
 * @param {number} amount
 * @returns {TableState}
 */
export function topUp(state, playerId, amount) {
  const s = seatOf(state, playerId);
  if (s < 0) fail("unknown_player", `player ${playerId} is not seated`);
  const hp = state.hand && !state.hand.finished ? state.hand.players.find((p) => p.id === playerId) : undefined;
  if (hp) fail("in_hand", "chips can be added only between hands");
  const seat = /** @type {Seat} */ (state.seats[s]);
  if (!isChips(amount) || amount < 1 || seat.stack + amount > state.config.maxBuyIn)
    fail("bad_buy_in", `a top-up must be positive and keep the stack at most ${state.config.maxBuyIn}`);
  const next = clone(state);
  /** @type {Seat} */ (next.seats[s]).stack += amount;
  return next;
}

/**
 * Seats that can be dealt in: seated, not sitting out, with chips.
 * @param {TableState} state
 * @returns {number[]}
 */
function activeSeats(state) {
  const out = [];
  for (let i = 0; i < state.seats.length; i++) {
    const s = state.seats[i];
    if (s !== null && !s.sittingOut && s.stack > 0) out.push(i);
  }
  return out;
}

/**
 * The first seat in `seats` clockwise after `from` (exclusive).
 * @param {number[]} seats
 * @param {number} from
 * @param {number} n number of seats at the table
 */
function nextSeat(seats, from, n) {
  for (let k = 1; k <= n; k++) {
    const s = (((from + k) % n) + n) % n;
    if (seats.includes(s)) return s;
  }
  return -1;
}

/**
 * Chips on the table: every seated player's stack plus what is in the pot of an unfinished hand.
 * @param {TableState} state
 * @returns {number}
 */
export function chipsOnTable(state) {
  let sum = 0;
  for (const s of state.seats) if (s !== null) sum += s.stack;
  if (state.hand && !state.hand.finished) for (const p of state.hand.players) sum += p.total;
  return sum;
}

/**
 * Starts a hand: moves the button to the next seated player with chips, posts the blinds (heads-up the button
 * posts the small blind and acts first preflop, last after the flop), shuffles and deals two cards each.
 * @param {TableState} state
 * @param {(n: number) => number} randomInt uniform integer in [0, n)
 * @returns {TableState}
 */
export function startHand(state, randomInt) {
  if (handInProgress(state)) fail("hand_in_progress", "a hand is already in progress");
  const seats = activeSeats(state);
  if (seats.length < 2) fail("not_enough_players", "a hand needs at least 2 players with chips who are not sitting out");
  const button = nextSeat(seats, state.button, state.seats.length);
  return deal(state, button, shuffle(newDeck(), randomInt));
}

/**
 * Like startHand, with a given deck order (top card first) instead of a shuffle: for tests and tooling.
 * Deal order: one card each starting left of the button, twice; then burn + 3 (flop), burn + 1 (turn),
 * burn + 1 (river).
 * @param {TableState} state
 * @param {string[]} deck
 * @returns {TableState}
 */
export function startHandWithDeck(state, deck) {
  if (handInProgress(state)) fail("hand_in_progress", "a hand is already in progress");
  const seats = activeSeats(state);
  if (seats.length < 2) fail("not_enough_players", "a hand needs at least 2 players with chips who are not sitting out");
  if (deck.length !== 52 || new Set(deck).size !== 52) fail("bad_deck", "a deck has 52 different cards");
  return deal(state, nextSeat(seats, state.button, state.seats.length), deck);
}

/**
 * @param {TableState} state
 * @param {number} button
 * @param {string[]} deck
 * @returns {TableState}
 */
function deal(state, button, deck) {
  const before = chipsOnTable(state);
  const next = clone(state);
  const n = next.seats.length;
  const seats = activeSeats(next);
  const { smallBlind, bigBlind } = next.config;
  const heads = seats.length === 2;
  const sbSeat = heads ? button : nextSeat(seats, button, n);
  const bbSeat = nextSeat(seats, sbSeat, n);
  next.button = button;
  next.handNumber += 1;
  /** @type {HandPlayer[]} */
  const players = seats.map((seat) => ({
    seat,
    id: /** @type {Seat} */ (next.seats[seat]).id,
    holeCards: [],
    startStack: /** @type {Seat} */ (next.seats[seat]).stack,
    bet: 0,
    total: 0,
    folded: false,
    allIn: false,
    acted: false,
    actedAt: -1,
  }));
  /** @type {Hand} */
  const hand = {
    number: next.handNumber,
    button,
    smallBlindSeat: sbSeat,
    bigBlindSeat: bbSeat,
    deck: deck.slice(),
    deckIndex: 0,
    board: [],
    street: "preflop",
    players,
    toAct: null,
    currentBet: bigBlind,
    minRaise: bigBlind,
    finished: false,
    uncalled: null,
    result: null,
    log: {
      handNumber: next.handNumber,
      config: clone(next.config),
      button,
      players: players.map((p) => ({
        seat: p.seat,
        id: p.id,
        name: /** @type {Seat} */ (next.seats[p.seat]).name,
        stack: p.startStack,
      })),
      deck: deck.slice(),
      actions: [],
    },
  };
  next.hand = hand;
  // deal: one card at a time, starting left of the button, two rounds
  const order = dealOrder(hand, n);
  for (let round = 0; round < 2; round++) for (const p of order) p.holeCards.push(hand.deck[hand.deckIndex++]);
  post(next, sbSeat, smallBlind);
  post(next, bbSeat, bigBlind);
  // preflop the first to act is left of the big blind (heads-up that is the button/small blind)
  hand.toAct = nextToAct(hand, bbSeat, n);
  if (hand.toAct === null) endStreet(next);
  const after = chipsOnTable(next);
  if (after !== before) throw new Error(`chips not conserved: ${before} before the deal, ${after} after`);
  return next;
}

/**
 * Players of the hand in clockwise order starting left of the button.
 * @param {Hand} hand
 * @param {number} n
 * @returns {HandPlayer[]}
 */
function dealOrder(hand, n) {
  return hand.players.slice().sort((a, b) => ((a.seat - hand.button - 1 + n) % n) - ((b.seat - hand.button - 1 + n) % n));
}

/**
 * @param {TableState} state
 * @param {number} seat
 * @param {number} amount
 */
function post(state, seat, amount) {
  const hand = /** @type {Hand} */ (state.hand);
  const p = /** @type {HandPlayer} */ (hand.players.find((x) => x.seat === seat));
  const s = /** @type {Seat} */ (state.seats[seat]);
  const paid = Math.min(amount, s.stack);
  s.stack -= paid;
  p.bet += paid;
  p.total += paid;
  if (s.stack === 0) p.allIn = true;
}

/**
 * Whether a player still has to act on this street.
 * @param {Hand} hand
 * @param {HandPlayer} p
 */
function needsAction(hand, p) {
  return !p.folded && !p.allIn && (!p.acted || p.bet < hand.currentBet);
}

/**
 * The next seat clockwise after `from` whose player must act, or null when the betting round is over.
 * @param {Hand} hand
 * @param {number} from
 * @param {number} n
 * @returns {number | null}
 */
function nextToAct(hand, from, n) {
  const canAct = hand.players.filter((p) => !p.folded && !p.allIn);
  // a lone player who can still act and has matched the bet has nobody to bet against
  if (canAct.length === 1 && canAct[0].bet >= hand.currentBet) return null;
  if (canAct.length === 0) return null;
  for (let k = 1; k <= n; k++) {
    const seat = (from + k) % n;
    const p = hand.players.find((x) => x.seat === seat);
    if (p && needsAction(hand, p)) return seat;
  }
  return null;
}

/**
 * @typedef {"fold"|"check"|"call"|"bet"|"raise"|"all_in"} Action
 */

/**
 * Whether the player may bet or raise now. Not when nobody else could call (all other players folded or
 * all-in). Not when the player already acted on this street and the bet has grown since by less than a full
 * raise (one short all-in, or several that together make less than the last full bet/raise: the betting is
 * not reopened for them).
 * @param {Hand} hand
 * @param {HandPlayer} p
 */
function mayRaise(hand, p) {
  if (!hand.players.some((o) => o !== p && !o.folded && !o.allIn)) return false;
  return p.actedAt < 0 || hand.currentBet - p.actedAt >= hand.minRaise;
}

/**
 * @typedef {object} LegalAction
 * @property {Action} action
 * @property {number} [amount] for "call" and "all_in": the player's total bet on the street after it
 * @property {number} [min] for "bet"/"raise": smallest "to" amount
 * @property {number} [max] for "bet"/"raise": largest "to" amount (all-in)
 */

/**
 * What the player may do now (empty when it is not their turn or no hand is in progress).
 * @param {TableState} state
 * @param {string} playerId
 * @returns {LegalAction[]}
 */
export function legalActions(state, playerId) {
  const hand = state.hand;
  if (!hand || hand.finished || hand.toAct === null) return [];
  const p = hand.players.find((x) => x.id === playerId);
  if (!p || p.seat !== hand.toAct) return [];
  const stack = /** @type {Seat} */ (state.seats[p.seat]).stack;
  const toCall = Math.max(0, hand.currentBet - p.bet);
  const allInTo = p.bet + stack;
  /** @type {LegalAction[]} */
  const out = [{ action: "fold" }];
  if (toCall === 0) out.push({ action: "check" });
  else out.push({ action: "call", amount: Math.min(hand.currentBet, allInTo) });
  const canRaise = mayRaise(hand, p);
  if (allInTo > hand.currentBet && canRaise) {
    const minTo = Math.min(hand.currentBet === 0 ? state.config.bigBlind : hand.currentBet + hand.minRaise, allInTo);
    out.push({ action: hand.currentBet === 0 ? "bet" : "raise", min: minTo, max: allInTo });
  }
  if (allInTo <= hand.currentBet || canRaise) out.push({ action: "all_in", amount: allInTo });
  return out;
}

/**
 * Applies a player's action. `amount` is required for "bet" and "raise": the total the player will have put
 * in on this street ("raise to"); it is ignored for the other actions.
 * @param {TableState} state
 * @param {string} playerId
 * @param {Action} action
 * @param {number} [amount]
 * @returns {TableState}
 */
export function act(state, playerId, action, amount) {
  const hand = state.hand;
  if (!hand) fail("no_hand", "no hand has been dealt");
  if (hand.finished) fail("hand_finished", `hand ${hand.number} is over`);
  const p0 = hand.players.find((x) => x.id === playerId);
  if (!p0) {
    if (seatOf(state, playerId) < 0) fail("unknown_player", `player ${playerId} is not at this table`);
    fail("not_in_hand", `player ${playerId} is not in this hand`);
  }
  if (hand.toAct !== p0.seat) {
    const who = hand.players.find((x) => x.seat === hand.toAct);
    fail("not_your_turn", `it is not ${playerId}'s turn${who ? ` (${who.id} to act)` : ""}`);
  }
  const before = chipsOnTable(state);
  const next = clone(state);
  const h = /** @type {Hand} */ (next.hand);
  const p = /** @type {HandPlayer} */ (h.players.find((x) => x.id === playerId));
  const seat = /** @type {Seat} */ (next.seats[p.seat]);
  const n = next.seats.length;
  const toCall = Math.max(0, h.currentBet - p.bet);
  const allInTo = p.bet + seat.stack;
  const canRaise = mayRaise(h, p);
  /** @type {number | null} */
  let logged = null;

  /** @param {number} to */
  const putTo = (to) => {
    const add = to - p.bet;
    seat.stack -= add;
    p.bet = to;
    p.total += add;
    if (seat.stack === 0) p.allIn = true;
  };
  /** raise/bet to `to` (> currentBet); full or short (all-in only) @param {number} to */
  const raiseTo = (to) => {
    const increment = to - h.currentBet;
    // a bet or raise is "full" when it adds at least the last full bet/raise (the big blind at first);
    // a short one (only possible all-in) leaves the minimum raise as it was
    if (increment >= h.minRaise) h.minRaise = increment;
    h.currentBet = to;
    for (const o of h.players) if (o !== p) o.acted = false;
    putTo(to);
  };

  switch (action) {
    case "fold":
      p.folded = true;
      break;
    case "check":
      if (toCall > 0) fail("cannot_check", `cannot check: ${toCall} to call`);
      break;
    case "call":
      if (toCall === 0) fail("nothing_to_call", "nothing to call: check or bet");
      putTo(Math.min(h.currentBet, allInTo));
      break;
    case "bet":
    case "raise": {
      if (action === "bet" && h.currentBet > 0) fail("cannot_bet", `there is a bet of ${h.currentBet} already: raise instead`);
      if (action === "raise" && h.currentBet === 0) fail("cannot_raise", "there is no bet to raise: bet instead");
      if (typeof amount !== "number" || !Number.isSafeInteger(amount))
        fail("bad_amount", `${action} needs a whole "to" amount, got ${amount}`);
      if (!canRaise) refuseRaise(h, p);
      if (allInTo <= h.currentBet) fail("cannot_raise", `your stack only covers a call (${allInTo})`);
      const minTo = h.currentBet === 0 ? next.config.bigBlind : h.currentBet + h.minRaise;
      if (amount > allInTo) fail("above_stack", `${action} to ${amount} is more than your ${allInTo} (stack ${seat.stack} + bet ${p.bet})`);
      if (amount < minTo && amount !== allInTo)
        fail("below_minimum", `minimum ${action} is to ${minTo}${allInTo < minTo ? ` (or all-in to ${allInTo})` : ""}, got ${amount}`);
      raiseTo(amount);
      logged = amount;
      break;
    }
    case "all_in": {
      if (allInTo <= h.currentBet) putTo(allInTo);
      else {
        if (!canRaise) refuseRaise(h, p);
        raiseTo(allInTo);
      }
      logged = allInTo;
      break;
    }
    default:
      fail("bad_action", `unknown action ${JSON.stringify(action)}`);
  }
  p.acted = true;
  p.actedAt = h.currentBet;
  h.log.actions.push({ playerId, action, amount: logged });

  const live = h.players.filter((x) => !x.folded);
  if (live.length === 1) {
    h.toAct = null;
    finish(next, false);
  } else {
    h.toAct = nextToAct(h, p.seat, n);
    if (h.toAct === null) endStreet(next);
  }
  const after = chipsOnTable(next);
  if (after !== before) throw new Error(`chips not conserved: ${before} before, ${after} after ${action}`);
  return next;
}

/**
 * @param {Hand} hand
 * @param {HandPlayer} p
 * @returns {never}
 */
function refuseRaise(hand, p) {
  if (!hand.players.some((o) => o !== p && !o.folded && !o.allIn))
    fail("nobody_to_raise", "every other player is all-in or folded: call or fold");
  fail("not_reopened", "the betting was not reopened (the bet grew by less than a full raise since you acted): call or fold");
}

/**
 * Calls the hand in progress off (the table is closing): each seated player gets back what they put in
 * during it, and the hand is gone. What a player who folded and left had put in is dead money: it goes to
 * the players still in the hand, split evenly (the odd chips to the first of them by seat), so no chip
 * leaves the table unaccounted for.
 * @param {TableState} state
 * @returns {TableState}
 */
export function voidHand(state) {
  if (!handInProgress(state)) fail("no_hand", "no hand is in progress");
  const next = clone(state);
  const hand = /** @type {Hand} */ (next.hand);
  let dead = 0;
  /** @type {Seat[]} */
  const live = [];
  for (const p of hand.players) {
    const seat = next.seats[p.seat];
    if (seat !== null && seat.id === p.id) {
      seat.stack += p.total;
      if (!p.folded) live.push(seat);
    } else dead += p.total;
  }
  if (dead > 0 && live.length > 0) {
    const each = Math.floor(dead / live.length);
    live.forEach((seat, i) => (seat.stack += each + (i < dead - each * live.length ? 1 : 0)));
  }
  next.hand = null;
  return next;
}

/**
 * What the turn clock does when the player to act runs out of time: check if possible, else fold.
 * @param {TableState} state
 * @returns {TableState}
 */
export function timeoutAction(state) {
  const hand = state.hand;
  if (!hand || hand.finished || hand.toAct === null) fail("no_action_pending", "nobody is to act");
  const p = /** @type {HandPlayer} */ (hand.players.find((x) => x.seat === hand.toAct));
  return act(state, p.id, p.bet >= hand.currentBet ? "check" : "fold");
}

/**
 * The betting round is over: return an uncalled bet, then deal the next street, run the board out, or show down.
 * @param {TableState} state (mutated; a copy owned by the caller)
 */
function endStreet(state) {
  const hand = /** @type {Hand} */ (state.hand);
  const n = state.seats.length;
  returnUncalled(state);
  const live = hand.players.filter((p) => !p.folded);
  if (live.length === 1) return finish(state, false);
  for (;;) {
    if (hand.street === "river") {
      hand.street = "showdown";
      return finish(state, true);
    }
    for (const p of hand.players) {
      p.bet = 0;
      p.acted = false;
      p.actedAt = -1;
    }
    hand.currentBet = 0;
    hand.minRaise = state.config.bigBlind;
    hand.deckIndex++; // burn
    if (hand.street === "preflop") {
      hand.street = "flop";
      hand.board.push(hand.deck[hand.deckIndex], hand.deck[hand.deckIndex + 1], hand.deck[hand.deckIndex + 2]);
      hand.deckIndex += 3;
    } else {
      hand.street = hand.street === "flop" ? "turn" : "river";
      hand.board.push(hand.deck[hand.deckIndex++]);
    }
    // after the flop the first to act is the first live player left of the button
    hand.toAct = nextToAct(hand, hand.button, n);
    if (hand.toAct !== null) return;
    // nobody (or only one player) can bet: keep dealing
  }
}

/**
 * If the biggest bet on this street was not matched by anyone, give back the part nobody called.
 * @param {TableState} state
 */
function returnUncalled(state) {
  const hand = /** @type {Hand} */ (state.hand);
  const sorted = hand.players.slice().sort((a, b) => b.bet - a.bet);
  if (sorted.length < 2) return;
  const excess = sorted[0].bet - sorted[1].bet;
  if (excess <= 0) return;
  const p = sorted[0];
  if (p.folded) return; // cannot happen (a player only folds facing a bet); the chips would stay in the pot
  p.bet -= excess;
  p.total -= excess;
  /** @type {Seat} */ (state.seats[p.seat]).stack += excess;
  p.allIn = false;
  hand.uncalled = { playerId: p.id, amount: excess };
}

/**
 * Settles the hand: pots, showdown, stacks.
 * @param {TableState} state
 * @param {boolean} showdown
 */
function finish(state, showdown) {
  const hand = /** @type {Hand} */ (state.hand);
  const n = state.seats.length;
  if (!showdown) returnUncalled(state);
  const before = chipsOnTable(state);
  const pots = buildPots(hand.players.map((p) => ({ playerId: p.id, amount: p.total, folded: p.folded })));
  /** @type {Record<string, number>} */
  const scores = {};
  /** @type {HandResult["hands"]} */
  const hands = [];
  /** @type {Record<string, string>} */
  const names = {};
  if (showdown) {
    for (const p of dealOrder(hand, n)) {
      if (p.folded) continue;
      const v = bestHand([...p.holeCards, ...hand.board]);
      scores[p.id] = v.score;
      names[p.id] = v.name;
      hands.push({ playerId: p.id, seat: p.seat, holeCards: p.holeCards.slice(), name: v.name, cards: v.cards, score: v.score });
    }
  }
  const order = dealOrder(hand, n).map((p) => p.id);
  const awards = awardPots(pots, scores, order);
  /** @type {Record<string, number>} */
  const won = {};
  for (const a of awards) {
    for (const w of a.winners) {
      won[w.playerId] = (won[w.playerId] ?? 0) + w.amount;
      const p = /** @type {HandPlayer} */ (hand.players.find((x) => x.id === w.playerId));
      /** @type {Seat} */ (state.seats[p.seat]).stack += w.amount;
    }
  }
  hand.result = {
    showdown,
    uncalled: hand.uncalled,
    pots: awards.map((a) => ({
      amount: a.amount,
      eligible: a.eligible,
      winners: a.winners,
      hand: showdown && a.winners.length > 0 ? names[a.winners[0].playerId] : null,
    })),
    hands,
    won,
  };
  hand.toAct = null;
  hand.finished = true;
  if (!showdown) hand.street = "complete";
  const after = chipsOnTable(state);
  if (after !== before) throw new Error(`chips not conserved at settlement: ${before} before, ${after} after`);
}

/**
 * The table as everyone may see it: no deck, no hole cards except those shown at showdown.
 * @param {TableState} state
 */
export function publicView(state) {
  const hand = state.hand;
  const shown = new Set(hand?.result?.showdown ? hand.result.hands.map((x) => x.playerId) : []);
  return {
    config: clone(state.config),
    seats: state.seats.map((s, i) => (s === null ? null : { seat: i, id: s.id, name: s.name, stack: s.stack, sittingOut: s.sittingOut, connected: s.connected })),
    button: state.button,
    handNumber: state.handNumber,
    hand:
      hand === null
        ? null
        : {
            number: hand.number,
            street: hand.street,
            board: hand.board.slice(),
            button: hand.button,
            smallBlindSeat: hand.smallBlindSeat,
            bigBlindSeat: hand.bigBlindSeat,
            pot: hand.players.reduce((sum, p) => sum + p.total, 0),
            currentBet: hand.currentBet,
            minRaise: hand.minRaise,
            toAct: hand.toAct,
            finished: hand.finished,
            players: hand.players.map((p) => ({
              seat: p.seat,
              id: p.id,
              bet: p.bet,
              total: p.total,
              folded: p.folded,
              allIn: p.allIn,
              holeCards: shown.has(p.id) ? p.holeCards.slice() : null,
            })),
            result: hand.result ? clone(hand.result) : null,
          },
  };
}

/**
 * The public view plus the player's own hole cards and legal actions.
 * @param {TableState} state
 * @param {string} playerId
 */
export function playerView(state, playerId) {
  const view = publicView(state);
  const hp = state.hand?.players.find((p) => p.id === playerId) ?? null;
  return {
    ...view,
    you: {
      id: playerId,
      seat: seatOf(state, playerId),
      holeCards: hp ? hp.holeCards.slice() : null,
      legalActions: legalActions(state, playerId),
    },
  };
}

/**
 * Replays a hand from its log (the deck and the actions) on a fresh table holding the logged players.
 * @param {HandLog} log
 * @returns {TableState} the table after the hand, equal to the original table's state right after that hand
 *   for the hand itself and the stacks of the players who were dealt in
 */
export function replayHand(log) {
  let state = createTable(log.config);
  for (const p of log.players) {
    /** @type {Seat[]} */ (state.seats)[p.seat] = { id: p.id, name: p.name, stack: p.stack, sittingOut: false, connected: true };
  }
  state.handNumber = log.handNumber - 1;
  state = deal(state, log.button, log.deck);
  for (const a of log.actions) state = act(state, a.playerId, /** @type {Action} */ (a.action), a.amount ?? undefined);
  return state;
}
