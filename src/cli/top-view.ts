// What `nex top` shows, apart from the terminal: two samples of every node's INFO answer become rows
// (rates and p50/p99 over the time between them, from the duration histograms' differences), rows are
// sorted by the chosen column, and a frame is laid out to the terminal's size.

import type { InfoResponse, WorkloadSummary } from "../protocol/control.js";
import { type HistogramSnapshot, histogramDelta, quantileMs } from "../util/histogram.js";

/** One round of answers: every node's INFO, and why some node did not answer. */
export interface Sample {
  at: number;
  nodes: InfoResponse[];
  errors: string[];
}

export interface NodeRow {
  id: string;
  name: string;
  workloads: number;
  rate?: number;
  rss: number;
  uptimeS: number;
  lameDuck: boolean;
}

export interface WorkloadRow {
  id: string;
  name: string;
  type: string;
  node: string;
  state: string;
  /** Triggers per second, p50 and p99 (ms) since the previous sample; undefined without one (or without triggers). */
  rate?: number;
  p50?: number;
  p99?: number;
  failures: number;
  memory?: number;
  restarts: number;
}

export type SortColumn = "name" | "node" | "rate" | "p50" | "p99" | "failures" | "memory";

/** The sort keys, in the footer's order: a key press picks the column; pressing it again reverses the order. */
export const SORT_KEYS: readonly (readonly [string, SortColumn])[] = [
  ["n", "name"],
  ["o", "node"],
  ["r", "rate"],
  ["5", "p50"],
  ["9", "p99"],
  ["f", "failures"],
  ["m", "memory"],
];

function histogramOf(w: WorkloadSummary): HistogramSnapshot | undefined {
  const d = w.durations;
  return d ? { boundsMs: d.le_ms, counts: d.counts, sumMs: d.sum_ms } : undefined;
}

/** Rows of the current sample, with rates and percentiles over the time since the previous one. */
export function rowsOf(current: Sample, previous: Sample | undefined): { nodes: NodeRow[]; workloads: WorkloadRow[] } {
  const seconds = previous ? (current.at - previous.at) / 1000 : 0;
  const before = new Map<string, WorkloadSummary>();
  for (const n of previous?.nodes ?? []) for (const w of n.workloads) before.set(`${n.node_id}/${w.id}`, w);
  const nodes: NodeRow[] = [];
  const workloads: WorkloadRow[] = [];
  for (const n of current.nodes) {
    let nodeRate: number | undefined;
    for (const w of n.workloads) {
      const prev = before.get(`${n.node_id}/${w.id}`);
      const row: WorkloadRow = {
        id: w.id,
        name: w.name,
        type: w.type,
        node: n.name,
        state: w.state,
        failures: w.failures ?? 0,
        memory: w.memory_bytes ?? w.container?.memory_bytes,
        restarts: w.restarts ?? 0,
      };
      const triggers = w.triggers;
      // A count that went down is a runtime host that started again: no rate until the next sample.
      if (prev && seconds > 0 && triggers !== undefined && prev.triggers !== undefined && triggers >= prev.triggers) {
        row.rate = (triggers - prev.triggers) / seconds;
        nodeRate = (nodeRate ?? 0) + row.rate;
        const now = histogramOf(w);
        const then = histogramOf(prev);
        if (now && then && triggers > prev.triggers) {
          const window = histogramDelta(now, then);
          row.p50 = quantileMs(window, 0.5);
          row.p99 = quantileMs(window, 0.99);
        }
      }
      workloads.push(row);
    }
    nodes.push({ id: n.node_id, name: n.name, workloads: n.workload_count, rate: nodeRate, rss: n.memory.rss, uptimeS: n.uptime_s, lameDuck: n.lame_duck });
  }
  return { nodes, workloads };
}

/** Sorted by `column`: text ascending, numbers largest first (what is unknown last); `reverse` flips it. */
export function sortRows(rows: WorkloadRow[], column: SortColumn, reverse: boolean): WorkloadRow[] {
  const text = column === "name" || column === "node";
  const sorted = [...rows].sort((a, b) => {
    if (text) return a[column].localeCompare(b[column]) || a.id.localeCompare(b.id);
    const x = a[column] ?? -1;
    const y = b[column] ?? -1;
    return y - x || a.name.localeCompare(b.name);
  });
  return reverse ? sorted.reverse() : sorted;
}

function ms(v: number | undefined): string {
  if (v === undefined) return "-";
  return v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : String(Math.round(v));
}

function rate(v: number | undefined): string {
  if (v === undefined) return "-";
  return v < 100 ? v.toFixed(1) : String(Math.round(v));
}

function bytes(v: number | undefined): string {
  if (v === undefined) return "-";
  if (v < 1024 * 1024) return `${(v / 1024).toFixed(0)}K`;
  if (v < 1024 ** 3) return `${(v / 1024 ** 2).toFixed(1)}M`;
  return `${(v / 1024 ** 3).toFixed(2)}G`;
}

