// The poker demo's table: one no-limit hold'em game as a nex JavaScript service, usually deployed by
// the lobby (services/lobby.js) as the child workload `table-<id>`, bundled to examples/poker/dist/table.js.
//
//   poker.table.<id>.join  {user, token, buy_in}          → {seat}
//   poker.table.<id>.leave {user, token}                  → {ok: true, paid}
//   poker.table.<id>.act   {user, token, action, amount?} → {ok: true}
//   poker.table.<id>.state {user?, token?, seal?}         → public view (+ `you` with your hole cards, sealed with seal)
//   poker.table.<id>.close {secret}                       → {ok: true, paid: {<user>: chips}} (the lobby)
//   poker.table.<id>.hand  {number}                       → a finished hand's {log, result} (deck and actions: auditable)
//   poker.table.<id>.events                               ← every change, without hole cards before showdown
//
// env: TABLE_ID, TABLE_NAME, SEATS, SMALL_BLIND, BIG_BLIND, TURN_TIMEOUT_S, TABLE_SECRET, HAND_PAUSE_MS.
// State (the engine's state plus bookkeeping) is in the workload's KV bucket under "table", written after
// every change, and read back in start(): a table redeployed after a node restart continues the hand.
// See examples/poker/README.md ("NATS API: table and lobby").

import * as engine from "../engine/table.js";
import { randomIntFrom } from "../engine/cards.js";
import { parseRequest, Refusal, answering, sameString, sealWithToken, askService, verifyPlayer } from "./lib/common.js";

const TOKEN_CACHE_MS = 60_000;

let ctx;
let id;
let secret;
let turnTimeoutMs;
let handPauseMs;
let subjectBase;
/** @type {{game: any, seq: number, closed: boolean, names: Record<string,string>}} */
let doc;
let turnTimer = null;
let nextHandTimer = null;
let turnKey = "";
const tokenCache = new Map(); // user → {token, name, at}

/** Uniform random integers for the shuffle, from the isolate's crypto.getRandomValues (a CSPRNG). */
const randomInt = randomIntFrom((a) => crypto.getRandomValues(a));

// ---- one change at a time: handlers are async and would otherwise interleave at their awaits ----
let queue = Promise.resolve();
function serialized(fn) {
  return (payload) => {
    const run = queue.then(async () => {
      if (doc.pending) await reconcile();
      return fn(payload);
    });
    queue = run.catch(() => {});
    return run;
  };
}

/** A request (a player's, or the lobby's close) at most this big. */
const MAX_REQUEST_BYTES = 4096;
/** Players' requests waiting for their turn at most; past that one is refused ("busy"). */
const MAX_WAITING = 64;
let waiting = 0;

/** A request's JSON, read only when it is small (a padded one costs nothing). */
function readSmall(payload) {
  if (payload.length > MAX_REQUEST_BYTES) throw new Refusal(`a request is at most ${MAX_REQUEST_BYTES} bytes`);
  return parseRequest(payload);
}

/**
 * A player's request (join, leave, act): read and its token checked before it joins the queue, so a
 * flood of requests with made-up users or tokens holds no one up and piles nothing up; at most
 * MAX_WAITING checked ones wait for their turn. `fn` gets the request and the player's name.
 */
function playerRequest(fn) {
  const run = serialized(fn);
  return async (payload) => {
    const req = readSmall(payload);
    const name = await verify(req.user, req.token);
    if (waiting >= MAX_WAITING) throw new Refusal("the table is busy: try again");
    waiting++;
    try {
      return await run({ req, name });
    } finally {
      waiting--;
    }
  };
}

async function save() {
  await ctx.hostServices.async.kv.set("table", JSON.stringify(doc));
}

function publish(type, extra = {}) {
  const event = { type, table: id, ...extra, view: engine.publicView(doc.game) };
  try {
    ctx.hostServices.messaging.publish(`${subjectBase}.events`, JSON.stringify(event));
  } catch (e) {
    console.log(`publish failed: ${e.message}`);
  }
}

function request(subject, body, timeoutMs) {
  return askService(ctx.hostServices, subject, body, timeoutMs);
}

