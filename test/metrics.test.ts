// GET /metrics of the bundled broker (its monitoring port) and of the node (--metrics-port), scraped from
// a real `nex node up` and parsed with a strict Prometheus text-format parser: the counters move as
// messages flow and as a deployed function answers, fails and calls the KV host service.

import { execFileSync } from "node:child_process";
import net from "node:net";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { type NodeProcess, NodeUnderTest, removeDir, ROOT, runNex, tempDir } from "./helpers/nex-cli.js";
import { type Family, parsePrometheusText, sampleValue, scrape } from "./helpers/prometheus.js";
import { eventually, waitFor } from "./helpers/wait.js";

const METERED = path.join(ROOT, "test/fixtures/node/metered.js");

/** A URL the node printed on a line of its banner ("monitor:", "metrics:"), waiting for the line: the banner may come in pieces. */
async function printedUrl(node: NodeProcess, label: string): Promise<string> {
  const pattern = new RegExp(`${label}:\\s+(http://\\S+)`);
  await waitFor(`the node's ${label}: line`, () => pattern.test(node.output()), 10_000).catch(() => {
    throw new Error(`the node printed no ${label}: URL:\n${node.output()}`);
  });
  return pattern.exec(node.output())?.[1] as string;
}

function typeOf(families: Map<string, Family>, name: string): string | undefined {
  return families.get(name)?.type;
}

describe("the Prometheus text-format parser of these tests", () => {
  it("reads a well-formed exposition", () => {
    const f = parsePrometheusText('# HELP a_total A.\n# TYPE a_total counter\na_total{x="q\\"\\n"} 3\n');
    expect(sampleValue(f, "a_total", { x: 'q"\n' })).toBe(3);
  });

  it.each([
    ["no final newline", "# TYPE a gauge\na 1"],
    ["a bad value", "# TYPE a gauge\na one\n"],
    ["a TYPE after samples", "a 1\n# TYPE a gauge\n"],
    ["a family split in two", "# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na{x=\"1\"} 2\n"],
    ["a duplicate series", "# TYPE a gauge\na 1\na 2\n"],
    ["a negative counter", "# TYPE a_total counter\na_total -1\n"],
    ["an unquoted label", "# TYPE a gauge\na{x=1} 1\n"],
    ["buckets that are not cumulative", '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n'],
    ["a _count that is not the +Inf bucket", '# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 2\n'],
  ])("refuses %s", (_what, text) => {
    expect(() => parsePrometheusText(text)).toThrow();
  });
});

