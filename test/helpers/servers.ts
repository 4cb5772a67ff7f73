// Starts either the reference nats-server or the bundled broker with the same
// options, so suites can run one set of assertions against both.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe } from "vitest";

export type ServerKind = "bundled" | "nats-server";
export const SERVER_KINDS: ServerKind[] = ["bundled", "nats-server"];

export interface ServerOpts {
  monitoring?: boolean;
  maxPayload?: number;
  maxPending?: number;
  maxControlLine?: number;
  pingIntervalMs?: number;
  maxPingsOut?: number;
  authTimeoutMs?: number;
  /** Bundled broker only: closes connections that send nothing at all (nats-server has no such timer). */
  connectTimeoutMs?: number;
  auth?: { token?: string; users?: { user: string; password: string }[] };
  /** write_deadline: a connection whose output cannot be written for this long is a slow consumer (default 10 s). */
  writeDeadlineMs?: number;
  /** Subscriptions one connection may hold (max_subscriptions). */
  maxSubscriptions?: number;
  /** Client connections at once, TCP and WebSocket together (max_connections); the next is refused. */
  maxConnections?: number;
  /**
   * JetStream on or off. Undefined keeps each kind's default (bundled: on, in a temporary store the
   * broker removes on close; nats-server: off). With `true` both kinds get a data directory:
   * `dataDir` if given, otherwise a temporary one the harness owns and stop() removes, so a
   * restart() keeps the streams.
   */
  jetstream?: boolean;
  /** JetStream data directory, owned by the caller (never removed by the harness). */
  dataDir?: string;
  /**
   * Bundled only: run the broker as a child process (`node bin/nex.js broker`, from dist/) so that
   * kill() can SIGKILL it. Only the options the CLI has are supported in this mode.
   * nats-server always runs as a child process.
   */
  childProcess?: boolean;
  /**
   * A nats-server config file both kinds start from (`nats-server -c <file>`; the bundled broker
   * loads it with its own parser, in process). The harness still picks the port and host, as
   * `nats-server -a 127.0.0.1 -p <port> -c <file>` does; the other options above are ignored.
   */
  configFile?: string;
  /**
   * A WebSocket listener beside the TCP one, on its own free loopback port (plain ws, no TLS).
   * nats-server: a `websocket { listen: "127.0.0.1:P", no_tls: true }` block in its config file;
   * bundled: `websocket: { port: 0 }` (in process) or `--ws-port 0` (child process).
   * `compression` is nats-server's `compression: true` (permessage-deflate); `allowedOrigins` its
   * `allowed_origins` (other Origins get 403); `sameOrigin` its `same_origin: true` (an Origin other
   * than the listener's own host and port gets 403; in process only, the CLI has no flag for it).
   * `tls` serves wss:// with that certificate (nats-server: a tls block in place of `no_tls`; bundled:
   * `websocket.tls`, in process only) and makes wsUrl a wss:// URL. Ignored with `configFile`.
   */
  websocket?: { compression?: boolean; allowedOrigins?: string[]; sameOrigin?: boolean; tls?: { certFile: string; keyFile: string } };
}

export interface RunningServer {
  kind: ServerKind;
  url: string;
  port: number;
  httpUrl?: string;
  /** "ws://127.0.0.1:P" when started with the `websocket` option ("wss://..." with its `tls`). */
  wsUrl?: string;
  /** The WebSocket listener's port, with wsUrl. */
  wsPort?: number;
  /** The JetStream data directory in use, when the harness knows it (see ServerOpts.jetstream). */
  dataDir?: string;
  stop(): Promise<void>;
  /**
   * Graceful stop (SIGTERM, or close() in-process), then start again on the same ports with the
   * same options and data directory. Also brings a server back after kill(). url/port stay valid.
   */
  restart(): Promise<void>;
  /**
   * SIGKILL the server process and wait until it is gone (no shutdown code runs). Needs a process:
   * nats-server, or bundled with `childProcess: true`; throws otherwise. restart() starts it again.
   */
  kill(): Promise<void>;
  /** Server stderr (tail, across restarts), handy in failure messages; "" for in-process bundled. */
  logs(): string;
}

