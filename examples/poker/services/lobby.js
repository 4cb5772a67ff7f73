// The poker demo's lobby: creates, lists and closes tables, each a child workload `table-<id>` running
// examples/poker/dist/table.js. Bundled to examples/poker/dist/lobby.js and deployed with
//   nex run examples/poker/dist/lobby.js --service --name lobby --env TABLE_KEY=<the bank's TABLE_KEY> \
//     --allow-deploy examples/poker/dist/table.js --max-children 20
//
//   poker.lobby.list   {}                                                       → [{id, name, seats, players, small_blind, big_blind, state}]
//   poker.lobby.create {user, token, name, seats, small_blind, big_blind, turn_timeout_s?, idle_close_s?}  → {id}
//   poker.lobby.close  {id, user, token}                                        → {ok: true, paid}
//
// A table belongs to the player who opened it: only they may close it (besides the idle sweep), and a
// player has at most MAX_TABLES_PER_PLAYER open, so nobody can take every child slot or close others' tables.
//   poker.lobby.events                                                          ← {type: "created"|"closed", table, reason?}
//
// A table nobody sits at for idle_close_s (default 300) closes itself: the lobby looks every 2 s.
//
// Tables are recorded in the lobby's KV bucket ("table.<id>" → the table's settings and workload id), so
// a restarted lobby still knows them. See examples/poker/README.md ("NATS API: table and lobby").

import { hex, hmacSha256, randomBytes, parseRequest, Refusal, answering, askService, verifyPlayer } from "./lib/common.js";

