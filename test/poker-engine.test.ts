// Unit tests of the poker demo's game engine (examples/poker/engine): plain ES modules, no Node APIs.
import { describe, expect, it } from "vitest";
import { build } from "esbuild";
import ivm from "isolated-vm";
import { fileURLToPath } from "node:url";
// @ts-ignore plain JS modules with JSDoc types
import { newDeck, shuffle, randomIntFrom, seededRandomInt, isCard } from "../examples/poker/engine/cards.js";
// @ts-ignore
import { bestHand, compareHands, evaluate5 } from "../examples/poker/engine/hand-rank.js";
// @ts-ignore
import { buildPots, awardPots } from "../examples/poker/engine/pots.js";
// @ts-ignore
import * as T from "../examples/poker/engine/table.js";

type State = any;

const h = (s: string) => bestHand(s.split(" "));

/** A deck whose deal gives `holes` (in deal order: left of the button first) and `board` (5 cards). */
function deckFor(holes: string[][], board: string[]): string[] {
  const n = holes.length;
  const top: string[] = [];
  for (let r = 0; r < 2; r++) for (let i = 0; i < n; i++) top.push(holes[i][r]);
  const burns = ["2c", "2d", "2h"].filter((c) => !holes.flat().includes(c) && !board.includes(c));
  if (burns.length < 3) throw new Error("test deck needs 2c 2d 2h free for burns");
  top.push(burns[0], board[0], board[1], board[2], burns[1], board[3], burns[2], board[4]);
  const rest = newDeck().filter((c: string) => !top.includes(c));
  return [...top, ...rest];
}

function table(stacks: number[], config: Record<string, number> = {}): State {
  let s = T.createTable({ smallBlind: 1, bigBlind: 2, minBuyIn: 1, maxBuyIn: 100000, ...config });
  stacks.forEach((st, i) => (s = T.join(s, i, { id: `p${i}`, name: `P${i}` }, st)));
  return s;
}

function stacks(s: State): number[] {
  const out = s.seats.map((x: any) => (x === null ? null : x.stack));
  while (out.length > 0 && out[out.length - 1] === null) out.pop(); // trailing empty seats
  return out;
}

function expectRefused(s: State, fn: (s: State) => unknown, code: string) {
  const before = JSON.stringify(s);
  let err: any = null;
  try {
    fn(s);
  } catch (e) {
    err = e;
  }
  expect(err, `expected ${code}`).not.toBeNull();
  expect(err.name).toBe("PokerError");
  expect(err.code).toBe(code);
  expect(typeof err.message).toBe("string");
  expect(JSON.stringify(s)).toBe(before);
}

describe("cards", () => {
  it("has a 52-card deck of distinct 2-char cards", () => {
    const d = newDeck();
    expect(d.length).toBe(52);
    expect(new Set(d).size).toBe(52);
    expect(d.every(isCard)).toBe(true);
    expect(d).toContain("As");
    expect(d).toContain("Td");
    expect(d).toContain("2c");
  });

  it("shuffles with the injected randomInt (Fisher-Yates), without touching the input", () => {
    const d = newDeck();
    const a = shuffle(d, seededRandomInt(7));
    const b = shuffle(d, seededRandomInt(7));
    expect(a).toEqual(b);
    expect(a).not.toEqual(d);
    expect([...a].sort()).toEqual([...d].sort());
    expect(d[0]).toBe("2c");
    // randomInt always 0: each position i swaps with 0
    expect(shuffle([1, 2, 3], () => 0)).toEqual([2, 3, 1]);
    // randomInt(n) = n-1: identity
    expect(shuffle([1, 2, 3, 4], (n: number) => n - 1)).toEqual([1, 2, 3, 4]);
  });

  it("randomIntFrom rejects words above the last multiple of n (no modulo bias)", () => {
    const words = [0xffffffff, 0xfffffffe, 7];
    const seen: number[] = [];
    const ri = randomIntFrom((arr: Uint32Array) => {
      arr[0] = words.shift()!;
      seen.push(arr[0]);
      return arr;
    });
    // n = 3: limit = 2^32 - (2^32 mod 3) = 4294967295, so 0xffffffff is rejected, 0xfffffffe accepted
    expect(ri(3)).toBe(0xfffffffe % 3);
    expect(seen.length).toBe(2);
    expect(ri(5)).toBe(2);
    expect(() => ri(0)).toThrow();
  });
});

