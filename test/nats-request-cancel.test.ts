// src/util/nats-request-cancel.ts against the bundled broker on a real port: with the patch, an
// answered request builds no RequestError, and every way a request ends still ends it as nats.js does.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect, errors, type NatsConnection } from "@nats-io/transport-node";
import { createRequire } from "node:module";
import path from "node:path";
import { startBroker, type RunningBroker } from "../src/broker/index.js";
import { answeredRequestsSkipCancel, skipCancelOfAnsweredRequests } from "../src/util/nats-request-cancel.js";

// nats.js' own errors module, by file (the package exports no path to it): request.js reads
// RequestError from its exports object at each use, so a class swapped in there sees every one built.
const require = createRequire(import.meta.url);
const coreErrors = require(path.join(path.dirname(require.resolve("@nats-io/nats-core")), "errors.js")) as {
  RequestError: new (message?: string, options?: ErrorOptions) => Error;
};

let broker: RunningBroker;
let nc: NatsConnection;

beforeAll(async () => {
  expect(skipCancelOfAnsweredRequests()).toBe(true);
  broker = await startBroker({ port: 0, jetstream: false });
  nc = await connect({ servers: broker.url, noAsyncTraces: true });
});

afterAll(async () => {
  await nc?.close();
  await broker?.close();
});

/** How many RequestErrors nats.js builds while `work` runs (request.js reads the class from this module's exports). */
async function requestErrorsBuiltDuring(work: () => Promise<void>): Promise<number> {
  const original = coreErrors.RequestError;
  let built = 0;
  coreErrors.RequestError = class extends original {
    constructor(message?: string, options?: ErrorOptions) {
      super(message, options);
      built++;
    }
  };
  try {
    await work();
  } finally {
    coreErrors.RequestError = original;
  }
  return built;
}

describe("answered requests skip the cancel's RequestError", () => {
  it("is applied once, and a second call keeps it", () => {
    expect(answeredRequestsSkipCancel()).toBe(true);
    expect(skipCancelOfAnsweredRequests()).toBe(true);
  });

  it("an answered request resolves with its reply and builds no RequestError", async () => {
    const sub = nc.subscribe("patch.echo", { callback: (_e, m) => void m.respond(m.data) });
    await nc.flush();
    const built = await requestErrorsBuiltDuring(async () => {
      for (let i = 0; i < 50; i++) {
        const reply = await nc.request("patch.echo", `hello ${i}`, { timeout: 2000 });
        expect(reply.string()).toBe(`hello ${i}`);
      }
    });
    expect(built).toBe(0);
    sub.unsubscribe();
  });

  it("a request nobody answers in time still rejects with a timeout", async () => {
    const sub = nc.subscribe("patch.silent", { callback: () => undefined });
    await nc.flush();
    await expect(nc.request("patch.silent", "x", { timeout: 100 })).rejects.toBeInstanceOf(errors.TimeoutError);
    sub.unsubscribe();
  });

  it("a request with no responders still rejects with no responders", async () => {
    const err = await nc.request("patch.nobody", "x", { timeout: 2000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as { isNoResponders?: () => boolean }).isNoResponders?.()).toBe(true);
  });

  it("a request open when the connection closes still rejects", async () => {
    const own = await connect({ servers: broker.url, noAsyncTraces: true });
    const sub = own.subscribe("patch.closing", { callback: () => undefined });
    await own.flush();
    const pending = own.request("patch.closing", "x", { timeout: 5000 }).then(
      () => "resolved",
      (e: unknown) => (e instanceof Error ? e.message : String(e)),
    );
    await own.close();
    expect(await pending).toMatch(/closed/i);
    sub.unsubscribe();
  });
});
