import { describe, expect, it } from "vitest";
import { createAccount, createCurve, createServer, createUser, fromPublic } from "@nats-io/nkeys";
import { nodeXkeyIsSigned, requestAgeProblem, signNodeXkey, signRequest, SIGNATURE_HEADER, verifyRequest } from "../src/protocol/signing.js";
import { type GrantBody, type SignedGrant, signGrant, verifyGrant } from "../src/protocol/grants.js";

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

  it("refuses another spelling of a valid signature (a replay must not pass as new)", () => {
    const sig = signRequest(issuer, "a.b", body)[SIGNATURE_HEADER];
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const last = alphabet.indexOf(sig.at(-1) as string);
    const spareBits = sig.slice(0, -1) + alphabet[(last & ~3) | ((last + 1) & 3)];
    const base64 = sig.replace(/-/g, "+").replace(/_/g, "/");
    for (const spelling of [spareBits, base64 === sig ? `${sig}=` : base64, `${sig}==`]) {
      expect(Buffer.from(spelling, "base64url").equals(Buffer.from(sig, "base64url"))).toBe(true);
      expect(verifyRequest("a.b", body, issuer.getPublicKey(), spelling)).toEqual({ problem: expect.stringMatching(/canonical/) });
    }
  });
});

describe("request age", () => {
  const now = Date.parse("2026-12-06T12:00:00Z");
  it.each([
    ["now", "2026-12-06T12:00:00Z", undefined],
    ["4 minutes old", "2026-12-06T11:56:00Z", undefined],
    ["10 s ahead (clock skew)", "2026-12-06T12:00:10Z", undefined],
    ["6 minutes old", "2026-12-06T11:54:00Z", /older/],
    ["4.5 minutes ahead", "2026-12-06T12:04:30Z", /future/],
    ["not a date", "yesterday", /not a date/],
  ])("%s", (_name, at, problem) => {
    const found = requestAgeProblem(at, now);
    if (problem === undefined) expect(found).toBeUndefined();
    else expect(found).toMatch(problem);
  });
});

describe("a node's signed xkey", () => {
  const node = createServer();
  const xkey = createCurve().getPublicKey();
  const sig = signNodeXkey(node, xkey);

  it("verifies for that node and that xkey only", () => {
    expect(nodeXkeyIsSigned(node.getPublicKey(), xkey, sig)).toBe(true);
    expect(nodeXkeyIsSigned(node.getPublicKey(), createCurve().getPublicKey(), sig)).toBe(false);
    expect(nodeXkeyIsSigned(createServer().getPublicKey(), xkey, sig)).toBe(false);
  });

  it("refuses garbage, a missing signature and ids that are not node keys", () => {
    expect(nodeXkeyIsSigned(node.getPublicKey(), xkey, undefined)).toBe(false);
    expect(nodeXkeyIsSigned(node.getPublicKey(), xkey, "AAAA")).toBe(false);
    expect(nodeXkeyIsSigned(node.getPublicKey(), xkey, "x".repeat(100_000))).toBe(false);
    expect(nodeXkeyIsSigned(createAccount().getPublicKey(), xkey, sig)).toBe(false);
    expect(nodeXkeyIsSigned("N" + "A".repeat(55), xkey, sig)).toBe(false); // right shape, bad checksum
  });
});

describe("deploy grants", () => {
  const issuer = createAccount();
  const body: GrantBody = {
    version: 1,
    kind: "nex-deploy-grant",
    grant_id: "0123456789abcdef0123456789abcdef",
    namespace: "default",
    artifacts: [{ name: "table.js", sha256: "a".repeat(64), type: "javascript" }],
    max_children: 3,
    issued_at: new Date().toISOString(),
  };

  it("verifies a grant its issuer signed, and gives back its body", () => {
    expect(verifyGrant(signGrant(issuer, body))).toEqual({ body });
  });

  it("refuses a grant whose body was changed, whose issuer was swapped, or that another key signed", () => {
    const grant = signGrant(issuer, body);
    const raised = { ...grant, body: grant.body.replace('"max_children":3', '"max_children":999') };
    expect(raised.body).not.toBe(grant.body);
    expect(verifyGrant(raised)).toHaveProperty("problem");
    expect(verifyGrant({ ...grant, issuer: createAccount().getPublicKey() })).toHaveProperty("problem");
    const other = createAccount();
    expect(verifyGrant({ ...signGrant(other, body), issuer: issuer.getPublicKey() })).toHaveProperty("problem");
  });

  it("refuses malformed grants, a body that is not JSON and one that breaks the schema, even when signed", () => {
    expect(verifyGrant({ ...signGrant(issuer, body), issuer: createUser().getPublicKey() })).toEqual({ problem: "grant is malformed" });
    expect(verifyGrant({ body: "", issuer: issuer.getPublicKey(), signature: "x" } as SignedGrant)).toEqual({ problem: "grant is malformed" });
    const signText = (text: string): SignedGrant => ({
      body: text,
      issuer: issuer.getPublicKey(),
      signature: signRequest(issuer, "nex-deploy-grant", new TextEncoder().encode(text))[SIGNATURE_HEADER],
    });
    expect(verifyGrant(signText("not json"))).toEqual({ problem: "grant body is not JSON" });
    expect(verifyGrant(signText(JSON.stringify({ ...body, max_children: 5000 })))).toMatchObject({ problem: expect.stringMatching(/^grant body is invalid: max_children/) });
    expect(verifyGrant(signText(JSON.stringify({ ...body, extra: true })))).toMatchObject({ problem: expect.stringMatching(/^grant body is invalid/) });
  });

  it("a grant's signature does not sign a deploy request with the same body, nor the other way round", () => {
    const grant = signGrant(issuer, body);
    const deploySubject = "$NEX.SVC.default.control.DEPLOY.N1";
    expect(verifyRequest(deploySubject, new TextEncoder().encode(grant.body), issuer.getPublicKey(), grant.signature)).toHaveProperty("problem");
    const requestSig = signRequest(issuer, deploySubject, new TextEncoder().encode(grant.body))[SIGNATURE_HEADER];
    expect(verifyGrant({ ...grant, signature: requestSig })).toHaveProperty("problem");
  });
});
