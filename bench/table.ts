// Markdown table rendering for the bench results.

export interface TableRow {
  id: string;
  name: string;
  bundled: number | null;
  nats: number | null;
  /** Cell text used instead of the number when there is no value. */
  bundledNote?: string;
  natsNote?: string;
  lowerIsBetter: boolean;
}

export function formatNumber(v: number): string {
  if (!Number.isFinite(v)) return "n/a";
  if (Math.abs(v) >= 100) return Math.round(v).toLocaleString("en-US");
  return v.toLocaleString("en-US", { maximumFractionDigits: 1 });
}

export function formatRatio(a: number | null, b: number | null): string {
  if (a === null || b === null || !Number.isFinite(a) || !Number.isFinite(b) || b === 0) return "n/a";
  const r = a / b;
  return `${r >= 10 ? r.toFixed(1) : r >= 0.1 ? r.toFixed(2) : r.toFixed(3)}×`;
}

export function markdownTable(rows: TableRow[]): string {
  const header = ["#", "Benchmark", "bundled", "nats-server", "ratio (bundled / nats-server)"];
  const align = ["---:", ":---", "---:", "---:", "---:"];
  const body = rows.map((r) => [
    r.id,
    r.name,
    r.bundled === null ? (r.bundledNote ?? "n/a") : formatNumber(r.bundled),
    r.nats === null ? (r.natsNote ?? "n/a") : formatNumber(r.nats),
    formatRatio(r.bundled, r.nats) + (r.lowerIsBetter ? " (lower is better)" : ""),
  ]);
  return renderTable(header, align, body);
}

/** A markdown table with padded columns; `align` holds "---:" (right) or ":---" (left) per column. */
export function renderTable(header: string[], align: string[], body: string[][]): string {
  const all = [header, ...body];
  const widths = header.map((_, i) => Math.max(3, ...all.map((cells) => (cells[i] ?? "").length)));
  const line = (cells: string[]) =>
    `| ${header.map((_, i) => (align[i]!.startsWith("---:") ? (cells[i] ?? "").padStart(widths[i]!) : (cells[i] ?? "").padEnd(widths[i]!))).join(" | ")} |`;
  const sep = `| ${align.map((a, i) => (a.startsWith(":") ? ":" + "-".repeat(widths[i]! - 1) : "-".repeat(widths[i]! - 1) + ":")).join(" | ")} |`;
  return [line(header), sep, ...body.map(line)].join("\n");
}
