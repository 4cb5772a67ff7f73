// The Prometheus text exposition format (version 0.0.4), written from values read at scrape time. The
// broker and the node keep their counters where they already are (the broker's totals, the runtime
// hosts' per-workload counts); a scrape reads them and renders them here, so nothing on a hot path
// changes for metrics. prom-client's model (the process owns each metric object and updates it as events
// happen) does not fit numbers aggregated in another process, histograms included.

import type { HistogramSnapshot } from "./histogram.js";

export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

export type Labels = Record<string, string>;

export interface Sample {
  labels?: Labels;
  value: number;
}

export interface HistogramSample {
  labels?: Labels;
  histogram: HistogramSnapshot;
}

function escapeLabel(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

function escapeHelp(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

function formatLabels(labels: Labels | undefined): string {
  const entries = Object.entries(labels ?? {});
  if (entries.length === 0) return "";
  return `{${entries.map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(",")}}`;
}

/** One scrape's text: families in the order they are added, each with its HELP and TYPE lines. */
export class Exposition {
  private readonly lines: string[] = [];

  private family(name: string, type: "counter" | "gauge" | "histogram", help: string): void {
    this.lines.push(`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} ${type}`);
  }

  /** A counter: `name` ends in _total, as the conventions ask. */
  counter(name: string, help: string, samples: Sample[]): this {
    this.family(name, "counter", help);
    for (const s of samples) this.lines.push(`${name}${formatLabels(s.labels)} ${formatValue(s.value)}`);
    return this;
  }

  gauge(name: string, help: string, samples: Sample[]): this {
    this.family(name, "gauge", help);
    for (const s of samples) this.lines.push(`${name}${formatLabels(s.labels)} ${formatValue(s.value)}`);
    return this;
  }

  /** A histogram in seconds from snapshots kept in ms: cumulative _bucket lines, then _sum and _count. */
  histogramSeconds(name: string, help: string, samples: HistogramSample[]): this {
    this.family(name, "histogram", help);
    for (const { labels, histogram: h } of samples) {
      let cumulative = 0;
      for (let i = 0; i <= h.boundsMs.length; i++) {
        cumulative += h.counts[i] ?? 0;
        const le = i < h.boundsMs.length ? formatValue(h.boundsMs[i] / 1000) : "+Inf";
        this.lines.push(`${name}_bucket${formatLabels({ ...labels, le })} ${cumulative}`);
      }
      this.lines.push(`${name}_sum${formatLabels(labels)} ${formatValue(h.sumMs / 1000)}`, `${name}_count${formatLabels(labels)} ${cumulative}`);
    }
    return this;
  }

  text(): string {
    return this.lines.join("\n") + "\n";
  }
}
