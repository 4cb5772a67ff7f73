// A nats-server config file turned into BrokerOptions, for the keys the bundled broker supports.
// Anything else is refused with its name and line, so a setting is never silently ignored.
// As nats-server, JetStream is on only when the file enables it.

import { type BrokerUserSpec, isUserNkey } from "./auth.js";
import { ConfigError, type ConfMap, type ConfValue, parseConfigFile } from "./config-file.js";
import type { BrokerAuth, BrokerOptions, BrokerTls, BrokerWebSocket } from "./options.js";
import { parseAllowedOrigin } from "./origin.js";
import type { ResponsePermission, SubjectPermission, UserPermissions } from "./permissions.js";

const DURATION_UNITS_MS: Record<string, number> = { ns: 1e-6, us: 1e-3, "µs": 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Reads a config file into broker options (host/port fields only when the file sets them). */
export function loadConfigFile(file: string, env: NodeJS.ProcessEnv = process.env): BrokerOptions {
  return new OptionsReader(file).read(parseConfigFile(file, env));
}

class OptionsReader {
  constructor(private readonly file: string) {}

  private fail(v: { line: number }, message: string): never {
    throw new ConfigError(`${this.file}:${v.line}: ${message}`);
  }

  private unsupported(key: string, v: ConfValue, where: string): never {
    this.fail(v, `unsupported key "${key}"${where ? ` in ${where}` : ""}`);
  }

  read(root: ConfMap): BrokerOptions {
    const o: BrokerOptions = { jetstream: false };
    for (const [key, v] of root) {
      switch (key.toLowerCase()) {
        case "listen": {
          const { host, port } = this.hostPort(v);
          if (host) o.host = host;
          o.port = port;
          break;
        }
        case "port":
          o.port = this.integer(v, key);
          break;
        case "host":
        case "net":
          o.host = this.string(v, key);
          break;
        case "http": {
          const { host, port } = this.hostPort(v);
          if (host) o.host ??= host;
          o.httpPort = port;
          break;
        }
        case "http_port":
        case "monitor_port":
          o.httpPort = this.integer(v, key);
          break;
        case "server_name":
          o.serverName = this.string(v, key);
          break;
        case "max_payload":
          o.maxPayload = this.integer(v, key);
          break;
        case "max_pending":
          o.maxPending = this.integer(v, key);
          break;
        case "max_control_line":
          o.maxControlLine = this.integer(v, key);
          break;
        case "max_connections":
        case "max_conn":
          o.maxConnections = this.integer(v, key);
          break;
        case "max_subscriptions":
        case "max_subs":
          o.maxSubscriptions = this.integer(v, key);
          break;
        case "write_deadline":
          o.writeDeadlineMs = this.duration(v, key);
          break;
        case "ping_interval":
          o.pingIntervalMs = this.duration(v, key);
          break;
        case "ping_max":
          o.maxPingsOut = this.integer(v, key);
          break;
        case "authorization": {
          const { auth, timeoutMs } = this.authorization(this.map(v, key));
          o.auth = auth;
          if (timeoutMs !== undefined) o.authTimeoutMs = timeoutMs;
          break;
        }
        case "tls":
          o.tls = this.tls(this.map(v, key));
          break;
        case "websocket":
        case "ws":
          o.websocket = this.websocket(this.map(v, key));
          break;
        case "jetstream":
          this.jetstream(v, o);
          break;
        default:
          this.unsupported(key, v, "");
      }
    }
    return o;
  }

  private string(v: ConfValue, key: string): string {
    if (v.kind === "string") return v.value;
    if (v.kind === "number") return v.raw;
    this.fail(v, `"${key}" must be a string`);
  }

  private integer(v: ConfValue, key: string): number {
    if (v.kind !== "number" || !Number.isInteger(v.value)) this.fail(v, `"${key}" must be an integer`);
    return v.value;
  }

  private bool(v: ConfValue, key: string): boolean {
    if (v.kind !== "bool") this.fail(v, `"${key}" must be true or false`);
    return v.value;
  }

  private map(v: ConfValue, key: string): ConfMap {
    if (v.kind !== "map") this.fail(v, `"${key}" must be a block { ... }`);
    return v.value;
  }

  /** A duration as nats-server reads it: "10s", "1m30s", "250ms", or a number of seconds. */
  private duration(v: ConfValue, key: string): number {
    if (v.kind === "number") return v.value * 1000;
    if (v.kind === "string") {
      const parts = [...v.value.matchAll(/(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g)];
      if (parts.length > 0 && parts.map((p) => p[0]).join("") === v.value) {
        return Math.round(parts.reduce((ms, p) => ms + Number(p[1]) * DURATION_UNITS_MS[p[2]], 0));
      }
    }
    this.fail(v, `"${key}" must be a duration such as "10s"`);
  }

  /** `4222`, `"0.0.0.0:4222"` or `":4222"`. */
  private hostPort(v: ConfValue): { host?: string; port: number } {
    if (v.kind === "number" && Number.isInteger(v.value)) return { port: v.value };
    if (v.kind === "string") {
      const m = /^(.*):(\d+)$/.exec(v.value);
      if (m !== null) return { host: m[1].replace(/^\[|\]$/g, "") || undefined, port: Number(m[2]) };
    }
    this.fail(v, `expected "host:port" or a port`);
  }

  private authorization(m: ConfMap): { auth: BrokerAuth; timeoutMs?: number } {
    const auth: BrokerAuth = {};
    let single: { user?: string; password?: string; line: number } | undefined;
    let users: BrokerUserSpec[] | undefined;
    let usersLine = 0;
    let timeoutMs: number | undefined;
    for (const [key, v] of m) {
      switch (key.toLowerCase()) {
        case "token":
          auth.token = this.string(v, key);
          break;
        case "user":
        case "username":
          (single ??= { line: v.line }).user = this.string(v, key);
          break;
        case "password":
        case "pass":
          (single ??= { line: v.line }).password = this.password(v, key);
          break;
        case "users":
          if (v.kind !== "list") this.fail(v, `"users" must be a list`);
          users = v.value.map((u) => this.user(u));
          usersLine = v.line;
          break;
        case "timeout":
          timeoutMs = this.duration(v, key);
          break;
        case "default_permissions":
        case "default_permission":
        case "permissions":
          auth.defaultPermissions = this.permissions(this.map(v, key));
          break;
        default:
          this.unsupported(key, v, "authorization");
      }
    }
    // The combinations nats-server refuses.
    if (auth.token !== undefined && users !== undefined) this.fail({ line: usersLine }, "can not have a token and a users array");
    if (single !== undefined && users !== undefined) this.fail({ line: usersLine }, "can not have a single user/pass and a users array");
    if (single !== undefined) {
      if (single.user === undefined || single.password === undefined) this.fail(single, "authorization needs both user and password");
      users = [{ user: single.user, password: single.password }];
    }
    if (users !== undefined) auth.users = users;
    return { auth, timeoutMs };
  }

  private password(v: ConfValue, key: string): string {
    const password = this.string(v, key);
    if (password.startsWith("$2")) this.fail(v, "bcrypt passwords are not supported by the bundled broker (use a plain password or an nkey)");
    return password;
  }

  private user(v: ConfValue): BrokerUserSpec {
    const m = this.map(v, "users entry");
    let user: string | undefined;
    let password: string | undefined;
    let nkey: string | undefined;
    let permissions: UserPermissions | undefined;
    for (const [key, item] of m) {
      switch (key.toLowerCase()) {
        case "user":
        case "username":
          user = this.string(item, key);
          break;
        case "password":
        case "pass":
          password = this.password(item, key);
          break;
        case "nkey":
          nkey = this.string(item, key);
          if (!isUserNkey(nkey)) this.fail(item, `not a valid public nkey for a user: "${nkey}"`);
          break;
        case "permissions":
        case "permission":
          permissions = this.permissions(this.map(item, key));
          break;
        default:
          this.unsupported(key, item, "users entry");
      }
    }
    if (nkey !== undefined) {
      if (user !== undefined || password !== undefined) this.fail(v, "a user has either an nkey or a user and password");
      return permissions ? { nkey, permissions } : { nkey };
    }
    if (user === undefined || password === undefined) this.fail(v, "a user needs user and password, or nkey");
    return permissions ? { user, password, permissions } : { user, password };
  }

  private permissions(m: ConfMap): UserPermissions {
    const p: UserPermissions = {};
    for (const [key, v] of m) {
      switch (key.toLowerCase()) {
        case "publish":
        case "pub":
          p.publish = this.subjectPermission(v, key);
          break;
        case "subscribe":
        case "sub":
          p.subscribe = this.subjectPermission(v, key);
          break;
        case "allow_responses":
        case "publish_allow_responses":
          p.allow_responses = v.kind === "bool" ? v.value : this.responses(this.map(v, key));
          break;
        default:
          this.unsupported(key, v, "permissions");
      }
    }
    return p;
  }

  /** A subject, a list of subjects (both mean allow), or `{ allow, deny }`. */
  private subjectPermission(v: ConfValue, key: string): SubjectPermission {
    if (v.kind !== "map") return { allow: this.subjects(v, key) };
    const out: SubjectPermission = {};
    for (const [k, item] of v.value) {
      if (k === "allow") out.allow = this.subjects(item, k);
      else if (k === "deny") out.deny = this.subjects(item, k);
      else this.unsupported(k, item, key);
    }
    return out;
  }

  private subjects(v: ConfValue, key: string): string[] {
    return v.kind === "list" ? v.value.map((s) => this.string(s, key)) : [this.string(v, key)];
  }

  /** A websocket's allowed origins, each checked where it is written. */
  private origins(v: ConfValue, key: string): string[] {
    return (v.kind === "list" ? v.value : [v]).map((item) => {
      const origin = this.string(item, key);
      try {
        parseAllowedOrigin(origin);
      } catch (err) {
        this.fail(item, `${key}: ${(err as Error).message}`);
      }
      return origin;
    });
  }

  private responses(m: ConfMap): ResponsePermission {
    const r: ResponsePermission = {};
    for (const [key, v] of m) {
      switch (key.toLowerCase()) {
        case "max":
        case "max_msgs":
        case "max_messages":
        case "max_responses":
          r.max = this.integer(v, key);
          break;
        case "expires":
        case "expiration":
        case "ttl":
          r.expires_ms = this.duration(v, key);
          break;
        default:
          this.unsupported(key, v, "allow_responses");
      }
    }
    return r;
  }

  private tls(m: ConfMap): BrokerTls {
    let certFile: string | undefined;
    let keyFile: string | undefined;
    const tls: Partial<BrokerTls> = {};
    for (const [key, v] of m) {
      switch (key.toLowerCase()) {
        case "cert_file":
          certFile = this.string(v, key);
          break;
        case "key_file":
          keyFile = this.string(v, key);
          break;
        case "ca_file":
          tls.caFile = this.string(v, key);
          break;
        case "verify":
          tls.verify = this.bool(v, key);
          break;
        case "timeout":
          tls.timeoutMs = this.duration(v, key);
          break;
        default:
          this.unsupported(key, v, "tls");
      }
    }
    if (certFile === undefined || keyFile === undefined) throw new ConfigError(`${this.file}: tls needs cert_file and key_file`);
    return { ...tls, certFile, keyFile };
  }

  /** nats-server's websocket block; as there, it needs a tls block or `no_tls: true`. */
  private websocket(m: ConfMap): BrokerWebSocket {
    const ws: Partial<BrokerWebSocket> = {};
    let noTls = false;
    for (const [key, v] of m) {
      switch (key.toLowerCase()) {
        case "listen": {
          const { host, port } = this.hostPort(v);
          if (host !== undefined) ws.host = host;
          ws.port = port;
          break;
        }
        case "port":
          ws.port = this.integer(v, key);
          break;
        case "host":
        case "net":
          ws.host = this.string(v, key);
          break;
        case "no_tls":
          noTls = this.bool(v, key);
          break;
        case "tls":
          ws.tls = this.tls(this.map(v, key));
          break;
        case "compression":
          ws.compression = this.bool(v, key);
          break;
        case "allowed_origins":
        case "allowed_origin":
        case "allow_origins":
        case "allow_origin":
        case "origins":
        case "origin":
          ws.allowedOrigins = this.origins(v, key);
          break;
        case "same_origin":
          ws.sameOrigin = this.bool(v, key);
          break;
        case "handshake_timeout":
          ws.handshakeTimeoutMs = this.duration(v, key);
          break;
        default:
          this.unsupported(key, v, "websocket");
      }
    }
    if (ws.port === undefined) throw new ConfigError(`${this.file}: websocket needs a port (or listen)`);
    if (ws.port === -1) ws.port = 0;
    if (ws.tls === undefined && !noTls) throw new ConfigError(`${this.file}: websocket requires TLS configuration (a tls block, or no_tls: true)`);
    return { ...ws, port: ws.port };
  }

  private jetstream(v: ConfValue, o: BrokerOptions): void {
    if (v.kind === "bool") {
      o.jetstream = v.value;
      return;
    }
    if (v.kind === "string" && /^(enabled|disabled)$/i.test(v.value)) {
      o.jetstream = v.value.toLowerCase() === "enabled";
      return;
    }
    o.jetstream = true;
    for (const [key, item] of this.map(v, "jetstream")) {
      switch (key.toLowerCase()) {
        case "store_dir":
        case "storedir":
          o.dataDir = this.string(item, key); // nats-server keeps streams under <store_dir>/jetstream, as the broker under <dataDir>/jetstream
          break;
        case "enabled":
          o.jetstream = this.bool(item, key);
          break;
        default:
          this.unsupported(key, item, "jetstream");
      }
    }
  }
}