// The broker is written concurrently; we type only what the suites use.
interface BundledBroker {
  url: string;
  port: number;
  httpPort?: number;
  httpUrl?: string;
  wsUrl?: string;
  wsPort?: number;
  close(): Promise<void>;
}

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, "../..");
const BROKER_TS = path.join(ROOT, "src/broker/index.ts");
const NEX_BIN = path.join(ROOT, "bin/nex.js");
const isCI = process.env.CI === "true";

let natsServerFound: boolean | undefined;
function natsServerOnPath(): boolean {
  natsServerFound ??= spawnSync("nats-server", ["--version"], { encoding: "utf8" }).status === 0;
  return natsServerFound;
}

/**
 * Why `kind` cannot run here, or undefined if it can. On CI nothing is
 * skipped: a missing server makes startServer throw, i.e. the tests fail.
 */
export function unavailableReason(kind: ServerKind): string | undefined {
  if (isCI) return undefined;
  if (kind === "nats-server") return natsServerOnPath() ? undefined : "nats-server not found on PATH";
  return existsSync(BROKER_TS) ? undefined : "src/broker/index.ts does not exist yet";
}

/** describe() once per server kind; unavailable kinds are skipped with a one-line reason. */
export function describeEachServer(
  title: string,
  body: (kind: ServerKind) => void,
  kinds: ServerKind[] = SERVER_KINDS,
): void {
  for (const kind of kinds) {
    const reason = unavailableReason(kind);
    const name = reason ? `${title} [${kind}] (skipped: ${reason})` : `${title} [${kind}]`;
    describe.skipIf(reason !== undefined)(name, () => body(kind));
  }
}

