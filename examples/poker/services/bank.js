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

// ---- shared helpers (the same block is in user.js and bank.js: a workload is one file) ----
const enc = new TextEncoder();
const dec = new TextDecoder();
const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

/** SHA-256 of bytes (or a string, as UTF-8): 32 bytes. The isolate has no crypto.subtle. */
function sha256(input) {
  const data = typeof input === "string" ? enc.encode(input) : input;
  const len = data.length;
  const padded = new Uint8Array(((len + 9 + 63) >> 6) << 6);
  padded.set(data);
  padded[len] = 0x80;
  const bits = len * 8;
  const view = new DataView(padded.buffer);
  view.setUint32(padded.length - 8, Math.floor(bits / 0x100000000));
  view.setUint32(padded.length - 4, bits >>> 0);
  const h = new Uint32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
  const w = new Uint32Array(64);
  for (let off = 0; off < padded.length; off += 64) {
    for (let i = 0; i < 16; i++) w[i] = view.getUint32(off + i * 4);
    for (let i = 16; i < 64; i++) {
      const a = w[i - 15], b = w[i - 2];
      const s0 = ((a >>> 7) | (a << 25)) ^ ((a >>> 18) | (a << 14)) ^ (a >>> 3);
      const s1 = ((b >>> 17) | (b << 15)) ^ ((b >>> 19) | (b << 13)) ^ (b >>> 10);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) | 0;
    }
    let [a, b, c, d, e, f, g, hh] = h;
    for (let i = 0; i < 64; i++) {
      const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
      const t1 = (hh + S1 + ((e & f) ^ (~e & g)) + K[i] + w[i]) | 0;
      const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
      const t2 = (S0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
      hh = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
  }
  const out = new Uint8Array(32);
  const ov = new DataView(out.buffer);
  for (let i = 0; i < 8; i++) ov.setUint32(i * 4, h[i]);
  return out;
}

function concatBytes(a, b) {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** HMAC-SHA-256 (RFC 2104). */
function hmacSha256(key, message) {
  let k = typeof key === "string" ? enc.encode(key) : key;
  if (k.length > 64) k = sha256(k);
  const ipad = new Uint8Array(64), opad = new Uint8Array(64);
  for (let i = 0; i < 64; i++) {
    ipad[i] = (k[i] ?? 0) ^ 0x36;
    opad[i] = (k[i] ?? 0) ^ 0x5c;
  }
  const m = typeof message === "string" ? enc.encode(message) : message;
  return sha256(concatBytes(opad, sha256(concatBytes(ipad, m))));
}

function hex(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i++) s += (bytes[i] < 16 ? "0" : "") + bytes[i].toString(16);
  return s;
}

/** Compares two strings without stopping at the first difference. */
function sameString(a, b) {
  if (typeof a !== "string" || typeof b !== "string" || a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return d === 0;
}


/** A KV entry's parsed JSON value with its revision (for kv.update), or null when the key is missing. */
async function readEntry(kv, key) {
  const e = await kv.getEntry(key);
  if (e === null) return null;
  return { value: JSON.parse(dec.decode(e.value)), revision: e.revision };
}

function parseRequest(payload) {
  let req;
  try {
    req = JSON.parse(dec.decode(payload));
  } catch {
    throw new Refusal("the request is not JSON");
  }
  if (req === null || typeof req !== "object" || Array.isArray(req)) throw new Refusal("the request must be a JSON object");
  return req;
}

class Refusal extends Error {}

/** A handler that answers {"error": "..."} (a JSON body, not an error reply) when it refuses. */
function answering(fn) {
  return async (subject, payload) => {
    try {
      return await fn(payload);
    } catch (e) {
      if (e instanceof Refusal) return { error: e.message };
      console.log(`[${subject}] ${e && e.stack ? e.stack : e}`);
      return { error: `internal error${e && e.code ? ` (${e.code})` : ""}: try again` };
    }
  };
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
// ---- end of shared helpers ----

const USER_ID = /^[0-9a-f]{24}$/;
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
