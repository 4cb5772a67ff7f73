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
  private readonly context: tls.SecureContext;
  private readonly timeoutMs: number;

  constructor(private readonly config: BrokerTls) {
    this.context = tls.createSecureContext(tlsServerOptions(config));
    this.timeoutMs = config.timeoutMs ?? DEFAULT_TLS_TIMEOUT_MS;
  }

  /** Wraps an accepted socket (after INFO was written on it); a handshake not done in time is dropped. */
  upgrade(socket: net.Socket): tls.TLSSocket {
    const verify = this.config.verify === true;
    const secure = new tls.TLSSocket(socket, { isServer: true, secureContext: this.context, requestCert: verify, rejectUnauthorized: verify });
    const timer = setTimeout(() => secure.destroy(new Error("TLS handshake timeout")), this.timeoutMs);
    timer.unref();
    secure.once("secure", () => clearTimeout(timer));
    secure.once("close", () => clearTimeout(timer));
    return secure;
  }
}

/** Certificate, key and CA of a tls block, read and checked, as options for a TLS server. */
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
