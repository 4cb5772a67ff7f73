// The code that runs inside every workload context before the workload's own code: console,
// TextEncoder/TextDecoder (UTF-8), `env`, `hostServices`, and the batch runner that calls the
// workload's function and turns each result into reply bytes.
//
// BOOTSTRAP_SOURCE is a script whose completion value is `setup(emitLog, hostRef, envIn, limits,
// emitResult, shared, seed)`; it is compiled once per isolate and run in each new context. setup installs the globals
// and returns `makeRunner(handler)`, which returns `runBatch(batchId, [subjects, payloads, expiries, base])`.
// None of these functions is reachable from workload code: only the runtime host holds references to them.
//   emitLog     a plain function (an ivm.Callback, fire-and-forget) taking (stream, line)
//   hostRef     an ivm.Reference to the host-call function; captured here only, never stored on a global
//               or passed to workload code, so the workload cannot springboard into the host isolate
//   envIn       the workload's environment (a copy)
//   limits      GuestLimits (below)
//   emitResult  a plain function (ivm.Callback, fire-and-forget) taking (batchId, index, kind, value), for
//               a result too large for the shared area: value is the reply (string, Uint8Array or
//               undefined) when kind is ok, the error message otherwise (RESULT_KIND); index -1 asks the
//               host to read the results ready in the shared area now
//   seed        32 bytes from the runtime host's CSPRNG for this context's crypto.getRandomValues
//               (crypto-bootstrap.ts)
//   shared      the isolate's result channel, a SharedArrayBuffer (layout in result-channel.ts): the
//               batch runner writes each result there, when each trigger started, and whose code runs
//
// What the workload may not do (see primordials.ts and the tests in test/hostile-js.test.ts):
// - reach the shared result area or the host references: the bootstrap calls only built-ins captured
//   before workload code runs, uncurried, so replacing a prototype method, a getter or a global (even
//   Function.prototype.call, Promise[Symbol.species] or Symbol.hasInstance) changes nothing here;
// - copy anything unbounded out of the isolate: a reply is refused (413) by its length before it is
//   encoded or copied, JSON is counted while it is built, and error messages, console lines and
//   host-call arguments are cut or refused at their limits (GuestLimits) inside the isolate.

import { MAX_HEADER_VALUE_CHARS } from "../../host/host-bridge.js";
import { hostValueLimit } from "../../../protocol/host-services.js";
import { TRIGGER_LOG_LIMITS } from "../../host/trigger-log-limits.js";
import { MAX_ERROR_BODY_CHARS } from "../../../protocol/errors.js";
import { PRIMORDIALS_SOURCE } from "./primordials.js";
import { HTTP_GUEST_SOURCE } from "./http-bootstrap.js";
import { HTTP_SUBJECT_PREFIX } from "../../../protocol/http.js";
import { SERVICE_RUNNER_SOURCE } from "./service-bootstrap.js";
import { CRYPTO_GUEST_SOURCE } from "./crypto-bootstrap.js";
import { DATA_BYTES, DATA_OFFSET, ENTRY, FLUSH_AFTER_MS, HEAD, MAX_RESULTS, RESULT_KIND, TABLE_OFFSET } from "../host/result-channel.js";

/** What the bootstrap bounds inside the isolate, per trigger or per value. */
export interface GuestLimits {
  maxLogLines: number;
  /** Characters of one console line; longer lines are cut. */
  maxLogChars: number;
  /** Characters of an error message (a throw, a rejection); longer ones are cut. */
  maxErrorChars: number;
  /** Bytes of one reply (the NATS server's max_payload); longer replies answer 413. */
  maxReplyBytes: number;
  /** Bytes of one value handed to a host service, and characters of one of its names (key, subject...). */
  maxHostValueBytes: number;
  maxHostNameChars: number;
}

/** The limits for a NATS server whose max_payload is `maxPayload`. */
export function guestLimits(maxPayload: number): GuestLimits {
  return {
    ...TRIGGER_LOG_LIMITS,
    // What an error reply carries at most anyway: a longer message would only be cut after its copy out.
    maxErrorChars: MAX_ERROR_BODY_CHARS,
    maxReplyBytes: maxPayload,
    maxHostValueBytes: hostValueLimit(maxPayload),
    maxHostNameChars: MAX_HEADER_VALUE_CHARS,
  };
}

