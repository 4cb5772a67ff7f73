// @ts-check
// The batch runner: runs the triggers of a batch and writes each result into the shared area
// (../../host/result-channel.ts), or hands it to emitResult when it does not fit.

// The shared result areas, one per region (../../host/result-channel.ts): region 0's came with the setup,
// another's comes with the first batch that runs in it. Only the runner below touches these views,
// through Atomics, indexing and the captured TypedArraySet, so no workload code is ever handed one (see
// primordials.js); they are kept in an object without a prototype, so no setter a workload put on one
// sees them stored.
/**
 * @param {SharedArrayBuffer} buffer
 */
function resultArea(buffer) {
  return {
    head: new I32(buffer, 0, 4),
    table: new I32(buffer, TABLE_OFFSET, MAX_RESULTS * ENTRY.size),
    data: new U8(buffer, DATA_OFFSET, DATA_BYTES),
  };
}
/** @type {Record<number, ReturnType<typeof resultArea>>} */
const resultAreas = ObjectCreate(null);
resultAreas[0] = resultArea(shared);

// A failure's message, cut to MAX_ERROR_CHARS: an Error's message, a thrown string, or the value shown.
/**
 * @param {unknown} e
 * @returns {string}
 */
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
/**
 * @param {unknown} r
 * @returns {string | Uint8Array | undefined}
 */
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

// The setup's completion value (bootstrap.ts): makeRunner(handler) returns runBatch; a service's
// makeRunner(module, info, control, emitReply) returns its dispatcher (service.js).
/**
 * @param {any} handler the workload's function or module
 * @param {ServiceInfo} [serviceInfo]
 * @param {ServiceControl} [serviceControl]
 * @param {ServiceReply} [serviceReply]
 */