describe("GET /metrics of the broker and the node", () => {
  let t: NodeUnderTest;
  let nc: NatsConnection;
  let brokerMetrics = "";
  let nodeMetrics = "";
  const nex = (...args: string[]) => runNex([...args, "-s", t.node.url], t.env);

  beforeAll(async () => {
    t = await NodeUnderTest.start("bundled", "metrics", ["--http-port", "0", "--metrics-port", "0"]);
    brokerMetrics = `${await printedUrl(t.node, "monitor")}/metrics`;
    nodeMetrics = await printedUrl(t.node, "metrics");
    nc = await connect(t.connectOptions());
  }, 60_000);

  afterAll(async () => {
    await nc?.close();
    await t?.stop();
  });

  it("the broker's counts messages, bytes, connections and JetStream", async () => {
    const before = await scrape(brokerMetrics);
    for (const [name, type] of [
      ["nex_broker_connections", "gauge"],
      ["nex_broker_connections_total", "counter"],
      ["nex_broker_subscriptions", "gauge"],
      ["nex_broker_in_messages_total", "counter"],
      ["nex_broker_out_messages_total", "counter"],
      ["nex_broker_in_bytes_total", "counter"],
      ["nex_broker_out_bytes_total", "counter"],
      ["nex_broker_slow_consumers_total", "counter"],
      ["nex_broker_jetstream_streams", "gauge"],
      ["nex_broker_jetstream_consumers", "gauge"],
      ["nex_broker_jetstream_messages", "gauge"],
      ["nex_broker_jetstream_bytes", "gauge"],
    ]) {
      expect(typeOf(before, name), name).toBe(type);
    }
    // The node and this test are connected; the node keeps its state in KV buckets (streams).
    expect(sampleValue(before, "nex_broker_connections")).toBeGreaterThanOrEqual(2);
    expect(sampleValue(before, "nex_broker_jetstream_streams")).toBeGreaterThanOrEqual(1);

    const sub = nc.subscribe("metrics.probe", { max: 10 });
    const got = (async () => {
      let n = 0;
      for await (const _m of sub) n++;
      return n;
    })();
    for (let i = 0; i < 10; i++) nc.publish("metrics.probe", new Uint8Array(100));
    expect(await got).toBe(10);
    const after = await scrape(brokerMetrics);
    const grew = (name: string): number => sampleValue(after, name) - sampleValue(before, name);
    expect(grew("nex_broker_in_messages_total")).toBeGreaterThanOrEqual(10);
    expect(grew("nex_broker_out_messages_total")).toBeGreaterThanOrEqual(10);
    expect(grew("nex_broker_in_bytes_total")).toBeGreaterThanOrEqual(1000);
    expect(grew("nex_broker_out_bytes_total")).toBeGreaterThanOrEqual(1000);
  });

  it("the node's counts a function's triggers, durations, failures by code and host-service calls", async () => {
    const run = await nex("run", METERED, "--trigger-subject", "metered", "--name", "metered");
    expect(run.code, run.stderr).toBe(0);
    const id = run.stdout.trim();
    const labels = { workload_id: id, name: "metered", namespace: "default", type: "javascript" };
    const before = await scrape(nodeMetrics);
    for (const [name, type] of [
      ["nex_workload_triggers_total", "counter"],
      ["nex_workload_failures_total", "counter"],
      ["nex_workload_trigger_duration_seconds", "histogram"],
      ["nex_workload_memory_bytes", "gauge"],
      ["nex_workload_restarts_total", "counter"],
      ["nex_workload_host_calls_total", "counter"],
      ["nex_node_workloads", "gauge"],
    ]) {
      expect(typeOf(before, name), name).toBe(type);
    }
    expect(sampleValue(before, "nex_workload_triggers_total", labels)).toBe(0);
    expect(sampleValue(before, "nex_node_workloads")).toBe(1);

    const N = 7;
    for (let i = 0; i < N; i++) expect(new TextDecoder().decode((await nc.request("metered", `hello ${i}`, { timeout: 5000 })).data)).toBe(`hello ${i}`);
    let errorCode = "";
    for (let i = 0; i < 2; i++) {
      const reply = await nc.request("metered", "fail", { timeout: 5000 });
      errorCode = reply.headers?.get("Nats-Service-Error-Code") ?? "";
    }
    expect(errorCode).toMatch(/^\d{3}$/);
    expect(new TextDecoder().decode((await nc.request("metered", "kv", { timeout: 5000 })).data)).toBe("kv");

    const after = await scrape(nodeMetrics);
    const grew = (name: string, extra: Record<string, string> = {}): number => {
      const was = (() => {
        try {
          return sampleValue(before, name, { ...labels, ...extra });
        } catch {
          return 0; // a series that did not exist yet (no failure of that code, no call of that service)
        }
      })();
      return sampleValue(after, name, { ...labels, ...extra }) - was;
    };
    const all = N + 2 + 1;
    expect(grew("nex_workload_triggers_total")).toBe(all);
    expect(grew("nex_workload_trigger_duration_seconds_count")).toBe(all);
    expect(grew("nex_workload_trigger_duration_seconds_bucket", { le: "+Inf" })).toBe(all);
    expect(grew("nex_workload_trigger_duration_seconds_sum")).toBeGreaterThan(0);
    expect(grew("nex_workload_failures_total", { code: errorCode })).toBe(2);
    // kv.set and kv.get: two calls, both answered.
    expect(grew("nex_workload_host_calls_total", { service: "kv", outcome: "ok" })).toBe(2);
    expect(sampleValue(after, "nex_workload_memory_bytes", labels)).toBeGreaterThan(0);
    expect(sampleValue(after, "nex_workload_restarts_total", labels)).toBe(0);

    // The same numbers in the control API's answer, with p50/p99 from the histogram.
    const info = JSON.parse((await nex("workload", "info", id, "--json")).stdout) as Record<string, unknown>;
    expect(info).toMatchObject({ triggers: all, failures: 2, failures_by_code: { [errorCode]: 2 }, host_calls: { kv: { ok: 2 } } });
    expect(info.p50_ms).toBeGreaterThan(0);
    expect(info.p99_ms as number).toBeGreaterThanOrEqual(info.p50_ms as number);
  });

  it("counts a runtime-host crash as a restart, and the function's counts start again from zero", async () => {
    const labels = { name: "metered", namespace: "default" };
    const restarted = nc.subscribe("$NEX.FEED.default.events.runtime_restarted", { max: 1 });
    await nc.flush();
    const hosts = execFileSync("ps", ["-o", "pid=,args=", "--ppid", String(t.node.child.pid)], { encoding: "utf8" })
      .split("\n")
      .filter((l) => l.includes("runtime-host"))
      .map((l) => Number(l.trim().split(/\s+/)[0]));
    expect(hosts.length).toBe(1);
    process.kill(hosts[0], "SIGKILL");
    for await (const _e of restarted) break;
    const again = await eventually("an answer from the redeployed function", async () => new TextDecoder().decode((await nc.request("metered", "back", { timeout: 1000 })).data));
    expect(again).toBe("back");
    const after = await scrape(nodeMetrics);
    expect(sampleValue(after, "nex_workload_restarts_total", labels)).toBe(1);
    expect(sampleValue(after, "nex_workload_triggers_total", labels)).toBe(sampleValue(after, "nex_workload_trigger_duration_seconds_count", labels));
    expect(sampleValue(after, "nex_workload_triggers_total", labels)).toBeLessThan(10);
  });

  it("the node answers 404 off /metrics", async () => {
    const res = await fetch(new URL("/other", nodeMetrics));
    expect(res.status).toBe(404);
  });

  it("both listeners answer a request target that is no URL with 400, and keep serving (it used to stop the node)", async () => {
    for (const target of [nodeMetrics, brokerMetrics]) {
      const { hostname, port } = new URL(target);
      const answer = await rawHttp(hostname, Number(port), "GET http://[ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
      expect(answer.split("\r\n")[0]).toBe("HTTP/1.1 400 Bad Request");
      expect((await fetch(target)).status).toBe(200);
    }
    expect(t.node.child.exitCode).toBeNull();
  });

  it("the broker's http_req_stats counts the endpoints it serves, not every path a client makes up", async () => {
    const monitor = new URL("/", brokerMetrics);
    for (let i = 0; i < 20; i++) expect((await fetch(new URL(`/made-up-${i}`, monitor))).status).toBe(404);
    const varz = (await (await fetch(new URL("/varz", monitor))).json()) as { http_req_stats: Record<string, number> };
    expect(Object.keys(varz.http_req_stats).filter((p) => p.startsWith("/made-up"))).toEqual([]);
    expect(varz.http_req_stats["/metrics"]).toBeGreaterThanOrEqual(1);
  });
});

describe("nex node up's metrics flags", () => {
  const home = tempDir("nex-metricsflags-");
  afterAll(() => removeDir(home));

  it("refuses --metrics-host without --metrics-port (it would be ignored)", async () => {
    const res = await runNex(["node", "up", "--port", "0", "--data-dir", `${home}/node`, "--metrics-host", "0.0.0.0"], { NEX_HOME: home });
    expect(res.code).toBe(2);
    expect(res.stderr).toBe("nex: --metrics-host goes with --metrics-port (no metrics listener starts without it)\n");
  });

  it("exits with the reason when the metrics port is taken", async () => {
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
    const port = (taken.address() as net.AddressInfo).port;
    try {
      const res = await runNex(["node", "up", "--port", "0", "--metrics-port", String(port), "--data-dir", `${home}/node`], { NEX_HOME: home }, undefined, 60_000);
      expect(res.code).not.toBe(0);
      expect(res.stderr).toMatch(new RegExp(`cannot serve metrics on 127\\.0\\.0\\.1:${port}: .*EADDRINUSE`));
    } finally {
      await new Promise<void>((resolve) => taken.close(() => resolve()));
    }
  }, 60_000);
});

/** Sends raw bytes to an HTTP listener and resolves with what it answered before closing. */
function rawHttp(host: string, port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let answer = "";
    const socket = net.connect(port, host, () => socket.write(request));
    socket.setEncoding("latin1");
    socket.on("data", (d: string) => (answer += d));
    socket.on("end", () => resolve(answer));
    socket.on("error", reject);
  });
}
