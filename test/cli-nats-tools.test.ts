// End-to-end tests of `nex req|pub|sub|monitor` through the real CLI binary (node bin/nex.js, built into
// dist/ by `npm test`) against the bundled broker running in this process. Every test starts its own
// broker on an OS-chosen port and its own CLI processes, and kills whatever is left in afterEach.

import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { connect, headers, type NatsConnection } from "@nats-io/transport-node";
import { startBroker, type RunningBroker } from "../src/broker/index.js";
import { parseDuration } from "../src/cli/connection.js";
import { ControlSubjects } from "../src/protocol/control.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const BIN = path.join(ROOT, "bin", "nex.js");

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** A CLI process we can watch while it runs (sub, monitor) and await when it exits. */
interface NexProcess {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves once stderr matches, e.g. the "Subscribing on" notice printed after the server has the subscription. */
  waitForStderr(pattern: RegExp): Promise<void>;
  exited: Promise<Result>;
}

const children = new Set<ChildProcess>();

/** The test's environment minus anything that would change what the CLI connects to or prints. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of ["NATS_URL", "NATS_USER", "NATS_PASSWORD", "NATS_TOKEN", "NATS_CREDS", "NATS_TIMEOUT", "NEX_NAMESPACE", "NEX_DEBUG"]) {
    delete env[k];
  }
  return { ...env, ...extra };
}

function startNex(args: string[], options: { env?: Record<string, string>; input?: string } = {}): NexProcess {
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: ROOT,
    env: cleanEnv(options.env),
    // stdin from /dev/null unless the test feeds it: an open pipe would make `req` wait for a payload.
    stdio: [options.input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
  });
  children.add(child);
  let stdout = "";
  let stderr = "";
  const stderrWaiters: Array<() => void> = [];
  child.stdout!.setEncoding("utf8").on("data", (d: string) => (stdout += d));
  child.stderr!.setEncoding("utf8").on("data", (d: string) => {
    stderr += d;
    for (const w of stderrWaiters) w();
  });
  if (options.input !== undefined) child.stdin!.end(options.input);
  const exited = new Promise<Result>((resolve) => {
    child.on("close", (code) => {
      children.delete(child);
      for (const w of stderrWaiters) w();
      resolve({ code, stdout, stderr });
    });
  });
  return {
    child,
    stdout: () => stdout,
    stderr: () => stderr,
    exited,
    waitForStderr: (pattern) =>
      new Promise<void>((resolve, reject) => {
        const check = (): void => {
          if (pattern.test(stderr)) resolve();
          else if (child.exitCode !== null) reject(new Error(`nex exited (${child.exitCode}) before ${pattern}: ${stderr}`));
        };
        stderrWaiters.push(check);
        check();
      }),
  };
}

function runNex(args: string[], options: { env?: Record<string, string>; input?: string } = {}): Promise<Result> {
  return startNex(args, options).exited;
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

beforeAll(() => {
  if (!existsSync(path.join(ROOT, "dist", "src", "cli", "main.js"))) {
    throw new Error("dist/ is missing: run `npm run build` (npm test does it) before these tests");
  }
});

let broker: RunningBroker;
let nc: NatsConnection;

beforeEach(async () => {
  broker = await startBroker({ port: 0, jetstream: false });
  nc = await connect({ servers: broker.url });
});

afterEach(async () => {
  for (const child of children) child.kill("SIGKILL");
  await nc?.close();
  await broker?.close();
});

describe("nex req", () => {
  it("sends the payload and headers and prints the reply", async () => {
    nc.subscribe("svc.echo", {
      callback: (_err, m) => {
        m.respond(`echo:${m.string()}:${m.headers?.get("X-Trace") ?? ""}`);
      },
    });
    await nc.flush();

    const res = await runNex(["req", "svc.echo", "hello", "-H", "X-Trace:abc", "-s", broker.url]);
    expect(res).toEqual({ code: 0, stdout: "echo:hello:abc\n", stderr: "" });

    const piped = await runNex(["req", "svc.echo", "-", "-s", broker.url], { input: "from stdin" });
    expect(piped).toEqual({ code: 0, stdout: "echo:from stdin:\n", stderr: "" });
  });

  it("exits 3 with one line when nobody listens", async () => {
    const res = await runNex(["req", "nobody.home", "x", "-s", broker.url]);
    expect(res.code).toBe(3);
    expect(res.stderr).toBe('nex: no responders on "nobody.home"\n');
    expect(res.stdout).toBe("");
  });

  it("exits 1 and prints the error of an error reply (Nex-Error and Nats-Service-Error)", async () => {
    nc.subscribe("svc.nexerr", {
      callback: (_err, m) => {
        const h = headers();
        h.set("Nex-Error", "bad request");
        m.respond(JSON.stringify({ error: { code: 400, message: "name: is required" } }), { headers: h });
      },
    });
    nc.subscribe("svc.microerr", {
      callback: (_err, m) => {
        const h = headers();
        h.set("Nats-Service-Error", "boom");
        h.set("Nats-Service-Error-Code", "500");
        m.respond("", { headers: h });
      },
    });
    await nc.flush();

    const nex = await runNex(["req", "svc.nexerr", "{}", "-s", broker.url]);
    expect(nex.code).toBe(1);
    expect(nex.stderr).toBe('nex: error reply from "svc.nexerr": name: is required (400)\n');
    expect(nex.stdout).toBe("");

    const micro = await runNex(["req", "svc.microerr", "{}", "-s", broker.url]);
    expect(micro.code).toBe(1);
    expect(micro.stderr).toBe('nex: error reply from "svc.microerr": boom (500)\n');
  });

  it("exits 5 when no reply comes within --timeout", async () => {
    nc.subscribe("svc.silent", { callback: () => {} });
    await nc.flush();
    const res = await runNex(["req", "svc.silent", "x", "--timeout", "200ms", "-s", broker.url]);
    expect(res.code).toBe(5);
    expect(res.stderr).toBe('nex: no reply on "svc.silent" within 200ms\n');
  });

  it("honours NATS_URL, and -s wins over it", async () => {
    nc.subscribe("svc.hi", { callback: (_err, m) => void m.respond("hi") });
    await nc.flush();
    const fromEnv = await runNex(["req", "svc.hi", "x"], { env: { NATS_URL: broker.url } });
    expect(fromEnv).toEqual({ code: 0, stdout: "hi\n", stderr: "" });

    const deadPort = await freePort();
    const flagWins = await runNex(["req", "svc.hi", "x", "-s", broker.url], { env: { NATS_URL: `nats://127.0.0.1:${deadPort}` } });
    expect(flagWins.code).toBe(0);
  });

  it("exits 5 with one clear line, no stack, when the server is unreachable", async () => {
    const port = await freePort();
    const res = await runNex(["req", "svc.any", "x"], { env: { NATS_URL: `nats://127.0.0.1:${port}` } });
    expect(res.code).toBe(5);
    expect(res.stderr).toBe(`nex: cannot connect to nats://127.0.0.1:${port}: connection refused — is \`nex node up\` running?\n`);
    expect(res.stdout).toBe("");
  });

  it("exits 2 on usage errors", async () => {
    const missing = await runNex(["req", "-s", broker.url]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/^nex: missing required argument 'subject'/);

    const badTimeout = await runNex(["req", "svc.x", "y", "--timeout", "5", "-s", broker.url]);
    expect(badTimeout.code).toBe(2);
    expect(badTimeout.stderr).toMatch(/invalid duration "5"/);
  });
});

describe("nex pub and nex sub", () => {
  it("sub --count receives exactly what pub --count sent, in order", async () => {
    const sub = startNex(["sub", "demo.>", "--count", "3", "-s", broker.url]);
    await sub.waitForStderr(/Subscribing on "demo\.>"/);

    const pub = await runNex(["pub", "demo.orders", "order {{Count}}", "--count", "3", "-H", "Seq:{{Count}}", "-s", broker.url]);
    expect(pub.code).toBe(0);
    expect(pub.stderr).toBe('Published 3 messages to "demo.orders"\n');

    const res = await sub.exited;
    expect(res.code).toBe(0);
    expect(res.stdout).toBe(
      [1, 2, 3].map((n) => `[#${n}] Received on "demo.orders"\nSeq: ${n}\n\norder ${n}\n\n`).join(""),
    );
  });

  it("sub --json prints one object per line with subject, reply, headers and data", async () => {
    const sub = startNex(["sub", "demo.json", "--count", "2", "--json", "-s", broker.url]);
    await sub.waitForStderr(/Subscribing on/);

    expect((await runNex(["pub", "demo.json", "first", "-H", "K:V", "-s", broker.url])).code).toBe(0);
    expect((await runNex(["pub", "demo.json", "--reply", "back.here", "-s", broker.url], { input: "second" })).code).toBe(0);

    const res = await sub.exited;
    expect(res.code).toBe(0);
    expect(res.stdout.trim().split("\n").map((l) => JSON.parse(l))).toEqual([
      { subject: "demo.json", reply: null, headers: { K: ["V"] }, data: "first" },
      { subject: "demo.json", reply: "back.here", headers: {}, data: "second" },
    ]);
  });
});

describe("nex monitor", () => {
  it("logs prints `<workload> <stream>| <line>` for the namespace's feed only", async () => {
    const all = startNex(["monitor", "logs", "--namespace", "team-a", "--count", "2", "-s", broker.url]);
    // NEX_NAMESPACE picks the namespace; --workload and --stream narrow the subject.
    const one = startNex(["monitor", "logs", "--workload", "w2", "--stream", "stderr", "--count", "1", "-s", broker.url], {
      env: { NEX_NAMESPACE: "team-a" },
    });
    await all.waitForStderr(/Listening for logs on "\$NEX\.FEED\.team-a\.logs\.\*\.\*"/);
    await one.waitForStderr(/Listening for logs on "\$NEX\.FEED\.team-a\.logs\.w2\.stderr"/);

    nc.publish(ControlSubjects.logs("team-b", "w9", "stdout"), "other tenant");
    nc.publish(ControlSubjects.logs("team-a", "w1", "stdout"), "hello");
    nc.publish(ControlSubjects.logs("team-a", "w2", "stderr"), "oops\n");
    await nc.flush();

    expect(await all.exited).toEqual({ code: 0, stdout: "w1 stdout| hello\nw2 stderr| oops\n", stderr: expect.any(String) });
    expect((await one.exited).stdout).toBe("w2 stderr| oops\n");
  });

  it("events prints one line per CloudEvent, filtered by --type; --json passes the event through", async () => {
    const started = startNex(["monitor", "events", "--namespace", "team-a", "--type", "workload_started", "--count", "1", "-s", broker.url]);
    const raw = startNex(["monitor", "events", "--namespace", "team-a", "--count", "2", "--json", "-s", broker.url]);
    await started.waitForStderr(/Listening for events/);
    await raw.waitForStderr(/Listening for events/);

    const event = (type: string) => ({
      specversion: "1.0",
      id: `id-${type}`,
      source: "nex/node/N1",
      type: `io.nats.nex.v1.${type}`,
      time: "2025-01-02T03:04:05.000Z",
      datacontenttype: "application/json",
      namespace: "team-a",
      data: { workload_id: "w1", name: "echo" },
    });
    nc.publish(ControlSubjects.events("team-a", "workload_deployed"), JSON.stringify(event("workload_deployed")));
    nc.publish(ControlSubjects.events("team-a", "workload_started"), JSON.stringify(event("workload_started")));
    await nc.flush();

    const res = await started.exited;
    expect(res.code).toBe(0);
    expect(res.stdout).toBe("2025-01-02T03:04:05.000Z  workload_started  nex/node/N1  workload=w1  name=echo\n");

    const json = await raw.exited;
    expect(json.code).toBe(0);
    expect(json.stdout.trim().split("\n").map((l) => JSON.parse(l))).toEqual([event("workload_deployed"), event("workload_started")]);
  });
});

describe("parseDuration", () => {
  it("reads Go-style durations and refuses ambiguous ones", () => {
    expect(parseDuration("500ms")).toBe(500);
    expect(parseDuration("2s")).toBe(2000);
    expect(parseDuration("1.5s")).toBe(1500);
    expect(parseDuration("1m")).toBe(60_000);
    expect(parseDuration("1m30s")).toBe(90_000);
    expect(parseDuration("0")).toBe(0);
    for (const bad of ["", "5", "abc", "2 s", "1x"]) expect(() => parseDuration(bad)).toThrow(/invalid duration/);
  });
});
