// The poker demo's bank: `nex run examples/poker/services/bank.js --service --name bank --env TABLE_KEY=<hex>`
// (with the user service deployed as "user" in the same namespace; --env USER_BUCKET=<name> otherwise).
//
//   poker.bank.balance  {"user": "<id>" | "table:<id>"}                        → {"user", "balance"}
//   poker.bank.transfer {"from", "to", "amount", "ref", "token"? , "secret"?}  → {"ok": true, "ref", "from", "to", "amount", "balance"}
//   poker.bank.stats    (any)  → {"workload", "transfers", "conflicts"} from every replica (not queued)
//
// A refusal is a JSON body {"error": "..."} and changes nothing. A user's account is opened with
// 1,000 chips the first time the bank sees the user (a balance or a transfer naming them); a table
// account "table:<id>" opens with 0. Chips are created only there, so the sum of all balances is
// 1,000 times the number of user accounts.
//
// Debits need proof: the user's token (checked against the SHA-256 in the user service's bucket) for a
// user account, and the table's secret, HMAC-SHA-256(TABLE_KEY, "<id>") in hex, for "table:<id>".
//
// KV (the workload's bucket, "bank"): "acct.<user id>" / "acct.table.<id>" → {"balance", "refs"} and
// "ref.<user id>.<ref>" / "ref.table.<id>.<ref>" → the transfer and its state (a ref is scoped to the
// debited account). Every balance change is a kv.update at the revision read (retried on a conflict, a
// bounded number of times), and records "<from>/<ref>" in the account's last 64 refs, so a transfer
// driven twice (a replay racing the original) is applied once per account.

import { sha256, hmacSha256, hex, sameString, readEntry, parseRequest, Refusal, answering, sleep, USER_ID } from "./lib/common.js";

const TABLE_ID = /^[A-Za-z0-9_-]{1,64}$/;
const REF = /^[A-Za-z0-9_-]{1,64}$/;
const START_CHIPS = 1000;
const MAX_AMOUNT = 1_000_000_000;
const KEEP_REFS = 64;
const ATTEMPTS = 50;

let kv;
let users;
let tableKey;
const stats = { transfers: 0, conflicts: 0 }; // this replica's: answered by poker.bank.stats

/** "<user id>" or "table:<id>" → { kind, id, key }, or a refusal. */
function account(s, what) {
  if (typeof s !== "string") throw new Refusal(`${what} must be a user id or table:<id>`);
  if (s.startsWith("table:")) {
    const id = s.slice(6);
    if (!TABLE_ID.test(id)) throw new Refusal(`${what}: a table id is 1 to 64 letters, digits, - or _`);
    return { kind: "table", id, name: s, key: `acct.table.${id}` };
  }
  if (!USER_ID.test(s)) throw new Refusal(`${what}: unknown user`);
  return { kind: "user", id: s, name: s, key: `acct.${s}` };
}

async function userRecord(acct) {
  const rec = await users.getJSON(`user.${acct.id}`);
  if (rec === null) throw new Refusal(`unknown user ${acct.id}`);
  return rec;
}

// One balance change at a time per account within this isolate (replicas are kept apart by the
// revision check): fewer conflicts under load.
const locks = new Map();
async function locked(key, fn) {
  const before = locks.get(key) ?? Promise.resolve();
  let release;
  const mine = new Promise((r) => (release = r));
  const tail = before.then(() => mine);
  locks.set(key, tail);
  await before;
  try {
    return await fn();
  } finally {
    release();
    if (locks.get(key) === tail) locks.delete(key);
  }
}

/** The account's entry, opened if it is not yet (a user's with START_CHIPS, a table's with 0). */
async function openAccount(acct) {
  for (let i = 0; i < ATTEMPTS; i++) {
    const e = await readEntry(kv, acct.key);
    if (e !== null && e.value !== null) return e;
    if (acct.kind === "user") await userRecord(acct);
    try {
      const value = { balance: acct.kind === "user" ? START_CHIPS : 0, refs: [] };
      const revision = await kv.create(acct.key, value);
      return { value, revision };
    } catch (err) {
      if (!err || err.code !== "exists") throw err; // opened meanwhile: read it again
    }
  }
  throw new Error(`could not open ${acct.name}`);
}

/**
 * Adds delta to the account's balance once for this ref: a no-op when the account has the ref already.
 * Refuses (changing nothing) when the balance would go below 0. Returns the balance after.
 */
