// What every JetStream suite sets up: one server per suite with JetStream on, and client connections
// that are closed after each test.

import { afterAll, afterEach, beforeAll } from "vitest";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { type RunningServer, type ServerKind, startServer } from "./servers.js";

export interface JetStreamFixture {
  server(): RunningServer;
  /** A connection (no reconnect) closed after the current test. */
  nc(url?: string): Promise<NatsConnection>;
}

export function useJetStreamServer(kind: ServerKind): JetStreamFixture {
  let server: RunningServer | undefined;
  const open: NatsConnection[] = [];
  beforeAll(async () => {
    server = await startServer(kind, { jetstream: true });
  });
  afterAll(async () => {
    await server?.stop();
  });
  afterEach(async () => {
    await Promise.all(open.splice(0).map((nc) => nc.close().catch(() => undefined)));
  });
  const current = (): RunningServer => {
    if (!server) throw new Error("the JetStream server is not started yet");
    return server;
  };
  return {
    server: current,
    nc: async (url = current().url) => {
      const c = await connect({ servers: url, reconnect: false });
      open.push(c);
      return c;
    },
  };
}
