// A real nats-server JetStream cluster on loopback for tests that lose and restart servers: each server
// has fixed client, route and monitoring ports and its own store dir, so stop()/kill9() then start()
// brings back the same server (same name, same data) and its peers' routes find it again.

import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { freePort } from "./servers.js"; // bench/servers.ts

export interface ClusterUser {
  user: string;
  password: string;
}

export interface NatsClusterOptions {
  /** Servers in the cluster (default 3). */
  size?: number;
  /** An authorization { users: [...] } block on every server (as NodeUnderTest writes it for one). */
  auth?: { users: ClusterUser[] };
  /** Cluster name (default "nexc"). */
  name?: string;
  /** The nats-server binary (default "nats-server" on the PATH). */
  bin?: string;
}

export interface ClusterServer {
  /** server_name: n1, n2, ... (what JetStream reports as a stream or meta leader). */
  readonly name: string;
  readonly url: string;
  readonly port: number;
  readonly monitorUrl: string;
  readonly running: boolean;
  /** SIGKILL: no shutdown code runs. Resolves when the process is gone. */
  kill9(): Promise<void>;
  /** SIGTERM (graceful shutdown, JetStream leadership handed over); resolves when the process is gone. */
  stop(): Promise<void>;
  /** Starts it again with the same config and store dir; resolves when its client port answers INFO. */
  start(): Promise<void>;
  /** The tail of its log (stderr), across restarts. */
  logs(): string;
}

export interface NatsCluster {
  /** All client URLs, comma-joined (for `nex node up --server`). */
  readonly urls: string;
  readonly servers: ClusterServer[];
  server(name: string): ClusterServer;
  /** Connects a client to all servers (as the first auth user, if any). */
  connect(opts?: { name?: string }): Promise<NatsConnection>;
  /** Every running server has its routes to all other running servers. */
  waitForRoutes(timeoutMs?: number): Promise<void>;
  /** A meta leader exists, every running server sees it, and the JetStream API answers. */
  waitForJetStream(timeoutMs?: number): Promise<void>;
  /** The server_name leading `stream` (from $JS.API.STREAM.INFO), or undefined without a leader. */
  streamLeader(stream: string): Promise<string | undefined>;
  /** `stream` has a leader and all its replicas on running servers are current. */
  waitForStreamCurrent(stream: string, timeoutMs?: number): Promise<void>;
  /** Stops every server and removes the temp dir. */
  stop(): Promise<void>;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// Last resort if a worker dies before its afterAll hooks: no orphaned servers.
const children = new Set<ChildProcess>();
process.once("exit", () => {
  for (const c of children) c.kill("SIGKILL");
});

async function waitUntil(what: string, check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`nats cluster: timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** The client port accepts and the server speaks (INFO). */
async function answersInfo(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    const done = (v: boolean): void => {
      s.destroy();
      resolve(v);
    };
    s.setTimeout(1000, () => done(false));
    s.once("data", (d) => done(d.toString("latin1").startsWith("INFO")));
    s.once("error", () => done(false));
  });
}

async function monitor<T>(url: string): Promise<T> {
  const r = await fetch(url, { signal: AbortSignal.timeout(2000) });
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return (await r.json()) as T;
}

interface Ports {
  client: number;
  route: number;
  http: number;
}

function config(name: string, clusterName: string, ports: Ports, all: Ports[], storeDir: string, auth?: { users: ClusterUser[] }): string {
  const routes = all.filter((p) => p.route !== ports.route).map((p) => `    "nats-route://127.0.0.1:${p.route}"`);
  const lines = [
    `server_name: ${name}`,
    `listen: "127.0.0.1:${ports.client}"`,
    `http: "127.0.0.1:${ports.http}"`,
    `jetstream { store_dir: ${JSON.stringify(storeDir)} }`,
    `cluster {\n  name: ${clusterName}\n  listen: "127.0.0.1:${ports.route}"\n  routes: [\n${routes.join("\n")}\n  ]\n}`,
  ];
  if (auth?.users.length) {
    const users = auth.users.map((u) => `    { user: ${JSON.stringify(u.user)}, password: ${JSON.stringify(u.password)} }`).join("\n");
    lines.push(`authorization {\n  users: [\n${users}\n  ]\n}`);
  }
  return lines.join("\n") + "\n";
}

class Server implements ClusterServer {
  private child?: ChildProcess;
  private exited?: Promise<void>;
  private log = "";
  readonly url: string;
  readonly monitorUrl: string;

  constructor(
    readonly name: string,
    private readonly ports: Ports,
    private readonly confFile: string,
    private readonly bin: string,
  ) {
    this.url = `nats://127.0.0.1:${ports.client}`;
    this.monitorUrl = `http://127.0.0.1:${ports.http}`;
  }

