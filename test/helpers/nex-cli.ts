// Runs the real `nex` CLI (bin/nex.js → dist/, built by `npm test`) in child processes, each test with
// its own NEX_HOME (issuer keys) and data directory.

import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { freePort, type RunningServer, type ServerKind, startServer } from "./servers.js";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const NEX_BIN = path.join(ROOT, "bin/nex.js");

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function tempDir(prefix: string): string {
  return mkdtempSync(path.join(tmpdir(), prefix));
}

/** Runs `nex <args>` to completion. */
export function runNex(args: string[], env: Record<string, string> = {}, input?: string, timeoutMs = 30_000): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [NEX_BIN, ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`nex ${args.join(" ")} did not finish in ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, timeoutMs);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
    child.stdin.end(input ?? "");
  });
}

export interface NodeProcess {
  /** The NATS URL the node's broker (or --server) listens on. */
  url: string;
  nodeId: string;
  child: ChildProcess;
  output(): string;
  /** SIGTERM, then SIGKILL after 5 s; resolves when the process is gone. */
  stop(): Promise<void>;
  exited: Promise<number | null>;
}

/** The HTTP gateway URL a `nex node up --web-port` printed. */
export async function webUrlOf(node: NodeProcess): Promise<string> {
  for (let i = 0; i < 100; i++) {
    const url = /web:\s+(http:\/\/\S+)/.exec(node.output())?.[1];
    if (url) return url;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`the node printed no web: URL:\n${node.output()}`);
}

/** Starts `nex node up` and waits until it prints its node id and broker URL. */
export function startNodeUp(args: string[], env: Record<string, string> = {}, timeoutMs = 30_000): Promise<NodeProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [NEX_BIN, "node", "up", ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`nex node up did not start in ${timeoutMs} ms:\n${out}`));
    }, timeoutMs);
    const onData = (d: Buffer): void => {
      out += d.toString();
      const url = /broker:\s+(nats:\/\/\S+)/.exec(out)?.[1];
      const nodeId = /node id:\s+(N[A-Z2-7]{55})/.exec(out)?.[1];
      if (url && nodeId) {
        clearTimeout(timer);
        resolve({
          url,
          nodeId,
          child,
          output: () => out,
          exited,
          stop: async () => {
            if (child.exitCode !== null || child.signalCode !== null) return;
            child.kill("SIGTERM");
            const killer = setTimeout(() => child.kill("SIGKILL"), 5000);
            await exited;
            clearTimeout(killer);
          },
        });
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`nex node up exited with ${code}:\n${out}`));
    });
  });
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/**
 * A `nex node up` for an end-to-end suite on `kind`: with its own bundled broker on a free port, or
 * connected to a fresh `nats-server -js`; with a data directory and NEX_HOME of its own, which up()
 * keeps when it starts the node again.
 */
export class NodeUnderTest {
  node!: NodeProcess;
  readonly env: Record<string, string>;
  /** nats-server: the node's user flags (for peer()). */
  private serverAuth: string[] = [];
  private readonly peers: { node: NodeProcess; dataDir: string }[] = [];

  private constructor(
    private readonly server: RunningServer | undefined,
    readonly dataDir: string,
    readonly home: string,
    private readonly extraArgs: string[],
    env: Record<string, string>,
    /** nats-server's WebSocket URL, when its config has a websocket block (the bundled one is in local-broker.json). */
    private readonly serverWsUrl?: string,
  ) {
    this.env = { NEX_HOME: home, ...env };
  }

  /**
   * `extraArgs` go to every `nex node up` of this node (after the broker and data-dir flags). On
   * nats-server, auth is on as the README documents it: a config file with a user for the node and one
   * for the CLI (NATS_USER/NATS_PASSWORD in `env`), and JetStream. `websocket: true` opens a WebSocket
   * listener on a free loopback port: `--ws-port 0` for the bundled broker, a `websocket {}` block
   * (no TLS) in nats-server's config; wsConnectOptions() says where and as whom.
   */
  static async start(kind: ServerKind, name: string, extraArgs: string[] = [], opts: { websocket?: boolean } = {}): Promise<NodeUnderTest> {
    const home = tempDir(`nex-${name}-home-`);
    let server: RunningServer | undefined;
    let serverAuth: string[] = [];
    let serverWsUrl: string | undefined;
    const env: Record<string, string> = {};
    if (kind === "nats-server") {
      const node = { user: "nex-node", password: randomBytes(12).toString("hex") };
      const cli = { user: "nex", password: randomBytes(12).toString("hex") };
      const conf = path.join(home, "nats-server.conf");
      let websocket = "";
      if (opts.websocket) {
        const wsPort = await freePort();
        websocket = `websocket { listen: "127.0.0.1:${wsPort}", no_tls: true }\n`;
        serverWsUrl = `ws://127.0.0.1:${wsPort}`;
      }
      writeFileSync(
        conf,
        `jetstream { store_dir: "${path.join(home, "js")}" }\n` +
          `authorization { users: [\n  { user: ${node.user}, password: "${node.password}" }\n  { user: ${cli.user}, password: "${cli.password}" }\n] }\n` +
          websocket,
      );
      server = await startServer("nats-server", { configFile: conf });
      serverAuth = ["--user", node.user, "--password", node.password];
      Object.assign(env, { NATS_USER: cli.user, NATS_PASSWORD: cli.password });
    }
    const wsArgs = kind === "bundled" && opts.websocket ? ["--ws-port", "0"] : [];
    const t = new NodeUnderTest(server, tempDir(`nex-${name}-data-`), home, [...serverAuth, ...wsArgs, ...extraArgs], env, serverWsUrl);
    t.serverAuth = serverAuth;
    try {
      await t.up();
    } catch (err) {
      await t.stop();
      throw err;
    }
    return t;
  }

  /**
   * How a NATS client reaches the node's broker: with the bundled broker, as the local user `nex node up`
   * generated (auth is on by default) and recorded in NEX_HOME; with nats-server, as the CLI user of its config.
   */
  connectOptions(): { servers: string; user?: string; pass?: string } {
    if (this.env.NATS_USER) return { servers: this.node.url, user: this.env.NATS_USER, pass: this.env.NATS_PASSWORD };
    const local = this.localBroker();
    if (!local) return { servers: this.node.url };
    return { servers: this.node.url, user: local.user, pass: local.password };
  }

  /**
   * The same over WebSocket (a node started with `websocket: true`): the bundled broker's `ws_url` from
   * local-broker.json with the credentials the node generated, or nats-server's websocket listener.
   */
  wsConnectOptions(): { servers: string; user?: string; pass?: string } {
    if (this.serverWsUrl) return { servers: this.serverWsUrl, user: this.env.NATS_USER, pass: this.env.NATS_PASSWORD };
    const local = this.localBroker();
    if (!local?.ws_url) {
      const file = path.join(this.home, "local-broker.json");
      throw new Error(`no ws_url in ${file} (was the node started with --ws-port?): ${local ? JSON.stringify({ ...local, password: "..." }) : "no such file"}`);
    }
    return { servers: local.ws_url, user: local.user, pass: local.password };
  }

  /** $NEX_HOME/local-broker.json of a node on its bundled broker, if there is one. */
  private localBroker(): { user?: string; password?: string; ws_url?: string } | undefined {
    const file = path.join(this.home, "local-broker.json");
    if (!existsSync(file)) return undefined;
    return JSON.parse(readFileSync(file, "utf8")) as { user?: string; password?: string; ws_url?: string };
  }

  /** Starts the node (again, on the same data after a stop). */
  async up(): Promise<NodeProcess> {
    const broker = this.server ? ["--server", this.server.url] : ["--port", "0"];
    this.node = await startNodeUp([...broker, "--data-dir", this.dataDir, ...this.extraArgs], this.env);
    return this.node;
  }

  /**
   * Another `nex node up` on the same broker (nats-server, or this node's bundled one), with the same
   * NEX_HOME (so it accepts the same local issuer) and a data directory, so an identity, of its own
   * (or the one given: a peer started again). stop() stops it too.
   */
  async peer(extraArgs: string[] = [], dataDir = tempDir("nex-peer-data-")): Promise<NodeProcess> {
    // On the bundled broker the peer joins this node's broker as the local user, as a second machine would.
    const auth = this.connectOptions();
    const server = this.server
      ? ["--server", this.server.url, ...this.serverAuth]
      : ["--server", this.node.url, ...(auth.user ? ["--user", auth.user, "--password", auth.pass ?? ""] : [])];
    const node = await startNodeUp([...server, "--data-dir", dataDir, ...extraArgs], this.env);
    this.peers.push({ node, dataDir });
    return node;
  }

  /** Stops the node and the server, and removes their directories. */
  async stop(): Promise<void> {
    for (const p of this.peers) {
      await p.node.stop();
      removeDir(p.dataDir);
    }
    await this.node?.stop();
    await this.server?.stop();
    removeDir(this.dataDir);
    removeDir(this.home);
  }
}
