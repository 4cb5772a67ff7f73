// Credentials of a bundled broker started by `nex node up`. Auth is on by default: on first start the
// node generates a user for itself and one for the local CLI, kept in <data-dir>/broker-users.json
// (owner-only), so anonymous clients are refused. The local user's connection is also written to
// NEX_HOME/local-broker.json (owner-only), where `nex` client commands find it, and where other clients
// on the machine (the nats CLI, nats.js scripts) can read it; `nex node up --no-auth` opts out.

import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { nexHome } from "../util/nex-home.js";
import type { NatsAuth } from "../runtimes/types.js";

export interface BrokerUserCredentials {
  user: string;
  password: string;
}

/** What `nex node up` keeps in its data dir: the node's own user, the local CLI's, and the secret workload users' passwords derive from. */
export interface BundledBrokerUsers {
  node: BrokerUserCredentials;
  local: BrokerUserCredentials;
  workload_secret: string;
}

/** A local broker's connection, as NEX_HOME/local-broker.json holds it. */
export interface LocalBrokerConnection {
  url: string;
  user?: string;
  password?: string;
  token?: string;
  /** The same, as one URL (nats://user:password@host:port) for clients that read credentials from URLs, such as the nats CLI. */
  url_with_credentials: string;
  /** The broker's WebSocket listener (ws:// or wss://), for browsers; the same credentials apply. */
  ws_url?: string;
  /** A TLS broker: what a client trusts (and shows, where a client certificate is required), as nats.js takes it. */
  tls?: { caFile?: string; certFile?: string; keyFile?: string };
}

const USERS_FILE = "broker-users.json";
export const LOCAL_BROKER_FILE = "local-broker.json";

function secret(): string {
  return randomBytes(24).toString("base64url");
}

/** Reads the users from the data dir, or generates them on first start. */
export function loadOrCreateBrokerUsers(dataDir: string): BundledBrokerUsers {
  const file = path.join(dataDir, USERS_FILE);
  if (fs.existsSync(file)) {
    const users = JSON.parse(fs.readFileSync(file, "utf8")) as BundledBrokerUsers;
    if (!users?.node?.password || !users?.local?.password || !users.workload_secret) throw new Error(`${file} does not hold the node's and the local user's credentials`);
    return users;
  }
  const users: BundledBrokerUsers = { node: { user: "nex-node", password: secret() }, local: { user: "nex", password: secret() }, workload_secret: secret() };
  writePrivate(file, users);
  return users;
}

/** Records how the local CLI reaches this broker (NEX_HOME/local-broker.json). */
export function recordLocalBroker(url: string, auth: NatsAuth, wsUrl?: string): LocalBrokerConnection {
  const withCredentials = new URL(url);
  if (auth.user) {
    withCredentials.username = encodeURIComponent(auth.user);
    withCredentials.password = encodeURIComponent(auth.pass ?? "");
  } else if (auth.token) withCredentials.username = encodeURIComponent(auth.token);
  const connection: LocalBrokerConnection = {
    url,
    ...(auth.user ? { user: auth.user, password: auth.pass ?? "" } : {}),
    ...(auth.token ? { token: auth.token } : {}),
    url_with_credentials: withCredentials.toString().replace(/\/$/, ""),
    ...(wsUrl ? { ws_url: wsUrl } : {}),
    ...(auth.tls ? { tls: auth.tls } : {}),
  };
  writePrivate(path.join(nexHome(), LOCAL_BROKER_FILE), connection);
  return connection;
}

/** The local broker's connection when `servers` names it (credentials go to that broker only), else undefined. */
export function localBrokerFor(servers: string[]): LocalBrokerConnection | undefined {
  let connection: LocalBrokerConnection;
  try {
    connection = JSON.parse(fs.readFileSync(path.join(nexHome(), LOCAL_BROKER_FILE), "utf8")) as LocalBrokerConnection;
  } catch {
    return undefined;
  }
  const same = (a: string, b: string): boolean => {
    try {
      const x = new URL(a.includes("://") ? a : `nats://${a}`);
      const y = new URL(b);
      return x.hostname === y.hostname && (x.port || "4222") === (y.port || "4222");
    } catch {
      return false;
    }
  };
  return servers.length > 0 && servers.every((s) => same(s, connection.url)) ? connection : undefined;
}

function writePrivate(file: string, value: unknown): void {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const temp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(temp, JSON.stringify(value, null, 2) + "\n", { mode: 0o600 });
  fs.renameSync(temp, file);
}
