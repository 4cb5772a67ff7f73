// How every client-side `nex` command reaches NATS: the same flags and environment variables as the
// `nats` CLI (-s/NATS_URL, --user, --password, --token, --creds, --timeout), so a user who knows one
// knows the other, and a failure to connect is one line that says what to do about it.

import { readFileSync } from "node:fs";
import { Command, InvalidArgumentError, Option } from "commander";
import type { NatsConnection, NodeConnectionOptions } from "@nats-io/transport-node";
import { localBrokerFor } from "../node-agent/broker-credentials.js";
import { CliError, ExitCode, configureUsageErrors } from "./output.js";

export const DEFAULT_SERVER = "nats://127.0.0.1:4222";
export const DEFAULT_TIMEOUT_MS = 5000;

/** The parsed connection flags, as commander hands them to an action. */
export interface ConnectionOptions {
  server?: string;
  user?: string;
  password?: string;
  token?: string;
  creds?: string;
  inboxPrefix?: string;
  tlsca?: string;
  tlscert?: string;
  tlskey?: string;
  /** Milliseconds (already parsed by parseDuration). */
  timeout?: number;
  json?: boolean;
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/**
 * Go-style durations as the `nats` CLI takes them: "500ms", "2s", "1.5s", "1m", "1m30s", "1h".
 * Returns milliseconds. A bare "0" is allowed; other unit-less numbers are refused because "5" is
 * ambiguous (seconds? milliseconds?).
 */
export function parseDuration(text: string): number {
  const trimmed = text.trim();
  if (trimmed === "0") return 0;
  const part = /(\d+(?:\.\d+)?|\.\d+)(ms|s|m|h)/gy;
  let total = 0;
  let end = 0;
  for (let m = part.exec(trimmed); m; m = part.exec(trimmed)) {
    total += Number(m[1]) * UNIT_MS[m[2]];
    end = part.lastIndex;
  }
  if (end === 0 || end !== trimmed.length) {
    throw new Error(`invalid duration ${JSON.stringify(text)} (use e.g. 500ms, 2s, 1m)`);
  }
  return Math.round(total);
}

/** parseDuration for commander: a bad value is a usage error with a clear message. */
export function durationArg(text: string): number {
  try {
    return parseDuration(text);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

/** "1500" → "1.5s", for messages and help. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${ms}ms`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  return `${ms / 1000}s`;
}

/**
 * Adds the connection flags (and --json) to a command and makes its usage errors exit 2.
 * The environment variables are the `nats` CLI's, so existing shells and CI configs just work.
 */
export function addConnectionOptions(cmd: Command): Command {
  cmd
    .addOption(
      new Option("-s, --server <urls>", "NATS server URLs, comma-separated").env("NATS_URL").default(DEFAULT_SERVER),
    )
    .addOption(new Option("--user <user>", "username").env("NATS_USER"))
    .addOption(new Option("--password <password>", "password").env("NATS_PASSWORD"))
    .addOption(new Option("--token <token>", "authentication token").env("NATS_TOKEN"))
    .addOption(new Option("--creds <file>", "NATS user credentials file (JWT and nkey seed)").env("NATS_CREDS"))
    .addOption(new Option("--inbox-prefix <prefix>", "prefix of reply inboxes, for a user allowed to subscribe only there").env("NATS_INBOX_PREFIX"))
    .addOption(new Option("--tlsca <file>", "CA certificate (PEM) to trust for a TLS server").env("NATS_CA"))
    .addOption(new Option("--tlscert <file>", "client certificate (PEM), for a server that requires one").env("NATS_CERT"))
    .addOption(new Option("--tlskey <file>", "private key of --tlscert (PEM)").env("NATS_KEY"))
    .addOption(
      new Option("--timeout <duration>", "connect and request timeout, e.g. 500ms, 2s")
        .env("NATS_TIMEOUT")
        .argParser(durationArg)
        .default(DEFAULT_TIMEOUT_MS, formatDuration(DEFAULT_TIMEOUT_MS)),
    )
    .option("--json", "machine-readable JSON output");
  return configureUsageErrors(cmd);
}

export function serverList(server: string | undefined): string[] {
  const servers = (server ?? DEFAULT_SERVER)
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  return servers.length > 0 ? servers : [DEFAULT_SERVER];
}

function readCreds(file: string): Uint8Array {
  try {
    return readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new CliError(`cannot read credentials file ${file}: ${code === "ENOENT" ? "no such file" : (err as Error).message}`);
  }
}

/** Turns a connect failure into one line that names the server and, when useful, the fix. */
function connectFailure(servers: string[], timeoutMs: number, err: unknown): CliError {
  const failure = (message: string, exitCode: number): CliError => new CliError(message, exitCode, { cause: err });
  const where = servers.join(", ");
  const e = err as Error & { code?: string; cause?: unknown };
  const cause = e.cause as (Error & { code?: string }) | undefined;
  const code = e.code ?? cause?.code;
  const name = e.name;
  if (code === "ECONNREFUSED" || /connection refused/i.test(e.message)) {
    return failure(`cannot connect to ${where}: connection refused — is \`nex node up\` running?`, ExitCode.unreachable);
  }
  if (code === "ENOTFOUND" || code === "EAI_AGAIN") {
    return failure(`cannot connect to ${where}: host not found`, ExitCode.unreachable);
  }
  if (name === "TimeoutError" || code === "ETIMEDOUT" || /timeout/i.test(e.message)) {
    return failure(`cannot connect to ${where}: no answer within ${formatDuration(timeoutMs)}`, ExitCode.unreachable);
  }
  if (name === "AuthorizationError" || /authoriz|authentic/i.test(e.message)) {
    return failure(`cannot connect to ${where}: authorization failed (check --user/--password, --token or --creds; \`nex node up\` keeps this machine's in $NEX_HOME/local-broker.json)`, ExitCode.error);
  }
  if (name === "InvalidArgumentError") return failure(`invalid server URL ${where}: ${e.message}`, ExitCode.usage);
  return failure(`cannot connect to ${where}: ${e.message}`, ExitCode.unreachable);
}

/** nats://user:pass@host, as the nats CLI takes it: nats.js does not read credentials from URLs, so they are taken out here. */
function serverUrl(server: string): URL | undefined {
  try {
    return new URL(server.includes("://") ? server : `nats://${server}`);
  } catch {
    return undefined;
  }
}

function urlCredentials(server: string): Pick<NodeConnectionOptions, "user" | "pass" | "token"> | undefined {
  const url = serverUrl(server);
  if (!url?.username) return undefined;
  const user = decodeURIComponent(url.username);
  return url.password ? { user, pass: decodeURIComponent(url.password) } : { token: user };
}

function withoutCredentials(server: string): string {
  const url = serverUrl(server);
  if (!url?.username) return server;
  url.username = "";
  url.password = "";
  return url.toString().replace(/\/$/, "");
}

/** Credentials the flags did not give: from the server URL, else those of `nex node up` on this machine for that broker. */
function implicitCredentials(servers: string[]): Pick<NodeConnectionOptions, "user" | "pass" | "token" | "tls"> {
  const fromUrl = servers.map(urlCredentials).find((c) => c !== undefined);
  if (fromUrl) return fromUrl;
  const local = localBrokerFor(servers.map(withoutCredentials));
  if (!local) return {};
  const tls = local.tls ? { tls: local.tls } : {};
  if (local.user) return { user: local.user, pass: local.password, ...tls };
  if (local.token) return { token: local.token, ...tls };
  return tls;
}

/** Connects with the flags of addConnectionOptions; throws a CliError with exit code 5 if unreachable. */
export async function connectFromOptions(opts: ConnectionOptions, name = "nex"): Promise<NatsConnection> {
  const servers = serverList(opts.server);
  const timeout = opts.timeout ?? DEFAULT_TIMEOUT_MS;
  // Loaded here, not with the flags: `nex node up` defines these flags and starts its broker first.
  const { connect, credsAuthenticator } = await import("@nats-io/transport-node");
  if (opts.password !== undefined && opts.user === undefined) {
    throw new CliError("--password needs --user", ExitCode.usage);
  }
  const options: NodeConnectionOptions = { servers: servers.map(withoutCredentials), name, timeout, ...(opts.inboxPrefix ? { inboxPrefix: opts.inboxPrefix } : {}) };
  if (opts.user !== undefined) {
    options.user = opts.user;
    options.pass = opts.password;
  }
  if (opts.token !== undefined) options.token = opts.token;
  if (opts.creds !== undefined) options.authenticator = credsAuthenticator(readCreds(opts.creds));
  if (opts.user === undefined && opts.token === undefined && opts.creds === undefined) Object.assign(options, implicitCredentials(servers));
  if (opts.tlsca !== undefined || opts.tlscert !== undefined) {
    options.tls = { ...options.tls, ...(opts.tlsca ? { caFile: opts.tlsca } : {}), ...(opts.tlscert ? { certFile: opts.tlscert, keyFile: opts.tlskey } : {}) };
  }
  try {
    return await connect(options);
  } catch (err) {
    throw connectFailure(servers.map(withoutCredentials), timeout, err); // never print a password
  }
}
