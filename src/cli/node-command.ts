// `nex node up|ls|info|lameduck`.

import { Command, Option } from "commander";
import path from "node:path";
import { LOCAL_BROKER_FILE } from "../node-agent/broker-credentials.js";
import { loadNodeConfig } from "../node-agent/config.js";
import { DEFAULT_NAMESPACE } from "../protocol/control.js";
import { addConnectionOptions, type ConnectionOptions, connectFromOptions } from "./connection.js";
import type { ControlClient } from "./control-client.js";
import { issuerKey, nexHome } from "../util/nex-home.js";
import { CliError, configureUsageErrors, ExitCode, printJson, printTable, withErrors } from "./output.js";
import {
  addTlsOptions,
  addWebSocketOptions,
  type TlsFlags,
  tlsFromFlags,
  type WebSocketFlags,
  webSocketFlagsGiven,
  websocketFromFlags,
} from "./broker-command.js";
import type { BrokerOptions } from "../broker/options.js";
import { DEFAULT_GATEWAY } from "../node-agent/gateway-options.js";
import { durationArg } from "./connection.js";
import { addLogOptions, commandLogger } from "./logging.js";
import type { RunningNode } from "../node-agent/up-options.js";

function keyValues(value: string, previous: Record<string, string> = {}): Record<string, string> {
  const at = value.indexOf("=");
  if (at <= 0) throw new Error(`expected key=value, got ${value}`);
  return { ...previous, [value.slice(0, at)]: value.slice(at + 1) };
}

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, ...value.split(",").map((v) => v.trim()).filter(Boolean)];
}

type ClientOpts = ConnectionOptions & { namespace: string };

function namespaceOption(): Option {
  return new Option("-n, --namespace <ns>", "namespace").env("NEX_NAMESPACE").default(DEFAULT_NAMESPACE);
}

async function withControl<T>(opts: ClientOpts, fn: (client: ControlClient) => Promise<T>): Promise<T> {
  const nc = await connectFromOptions(opts, "nex cli");
  const { ControlClient } = await import("./control-client.js");
  try {
    return await fn(new ControlClient(nc, opts.namespace, opts.timeout ?? 5000));
  } finally {
    await nc.close();
  }
}

/** The bundled broker's options from --broker-config and the TLS and WebSocket flags (loaded only for `node up`). */
async function brokerOptionsFrom(opts: TlsFlags & WebSocketFlags & { brokerConfig?: string; server?: string }): Promise<BrokerOptions | undefined> {
  if (opts.server) return undefined;
  const fromFile: BrokerOptions = opts.brokerConfig ? (await import("../broker/config.js")).loadConfigFile(opts.brokerConfig) : {};
  const tls = tlsFromFlags(opts, fromFile.tls);
  const websocket = websocketFromFlags(opts, fromFile.websocket, tls);
  return { ...fromFile, ...(tls ? { tls } : {}), ...(websocket ? { websocket } : {}) };
}

/**
 * The WebSocket listener is the bundled broker's: with --server the node starts no broker, so a --ws-*
 * flag would be silently ignored. Refused before anything starts; the external server's own
 * configuration is where its WebSocket listener is set up.
 */
function refuseWebSocketFlagsWithServer(opts: WebSocketFlags & { server?: string }): void {
  const given = webSocketFlagsGiven(opts);
  if (!opts.server || given.length === 0) return;
  throw new CliError(
    `${given.join(", ")}: the WebSocket listener is a bundled broker setting and cannot be combined with --server (configure the websocket block of that server instead)`,
    ExitCode.usage,
  );
}

