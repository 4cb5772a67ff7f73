// The runtime host's side of HTTP triggers for JavaScript functions (the isolate's side is
// js/isolate/guest/http.js): a request from the gateway (NATS headers + body) becomes a request frame, and
// the isolate's reply frame becomes NATS reply headers (Nex-Status and the response headers) + body.
// Everything read from a reply frame is checked here again: the isolate is not trusted.

import { headers as natsHeaders, type Msg, type MsgHdrs } from "@nats-io/transport-node";
import { HttpHeaders, reservedHeader } from "../../protocol/http.js";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const MAX_HEADERS = 256;
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,256}$/;
/** What Node writes in a header value: tab, visible ASCII, space and Latin-1 (U+0080-U+00FF); no controls, nothing above U+00FF. */
const BAD_VALUE_CHAR = /[^\t\x20-\x7e\x80-\xff]/;

/** [method, url, [[name, value]...]] + body, as js/isolate/guest/http.js reads it. */
export function requestFrame(msg: Msg, body: Uint8Array): Uint8Array {
  const h = msg.headers;
  const pairs: [string, string][] = [];
  if (h) {
    for (const key of h.keys()) {
      const lower = key.toLowerCase();
      if (reservedHeader(lower)) continue;
      for (const v of h.values(key)) pairs.push([lower, v]);
    }
  }
  const method = h?.get(HttpHeaders.method) || "GET";
  const url = h?.get(HttpHeaders.url) || `http://localhost${h?.get(HttpHeaders.path) || "/"}`;
  const meta = encoder.encode(JSON.stringify([method, url, pairs]));
  const out = new Uint8Array(4 + meta.byteLength + body.byteLength);
  new DataView(out.buffer).setUint32(0, meta.byteLength);
  out.set(meta, 4);
  out.set(body, 4 + meta.byteLength);
  return out;
}

/** A reply frame as NATS reply headers and body; a string saying what is wrong with it otherwise. */
export function replyFromFrame(frame: Uint8Array | string): { headers: MsgHdrs; body: Uint8Array } | string {
  if (typeof frame === "string" || frame.byteLength < 4) return "the isolate's http reply frame is malformed";
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  const n = view.getUint32(0);
  if (4 + n > frame.byteLength) return "the isolate's http reply frame is malformed";
  let meta: unknown;
  try {
    meta = JSON.parse(decoder.decode(frame.subarray(4, 4 + n)));
  } catch {
    return "the isolate's http reply frame is malformed";
  }
  if (!Array.isArray(meta) || meta.length !== 2 || !Array.isArray(meta[1])) return "the isolate's http reply frame is malformed";
  const [status, pairs] = meta as [unknown, unknown[]];
  if (typeof status !== "number" || !Number.isInteger(status) || status < 200 || status > 599) return "the response status must be 200-599";
  if (pairs.length > MAX_HEADERS) return `the response has more than ${MAX_HEADERS} headers`;
  const h = natsHeaders();
  h.set(HttpHeaders.status, String(status));
  for (const pair of pairs) {
    if (!Array.isArray(pair) || pair.length !== 2 || typeof pair[0] !== "string" || typeof pair[1] !== "string") return "a response header is malformed";
    const [name, value] = pair as [string, string];
    if (!TOKEN.test(name) || BAD_VALUE_CHAR.test(value) || value.length > 16384) return `response header ${name.slice(0, 64)} is not valid`;
    if (reservedHeader(name.toLowerCase())) continue;
    h.append(name, value);
  }
  return { headers: h, body: frame.subarray(4 + n) };
}
