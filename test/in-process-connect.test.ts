// The node agent's connection to its bundled broker in memory (src/broker/in-process.ts,
// src/node-agent/in-process-connect.ts): the whole protocol still runs (credentials, permissions,
// request/reply with headers, slow consumers, the broker going away), only without a socket.

import { afterEach, describe, expect, it } from "vitest";
import { connect, headers, type NatsConnection } from "@nats-io/transport-node";
import { startBroker, type RunningBroker } from "../src/broker/index.js";
import { connectLocalFirst } from "../src/node-agent/in-process-connect.js";
import { startServer } from "./helpers/servers.js";

let broker: RunningBroker | undefined;
const open: NatsConnection[] = [];

afterEach(async () => {
  for (const nc of open.splice(0)) await nc.close().catch(() => undefined);
  await broker?.close();
  broker = undefined;
});

const kinds = (b: RunningBroker): string[] => [...b.broker.clients.values()].map((c) => c.transport.kind).sort();

describe("in-process connections", () => {
  it("carry pub/sub and request/reply with headers to TCP clients and back, in memory", async () => {
    broker = await startBroker({ port: 0, jetstream: false });
    const local = await connectLocalFirst({ servers: broker.url });
    const remote = await connect({ servers: broker.url });
    open.push(local, remote);
    expect(kinds(broker)).toEqual(["in-process", "tcp"]);
    remote.subscribe("echo", { callback: (_e, m) => void m.respond(m.data, { headers: m.headers }) });
    await remote.flush();
    const h = headers();
    h.set("X-Trace", "t1");
    const reply = await local.request("echo", "hello", { timeout: 2000, headers: h });
    expect(reply.string()).toBe("hello");
    expect(reply.headers?.get("X-Trace")).toBe("t1");
    // And the other way: a TCP client's many publishes reach the in-memory subscriber in order.
    const got: string[] = [];
    const done = new Promise<void>((resolve) =>
      local.subscribe("feed", {
        callback: (_e, m) => {
          if (got.push(m.string()) === 1000) resolve();
        },
      }),
    );
    await local.flush();
    for (let i = 0; i < 1000; i++) remote.publish("feed", String(i));
    await done;
    expect(got).toEqual(Array.from({ length: 1000 }, (_, i) => String(i)));
  });

  it("present their credentials and obey their permissions like any client", async () => {
    broker = await startBroker({
      port: 0,
      jetstream: false,
      auth: { users: [{ user: "node", password: "secret-pw", permissions: { publish: { allow: ["ok.>"] }, subscribe: { allow: ["ok.>", "_INBOX.>"] } } }] },
    });
    await expect(connectLocalFirst({ servers: broker.url, user: "node", pass: "wrong", maxReconnectAttempts: 0 })).rejects.toThrow(/Authorization/i);
    const nc = await connectLocalFirst({ servers: broker.url, user: "node", pass: "secret-pw" });
    open.push(nc);
    const errors: string[] = [];
    void (async () => {
      for await (const s of nc.status()) if (s.type === "error") errors.push(String(s.error));
    })();
    nc.publish("denied.x", "no");
    await nc.flush();
    await new Promise((r) => setTimeout(r, 50));
    expect(errors.join("\n")).toMatch(/Permissions Violation for Publish to "denied\.x"/);
  });

  it("deliver what nats.js handed them right before the client closed", async () => {
    broker = await startBroker({ port: 0, jetstream: false });
    const remote = await connect({ servers: broker.url });
    open.push(remote);
    const got: string[] = [];
    remote.subscribe("last.>", { callback: (_e, m) => void got.push(m.string()) });
    await remote.flush();
    const nc = await connectLocalFirst({ servers: broker.url });
    for (let i = 0; i < 10; i++) nc.publish(`last.${i}`, String(i));
    // nats.js hands its buffered publishes to the transport on the next microtask; close() follows at once.
    await Promise.resolve();
    await nc.close();
    await waitFor(() => got.length === 10);
    expect(got).toEqual(Array.from({ length: 10 }, (_, i) => String(i)));
  });

  it("end when the client closes, and the client reconnects when the broker drops it", async () => {
    broker = await startBroker({ port: 0, jetstream: false });
    const nc = await connectLocalFirst({ servers: broker.url, reconnectTimeWait: 50 });
    open.push(nc);
    const statuses: string[] = [];
    void (async () => {
      for await (const s of nc.status()) statuses.push(s.type);
    })();
    // The broker cuts the connection (as for an authorization change); the client comes back in memory.
    for (const c of broker.broker.clients.values()) c.closeWithError("Authorization Violation");
    await waitFor(() => statuses.includes("reconnect"));
    expect(kinds(broker)).toEqual(["in-process"]);
    const sub = nc.subscribe("after", { max: 1 });
    await nc.flush();
    nc.publish("after", "yes");
    for await (const m of sub) expect(m.string()).toBe("yes");
    await nc.close();
    await waitFor(() => broker!.broker.clients.size === 0);
  });

  it("reach each broker of this process at its own address, and go over TCP to a server outside it", async () => {
    broker = await startBroker({ port: 0, jetstream: false });
    const other = await startBroker({ port: 0, jetstream: false });
    const external = await startServer("nats-server");
    try {
      const a = await connectLocalFirst({ servers: other.url });
      const b = await connectLocalFirst({ servers: external.url });
      open.push(a, b);
      expect(kinds(other)).toEqual(["in-process"]);
      expect(kinds(broker)).toEqual([]);
      b.subscribe("x", { callback: (_e, m) => void m.respond("from nats-server") });
      await b.flush();
      expect((await b.request("x", "", { timeout: 2000 })).string()).toBe("from nats-server");
    } finally {
      await other.close();
      await external.stop();
    }
  });
});

async function waitFor(ok: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !ok(); i++) await new Promise((r) => setTimeout(r, 10));
  expect(ok()).toBe(true);
}
