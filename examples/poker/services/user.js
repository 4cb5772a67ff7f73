// The poker demo's user service: `nex run examples/poker/dist/user.js --service --name user` (npm run build:poker).
//
//   poker.user.register {"name": "ann", "box_key"?}  → {"id": "<24 hex>", "name": "ann", "token": "<64 hex>"} (or "token_box" sealed to box_key)
//   poker.user.verify   {"user": "<id>", "token": …} → {"ok": true, "name": "ann"}
//
// A refusal is a JSON body {"error": "..."}. State is in the workload's KV bucket (named after the
// workload, "user"): "name.<hex of the lower-cased name>" → {"id"} claims a name with a KV create, so of
// two racing registrations of one name exactly one wins; "user.<id>" → {"id", "name", "token_hash"}
// holds the SHA-256 of the token, never the token. See examples/poker/README.md ("NATS API: user and bank").

import { enc, fromHex, sealForKey, sha256, hex, sameString, randomBytes, parseRequest, Refusal, answering, USER_ID } from "./lib/common.js";

const NAME = /^[A-Za-z0-9 ._-]{1,24}$/;

let kv;

async function register(payload) {
  const req = parseRequest(payload);
  const name = req.name;
  if (typeof name !== "string" || !NAME.test(name)) {
    throw new Refusal("name must be 1 to 24 characters: letters, digits, space, - _ .");
  }
  if (name.startsWith(" ") || name.endsWith(" ")) throw new Refusal("name may not start or end with a space");
  // Checked before anything is claimed, so a bad key changes nothing.
  if (req.box_key !== undefined && fromHex(req.box_key, 32) === null) throw new Refusal("box_key must be 64 hex digits (an X25519 public key)");
  const id = hex(randomBytes(12));
  const token = hex(randomBytes(32));
  const nameKey = `name.${hex(enc.encode(name.toLowerCase()))}`;
  try {
    await kv.create(nameKey, { id });
  } catch (e) {
    if (e && e.code === "exists") throw new Refusal(`the name ${JSON.stringify(name)} is taken`);
    throw e;
  }
  try {
    await kv.create(`user.${id}`, { id, name, token_hash: hex(sha256(token)) });
  } catch (e) {
    await kv.delete(nameKey).catch(() => {}); // give the name back; the user was not created
    throw e;
  }
  // With a box_key (browsers) the token is sealed to it: other browsers may read this reply (README).
  if (req.box_key !== undefined) return { id, name, token_box: sealForKey(req.box_key, token) };
  return { id, name, token };
}

/** The user's record, or a refusal "unknown user". */
async function userRecord(id) {
  if (typeof id !== "string" || !USER_ID.test(id)) throw new Refusal("unknown user");
  const rec = await kv.getJSON(`user.${id}`);
  if (rec === null) throw new Refusal("unknown user");
  return rec;
}

async function verify(payload) {
  const req = parseRequest(payload);
  const rec = await userRecord(req.user);
  if (typeof req.token !== "string" || !sameString(hex(sha256(req.token)), rec.token_hash)) {
    throw new Refusal("wrong token");
  }
  return { ok: true, name: rec.name };
}

export default {
  start(ctx) {
    kv = ctx.hostServices.async.kv;
    ctx.subscribe("poker.user.register", answering(register), { queue: "user" });
    ctx.subscribe("poker.user.verify", answering(verify), { queue: "user" });
  },
  stop() {},
};
