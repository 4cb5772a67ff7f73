// @ts-check
// Web classes inside a JavaScript workload's isolate for HTTP triggers: Headers, URL, URLSearchParams,
// Request and Response (a Workers-style subset), and the frames an HTTP trigger travels in between the
// runtime host and the isolate. Part of BOOTSTRAP_SOURCE after the primordials and UTF-8 (text.js);
// it runs before workload code, so everything it calls is captured here or there. The classes keep their
// state in private fields (no getter, prototype or Proxy of the workload's can change what the runner
// reads back), and a response leaves the isolate only as the frame httpReplyFrame builds, bounded by
// MAX_REPLY_BYTES before it is allocated; the runtime host checks every field of it again
// (../../host/http-frames.ts). No host object is reachable from these classes.
//
// Request frame (runtime host → isolate): u32 big-endian n, n bytes of JSON [method, url, [[name, value]...]], body.
// Reply frame (isolate → runtime host):   u32 big-endian n, n bytes of JSON [status, [[name, value]...]], body.

// ---- HTTP: Headers, URL, URLSearchParams, Request, Response ----------------------------------------

const PromiseResolveFn = Promise.resolve;
/** @type {(v: unknown) => Promise<unknown>} */
const resolved = (v) => ReflectApply(PromiseResolveFn, PromiseCtor, [v]);
const EncodeURIComponent = encodeURIComponent;
const DecodeURIComponent = decodeURIComponent;
const ArrayBufferSlice = uncurryThis(ArrayBuffer.prototype.slice);
const MAX_HEADERS = 256;
const MAX_HEADER_CHARS = 16384;

/**
 * @returns {any[]}
 */
function nullArray() { return ObjectSetPrototypeOf([], null); }

/**
 * @param {number} c
 * @returns {boolean}
 */
function tchar(c) {
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || StringIndexOf("!#$%&'*+-.^_\x60|~", StringFromCharCode(c)) !== -1;
}
/**
 * @param {unknown} n
 * @returns {string}
 */
function headerName(n) {
  const s = StringCtor(n);
  if (s.length === 0 || s.length > 256) throw new TypeErrorCtor("invalid header name: " + cut(s, 64, "..."));
  for (let i = 0; i < s.length; i++) if (!tchar(StringCharCodeAt(s, i))) throw new TypeErrorCtor("invalid header name: " + cut(s, 64, "..."));
  return StringToLowerCase(s);
}
/**
 * @param {unknown} v
 * @returns {string}
 */
function headerValue(v) {
  const s = StringTrim(StringCtor(v));
  if (s.length > MAX_HEADER_CHARS) throw new TypeErrorCtor("header value longer than " + MAX_HEADER_CHARS + " characters");
  for (let i = 0; i < s.length; i++) {
    const c = StringCharCodeAt(s, i);
    if (c === 0 || c === 10 || c === 13 || c > 255) throw new TypeErrorCtor("invalid header value (control characters or characters above U+00FF)");
  }
  return s;
}

