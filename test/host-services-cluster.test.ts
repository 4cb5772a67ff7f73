// Host services against a real 3-server JetStream cluster losing servers: calls retry while the bucket's
// stream has no leader, and fail with code `unavailable` naming the cause when it does not come back in
// time. Timings are printed, never asserted.

import { Kvm } from "@nats-io/kv";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HostServices } from "../src/host-services/server.js";
import { HostHeaders } from "../src/protocol/host-services.js";
import { type NatsCluster, startNatsCluster } from "../bench/nats-cluster.js";
import { unavailableReason } from "./helpers/servers.js";

const WORKLOAD = { id: "wl-1", name: "todo", namespace: "default" };
const STREAM = "KV_hs_default_todo";
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe.skipIf(unavailableReason("nats-server") !== undefined)("host services on a JetStream cluster losing servers", () => {
  let cluster: NatsCluster;
  let nc: NatsConnection;
  let hs: HostServices;

  function call(method: string, key: string, value = "", timeoutMs = 5000) {
    const h: Record<string, string> = { [HostHeaders.key]: key, [HostHeaders.timeoutMs]: String(timeoutMs) };
    return hs.invoke(WORKLOAD, "kv", method, (n) => h[n], new TextEncoder().encode(value));
  }

  beforeAll(async () => {
    cluster = await startNatsCluster({ size: 3 });
    await cluster.waitForJetStream();
    nc = await cluster.connect();
    // The bucket replicated on all three (nex itself creates R1 until --js-replicas lands).
    await new Kvm(nc).create("hs_default_todo", { replicas: 3 });
    await cluster.waitForStreamCurrent(STREAM);
    hs = new HostServices(nc, pino({ level: "silent" }));
  }, 60_000);

  afterAll(async () => {
    hs?.close();
    await nc?.close().catch(() => {});
    await cluster?.stop();
  });

  it("retries through a kill -9 of the stream leader: each set succeeds or says unavailable, never internal", async () => {
    expect((await call("set", "before", "1")).headers[HostHeaders.errorCode]).toBeUndefined();
    const leader = (await cluster.streamLeader(STREAM))!;
    await cluster.server(leader).kill9();
    const t0 = Date.now();
    const results: string[] = [];
    // Sets in turn for 8 s after the kill: the first ones wait out the election.
    for (let i = 0; Date.now() - t0 < 8000; i++) {
      const started = Date.now() - t0;
      const a = await call("set", `k${i}`, "v");
      const code = a.headers[HostHeaders.errorCode];
      results.push(`${started}+${Date.now() - t0 - started}ms ${code ?? "ok"}${code ? `: ${String(a.body)}` : ""}`);
      expect(code === undefined || code === "unavailable", String(a.body)).toBe(true);
      if (code) expect(String(a.body)).toMatch(/^JetStream temporarily unavailable: .* \(retried for \d+ ms\)$/);
    }
    console.log(`kill -9 of ${leader}, the leader of ${STREAM}; new leader ${await cluster.streamLeader(STREAM)}; sets (start+duration):\n  ${results.slice(0, 8).join("\n  ")}\n  ... ${results.length} sets`);
    await cluster.server(leader).start();
    await cluster.waitForRoutes();
    await cluster.waitForJetStream();
    await cluster.waitForStreamCurrent(STREAM);
  }, 60_000);

  it("a set in flight when the host service's own server stops does not wait out nats.js' 5 s", async () => {
    // A connection that starts on the stream's leader (noRandomize), as a node's may.
    const leader = (await cluster.streamLeader(STREAM))!;
    const first = cluster.server(leader);
    const own = await connect({ servers: [first.url, ...cluster.servers.filter((s) => s !== first).map((s) => s.url)], noRandomize: true, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
    const services = new HostServices(own, pino({ level: "silent" }));
    const set = (key: string) => {
      const h: Record<string, string> = { [HostHeaders.key]: key };
      return services.invoke(WORKLOAD, "kv", "set", (n) => h[n], new TextEncoder().encode("v"));
    };
    try {
      expect((await set("warm")).headers[HostHeaders.errorCode]).toBeUndefined();
      let stop = false;
      const took: number[] = [];
      const codes = new Map<string, number>();
      // Eight sets at a time, continuously, while the server goes away under them.
      const workers = Array.from({ length: 8 }, async (_, w) => {
        for (let i = 0; !stop; i++) {
          const t = Date.now();
          const a = await set(`w${w}-${i}`);
          took.push(Date.now() - t);
          const c = a.headers[HostHeaders.errorCode] ?? "ok";
          const k = c === "ok" ? c : `${c}: ${String(a.body).replace(/\d+ ms/, "N ms")}`;
          codes.set(k, (codes.get(k) ?? 0) + 1);
        }
      });
      await sleep(300);
      await first.stop();
      await sleep(3000);
      stop = true;
      await Promise.all(workers);
      took.sort((a, b) => a - b);
      console.log(`sets while ${leader} (leader, and the connection's server) stopped: ${took.length}, slowest ${took.slice(-5).join(", ")} ms; ${[...codes].map(([c, n]) => `${n}x ${c}`).join("; ")}`);
      for (const c of codes.keys()) expect(c === "ok" || c.startsWith("unavailable"), c).toBe(true);
    } finally {
      services.close();
      await own.close().catch(() => {});
      await first.start();
      await cluster.waitForRoutes();
      await cluster.waitForJetStream();
      await cluster.waitForStreamCurrent(STREAM);
    }
  }, 60_000);

  it("without a quorum, fails with unavailable naming the stream within the call's time; works again after", async () => {
    const [, b, c] = cluster.servers;
    await b.stop();
    await c.stop();
    const t0 = Date.now();
    const a = await call("set", "no-quorum", "v", 1500);
    const took = Date.now() - t0;
    const get = await call("get", "before", "", 1500);
    console.log(`no quorum: set answered in ${took} ms: ${a.headers[HostHeaders.errorCode]}: ${String(a.body)}; get: ${get.headers[HostHeaders.errorCode] ?? "ok"} ${get.headers[HostHeaders.errorCode] ? String(get.body) : ""}`);
    expect(a.headers[HostHeaders.errorCode]).toBe("unavailable");
    expect(String(a.body)).toMatch(/^JetStream temporarily unavailable: (stream KV_hs_default_todo has no leader|JetStream did not answer in time \(stream KV_hs_default_todo\)) \(retried for \d+ ms\)$/);
    await b.start();
    await c.start();
    await cluster.waitForRoutes();
    await cluster.waitForJetStream();
    await cluster.waitForStreamCurrent(STREAM);
    expect((await call("set", "after", "v")).headers[HostHeaders.errorCode]).toBeUndefined();
  }, 60_000);
});