describe("hand ranking", () => {
  it("names every category and picks the best five of seven", () => {
    const cases: [string, number, string, string][] = [
      ["As Kd 9h 7c 4s 3d 2h", 0, "High Card, Ace", "As Kd 9h 7c 4s"],
      ["As Ad 9h 7c 4s 3d 2h", 1, "Pair of Aces", "Ad As 9h 7c 4s"],
      ["Ks Kd 9h 9c 4s 3d 2h", 2, "Two Pair, Kings and Nines", "Kd Ks 9c 9h 4s"],
      ["7s 7d 7h Kc 4s 3d 2h", 3, "Three of a Kind, Sevens", "7d 7h 7s Kc 4s"],
      ["9s 8d 7h 6c 5s 3d 2h", 4, "Straight, Nine High", "9s 8d 7h 6c 5s"],
      ["As 2d 3h 4c 5s Kd Qh", 4, "Straight, Five High", "5s 4c 3h 2d As"],
      ["Ah Jh 9h 6h 3h Kd 2c", 5, "Flush, Ace High", "Ah Jh 9h 6h 3h"],
      ["Qs Qd Qh 4c 4s 3d 2h", 6, "Full House, Queens full of Fours", "Qd Qh Qs 4c 4s"],
      ["Js Jd Jh Jc 4s 3d 2h", 7, "Four of a Kind, Jacks", "Jc Jd Jh Js 4s"],
      ["9d 8d 7d 6d 5d 3c 2h", 8, "Straight Flush, Nine High", "9d 8d 7d 6d 5d"],
      ["Ac 2c 3c 4c 5c Kd Qh", 8, "Straight Flush, Five High", "5c 4c 3c 2c Ac"],
      ["As Ks Qs Js Ts 9s 2h", 8, "Royal Flush", "As Ks Qs Js Ts"],
    ];
    for (const [cards, cat, name, used] of cases) {
      const v = h(cards);
      expect(v.category, cards).toBe(cat);
      expect(v.name, cards).toBe(name);
      expect(v.cards.join(" "), cards).toBe(used);
    }
  });

  it("orders the categories", () => {
    const order = [
      "As Kd 9h 7c 4s 3d 2h",
      "As Ad 9h 7c 4s 3d 2h",
      "Ks Kd 9h 9c 4s 3d 2h",
      "7s 7d 7h Kc 4s 3d 2h",
      "As 2d 3h 4c 5s Kd Qh", // wheel
      "9s 8d 7h 6c 5s 3d 2h",
      "Ah Jh 9h 6h 3h Kd 2c",
      "Qs Qd Qh 4c 4s 3d 2h",
      "Js Jd Jh Jc 4s 3d 2h",
      "Ac 2c 3c 4c 5c Kd Qh", // steel wheel
      "9d 8d 7d 6d 5d 3c 2h",
      "As Ks Qs Js Ts 9s 2h",
    ].map(h);
    for (let i = 1; i < order.length; i++) expect(compareHands(order[i], order[i - 1])).toBeGreaterThan(0);
  });

  it("uses kickers", () => {
    expect(compareHands(h("As Ad Kh 7c 4s 3d 2h"), h("Ac Ah Qh 7d 4c 3s 2d"))).toBeGreaterThan(0);
    // two pair: the fifth card decides
    expect(compareHands(h("Ks Kd 9h 9c Qs 3d 2h"), h("Kc Kh 9d 9s Js 3c 2d"))).toBeGreaterThan(0);
    // high card down to the fifth card
    expect(compareHands(h("As Kd 9h 7c 5s"), h("Ac Kh 9d 7s 4c"))).toBeGreaterThan(0);
    // flush compares every card
    expect(compareHands(h("Ah Jh 9h 6h 4h"), h("As Js 9s 6s 3s"))).toBeGreaterThan(0);
    // trips: kickers; quads: kicker
    expect(compareHands(h("7s 7d 7h Ac 4s"), h("7c 7d 7h Kc Qs"))).toBeGreaterThan(0);
    expect(compareHands(h("Js Jd Jh Jc As 3d 2h"), h("Js Jd Jh Jc Ks Qd Qh"))).toBeGreaterThan(0);
    // full house: trips first, then pair
    expect(compareHands(h("3s 3d 3h 2c 2s"), h("2s 2d 2h Ac As"))).toBeGreaterThan(0);
    expect(compareHands(h("Qs Qd Qh 5c 5s"), h("Qs Qd Qh 4c 4s"))).toBeGreaterThan(0);
    // the 6th and 7th cards do not play
    expect(compareHands(h("As Ad Kh Qc Js 3d 2h"), h("As Ad Kh Qc Js 4d 3h"))).toBe(0);
  });

  it("a wheel loses to a six-high straight; a steel wheel beats quads", () => {
    expect(compareHands(h("As 2d 3h 4c 5s"), h("2s 3d 4h 5c 6s"))).toBeLessThan(0);
    expect(h("As 2d 3h 4c 5s").ranks).toEqual([5]);
    expect(compareHands(h("Ac 2c 3c 4c 5c"), h("Ks Kd Kh Kc As"))).toBeGreaterThan(0);
    expect(compareHands(h("Ac 2c 3c 4c 5c"), h("2d 3d 4d 5d 6d"))).toBeLessThan(0);
    // A-K-Q-J-T is a straight, K-A-2-3-4 is not
    expect(h("Ks Ad 2h 3c 4s").category).toBe(0);
  });

  it("ties and the board playing", () => {
    const board = "As Ks Qs Js Ts";
    expect(compareHands(h(`${board} 2c 3d`), h(`${board} 9c 9d`))).toBe(0);
    // board straight, nobody improves
    expect(compareHands(h("9s 8d 7h 6c 5s Ac Ad"), h("9s 8d 7h 6c 5s Kc Kd"))).toBe(0);
    // but a higher straight beats it
    expect(compareHands(h("9s 8d 7h 6c 5s Tc 2d"), h("9s 8d 7h 6c 5s Kc Kd"))).toBeGreaterThan(0);
    // same two pair, same kicker from the board
    expect(compareHands(h("Ks Kd 9h 9c As 3d 2h"), h("Ks Kd 9h 9c As 4c 5h"))).toBe(0);
    expect(() => evaluate5(["As", "As", "Kd", "Qh", "Jc"])).toThrow();
  });
});

