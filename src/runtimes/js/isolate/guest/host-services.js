// @ts-check
// Host services (hostServices, sync and async faces over hostRef), env, and the globals a workload sees.

// Host errors with code "unavailable" (JetStream briefly without a leader): one that escapes the function
// answers 503, not 500. Known by identity, as refusals are, not by a code a workload could set itself.
const unavailables = new WeakSetCtor();
/**
 * @param {unknown} e
 * @returns {boolean}
 */
function isUnavailable(e) {
  return e !== null && typeof e === "object" && WeakSetHas(unavailables, e);
}

// The host's answer: its fields, or the error it carries thrown as an Error with .code.
/**
 * @param {any} r
 * @returns {HostAnswer}
 */
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
/**
 * @param {any} e
 * @returns {Error}
 */
function withCode(e) {
  if (e !== null && typeof e === "object" && typeof e.code === "string") return e;
  const err = new ErrorCtor(e !== null && typeof e === "object" && e.message ? StringCtor(e.message) : "host service call failed");
  err.code = err.message === "Script execution timed out." ? "timeout" : "internal";
  return err;
}

/**
 * @param {any} e
 * @returns {null}
 */
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
    // Awaitable calls made before this one leave first, as they were made.
    sendOut();
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

// The async face's calls out, by id. Those made in one run of the isolate's code leave together, in one
// hostOut (fire-and-forget) at its next microtask checkpoint, and the host hands the answers of every
// call that ended in one event-loop turn back together (deliverAnswers): a hand-over each way per batch
// of calls instead of an isolated-vm promise settlement, a task on each side, per call.
const callsOut = new MapCtor();
let lastCallId = 0;
// [id, service, method, headers, body, ...] not yet sent (no prototype: no setter of Array.prototype runs).
let outQueue = nullArray();
// When the first call now in outQueue was made.
let queuedAt = 0;
const SENT = ownPromise(new PromiseCtor((resolve) => { resolve(undefined); }));

function sendOut() {
  if (outQueue.length === 0) return;
  const calls = outQueue;
  outQueue = nullArray();
  try {
    hostOut(calls);
  } catch (e) {
    // Nothing of them reached the host: each call fails, as it would had the host refused it.
    const failed = frozenRecord({ ok: false, code: "internal", message: "host call failed: " + errorMessage(e) });
    for (let i = 0; i < calls.length; i += 5) settleCall(calls[i], failed);
  }
}

/**
 * @param {unknown} id
 * @param {unknown} answer
 */
function settleCall(id, answer) {
  const settle = MapGet(callsOut, id);
  if (settle === undefined) return;
  MapDelete(callsOut, id);
  // No prototype: resolving with it must not look up a `then` (or anything else) the workload put on
  // Object.prototype, which could swap in an answer of its choosing.
  if (answer !== null && typeof answer === "object") {
    ObjectSetPrototypeOf(answer, null);
    const h = /** @type {{ headers?: unknown }} */ (answer).headers;
    if (h !== null && typeof h === "object") ObjectSetPrototypeOf(h, null);
  }
  settle(answer);
}

// [id, answer, id, answer, ...] from the host (host-answers.ts); an id that is not out is ignored.
/**
 * @param {unknown[]} answers
 */
function deliverAnswers(answers) {
  for (let i = 0; i + 1 < answers.length; i += 2) settleCall(answers[i], answers[i + 1]);
}

const asyncFace = {
  call(service, method, headers, body, then, missingIsNull) {
    if (MapSize(callsOut) >= MAX_HOST_CALLS_OUT) {
      const e = new ErrorCtor("too many host calls out from this context: at most " + MAX_HOST_CALLS_OUT + " at once");
      e.code = "overloaded";
      throw e;
    }
    // A copy now: the call leaves at the next microtask checkpoint, and the workload's own bytes could
    // change (or be detached) by then.
    const bytes = copyOfBytes(body);
    const id = ++lastCallId;
    const p = new PromiseCtor((resolve) => { MapSet(callsOut, id, resolve); });
    const at = outQueue.length;
    if (at === 0) {
      PromiseThen(SENT, sendOut);
      queuedAt = DateNow();
    } else if (DateNow() - queuedAt >= FLUSH_AFTER_MS) {
      // Code that computes between its calls: those made so far go now, not when the whole run ends.
      sendOut();
      PromiseThen(SENT, sendOut);
      queuedAt = DateNow();
    }
    const next = outQueue.length;
    outQueue[next] = id;
    outQueue[next + 1] = service;
    outQueue[next + 2] = method;
    outQueue[next + 3] = headers;
    outQueue[next + 4] = bytes;
    const answer = PromiseThen(ownPromise(p), checked);
    return PromiseThen(ownPromise(answer), then, missingIsNull ? nullIfMissing : undefined);
  },
  // A bad argument rejects the promise, as any other failure does, instead of throwing.
  method(fn) {
    return /** @this {unknown} */ function (...args) {
      try { return ReflectApply(fn, this, args); } catch (e) { return ReflectApply(PromiseReject, PromiseCtor, [e]); }
    };
  },
};

// The methods of a service object, adapted to the face, frozen; "extra" is added as it is.
/**
 * @param {Face} face
 * @param {Record<string, Function>} methods
 * @param {object} [extra]
 * @returns {object}
 */
function faced(face, methods, extra) {
  const out = ObjectCreate(null);
  const names = ObjectKeys(methods);
  for (let i = 0; i < names.length; i++) out[names[i]] = face.method(methods[names[i]]);
  if (extra) ObjectAssign(out, extra);
  return ObjectFreeze(out);
}

// A name for a host call (key, subject, bucket...): a string of at most MAX_HOST_NAME_CHARS.
/**
 * @param {string} name
 * @param {unknown} v
 * @returns {string}
 */
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
/**
 * @param {Record<string, string>} fields
 * @returns {Record<string, string>}
 */
function headers(fields) {
  return ObjectAssign(ObjectCreate(null), fields);
}

/**
 * @param {HostAnswer} r
 * @returns {any}
 */
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

/**
 * @param {HostAnswer} r
 * @returns {any}
 */
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
/**
 * @param {string | undefined} bucket
 * @param {Record<string, string>} h
 * @returns {Record<string, string>}
 */
function on(bucket, h) {
  if (bucket !== undefined) h["Nex-Bucket"] = bucket;
  return h;
}

/**
 * @param {Face} face
 * @param {string | undefined} bucket
 * @returns {object}
 */
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

/**
 * @param {Record<string, string>} h
 * @param {unknown} timeoutMs
 * @returns {Record<string, string>}
 */
function timeoutHeader(h, timeoutMs) {
  if (timeoutMs !== undefined && timeoutMs !== null) h["Nex-Timeout-Ms"] = str("timeoutMs", timeoutMs);
  return h;
}

/**
 * @param {Face} face
 * @returns {object}
 */
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

/**
 * @param {Face} face
 * @param {string | undefined} bucket
 * @returns {object}
 */
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
/**
 * @param {Face} face
 * @returns {object}
 */
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

/**
 * @param {string} name
 * @param {unknown} value
 */
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