/** @type {(h: Headers) => HeaderPair[]} */
let headerList;
class Headers {
  #list = nullArray();
  constructor(init) {
    if (init === undefined || init === null) return;
    if (typeof init !== "object" && typeof init !== "function") throw new TypeErrorCtor("Headers: init must be an object, an array of pairs or Headers");
    if (#list in init) {
      const l = init.#list;
      for (let i = 0; i < l.length; i++) ArrayPush(this.#list, l[i]);
    } else if (ArrayIsArray(init)) {
      for (let i = 0; i < init.length; i++) {
        const p = init[i];
        if (!ArrayIsArray(p) || p.length !== 2) throw new TypeErrorCtor("Headers: each pair must be [name, value]");
        this.append(p[0], p[1]);
      }
    } else {
      const keys = ObjectKeys(init);
      for (let i = 0; i < keys.length; i++) this.append(keys[i], init[keys[i]]);
    }
  }
  append(name, value) {
    if (this.#list.length >= MAX_HEADERS) throw new RangeErrorCtor("more than " + MAX_HEADERS + " headers");
    ArrayPush(this.#list, frozenRecord({ 0: headerName(name), 1: headerValue(value) }));
  }
  set(name, value) {
    const n = headerName(name);
    const v = headerValue(value);
    this.#remove(n);
    ArrayPush(this.#list, frozenRecord({ 0: n, 1: v }));
  }
  delete(name) { this.#remove(headerName(name)); }
  #remove(n) {
    const kept = nullArray();
    const l = this.#list;
    for (let i = 0; i < l.length; i++) if (l[i][0] !== n) ArrayPush(kept, l[i]);
    this.#list = kept;
  }
  get(name) {
    const n = headerName(name);
    const l = this.#list;
    let out = null;
    for (let i = 0; i < l.length; i++) if (l[i][0] === n) out = out === null ? l[i][1] : out + ", " + l[i][1];
    return out;
  }
  getSetCookie() {
    const out = [];
    const l = this.#list;
    for (let i = 0; i < l.length; i++) if (l[i][0] === "set-cookie") ArrayPush(out, l[i][1]);
    return out;
  }
  has(name) { return this.get(name) !== null; }
  forEach(fn, thisArg) {
    const e = this.#combined();
    for (let i = 0; i < e.length; i++) ReflectApply(fn, thisArg, [e[i][1], e[i][0], this]);
  }
  // Names once each (values joined), in the order first seen.
  #combined() {
    const out = [];
    const l = this.#list;
    for (let i = 0; i < l.length; i++) {
      const n = l[i][0];
      let seen = false;
      for (let j = 0; j < out.length; j++) if (out[j][0] === n) { seen = true; break; }
      if (!seen) ArrayPush(out, [n, this.get(n)]);
    }
    return out;
  }
  *entries() { const e = this.#combined(); for (let i = 0; i < e.length; i++) yield e[i]; }
  *keys() { const e = this.#combined(); for (let i = 0; i < e.length; i++) yield e[i][0]; }
  *values() { const e = this.#combined(); for (let i = 0; i < e.length; i++) yield e[i][1]; }
  [Symbol.iterator]() { return this.entries(); }
  static {
    headerList = (h) => h.#list;
  }
}

// application/x-www-form-urlencoded
/**
 * @param {string} s
 * @returns {string}
 */
function formDecode(s) {
  let t = "";
  for (let i = 0; i < s.length; i++) { const c = s[i]; t += c === "+" ? " " : c; }
  try { return DecodeURIComponent(t); } catch (e) { return t; }
}
/**
 * @param {string} s
 * @returns {string}
 */
function formEncode(s) {
  const e = EncodeURIComponent(s);
  let t = "";
  for (let i = 0; i < e.length; i++) { const c = e[i]; t += c === "%20" ? "+" : c; }
  return t;
}

/** @type {(v: unknown) => boolean} */
let isSearchParams;
class URLSearchParams {
  #list = nullArray();
  constructor(init) {
    if (init === undefined || init === null) return;
    if (typeof init === "object" && #list in init) {
      const l = init.#list;
      for (let i = 0; i < l.length; i++) ArrayPush(this.#list, l[i]);
    } else if (ArrayIsArray(init)) {
      for (let i = 0; i < init.length; i++) this.append(init[i][0], init[i][1]);
    } else if (typeof init === "object") {
      const keys = ObjectKeys(init);
      for (let i = 0; i < keys.length; i++) this.append(keys[i], init[keys[i]]);
    } else {
      let s = StringCtor(init);
      if (s[0] === "?") s = StringSlice(s, 1);
      let start = 0;
      while (start <= s.length) {
        let end = StringIndexOf(s, "&", start);
        if (end === -1) end = s.length;
        const part = StringSlice(s, start, end);
        if (part.length > 0) {
          const eq = StringIndexOf(part, "=");
          ArrayPush(this.#list, eq === -1 ? [formDecode(part), ""] : [formDecode(StringSlice(part, 0, eq)), formDecode(StringSlice(part, eq + 1))]);
        }
        start = end + 1;
      }
    }
  }
  get size() { return this.#list.length; }
  append(k, v) { ArrayPush(this.#list, [StringCtor(k), StringCtor(v)]); }
  delete(k) {
    const n = StringCtor(k);
    const kept = nullArray();
    for (let i = 0; i < this.#list.length; i++) if (this.#list[i][0] !== n) ArrayPush(kept, this.#list[i]);
    this.#list = kept;
  }
  get(k) {
    const n = StringCtor(k);
    for (let i = 0; i < this.#list.length; i++) if (this.#list[i][0] === n) return this.#list[i][1];
    return null;
  }
  getAll(k) {
    const n = StringCtor(k);
    const out = [];
    for (let i = 0; i < this.#list.length; i++) if (this.#list[i][0] === n) ArrayPush(out, this.#list[i][1]);
    return out;
  }
  has(k) { return this.get(k) !== null; }
  set(k, v) { this.delete(k); this.append(k, v); }
  forEach(fn, thisArg) { for (let i = 0; i < this.#list.length; i++) ReflectApply(fn, thisArg, [this.#list[i][1], this.#list[i][0], this]); }
  *entries() { for (let i = 0; i < this.#list.length; i++) yield [this.#list[i][0], this.#list[i][1]]; }
  static {
    isSearchParams = (v) => v !== null && typeof v === "object" && #list in v;
  }
  *keys() { for (let i = 0; i < this.#list.length; i++) yield this.#list[i][0]; }
  *values() { for (let i = 0; i < this.#list.length; i++) yield this.#list[i][1]; }
  [Symbol.iterator]() { return this.entries(); }
  toString() {
    const parts = nullArray();
    for (let i = 0; i < this.#list.length; i++) ArrayPush(parts, formEncode(this.#list[i][0]) + "=" + formEncode(this.#list[i][1]));
    return ArrayJoin(parts, "&");
  }
}

/**
 * @param {number} c
 * @returns {boolean}
 */
function isAlpha(c) { return (c >= 65 && c <= 90) || (c >= 97 && c <= 122); }
/**
 * @param {string} s
 * @returns {number}
 */
function schemeEnd(s) {
  if (s.length === 0 || !isAlpha(StringCharCodeAt(s, 0))) return -1;
  for (let i = 1; i < s.length; i++) {
    const c = StringCharCodeAt(s, i);
    if (c === 58) return i;
    if (!(isAlpha(c) || (c >= 48 && c <= 57) || c === 43 || c === 45 || c === 46)) return -1;
  }
  return -1;
}
// "/a/b/../c/./d" becomes "/a/c/d"
/**
 * @param {string} p
 * @returns {string}
 */
function removeDots(p) {
  const segs = nullArray();
  let start = 1;
  while (start <= p.length) {
    let end = StringIndexOf(p, "/", start);
    if (end === -1) end = p.length;
    const seg = StringSlice(p, start, end);
    if (seg === "..") { if (segs.length > 0) segs.length--; if (end === p.length) ArrayPush(segs, ""); }
    else if (seg === ".") { if (end === p.length) ArrayPush(segs, ""); }
    else ArrayPush(segs, seg);
    start = end + 1;
  }
  return "/" + ArrayJoin(segs, "/");
}
/**
 * @param {string} s
 * @param {string} chars
 * @param {number} from
 * @returns {number}
 */
function firstOf(s, chars, from) {
  for (let i = from; i < s.length; i++) if (StringIndexOf(chars, s[i]) !== -1) return i;
  return s.length;
}

// An absolute URL (scheme://authority/path?query#fragment), or a reference resolved against a base.
class URL {
  #protocol = ""; #username = ""; #password = ""; #hostname = ""; #port = ""; #pathname = "/"; #search = ""; #hash = "";
  constructor(url, base) {
    let s = StringTrim(StringCtor(url));
    if (s.length > 65536) throw new TypeErrorCtor("Invalid URL: longer than 65536 characters");
    const e = schemeEnd(s);
    if (e === -1) {
      if (base === undefined) throw new TypeErrorCtor("Invalid URL: " + cut(s, 256, "..."));
      const b = new URL(base);
      if (StringSlice(s, 0, 2) === "//") s = b.#protocol + s;
      else if (s[0] === "/") s = b.#origin() + s;
      else if (s[0] === "?") s = b.#origin() + b.#pathname + s;
      else if (s[0] === "#") s = b.#origin() + b.#pathname + b.#search + s;
      else if (s === "") s = b.#origin() + b.#pathname + b.#search;
      else {
        let dir = b.#pathname;
        let k = dir.length - 1;
        while (k >= 0 && dir[k] !== "/") k--;
        s = b.#origin() + StringSlice(dir, 0, k + 1) + s;
      }
      this.#parse(s);
      return;
    }
    this.#parse(s);
  }
  #parse(s) {
    const e = schemeEnd(s);
    if (e === -1) throw new TypeErrorCtor("Invalid URL: " + cut(s, 256, "..."));
    this.#protocol = StringToLowerCase(StringSlice(s, 0, e + 1));
    let rest = StringSlice(s, e + 1);
    const h = StringIndexOf(rest, "#");
    if (h !== -1) { this.#hash = h === rest.length - 1 ? "" : StringSlice(rest, h); rest = StringSlice(rest, 0, h); }
    const q = StringIndexOf(rest, "?");
    if (q !== -1) { this.#search = q === rest.length - 1 ? "" : StringSlice(rest, q); rest = StringSlice(rest, 0, q); }
    if (StringSlice(rest, 0, 2) === "//") {
      const end = firstOf(rest, "/", 2);
      let auth = StringSlice(rest, 2, end);
      rest = StringSlice(rest, end);
      const at = StringIndexOf(auth, "@");
      if (at !== -1) {
        const user = StringSlice(auth, 0, at);
        const c = StringIndexOf(user, ":");
        this.#username = c === -1 ? user : StringSlice(user, 0, c);
        this.#password = c === -1 ? "" : StringSlice(user, c + 1);
        auth = StringSlice(auth, at + 1);
      }
      const close = StringIndexOf(auth, "]");
      const colon = StringIndexOf(auth, ":", close === -1 ? 0 : close);
      if (colon !== -1) {
        const port = StringSlice(auth, colon + 1);
        for (let i = 0; i < port.length; i++) { const c = StringCharCodeAt(port, i); if (c < 48 || c > 57) throw new TypeErrorCtor("Invalid URL: bad port"); }
        this.#port = port;
        auth = StringSlice(auth, 0, colon);
      }
      this.#hostname = StringToLowerCase(auth);
      if ((this.#protocol === "http:" && this.#port === "80") || (this.#protocol === "https:" && this.#port === "443")) this.#port = "";
      this.#pathname = rest === "" ? "/" : removeDots(rest);
    } else {
      this.#pathname = rest;
    }
  }
  #origin() {
    return this.#protocol + "//" + (this.#username ? this.#username + (this.#password ? ":" + this.#password : "") + "@" : "") + this.host;
  }
  get protocol() { return this.#protocol; }
  get username() { return this.#username; }
  get password() { return this.#password; }
  get hostname() { return this.#hostname; }
  get port() { return this.#port; }
  get host() { return this.#hostname + (this.#port ? ":" + this.#port : ""); }
  get origin() { return this.#hostname ? this.#protocol + "//" + this.host : "null"; }
  get pathname() { return this.#pathname; }
  get search() { return this.#search; }
  set search(v) { const s = StringCtor(v); this.#search = s === "" || s === "?" ? "" : s[0] === "?" ? s : "?" + s; }
  get searchParams() { return new URLSearchParams(this.#search); }
  get hash() { return this.#hash; }
  get href() { return (this.#hostname || this.#pathname[0] === "/" ? this.#origin() : this.#protocol) + this.#pathname + this.#search + this.#hash; }
  toString() { return this.href; }
  toJSON() { return this.href; }
  static canParse(url, base) { try { new URL(url, base); return true; } catch (e) { return false; } }
}

// A body given to Request or Response: null, a string, or a copy of the bytes (never a view the caller keeps).
/**
 * @param {unknown} b
 * @param {Headers} headers
 * @returns {BodyValue}
 */
function bodyInit(b, headers) {
  if (b === undefined || b === null) return null;
  if (typeof b === "string") {
    if (!headers.has("content-type")) headers.set("content-type", "text/plain;charset=UTF-8");
    return b;
  }
  if (isSearchParams(b)) {
    if (!headers.has("content-type")) headers.set("content-type", "application/x-www-form-urlencoded;charset=UTF-8");
    return b.toString();
  }
  const bytes = bytesOf(b);
  if (bytes !== undefined) return ownBytes(bytes);
  return StringCtor(b);
}
/**
 * @param {BodyValue} body
 * @returns {Uint8Array}
 */
function bodyBytes(body) {
  if (body === null) return new U8(0);
  if (typeof body === "string") return utf8Encode(body);
  return ownBytes(body);
}
/**
 * @param {BodyValue} body
 * @returns {string}
 */
function bodyText(body) {
  if (body === null) return "";
  return typeof body === "string" ? body : utf8Decode(body, true);
}
/**
 * @param {BodyValue} body
 * @returns {ArrayBuffer}
 */
function copyBuffer(body) {
  const b = bodyBytes(body);
  return ArrayBufferSlice(TypedArrayBuffer(b), TypedArrayByteOffset(b), TypedArrayByteOffset(b) + TypedArrayByteLength(b));
}

const StringToUpperCase = uncurryThis(String.prototype.toUpperCase);
// As fetch normalizes a method: the six standard ones in upper case, others as given (a token).
/**
 * @param {unknown} m
 * @returns {string}
 */
function normMethod(m) {
  const s = StringCtor(m);
  if (s.length === 0 || s.length > 32) throw new TypeErrorCtor("invalid method");
  for (let i = 0; i < s.length; i++) if (!tchar(StringCharCodeAt(s, i))) throw new TypeErrorCtor("invalid method");
  const up = StringToUpperCase(s);
  return up === "DELETE" || up === "GET" || up === "HEAD" || up === "OPTIONS" || up === "POST" || up === "PUT" ? up : s;
}

// What Request and Response share: a body that is read once (text, json, arrayBuffer, bytes). Its
// fields are private to this class; bodyFieldOf, setBodyField and bodyUsedOf are how the two classes (and the
// runner) reach them, never through a property a workload could replace.
/** @type {(o: Body) => BodyValue} */
let bodyFieldOf;
/** @type {(o: Body, b: BodyValue) => void} */
let setBodyField;
/** @type {(o: Body) => boolean} */
let bodyUsedOf;
class Body {
  /** @type {BodyValue} */ #body = null; #used = false;
  get bodyUsed() { return this.#used; }
  #take() {
    if (this.#used) throw new TypeErrorCtor("body already used");
    this.#used = true;
    return this.#body;
  }
  text() { try { return resolved(bodyText(this.#take())); } catch (e) { return PromiseReject(e); } }
  json() { try { return resolved(JSONParse(bodyText(this.#take()))); } catch (e) { return PromiseReject(e); } }
  arrayBuffer() { try { return resolved(copyBuffer(this.#take())); } catch (e) { return PromiseReject(e); } }
  bytes() { try { return resolved(bodyBytes(this.#take())); } catch (e) { return PromiseReject(e); } }
  static {
    bodyFieldOf = (o) => o.#body;
    setBodyField = (o, b) => { o.#body = b; o.#used = false; };
    bodyUsedOf = (o) => o.#used;
  }
}

/** @type {(method: string, url: string, body: Uint8Array, pairs: HeaderPair[]) => Request} */
let makeRequest;
// Only the runner holds it: new Request(MAKE) is an empty request makeRequest fills in.
const MAKE = ObjectFreeze(ObjectCreate(null));
class Request extends Body {
  #method; #url; #headers;
  constructor(input, init) {
    super();
    if (input === MAKE) return;
    const o = init === undefined || init === null ? frozenRecord({}) : init;
    if (typeof input === "object" && input !== null && #url in input) {
      this.#method = input.#method; this.#url = input.#url; this.#headers = new Headers(input.#headers); setBodyField(this, bodyFieldOf(input));
    } else {
      this.#method = "GET"; this.#url = new URL(input).href; this.#headers = new Headers();
    }
    if (o.method !== undefined) this.#method = normMethod(o.method);
    if (o.headers !== undefined) this.#headers = new Headers(o.headers);
    if (o.body !== undefined && o.body !== null) {
      if (this.#method === "GET" || this.#method === "HEAD") throw new TypeErrorCtor("Request with GET/HEAD method cannot have body");
      setBodyField(this, bodyInit(o.body, this.#headers));
    }
  }
  static {
    // The runner's request for an HTTP trigger, as the gateway received it (a GET may carry a body there).
    // The frame is the runtime host's own (names lowercase, values as Node's parser took them), so it is taken as it is.
    makeRequest = (method, url, body, pairs) => {
      const r = new Request(MAKE);
      r.#method = method; r.#url = url; r.#headers = new Headers(); setBodyField(r, TypedArrayLength(body) > 0 ? body : null);
      const h = headerList(r.#headers);
      for (let i = 0; i < pairs.length && i < MAX_HEADERS; i++) ArrayPush(h, pairs[i]);
      return r;
    };
  }
  get method() { return this.#method; }
  get url() { return this.#url; }
  get headers() { return this.#headers; }
  clone() { if (bodyUsedOf(this)) throw new TypeErrorCtor("body already used"); return new Request(this); }
}

/** @type {(r: unknown) => Readonly<{ status: number, headers: HeaderPair[], body: BodyValue }> | undefined} */
let responseParts;
class Response extends Body {
  #status; #statusText; #headers;
  constructor(body, init) {
    super();
    const o = init === undefined || init === null ? frozenRecord({}) : init;
    const status = o.status === undefined ? 200 : NumberCtor(o.status);
    if (!(status >= 200 && status <= 599 && status === (status | 0))) throw new RangeErrorCtor("Response status must be 200-599, got " + StringCtor(o.status));
    this.#status = status;
    this.#statusText = o.statusText === undefined ? "" : headerValue(o.statusText);
    this.#headers = new Headers(o.headers);
    setBodyField(this, bodyInit(body, this.#headers));
    if ((status === 204 || status === 304) && bodyFieldOf(this) !== null) throw new TypeErrorCtor("Response with status " + status + " cannot have a body");
  }
  static json(data, init) {
    const text = boundedJSON(data, MAX_REPLY_BYTES, "reply");
    const r = new Response(text === undefined ? "null" : text, init);
    if (init === undefined || init === null || init.headers === undefined || !new Headers(init.headers).has("content-type")) r.#headers.set("content-type", "application/json");
    return r;
  }
  static redirect(url, status) {
    const s = status === undefined ? 302 : NumberCtor(status);
    if (s !== 301 && s !== 302 && s !== 303 && s !== 307 && s !== 308) throw new RangeErrorCtor("redirect status must be 301, 302, 303, 307 or 308");
    return new Response(null, { status: s, headers: [["location", StringCtor(url)]] });
  }
  get status() { return this.#status; }
  get ok() { return this.#status >= 200 && this.#status < 300; }
  get statusText() { return this.#statusText; }
  get headers() { return this.#headers; }
  get redirected() { return false; }
  get type() { return "default"; }
  get url() { return ""; }
  clone() {
    if (bodyUsedOf(this)) throw new TypeErrorCtor("body already used");
    const r = new Response(null, { status: this.#status === 204 || this.#status === 304 ? this.#status : 200 });
    r.#status = this.#status; r.#statusText = this.#statusText; r.#headers = new Headers(this.#headers); setBodyField(r, bodyFieldOf(this));
    return r;
  }
  static {
    // What the runner sends back: read from the private fields only (a Proxy or a look-alike has none).
    responseParts = (r) => (r !== null && typeof r === "object" && #status in r) ? frozenRecord({ status: r.#status, headers: headerList(r.#headers), body: bodyFieldOf(r) }) : undefined;
  }
}

// A request frame from the runtime host (its JSON is the host's own): a Request and its body.
/**
 * @param {Uint8Array} frame
 * @returns {Readonly<{ request: Request, body: Uint8Array }>}
 */
function httpRequestFrom(frame) {
  const n = TypedArrayLength(frame);
  if (n < 4) throw new TypeErrorCtor("bad http request frame");
  const len = ((frame[0] << 24) >>> 0) + (frame[1] << 16) + (frame[2] << 8) + frame[3];
  if (4 + len > n) throw new TypeErrorCtor("bad http request frame");
  const meta = JSONParse(utf8Decode(new U8(TypedArrayBuffer(frame), TypedArrayByteOffset(frame) + 4, len), false));
  const body = new U8(TypedArrayBuffer(frame), TypedArrayByteOffset(frame) + 4 + len, n - 4 - len);
  return frozenRecord({ request: makeRequest(meta[0], meta[1], body, meta[2]), body });
}

// A reply frame for an HTTP trigger: from a Response, or any other result as a 200 body. Refused
// (tooLarge) before it is allocated when it would exceed MAX_REPLY_BYTES.
/**
 * @param {unknown} r
 * @returns {Uint8Array}
 */
function httpReplyFrame(r) {
  const parts = responseParts(r);
  let status = 200;
  let pairs = nullArray();
  let body;
  if (parts !== undefined) {
    status = parts.status;
    pairs = parts.headers;
    body = parts.body === null ? undefined : parts.body;
  } else body = encodeResult(r);
  const plain = [];
  for (let i = 0; i < pairs.length; i++) ArrayPush(plain, [pairs[i][0], pairs[i][1]]);
  const meta = JSONStringify([status, plain]);
  const metaSize = utf8Size(meta);
  const bodySize = body === undefined ? 0 : typeof body === "string" ? utf8Size(body) : TypedArrayByteLength(body);
  const total = 4 + metaSize + bodySize;
  if (total > MAX_REPLY_BYTES) throw tooLarge("reply", total, MAX_REPLY_BYTES);
  const out = new U8(total);
  out[0] = (metaSize >>> 24) & 255; out[1] = (metaSize >>> 16) & 255; out[2] = (metaSize >>> 8) & 255; out[3] = metaSize & 255;
  utf8EncodeInto(meta, out, 4);
  if (body !== undefined) {
    if (typeof body === "string") utf8EncodeInto(body, out, 4 + metaSize);
    else TypedArraySet(out, body, 4 + metaSize);
  }
  return out;
}

// A trigger on a plain subject, for a fetch handler: POST nats://<subject> with the payload.
/**
 * @param {string} subject
 * @param {Uint8Array} payload
 * @returns {Request}
 */
function natsRequest(subject, payload) {
  return new Request("nats://" + subject, { method: "POST", body: payload });
}

// A plain subject's reply from a fetch handler: the Response's body, or the result itself.
/**
 * @param {unknown} r
 * @returns {unknown}
 */
function natsReplyOf(r) {
  const parts = responseParts(r);
  if (parts === undefined) return r;
  return parts.body === null ? undefined : parts.body;
}

const FETCH_CTX = frozenRecord({ waitUntil() {}, passThroughOnException() {} });
