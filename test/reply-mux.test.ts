// The HTTP gateway's requests (src/node-agent/reply-mux.ts) against the bundled broker on a real port:
// each request ends exactly once, with its own reply, no responders, its deadline or the close.

import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { connect, headers, type NatsConnection } from "@nats-io/transport-node";
import { startBroker, type RunningBroker } from "../src/broker/index.js";
import { ReplyMux, type ReplyOutcome } from "../src/node-agent/reply-mux.js";

let broker: RunningBroker;
let nc: NatsConnection;
let responder: NatsConnection;

beforeEach(async () => {
  broker = await startBroker({ port: 0, jetstream: false });
  nc = await connect({ servers: broker.url });
  responder = await connect({ servers: broker.url });
});

afterEach(async () => {
  await responder?.close();
  await nc?.close();
  await broker?.close();
});

const text = (o: ReplyOutcome): string => ("reply" in o ? new TextDecoder().decode(o.reply.data) : o.failed);

function ask(mux: ReplyMux, subject: string, body: string): Promise<ReplyOutcome[]> {
  return new Promise((resolve) => {
    const outcomes: ReplyOutcome[] = [];
    mux.request(subject, new TextEncoder().encode(body), headers(), (o) => {
      outcomes.push(o);
      // Wait a little more, to see a second call if there were one.
      setTimeout(() => resolve(outcomes), 50);
    });
  });
}

describe("ReplyMux", () => {
  it("gives each of many concurrent requests its own reply, once", async () => {
    responder.subscribe("echo", { callback: (_e, m) => void m.respond(m.data) });
    await responder.flush();
    const mux = new ReplyMux(nc, 5_000);
    const results = await Promise.all(Array.from({ length: 200 }, (_, i) => ask(mux, "echo", `r${i}`)));
    expect(results.map((r) => r.map(text))).toEqual(Array.from({ length: 200 }, (_, i) => [`r${i}`]));
    mux.close();
  });

  it("tells no responders from a deadline, and drops a reply that comes after its deadline", async () => {
    const mux = new ReplyMux(nc, 150);
    expect((await ask(mux, "nobody.here", "x")).map(text)).toEqual(["no_responders"]);
    // A responder that answers late: the request has timed out by then, and the late reply changes nothing.
    responder.subscribe("slow", { callback: (_e, m) => void setTimeout(() => m.respond("late"), 400) });
    await responder.flush();
    const slow = ask(mux, "slow", "a");
    const slower = ask(mux, "slow", "b");
    expect((await slow).map(text)).toEqual(["timeout"]);
    expect((await slower).map(text)).toEqual(["timeout"]);
    await new Promise((r) => setTimeout(r, 400));
    expect((await slow).length).toBe(1);
    // And the mux still works after its timer ran dry.
    responder.subscribe("fast", { callback: (_e, m) => void m.respond("ok") });
    await responder.flush();
    expect((await ask(mux, "fast", "c")).map(text)).toEqual(["ok"]);
    mux.close();
  });

  it("ends every pending request when it closes, and answers closed afterwards", async () => {
    responder.subscribe("never", { callback: () => undefined });
    await responder.flush();
    const mux = new ReplyMux(nc, 10_000);
    const pending = [ask(mux, "never", "1"), ask(mux, "never", "2")];
    await nc.flush();
    mux.close();
    expect((await Promise.all(pending)).map((r) => r.map(text))).toEqual([["closed"], ["closed"]]);
    expect((await ask(mux, "never", "3")).map(text)).toEqual(["closed"]);
  });
});
