// The bundled NATS broker, embedded: `const broker = await startBroker({ port: 0 })`.

import type { Logger } from "pino";
import { Broker } from "./server.js";
import { Monitor } from "./monitor.js";
import { type BrokerOptions, resolveOptions, SERVER_VERSION } from "./options.js";

export type { BrokerOptions, BrokerAuth, BrokerUser } from "./options.js";
export { SERVER_VERSION };

export interface RunningBroker {
  /** Client URL, e.g. nats://127.0.0.1:4222. */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  readonly serverId: string;
  /** Monitoring port and URL, when monitoring is on. */
  readonly httpPort?: number;
  readonly httpUrl?: string;
  /** The broker itself, for in-process extensions and monitoring. */
  readonly broker: Broker;
  /** Stops accepting, flushes pending writes, closes every connection. */
  close(): Promise<void>;
}

function urlHost(host: string): string {
  return host.includes(":") ? `[${host}]` : host;
}

export async function startBroker(options: BrokerOptions = {}, log?: Logger): Promise<RunningBroker> {
  const resolved = resolveOptions(options);
  const broker = new Broker(resolved, log);
  await broker.listen();
  let monitor: Monitor | undefined;
  if (resolved.httpPort !== undefined) {
    monitor = new Monitor(broker);
    try {
      await monitor.listen(resolved.host, resolved.httpPort);
    } catch (err) {
      await broker.close();
      throw err;
    }
  }
  const host = urlHost(resolved.host);
  let closing: Promise<void> | undefined;
  return {
    url: `nats://${host}:${broker.port}`,
    host: resolved.host,
    port: broker.port,
    serverId: broker.serverId,
    httpPort: monitor?.httpPort,
    httpUrl: monitor ? `http://${host}:${monitor.httpPort}` : undefined,
    broker,
    close: () => (closing ??= Promise.all([broker.close(), monitor?.close()]).then(() => undefined)),
  };
}
