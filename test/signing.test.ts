import { describe, expect, it } from "vitest";
import { createAccount, createUser, fromPublic } from "@nats-io/nkeys";
import { signRequest, SIGNATURE_HEADER, verifyRequest } from "../src/protocol/signing.js";

describe("request signing", () => {
  const issuer = createAccount();
  const body = new TextEncoder().encode('{"hello":"world"}');

  it("produces the signature nkeys would, and verifies it", () => {
    const headers = signRequest(issuer, "$NEX.SVC.default.control.DEPLOY.N1", body);
    const sig = Buffer.from(headers[SIGNATURE_HEADER], "base64url");
    const expected = issuer.sign(new TextEncoder().encode(`$NEX.SVC.default.control.DEPLOY.N1\n{"hello":"world"}`));
    expect(sig.equals(Buffer.from(expected))).toBe(true);
    expect(fromPublic(issuer.getPublicKey()).verify(new TextEncoder().encode(`$NEX.SVC.default.control.DEPLOY.N1\n{"hello":"world"}`), sig)).toBe(true);
    expect(verifyRequest("$NEX.SVC.default.control.DEPLOY.N1", body, issuer.getPublicKey(), headers[SIGNATURE_HEADER])).toEqual({ issuer: issuer.getPublicKey() });
  });

  it("refuses another subject, another body, another key and garbage", () => {
    const sig = signRequest(issuer, "a.b", body)[SIGNATURE_HEADER];
    expect(verifyRequest("a.c", body, issuer.getPublicKey(), sig)).toHaveProperty("problem");
    expect(verifyRequest("a.b", new Uint8Array([1]), issuer.getPublicKey(), sig)).toHaveProperty("problem");
    expect(verifyRequest("a.b", body, createUser().getPublicKey(), sig)).toHaveProperty("problem");
    expect(verifyRequest("a.b", body, "not-a-key", sig)).toHaveProperty("problem");
    expect(verifyRequest("a.b", body, issuer.getPublicKey(), "AAAA")).toHaveProperty("problem");
    expect(verifyRequest("a.b", body, undefined, undefined)).toEqual({ problem: expect.stringMatching(/not signed/) });
  });
});
