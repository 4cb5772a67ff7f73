// Host services on the bus: KV, object store and messaging requests as a runtime sends them, malformed
// requests, limits, and namespace isolation. Real broker, real NATS client.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pino from "pino";
import { jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { connect, headers as natsHeaders, type Msg, type NatsConnection } from "@nats-io/transport-node";
import { type RunningBroker, startBroker } from "../src/broker/index.js";
import { HostServices, MAX_BUCKETS_PER_NAMESPACE } from "../src/host-services/server.js";
import { HostHeaders, hostSubject, hostValueLimit, type HostService } from "../src/protocol/host-services.js";

let broker: RunningBroker;
let nc: NatsConnection;
let hs: HostServices;
const A = { id: "wa", name: "shop", namespace: "alpha" };
const B = { id: "wb", name: "shop", namespace: "beta" };

async function call(w: typeof A, service: HostService, method: string, headers: Record<string, string> = {}, body: Uint8Array | string = ""): Promise<Msg> {
  const h = natsHeaders();
  for (const [k, v] of Object.entries(headers)) h.set(k, v);
  return nc.request(hostSubject(w.namespace, w.id, service, method), body, { timeout: 10_000, headers: h });
}

function errorOf(m: Msg): { code: string | undefined; message: string } {
  return { code: m.headers?.get(HostHeaders.errorCode) || undefined, message: m.string() };
}

beforeAll(async () => {
  broker = await startBroker({ port: 0 });
  nc = await connect({ servers: broker.url });
  hs = new HostServices(nc, pino({ level: "silent" }), { kvMaxBytes: 1024 * 1024, objectMaxBytes: 16 * 1024 * 1024 });
  hs.attach(A);
  hs.attach(B);
  await nc.flush();
});

afterAll(async () => {
  hs?.close();
  await nc?.close();
  await broker?.close();
});

describe("kv", () => {
  it("sets, gets with a revision, lists keys and deletes", async () => {
    const set = await call(A, "kv", "set", { [HostHeaders.key]: "k1" }, "v1");
    expect(errorOf(set).code).toBeUndefined();
    const revision = Number(set.headers?.get(HostHeaders.revision));
    expect(revision).toBeGreaterThan(0);
    const get = await call(A, "kv", "get", { [HostHeaders.key]: "k1" });
    expect(get.string()).toBe("v1");
    expect(Number(get.headers?.get(HostHeaders.revision))).toBe(revision);
    await call(A, "kv", "set", { [HostHeaders.key]: "k2" }, "v2");
    expect((await call(A, "kv", "keys")).json()).toEqual(["k1", "k2"]);
    expect(errorOf(await call(A, "kv", "delete", { [HostHeaders.key]: "k2" })).code).toBeUndefined();
    expect(errorOf(await call(A, "kv", "get", { [HostHeaders.key]: "k2" })).code).toBe("not_found");
  });

  it("creates only if absent and updates only at the right revision", async () => {
    const created = await call(A, "kv", "create", { [HostHeaders.key]: "once" }, "1");
    const rev = created.headers?.get(HostHeaders.revision) as string;
    expect(rev).toBeTruthy();
    expect(errorOf(await call(A, "kv", "create", { [HostHeaders.key]: "once" }, "2")).code).toBe("exists");
    const wrong = errorOf(await call(A, "kv", "update", { [HostHeaders.key]: "once", [HostHeaders.revision]: String(Number(rev) + 5) }, "3"));
    expect(wrong.code).toBe("wrong_revision");
    expect(errorOf(await call(A, "kv", "update", { [HostHeaders.key]: "once", [HostHeaders.revision]: rev }, "4")).code).toBeUndefined();
    expect((await call(A, "kv", "get", { [HostHeaders.key]: "once" })).string()).toBe("4");
  });

  it("opens another bucket of the namespace with Nex-Bucket", async () => {
    await call(A, "kv", "set", { [HostHeaders.key]: "x", [HostHeaders.bucket]: "shared" }, "in shared");
    expect(errorOf(await call(A, "kv", "get", { [HostHeaders.key]: "x" })).code).toBe("not_found");
    expect((await call(A, "kv", "get", { [HostHeaders.key]: "x", [HostHeaders.bucket]: "shared" })).string()).toBe("in shared");
  });

  it("keeps namespaces apart: same workload name, different namespace, different data", async () => {
    await call(A, "kv", "set", { [HostHeaders.key]: "secret" }, "alpha only");
    expect(errorOf(await call(B, "kv", "get", { [HostHeaders.key]: "secret" })).code).toBe("not_found");
    expect(errorOf(await call(B, "kv", "get", { [HostHeaders.key]: "secret", [HostHeaders.bucket]: "shared" })).code).toBe("not_found");
  });

  it.each([
    ["a missing key header", "get", {}, "bad_request"],
    ["an invalid key", "get", { [HostHeaders.key]: "has space" }, "bad_request"],
    ["an invalid bucket", "get", { [HostHeaders.key]: "k", [HostHeaders.bucket]: "no/slash" }, "bad_request"],
    ["an unknown method", "frobnicate", {}, "bad_request"],
    ["a non-numeric revision", "update", { [HostHeaders.key]: "k", [HostHeaders.revision]: "abc" }, "bad_request"],
  ])("answers %s with an error and changes nothing", async (_n, method, headers, code) => {
    const before = (await call(A, "kv", "keys")).json();
    expect(errorOf(await call(A, "kv", method, headers as Record<string, string>)).code).toBe(code);
    expect((await call(A, "kv", "keys")).json()).toEqual(before);
  });

  it("refuses a value over the size limit (max_payload less room for headers), though the message fits", async () => {
    const big = new Uint8Array(hostValueLimit(nc.info?.max_payload) + 1);
    const res = errorOf(await call(A, "kv", "set", { [HostHeaders.key]: "big" }, big));
    expect(res.code).toBe("too_large");
    expect(errorOf(await call(A, "kv", "get", { [HostHeaders.key]: "big" })).code).toBe("not_found");
  });
});

describe("kv keys", () => {
  it("answers too_large, without listing them, when the keys would not fit in one 8 MiB answer; a filter that fits still works", async () => {
    // A bucket as large as the default (this file's other buckets are 1 MiB).
    const big = new HostServices(nc, pino({ level: "silent" }), { kvMaxBytes: 64 * 1024 * 1024, objectMaxBytes: 16 * 1024 * 1024 });
    const C = { id: "wk", name: "keys", namespace: "delta" };
    big.attach(C);
    await nc.flush();
    expect(errorOf(await call(C, "kv", "set", { [HostHeaders.key]: "first" }, "1")).code).toBeUndefined();
    // About 8.4 MB of key names: 35,000 keys of 240 characters, written straight to the bucket.
    const kv = await new Kvm(nc).open("hs_delta_keys");
    const pad = "x".repeat(233);
    for (let i = 0; i < 35_000; i += 1000) {
      await Promise.all(Array.from({ length: 1000 }, (_, j) => kv.put(`k${String(i + j).padStart(6, "0")}.${pad}`, "v")));
    }
    const tooMany = errorOf(await call(C, "kv", "keys", {}, ""));
    expect(tooMany.code).toBe("too_large");
    expect(tooMany.message).toMatch(/narrower filter/);
    expect((await call(C, "kv", "keys", { [HostHeaders.filter]: "first" })).json()).toEqual(["first"]);
    big.close();
  }, 120_000);
});

describe("bucket count", () => {
  it(`lets a namespace use ${MAX_BUCKETS_PER_NAMESPACE} key-value buckets, refuses more (forbidden), and keeps the others working`, async () => {
    const C = { id: "wc", name: "many", namespace: "gamma" };
    hs.attach(C);
    await nc.flush();
    // Its own bucket counts as one; fill up to the cap with named ones.
    expect(errorOf(await call(C, "kv", "set", { [HostHeaders.key]: "k" }, "own")).code).toBeUndefined();
    for (let i = 1; i < MAX_BUCKETS_PER_NAMESPACE; i++) {
      expect(errorOf(await call(C, "kv", "set", { [HostHeaders.key]: "k", [HostHeaders.bucket]: `b${i}` }, String(i))).code, `bucket b${i}`).toBeUndefined();
    }
    const refused = errorOf(await call(C, "kv", "set", { [HostHeaders.key]: "k", [HostHeaders.bucket]: "one-more" }, "x"));
    expect(refused.code).toBe("forbidden");
    expect(refused.message).toMatch(new RegExp(`${MAX_BUCKETS_PER_NAMESPACE} key-value buckets`));
    await expect((await jetstreamManager(nc)).streams.info("KV_hs_gamma_one-more")).rejects.toThrow(/stream not found/);
    // The buckets it has still work, and so does another namespace's first named bucket.
    expect((await call(C, "kv", "get", { [HostHeaders.key]: "k", [HostHeaders.bucket]: "b1" })).string()).toBe("1");
    expect(errorOf(await call(B, "kv", "set", { [HostHeaders.key]: "k", [HostHeaders.bucket]: "fresh" }, "ok")).code).toBeUndefined();
  });
});

describe("object store", () => {
  it("puts, gets, lists and deletes objects bigger than one message", async () => {
    const data = new Uint8Array(60 * 1024).map((_, i) => i % 251);
    const put = await call(A, "objectStore", "put", { [HostHeaders.key]: "blob.bin" }, data);
    expect((put.json() as { size: number }).size).toBe(data.length);
    const got = await call(A, "objectStore", "get", { [HostHeaders.key]: "blob.bin" });
    expect(Buffer.compare(Buffer.from(got.data), Buffer.from(data))).toBe(0);
    expect((await call(A, "objectStore", "list")).json()).toMatchObject([{ name: "blob.bin", size: data.length }]);
    expect(errorOf(await call(A, "objectStore", "delete", { [HostHeaders.key]: "blob.bin" })).code).toBeUndefined();
    expect(errorOf(await call(A, "objectStore", "get", { [HostHeaders.key]: "blob.bin" })).code).toBe("not_found");
    expect(errorOf(await call(B, "objectStore", "info", { [HostHeaders.key]: "blob.bin" })).code).toBe("not_found");
  });
});

describe("messaging", () => {
  it("publishes and requests within allowed subjects", async () => {
    const sub = nc.subscribe("orders.new", { max: 1 });
    const responder = nc.subscribe("price.check", { callback: (_e, m) => void m.respond(`price of ${m.string()}`) });
    await nc.flush();
    await call(A, "messaging", "publish", { [HostHeaders.subject]: "orders.new" }, "o1");
    for await (const m of sub) expect(m.string()).toBe("o1");
    expect((await call(A, "messaging", "request", { [HostHeaders.subject]: "price.check" }, "tea")).string()).toBe("price of tea");
    responder.unsubscribe();
  });

  it("gathers several replies with requestMany", async () => {
    const subs = [1, 2, 3].map((n) => nc.subscribe("census", { callback: (_e, m) => void m.respond(`r${n}`) }));
    await nc.flush();
    const reply = await call(A, "messaging", "requestMany", { [HostHeaders.subject]: "census", [HostHeaders.maxMessages]: "3", [HostHeaders.timeoutMs]: "2000" });
    const values = (reply.json() as string[]).map((b) => Buffer.from(b, "base64").toString()).sort();
    expect(values).toEqual(["r1", "r2", "r3"]);
    for (const s of subs) s.unsubscribe();
  });

  it.each(["$NEX.SVC.default.control.PING", "$JS.API.INFO", "$SYS.REQ.SERVER.PING", "_INBOX.steal"])("refuses %s", async (subject) => {
    expect(errorOf(await call(A, "messaging", "publish", { [HostHeaders.subject]: subject }, "x")).code).toBe("forbidden");
  });

  it("reports no responders and timeouts as codes", async () => {
    expect(errorOf(await call(A, "messaging", "request", { [HostHeaders.subject]: "nobody.home" })).code).toBe("no_responders");
    const slow = nc.subscribe("slow.service", { callback: () => undefined });
    await nc.flush();
    expect(errorOf(await call(A, "messaging", "request", { [HostHeaders.subject]: "slow.service", [HostHeaders.timeoutMs]: "200" })).code).toBe("timeout");
    slow.unsubscribe();
  });

  it("refuses wildcard subjects", async () => {
    expect(errorOf(await call(A, "messaging", "publish", { [HostHeaders.subject]: "orders.*" })).code).toBe("bad_request");
  });
});
