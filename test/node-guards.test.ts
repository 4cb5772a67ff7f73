// The node's guards on their own: replayed signatures stay refused across a node restart (they live in
// a KV bucket, not in memory), idempotency keys map to one workload id, trigger subjects overlap as NATS
// matches them, and the feed limiter passes a burst and a rate and counts the rest.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { localBrokerFor, recordLocalBroker } from "../src/node-agent/broker-credentials.js";
import { ReplayGuard } from "../src/node-agent/replay-guard.js";
import { FeedLimiter } from "../src/node-agent/feed-limiter.js";
import { subjectsOverlap } from "../src/protocol/subjects.js";
import { describeEachServer, type RunningServer, startServer } from "./helpers/servers.js";
import { errorOf } from "./helpers/wait.js";

describeEachServer("replay guard", (kind) => {
  let server: RunningServer;
  let nc: NatsConnection;

  beforeAll(async () => {
    server = await startServer(kind, { jetstream: true });
    nc = await connect({ servers: server.url });
  });

  afterAll(async () => {
    await nc?.close();
    await server?.stop();
  });

  it("refuses a signature seen before, also by a guard opened later (a restarted node)", async () => {
    const guard = await ReplayGuard.open(nc, "NODEA");
    await guard.admit("sig-one");
    expect(await errorOf(guard.admit("sig-one"))).toMatchObject({ code: 409 });
    const afterRestart = await ReplayGuard.open(nc, "NODEA");
    expect(await errorOf(afterRestart.admit("sig-one"))).toMatchObject({ code: 409 });
    await afterRestart.admit("sig-two");
    // Another node keeps its own record.
    await (await ReplayGuard.open(nc, "NODEB")).admit("sig-one");
  });

  it("gives an idempotency key's first workload id to every retry, per issuer and namespace", async () => {
    const guard = await ReplayGuard.open(nc, "NODEC");
    expect(await guard.deployOnce("ISSUER1", "ns", "k1", "w1")).toEqual({ workloadId: "w1", fresh: true });
    expect(await guard.deployOnce("ISSUER1", "ns", "k1", "w2")).toEqual({ workloadId: "w1", fresh: false });
    expect(await guard.deployOnce("ISSUER2", "ns", "k1", "w3")).toEqual({ workloadId: "w3", fresh: true });
    expect(await guard.deployOnce("ISSUER1", "other", "k1", "w4")).toEqual({ workloadId: "w4", fresh: true });
    await guard.release("ISSUER1", "ns", "k1");
    expect(await guard.deployOnce("ISSUER1", "ns", "k1", "w5")).toEqual({ workloadId: "w5", fresh: true });
  });
});

describe("the local broker's credentials", () => {
  it("are handed out for that broker only, and kept owner-only", () => {
    const home = mkdtempSync(path.join(tmpdir(), "nex-local-broker-"));
    const before = process.env.NEX_HOME;
    process.env.NEX_HOME = home;
    try {
      recordLocalBroker("nats://127.0.0.1:4222", { user: "nex", pass: "s3cret" });
      expect(statSync(path.join(home, "local-broker.json")).mode & 0o777).toBe(0o600);
      expect(localBrokerFor(["nats://127.0.0.1:4222"])).toMatchObject({ user: "nex", password: "s3cret" });
      expect(localBrokerFor(["127.0.0.1:4222"])).toMatchObject({ user: "nex" });
      for (const elsewhere of [["nats://127.0.0.1:4223"], ["nats://evil.example:4222"], ["nats://127.0.0.1:4222", "nats://evil.example:4222"], ["not a url"], []]) {
        expect(localBrokerFor(elsewhere), elsewhere.join(",")).toBeUndefined();
      }
    } finally {
      if (before === undefined) delete process.env.NEX_HOME;
      else process.env.NEX_HOME = before;
      rmSync(home, { recursive: true, force: true });
    }
  });
});

describe("subjectsOverlap", () => {
  it.each([
    ["orders.new", "orders.new", true],
    ["orders.new", "orders.old", false],
    ["orders.*", "orders.new", true],
    ["orders.>", "orders.new.eu", true],
    ["orders.>", "orders", false],
    ["orders.*", "orders.new.eu", false],
    ["a.*.c", "a.b.*", true],
    ["a.*.c", "a.b.d", false],
    ["a.b", "a.b.c", false],
    ["a.>", "*.b", true],
  ])("%s and %s: %s", (a, b, expected) => {
    expect(subjectsOverlap(a, b)).toBe(expected);
    expect(subjectsOverlap(b, a)).toBe(expected);
  });
});

describe("FeedLimiter", () => {
  it("passes the burst, then the rate, and reports what it dropped", () => {
    const reports: [string, number][] = [];
    const limiter = new FeedLimiter({ perSecond: 10, burst: 5, bytesPerSecond: 1_000_000, burstBytes: 1_000_000 }, (k, n) => reports.push([k, n]));
    const passed = (at: number, n: number) => Array.from({ length: n }, () => limiter.admit("w", 1, at)).filter(Boolean).length;
    expect(passed(0, 20)).toBe(5);
    expect(passed(1000, 20)).toBe(5); // one second refills 10, capped at the burst of 5
    expect(passed(1100, 5)).toBe(1);
    limiter.forget("w");
    limiter.close();
    expect(reports).toEqual([["w", 34]]);
  });

  it("limits bytes as well as lines", () => {
    const limiter = new FeedLimiter({ perSecond: 1000, burst: 1000, bytesPerSecond: 100, burstBytes: 100 }, () => undefined);
    expect(limiter.admit("w", 80, 0)).toBe(true);
    expect(limiter.admit("w", 80, 0)).toBe(false);
    expect(limiter.admit("w", 80, 1000)).toBe(true);
    limiter.close();
  });
});
