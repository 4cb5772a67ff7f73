// nats.js over WebSocket in Node 20: `wsconnect` from @nats-io/nats-core expects a global WebSocket (as
// in a browser), which Node 20 lacks; the `ws` package's WebSocket is installed in its place.
import { wsconnect, type ConnectionOptions, type NatsConnection } from "@nats-io/nats-core";
import { WebSocket } from "ws";

export function installGlobalWebSocket(): void {
  const g = globalThis as { WebSocket?: unknown };
  g.WebSocket ??= WebSocket;
}

/** wsconnect() with the global WebSocket in place; `servers` are ws:// URLs. */
export async function wsConnect(opts: ConnectionOptions): Promise<NatsConnection> {
  installGlobalWebSocket();
  return wsconnect(opts);
}