  get port(): number {
    return this.ports.client;
  }

  get running(): boolean {
    return this.child !== undefined;
  }

  logs(): string {
    return this.log.slice(-16384);
  }

  async start(): Promise<void> {
    if (this.child) throw new Error(`${this.name} is already running`);
    // The old process' ports may linger for a moment after a kill: retry a launch that lost the race.
    for (let attempt = 0; ; attempt++) {
      const child = spawn(this.bin, ["-c", this.confFile], { stdio: ["ignore", "ignore", "pipe"] });
      children.add(child);
      const exited = new Promise<void>((r) => {
        child.once("exit", () => r());
        child.once("error", () => r());
      });
      let gone = false;
      void exited.then(() => {
        gone = true;
        children.delete(child);
        if (this.child === child) this.child = undefined;
      });
      child.stderr!.on("data", (d: Buffer) => {
        this.log = (this.log + d.toString()).slice(-65536);
      });
      this.child = child;
      this.exited = exited;
      const deadline = Date.now() + 15_000;
      while (!gone && !(await answersInfo(this.ports.client))) {
        if (Date.now() > deadline) break;
        await sleep(50);
      }
      if (!gone && Date.now() <= deadline) return;
      await this.kill9();
      if (attempt < 20 && /address already in use/i.test(this.log)) {
        await sleep(250);
        continue;
      }
      throw new Error(`${this.name} did not start:\n${this.logs()}`);
    }
  }

  private async signal(sig: NodeJS.Signals, graceMs: number): Promise<void> {
    const child = this.child;
    if (!child || !this.exited) return;
    child.kill(sig);
    const killer = setTimeout(() => child.kill("SIGKILL"), graceMs);
    await this.exited;
    clearTimeout(killer);
    this.log += `\n--- ${this.name} ${sig} ---\n`;
  }

  stop(): Promise<void> {
    return this.signal("SIGTERM", 15_000);
  }

  kill9(): Promise<void> {
    return this.signal("SIGKILL", 5_000);
  }
}

interface Jsz {
  meta_cluster?: { leader?: string; cluster_size?: number; replicas?: { name: string; current: boolean; offline?: boolean }[] };
}

interface StreamInfoReply {
  error?: { code: number; err_code?: number; description: string };
  cluster?: { leader?: string; replicas?: { name: string; current: boolean; offline?: boolean }[] };
}

