// @ts-check
// console: lines bounded in number (per trigger) and length, sent out by emitLog.

let linesLeft = MAX_LOG_LINES;

// s cut to max characters (through the original slice: a replaced one could hand back all of s).
/**
 * @param {string} s
 * @param {number} max
 * @param {string} mark
 * @returns {string}
 */
function cut(s, max, mark) {
  return s.length > max ? StringSlice(s, 0, max) + mark : s;
}

// How console shows a value: at most about MAX_LOG_CHARS of it.
/**
 * @param {any} v
 * @param {boolean} nested
 * @returns {string}
 */
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

/**
 * @param {any[]} args
 * @returns {string}
 */
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

/**
 * @param {"stdout" | "stderr"} stream
 * @returns {(...args: any[]) => void}
 */
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
