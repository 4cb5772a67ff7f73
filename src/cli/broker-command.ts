// `nex broker`: the bundled broker as a standalone server, until SIGINT/SIGTERM.

import { Command, InvalidArgumentError } from "commander";
import type { BrokerOptions, BrokerTls, BrokerWebSocket } from "../broker/options.js";
import { parseAllowedOrigin } from "../broker/origin.js";
import { addLogOptions, commandLogger } from "./logging.js";
import { configureUsageErrors } from "./output.js";

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError("must be a port number 0-65535");
  return n;
}

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError("must be a positive integer");
  return n;
}

/** The broker's TLS flags, for `nex broker` and `nex node up`. */
export function addTlsOptions(cmd: Command): Command {
  return cmd
    .option("--tls-cert <file>", "server certificate (PEM): clients must use TLS")
    .option("--tls-key <file>", "private key of --tls-cert (PEM)")
    .option("--tls-ca <file>", "CA certificate (PEM) client certificates are checked against (and the node's own connection trusts)")
    .option("--tls-verify", "require a client certificate signed by --tls-ca");
}

export interface TlsFlags {
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
  tlsVerify?: boolean;
}

/** The tls block the flags describe, over one from a config file. */
export function tlsFromFlags(opts: TlsFlags, base?: BrokerTls): BrokerTls | undefined {
  let tls = base;
  if (opts.tlsCert !== undefined || opts.tlsKey !== undefined) {
    if (opts.tlsCert === undefined || opts.tlsKey === undefined) throw new InvalidArgumentError("--tls-cert and --tls-key go together");
    tls = { ...tls, certFile: opts.tlsCert, keyFile: opts.tlsKey };
  }
  if (opts.tlsCa !== undefined || opts.tlsVerify) {
    if (tls === undefined) throw new InvalidArgumentError("--tls-ca and --tls-verify need --tls-cert and --tls-key (or a tls block)");
    tls = { ...tls, ...(opts.tlsCa !== undefined ? { caFile: opts.tlsCa } : {}), ...(opts.tlsVerify ? { verify: true } : {}) };
  }
  return tls;
}

/** The broker's WebSocket flags, for `nex broker` and `nex node up`. */
export function addWebSocketOptions(cmd: Command): Command {
  return cmd
    .option("--ws-port <port>", "also serve NATS over WebSocket on this port, for browsers (0 = any free port; off unless given)", port)
    .option("--ws-host <host>", "interface of the WebSocket listener (default: the broker's --host)")
    .option("--ws-compression", "offer permessage-deflate to WebSocket clients")
    .option("--ws-allowed-origin <origin>", "a browser Origin allowed to connect, e.g. https://app.example.com (repeatable; default: any)", (v: string, prev: string[] = []) => [...prev, v]);
}

export interface WebSocketFlags {
  wsPort?: number;
  wsHost?: string;
  wsCompression?: boolean;
  wsAllowedOrigin?: string[];
}

/** The --ws-* flags given, by name. */
export function webSocketFlagsGiven(opts: WebSocketFlags): string[] {
  const given: [string, boolean][] = [
    ["--ws-port", opts.wsPort !== undefined],
    ["--ws-host", opts.wsHost !== undefined],
    ["--ws-compression", opts.wsCompression === true],
    ["--ws-allowed-origin", opts.wsAllowedOrigin !== undefined],
  ];
  return given.filter(([, on]) => on).map(([name]) => name);
}

/**
 * The websocket block the flags describe, over one from a config file. A listener from the flags uses
 * the broker's TLS (wss://) when it has one, else plain ws:// (nats-server would need `no_tls: true`).
 */
export function websocketFromFlags(opts: WebSocketFlags, base: BrokerWebSocket | undefined, tls: BrokerTls | undefined): BrokerWebSocket | undefined {
  const others = opts.wsHost !== undefined || opts.wsCompression || opts.wsAllowedOrigin !== undefined;
  if (opts.wsPort === undefined && base === undefined) {
    if (others) throw new InvalidArgumentError("--ws-host, --ws-compression and --ws-allowed-origin need --ws-port");
    return undefined;
  }
  const ws: BrokerWebSocket = { ...(base ?? { port: 0, ...(tls ? { tls } : {}) }) };
  if (opts.wsPort !== undefined) ws.port = opts.wsPort;
  if (opts.wsHost !== undefined) ws.host = opts.wsHost;
  if (opts.wsCompression) ws.compression = true;
  if (opts.wsAllowedOrigin !== undefined) {
    for (const origin of opts.wsAllowedOrigin) {
      try {
        parseAllowedOrigin(origin);
      } catch (err) {
        throw new InvalidArgumentError(`--ws-allowed-origin: ${(err as Error).message}`);
      }
    }
    ws.allowedOrigins = opts.wsAllowedOrigin;
  }
  return ws;
}