const WEB_SETTINGS = ["webHost", "webMaxInFlight", "webHeaderTimeout", "webTimeout", "webMaxHeaderSize"] as const;
const flagName = (key: string): string => `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;

/** The gateway's settings without --web-port would be silently ignored (no gateway starts): refused. */
function refuseWebFlagsWithoutPort(opts: { webPort?: number }, command: Command): void {
  if (opts.webPort !== undefined) return;
  const given = WEB_SETTINGS.filter((k) => command.getOptionValueSource(k) === "cli").map(flagName);
  if (given.length > 0) throw new CliError(`${given.join(", ")}: HTTP gateway settings go with --web-port (no gateway starts without it)`, ExitCode.usage);
}

/** Request headers at most: Node holds a connection's whole header block, and NATS carries it in one message. */
const MAX_WEB_HEADER_BYTES = 1024 * 1024;

/** The HTTP gateway's settings from the --web-* flags. */
function webOptions(opts: { webPort: number; webHost: string; webMaxInFlight: number; webHeaderTimeout: number; webTimeout: number; webMaxHeaderSize: number }) {
  const whole = (v: number, what: string, min: number, max = Number.MAX_SAFE_INTEGER): number => {
    if (!Number.isInteger(v) || v < min || v > max) throw new Error(`${what} must be a whole number from ${min} to ${max}`);
    return v;
  };
  const duration = (ms: number, what: string): number => {
    if (!Number.isInteger(ms) || ms < 1) throw new Error(`${what} must be at least 1ms`);
    return ms;
  };
  if (!Number.isInteger(opts.webPort) || opts.webPort < 0 || opts.webPort > 65535) throw new Error("--web-port must be 0-65535");
  // An empty host would listen on every interface; that must be asked for by name (0.0.0.0 or ::).
  if (opts.webHost.trim() === "") throw new Error("--web-host must name an interface (127.0.0.1 by default; 0.0.0.0 or :: for all)");
  return {
    port: opts.webPort,
    host: opts.webHost,
    maxInFlight: whole(opts.webMaxInFlight, "--web-max-in-flight", 1),
    headersTimeoutMs: duration(opts.webHeaderTimeout, "--web-header-timeout"),
    requestTimeoutMs: Math.max(DEFAULT_GATEWAY.requestTimeoutMs, opts.webHeaderTimeout),
    replyTimeoutMs: duration(opts.webTimeout, "--web-timeout"),
    maxHeaderBytes: whole(opts.webMaxHeaderSize, "--web-max-header-size", 1024, MAX_WEB_HEADER_BYTES),
  };
}

/** What `node up` prints once it runs, as one string: one write, so no log line lands inside it. */
function banner(running: RunningNode, noAuth: boolean): string {
  const info = running.node.ping();
  const lines = [
    `nex node ${info.name} is up`,
    `  node id:  ${info.node_id}`,
    `  xkey:     ${info.xkey}`,
    `  version:  ${info.version}`,
    `  types:    ${info.workload_types.join(", ")}`,
    `  tags:     ${JSON.stringify(info.tags)}`,
    `  broker:   ${running.brokerUrl}${running.broker ? " (bundled)" : ""}`,
  ];
  if (running.broker?.wsUrl) lines.push(`  websocket: ${running.broker.wsUrl}`);
  if (running.broker?.httpUrl) lines.push(`  monitor:  ${running.broker.httpUrl}`);
  if (running.gateway) lines.push(`  web:      ${running.gateway.url}`);
  if (running.metrics) lines.push(`  metrics:  ${running.metrics.url}`);
  if (running.local) {
    lines.push(`  clients:  ${running.local.url_with_credentials}`);
    lines.push(`            (nex commands on this machine use it; other clients read ${path.join(nexHome(), LOCAL_BROKER_FILE)})`);
  } else if (running.broker && noAuth) lines.push("  auth:     off (--no-auth): any client may connect");
  return `${lines.join("\n")}\n`;
}

/** Where the node serves /metrics (--metrics-port, --metrics-host): nowhere without a port, and a host alone is refused (it would be ignored). */
function metricsOptions(opts: { metricsPort?: number; metricsHost: string }, command: Command): { metrics?: { host: string; port: number } } {
  const port = opts.metricsPort;
  if (port === undefined) {
    if (command.getOptionValueSource("metricsHost") === "cli") throw new CliError("--metrics-host goes with --metrics-port (no metrics listener starts without it)", ExitCode.usage);
    return {};
  }
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error("--metrics-port must be 0-65535");
  if (opts.metricsHost.trim() === "") throw new Error("--metrics-host must name an interface (127.0.0.1 by default; 0.0.0.0 or :: for all)");
  return { metrics: { host: opts.metricsHost, port } };
}

function upCommand(version: string): Command {
  return configureUsageErrors(
    addLogOptions(addWebSocketOptions(addTlsOptions(new Command("up"))))
      .description("start a node: the bundled NATS broker and a node agent (or only the agent, with --server)")
      .option("-s, --server <urls>", "use an existing NATS server/cluster instead of the bundled broker")
      .option("--user <user>", "NATS username (with the bundled broker: the one user it admits)")
      .option("--password <password>", "NATS password")
      .option("--token <token>", "NATS token")
      .option("--no-auth", "bundled broker: admit anonymous clients (by default it generates credentials and refuses them)")
      .option("--broker-config <file>", "bundled broker: a nats-server configuration file (listen, limits, authorization, tls); flags override it")
      .option("--host <host>", "bundled broker: interface to listen on", "127.0.0.1")
      .option("-p, --port <port>", "bundled broker: client port", (v) => Number(v), 4222)
      .option("--http-port <port>", "bundled broker: monitoring port", (v) => Number(v))
      .option("--metrics-port <port>", "serve GET /metrics (Prometheus) of the node and its workloads on this port (0: any free port)", (v) => Number(v))
      .option("--metrics-host <host>", "metrics: interface to listen on", "127.0.0.1")
      .option("--data-dir <dir>", "node identity, state and (bundled broker) JetStream data; default $NEX_HOME/node (~/.nex/node)")
      .option("--artifact-dir <dir>", "a directory of artifacts that deploys may name as file:///<path> (none by default: object store only)")
      .option("--config <file>", "JSON config with the same keys as the flags (name, tags, workload_types, allowed_issuers, allow_any_issuer, trusted_nodes, allow_shared_triggers, limits, data_dir, artifact_dir, docker_host, container_user, runtime_host_per_namespace, js_replicas, failover_grace_ms)")
      .option("--name <name>", "node name")
      .option("--tag <key=value>", "node tag (repeatable)", keyValues)
      .addOption(new Option("--trusted-node <node-id>", "a node that may take this node's child workloads besides itself (repeatable; default: any node that signs its xkey)").argParser(collect).env("NEX_TRUSTED_NODES"))
      .option("--allow-issuer <nkey>", "issuer public key allowed to deploy, undeploy and lame-duck (repeatable; default: the local issuer in $NEX_HOME/issuer.nk)", collect)
      .option("--allow-any-issuer", "accept any validly signed request (a lab setting)")
      .option("--allow-shared-triggers", "let namespaces serve overlapping trigger subjects (refused by default)")
      .option("--workload-types <types>", "comma-separated workload types to run (javascript, wasm, oci)", collect)
      .option("--docker-host <url>", "oci: the Docker engine, unix:///path/docker.sock or tcp://host:port (default $DOCKER_HOST or /var/run/docker.sock)")
      .option("--container-user <uid[:gid]>", "oci: the user containers run as (default 65534:65534, nobody)")
      .option("--runtime-host-per-namespace", "run each namespace's JavaScript and wasm workloads in runtime hosts of their own")
      .option("--js-replicas <n>", "copies JetStream keeps of each bucket nex creates (default: min(3, JetStream servers in the cluster))", (v) => Number(v))
      .addOption(new Option("--failover-grace <duration>", "how long a lost node's workloads wait before they move to other nodes").argParser(durationArg))
      .option("--web-port <port>", "start the HTTP gateway on this port (0: any free port): routes of `nex run --http-path`", (v) => Number(v))
      .option("--web-host <host>", "HTTP gateway: interface to listen on", "127.0.0.1")
      .option("--web-max-in-flight <n>", "HTTP gateway: requests in flight at most (503 past it)", (v) => Number(v), DEFAULT_GATEWAY.maxInFlight)
      .addOption(new Option("--web-header-timeout <duration>", "HTTP gateway: time to receive a request's headers (408 past it)").argParser(durationArg).default(DEFAULT_GATEWAY.headersTimeoutMs, "10s"))
      .addOption(new Option("--web-timeout <duration>", "HTTP gateway: time to wait for a workload's reply (504 past it)").argParser(durationArg).default(DEFAULT_GATEWAY.replyTimeoutMs, "30s"))
      .option("--web-max-header-size <bytes>", "HTTP gateway: bytes of request headers at most (431 past it)", (v) => Number(v), DEFAULT_GATEWAY.maxHeaderBytes)
      .action(
        withErrors(async (opts, command: Command) => {
          refuseWebSocketFlagsWithServer(opts);
          refuseWebFlagsWithoutPort(opts, command);
          const { log, release } = await commandLogger(opts);
          const config = loadNodeConfig(opts.config, {
            name: opts.name,
            tags: opts.tag,
            allowed_issuers: opts.allowIssuer,
            trusted_nodes: opts.trustedNode,
            allow_any_issuer: opts.allowAnyIssuer,
            workload_types: opts.workloadTypes,
            data_dir: opts.dataDir,
            artifact_dir: opts.artifactDir,
            allow_shared_triggers: opts.allowSharedTriggers,
            docker_host: opts.dockerHost,
            container_user: opts.containerUser,
            runtime_host_per_namespace: opts.runtimeHostPerNamespace,
            js_replicas: opts.jsReplicas,
            failover_grace_ms: opts.failoverGrace,
          });
          // Loaded here, so client commands do not load the broker, runtimes and isolated-vm at start-up.
          const { nodeUp } = await import("../node-agent/up.js");
          // A failed start-up releases its lines before the error; a started one prints its banner first.
          const running = await nodeUp({
            config,
            server: opts.server,
            auth: opts.user || opts.token ? { user: opts.user, pass: opts.password, token: opts.token } : undefined,
            noAuth: opts.auth === false,
            // With a broker config file, its listen address counts unless the flags say otherwise.
            host: !opts.brokerConfig || command.getOptionValueSource("host") === "cli" ? opts.host : undefined,
            port: !opts.brokerConfig || command.getOptionValueSource("port") === "cli" ? opts.port : undefined,
            httpPort: opts.httpPort,
            brokerOptions: await brokerOptionsFrom(opts),
            ...(opts.webPort !== undefined ? { web: webOptions(opts) } : {}),
            ...metricsOptions(opts, command),
            version,
            log,
            onLameDuckDone: () => void running.stop().then(() => process.exit(0)),
          }).catch((err: unknown) => {
            release();
            throw err;
          });
          process.stdout.write(banner(running, opts.auth === false));
          release();
          let stopping = false;
          const stop = (signal: string): void => {
            if (stopping) return;
            stopping = true;
            log.info({ signal }, "stopping node");
            void running.stop().then(() => process.exit(0));
          };
          process.on("SIGINT", () => stop("SIGINT"));
          process.on("SIGTERM", () => stop("SIGTERM"));
        }),
      ),
  );
}

export function nodeCommand(version: string): Command {
  const node = new Command("node").description("run and inspect nodes");
  node.addCommand(upCommand(version));
  node.addCommand(
    addConnectionOptions(new Command("ls").description("list the nodes that answer").addOption(namespaceOption())).action(
      withErrors(async (opts: ClientOpts) => {
        const nodes = await withControl(opts, (c) => c.ping());
        if (opts.json) return printJson(nodes);
        if (nodes.length === 0) return console.log("no nodes answered");
        printTable(nodes, [
          { key: "node_id", header: "ID" },
          "name",
          "version",
          { key: "uptime_s", header: "UPTIME", format: (v) => `${v}s` },
          { key: "workload_count", header: "WORKLOADS", align: "right" },
          { key: "workload_types", header: "TYPES", format: (v) => (v as string[]).join(",") },
          { key: "tags", format: (v) => Object.entries(v as Record<string, string>).map(([k, x]) => `${k}=${x}`).join(",") },
          { key: "lame_duck", header: "LAME DUCK" },
        ]);
      }),
    ),
  );
  node.addCommand(
    addConnectionOptions(new Command("info").description("one node in detail").argument("<node-id>").addOption(namespaceOption())).action(
      withErrors(async (nodeId: string, opts: ClientOpts) => {
        const info = await withControl(opts, (c) => c.info(nodeId));
        if (opts.json) return printJson(info);
        console.log(`node ${info.name} (${info.node_id})`);
        console.log(`  xkey: ${info.xkey}\n  version: ${info.version}\n  uptime: ${info.uptime_s}s\n  broker: ${info.broker_url}`);
        console.log(`  tags: ${JSON.stringify(info.tags)}\n  lame duck: ${info.lame_duck}\n  rss: ${Math.round(info.memory.rss / 1048576)} MiB`);
        console.log(`  workloads in ${opts.namespace}: ${info.workloads.length}`);
        if (info.workloads.length > 0) printTable(info.workloads, ["id", "name", "type", "state", { key: "trigger_subjects", header: "TRIGGERS", format: (v) => (v as string[]).join(",") }]);
      }),
    ),
  );
  node.addCommand(
    addConnectionOptions(
      new Command("lameduck")
        .description("drain and stop a node")
        .argument("<node-id>")
        .option("--move", "hand its workloads to other nodes (by auction) before it stops them"),
    ).action(
      withErrors(async (nodeId: string, opts: ClientOpts & { move?: boolean }) => {
        const reply = await withControl({ ...opts, namespace: DEFAULT_NAMESPACE }, (c) => c.lameDuck(issuerKey(), nodeId, opts.move === true));
        if (opts.json) return printJson(reply);
        console.log(`node ${reply.node_id} is entering lame duck mode: it ${opts.move ? "moves its workloads to other nodes" : "drains its workloads"} and exits`);
      }),
    ),
  );
  return node;
}

export { collect, keyValues, namespaceOption, withControl, type ClientOpts };