const TABLE_ID = /^[0-9a-f]{8}$/;
const DEFAULT_IDLE_CLOSE_S = 300;
const SWEEP_MS = 2000;
const NAME = /^[A-Za-z0-9 ._'-]{1,32}$/;
const MAX_TABLES_PER_PLAYER = 2;

let ctx;
let tableKey;
let artifact;

const kv = () => ctx.hostServices.async.kv;

function wholeIn(v, what, lo, hi) {
  if (typeof v !== "number" || !Number.isInteger(v) || v < lo || v > hi) throw new Refusal(`${what} must be a whole number from ${lo} to ${hi}`);
  return v;
}

async function records() {
  const keys = await kv().keys("table.*");
  const out = await Promise.all(keys.map(async (k) => JSON.parse((await kv().getString(k)) ?? "null")));
  return out.filter((r) => r !== null).sort((a, b) => a.created_at - b.created_at || (a.id < b.id ? -1 : 1));
}

function ask(subject, body, timeoutMs) {
  return askService(ctx.hostServices, subject, body, timeoutMs);
}

/** The player's id once the user service has checked their token. */
async function player(req) {
  await verifyPlayer(ctx.hostServices, req.user, req.token);
  return req.user;
}

async function list() {
  const tables = await records();
  return Promise.all(
    tables.map(async (t) => {
      let players = 0;
      let state = "starting";
      try {
        const v = await ask(`poker.table.${t.id}.state`, {}, 2000);
        if (!v.error) {
          players = v.seats.filter((s) => s !== null).length;
          state = v.closed ? "closed" : v.hand && !v.hand.finished ? "playing" : "waiting";
        }
      } catch {
        state = "unreachable";
      }
      return { id: t.id, name: t.name, seats: t.seats, players, small_blind: t.small_blind, big_blind: t.big_blind, state };
    }),
  );
}

async function create(payload) {
  const req = parseRequest(payload);
  if (!tableKey) throw new Refusal("this lobby has no TABLE_KEY: it cannot give tables their secrets");
  if (typeof req.name !== "string" || !NAME.test(req.name) || req.name.trim() !== req.name) {
    throw new Refusal("name must be 1 to 32 letters, digits, spaces or . _ ' - (no leading or trailing space)");
  }
  const seats = wholeIn(req.seats, "seats", 2, 6);
  const smallBlind = wholeIn(req.small_blind, "small_blind", 1, 1_000_000);
  const bigBlind = wholeIn(req.big_blind, "big_blind", smallBlind, 1_000_000);
  const turnTimeout = req.turn_timeout_s === undefined ? 30 : wholeIn(req.turn_timeout_s, "turn_timeout_s", 1, 3600);
  const idleClose = req.idle_close_s === undefined ? DEFAULT_IDLE_CLOSE_S : wholeIn(req.idle_close_s, "idle_close_s", 1, 86_400);
  const creator = await player(req);
  const own = (await records()).filter((r) => r.creator === creator).length;
  if (own >= MAX_TABLES_PER_PLAYER) throw new Refusal(`you have ${own} open tables, the most a player may: close one first`);
  const id = hex(randomBytes(4, tableKey));
  const secret = hex(hmacSha256(tableKey, id));
  const record = { id, name: req.name, seats, small_blind: smallBlind, big_blind: bigBlind, turn_timeout_s: turnTimeout, idle_close_s: idleClose, created_at: Date.now(), workload_id: null, creator };
  await kv().create(`table.${id}`, JSON.stringify(record));
  const env = {
    TABLE_ID: id, TABLE_NAME: req.name, SEATS: String(seats), SMALL_BLIND: String(smallBlind), BIG_BLIND: String(bigBlind),
    TURN_TIMEOUT_S: String(turnTimeout), TABLE_SECRET: secret,
  };
  if (ctx.env.HAND_PAUSE_MS) env.HAND_PAUSE_MS = ctx.env.HAND_PAUSE_MS;
  let deployed;
  try {
    deployed = await ctx.hostServices.async.workloads.deploy({
      name: `table-${id}`, artifact, service: true, trigger_subjects: [], env, limits: { timeout_ms: 60_000 },
    });
  } catch (e) {
    await kv().delete(`table.${id}`);
    throw new Refusal(`the table could not be started: ${e.code ?? "error"}: ${e.message}`);
  }
  record.workload_id = deployed.workload_id;
  await kv().set(`table.${id}`, JSON.stringify(record));
  ctx.hostServices.messaging.publish("poker.lobby.events", JSON.stringify({ type: "created", table: { id, name: req.name, seats, small_blind: smallBlind, big_blind: bigBlind } }));
  return { id };
}

async function close(payload) {
  const req = parseRequest(payload);
  if (typeof req.id !== "string" || !TABLE_ID.test(req.id)) throw new Refusal("id must be a table id (8 hex digits)");
  const who = await player(req);
  const raw = await kv().getString(`table.${req.id}`);
  if (!raw) throw new Refusal(`unknown table ${req.id}`);
  if (JSON.parse(raw).creator !== who) throw new Refusal("only the player who opened this table may close it");
  return closeTable(req.id, "closed");
}

/** Asks the table to pay every player back from its account; only then does it go. */
async function closeTable(id, reason) {
  const raw = await kv().getString(`table.${id}`);
  if (!raw) throw new Refusal(`unknown table ${id}`);
  const record = JSON.parse(raw);
  let answer;
  try {
    answer = await ask(`poker.table.${id}.close`, { secret: hex(hmacSha256(tableKey, id)) }, 60_000);
  } catch (e) {
    throw new Refusal(`the table did not answer (${e.code ?? e.message}): nothing was undeployed, try again`);
  }
  if (answer.error) throw new Refusal(`the table refused: ${answer.error}`);
  const children = await ctx.hostServices.async.workloads.list();
  for (const c of children) {
    if (c.workload_id === record.workload_id || c.name === `table-${id}`) await ctx.hostServices.async.workloads.undeploy(c.workload_id);
  }
  await kv().delete(`table.${id}`);
  emptySince.delete(id);
  ctx.hostServices.messaging.publish("poker.lobby.events", JSON.stringify({ type: "closed", table: { id, name: record.name }, paid: answer.paid, reason }));
  return { ok: true, paid: answer.paid };
}

/** When each table was first seen with nobody seated (this lobby's memory; a restart starts it again). */
const emptySince = new Map();
let sweeping = false;

/** Closes the tables that have been empty for their idle_close_s. */
async function sweep() {
  if (sweeping) return;
  sweeping = true;
  try {
    const now = Date.now();
    for (const t of await records()) {
      let seated;
      try {
        const v = await ask(`poker.table.${t.id}.state`, {}, 2000);
        if (v.error || v.closed) continue;
        seated = v.seats.filter((s) => s !== null).length;
      } catch {
        continue; // not answering (starting, or its node is down): not known to be empty
      }
      if (seated > 0) {
        emptySince.delete(t.id);
        continue;
      }
      if (!emptySince.has(t.id)) emptySince.set(t.id, now);
      if (now - emptySince.get(t.id) >= (t.idle_close_s ?? DEFAULT_IDLE_CLOSE_S) * 1000) {
        await closeTable(t.id, "empty").catch((e) => console.log(`closing empty table ${t.id}: ${e.message}`));
      }
    }
  } finally {
    sweeping = false;
  }
}

export default {
  start(c) {
    ctx = c;
    tableKey = ctx.env.TABLE_KEY || null;
    artifact = ctx.env.TABLE_ARTIFACT || "table.js";
    const opts = { queue: "lobby" };
    ctx.subscribe("poker.lobby.list", answering(list), opts);
    ctx.subscribe("poker.lobby.create", answering(create), opts);
    ctx.subscribe("poker.lobby.close", answering(close), opts);
    setInterval(() => void sweep().catch((e) => console.log(`sweep: ${e.message}`)), SWEEP_MS);
  },
  stop() {},
};
