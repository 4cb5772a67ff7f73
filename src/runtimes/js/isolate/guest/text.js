// @ts-check
// UTF-8: the encoder and decoder the bootstrap uses, and the TextEncoder and TextDecoder globals.

/**
 * @param {string} str
 * @returns {number}
 */
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

/**
 * @param {unknown} input
 * @returns {Uint8Array}
 */
function utf8Encode(input) {
  const str = StringCtor(input);
  const out = new U8(utf8Size(str));
  utf8EncodeInto(str, out, 0);
  return out;
}

// Writes str's UTF-8 bytes into out from p (the caller made room: utf8Size(str) bytes).
/**
 * @param {string} str
 * @param {Uint8Array} out
 * @param {number} p
 */
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

/**
 * @param {number} b
 */
function isCont(b) { return (b & 0xc0) === 0x80; }

// Returns the decoded string; sets decodeErrors when a replacement character was produced.
let decodeErrors = false;
/**
 * @param {unknown} input
 * @param {boolean} skipBom
 * @returns {string}
 */
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

