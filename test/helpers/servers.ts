// Starts either the reference nats-server or the bundled broker with the same
// options, so suites can run one set of assertions against both.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
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
  /**
   * nats-server only (the bundled broker has no such option). 2.9.10 stalls a
   * fast producer instead of growing a slow consumer's pending bytes, so in
   * practice it drops a slow consumer when a write blocks this long (default 10 s).
   */
  natsWriteDeadlineMs?: number;
}

export interface RunningServer {
  kind: ServerKind;
  url: string;
  port: number;
  httpUrl?: string;
  stop(): Promise<void>;
  /** nats-server stderr (tail), handy in failure messages; "" for bundled. */
  logs(): string;
}

// The broker is written concurrently; we type only what the suites use.
interface BundledBroker {
  url: string;
  port: number;
  httpPort?: number;
  httpUrl?: string;
  close(): Promise<void>;
}

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BROKER_TS = path.resolve(HERE, "../../src/broker/index.ts");
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
function natsConfig(opts: ServerOpts): string {
  const lines: string[] = [];
  if (opts.maxPayload !== undefined) lines.push(`max_payload: ${opts.maxPayload}`);
  if (opts.maxPending !== undefined) lines.push(`max_pending: ${opts.maxPending}`);
  if (opts.maxControlLine !== undefined) lines.push(`max_control_line: ${opts.maxControlLine}`);
  if (opts.pingIntervalMs !== undefined) lines.push(`ping_interval: "${opts.pingIntervalMs}ms"`);
  if (opts.maxPingsOut !== undefined) lines.push(`ping_max: ${opts.maxPingsOut}`);
  if (opts.natsWriteDeadlineMs !== undefined) lines.push(`write_deadline: "${opts.natsWriteDeadlineMs}ms"`);
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
  return lines.join("\n") + "\n";
}

// Last resort if a worker dies before its afterAll hooks: no orphaned servers.
const children = new Set<ChildProcess>();
process.once("exit", () => {
  for (const c of children) c.kill("SIGKILL");
});

async function startNatsServer(opts: ServerOpts): Promise<RunningServer> {
  if (!natsServerOnPath()) throw new Error("nats-server is not on PATH (it is required when CI=true)");
  const dir = mkdtempSync(path.join(tmpdir(), "nats-ref-"));
  const conf = path.join(dir, "server.conf");
  writeFileSync(conf, natsConfig(opts));
  // A port can be taken between freePort() and the server's bind; retry a few times.
  let lastErr: unknown;
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const httpPort = opts.monitoring ? await freePort() : undefined;
    const args = ["-a", "127.0.0.1", "-p", String(port), "-c", conf];
    if (httpPort !== undefined) args.push("-m", String(httpPort));
    const child = spawn("nats-server", args, { stdio: ["ignore", "ignore", "pipe"] });
    children.add(child);
    let log = "";
    child.stderr!.on("data", (d: Buffer) => {
      log = (log + d.toString()).slice(-16384);
    });
    let exited = false;
    // A failed spawn emits "error" and maybe no "exit": either one ends the process' life.
    const exitP = new Promise<void>((r) => {
      const done = () => {
        exited = true;
        children.delete(child);
        r();
      };
      child.once("exit", done);
      child.once("error", done);
    });
    try {
      await waitForInfo(port, Date.now() + 10_000, () => !exited);
      if (httpPort !== undefined) await waitForHttp(httpPort, Date.now() + 10_000);
    } catch (e) {
      lastErr = new Error(`${(e as Error).message}\n${log}`);
      await killAndWait(child, exitP);
      if (/address already in use/i.test(log)) continue; // lost a port race: try new ports
      break;
    }
    return {
      kind: "nats-server",
      url: `nats://127.0.0.1:${port}`,
      port,
      httpUrl: httpPort !== undefined ? `http://127.0.0.1:${httpPort}` : undefined,
      logs: () => log,
      stop: async () => {
        await killAndWait(child, exitP);
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }
  rmSync(dir, { recursive: true, force: true });
  throw lastErr;
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

async function startBundled(opts: ServerOpts): Promise<RunningServer> {
  if (!existsSync(BROKER_TS)) throw new Error(`bundled broker missing: ${BROKER_TS}`);
  // Variable specifier: the module may not exist while the broker is being written.
  const spec = "../../src/broker/index.js";
  const mod = (await import(/* @vite-ignore */ spec)) as {
    startBroker(o: Record<string, unknown>): Promise<BundledBroker>;
  };
  const broker = await mod.startBroker({
    host: "127.0.0.1",
    port: 0,
    ...(opts.monitoring ? { httpPort: 0 } : {}),
    ...(opts.maxPayload !== undefined ? { maxPayload: opts.maxPayload } : {}),
    ...(opts.maxPending !== undefined ? { maxPending: opts.maxPending } : {}),
    ...(opts.maxControlLine !== undefined ? { maxControlLine: opts.maxControlLine } : {}),
    ...(opts.pingIntervalMs !== undefined ? { pingIntervalMs: opts.pingIntervalMs } : {}),
    ...(opts.maxPingsOut !== undefined ? { maxPingsOut: opts.maxPingsOut } : {}),
    ...(opts.authTimeoutMs !== undefined ? { authTimeoutMs: opts.authTimeoutMs } : {}),
    ...(opts.connectTimeoutMs !== undefined ? { connectTimeoutMs: opts.connectTimeoutMs } : {}),
    ...(opts.auth !== undefined ? { auth: opts.auth } : {}),
  });
  let stopped = false;
  return {
    kind: "bundled",
    url: broker.url,
    port: broker.port,
    httpUrl: opts.monitoring ? (broker.httpUrl ?? `http://127.0.0.1:${broker.httpPort}`) : undefined,
    logs: () => "",
    stop: async () => {
      if (stopped) return;
      stopped = true;
      await broker.close();
    },
  };
}

export async function startServer(kind: ServerKind, opts: ServerOpts = {}): Promise<RunningServer> {
  return kind === "bundled" ? startBundled(opts) : startNatsServer(opts);
}
