// The bundled NATS broker, embedded: `const broker = await startBroker({ port: 0 })`.

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import pino, { type Logger } from "pino";
import { JetStream } from "./jetstream/jetstream.js";
import { Broker } from "./server.js";
import { registerInProcess } from "./in-process.js";
import { Monitor } from "./monitor.js";
import type { BrokerUserSpec } from "./auth.js";
import { type BrokerOptions, resolveOptions, SERVER_VERSION } from "./options.js";

export type { BrokerOptions, BrokerAuth, BrokerUser, BrokerTls, BrokerWebSocket } from "./options.js";
export type { BrokerUserSpec, NkeyUser, PasswordUser } from "./auth.js";
export type { ResponsePermission, SubjectPermission, UserPermissions } from "./permissions.js";
export { SERVER_VERSION };

export interface RunningBroker {
  /** Client URL, e.g. nats://127.0.0.1:4222. */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  readonly serverId: string;
  /** WebSocket URL (ws:// or wss://) and port, when the WebSocket listener is on. */
  readonly wsUrl?: string;
  readonly wsPort?: number;
  /** Monitoring port and URL, when monitoring is on. */
  readonly httpPort?: number;
  readonly httpUrl?: string;
  /** The broker itself, for in-process extensions and monitoring. */
  readonly broker: Broker;
  readonly jetstream?: JetStream;
  /**
   * The broker's users, changed while it runs (nats-server's config reload, in process):
   * - `add({ user, password, permissions? })` or `add({ nkey, permissions? })`: from then on the user
   *   may connect, confined to its permissions (nats-server's shape; `allow_responses` expiry in ms).
   *   With any user, auth is required: adding the first one closes connections made without
   *   credentials. Throws for a duplicate name, a bcrypt password, an invalid nkey, or when a token is
   *   configured (nats-server allows a token or users, not both).
   * - `remove(name)` (the user name, or the nkey): its open connections get
   *   `-ERR 'Authorization Violation'` and are closed; returns whether the user existed.
   * - `list()`: the users as given.
   */
  readonly users: {
    add(user: BrokerUserSpec): void;
    remove(name: string): boolean;
    list(): BrokerUserSpec[];
  };
  /** Stops accepting, flushes pending writes, closes every connection. */
  close(): Promise<void>;
}

function urlHost(host: string): string {
  return host.includes(":") ? `[${host}]` : host;
}

export async function startBroker(options: BrokerOptions = {}, log: Logger = pino({ level: "silent" })): Promise<RunningBroker> {
  const resolved = resolveOptions(options);
  const broker = new Broker(resolved, log);
  let jetstream: JetStream | undefined;
  let tempStoreDir: string | undefined;
  if (resolved.jetstream) {
    // Streams are recovered before the listener opens, so no client sees a half-loaded JetStream.
    const storeDir = resolved.dataDir
      ? path.join(resolved.dataDir, "jetstream")
      : (tempStoreDir = fs.mkdtempSync(path.join(os.tmpdir(), "nex-broker-js-")));
    jetstream = new JetStream(broker, storeDir, log);
    jetstream.recover();
    broker.jetstreamEnabled = true;
  }
  const shutdownJetStream = (): void => {
    jetstream?.close();
    if (tempStoreDir) fs.rmSync(tempStoreDir, { recursive: true, force: true });
  };
  try {
    await broker.listen();
  } catch (err) {
    shutdownJetStream();
    throw err;
  }
  let monitor: Monitor | undefined;
  if (resolved.httpPort !== undefined) {
    monitor = new Monitor(broker, jetstream);
    try {
      await monitor.listen(resolved.host, resolved.httpPort);
    } catch (err) {
      await broker.close();
      shutdownJetStream();
      throw err;
    }
  }
  const host = urlHost(resolved.host);
  // Clients of this process that dial the listener come in memory (in-process.ts), e.g. the node agent.
  const unregister = registerInProcess(broker, resolved.host, broker.port);
  let closing: Promise<void> | undefined;
  return {
    url: `nats://${host}:${broker.port}`,
    host: resolved.host,
    port: broker.port,
    serverId: broker.serverId,
    wsUrl: broker.wsUrl,
    wsPort: broker.wsPort,
    httpPort: monitor?.httpPort,
    httpUrl: monitor ? `http://${host}:${monitor.httpPort}` : undefined,
    broker,
    jetstream,
    users: {
      add: (user) => broker.addUser(user),
      remove: (name) => broker.removeUser(name),
      list: () => broker.auth.list(),
    },
    // Clients go first (their last acks flush), then the stores close.
    close: () => {
      unregister();
      return (closing ??= Promise.all([broker.close(), monitor?.close()]).then(shutdownJetStream));
    },
  };
}
