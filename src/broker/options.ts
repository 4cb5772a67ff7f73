// Broker options and the nats-server 2.9.10 defaults they mirror.

import type { BrokerUserSpec, PasswordUser } from "./auth.js";
import type { UserPermissions } from "./permissions.js";

export type BrokerUser = PasswordUser;

export interface BrokerAuth {
  /** A shared token clients send as `auth_token` (nats `--token`). Cannot be combined with users. */
  token?: string;
  /** Users with a password (nats `--user`/`--password`) or an NKey, each with optional permissions. */
  users?: BrokerUserSpec[];
  /** Permissions of users that have none of their own (nats-server's `default_permissions`). */
  defaultPermissions?: UserPermissions;
}

/** TLS on the client port, as nats-server's `tls {}` block. */
export interface BrokerTls {
  certFile: string;
  keyFile: string;
  /** CA that client certificates must chain to (with `verify`). */
  caFile?: string;
  /** Require a client certificate signed by the CA. */
  verify?: boolean;
  /** Time allowed for the TLS handshake. Default 2 s (nats-server's tls timeout). */
  timeoutMs?: number;
}

/** NATS over WebSocket beside the TCP port, as nats-server's `websocket {}` block. */
export interface BrokerWebSocket {
  /** Port; 0 picks a free one (read it back from `wsPort`). */
  port: number;
  /** Interface; default the broker's host. */
  host?: string;
  /** TLS for wss://. Without it the listener is plain ws:// (nats-server's `no_tls: true`). */
  tls?: BrokerTls;
  /** Offer permessage-deflate to clients that ask for it. */
  compression?: boolean;
  /** Origins (scheme://host[:port]) a browser may connect from; others get 403. Empty: any. */
  allowedOrigins?: string[];
  /** Refuse a browser whose Origin is not the listener's own host and port. */
  sameOrigin?: boolean;
  /** Time allowed for the HTTP upgrade. Default 2 s. */
  handshakeTimeoutMs?: number;
}

export interface BrokerOptions {
  /** Interface to listen on. Default 127.0.0.1 (use 0.0.0.0 to serve other machines). */
  host?: string;
  /** Client port; 0 picks a free port (read it back from `broker.port`). Default 4222. */
  port?: number;
  /** Monitoring HTTP port (/varz, /connz, /subsz, /healthz); 0 picks a free one; undefined = off. */
  httpPort?: number;
  /** Name reported in INFO and /varz. Default: the server id. */
  serverName?: string;
  /** Largest payload a client may publish, in bytes. Default 1 MiB. */
  maxPayload?: number;
  /** Outbound bytes a connection may have pending before it is closed as a slow consumer. Default 64 MiB. */
  maxPending?: number;
  /**
   * A connection whose pending output makes no progress for this long (the peer stopped reading) is
   * closed as a slow consumer (nats-server's write_deadline). Default 10 s.
   */
  writeDeadlineMs?: number;
  /** Subscriptions one connection may hold; past it SUB gets -ERR (nats-server's max_subscriptions). Default 65536. */
  maxSubscriptions?: number;
  /** Longest control line, in bytes. Default 4096. */
  maxControlLine?: number;
  /** Most client connections at once. Default 65536. */
  maxConnections?: number;
  /** Interval of the server's keepalive PING. Default 2 minutes. */
  pingIntervalMs?: number;
  /** Unanswered PINGs before the connection is closed as stale. Default 2. */
  maxPingsOut?: number;
  /** With auth on, a connection must send CONNECT within this time. Default 2 s (as nats-server). */
  authTimeoutMs?: number;
  /**
   * Without auth CONNECT is optional (telnet-style use), but a connection that sends no operation at all
   * within this time is closed, so sockets that never speak NATS do not pile up. nats-server only finds
   * those through missed PINGs, minutes later. Default 10 s.
   */
  connectTimeoutMs?: number;
  auth?: BrokerAuth;
  tls?: BrokerTls;
  /** A WebSocket listener for browsers and nats.ws clients; off when absent. */
  websocket?: BrokerWebSocket;
  /** Data directory: JetStream keeps its streams under <dataDir>/jetstream. Without it, a temporary
   *  directory is used and removed on close (nothing survives a restart). */
  dataDir?: string;
  /** Serve the JetStream subset (streams, consumers, KV, object store). Default true. */
  jetstream?: boolean;
}

export type ResolvedOptions = Required<Omit<BrokerOptions, "httpPort" | "auth" | "serverName" | "dataDir" | "tls" | "websocket">> &
  Pick<BrokerOptions, "httpPort" | "auth" | "serverName" | "dataDir" | "tls" | "websocket">;

export const SERVER_VERSION = "2.9.10"; // nats.js gates client features by this; see README "Compatibility"

export function resolveOptions(options: BrokerOptions): ResolvedOptions {
  const resolved: ResolvedOptions = {
    host: options.host ?? "127.0.0.1",
    port: options.port ?? 4222,
    httpPort: options.httpPort,
    serverName: options.serverName,
    maxPayload: options.maxPayload ?? 1024 * 1024,
    maxPending: options.maxPending ?? 64 * 1024 * 1024,
    writeDeadlineMs: options.writeDeadlineMs ?? 10_000,
    maxSubscriptions: options.maxSubscriptions ?? 64 * 1024,
    maxControlLine: options.maxControlLine ?? 4096,
    maxConnections: options.maxConnections ?? 64 * 1024,
    pingIntervalMs: options.pingIntervalMs ?? 120_000,
    maxPingsOut: options.maxPingsOut ?? 2,
    authTimeoutMs: options.authTimeoutMs ?? 2000,
    connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
    auth: options.auth,
    tls: options.tls,
    websocket: options.websocket,
    dataDir: options.dataDir,
    jetstream: options.jetstream ?? true,
  };
  for (const key of ["maxPayload", "maxPending", "writeDeadlineMs", "maxSubscriptions", "maxControlLine", "maxConnections", "pingIntervalMs", "authTimeoutMs", "connectTimeoutMs"] as const) {
    const value = resolved[key];
    if (!Number.isInteger(value) || value <= 0) throw new Error(`broker option ${key} must be a positive integer, got ${value}`);
  }
  for (const [name, port] of [["port", resolved.port], ["websocket.port", resolved.websocket?.port ?? 0]] as const) {
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`broker option ${name} must be 0-65535, got ${port}`);
  }
  return resolved;
}
