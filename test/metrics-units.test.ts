// The pieces behind /metrics and `nex top` without a node: the duration histogram and its quantiles,
// the text exposition (read back by the strict parser), and nex top's rows from two samples.

import { describe, expect, it } from "vitest";
import { DurationHistogram, histogramDelta, quantileMs } from "../src/util/histogram.js";
import { Exposition } from "../src/util/prometheus.js";
import { renderFrame, rowsOf, sortRows, type Sample } from "../src/cli/top-view.js";
import type { InfoResponse, WorkloadSummary } from "../src/protocol/control.js";
import { parsePrometheusText, sampleValue } from "./helpers/prometheus.js";

describe("DurationHistogram", () => {
  it("counts each duration in the first bucket whose bound is not below it", () => {
    const h = new DurationHistogram([1, 10]);
    for (const ms of [0.5, 1, 1.5, 10, 11]) h.observe(ms);
    expect(h.snapshot()).toEqual({ boundsMs: [1, 10], counts: [2, 2, 1], sumMs: 24 });
  });

  it("gives quantiles interpolated within their bucket, and nothing when empty", () => {
    const h = new DurationHistogram([1, 2, 4]);
    expect(quantileMs(h.snapshot(), 0.5)).toBeUndefined();
    for (let i = 0; i < 50; i++) h.observe(0.5);
    for (let i = 0; i < 50; i++) h.observe(3);
    expect(quantileMs(h.snapshot(), 0.5)).toBe(1);
    expect(quantileMs(h.snapshot(), 0.99)).toBeCloseTo(2 + 2 * (49 / 50));
  });

  it("differences two snapshots, or takes the later whole when the counts went down (a restart)", () => {
    const h = new DurationHistogram([1]);
    h.observe(0.5);
    const first = h.snapshot();
    h.observe(5);
    expect(histogramDelta(h.snapshot(), first)).toEqual({ boundsMs: [1], counts: [0, 1], sumMs: 5 });
    expect(histogramDelta(first, h.snapshot())).toEqual(first);
  });
});

describe("Exposition", () => {
  it("writes counters, gauges and histograms (in seconds, cumulative) that parse back", () => {
    const h = new DurationHistogram([0.25, 1000]);
    h.observe(0.1);
    h.observe(2000);
    const text = new Exposition()
      .counter("x_total", "Help with a \\ and\na newline.", [{ labels: { a: 'q"uo\\te\n' }, value: 3 }])
      .gauge("y", "Y.", [{ value: 1.5 }])
      .histogramSeconds("d_seconds", "D.", [{ labels: { w: "1" }, histogram: h.snapshot() }])
      .text();
    const f = parsePrometheusText(text);
    expect(sampleValue(f, "x_total", { a: 'q"uo\\te\n' })).toBe(3);
    expect(sampleValue(f, "y")).toBe(1.5);
    expect(sampleValue(f, "d_seconds_bucket", { w: "1", le: "0.00025" })).toBe(1);
    expect(sampleValue(f, "d_seconds_bucket", { w: "1", le: "1" })).toBe(1);
    expect(sampleValue(f, "d_seconds_bucket", { w: "1", le: "+Inf" })).toBe(2);
    expect(sampleValue(f, "d_seconds_count", { w: "1" })).toBe(2);
    expect(sampleValue(f, "d_seconds_sum", { w: "1" })).toBeCloseTo(2.0001);
  });
});

describe("nex top's rows", () => {
  const workload = (id: string, triggers: number, counts: number[]): WorkloadSummary =>
    ({ id, name: id, namespace: "default", type: "javascript", node_id: "N1", state: "running", triggers, failures: 0, durations: { le_ms: [1, 10], counts, sum_ms: 0 } }) as WorkloadSummary;
  const sample = (at: number, workloads: WorkloadSummary[]): Sample => ({
    at,
    errors: [],
    nodes: [{ node_id: "N1", name: "one", uptime_s: 1, lame_duck: false, workload_count: workloads.length, memory: { rss: 1 }, workloads } as unknown as InfoResponse],
  });

  it("has rates and percentiles over the time between two samples only", () => {
    const before = sample(0, [workload("a", 100, [100, 0, 0]), workload("b", 5, [5, 0, 0])]);
    const now = sample(2000, [workload("a", 120, [100, 20, 0]), workload("b", 5, [5, 0, 0])]);
    const { nodes, workloads } = rowsOf(now, before);
    const a = workloads.find((w) => w.id === "a");
    expect(a?.rate).toBe(10);
    // All 20 new triggers took 1-10 ms; the 100 older ones (under 1 ms) do not count.
    expect(a?.p50).toBeGreaterThan(1);
    const b = workloads.find((w) => w.id === "b");
    expect(b?.rate).toBe(0);
    expect(b?.p50).toBeUndefined();
    expect(nodes[0].rate).toBe(10);
    expect(rowsOf(now, undefined).workloads[0].rate).toBeUndefined();
  });

  it("draws names and errors from the bus without their control characters (no escape reaches the terminal)", () => {
    const evil = "\x1b]0;owned\x07\x1b[2Jwipe";
    const now = sample(1000, [{ ...workload("a", 1, [1, 0, 0]), name: evil, state: "running\x1b[31m" } as unknown as WorkloadSummary]);
    now.nodes[0] = { ...now.nodes[0], name: `node${evil}` } as InfoResponse;
    now.errors.push(`node N2: ${evil}`);
    const { nodes, workloads } = rowsOf(now, undefined);
    const lines = renderFrame({ namespace: "default", intervalMs: 1000, sample: now, nodes, workloads, sort: "name", reverse: false }, 200, 30);
    // Only the view's own inverse-video header lines carry escapes; no line carries what came from the bus.
    const own = /\x1b\[7m|\x1b\[0m/g;
    for (const line of lines) expect(line.replace(own, "")).not.toMatch(/[\x00-\x1f\x7f-\x9f]/);
    expect(lines.join("\n")).toContain("?]0;owned??[2Jwipe");
  });

  it("sorts numbers largest first, unknown last, and reverses", () => {
    const rows = rowsOf(sample(1000, [workload("a", 1, [1, 0, 0]), workload("b", 3, [3, 0, 0]), workload("c", 0, [0, 0, 0])]), sample(0, [workload("a", 0, [0, 0, 0]), workload("b", 0, [0, 0, 0])])).workloads;
    expect(sortRows(rows, "rate", false).map((r) => r.id)).toEqual(["b", "a", "c"]);
    expect(sortRows(rows, "rate", true).map((r) => r.id)).toEqual(["c", "a", "b"]);
    expect(sortRows(rows, "name", false).map((r) => r.id)).toEqual(["a", "b", "c"]);
  });
});