// Latin-1 only, comments included: one character past U+00FF makes V8 keep the whole source as a
// two-byte string, 70 KB more in every isolate (test/runtime-js.test.ts checks).
export const BOOTSTRAP_SOURCE = String.raw`
(function setup(emitLog, hostRef, envIn, limits, emitResult, shared, seed) {
"use strict";
${PRIMORDIALS_SOURCE}
const G = globalThis;
const applySyncPromise = hostRef.applySyncPromise;
const applyAsync = hostRef.apply;
const MAX_LOG_LINES = limits.maxLogLines;
const MAX_LOG_CHARS = limits.maxLogChars;
const MAX_ERROR_CHARS = limits.maxErrorChars;
const MAX_REPLY_BYTES = limits.maxReplyBytes;
const MAX_HOST_VALUE_BYTES = limits.maxHostValueBytes;
const MAX_HOST_NAME_CHARS = limits.maxHostNameChars;

const SYNC_CALL = frozenRecord({ arguments: frozenRecord({ copy: true }) });
const ASYNC_CALL = frozenRecord({ arguments: frozenRecord({ copy: true }), result: frozenRecord({ promise: true }) });
const EMPTY = new U8(0);

// ---- UTF-8 -------------------------------------------------------------------------------------

function utf8Size(str) {
  const n = str.length;
  let size = 0;
  for (let i = 0; i < n; i++) {
    const c = StringCharCodeAt(str, i);
    if (c < 0x80) size += 1;
    else if (c < 0x800) size += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < n && (StringCharCodeAt(str, i + 1) & 0xfc00) === 0xdc00) { size += 4; i++; }
    else size += 3;
  }
  return size;
}

function utf8Encode(input) {
  const str = StringCtor(input);
  const out = new U8(utf8Size(str));
  utf8EncodeInto(str, out, 0);
  return out;
}

// Writes str's UTF-8 bytes into out from p (the caller made room: utf8Size(str) bytes).
function utf8EncodeInto(str, out, p) {
  const n = str.length;
  for (let i = 0; i < n; i++) {
    let c = StringCharCodeAt(str, i);
    if (c < 0x80) { out[p++] = c; continue; }
    if (c < 0x800) { out[p++] = 0xc0 | (c >> 6); out[p++] = 0x80 | (c & 63); continue; }
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < n) {
      const d = StringCharCodeAt(str, i + 1);
      if ((d & 0xfc00) === 0xdc00) {
        const cp = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
        out[p++] = 0xf0 | (cp >> 18);
        out[p++] = 0x80 | ((cp >> 12) & 63);
        out[p++] = 0x80 | ((cp >> 6) & 63);
        out[p++] = 0x80 | (cp & 63);
        i++;
        continue;
      }
    }
    if (c >= 0xd800 && c <= 0xdfff) c = 0xfffd;
    out[p++] = 0xe0 | (c >> 12);
    out[p++] = 0x80 | ((c >> 6) & 63);
    out[p++] = 0x80 | (c & 63);
  }
}

function isCont(b) { return (b & 0xc0) === 0x80; }

// Returns the decoded string; sets decodeErrors when a replacement character was produced.
let decodeErrors = false;
function utf8Decode(input, skipBom) {
  const u8 = toBytes(input, Infinity);
  const n = TypedArrayLength(u8);
  let i = 0;
  if (skipBom && n >= 3 && u8[0] === 0xef && u8[1] === 0xbb && u8[2] === 0xbf) i = 3;
  let out = "";
  const units = ObjectSetPrototypeOf([], null);
  decodeErrors = false;
  while (i < n) {
    const b = u8[i];
    let cp;
    if (b < 0x80) { cp = b; i += 1; }
    else if (b >= 0xc2 && b <= 0xdf && i + 1 < n && isCont(u8[i + 1])) {
      cp = ((b & 31) << 6) | (u8[i + 1] & 63); i += 2;
    } else if (b >= 0xe0 && b <= 0xef && i + 2 < n && isCont(u8[i + 1]) && isCont(u8[i + 2])) {
      cp = ((b & 15) << 12) | ((u8[i + 1] & 63) << 6) | (u8[i + 2] & 63);
      if (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff)) { cp = 0xfffd; decodeErrors = true; i += 1; } else i += 3;
    } else if (b >= 0xf0 && b <= 0xf4 && i + 3 < n && isCont(u8[i + 1]) && isCont(u8[i + 2]) && isCont(u8[i + 3])) {
      cp = ((b & 7) << 18) | ((u8[i + 1] & 63) << 12) | ((u8[i + 2] & 63) << 6) | (u8[i + 3] & 63);
      if (cp < 0x10000 || cp > 0x10ffff) { cp = 0xfffd; decodeErrors = true; i += 1; } else i += 4;
    } else { cp = 0xfffd; decodeErrors = true; i += 1; }
    if (cp > 0xffff) {
      cp -= 0x10000;
      units[units.length] = 0xd800 + (cp >> 10);
      units[units.length] = 0xdc00 + (cp & 1023);
    } else {
      units[units.length] = cp;
    }
    if (units.length >= 8192) { out += ReflectApply(StringFromCharCode, null, units); units.length = 0; }
  }
  if (units.length > 0) out += ReflectApply(StringFromCharCode, null, units);
  return out;
}

class TextEncoder {
  get encoding() { return "utf-8"; }
  encode(input) { return utf8Encode(input === undefined ? "" : input); }
}

class TextDecoder {
  #fatal;
  #ignoreBOM;
  constructor(label, options) {
    const l = label === undefined ? "utf-8" : StringToLowerCase(StringTrim(StringCtor(label)));
    if (l !== "utf-8" && l !== "utf8" && l !== "unicode-1-1-utf-8") {
      throw new RangeErrorCtor("TextDecoder: only utf-8 is supported, not " + l);
    }
    this.#fatal = !!(options && options.fatal);
    this.#ignoreBOM = !!(options && options.ignoreBOM);
  }
  get encoding() { return "utf-8"; }
  get fatal() { return this.#fatal; }
  get ignoreBOM() { return this.#ignoreBOM; }
  decode(input) {
    if (input === undefined) return "";
    const s = utf8Decode(input, !this.#ignoreBOM);
    if (this.#fatal && decodeErrors) throw new TypeErrorCtor("The encoded data was not valid utf-8");
    return s;
  }
}

${HTTP_GUEST_SOURCE}

// ---- bytes in and out --------------------------------------------------------------------------

// Thrown when a value would be larger than its limit; code "too_large", as the host services say it.
// Known by identity (a reply refused so answers 413), not by a code a workload could set on its own errors.
const refusals = new WeakSetCtor();
function tooLarge(what, size, max) {
  const e = new ErrorCtor(what + " too large: " + size + " bytes or more, the limit is " + max);
  e.code = "too_large";
  WeakSetAdd(refusals, e);
  return e;
}
function isTooLarge(e) {
  return e !== null && typeof e === "object" && WeakSetHas(refusals, e);
}

// JSON text of v, or undefined (as JSON.stringify), thrown as tooLarge as soon as the text would pass
// maxChars: counted while it is built, so the text of a huge string or structure is never built.
// Each value is counted at most as long as its text (so a text that fits is never refused): a string
// by its length and quotes, anything else as one character, an object member also by its quoted key,
// colon and comma (a member JSON leaves out, not at all), an array element also by its comma. A boxed
// string is turned into its string here (as JSON would, through its own toString) and counted so.
function boundedJSON(v, maxChars, what) {
  let left = maxChars;
  let root = true;
  function count(key, value) {
    if (value !== null && typeof value === "object" && isStringObject(value)) value = StringCtor(value);
    const type = typeof value;
    if (root) root = false;
    else if (ArrayIsArray(this)) left -= 1;
    else if (value === undefined || type === "function" || type === "symbol") return value;
    else left -= key.length + 4;
    left -= type === "string" ? value.length + 2 : 1;
    if (left < 0) throw tooLarge(what, maxChars + 1, maxChars);
    return value;
  }
  const s = JSONStringify(v, count);
  if (s !== undefined && s.length > maxChars) throw tooLarge(what, s.length, maxChars);
  return s;
}

// A string's UTF-8 bytes, refused by its length before they are made (a UTF-16 unit is at least a byte).
function boundedUtf8(str, max, what) {
  if (str.length > max) throw tooLarge(what, str.length, max);
  const out = utf8Encode(str);
  if (TypedArrayByteLength(out) > max) throw tooLarge(what, TypedArrayByteLength(out), max);
  return out;
}

// A value the workload hands to a host service: bytes as they are, strings as UTF-8, anything else as
// JSON; at most max bytes.
function toBytes(v, max) {
  if (v === undefined) return EMPTY;
  if (typeof v === "string") return boundedUtf8(v, max, "value");
  const bytes = bytesOf(v);
  if (bytes !== undefined) {
    if (TypedArrayByteLength(bytes) > max) throw tooLarge("value", TypedArrayByteLength(bytes), max);
    return bytes;
  }
  const s = boundedJSON(v, max, "value");
  if (s === undefined) throw new TypeErrorCtor("value cannot be encoded: not JSON-serializable");
  return boundedUtf8(s, max, "value");
}

// Bytes for the copy out of the isolate, which takes a view's whole backing buffer: the view itself when
// it covers all of a plain ArrayBuffer, else a copy of just its bytes (a part of a buffer, a
// SharedArrayBuffer, whose byteLength getter throws here, or a resizable one).
function ownBytes(u8) {
  const buffer = TypedArrayBuffer(u8);
  try {
    if (!ArrayBufferResizable(buffer) && TypedArrayByteOffset(u8) === 0 && TypedArrayByteLength(u8) === ArrayBufferByteLength(buffer)) return u8;
  } catch (e) {
    // not a plain ArrayBuffer
  }
  const out = new U8(TypedArrayByteLength(u8));
  TypedArraySet(out, u8, 0);
  return out;
}

// A value for a host service: at most the bytes one call carries.
function hostValue(v) {
  return toBytes(v, MAX_HOST_VALUE_BYTES);
}

function decodeJSON(bytes) {
  return JSONParse(utf8Decode(bytes, true));
}

// ---- console -----------------------------------------------------------------------------------

let linesLeft = MAX_LOG_LINES;

// s cut to max characters (through the original slice: a replaced one could hand back all of s).
function cut(s, max, mark) {
  return s.length > max ? StringSlice(s, 0, max) + mark : s;
}

// How console shows a value: at most about MAX_LOG_CHARS of it.
function show(v, nested) {
  switch (typeof v) {
    case "string": return nested ? JSONStringify(cut(v, MAX_LOG_CHARS, "")) : v;
    case "undefined": return "undefined";
    case "bigint": return StringCtor(v) + "n";
    case "symbol": return StringCtor(v);
    case "function": return "[Function " + (v.name || "(anonymous)") + "]";
    case "object": {
      if (v === null) return "null";
      if (v instanceof ErrorCtor) return v.stack ? StringCtor(v.stack) : StringCtor(v);
      if (isTypedArray(v) && TypedArrayTag(v) === "Uint8Array") {
        const n = TypedArrayLength(v);
        const head = ObjectSetPrototypeOf([], null);
        for (let i = 0; i < n && i < 50; i++) ArrayPush(head, StringCtor(v[i]));
        return "Uint8Array(" + n + ") [" + ArrayJoin(head, ", ") + (n > 50 ? ", ..." : "") + "]";
      }
      try {
        const s = boundedJSON(v, MAX_LOG_CHARS, "line");
        return s === undefined ? StringCtor(v) : s;
      } catch (e) {
        if (isTooLarge(e)) return "[object: too large to show]";
        try { return StringCtor(v); } catch (e2) { return "[object]"; }
      }
    }
    default: return StringCtor(v);
  }
}

function format(args) {
  let first = 0;
  let out = "";
  if (typeof args[0] === "string" && StringIndexOf(args[0], "%") !== -1 && args.length > 1) {
    const f = args[0];
    let next = 1;
    for (let i = 0; i < f.length && out.length <= MAX_LOG_CHARS; i++) {
      const c = f[i];
      if (c !== "%" || i + 1 >= f.length) { out += c; continue; }
      const d = f[i + 1];
      if (d === "%") { out += "%"; i++; continue; }
      if (next >= args.length || StringIndexOf("sdifjoOc", d) === -1) { out += c; continue; }
      const a = args[next++];
      i++;
      if (d === "s") out += typeof a === "string" ? a : show(a, true);
      else if (d === "d" || d === "i") out += typeof a === "bigint" ? StringCtor(a) + "n" : StringCtor(d === "i" ? ParseInt(a) : NumberCtor(a));
      else if (d === "f") out += StringCtor(ParseFloat(a));
      else if (d === "c") { /* CSS: ignored */ }
      else out += show(a, true);
    }
    first = next;
  } else if (args.length > 0) {
    out = show(args[0], false);
    first = 1;
  }
  for (let i = first; i < args.length && out.length <= MAX_LOG_CHARS; i++) out += " " + show(args[i], false);
  return out;
}

function writer(stream) {
  return function (...args) {
    if (linesLeft <= 0) return;
    linesLeft--;
    let line;
    try { line = format(args); } catch (e) { line = "[unprintable]"; }
    if (typeof line !== "string") line = "[unprintable]";
    line = cut(line, MAX_LOG_CHARS, " [truncated]");
    emitLog(stream, line);
    if (linesLeft === 0) emitLog("stderr", "[nex] console output limit reached; further lines of this trigger are dropped");
  };
}

const consoleShim = ObjectFreeze({
  log: writer("stdout"),
  info: writer("stdout"),
  debug: writer("stdout"),
  trace: writer("stdout"),
  warn: writer("stderr"),
  error: writer("stderr"),
  assert(cond, ...rest) { if (!cond) consoleShim.error("Assertion failed" + (rest.length ? ": " + format(rest) : "")); },
});

// ---- host services -----------------------------------------------------------------------------

// Host errors with code "unavailable" (JetStream briefly without a leader): one that escapes the function
// answers 503, not 500. Known by identity, as refusals are, not by a code a workload could set itself.
const unavailables = new WeakSetCtor();
function isUnavailable(e) {
  return e !== null && typeof e === "object" && WeakSetHas(unavailables, e);
}

// The host's answer: its fields, or the error it carries thrown as an Error with .code.
function checked(r) {
  if (r === null || typeof r !== "object") throw withCode(undefined);
  if (!r.ok) {
    const e = new ErrorCtor(StringCtor(r.message));
    e.code = StringCtor(r.code);
    if (e.code === "unavailable") WeakSetAdd(unavailables, e);
    throw e;
  }
  return r;
}

// The call itself failed before the host answered (isolated-vm's own time limit ended the wait, say):
// still an Error with a code, as the API promises.
function withCode(e) {
  if (e !== null && typeof e === "object" && typeof e.code === "string") return e;
  const err = new ErrorCtor(e !== null && typeof e === "object" && e.message ? StringCtor(e.message) : "host service call failed");
  err.code = err.message === "Script execution timed out." ? "timeout" : "internal";
  return err;
}

function nullIfMissing(e) {
  if (e && e.code === "not_found") return null;
  throw e;
}

// Two faces of the same calls. call(service, method, headers, body, then, missingIsNull) hands the
// answer to then(); missingIsNull turns a not_found error into null.
// The sync face parks the isolate until the answer is in (applySyncPromise): simple, and what the
// original Nex API does, but one isolate then waits for each call in turn. The async face returns a
// promise, so other triggers of the batch run while a call is out.
const syncFace = {
  call(service, method, headers, body, then, missingIsNull) {
    let r;
    try {
      r = checked(ReflectApply(applySyncPromise, hostRef, [undefined, [service, method, headers, ownBytes(body)], SYNC_CALL]));
    } catch (e) {
      if (missingIsNull) return nullIfMissing(withCode(e));
      throw withCode(e);
    }
    return then(r);
  },
  method(fn) { return fn; },
};
const asyncFace = {
  call(service, method, headers, body, then, missingIsNull) {
    const p = ReflectApply(applyAsync, hostRef, [undefined, [service, method, headers, ownBytes(body)], ASYNC_CALL]);
    const answer = PromiseThen(ownPromise(p), checked, (e) => { throw withCode(e); });
    return PromiseThen(ownPromise(answer), then, missingIsNull ? nullIfMissing : undefined);
  },
  // A bad argument rejects the promise, as any other failure does, instead of throwing.
  method(fn) {
    return function (...args) {
      try { return ReflectApply(fn, this, args); } catch (e) { return ReflectApply(PromiseReject, PromiseCtor, [e]); }
    };
  },
};

// The methods of a service object, adapted to the face, frozen; "extra" is added as it is.
function faced(face, methods, extra) {
  const out = ObjectCreate(null);
  const names = ObjectKeys(methods);
  for (let i = 0; i < names.length; i++) out[names[i]] = face.method(methods[names[i]]);
  if (extra) ObjectAssign(out, extra);
  return ObjectFreeze(out);
}

// A name for a host call (key, subject, bucket...): a string of at most MAX_HOST_NAME_CHARS.
function str(name, v) {
  const s = typeof v === "number" || typeof v === "bigint" ? StringCtor(v) : v;
  if (typeof s !== "string") throw new TypeErrorCtor(name + " must be a string");
  if (s.length > MAX_HOST_NAME_CHARS) {
    const e = new RangeErrorCtor(name + " is longer than " + MAX_HOST_NAME_CHARS + " characters");
    e.code = "bad_request";
    throw e;
  }
  return s;
}

// Headers of a host call: no prototype, so a setter a workload put on Object.prototype sees none of them.
function headers(fields) {
  return ObjectAssign(ObjectCreate(null), fields);
}

function jsonBody(r) {
  return TypedArrayLength(r.body) === 0 ? undefined : decodeJSON(r.body);
}
const bodyOf = (r) => r.body;
const stringOf = (r) => utf8Decode(r.body, true);
const jsonOf = (r) => decodeJSON(r.body);
const listOf = (r) => { const j = jsonBody(r); return ArrayIsArray(j) ? j : []; };
const nothing = () => undefined;
// kv.getEntry: the value with the revision the node sent along (Nex-Revision), for kv.update.
const entryOf = (r) => ({ value: r.body, revision: revisionOf(r) });

function revisionOf(r) {
  const h = r.headers["Nex-Revision"];
  if (h !== undefined) return NumberCtor(h);
  const j = jsonBody(r);
  if (typeof j === "number") return j;
  if (j !== null && typeof j === "object") {
    if (typeof j.revision === "number") return j.revision;
    if (typeof j.seq === "number") return j.seq;
  }
  return j;
}

// Headers for a call on a named bucket (undefined: the workload's own bucket, as the node chooses).
function on(bucket, h) {
  if (bucket !== undefined) h["Nex-Bucket"] = bucket;
  return h;
}

function makeKv(face, bucket) {
  const c = face.call;
  const k = (key) => on(bucket, headers({ "Nex-Key": str("key", key) }));
  const set = (key, value) => c("kv", "set", k(key), hostValue(value), revisionOf);
  return faced(face, {
    get: (key) => c("kv", "get", k(key), EMPTY, bodyOf, true),
    getString: (key) => c("kv", "get", k(key), EMPTY, stringOf, true),
    getJSON: (key) => c("kv", "get", k(key), EMPTY, jsonOf, true),
    getEntry: (key) => c("kv", "get", k(key), EMPTY, entryOf, true),
    set,
    put: set,
    create: (key, value) => c("kv", "create", k(key), hostValue(value), revisionOf),
    update(key, value, revision) {
      const h = k(key);
      h["Nex-Revision"] = str("revision", revision);
      return c("kv", "update", h, hostValue(value), revisionOf);
    },
    delete: (key) => c("kv", "delete", k(key), EMPTY, nothing),
    purge: (key) => c("kv", "purge", k(key), EMPTY, nothing),
    keys: (filter) => c("kv", "keys", on(bucket, headers(filter === undefined ? {} : { "Nex-Filter": str("filter", filter) })), EMPTY, listOf),
    history: (key) => c("kv", "history", k(key), EMPTY, listOf),
  }, bucket === undefined ? { bucket: (name) => makeKv(face, str("bucket", name)) } : undefined);
}

function timeoutHeader(h, timeoutMs) {
  if (timeoutMs !== undefined && timeoutMs !== null) h["Nex-Timeout-Ms"] = str("timeoutMs", timeoutMs);
  return h;
}

function makeMessaging(face) {
  const c = face.call;
  const req = (subject, timeoutMs) => timeoutHeader(headers({ "Nex-Subject": str("subject", subject) }), timeoutMs);
  return faced(face, {
    publish: (subject, data) => c("messaging", "publish", headers({ "Nex-Subject": str("subject", subject) }), hostValue(data), nothing),
    request: (subject, data, timeoutMs) => c("messaging", "request", req(subject, timeoutMs), hostValue(data), bodyOf),
    requestString: (subject, data, timeoutMs) => c("messaging", "request", req(subject, timeoutMs), hostValue(data), stringOf),
    requestJSON: (subject, data, timeoutMs) => c("messaging", "request", req(subject, timeoutMs), hostValue(data), jsonOf),
    requestMany(subject, data, options) {
      const h = req(subject, options && options.timeoutMs);
      if (options && options.maxMessages !== undefined) h["Nex-Max-Messages"] = str("maxMessages", options.maxMessages);
      return c("messaging", "requestMany", h, hostValue(data), (r) => (ArrayIsArray(r.list) ? r.list : []));
    },
  });
}

function makeObjectStore(face, bucket) {
  const c = face.call;
  const n = (name) => on(bucket, headers({ "Nex-Key": str("name", name) }));
  return faced(face, {
    get: (name) => c("objectStore", "get", n(name), EMPTY, bodyOf, true),
    getString: (name) => c("objectStore", "get", n(name), EMPTY, stringOf, true),
    getJSON: (name) => c("objectStore", "get", n(name), EMPTY, jsonOf, true),
    put: (name, data) => c("objectStore", "put", n(name), hostValue(data), jsonBody),
    info: (name) => c("objectStore", "info", n(name), EMPTY, (r) => jsonBody(r) ?? null, true),
    delete: (name) => c("objectStore", "delete", n(name), EMPTY, nothing),
    list: () => c("objectStore", "list", on(bucket, headers({})), EMPTY, listOf),
  }, bucket === undefined ? { bucket: (name) => makeObjectStore(face, str("bucket", name)) } : undefined);
}

// Children of a workload deployed with a grant (nex run --allow-deploy): the node checks the grant.
function makeWorkloads(face) {
  const c = face.call;
  return faced(face, {
    deploy: (spec) => c("workloads", "deploy", headers({}), hostValue(spec), jsonOf),
    undeploy: (id) => c("workloads", "undeploy", headers({ "Nex-Key": str("id", id) }), EMPTY, nothing),
    list: () => c("workloads", "list", headers({}), EMPTY, listOf),
  });
}

const env = ObjectFreeze(ObjectAssign({}, envIn));

const hostServices = ObjectFreeze({
  kv: makeKv(syncFace, undefined),
  messaging: makeMessaging(syncFace),
  objectStore: makeObjectStore(syncFace, undefined),
  workloads: makeWorkloads(syncFace),
  // The same services, each method returning a promise: for async functions, whose triggers then
  // overlap their host calls instead of taking turns.
  async: ObjectFreeze({
    kv: makeKv(asyncFace, undefined),
    messaging: makeMessaging(asyncFace),
    objectStore: makeObjectStore(asyncFace, undefined),
    workloads: makeWorkloads(asyncFace),
  }),
  env,
  encode: (v) => toBytes(v, Infinity),
  decode(bytes) { return utf8Decode(bytes, true); },
  decodeJSON,
});

function define(name, value) {
  ObjectDefineProperty(G, name, { value, writable: true, configurable: true, enumerable: false });
}
define("console", consoleShim);
define("TextEncoder", TextEncoder);
define("TextDecoder", TextDecoder);
define("hostServices", hostServices);
define("env", env);
define("Headers", Headers);
define("URL", URL);
define("URLSearchParams", URLSearchParams);
define("Request", Request);
define("Response", Response);
${CRYPTO_GUEST_SOURCE}

// ---- the batch runner --------------------------------------------------------------------------

// The shared result area. Only the runner below touches these views, through Atomics, indexing and the
// captured TypedArraySet, so no workload code is ever handed one (see primordials.ts).
const head = new I32(shared, 0, 4);
const table = new I32(shared, ${TABLE_OFFSET}, ${MAX_RESULTS} * ${ENTRY.size});
const data = new U8(shared, ${DATA_OFFSET}, ${DATA_BYTES});

// A failure's message, cut to MAX_ERROR_CHARS: an Error's message, a thrown string, or the value shown.
function errorMessage(e) {
  let m;
  try {
    m = e instanceof ErrorCtor ? StringCtor(e.message) : typeof e === "string" ? e : show(e, true);
  } catch (e2) {
    m = "[unprintable error]";
  }
  return cut(m, MAX_ERROR_CHARS, " [truncated]");
}

// A reply ready to record: undefined (empty), a string (encoded as it is recorded) or a Uint8Array over
// the bytes returned; anything else as JSON. Refused (tooLarge) by its length before it is copied.
function encodeResult(r) {
  if (r === undefined) return undefined;
  if (typeof r === "string") {
    if (r.length > MAX_REPLY_BYTES) throw tooLarge("reply", r.length, MAX_REPLY_BYTES);
    return r;
  }
  const bytes = bytesOf(r);
  if (bytes !== undefined) {
    if (TypedArrayByteLength(bytes) > MAX_REPLY_BYTES) throw tooLarge("reply", TypedArrayByteLength(bytes), MAX_REPLY_BYTES);
    return bytes;
  }
  try {
    return boundedJSON(r, MAX_REPLY_BYTES, "reply");
  } catch (e) {
    if (isTooLarge(e)) throw e;
    throw new TypeErrorCtor("the function's return value is not JSON-serializable: " + errorMessage(e));
  }
}

// ---- services (service-bootstrap.ts): makeRunner(module, info, control, emitReply) ----
${SERVICE_RUNNER_SOURCE}

return function makeRunner(handler, serviceInfo, serviceControl, serviceReply) {
  if (serviceControl !== undefined) return makeServiceRunner(handler, serviceInfo, serviceControl, serviceReply);
  // A Workers-style module (export default { fetch(request, env, ctx) }), or a function (subject, payload).
  let fetchFn;
  if (typeof handler !== "function") {
    fetchFn = handler !== null && typeof handler === "object" ? handler.fetch : undefined;
    if (typeof fetchFn !== "function") throw new TypeErrorCtor("a workload must be a function (subject, payload) => result, or export default { fetch(request, env, ctx) }");
  }

  // Starts the triggers of a batch one after the other. A synchronous trigger runs to its end before the
  // next starts; an async one runs until it first awaits, and the next starts while it waits, so async
  // triggers overlap their host calls. Each result goes into the shared area (or, if too large, by
  // emitResult) as soon as it is known. Returns a promise, settled when every trigger has its result,
  // only if some trigger was still pending when the last one had started.
  // triggers: [subjects, payloads, expiries (epoch ms), base (epoch ms: start times count from it)]
  return function runBatch(batchId, triggers) {
    const subjects = triggers[0];
    const payloads = triggers[1];
    const expiries = triggers[2];
    const base = triggers[3];
    const n = subjects.length;
    // Which triggers of this batch came over HTTP: their results go back as reply frames.
    const httpTrigger = nullArray();
    let used = 0;
    let flushedAt = DateNow();
    let starting = true;
    let recorded = 0;
    let pending = 0;
    let allDone;
    for (let k = 0; k < n && k < ${MAX_RESULTS}; k++) {
      AtomicsStore(table, k * ${ENTRY.size} + ${ENTRY.kind}, ${RESULT_KIND.none});
      AtomicsStore(table, k * ${ENTRY.size} + ${ENTRY.started}, 0);
    }
    AtomicsStore(head, ${HEAD.running}, -1);
    AtomicsStore(head, ${HEAD.batch}, batchId);

    // Asks the host to read the results, unless it has been asked and not read yet.
    function askCollect() {
      if (AtomicsCompareExchange(head, ${HEAD.collectAsked}, 0, 1) === 0) emitResult(batchId, -1, ${RESULT_KIND.none}, undefined);
    }

    // Writes result k: kind and bytes (a Uint8Array, a string as UTF-8, or undefined for none), each
    // bounded already (encodeResult, errorMessage).
    function record(k, kind, value) {
      recorded++;
      const isString = typeof value === "string";
      const size = value === undefined ? 0 : isString ? (value.length <= 0x3fff ? utf8Size(value) : -1) : TypedArrayByteLength(value);
      const at = k * ${ENTRY.size};
      if (k < ${MAX_RESULTS} && size >= 0 && used + size <= ${DATA_BYTES}) {
        if (isString) utf8EncodeInto(value, data, used);
        else if (size > 0) TypedArraySet(data, value, used);
        table[at + ${ENTRY.offset}] = used;
        table[at + ${ENTRY.length}] = size;
        used += size;
        AtomicsStore(table, at + ${ENTRY.kind}, kind);
      } else {
        if (k < ${MAX_RESULTS}) AtomicsStore(table, at + ${ENTRY.kind}, ${RESULT_KIND.byCallback});
        emitResult(batchId, k, kind, isString || value === undefined ? value : ownBytes(value));
      }
      if (!starting) {
        // A late async result: the host reads it now, not when the whole batch is done.
        askCollect();
        return;
      }
      // Slow triggers: do not hold a result back for long behind the rest of the batch.
      const now = DateNow();
      if (now - flushedAt >= ${FLUSH_AFTER_MS}) {
        flushedAt = now;
        askCollect();
      }
    }
    // Encoding a result may run workload code (toJSON, getters, Proxy traps): callers mark the trigger
    // as running meanwhile, so a stop then blames it.
    function ok(k, r) {
      let enc;
      try {
        enc = httpTrigger[k] ? httpReplyFrame(r) : encodeResult(fetchFn !== undefined ? natsReplyOf(r) : r);
      } catch (e) {
        record(k, isTooLarge(e) ? ${RESULT_KIND.tooLarge} : isUnavailable(e) ? ${RESULT_KIND.unavailable} : ${RESULT_KIND.error}, errorMessage(e));
        return;
      }
      record(k, ${RESULT_KIND.ok}, enc);
    }
    function fail(k, e) {
      record(k, isUnavailable(e) ? ${RESULT_KIND.unavailable} : ${RESULT_KIND.error}, errorMessage(e));
    }
    // Trigger k's result once its promise (or thenable) settles; the batch ends when all have.
    async function watch(k, r) {
      let settledOk = true;
      let v;
      try { v = await r; } catch (e) { settledOk = false; v = e; }
      AtomicsStore(head, ${HEAD.running}, k);
      try {
        if (settledOk) ok(k, v);
        else fail(k, v);
      } finally {
        AtomicsStore(head, ${HEAD.running}, -1);
        if (--pending === 0 && allDone !== undefined) allDone(undefined);
      }
    }
    // Trigger k's synchronous part: the handler call, and its result if it is not a promise.
    function start(k) {
      let r;
      let thenable;
      try {
        const subject = subjects[k];
        const http = StringSlice(subject, 0, ${HTTP_SUBJECT_PREFIX.length}) === "${HTTP_SUBJECT_PREFIX}";
        httpTrigger[k] = http;
        if (http) {
          const h = httpRequestFrom(payloads[k]);
          r = fetchFn !== undefined
            ? ReflectApply(fetchFn, handler, [h.request, env, FETCH_CTX])
            : ReflectApply(handler, ObjectCreate(G, { request: { value: h.request, enumerable: true } }), [subject, h.body]);
        } else {
          r = fetchFn !== undefined ? ReflectApply(fetchFn, handler, [natsRequest(subject, payloads[k]), env, FETCH_CTX]) : ReflectApply(handler, G, [subject, payloads[k]]);
        }
        thenable = r !== null && (typeof r === "object" || typeof r === "function") && typeof r.then === "function";
      } catch (e) {
        fail(k, e);
        return;
      }
      if (!thenable) {
        ok(k, r);
        return;
      }
      pending++;
      watch(k, r);
    }

    for (let k = 0; k < n; k++) {
      const now = DateNow();
      if (k < ${MAX_RESULTS}) AtomicsStore(table, k * ${ENTRY.size} + ${ENTRY.started}, now > base ? now - base + 1 : 1);
      // Waited (in the queue and behind earlier triggers of this batch) past its whole deadline.
      if (now > expiries[k]) { record(k, ${RESULT_KIND.expired}, undefined); continue; }
      linesLeft = MAX_LOG_LINES;
      AtomicsStore(head, ${HEAD.running}, k);
      start(k);
      AtomicsStore(head, ${HEAD.running}, -1);
    }
    starting = false;
    if (pending === 0) return undefined;
    // The results so far should not wait for the pending ones.
    if (recorded > 0) askCollect();
    return ownPromise(new PromiseCtor((resolve) => { allDone = resolve; }));
  };
};
})
`;

