// @ts-check
// Bytes in and out: values a workload hands over, bounded before they are encoded or copied.

// Thrown when a value would be larger than its limit; code "too_large", as the host services say it.
// Known by identity (a reply refused so answers 413), not by a code a workload could set on its own errors.
const refusals = new WeakSetCtor();
/**
 * @param {string} what
 * @param {number} size
 * @param {number} max
 * @returns {Error}
 */
function tooLarge(what, size, max) {
  const e = new ErrorCtor(what + " too large: " + size + " bytes or more, the limit is " + max);
  e.code = "too_large";
  WeakSetAdd(refusals, e);
  return e;
}
/**
 * @param {unknown} e
 * @returns {boolean}
 */
function isTooLarge(e) {
  return e !== null && typeof e === "object" && WeakSetHas(refusals, e);
}

// JSON text of v, or undefined (as JSON.stringify), thrown as tooLarge as soon as the text would pass
// maxChars: counted while it is built, so the text of a huge string or structure is never built.
// Each value is counted at most as long as its text (so a text that fits is never refused): a string
// by its length and quotes, anything else as one character, an object member also by its quoted key,
// colon and comma (a member JSON leaves out, not at all), an array element also by its comma. A boxed
// string is turned into its string here (as JSON would, through its own toString) and counted so.
/**
 * @param {unknown} v
 * @param {number} maxChars
 * @param {string} what
 * @returns {string | undefined}
 */
function boundedJSON(v, maxChars, what) {
  let left = maxChars;
  let root = true;
  /** @this {unknown} the holder of value */
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
/**
 * @param {string} str
 * @param {number} max
 * @param {string} what
 * @returns {Uint8Array}
 */
function boundedUtf8(str, max, what) {
  if (str.length > max) throw tooLarge(what, str.length, max);
  const out = utf8Encode(str);
  if (TypedArrayByteLength(out) > max) throw tooLarge(what, TypedArrayByteLength(out), max);
  return out;
}

// A value the workload hands to a host service: bytes as they are, strings as UTF-8, anything else as
// JSON; at most max bytes.
/**
 * @param {unknown} v
 * @param {number} max
 * @returns {Uint8Array}
 */
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
/**
 * @param {Uint8Array} u8
 * @returns {Uint8Array}
 */
function ownBytes(u8) {
  const buffer = TypedArrayBuffer(u8);
  try {
    if (!ArrayBufferResizable(buffer) && TypedArrayByteOffset(u8) === 0 && TypedArrayByteLength(u8) === ArrayBufferByteLength(buffer)) return u8;
  } catch (e) {
    // not a plain ArrayBuffer
  }
  return copyOfBytes(u8);
}

// A new buffer holding u8's bytes now (through the original getters and set()).
/**
 * @param {Uint8Array} u8
 * @returns {Uint8Array}
 */
function copyOfBytes(u8) {
  const out = new U8(TypedArrayByteLength(u8));
  TypedArraySet(out, u8, 0);
  return out;
}

// A value for a host service: at most the bytes one call carries.
/**
 * @param {unknown} v
 * @returns {Uint8Array}
 */
function hostValue(v) {
  return toBytes(v, MAX_HOST_VALUE_BYTES);
}

/**
 * @param {unknown} bytes
 * @returns {any}
 */
function decodeJSON(bytes) {
  return JSONParse(utf8Decode(bytes, true));
}