/** Checks a player's token with poker.user.verify; a good answer is cached per user for a minute. */
async function verify(user, token) {
  const hit = typeof user === "string" && typeof token === "string" ? tokenCache.get(user) : undefined;
  if (hit && sameString(hit.token, token) && Date.now() - hit.at < TOKEN_CACHE_MS) return hit.name;
  const name = await verifyPlayer(ctx.hostServices, user, token);
  tokenCache.set(user, { token, name, at: Date.now() });
  return name;
}

/** Runs an engine function; a PokerError becomes a refusal with its code. */
function rule(fn) {
  try {
    return fn();
  } catch (e) {
    if (e && e.name === "PokerError") throw new Refusal(`${e.code}: ${e.message}`);
    throw e;
  }
}

/** A bank transfer. A refusal (nothing moved) is a Refusal; an unclear outcome (a timeout, the bank's internal error or half-done answer) is an Error. */
async function transfer(body) {
  const r = await request("poker.bank.transfer", body, 30_000);
  if (r.error) {
    if (/internal error|half done/.test(r.error)) throw new Error(`bank: ${r.error}`);
    throw new Refusal(`bank: ${r.error}`);
  }
  return r;
}

/**
 * A transfer is recorded in doc.pending (and saved) before it is sent, and cleared with the change it
 * pays for, so a table that died or lost the bank's answer in between finishes it (in start, and before
 * the next change):
 * - a leave is sent again with the same ref (the bank applies a ref once), then the player is unseated;
 * - a join (the user's token is never stored) is settled by the table account's balance: if it holds the
 *   buy-in on top of the chips on the table, the player is seated, else the join is dropped.
 */
async function reconcile() {
  const p = doc.pending;
  if (p.kind === "leave") {
    await transfer({ from: `table:${id}`, to: p.user, amount: p.amount, ref: p.ref, secret });
    doc.game = engine.leave(doc.game, p.user).state;
    doc.pending = null;
    await save();
    publish("left", { user: p.user, paid: p.amount });
    return;
  }
  const r = await request("poker.bank.balance", { user: `table:${id}` }, 10_000);
  if (r.error) throw new Error(`bank: ${r.error}`);
  let seated = false;
  if (r.balance >= engine.chipsOnTable(doc.game) + p.amount) {
    try {
      doc.game = engine.join(doc.game, null, { id: p.user, name: p.name }, p.amount);
      seated = true;
    } catch (e) {
      console.log(`join ${p.ref} was paid but cannot be seated (${e.message}): paying it back`);
      doc.pending = { kind: "leave", user: p.user, amount: p.amount, ref: `${id}-refund-${++doc.seq}` };
      await save();
      await transfer({ from: `table:${id}`, to: p.user, amount: p.amount, ref: doc.pending.ref, secret });
    }
  }
  doc.pending = null;
  await save();
  if (seated) publish("joined", { user: p.user, seat: engine.seatOf(doc.game, p.user), buy_in: p.amount });
}

// ---- the hand loop: start hands, the turn clock ----
function schedule() {
  if (turnTimer) clearTimeout(turnTimer);
  turnTimer = null;
  const g = doc.game;
  if (engine.handInProgress(g)) {
    const key = `${g.hand.number}/${g.hand.log.actions.length}`;
    turnKey = key;
    turnTimer = setTimeout(() => onTurnTimeout(key), turnTimeoutMs);
    return;
  }
  if (!doc.closed && !nextHandTimer && canDeal(g)) {
    nextHandTimer = setTimeout(() => {
      nextHandTimer = null;
      dealNext().catch((e) => console.log(`deal failed: ${e.stack ?? e}`));
    }, handPauseMs);
  }
}

function canDeal(g) {
  return g.seats.filter((s) => s !== null && s.stack > 0 && !s.sittingOut).length >= 2;
}

const dealNext = serialized(async () => {
  if (doc.closed || engine.handInProgress(doc.game) || !canDeal(doc.game)) return;
  doc.game = engine.startHand(doc.game, randomInt);
  await save();
  publish("hand_started");
  schedule();
});

const onTurnTimeout = serialized(async (key) => {
  if (key !== turnKey || !engine.handInProgress(doc.game)) return;
  const before = doc.game.hand.toAct;
  doc.game = engine.timeoutAction(doc.game);
  await save();
  publish("timeout", { seat: before });
  afterAction();
});

