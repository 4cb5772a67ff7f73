// @ts-check
// The part of the bootstrap (bootstrap.ts) that runs a JavaScript service inside its isolate: the
// service's ctx (hostServices, env, workload, subscribe), the timer globals, and the dispatcher the
// runtime host calls with a batch of events (start, a message to a subscription, a timer, a trigger for
// handle(), stop). It is a source fragment placed inside the bootstrap's setup function, so it uses the
// same captured built-ins (primordials.js), the same bounded encoding of results (encodeResult,
// errorMessage) and the same console budget; none of it is reachable from the service's code.
//
// makeServiceRunner(mod, info, control, emitReply):
//   mod        the module's default export: { start(ctx), stop?(ctx), handle?(subject, payload) }
//   info       { workload: {id, name, namespace, node}, maxTimers, maxSubscriptions }
//   control    a synchronous ivm.Callback (op, a, b, c) → "" / a number (ok) or "code\0message" (refused):
//              "subscribe" (subject, queue) → subscription id; "unsubscribe" (id); "timer" (id, delay ms,
//              repeat); "untimer" (id)
//   emitReply  a fire-and-forget ivm.Callback (reqId, kind, value) for a result that settles later
// It returns dispatch([kinds, ids, subjects, payloads, reqIds]) → [reqIds, kinds, values]: the results
// known when the call returns (the rest come through emitReply). Kinds: SERVICE_EVENT, SERVICE_RESULT.

/**
 * @param {any} mod
 * @param {ServiceInfo} info
 * @param {ServiceControl} control
 * @param {ServiceReply} emitReply
 */
