// The runtime host's check of an isolate's HTTP reply frame (src/runtimes/host/http-frames.ts): the isolate is
// not trusted, so whatever it frames is either a valid status and headers Node will write, or a string
// saying what is wrong (an error reply), never something that reaches the gateway's 502 catch.

import { describe, expect, it } from "vitest";
import { replyFromFrame } from "../src/runtimes/host/http-frames.js";

const encoder = new TextEncoder();

/** A reply frame as guest/http.js builds it: u32 length, JSON [status, pairs], body. */
function frame(meta: unknown, body = "ok", rawJson?: string): Uint8Array {
  const json = encoder.encode(rawJson ?? JSON.stringify(meta));
  const b = encoder.encode(body);
  const out = new Uint8Array(4 + json.byteLength + b.byteLength);
  new DataView(out.buffer).setUint32(0, json.byteLength);
  out.set(json, 4);
  out.set(b, 4 + json.byteLength);
  return out;
}

describe("replyFromFrame", () => {
  it("maps a good frame to Nex-Status, the headers and the body", () => {
    const r = replyFromFrame(frame([201, [["x-a", "1"], ["x-a", "2"], ["content-type", "text/plain"], ["x-latin", "caf\u00e9"]]], "made"));
    if (typeof r === "string") throw new Error(r);
    expect(r.headers.get("Nex-Status")).toBe("201");
    expect(r.headers.values("x-a")).toEqual(["1", "2"]);
    expect(r.headers.get("x-latin")).toBe("caf\u00e9");
    expect(new TextDecoder().decode(r.body)).toBe("made");
  });

  it("drops reserved headers the isolate sets (framing, Nex-*, Nats-*)", () => {
    const r = replyFromFrame(frame([200, [["transfer-encoding", "chunked"], ["content-length", "9"], ["nex-status", "500"], ["nats-service-error-code", "500"], ["x-ok", "1"]]]));
    if (typeof r === "string") throw new Error(r);
    expect(r.headers.get("Nex-Status")).toBe("200");
    expect(r.headers.get("transfer-encoding")).toBe("");
    expect(r.headers.get("content-length")).toBe("");
    expect(r.headers.get("nats-service-error-code")).toBe("");
    expect(r.headers.get("x-ok")).toBe("1");
  });

  it("refuses frames that are not a length, JSON [status, pairs] and a body", () => {
    expect(replyFromFrame("a string")).toMatch(/malformed/);
    expect(replyFromFrame(new Uint8Array([0, 0]))).toMatch(/malformed/);
    expect(replyFromFrame(new Uint8Array([0, 0, 1, 0, 1]))).toMatch(/malformed/);
    expect(replyFromFrame(frame(null, "", "[200, [}"))).toMatch(/malformed/);
    expect(replyFromFrame(frame({ status: 200 }))).toMatch(/malformed/);
    expect(replyFromFrame(frame([200]))).toMatch(/malformed/);
    expect(replyFromFrame(frame([200, {}]))).toMatch(/malformed/);
  });

  it("refuses a status that is not an integer 200-599", () => {
    for (const status of [99, 199, 600, 1.5, "200", null, Number.MAX_SAFE_INTEGER]) {
      expect(replyFromFrame(frame([status, []])), String(status)).toBe("the response status must be 200-599");
    }
    expect(typeof replyFromFrame(frame([599, []]))).toBe("object");
  });

  it("refuses more than 256 headers", () => {
    const pairs = Array.from({ length: 257 }, (_, i) => [`x-h${i}`, "v"]);
    expect(replyFromFrame(frame([200, pairs]))).toMatch(/more than 256 headers/);
    expect(typeof replyFromFrame(frame([200, pairs.slice(0, 256)]))).toBe("object");
  });

  it("refuses header pairs that are not two strings", () => {
    for (const pair of [["x-a"], ["x-a", "1", "2"], ["x-a", 1], [1, "a"], "x-a: 1", null, { 0: "x-a", 1: "1" }]) {
      expect(replyFromFrame(frame([200, [pair]])), JSON.stringify(pair)).toBe("a response header is malformed");
    }
  });

  it("refuses header names that are not tokens and values Node would not write", () => {
    for (const name of ["", "x a", "x:a", "x\r\na", "caf\u00e9", "x".repeat(257)]) {
      expect(replyFromFrame(frame([200, [[name, "v"]]])), JSON.stringify(name)).toMatch(/^response header .* is not valid$/s);
    }
    for (const value of ["a\rb", "a\nb", "a\r\nSet-Cookie: x=1", "a\u0000b", "a\u0001b", "a\u001fb", "a\u007fb", "x".repeat(16385)]) {
      expect(replyFromFrame(frame([200, [["x-a", value]]])), JSON.stringify(value)).toBe("response header x-a is not valid");
    }
    // Tab, visible ASCII and Latin-1 (U+0080-U+00FF) are what Node writes.
    expect(typeof replyFromFrame(frame([200, [["x-a", "a\tb ~\u0080\u00e9\u00ff"]]]))).toBe("object");
  });

  it("refuses header values with characters above U+00FF (Node writes header values as Latin-1 and throws on them)", () => {
    for (const value of ["\u0100", "caf\u00e9 \u20ac", "\u{1F600}", "\ud800", "a\uffffb"]) {
      expect(replyFromFrame(frame([200, [["x-a", value]]])), JSON.stringify(value)).toBe("response header x-a is not valid");
    }
  });
});