describe("pots", () => {
  it("builds side pots from four all-ins of different sizes", () => {
    const pots = buildPots([
      { playerId: "a", amount: 50, folded: false },
      { playerId: "b", amount: 100, folded: false },
      { playerId: "c", amount: 200, folded: false },
      { playerId: "d", amount: 300, folded: false },
    ]);
    expect(pots).toEqual([
      { amount: 200, eligible: ["a", "b", "c", "d"] },
      { amount: 150, eligible: ["b", "c", "d"] },
      { amount: 200, eligible: ["c", "d"] },
      { amount: 100, eligible: ["d"] },
    ]);
  });

  it("keeps folded chips in the pots they went into, without making folders eligible", () => {
    const pots = buildPots([
      { playerId: "a", amount: 50, folded: false },
      { playerId: "b", amount: 80, folded: true },
      { playerId: "c", amount: 200, folded: false },
      { playerId: "d", amount: 200, folded: false },
      { playerId: "e", amount: 10, folded: true },
    ]);
    expect(pots).toEqual([
      { amount: 210, eligible: ["a", "c", "d"] },
      { amount: 330, eligible: ["c", "d"] },
    ]);
  });

  it("awards each pot to the best eligible hand; three all-ins of different sizes", () => {
    const pots = buildPots([
      { playerId: "a", amount: 30, folded: false },
      { playerId: "b", amount: 60, folded: false },
      { playerId: "c", amount: 100, folded: false },
      { playerId: "d", amount: 100, folded: true },
    ]);
    // a best, then c, then b
    const awards = awardPots(pots, { a: 300, b: 100, c: 200 }, ["a", "b", "c", "d"]);
    expect(awards.map((x: any) => [x.amount, x.winners])).toEqual([
      [120, [{ playerId: "a", amount: 120 }]],
      [90, [{ playerId: "c", amount: 90 }]],
      [80, [{ playerId: "c", amount: 80 }]],
    ]);
  });

  it("splits evenly with odd chips to the first winners clockwise from the button", () => {
    const pots = [{ amount: 101, eligible: ["x", "y", "z"] }, { amount: 5, eligible: ["x", "z"] }];
    const order = ["z", "q", "x", "y"]; // z sits first left of the button
    const awards = awardPots(pots, { x: 10, y: 10, z: 10 }, order);
    expect(awards[0].winners).toEqual([
      { playerId: "z", amount: 34 },
      { playerId: "x", amount: 34 },
      { playerId: "y", amount: 33 },
    ]);
    expect(awards[1].winners).toEqual([
      { playerId: "z", amount: 3 },
      { playerId: "x", amount: 2 },
    ]);
  });
});