function makeServiceRunner(mod, info, control, emitReply) {
  const MAX_TIMERS = info.maxTimers;
  const MAX_SUBSCRIPTIONS = info.maxSubscriptions;
  if (mod === null || (typeof mod !== "object" && typeof mod !== "function")) {
    throw new TypeErrorCtor("a service must export default { start(ctx), stop?(ctx), handle?(subject, payload) }");
  }
  const startFn = mod.start;
  const stopFn = mod.stop;
  const handleFn = mod.handle;
  if (typeof startFn !== "function") throw new TypeErrorCtor("a service must export default { start(ctx), ... }: start is not a function");
  if (stopFn !== undefined && typeof stopFn !== "function") throw new TypeErrorCtor("a service's stop must be a function");
  if (handleFn !== undefined && typeof handleFn !== "function") throw new TypeErrorCtor("a service's handle must be a function");

  // A refusal from the host ("code\0message") as an Error with that code.
  /**
   * @param {string} r
   * @returns {Error}
   */
  function refused(r) {
    const at = StringIndexOf(r, "\u0000");
    const e = new ErrorCtor(at === -1 ? r : StringSlice(r, at + 1));
    e.code = at === -1 ? "bad_request" : StringSlice(r, 0, at);
    return e;
  }

  // ---- timers ----
  let nextTimer = 1;
  let timerCount = 0;
  const timers = ObjectCreate(null);
  /**
   * @param {unknown} fn
   * @param {unknown} delay
   * @param {unknown[]} args
   * @param {boolean} repeat
   * @returns {number}
   */
  function addTimer(fn, delay, args, repeat) {
    if (typeof fn !== "function") throw new TypeErrorCtor("the timer callback must be a function");
    if (timerCount >= MAX_TIMERS) {
      const e = new RangeErrorCtor("too many pending timers: a service may have at most " + MAX_TIMERS);
      e.code = "overloaded";
      throw e;
    }
    let d = NumberCtor(delay);
    if (!(d >= 1)) d = 1;
    if (d > 2147483647) d = 2147483647;
    const id = nextTimer++;
    const r = control("timer", id, d, repeat);
    if (typeof r === "string" && r !== "") throw refused(r);
    timers[id] = frozenRecord({ fn, args, repeat });
    timerCount++;
    return id;
  }
  /**
   * @param {unknown} id
   */
  function clearTimer(id) {
    const n = NumberCtor(id);
    if (timers[n] === undefined) return;
    delete timers[n];
    timerCount--;
    control("untimer", n, 0, false);
  }
  define("setTimeout", function setTimeout(fn, delay, ...args) { return addTimer(fn, delay, args, false); });
  define("setInterval", function setInterval(fn, delay, ...args) { return addTimer(fn, delay, args, true); });
  define("clearTimeout", function clearTimeout(id) { clearTimer(id); });
  define("clearInterval", function clearInterval(id) { clearTimer(id); });

  // ---- subscriptions ----
  let subCount = 0;
  const subs = ObjectCreate(null);
  /**
   * @param {unknown} subject
   * @param {unknown} handler
   * @param {any} [options]
   * @returns {() => void}
   */
  function subscribe(subject, handler, options) {
    const s = str("subject", subject);
    if (typeof handler !== "function") throw new TypeErrorCtor("the subscription handler must be a function");
    let queue = "";
    if (options !== undefined && options !== null) {
      const q = options.queue;
      if (q !== undefined && q !== null) queue = str("queue", q);
    }
    if (subCount >= MAX_SUBSCRIPTIONS) {
      const e = new RangeErrorCtor("too many subscriptions: a service may have at most " + MAX_SUBSCRIPTIONS);
      e.code = "overloaded";
      throw e;
    }
    const r = control("subscribe", s, queue, false);
    if (typeof r === "string") throw refused(r);
    subs[r] = handler;
    subCount++;
    let open = true;
    return function unsubscribe() {
      if (!open) return;
      open = false;
      delete subs[r];
      subCount--;
      control("unsubscribe", r, 0, false);
    };
  }

  const ctx = ObjectFreeze({
    hostServices,
    env,
    workload: ObjectFreeze(ObjectAssign({}, info.workload)),
    subscribe,
  });

  // ---- results ----
  /**
   * @param {boolean} settledOk
   * @param {unknown} v
   * @returns {Outcome}
   */
  function outcome(settledOk, v) {
    // A host service's own "unavailable" (JetStream briefly without a leader) answers 503, as for functions.
    if (!settledOk) return [isUnavailable(v) ? SERVICE_RESULT.unavailable : SERVICE_RESULT.error, errorMessage(v)];
    let enc;
    try {
      enc = encodeResult(v);
    } catch (e) {
      return [isTooLarge(e) ? SERVICE_RESULT.tooLarge : SERVICE_RESULT.error, errorMessage(e)];
    }
    return [SERVICE_RESULT.ok, enc === undefined || typeof enc === "string" ? enc : ownBytes(enc)];
  }
  /**
   * @param {any} r
   * @returns {boolean}
   */
  function isThenable(r) {
    return r !== null && (typeof r === "object" || typeof r === "function") && typeof r.then === "function";
  }
  /**
   * @param {number} reqId
   * @param {unknown} p
   */
  async function later(reqId, p) {
    let settledOk = true;
    let v;
    try { v = await p; } catch (e) { settledOk = false; v = e; }
    /** @type {Outcome} */
    let o;
    try { o = outcome(settledOk, v); } catch (e) { o = [SERVICE_RESULT.error, "[unprintable error]"]; }
    emitReply(reqId, o[0], o[1]);
  }
  /**
   * @param {string} what
   * @param {unknown} p
   */
  async function logRejection(what, p) {
    try { await p; } catch (e) { emitLog("stderr", "[nex] " + what + " failed: " + errorMessage(e)); }
  }

  // ---- the dispatcher ----
  return function dispatch(events) {
    const kinds = events[0];
    const ids = events[1];
    const subjects = events[2];
    const payloads = events[3];
    const reqIds = events[4];
    // No prototype: a setter a service put on Array.prototype sees none of its results.
    const outIds = ObjectSetPrototypeOf([], null);
    const outKinds = ObjectSetPrototypeOf([], null);
    const outValues = ObjectSetPrototypeOf([], null);
    const n = kinds.length;
    for (let k = 0; k < n; k++) {
      const kind = kinds[k];
      const reqId = reqIds[k];
      linesLeft = MAX_LOG_LINES;
      let fn;
      let args;
      let what;
      if (kind === SERVICE_EVENT.start) { fn = startFn; args = [ctx]; what = "start"; }
      else if (kind === SERVICE_EVENT.stop) {
        if (stopFn === undefined) { outIds[outIds.length] = reqId; outKinds[outKinds.length] = SERVICE_RESULT.ok; outValues[outValues.length] = undefined; continue; }
        fn = stopFn; args = [ctx]; what = "stop";
      } else if (kind === SERVICE_EVENT.message) { fn = subs[ids[k]]; args = [subjects[k], payloads[k]]; what = "a subscription handler"; }
      else if (kind === SERVICE_EVENT.trigger) { fn = handleFn; args = [subjects[k], payloads[k]]; what = "handle"; }
      else if (kind === SERVICE_EVENT.timer) {
        const t = timers[ids[k]];
        if (t === undefined) continue;
        if (!t.repeat) { delete timers[ids[k]]; timerCount--; }
        fn = t.fn; args = t.args; what = "a timer callback";
      } else continue;
      if (fn === undefined) {
        if (reqId > 0) {
          outIds[outIds.length] = reqId;
          outKinds[outKinds.length] = SERVICE_RESULT.error;
          outValues[outValues.length] = kind === SERVICE_EVENT.trigger ? "the service has no handle(subject, payload)" : "the subscription was closed";
        }
        continue;
      }
      let r;
      let threw = false;
      try {
        r = ReflectApply(fn, kind === SERVICE_EVENT.start || kind === SERVICE_EVENT.stop ? mod : G, args);
      } catch (e) {
        threw = true;
        r = e;
      }
      if (reqId > 0) {
        if (!threw && isThenable(r)) { later(reqId, r); continue; }
        /** @type {Outcome} */
        let o;
        try { o = outcome(!threw, r); } catch (e) { o = [SERVICE_RESULT.error, "[unprintable error]"]; }
        outIds[outIds.length] = reqId;
        outKinds[outKinds.length] = o[0];
        outValues[outValues.length] = o[1];
      } else if (threw) {
        emitLog("stderr", "[nex] " + what + " threw: " + errorMessage(r));
      } else if (isThenable(r)) {
        logRejection(what, r);
      }
    }
    return [outIds, outKinds, outValues];
  };
}