async function apply(acct, delta, ref) {
  return locked(acct.key, async () => {
    for (let i = 0; i < ATTEMPTS; i++) {
      const { value, revision } = await openAccount(acct);
      if (value.refs.includes(ref)) return value.balance;
      const balance = value.balance + delta;
      if (balance < 0) throw new Refusal(`insufficient balance: ${acct.name} has ${value.balance}`);
      const refs = value.refs.concat([ref]).slice(-KEEP_REFS);
      try {
        await kv.update(acct.key, { balance, refs }, revision);
        return balance;
      } catch (err) {
        if (!err || err.code !== "wrong_revision") throw err;
        stats.conflicts++;
        await sleep(1 + Math.floor(Math.random() * 5 * (i + 1))); // another replica wrote it: read again
      }
    }
    throw new Error(`${acct.name} is too busy`);
  });
}

async function balance(payload) {
  const req = parseRequest(payload);
  const acct = account(req.user, "user");
  const { value } = await openAccount(acct);
  return { user: acct.name, balance: value.balance };
}

async function transfer(payload) {
  stats.transfers++;
  const req = parseRequest(payload);
  const from = account(req.from, "from");
  const to = account(req.to, "to");
  if (from.name === to.name) throw new Refusal("from and to are the same account");
  const amount = req.amount;
  if (typeof amount !== "number" || !Number.isInteger(amount) || amount < 1 || amount > MAX_AMOUNT) {
    throw new Refusal(`amount must be a whole number from 1 to ${MAX_AMOUNT}`);
  }
  if (typeof req.ref !== "string" || !REF.test(req.ref)) throw new Refusal("ref must be 1 to 64 letters, digits, - or _");
  const ref = req.ref;

  // Who may debit "from".
  if (from.kind === "user") {
    const rec = await userRecord(from);
    if (typeof req.token !== "string" || !sameString(hex(sha256(req.token)), rec.token_hash)) {
      throw new Refusal("wrong token for the from account");
    }
  } else {
    if (!tableKey) throw new Refusal("this bank has no TABLE_KEY: table accounts cannot be debited");
    if (typeof req.secret !== "string" || !sameString(req.secret, hex(hmacSha256(tableKey, from.id)))) {
      throw new Refusal("wrong secret for the from table");
    }
  }
  if (to.kind === "user") await userRecord(to);

  // The ref, scoped to the debited account (so nobody can use up a ref another account will need):
  // claimed with a create; a ref seen before is the same transfer or a refusal.
  const refKey = `ref.${from.key.slice("acct.".length)}.${ref}`;
  const mark = `${from.name}/${ref}`; // what the accounts record
  const record = { from: from.name, to: to.name, amount };
  const done = (bal, replayed) => ({ ok: true, ref, from: from.name, to: to.name, amount, balance: bal, ...(replayed ? { replayed: true } : {}) });
  let revision;
  for (let i = 0; revision === undefined; i++) {
    try {
      revision = await kv.create(refKey, { ...record, state: "pending" });
      break;
    } catch (err) {
      if (!err || err.code !== "exists") throw err;
    }
    const seen = await readEntry(kv, refKey);
    const v = seen && seen.value;
    if (v === null || v === undefined) {
      // freed meanwhile (a copy of this transfer was refused): claim it again
      if (i >= ATTEMPTS) throw new Error(`ref ${ref} is too busy`);
      continue;
    }
    if (v.from !== record.from || v.to !== record.to || v.amount !== record.amount) {
      throw new Refusal(`ref ${ref} was used for another transfer`);
    }
    if (v.state === "done") return done(v.balance, true);
    revision = seen.revision; // pending: finish it (apply() skips an account that has the ref already)
  }

  let fromBalance;
  try {
    fromBalance = await apply(from, -amount, mark);
  } catch (err) {
    // Nothing moved: free the ref so the transfer may be sent again.
    await kv.delete(refKey).catch(() => {});
    throw err;
  }
  try {
    await apply(to, amount, mark);
  } catch (err) {
    console.log(`transfer ${ref}: debited ${from.name} but not yet credited ${to.name}: ${err && err.message}`);
    throw new Refusal(`transfer ${ref} is half done (${to.name} not yet credited): send it again with the same ref to finish it`);
  }
  await kv.update(refKey, { ...record, state: "done", balance: fromBalance }, revision).catch(() => {
    // someone else finished or freed it meanwhile; the accounts have the ref either way
  });
  return done(fromBalance, false);
}

export default {
  start(ctx) {
    kv = ctx.hostServices.async.kv;
    users = kv.bucket(ctx.env.USER_BUCKET ?? "user");
    tableKey = ctx.env.TABLE_KEY || null;
    ctx.subscribe("poker.bank.balance", answering(balance), { queue: "bank" });
    ctx.subscribe("poker.bank.transfer", answering(transfer), { queue: "bank" });
    // Not in the queue group: every replica answers with its own counters.
    ctx.subscribe("poker.bank.stats", () => ({ workload: ctx.workload.id, ...stats }));
  },
  stop() {},
};