/** Ask the OS for a free loopback port (bind :0, read it, release it). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

/** Resolves once a TCP connection to the port succeeds and the server speaks (INFO). */
async function waitForInfo(port: number, deadline: number, alive: () => boolean): Promise<void> {
  for (;;) {
    if (!alive()) throw new Error("server process exited during startup");
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, "127.0.0.1");
      const done = (v: boolean) => {
        s.destroy();
        resolve(v);
      };
      s.setTimeout(1000, () => done(false));
      s.once("data", (d) => done(d.toString("latin1").startsWith("INFO")));
      s.once("error", () => done(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`server on port ${port} never became ready`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

// nats-server config syntax: durations as strings, auth timeout in seconds.
function natsConfig(opts: ServerOpts, storeDir: string | undefined, wsPort?: number): string {
  const lines: string[] = [];
  if (opts.maxPayload !== undefined) lines.push(`max_payload: ${opts.maxPayload}`);
  if (opts.maxPending !== undefined) lines.push(`max_pending: ${opts.maxPending}`);
  if (opts.maxControlLine !== undefined) lines.push(`max_control_line: ${opts.maxControlLine}`);
  if (opts.pingIntervalMs !== undefined) lines.push(`ping_interval: "${opts.pingIntervalMs}ms"`);
  if (opts.maxPingsOut !== undefined) lines.push(`ping_max: ${opts.maxPingsOut}`);
  if (opts.writeDeadlineMs !== undefined) lines.push(`write_deadline: "${opts.writeDeadlineMs}ms"`);
  if (opts.maxSubscriptions !== undefined) lines.push(`max_subscriptions: ${opts.maxSubscriptions}`);
  if (opts.maxConnections !== undefined) lines.push(`max_connections: ${opts.maxConnections}`);
  const auth: string[] = [];
  if (opts.auth?.token !== undefined) auth.push(`  token: ${JSON.stringify(opts.auth.token)}`);
  if (opts.auth?.users?.length) {
    const users = opts.auth.users
      .map((u) => `    { user: ${JSON.stringify(u.user)}, password: ${JSON.stringify(u.password)} }`)
      .join("\n");
    auth.push(`  users: [\n${users}\n  ]`);
  }
  if (opts.authTimeoutMs !== undefined && auth.length) auth.push(`  timeout: ${opts.authTimeoutMs / 1000}`);
  if (auth.length) lines.push(`authorization {\n${auth.join("\n")}\n}`);
  if (storeDir !== undefined) lines.push(`jetstream {\n  store_dir: ${JSON.stringify(storeDir)}\n}`);
  if (opts.websocket && wsPort !== undefined) {
    const tls = opts.websocket.tls;
    const ws = [
      `  listen: "127.0.0.1:${wsPort}"`,
      tls ? `  tls {\n    cert_file: ${JSON.stringify(tls.certFile)}\n    key_file: ${JSON.stringify(tls.keyFile)}\n  }` : "  no_tls: true",
    ];
    if (opts.websocket.compression) ws.push("  compression: true");
    if (opts.websocket.allowedOrigins?.length) ws.push(`  allowed_origins: [${opts.websocket.allowedOrigins.map((o) => JSON.stringify(o)).join(", ")}]`);
    if (opts.websocket.sameOrigin) ws.push("  same_origin: true");
    lines.push(`websocket {\n${ws.join("\n")}\n}`);
  }
  return lines.join("\n") + "\n";
}

// Last resort if a worker dies before its afterAll hooks: no orphaned servers.
const children = new Set<ChildProcess>();
process.once("exit", () => {
  for (const c of children) c.kill("SIGKILL");
});

/** One run of a server: a process or an in-process broker, from start to stop/kill. */
interface Instance {
  port: number;
  httpPort?: number;
  wsPort?: number;
  /** Graceful stop; a no-op once the instance is gone. */
  stop(): Promise<void>;
  /** SIGKILL (processes only). */
  kill?(): Promise<void>;
  logs(): string;
}

/** Starts an instance: on any free ports (port undefined) or on exactly the given ones (restart). */
type Launcher = (port: number | undefined, httpPort: number | undefined, wsPort?: number) => Promise<Instance>;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Runs `attempt` until it succeeds. A lost port race (`inUse(err)`) is retried: with fresh ports when
 * none are fixed, or after a pause on the same port (a restart waits for the old socket to be released).
 */
async function withPortRetries<T>(fixed: boolean, inUse: (err: unknown) => boolean, attempt: () => Promise<T>): Promise<T> {
  const tries = fixed ? 50 : 5;
  let lastErr: unknown;
  for (let i = 0; i < tries; i++) {
    try {
      return await attempt();
    } catch (e) {
      lastErr = e;
      if (!inUse(e)) break;
      if (fixed) await sleep(100);
    }
  }
  throw lastErr;
}

/** A process' life: exit or spawn error ends it. */
function track(child: ChildProcess): { exited: () => boolean; exitP: Promise<void> } {
  children.add(child);
  let exited = false;
  const exitP = new Promise<void>((r) => {
    const done = () => {
      exited = true;
      children.delete(child);
      r();
    };
    child.once("exit", done);
    child.once("error", done);
  });
  return { exited: () => exited, exitP };
}

async function sigkillAndWait(child: ChildProcess, exited: Promise<void>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  child.kill("SIGKILL");
  await exited;
}

function wrap(
  kind: ServerKind,
  first: Instance,
  launch: Launcher,
  dataDir: string | undefined,
  cleanup: () => void,
): RunningServer {
  let inst: Instance | undefined = first;
  const { port, httpPort, wsPort } = first;
  let history = "";
  let stopped = false;
  return {
    kind,
    url: `nats://127.0.0.1:${port}`,
    port,
    httpUrl: httpPort !== undefined ? `http://127.0.0.1:${httpPort}` : undefined,
    ...(wsPort !== undefined ? { wsUrl: `ws://127.0.0.1:${wsPort}`, wsPort } : {}),
    dataDir,
    logs: () => (history + (inst?.logs() ?? "")).slice(-16384),
    stop: async () => {
      if (stopped) return;
      stopped = true;
      const i = inst;
      inst = undefined;
      try {
        await i?.stop();
      } finally {
        if (i) history += i.logs();
        cleanup();
      }
    },
    restart: async () => {
      if (stopped) throw new Error("restart() after stop()");
      const i = inst;
      inst = undefined;
      if (i) {
        await i.stop();
        history = (history + i.logs() + "\n--- restart ---\n").slice(-16384);
      }
      inst = await launch(port, httpPort, wsPort);
    },
    kill: async () => {
      if (!inst) throw new Error("kill(): server is not running");
      if (!inst.kill) throw new Error("kill() needs a server process (bundled: start it with childProcess: true)");
      await inst.kill();
    },
  };
}

/** The first launch of a server; `cleanup` runs when it is stopped, or right away if it fails to start. */
async function launchFirst(
  kind: ServerKind,
  launch: Launcher,
  dataDir: string | undefined,
  cleanup: () => void,
): Promise<RunningServer> {
  try {
    return wrap(kind, await launch(undefined, undefined), launch, dataDir, cleanup);
  } catch (e) {
    cleanup();
    throw e;
  }
}

/** An Instance over a server process: SIGTERM (then SIGKILL) to stop, SIGKILL to kill. */
function processInstance(
  child: ChildProcess,
  exitP: Promise<void>,
  ports: { port: number; httpPort?: number; wsPort?: number },
  logs: () => string,
): Instance {
  return {
    ...ports,
    logs,
    stop: () => killAndWait(child, exitP),
    kill: () => sigkillAndWait(child, exitP),
  };
}

/** withPortRetries' test for launches that flag a lost port race on the error they throw. */
const flaggedInUse = (e: unknown): boolean => (e as { inUse?: boolean }).inUse === true;

async function startNatsServer(opts: ServerOpts): Promise<RunningServer> {
  if (!natsServerOnPath()) throw new Error("nats-server is not on PATH (it is required when CI=true)");
  const dir = mkdtempSync(path.join(tmpdir(), "nats-ref-"));
  const conf = path.join(dir, "server.conf");
  // nats-server keeps its streams under <store_dir>/jetstream.
  const storeDir = opts.jetstream ? (opts.dataDir ?? path.join(dir, "data")) : undefined;
  // The websocket listen address lives in the config file, so it is written per launch.
  const wantWs = opts.websocket !== undefined && opts.configFile === undefined;
  if (opts.configFile === undefined && !wantWs) writeFileSync(conf, natsConfig(opts, storeDir));

  const launchOnce = async (port: number, httpPort: number | undefined, wsPort: number | undefined): Promise<Instance> => {
    if (wantWs) writeFileSync(conf, natsConfig(opts, storeDir, wsPort));
    const args = ["-a", "127.0.0.1", "-p", String(port), "-c", opts.configFile ?? conf];
    if (httpPort !== undefined) args.push("-m", String(httpPort));
    const child = spawn("nats-server", args, { stdio: ["ignore", "ignore", "pipe"] });
    const { exited, exitP } = track(child);
    let log = "";
    child.stderr!.on("data", (d: Buffer) => {
      log = (log + d.toString()).slice(-16384);
    });
    try {
      await waitForInfo(port, Date.now() + 10_000, () => !exited());
      if (httpPort !== undefined) await waitForHttp(httpPort, Date.now() + 10_000);
      if (wsPort !== undefined) await waitForListen(wsPort, Date.now() + 10_000, () => !exited());
    } catch (e) {
      await killAndWait(child, exitP);
      throw Object.assign(new Error(`${(e as Error).message}\n${log}`), { inUse: /address already in use/i.test(log) });
    }
    return processInstance(child, exitP, { port, httpPort, wsPort }, () => log);
  };
  const launch: Launcher = (port, httpPort, wsPort) =>
    withPortRetries(port !== undefined, flaggedInUse, async () =>
      launchOnce(
        port ?? (await freePort()),
        httpPort ?? (opts.monitoring ? await freePort() : undefined),
        wsPort ?? (wantWs ? await freePort() : undefined),
      ),
    );
  return launchFirst("nats-server", launch, storeDir, () => rmSync(dir, { recursive: true, force: true }));
}

/** Resolves once a TCP connection to the port succeeds (the WebSocket listener is up). */
async function waitForListen(port: number, deadline: number, alive: () => boolean): Promise<void> {
  for (;;) {
    if (!alive()) throw new Error("server process exited during startup");
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, "127.0.0.1");
      s.once("connect", () => (s.destroy(), resolve(true)));
      s.once("error", () => (s.destroy(), resolve(false)));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`websocket port ${port} never became ready`);
    await sleep(50);
  }
}

async function waitForHttp(port: number, deadline: number): Promise<void> {
  for (;;) {
    try {
      const r = await fetch(`http://127.0.0.1:${port}/healthz`);
      await r.arrayBuffer();
      return;
    } catch {
      if (Date.now() > deadline) throw new Error(`monitoring port ${port} never became ready`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

async function killAndWait(child: ChildProcess, exited: Promise<void>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  child.kill("SIGTERM");
  // SIGKILL if it does not exit promptly, so a hung server cannot hang the suite.
  const t = setTimeout(() => child.kill("SIGKILL"), 3000);
  await exited;
  clearTimeout(t);
}

/**
 * Data directory for the bundled broker, and what stop() must clean up: the directory when the
 * harness made it, nothing when the caller gave it or there is none.
 */
function bundledDataDir(opts: ServerOpts): { dir?: string; removeOwned: () => void } {
  if (opts.dataDir !== undefined) return { dir: opts.dataDir, removeOwned: () => {} };
  // A child process that is SIGKILLed cannot remove its own temporary store, so the harness owns it.
  if (opts.jetstream === true || (opts.childProcess && opts.jetstream !== false)) {
    const dir = mkdtempSync(path.join(tmpdir(), "nex-bundled-data-"));
    return { dir, removeOwned: () => rmSync(dir, { recursive: true, force: true }) };
  }
  return { removeOwned: () => {} };
}

async function startBundled(opts: ServerOpts): Promise<RunningServer> {
  if (!existsSync(BROKER_TS)) throw new Error(`bundled broker missing: ${BROKER_TS}`);
  if (opts.childProcess) return startBundledChild(opts);
  // Variable specifier: the module may not exist while the broker is being written.
  const spec = "../../src/broker/index.js";
  const mod = (await import(/* @vite-ignore */ spec)) as {
    startBroker(o: Record<string, unknown>): Promise<BundledBroker>;
  };
  if (opts.configFile !== undefined) return startBundledFromConfig(mod, opts.configFile);
  const { dir, removeOwned } = bundledDataDir(opts);
  const launch: Launcher = (port, httpPort, wsPort) =>
    withPortRetries(
      port !== undefined,
      (e) => (e as NodeJS.ErrnoException).code === "EADDRINUSE",
      async () => {
        const broker = await mod.startBroker({
          host: "127.0.0.1",
          ...(opts.websocket
            ? {
                websocket: {
                  port: wsPort ?? 0,
                  host: "127.0.0.1",
                  ...(opts.websocket.compression ? { compression: true } : {}),
                  ...(opts.websocket.allowedOrigins ? { allowedOrigins: opts.websocket.allowedOrigins } : {}),
                  ...(opts.websocket.sameOrigin ? { sameOrigin: true } : {}),
                  ...(opts.websocket.tls ? { tls: opts.websocket.tls } : {}),
                },
              }
            : {}),
          port: port ?? 0,
          ...(opts.monitoring ? { httpPort: httpPort ?? 0 } : {}),
          ...(opts.maxPayload !== undefined ? { maxPayload: opts.maxPayload } : {}),
          ...(opts.maxPending !== undefined ? { maxPending: opts.maxPending } : {}),
          ...(opts.writeDeadlineMs !== undefined ? { writeDeadlineMs: opts.writeDeadlineMs } : {}),
          ...(opts.maxSubscriptions !== undefined ? { maxSubscriptions: opts.maxSubscriptions } : {}),
          ...(opts.maxConnections !== undefined ? { maxConnections: opts.maxConnections } : {}),
          ...(opts.maxControlLine !== undefined ? { maxControlLine: opts.maxControlLine } : {}),
          ...(opts.pingIntervalMs !== undefined ? { pingIntervalMs: opts.pingIntervalMs } : {}),
          ...(opts.maxPingsOut !== undefined ? { maxPingsOut: opts.maxPingsOut } : {}),
          ...(opts.authTimeoutMs !== undefined ? { authTimeoutMs: opts.authTimeoutMs } : {}),
          ...(opts.connectTimeoutMs !== undefined ? { connectTimeoutMs: opts.connectTimeoutMs } : {}),
          ...(opts.auth !== undefined ? { auth: opts.auth } : {}),
          ...(opts.jetstream !== undefined ? { jetstream: opts.jetstream } : {}),
          ...(dir !== undefined ? { dataDir: dir } : {}),
        });
        let closed: Promise<void> | undefined;
        return {
          port: broker.port,
          httpPort: opts.monitoring
            ? (broker.httpPort ?? Number(new URL(broker.httpUrl ?? "http://x:0").port))
            : undefined,
          ...(opts.websocket ? { wsPort: bundledWsPort(broker) } : {}),
          logs: () => "",
          stop: () => (closed ??= broker.close()),
        };
      },
    );
  return launchFirst("bundled", launch, dir, removeOwned);
}

/** The WebSocket port an in-process bundled broker reports (wsPort, else parsed from wsUrl). */
function bundledWsPort(broker: BundledBroker): number {
  const p = broker.wsPort ?? (broker.wsUrl ? Number(new URL(broker.wsUrl).port) : undefined);
  if (!p) throw new Error("the bundled broker was started with websocket but reports no wsPort/wsUrl");
  return p;
}

/** The bundled broker in process, from a config file (the broker's own parser), on a free port. */
async function startBundledFromConfig(
  mod: { startBroker(o: Record<string, unknown>): Promise<BundledBroker> },
  configFile: string,
): Promise<RunningServer> {
  const spec = "../../src/broker/config.js";
  const { loadConfigFile } = (await import(/* @vite-ignore */ spec)) as { loadConfigFile(file: string): Record<string, unknown> };
  const fromFile = loadConfigFile(configFile);
  const launch: Launcher = (port, httpPort) =>
    withPortRetries(
      port !== undefined,
      (e) => (e as NodeJS.ErrnoException).code === "EADDRINUSE",
      async () => {
        const broker = await mod.startBroker({ ...fromFile, host: "127.0.0.1", port: port ?? 0, ...(httpPort !== undefined ? { httpPort } : {}) });
        let closed: Promise<void> | undefined;
        return { port: broker.port, httpPort: broker.httpPort, logs: () => "", stop: () => (closed ??= broker.close()) };
      },
    );
  return launchFirst("bundled", launch, undefined, () => {});
}

let distChecked: string | undefined;
/** bin/nex.js runs dist/: refuse to test a broker build older than its sources (src/broker, src/cli). */
function assertDistFresh(): void {
  if (distChecked === "ok") return;
  const stale: string[] = [];
  const walk = (rel: string) => {
    for (const e of readdirSync(path.join(ROOT, rel), { withFileTypes: true })) {
      const r = path.join(rel, e.name);
      if (e.isDirectory()) walk(r);
      else if (e.name.endsWith(".ts") && !e.name.endsWith(".d.ts")) {
        const js = path.join(ROOT, "dist", r.replace(/\.ts$/, ".js"));
        if (!existsSync(js) || statSync(js).mtimeMs < statSync(path.join(ROOT, r)).mtimeMs) stale.push(r);
      }
    }
  };
  walk("src/broker");
  walk("src/cli");
  if (stale.length) {
    throw new Error(`dist/ is missing or older than ${stale.slice(0, 5).join(", ")}; run \`npx tsc -p .\` first`);
  }
  distChecked = "ok";
}

async function startBundledChild(opts: ServerOpts): Promise<RunningServer> {
  const unsupported = (
    ["maxControlLine", "pingIntervalMs", "maxPingsOut", "authTimeoutMs", "connectTimeoutMs", "auth", "maxSubscriptions", "maxConnections"] as const
  ).filter((k) => opts[k] !== undefined) as string[];
  if (opts.websocket?.sameOrigin) unsupported.push("websocket.sameOrigin");
  if (opts.websocket?.tls) unsupported.push("websocket.tls");
  if (unsupported.length) throw new Error(`childProcess: the CLI has no option for ${unsupported.join(", ")}`);
  assertDistFresh();
  const { dir, removeOwned } = bundledDataDir(opts);

  const launchOnce = async (port: number, httpPort: number | undefined, wsPort: number | undefined): Promise<Instance> => {
    const args = [NEX_BIN, "broker", "--host", "127.0.0.1", "--port", String(port)];
    if (opts.monitoring) args.push("--http-port", String(httpPort ?? 0));
    if (opts.websocket) {
      args.push("--ws-port", String(wsPort ?? 0), "--ws-host", "127.0.0.1");
      if (opts.websocket.compression) args.push("--ws-compression");
      for (const o of opts.websocket.allowedOrigins ?? []) args.push("--ws-allowed-origin", o);
    }
    if (dir !== undefined) args.push("--data-dir", dir);
    if (opts.jetstream === false) args.push("--no-jetstream");
    if (opts.maxPayload !== undefined) args.push("--max-payload", String(opts.maxPayload));
    if (opts.maxPending !== undefined) args.push("--max-pending", String(opts.maxPending));
    if (opts.writeDeadlineMs !== undefined) args.push("--write-deadline", String(opts.writeDeadlineMs));
    const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
    const { exited, exitP } = track(child);
    let log = "";
    let out = "";
    child.stderr!.on("data", (d: Buffer) => {
      log = (log + d.toString()).slice(-16384);
    });
    const ready = new Promise<{ port: number; httpPort?: number; wsPort?: number }>((resolve, reject) => {
      const check = () => {
        const m = /Listening for client connections on nats:\/\/[^\s:]+:(\d+)/.exec(out);
        const h = /Monitoring on http:\/\/[^\s:]+:(\d+)/.exec(out);
        const w = /Listening for websocket clients on ws:\/\/[^\s:]+:(\d+)/.exec(out);
        if (m && (!opts.monitoring || h) && (!opts.websocket || w)) {
          resolve({ port: Number(m[1]), httpPort: h ? Number(h[1]) : undefined, wsPort: w ? Number(w[1]) : undefined });
        }
      };
      child.stdout!.on("data", (d: Buffer) => {
        out = (out + d.toString()).slice(-16384);
        check();
      });
      void exitP.then(() => reject(new Error(`broker process exited during startup\n${out}\n${log}`)));
      setTimeout(() => reject(new Error(`broker process not ready after 15 s\n${out}\n${log}`)), 15_000).unref();
    });
    let ports: { port: number; httpPort?: number; wsPort?: number };
    try {
      ports = await ready;
      await waitForInfo(ports.port, Date.now() + 10_000, () => !exited());
    } catch (e) {
      await sigkillAndWait(child, exitP);
      throw Object.assign(e as Error, { inUse: /EADDRINUSE|address already in use/i.test(out + log) });
    }
    return processInstance(child, exitP, ports, () => log);
  };
  const launch: Launcher = (port, httpPort, wsPort) =>
    withPortRetries(port !== undefined, flaggedInUse, () => launchOnce(port ?? 0, httpPort, wsPort));
  return launchFirst("bundled", launch, dir, removeOwned);
}

export async function startServer(kind: ServerKind, opts: ServerOpts = {}): Promise<RunningServer> {
  const server = await (kind === "bundled" ? startBundled(opts) : startNatsServer(opts));
  if (opts.websocket?.tls && server.wsUrl !== undefined) server.wsUrl = server.wsUrl.replace(/^ws:/, "wss:");
  return server;
}