describe("table", () => {
  it("heads-up: the button posts the small blind, acts first preflop and last after the flop", () => {
    let s = table([100, 100]);
    s = T.startHand(s, seededRandomInt(1));
    expect(s.hand.button).toBe(0);
    expect(s.hand.smallBlindSeat).toBe(0);
    expect(s.hand.bigBlindSeat).toBe(1);
    expect(stacks(s)).toEqual([99, 98]);
    expect(s.hand.toAct).toBe(0);
    s = T.act(s, "p0", "call");
    expect(s.hand.toAct).toBe(1); // the big blind's option
    expect(T.legalActions(s, "p1").map((a: any) => a.action)).toEqual(["fold", "check", "raise", "all_in"]);
    s = T.act(s, "p1", "check");
    expect(s.hand.street).toBe("flop");
    expect(s.hand.board.length).toBe(3);
    expect(s.hand.toAct).toBe(1);
    s = T.act(s, "p1", "check");
    expect(s.hand.toAct).toBe(0);
    s = T.act(s, "p0", "check");
    expect(s.hand.street).toBe("turn");
    expect(s.hand.toAct).toBe(1);
    // next hand: the button moves to seat 1
    s = T.act(s, "p1", "bet", 10);
    s = T.act(s, "p0", "fold");
    expect(s.hand.finished).toBe(true);
    expect(s.hand.street).toBe("complete");
    expect(s.hand.result.showdown).toBe(false);
    expect(s.hand.result.uncalled).toEqual({ playerId: "p1", amount: 10 });
    expect(stacks(s)).toEqual([98, 102]);
    s = T.startHand(s, seededRandomInt(2));
    expect(s.hand.button).toBe(1);
    expect(s.hand.smallBlindSeat).toBe(1);
    expect(s.hand.toAct).toBe(1);
  });

  it("three-handed: blinds left of the button, the button acts first preflop; deck and holes recorded", () => {
    let s = table([100, 100, 100]);
    s = T.startHand(s, seededRandomInt(3));
    expect([s.hand.button, s.hand.smallBlindSeat, s.hand.bigBlindSeat, s.hand.toAct]).toEqual([0, 1, 2, 0]);
    expect(s.hand.log.deck.length).toBe(52);
    // dealt one at a time starting left of the button
    expect(s.hand.players[1].holeCards).toEqual([s.hand.deck[0], s.hand.deck[3]]);
    expect(s.hand.players[0].holeCards).toEqual([s.hand.deck[2], s.hand.deck[5]]);
    expect(JSON.parse(JSON.stringify(s))).toEqual(s);
  });

  it("enforces the minimum raise (raise to) and the minimum bet", () => {
    let s = table([1000, 1000, 1000]);
    s = T.startHand(s, seededRandomInt(4));
    expectRefused(s, (x) => T.act(x, "p0", "raise", 3), "below_minimum");
    expectRefused(s, (x) => T.act(x, "p0", "bet", 10), "cannot_bet");
    expectRefused(s, (x) => T.act(x, "p0", "check"), "cannot_check");
    expect(T.legalActions(s, "p0")).toEqual([
      { action: "fold" },
      { action: "call", amount: 2 },
      { action: "raise", min: 4, max: 1000 },
      { action: "all_in", amount: 1000 },
    ]);
    s = T.act(s, "p0", "raise", 10); // a raise of 8
    expect(T.legalActions(s, "p1")[2]).toEqual({ action: "raise", min: 18, max: 1000 });
    expectRefused(s, (x) => T.act(x, "p1", "raise", 17), "below_minimum");
    s = T.act(s, "p1", "raise", 30); // a raise of 20
    expect(s.hand.minRaise).toBe(20);
    expect(stacks(s)).toEqual([990, 970, 998]);
    expectRefused(s, (x) => T.act(x, "p2", "raise", 49), "below_minimum");
    s = T.act(s, "p2", "call");
    s = T.act(s, "p0", "call");
    expect(s.hand.street).toBe("flop");
    expect(s.hand.toAct).toBe(1);
    // postflop: min bet is the big blind
    expectRefused(s, (x) => T.act(x, "p1", "bet", 1), "below_minimum");
    expectRefused(s, (x) => T.act(x, "p1", "raise", 10), "cannot_raise");
    s = T.act(s, "p1", "bet", 2);
    expect(T.legalActions(s, "p2")[2]).toEqual({ action: "raise", min: 4, max: 970 });
  });

  it("refuses out-of-turn, unknown players, amounts above the stack, finished hands; state unchanged", () => {
    let s = table([100, 100, 100]);
    expectRefused(s, (x) => T.act(x, "p0", "call"), "no_hand");
    s = T.startHand(s, seededRandomInt(5));
    expectRefused(s, (x) => T.act(x, "p1", "call"), "not_your_turn");
    expectRefused(s, (x) => T.act(x, "nobody", "call"), "unknown_player");
    expectRefused(s, (x) => T.act(x, "p0", "raise", 101), "above_stack");
    expectRefused(s, (x) => T.act(x, "p0", "raise", 2.5), "bad_amount");
    expectRefused(s, (x) => T.act(x, "p0", "raise"), "bad_amount");
    expectRefused(s, (x) => T.act(x, "p0", "shove" as any), "bad_action");
    expectRefused(s, (x) => T.startHand(x, seededRandomInt(1)), "hand_in_progress");
    expectRefused(s, (x) => T.leave(x, "p1"), "in_hand");
    s = T.act(s, "p0", "fold");
    s = T.act(s, "p1", "fold");
    expect(s.hand.finished).toBe(true);
    expect(stacks(s)).toEqual([100, 99, 101]);
    expectRefused(s, (x) => T.act(x, "p2", "check"), "hand_finished");
    expectRefused(s, (x) => T.timeoutAction(x), "no_action_pending");
  });

  it("a short all-in does not reopen the betting for players who already acted", () => {
    let s = table([1000, 1000, 150, 1000]);
    s = T.startHand(s, seededRandomInt(6)); // button 0, SB 1, BB 2 (150 chips), UTG 3
    expect(s.hand.toAct).toBe(3);
    s = T.act(s, "p3", "raise", 100); // a raise of 98
    s = T.act(s, "p0", "call");
    s = T.act(s, "p1", "call");
    s = T.act(s, "p2", "all_in"); // to 150: +50, less than a full raise of 98
    expect(s.hand.currentBet).toBe(150);
    expect(s.hand.minRaise).toBe(98);
    expect(s.hand.toAct).toBe(3);
    expect(T.legalActions(s, "p3")).toEqual([{ action: "fold" }, { action: "call", amount: 150 }]);
    expectRefused(s, (x) => T.act(x, "p3", "raise", 300), "not_reopened");
    expectRefused(s, (x) => T.act(x, "p3", "all_in"), "not_reopened");
    s = T.act(s, "p3", "call");
    s = T.act(s, "p0", "call");
    s = T.act(s, "p1", "call");
    expect(s.hand.street).toBe("flop");
    expect(s.hand.players.map((p: any) => p.total)).toEqual([150, 150, 150, 150]);
  });

  it("a short all-in reopens for players who had not acted; a full all-in raise reopens for everyone", () => {
    let s = table([1000, 1000, 150, 1000]);
    s = T.startHand(s, seededRandomInt(6));
    s = T.act(s, "p3", "raise", 100);
    s = T.act(s, "p0", "fold");
    s = T.act(s, "p1", "fold");
    s = T.act(s, "p2", "all_in"); // short
    expect(T.legalActions(s, "p3").length).toBe(2);
    // again, with the small blind yet to act when the short all-in comes
    s = table([1000, 150, 1000, 1000]);
    s = T.startHand(s, seededRandomInt(6)); // button 0, SB 1 (150), BB 2, UTG 3
    s = T.act(s, "p3", "raise", 100);
    s = T.act(s, "p0", "call");
    s = T.act(s, "p1", "all_in"); // 150, short
    expect(T.legalActions(s, "p2")[2]).toEqual({ action: "raise", min: 248, max: 1000 }); // BB has not acted
    s = T.act(s, "p2", "call");
    expect(T.legalActions(s, "p3").map((a: any) => a.action)).toEqual(["fold", "call"]);
    // a full raise all-in
    s = table([1000, 1000, 200, 1000]);
    s = T.startHand(s, seededRandomInt(6));
    s = T.act(s, "p3", "raise", 100);
    s = T.act(s, "p0", "call");
    s = T.act(s, "p1", "call");
    s = T.act(s, "p2", "all_in"); // to 200: +100 >= 98
    expect(s.hand.minRaise).toBe(100);
    expect(T.legalActions(s, "p3")[2]).toEqual({ action: "raise", min: 300, max: 1000 });
  });

  it("short all-ins that add up to a full raise reopen the betting (TDA)", () => {
    const play = (lastAllIn: number) => {
      let s = table([lastAllIn, 1000, 1000, 1000, 150]);
      s = T.startHand(s, seededRandomInt(6)); // button 0, SB 1, BB 2, UTG 3, then 4
      s = T.act(s, "p3", "raise", 100); // a raise of 98
      s = T.act(s, "p4", "all_in"); // to 150: +50, short
      s = T.act(s, "p0", "all_in"); // to lastAllIn
      s = T.act(s, "p1", "fold");
      s = T.act(s, "p2", "call"); // still has chips, so p3 has someone to raise
      expect(s.hand.toAct).toBe(3);
      return s;
    };
    // 100 -> 200: +100 since p3 acted, at least the last full raise (98): reopened
    let s = play(200);
    expect(T.legalActions(s, "p3")[2]).toEqual({ action: "raise", min: 298, max: 1000 });
    // 100 -> 190: +90 < 98: not reopened
    s = play(190);
    expect(T.legalActions(s, "p3").map((a: any) => a.action)).toEqual(["fold", "call"]);
    expectRefused(s, (x) => T.act(x, "p3", "raise", 400), "not_reopened");
  });

  it("nobody can raise when every opponent is all-in", () => {
    let s = table([100, 1000]);
    s = T.startHand(s, seededRandomInt(6));
    s = T.act(s, "p0", "all_in");
    expect(T.legalActions(s, "p1")).toEqual([{ action: "fold" }, { action: "call", amount: 100 }]);
    expectRefused(s, (x) => T.act(x, "p1", "raise", 300), "nobody_to_raise");
    expectRefused(s, (x) => T.act(x, "p1", "all_in"), "nobody_to_raise");
    s = T.act(s, "p1", "call");
    expect(s.hand.finished).toBe(true);
    expect(s.hand.board.length).toBe(5);
    expect(stacks(s).reduce((a: number, b: number) => a + b, 0)).toBe(1100);
  });

  it("runs the board out when everyone is all-in and pays side pots at showdown", () => {
    // seats 0..3, button 0: deal order 1, 2, 3, 0
    let s = table([300, 50, 100, 200]);
    const deck = deckFor(
      [
        ["Ah", "Ad"], // p1 (50): aces, best
        ["Kh", "Kd"], // p2 (100): kings, second
        ["7c", "8d"], // p3 (200): worst
        ["Qh", "Qd"], // p0 (300): queens, third
      ],
      ["3s", "4c", "9h", "Js", "5d"],
    );
    s = T.startHandWithDeck(s, deck);
    expect(s.hand.toAct).toBe(3);
    s = T.act(s, "p3", "all_in");
    s = T.act(s, "p0", "call");
    s = T.act(s, "p1", "all_in");
    s = T.act(s, "p2", "all_in");
    expect(s.hand.finished).toBe(true);
    expect(s.hand.street).toBe("showdown");
    expect(s.hand.board).toEqual(["3s", "4c", "9h", "Js", "5d"]);
    const r = s.hand.result;
    expect(r.showdown).toBe(true);
    expect(r.uncalled).toBeNull();
    expect(r.pots.map((p: any) => [p.amount, p.eligible.length, p.winners, p.hand])).toEqual([
      [200, 4, [{ playerId: "p1", amount: 200 }], "Pair of Aces"],
      [150, 3, [{ playerId: "p2", amount: 150 }], "Pair of Kings"],
      [200, 2, [{ playerId: "p0", amount: 200 }], "Pair of Queens"],
    ]);
    expect(stacks(s)).toEqual([300, 200, 150, 0]);
    expect(r.won).toEqual({ p0: 200, p1: 200, p2: 150 });
    expect(r.hands.map((x: any) => x.playerId)).toEqual(["p1", "p2", "p3", "p0"]);
    // the public view shows the cards of the players who reached showdown
    const v = T.publicView(s);
    expect(v.hand.players.find((p: any) => p.id === "p3").holeCards).toEqual(["7c", "8d"]);
    expect(JSON.stringify(v)).not.toContain("deck");
  });

  it("returns an uncalled all-in excess and splits a tied pot with the odd chip left of the button", () => {
    let s = table([101, 41, 60]);
    // button 0: deal order 1, 2, 0; board plays a straight for p1 and p2, p0 folds
    const deck = deckFor([["3c", "4d"], ["3h", "4s"], ["Kc", "Kd"]], ["9s", "Ts", "Jh", "Qd", "8c"]);
    s = T.startHandWithDeck(s, deck);
    s = T.act(s, "p0", "raise", 10);
    s = T.act(s, "p1", "call");
    s = T.act(s, "p2", "call");
    // flop: p1 first
    s = T.act(s, "p1", "all_in"); // 31 more
    s = T.act(s, "p2", "all_in"); // 50 more: 19 uncalled by p1, p0 still to act
    expect(s.hand.toAct).toBe(0);
    s = T.act(s, "p0", "fold");
    const r = s.hand.result;
    expect(r.uncalled).toEqual({ playerId: "p2", amount: 19 });
    // pot 10*3 + 31*2 = 92, both have the board's straight
    expect(r.pots).toEqual([
      {
        amount: 92,
        eligible: ["p1", "p2"],
        winners: [
          { playerId: "p1", amount: 46 },
          { playerId: "p2", amount: 46 },
        ],
        hand: "Straight, Queen High",
      },
    ]);
    expect(stacks(s)).toEqual([91, 46, 65]);
    // odd chip: a 3-chip pot split two ways goes 2 to the first winner left of the button
    s = table([10, 10, 10]);
    s = T.startHandWithDeck(s, deckFor([["3c", "4d"], ["3h", "4s"], ["Kc", "Kd"]], ["9s", "Ts", "Jh", "Qd", "8c"]));
    s = T.act(s, "p0", "fold");
    s = T.act(s, "p1", "call"); // SB completes: pot 4
    s = T.act(s, "p2", "check");
    for (let i = 0; i < 3; i++) {
      s = T.act(s, "p1", "check");
      s = T.act(s, "p2", "check");
    }
    expect(s.hand.result.pots[0].winners).toEqual([
      { playerId: "p1", amount: 2 },
      { playerId: "p2", amount: 2 },
    ]);
  });

  it("odd chip goes to the first winner clockwise from the button", () => {
    // big blind 3, small 1: pot of 1 + 3 + 3... use a folded blind to make it odd
    let s = table([100, 100, 100], { smallBlind: 1, bigBlind: 2 });
    const board = ["9s", "Ts", "Jh", "Qd", "8c"];
    // button 0, SB p1, BB p2; p1 folds its small blind; p0 and p2 split 2 + 2 + 1 = 5
    s = T.startHandWithDeck(s, deckFor([["3c", "4d"], ["3h", "4s"], ["3d", "4c"]], board));
    s = T.act(s, "p0", "call");
    s = T.act(s, "p1", "fold");
    s = T.act(s, "p2", "check");
    for (let i = 0; i < 3; i++) {
      s = T.act(s, "p2", "check");
      s = T.act(s, "p0", "check");
    }
    expect(s.hand.result.pots[0].amount).toBe(5);
    // p2 is left of the button before p0 (p0 is the button itself, last in clockwise order)
    expect(s.hand.result.pots[0].winners).toEqual([
      { playerId: "p2", amount: 3 },
      { playerId: "p0", amount: 2 },
    ]);
    expect(stacks(s)).toEqual([100, 99, 101]);
  });

  it("timeoutAction checks when it can and folds otherwise", () => {
    let s = table([100, 100]);
    s = T.startHand(s, seededRandomInt(9));
    s = T.timeoutAction(s); // the button faces the big blind: fold
    expect(s.hand.finished).toBe(true);
    expect(s.hand.log.actions).toEqual([{ playerId: "p0", action: "fold", amount: null }]);
    s = T.startHand(s, seededRandomInt(10)); // button p1
    s = T.act(s, "p1", "call");
    s = T.timeoutAction(s); // big blind can check
    expect(s.hand.street).toBe("flop");
    expect(s.hand.log.actions[1]).toEqual({ playerId: "p0", action: "check", amount: null });
  });

  it("voidHand gives everyone back what they put in, and a departed folder's chips to those still in", () => {
    let s = table([100, 100, 100]);
    expectRefused(s, (x) => T.voidHand(x), "no_hand");
    s = T.startHand(s, seededRandomInt(21));
    const before = T.chipsOnTable(s);
    // Bets on two streets, then the bettor's opponents still to act: the turn clock would fold them and
    // hand the bettor the pot; calling the hand off gives each their own chips back.
    const order = () => s.hand.players.find((p: any) => p.seat === s.hand.toAct).id;
    s = T.act(s, order(), "call");
    s = T.act(s, order(), "call");
    s = T.act(s, order(), "check");
    s = T.act(s, order(), "bet", 20);
    expect(T.handInProgress(s)).toBe(true);
    const voided = T.voidHand(s);
    expect(voided.hand).toBeNull();
    expect(stacks(voided)).toEqual([100, 100, 100]);
    expect(T.chipsOnTable(voided)).toBe(before);
    // A player who folds and leaves has forfeited what they put in: it goes to the two still in the hand.
    let t = T.startHand(table([100, 100, 100]), seededRandomInt(22));
    const first = t.hand.players.find((p: any) => p.seat === t.hand.toAct).id;
    t = T.act(t, first, "raise", 10);
    const folder = t.hand.players.find((p: any) => p.seat === t.hand.toAct).id;
    t = T.act(t, folder, "fold");
    const folderPut = t.hand.players.find((p: any) => p.id === folder).total;
    t = T.leave(t, folder).state;
    const left = T.voidHand(t);
    const total = stacks(left).reduce((a: number, b: number) => a + b, 0);
    expect(total).toBe(300 - (100 - folderPut));
    for (const seat of left.seats) if (seat !== null) expect(seat.stack).toBeGreaterThanOrEqual(100);
  });

  it("join, leave and views", () => {
    let s = table([100, 100, 100]);
    expectRefused(s, (x) => T.join(x, 1, { id: "z" }, 100), "seat_taken");
    expectRefused(s, (x) => T.join(x, null, { id: "p1" }, 100), "already_seated");
    expectRefused(s, (x) => T.join(x, 5, { id: "z" }, 0), "bad_buy_in");
    expectRefused(s, (x) => T.leave(x, "ghost"), "unknown_player");
    s = T.startHand(s, seededRandomInt(11));
    const pv = T.publicView(s);
    expect(pv.hand.players.every((p: any) => p.holeCards === null)).toBe(true);
    expect(JSON.stringify(pv)).not.toContain(`"${s.hand.players[0].holeCards[0]}"`);
    const mine = T.playerView(s, "p0");
    expect(mine.you.holeCards).toEqual(s.hand.players[0].holeCards);
    expect(mine.you.legalActions.length).toBe(4);
    expect(JSON.stringify(mine)).not.toContain(`"${s.hand.players[1].holeCards[0]}"`);
    expect(T.playerView(s, "p1").you.legalActions).toEqual([]);
    s = T.act(s, "p0", "fold");
    const out = T.leave(s, "p0"); // after folding
    expect(out.stack).toBe(100);
    expect(out.state.seats[0]).toBeNull();
    s = T.join(out.state, 0, { id: "new" }, 50); // dealt in from the next hand
    s = T.act(s, "p1", "call");
    s = T.act(s, "p2", "check");
    expect(s.hand.street).toBe("flop");
    expect(s.hand.players.map((p: any) => p.id)).toEqual(["p0", "p1", "p2"]);
    s = T.setSittingOut(s, "p2", true);
    s = T.act(s, "p1", "bet", 5);
    s = T.act(s, "p2", "fold");
    expect(stacks(s)).toEqual([50, 102, 98]);
    s = T.startHand(s, seededRandomInt(12));
    expect(s.hand.players.map((p: any) => p.id)).toEqual(["new", "p1"]);
    expect(s.hand.button).toBe(1);
  });

  it("refuses to start without two players with chips", () => {
    let s = table([100]);
    expectRefused(s, (x) => T.startHand(x, seededRandomInt(1)), "not_enough_players");
    s = T.join(s, 3, { id: "b" }, 100);
    s = T.setSittingOut(s, "b", true);
    expectRefused(s, (x) => T.startHand(x, seededRandomInt(1)), "not_enough_players");
  });

  it("replays a hand from its log to the same state", () => {
    let s = table([100, 80, 120]);
    s = T.startHand(s, seededRandomInt(13));
    s = T.act(s, "p0", "raise", 6);
    s = T.act(s, "p1", "call");
    s = T.act(s, "p2", "call");
    s = T.act(s, "p1", "check");
    s = T.act(s, "p2", "bet", 20);
    s = T.act(s, "p0", "all_in");
    s = T.act(s, "p1", "fold");
    s = T.act(s, "p2", "call");
    expect(s.hand.finished).toBe(true);
    const r = T.replayHand(JSON.parse(JSON.stringify(s.hand.log)));
    expect(r.hand).toEqual(s.hand);
    expect(stacks(r)).toEqual(stacks(s));
  });
});