function uptime(s: number): string {
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d${Math.floor((s % 86400) / 3600)}h`;
}

interface Col<R> {
  header: string;
  value: (r: R) => string;
  right?: boolean;
}

/**
 * What the terminal may be handed of a text from the bus (a node's or a workload's name, an error): control
 * characters (an escape sequence would repaint or retitle the operator's terminal) become "?".
 */
function printable(s: string): string {
  return s.replace(/[\u0000-\u001f\u007f-\u009f]/g, "?");
}

/** A header line and one line per row, columns as wide as their widest cell. */
function table<R>(rows: R[], cols: Col<R>[]): string[] {
  const cells = rows.map((r) => cols.map((c) => printable(c.value(r))));
  const widths = cols.map((c, i) => Math.max(c.header.length, ...cells.map((row) => row[i].length)));
  const line = (values: string[]): string => values.map((v, i) => (cols[i].right ? v.padStart(widths[i]) : v.padEnd(widths[i]))).join("  ").trimEnd();
  return [line(cols.map((c) => c.header)), ...cells.map(line)];
}

export interface Frame {
  namespace: string;
  intervalMs: number;
  sample?: Sample;
  nodes: NodeRow[];
  workloads: WorkloadRow[];
  sort: SortColumn;
  reverse: boolean;
  /** Why the last round failed (the connection, say), shown under the title. */
  problem?: string;
}

const INVERSE = "\x1b[7m";
const RESET = "\x1b[0m";

/** The screen's lines, cut to `width` columns and `height` lines; header lines in inverse video. */
export function renderFrame(f: Frame, width: number, height: number): string[] {
  const cut = (s: string): string => (s.length > width ? s.slice(0, width) : s);
  const header = (s: string): string => `${INVERSE}${cut(s).padEnd(width)}${RESET}`;
  const time = f.sample ? new Date(f.sample.at).toISOString().slice(11, 19) : "--:--:--";
  const lines: string[] = [cut(`nex top  namespace ${f.namespace}  ${f.nodes.length} node(s), ${f.workloads.length} workload(s)  ${time} UTC  every ${f.intervalMs / 1000}s`)];
  const notes = [...(f.problem ? [f.problem] : []), ...(f.sample?.errors ?? [])];
  for (const n of notes.slice(0, 2)) lines.push(cut(`! ${printable(n)}`));
  lines.push("");
  const nodeTable = table(f.nodes, [
    { header: "NODE", value: (n) => n.name },
    { header: "ID", value: (n) => n.id.slice(0, 12) },
    { header: "WORKLOADS", value: (n) => String(n.workloads), right: true },
    { header: "RATE/s", value: (n) => rate(n.rate), right: true },
    { header: "RSS", value: (n) => bytes(n.rss), right: true },
    { header: "UPTIME", value: (n) => uptime(n.uptimeS), right: true },
    { header: "STATE", value: (n) => (n.lameDuck ? "lame duck" : "up") },
  ]);
  lines.push(header(nodeTable[0]), ...nodeTable.slice(1).map(cut), "");
  // The columns that matter most come first: a narrow terminal cuts the last ones.
  const wlTable = table(sortRows(f.workloads, f.sort, f.reverse), [
    { header: "NAME", value: (w) => w.name },
    { header: "NODE", value: (w) => w.node },
    { header: "RATE/s", value: (w) => rate(w.rate), right: true },
    { header: "P50 ms", value: (w) => ms(w.p50), right: true },
    { header: "P99 ms", value: (w) => ms(w.p99), right: true },
    { header: "FAILED", value: (w) => String(w.failures), right: true },
    { header: "MEMORY", value: (w) => bytes(w.memory), right: true },
    { header: "STATE", value: (w) => w.state },
    { header: "RESTARTS", value: (w) => String(w.restarts), right: true },
    { header: "TYPE", value: (w) => w.type },
    { header: "ID", value: (w) => w.id },
  ]);
  lines.push(header(wlTable[0]));
  const footer = SORT_KEYS.map(([key, column]) => (column === f.sort ? `[${key} ${column} ${f.reverse ? "↑" : "↓"}]` : `${key} ${column}`))
    .join("  ");
  // Room for the rows: what is left above the footer (and a line saying how many did not fit).
  const room = Math.max(0, height - lines.length - 1);
  const rows = wlTable.slice(1);
  if (rows.length <= room) lines.push(...rows.map(cut));
  else lines.push(...rows.slice(0, Math.max(0, room - 1)).map(cut), cut(`… ${rows.length - Math.max(0, room - 1)} more`));
  while (lines.length < height - 1) lines.push("");
  lines.push(header(`sort: ${footer}   q quit`));
  return lines.slice(0, height);
}