function makeRunner(handler, serviceInfo, serviceControl, serviceReply) {
  if (serviceControl !== undefined) return makeServiceRunner(handler, /** @type {ServiceInfo} */ (serviceInfo), serviceControl, /** @type {ServiceReply} */ (serviceReply));
  // A Workers-style module (export default { fetch(request, env, ctx) }), or a function (subject, payload).
  let fetchFn;
  if (typeof handler !== "function") {
    fetchFn = handler !== null && typeof handler === "object" ? handler.fetch : undefined;
    if (typeof fetchFn !== "function") throw new TypeErrorCtor("a workload must be a function (subject, payload) => result, or export default { fetch(request, env, ctx) }");
  }

  // Starts the triggers of a batch one after the other. A synchronous trigger runs to its end before the
  // next starts; an async one runs until it first awaits, and the next starts while it waits, so async
  // triggers overlap their host calls. Each result goes into the batch's region of the shared area (or,
  // if too large, by emitResult) as soon as it is known. Returns how many triggers still await once the
  // last one has started; above 0 the host may start another batch, in another region, while these
  // wait, and SIGNAL.done follows when the last of them has its result.
  // triggers: [subjects, payloads, expiries (epoch ms), base (epoch ms: start times count from it)]
  // region: the batch's region; areaBuffer: that region's memory, the first time it is used.
  return function runBatch(batchId, triggers, region, areaBuffer) {
    let area = resultAreas[region];
    if (area === undefined) {
      // (No instanceof here: it would look up a global the workload may have replaced, and hand it the buffer.)
      if (areaBuffer === undefined) throw new TypeErrorCtor("no result area for region " + region);
      area = resultArea(areaBuffer);
      resultAreas[region] = area;
    }
    const head = area.head;
    const table = area.table;
    const data = area.data;
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
    for (let k = 0; k < n && k < MAX_RESULTS; k++) {
      AtomicsStore(table, k * ENTRY.size + ENTRY.kind, RESULT_KIND.none);
      AtomicsStore(table, k * ENTRY.size + ENTRY.started, 0);
    }
    AtomicsStore(head, HEAD.running, -1);
    AtomicsStore(head, HEAD.batch, batchId);

    // Asks the host to read the results, unless it has been asked and not read yet.
    function askCollect() {
      if (AtomicsCompareExchange(head, HEAD.collectAsked, 0, 1) === 0) emitResult(batchId, SIGNAL.collect, RESULT_KIND.none, undefined);
    }

    // Writes result k: kind and bytes (a Uint8Array, a string as UTF-8, or undefined for none), each
    // bounded already (encodeResult, errorMessage).
    /**
     * @param {number} k
     * @param {number} kind
     * @param {string | Uint8Array | undefined} value
     */
    function record(k, kind, value) {
      recorded++;
      const isString = typeof value === "string";
      const size = value === undefined ? 0 : isString ? (value.length <= 0x3fff ? utf8Size(value) : -1) : TypedArrayByteLength(value);
      const at = k * ENTRY.size;
      if (k < MAX_RESULTS && size >= 0 && used + size <= DATA_BYTES) {
        if (isString) utf8EncodeInto(value, data, used);
        else if (size > 0) TypedArraySet(data, value, used);
        table[at + ENTRY.offset] = used;
        table[at + ENTRY.length] = size;
        used += size;
        AtomicsStore(table, at + ENTRY.kind, kind);
      } else {
        if (k < MAX_RESULTS) AtomicsStore(table, at + ENTRY.kind, RESULT_KIND.byCallback);
        emitResult(batchId, k, kind, isString || value === undefined ? value : ownBytes(value));
      }
      if (!starting) {
        // A late async result: the host reads it now, not when the whole batch is done (the last one
        // goes with SIGNAL.done).
        if (pending > 1) askCollect();
        return;
      }
      // Slow triggers: do not hold a result back for long behind the rest of the batch.
      const now = DateNow();
      if (now - flushedAt >= FLUSH_AFTER_MS) {
        flushedAt = now;
        askCollect();
      }
    }
    // Encoding a result may run workload code (toJSON, getters, Proxy traps): callers mark the trigger
    // as running meanwhile, so a stop then blames it.
    /**
     * @param {number} k
     * @param {unknown} r
     */
    function ok(k, r) {
      let enc;
      try {
        enc = httpTrigger[k] ? httpReplyFrame(r) : encodeResult(fetchFn !== undefined ? natsReplyOf(r) : r);
      } catch (e) {
        record(k, isTooLarge(e) ? RESULT_KIND.tooLarge : isUnavailable(e) ? RESULT_KIND.unavailable : RESULT_KIND.error, errorMessage(e));
        return;
      }
      record(k, RESULT_KIND.ok, enc);
    }
    /**
     * @param {number} k
     * @param {unknown} e
     */
    function fail(k, e) {
      record(k, isUnavailable(e) ? RESULT_KIND.unavailable : RESULT_KIND.error, errorMessage(e));
    }
    // Trigger k's result once its promise (or thenable) settles; the batch ends when all have.
    /**
     * @param {number} k
     * @param {unknown} r
     */
    async function watch(k, r) {
      let settledOk = true;
      let v;
      try { v = await r; } catch (e) { settledOk = false; v = e; }
      AtomicsStore(head, HEAD.running, k);
      try {
        if (settledOk) ok(k, v);
        else fail(k, v);
      } finally {
        AtomicsStore(head, HEAD.running, -1);
        if (--pending === 0) emitResult(batchId, SIGNAL.done, RESULT_KIND.none, undefined);
      }
    }
    // Trigger k's synchronous part: the handler call, and its result if it is not a promise.
    /**
     * @param {number} k
     */
    function start(k) {
      let r;
      let thenable;
      try {
        const subject = subjects[k];
        const http = StringSlice(subject, 0, HTTP_SUBJECT_PREFIX.length) === HTTP_SUBJECT_PREFIX;
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
      if (k < MAX_RESULTS) AtomicsStore(table, k * ENTRY.size + ENTRY.started, now > base ? now - base + 1 : 1);
      // Waited (in the queue and behind earlier triggers of this batch) past its whole deadline.
      if (now > expiries[k]) { record(k, RESULT_KIND.expired, undefined); continue; }
      linesLeft = MAX_LOG_LINES;
      AtomicsStore(head, HEAD.running, k);
      start(k);
      AtomicsStore(head, HEAD.running, -1);
    }
    starting = false;
    if (pending === 0) return 0;
    // The results so far should not wait for the pending ones, and the isolate is free until they go on:
    // the host reads them when this call returns (its answer, above 0, says the batch awaits).
    AtomicsStore(head, HEAD.collectAsked, 1);
    return pending;
  };
}