describe("property: random hands", () => {
  it("500 random hands among 2-6 players: chips conserved every step, every hand ends, replay matches", () => {
    const rnd = seededRandomInt(20261207);
    let hands = 0;
    let showdowns = 0;
    let sidePots = 0;
    let tables = 0;
    let leftMidHand = 0;
    let newcomers = 0;
    while (hands < 500) {
      tables++;
      const n = 2 + rnd(5);
      let s: State = T.createTable({ smallBlind: 1, bigBlind: 2, minBuyIn: 1, maxBuyIn: 1000, maxSeats: 6 });
      const seats = shuffle([0, 1, 2, 3, 4, 5], rnd).slice(0, n);
      for (const seat of seats) s = T.join(s, seat, { id: `s${seat}` }, 1 + rnd(rnd(2) ? 40 : 300));
      let total = T.chipsOnTable(s);
      for (let k = 0; k < 10 && hands < 500; k++) {
        if (s.seats.filter((x: any) => x && x.stack > 0).length < 2) break;
        s = T.startHand(s, rnd);
        hands++;
        expect(T.chipsOnTable(s)).toBe(total);
        let steps = 0;
        while (!s.hand.finished) {
          steps++;
          expect(steps).toBeLessThan(200);
          const p = s.hand.players.find((x: any) => x.seat === s.hand.toAct);
          const legal = T.legalActions(s, p.id);
          expect(legal.length).toBeGreaterThan(0);
          const roll = rnd(20);
          if (roll === 0) s = T.timeoutAction(s);
          else {
            // fold rarely, so hands reach showdown
            const pool = legal.filter((a: any) => a.action !== "fold" || rnd(4) === 0);
            const a = pool[rnd(pool.length)] ?? legal[0];
            let amount: number | undefined;
            if (a.min !== undefined) amount = rnd(2) ? a.min : a.min + rnd(a.max - a.min + 1);
            s = T.act(s, p.id, a.action, amount);
          }
          expect(T.chipsOnTable(s)).toBe(total);
          for (const x of s.seats) if (x) expect(x.stack).toBeGreaterThanOrEqual(0);
          // now and then a folded player leaves mid-hand, or a newcomer sits in an empty seat
          const folded = s.hand.players.find((x: any) => x.folded && s.seats[x.seat]?.id === x.id);
          if (folded && rnd(10) === 0) {
            const out = T.leave(s, folded.id);
            s = out.state;
            total -= out.stack;
            leftMidHand++;
          } else if (rnd(40) === 0 && s.seats.includes(null)) {
            const buyIn = 1 + rnd(200);
            s = T.join(s, null, { id: `n${newcomers++}` }, buyIn);
            total += buyIn;
          }
          expect(T.chipsOnTable(s)).toBe(total);
        }
        expect(s.hand.toAct).toBeNull();
        const won = Object.values(s.hand.result.won as Record<string, number>).reduce((a, b) => a + b, 0);
        const put = s.hand.players.reduce((a: number, p: any) => a + p.total, 0);
        expect(won).toBe(put);
        if (s.hand.result.showdown) {
          showdowns++;
          expect(s.hand.board.length).toBe(5);
        }
        if (s.hand.result.pots.length > 1) sidePots++;
        const replayed = T.replayHand(JSON.parse(JSON.stringify(s.hand.log)));
        expect(replayed.hand).toEqual(s.hand);
        for (const p of s.hand.players)
          if (s.seats[p.seat]?.id === p.id) expect(replayed.seats[p.seat].stack).toBe(s.seats[p.seat].stack);
        // busted players leave between hands
        for (const x of s.seats) {
          if (x && x.stack === 0) {
            const out = T.leave(s, x.id);
            expect(out.stack).toBe(0);
            s = out.state;
          }
        }
        expect(T.chipsOnTable(s)).toBe(total);
        total = T.chipsOnTable(s);
      }
    }
    expect(hands).toBe(500);
    expect(showdowns).toBeGreaterThan(50);
    expect(sidePots).toBeGreaterThan(10);
    expect(tables).toBeGreaterThan(1);
    expect(leftMidHand).toBeGreaterThan(5);
    expect(newcomers).toBeGreaterThan(5);
  });
});

