// Starting a listener (TCP, HTTP, WebSocket) and knowing it listens, or why it could not (a port taken,
// an interface that is not there), in one place for the broker, the monitors and the gateway.

import type http from "node:http";
import type net from "node:net";

/** Listens on host:port and resolves with the port it got (port 0: any free one); rejects with the listen error. */
export function listenOn(server: net.Server, port: number, host?: string): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve((server.address() as net.AddressInfo).port);
    });
  });
}

/** Closes an HTTP server that serves short requests only (monitoring, metrics): open connections are cut. */
export function closeNow(server: http.Server): Promise<void> {
  server.closeAllConnections();
  return new Promise<void>((resolve) => server.close(() => resolve()));
}