export function brokerCommand(): Command {
  const cmd = addLogOptions(addWebSocketOptions(addTlsOptions(new Command("broker"))))
    .description("run the bundled NATS broker (nats-server compatible core protocol)")
    .option("--host <host>", "interface to listen on", "127.0.0.1")
    .option("-p, --port <port>", "client port (0 = any free port)", port, 4222)
    .option("--http-port <port>", "monitoring port for /varz /connz /subsz /healthz (0 = any free port)", port)
    .option("--data-dir <dir>", "directory for JetStream data (default: a temporary directory, removed on exit)")
    .option("--no-jetstream", "serve only the core protocol (no streams, KV or object store)")
    .option("--max-payload <bytes>", "largest message a client may publish", positiveInt)
    .option("--max-pending <bytes>", "outbound backlog before a connection is closed as a slow consumer", positiveInt)
    .option("--write-deadline <ms>", "close a connection as a slow consumer when its output makes no progress this long", positiveInt)
    .option("-c, --config <file>", "nats-server configuration file (flags given too override it)")
    .option("--user <user>", "require this user (with --password) from clients")
    .option("--password <password>", "password for --user")
    .option("--token <token>", "require this token from clients")
    .action(async (opts, command: Command) => {
      const { log, release } = await commandLogger(opts);
      // Loaded here, so client commands (req, run, ...) do not pay for the broker's modules at start-up.
      const { startBroker } = await import("../broker/index.js");
      const { loadConfigFile } = await import("../broker/config.js");
      const options = opts.config ? loadConfigFile(opts.config) : {};
      // A flag given overrides the file; a flag's default applies only where the file is silent.
      const given = (name: string): boolean => command.getOptionValueSource(name) === "cli";
      const flags: [string, keyof BrokerOptions, unknown][] = [
        ["host", "host", opts.host],
        ["port", "port", opts.port],
        ["httpPort", "httpPort", opts.httpPort],
        ["dataDir", "dataDir", opts.dataDir],
        ["jetstream", "jetstream", opts.jetstream],
        ["maxPayload", "maxPayload", opts.maxPayload],
        ["maxPending", "maxPending", opts.maxPending],
        ["writeDeadline", "writeDeadlineMs", opts.writeDeadline],
      ];
      for (const [flag, key, value] of flags) if (given(flag) || (options[key] === undefined && value !== undefined)) Object.assign(options, { [key]: value });
      if (given("dataDir") && !given("jetstream")) options.jetstream = true;
      if (opts.user !== undefined || opts.password !== undefined) {
        if (opts.user === undefined || opts.password === undefined) throw new InvalidArgumentError("--user and --password go together");
        options.auth = { users: [{ user: opts.user, password: opts.password }] };
      }
      if (opts.token !== undefined) {
        if (opts.user !== undefined) throw new InvalidArgumentError("--token cannot be combined with --user (as nats-server)");
        options.auth = { token: opts.token };
      }
      options.tls = tlsFromFlags(opts, options.tls);
      options.websocket = websocketFromFlags(opts, options.websocket, options.tls);
      // As `node up` (logging.ts): a failed start's lines come before its error, a started one's after its banner.
      const broker = await startBroker(options, log).catch((err: unknown) => {
        release();
        throw err;
      });
      const banner = [`Listening for client connections on ${broker.url}`];
      if (broker.wsUrl) banner.push(`Listening for websocket clients on ${broker.wsUrl}`);
      if (broker.httpUrl) banner.push(`Monitoring on ${broker.httpUrl}`);
      process.stdout.write(`${banner.join("\n")}\n`);
      release();
      let stopping = false;
      const stop = async (signal: string): Promise<void> => {
        if (stopping) return;
        stopping = true;
        log.info({ signal }, "shutting down");
        await broker.close();
        process.exit(0);
      };
      process.on("SIGINT", () => void stop("SIGINT"));
      process.on("SIGTERM", () => void stop("SIGTERM"));
    });
  // A bad flag value (such as --log-format) exits 2, as the other commands' usage errors do.
  return configureUsageErrors(cmd);
}