describe("runs without Node APIs", () => {
  it("bundles with esbuild and plays a hand inside an isolated-vm isolate", async () => {
    const dir = fileURLToPath(new URL("../examples/poker/engine/", import.meta.url));
    const out = await build({
      stdin: {
        contents: `import * as T from "./table.js"; import { randomIntFrom } from "./cards.js";
          const ri = randomIntFrom((a) => { for (let i = 0; i < a.length; i++) a[i] = (i * 2654435761 + 12345) >>> 0; return a; });
          let s = T.createTable({ bigBlind: 2 });
          s = T.join(s, null, { id: "a" }, 100);
          s = T.join(s, null, { id: "b" }, 60);
          s = T.startHand(s, ri);
          s = T.act(s, "a", "all_in");
          s = T.act(s, "b", "call");
          globalThis.result = JSON.stringify({ board: s.hand.board.length, total: T.chipsOnTable(s), uncalled: s.hand.result.uncalled });`,
        resolveDir: dir,
      },
      bundle: true,
      format: "iife",
      write: false,
      logLevel: "silent",
    });
    const iso = new ivm.Isolate({ memoryLimit: 32 });
    try {
      const ctx = await iso.createContext();
      await ctx.eval(out.outputFiles[0].text);
      const result = JSON.parse(await ctx.eval("result"));
      expect(result).toEqual({ board: 5, total: 160, uncalled: { playerId: "a", amount: 40 } });
    } finally {
      iso.dispose();
    }
  });
});
