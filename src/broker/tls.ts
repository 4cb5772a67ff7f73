// TLS on the client port, as nats-server 2.9 does it: INFO goes out in plaintext with tls_required,
// then the client must start the TLS handshake; a client that speaks plain NATS instead fails the
// handshake and is dropped. With `verify`, a client certificate signed by the CA is required.

import fs from "node:fs";
import type net from "node:net";
import tls from "node:tls";
import type { BrokerTls } from "./options.js";

/** nats-server's default TLS handshake timeout. */
const DEFAULT_TLS_TIMEOUT_MS = 2000;

export class TlsUpgrader {
  /** The server options as one context shared by every connection, and the client-certificate rule. */
  private readonly socketOptions: tls.TLSSocketOptions;
  private readonly timeoutMs: number;

  constructor(config: BrokerTls) {
    const options = tlsServerOptions(config);
    const { requestCert, rejectUnauthorized } = options;
    this.socketOptions = { isServer: true, secureContext: tls.createSecureContext(options), requestCert, rejectUnauthorized };
    this.timeoutMs = config.timeoutMs ?? DEFAULT_TLS_TIMEOUT_MS;
  }

  /** Wraps an accepted socket (after INFO was written on it); a handshake not done in time is dropped. */
  upgrade(socket: net.Socket): tls.TLSSocket {
    const secure = new tls.TLSSocket(socket, this.socketOptions);
    const timer = setTimeout(() => secure.destroy(new Error("TLS handshake timeout")), this.timeoutMs);
    timer.unref();
    secure.once("secure", () => clearTimeout(timer));
    secure.once("close", () => clearTimeout(timer));
    return secure;
  }
}

/**
 * A tls block as options for a TLS server: certificate, key and CA (read and checked), minimum version
 * and the client-certificate rule. The one place they are built, for the client port (TlsUpgrader) and
 * the WebSocket listener's https server alike.
 */
export function tlsServerOptions(config: BrokerTls): tls.TlsOptions {
  const read = (file: string, what: string): Buffer => {
    try {
      return fs.readFileSync(file);
    } catch (err) {
      throw new Error(`tls: cannot read ${what} ${file}: ${(err as Error).message}`);
    }
  };
  if (config.verify && config.caFile === undefined) throw new Error("tls: verify needs a ca_file to check client certificates against");
  const verify = config.verify === true;
  return {
    cert: read(config.certFile, "cert_file"),
    key: read(config.keyFile, "key_file"),
    ...(config.caFile !== undefined ? { ca: read(config.caFile, "ca_file") } : {}),
    minVersion: "TLSv1.2",
    requestCert: verify,
    rejectUnauthorized: verify,
  };
}