function afterAction() {
  if (doc.game.hand && doc.game.hand.finished) handFinished();
  schedule();
}

/**
 * A finished hand: its log (the shuffled deck, every action) and result are recorded under "hand.<n>" in
 * the table's KV bucket (a JetStream stream, kept after the table closes), for poker.table.<id>.hand
 * and any audit (engine.replayHand(log) deals and plays it again); then everyone is told.
 */
function handFinished() {
  const hand = doc.game.hand;
  ctx.hostServices.async.kv
    .create(`hand.${hand.number}`, JSON.stringify({ log: hand.log, result: hand.result }))
    .catch((e) => e && e.code === "exists" ? undefined : console.log(`hand ${hand.number} not recorded: ${e.message}`));
  publish("hand_finished", { result: hand.result });
}

/** poker.table.<id>.hand {number} → the recorded hand {log, result}: public once the hand is over. */
async function handRecord(payload) {
  const req = parseRequest(payload);
  if (typeof req.number !== "number" || !Number.isInteger(req.number) || req.number < 1) throw new Refusal("number must be a hand number (1, 2, ...)");
  const raw = await ctx.hostServices.async.kv.getString(`hand.${req.number}`);
  if (raw === null) throw new Refusal(`no finished hand ${req.number} at this table`);
  return JSON.parse(raw);
}

const settle = serialized(async () => {});

// ---- requests ----
const join = playerRequest(async ({ req, name }) => {
  if (doc.closed) throw new Refusal("the table is closed");
  const buyIn = req.buy_in;
  if (typeof buyIn !== "number" || !Number.isInteger(buyIn) || buyIn < 1) throw new Refusal("buy_in must be a whole number of chips");
  // Check with the engine first (seat free, buy-in within limits, not seated) so the bank moves nothing for a refused join.
  const next = rule(() => engine.join(doc.game, null, { id: req.user, name }, buyIn));
  const ref = `${id}-join-${++doc.seq}`;
  doc.pending = { kind: "join", user: req.user, name, amount: buyIn, ref };
  await save();
  try {
    await transfer({ from: req.user, to: `table:${id}`, amount: buyIn, ref, token: req.token });
  } catch (e) {
    if (e instanceof Refusal) {
      doc.pending = null;
      await save();
    }
    throw e; // an unclear outcome stays pending: settled before the next change
  }
  doc.game = next;
  doc.names[req.user] = name;
  doc.pending = null;
  await save();
  const seat = engine.seatOf(doc.game, req.user);
  publish("joined", { user: req.user, seat, buy_in: buyIn });
  schedule();
  return { seat };
});

/** Takes a player off the table and pays the stack back from the table account. */
async function payOut(user) {
  const { state, stack } = rule(() => engine.leave(doc.game, user));
  if (stack > 0) {
    const ref = `${id}-leave-${++doc.seq}`;
    doc.pending = { kind: "leave", user, amount: stack, ref };
    await save();
    try {
      await transfer({ from: `table:${id}`, to: user, amount: stack, ref, secret });
    } catch (e) {
      if (e instanceof Refusal) {
        doc.pending = null;
        await save();
      }
      throw e;
    }
  }
  doc.game = state;
  doc.pending = null;
  await save();
  publish("left", { user, paid: stack });
  return stack;
}

const leave = playerRequest(async ({ req }) => {
  if (engine.seatOf(doc.game, req.user) === null) throw new Refusal("you are not seated here");
  const paid = await payOut(req.user);
  schedule();
  return { ok: true, paid };
});

const ACTIONS = new Set(["fold", "check", "call", "bet", "raise", "all_in"]);
const act = playerRequest(async ({ req }) => {
  if (typeof req.action !== "string" || !ACTIONS.has(req.action)) throw new Refusal("action must be fold, check, call, bet, raise or all_in");
  let amount;
  if (req.action === "bet" || req.action === "raise") {
    if (typeof req.amount !== "number" || !Number.isInteger(req.amount)) throw new Refusal("amount must be a whole number of chips (the total after the bet or raise)");
    amount = req.amount;
  }
  doc.game = rule(() => engine.act(doc.game, req.user, req.action, amount));
  await save();
  publish("action", { user: req.user, action: req.action, amount: amount ?? null });
  afterAction();
  return { ok: true };
});