export async function startNatsCluster(opts: NatsClusterOptions = {}): Promise<NatsCluster> {
  const size = opts.size ?? 3;
  const clusterName = opts.name ?? "nexc";
  const dir = mkdtempSync(path.join(tmpdir(), "nats-cluster-"));
  const ports: Ports[] = [];
  const taken = new Set<number>();
  // Ports are chosen up front: every server's config names its peers' route ports.
  while (ports.length < size) {
    const p: Ports = { client: await freePort(), route: await freePort(), http: await freePort() };
    if ([p.client, p.route, p.http].some((x) => taken.has(x)) || new Set([p.client, p.route, p.http]).size < 3) continue;
    for (const x of [p.client, p.route, p.http]) taken.add(x);
    ports.push(p);
  }
  const servers = ports.map((p, i) => {
    const name = `n${i + 1}`;
    const storeDir = path.join(dir, name, "store");
    mkdirSync(storeDir, { recursive: true });
    const conf = path.join(dir, name, "server.conf");
    writeFileSync(conf, config(name, clusterName, p, ports, storeDir, opts.auth));
    return new Server(name, p, conf, opts.bin ?? "nats-server");
  });
  const user = opts.auth?.users[0];
  let admin: NatsConnection | undefined;

  const cluster: NatsCluster = {
    urls: servers.map((s) => s.url).join(","),
    servers,
    server(name) {
      const s = servers.find((x) => x.name === name);
      if (!s) throw new Error(`no server ${name} in the cluster`);
      return s;
    },
    connect: (o = {}) =>
      connect({ servers: servers.map((s) => s.url), name: o.name, maxReconnectAttempts: -1, reconnectTimeWait: 100, ...(user ? { user: user.user, pass: user.password } : {}) }),

    async waitForRoutes(timeoutMs = 20_000) {
      const up = servers.filter((s) => s.running);
      await waitUntil(
        `routes among ${up.map((s) => s.name).join(", ")}`,
        async () => {
          for (const s of up) {
            const r = await monitor<{ num_routes: number }>(`${s.monitorUrl}/routez`);
            if (r.num_routes < up.length - 1) return false;
          }
          return true;
        },
        timeoutMs,
      );
    },

    async waitForJetStream(timeoutMs = 30_000) {
      const up = servers.filter((s) => s.running);
      await waitUntil(
        "a JetStream meta leader that every running server sees",
        async () => {
          let leader: string | undefined;
          for (const s of up) {
            const j = await monitor<Jsz>(`${s.monitorUrl}/jsz`);
            const l = j.meta_cluster?.leader;
            if (!l || (leader !== undefined && l !== leader)) return false;
            leader = l;
          }
          // The leader's view: every running peer is current in the meta group.
          const lj = await monitor<Jsz>(`${cluster.server(leader!).monitorUrl}/jsz`);
          const current = new Set((lj.meta_cluster?.replicas ?? []).filter((r) => r.current && !r.offline).map((r) => r.name));
          if (up.some((s) => s.name !== leader && !current.has(s.name))) return false;
          admin ??= await cluster.connect({ name: "nats-cluster-harness" });
          const info = await admin.request("$JS.API.INFO", undefined, { timeout: 2000 });
          return !(JSON.parse(info.string()) as { error?: unknown }).error;
        },
        timeoutMs,
      );
    },

    async streamLeader(stream) {
      admin ??= await cluster.connect({ name: "nats-cluster-harness" });
      const m = await admin.request(`$JS.API.STREAM.INFO.${stream}`, undefined, { timeout: 2000 });
      const info = JSON.parse(m.string()) as StreamInfoReply;
      if (info.error) throw new Error(`stream info ${stream}: ${info.error.description} (${info.error.code})`);
      return info.cluster?.leader || undefined;
    },

    async waitForStreamCurrent(stream, timeoutMs = 30_000) {
      await waitUntil(
        `stream ${stream} to have a leader and current replicas`,
        async () => {
          admin ??= await cluster.connect({ name: "nats-cluster-harness" });
          const m = await admin.request(`$JS.API.STREAM.INFO.${stream}`, undefined, { timeout: 2000 });
          const info = JSON.parse(m.string()) as StreamInfoReply;
          if (info.error || !info.cluster?.leader) return false;
          const up = new Set(servers.filter((s) => s.running).map((s) => s.name));
          return (info.cluster.replicas ?? []).every((r) => !up.has(r.name) || (r.current && !r.offline));
        },
        timeoutMs,
      );
    },

    async stop() {
      await admin?.close().catch(() => {});
      admin = undefined;
      await Promise.all(servers.map((s) => s.stop()));
      rmSync(dir, { recursive: true, force: true });
    },
  };

  try {
    await Promise.all(servers.map((s) => s.start()));
    await cluster.waitForRoutes();
  } catch (e) {
    await cluster.stop();
    throw e;
  }
  return cluster;
}