async function stateOf(payload) {
  const req = payload.length === 0 ? {} : parseRequest(payload);
  const base = { id, name: ctx.env.TABLE_NAME ?? id, closed: doc.closed, turn_timeout_s: turnTimeoutMs / 1000 };
  if (req.user !== undefined || req.token !== undefined) {
    await verify(req.user, req.token);
    const view = engine.playerView(doc.game, req.user);
    // {seal: true} (browsers): the hole cards in a secretbox under the player's token, since other
    // browsers may read this reply (README, "Sealed replies").
    if (req.seal === true && view.you && view.you.holeCards) {
      view.you = { ...view.you, holeCards: null, holeCards_sealed: sealWithToken(req.token, JSON.stringify(view.you.holeCards)) };
    }
    return { ...base, ...view };
  }
  return { ...base, ...engine.publicView(doc.game) };
}

/**
 * The lobby closes the table: the hand in progress is called off (everyone gets back what they put in;
 * finishing it by the turn clock's rule gave the pot to whoever bet last, so closing mid-hand paid), then
 * everyone is paid. The secret is checked before the request waits for its turn.
 */
const closeQueued = serialized(async () => {
  doc.closed = true;
  if (nextHandTimer) clearTimeout(nextHandTimer);
  nextHandTimer = null;
  if (engine.handInProgress(doc.game)) {
    doc.game = engine.voidHand(doc.game);
    publish("hand_voided");
  }
  await save();
  const paid = {};
  for (const s of doc.game.seats) if (s !== null) paid[s.id] = await payOut(s.id);
  schedule();
  publish("closed", { paid });
  return { ok: true, paid };
});

async function close(payload) {
  const req = readSmall(payload);
  if (!secret || typeof req.secret !== "string" || !sameString(req.secret, secret)) throw new Refusal("wrong secret");
  return closeQueued();
}

function envInt(name, dflt) {
  const v = ctx.env[name];
  if (v === undefined || v === "") return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`env ${name} must be a number`);
  return n;
}

export default {
  async start(c) {
    ctx = c;
    id = ctx.env.TABLE_ID;
    if (!id || !/^[A-Za-z0-9_-]{1,40}$/.test(id)) throw new Error("env TABLE_ID must be 1 to 40 letters, digits, - or _");
    secret = ctx.env.TABLE_SECRET || null;
    turnTimeoutMs = Math.max(1, envInt("TURN_TIMEOUT_S", 30)) * 1000;
    handPauseMs = envInt("HAND_PAUSE_MS", 2000);
    subjectBase = `poker.table.${id}`;
    const stored = await ctx.hostServices.async.kv.getString("table");
    if (stored) {
      doc = JSON.parse(stored);
    } else {
      const bigBlind = envInt("BIG_BLIND", 2);
      const game = engine.createTable({ maxSeats: envInt("SEATS", 6), smallBlind: envInt("SMALL_BLIND", Math.max(1, Math.floor(bigBlind / 2))), bigBlind });
      doc = { game, seq: 0, closed: false, names: {}, pending: null };
      await save();
    }
    const opts = { queue: "table" };
    ctx.subscribe(`${subjectBase}.join`, answering(join), opts);
    ctx.subscribe(`${subjectBase}.leave`, answering(leave), opts);
    ctx.subscribe(`${subjectBase}.act`, answering(act), opts);
    ctx.subscribe(`${subjectBase}.state`, answering(stateOf), opts);
    ctx.subscribe(`${subjectBase}.close`, answering(close), opts);
    ctx.subscribe(`${subjectBase}.hand`, answering(handRecord), opts);
    // A transfer left pending by the last run is settled in the queue (not here: start has a short deadline
    // and the bank may not be back yet); failing that, before the next change.
    if (doc.pending) setTimeout(() => settle().catch((e) => console.log(`table ${id}: pending transfer not settled yet: ${e.message}`)), 0);
    schedule();
  },
  stop() {
    if (turnTimer) clearTimeout(turnTimer);
    if (nextHandTimer) clearTimeout(nextHandTimer);
  },
};
