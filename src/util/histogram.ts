// A fixed-bucket histogram of durations as plain numbers: a runtime host counts each trigger's duration
// into it (one comparison loop, no allocation), and the node and `nex top` read quantiles from the
// counts. The bucket bounds travel with the counts, so a reader never assumes them.

/** Upper bounds of the trigger-duration buckets, in ms; one more bucket counts what is over the last. */
export const TRIGGER_BUCKETS_MS: readonly number[] = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000];

/** Counts per bucket (not cumulative; the last one is over the largest bound) and the sum of what was counted. */
export interface HistogramSnapshot {
  boundsMs: readonly number[];
  counts: number[];
  sumMs: number;
}

export class DurationHistogram {
  private readonly counts: number[];
  private sumMs = 0;

  constructor(private readonly boundsMs: readonly number[] = TRIGGER_BUCKETS_MS) {
    this.counts = new Array<number>(boundsMs.length + 1).fill(0);
  }

  observe(ms: number): void {
    const bounds = this.boundsMs;
    let i = 0;
    while (i < bounds.length && ms > bounds[i]) i++;
    this.counts[i]++;
    this.sumMs += ms;
  }

  snapshot(): HistogramSnapshot {
    return { boundsMs: this.boundsMs, counts: [...this.counts], sumMs: this.sumMs };
  }
}

/** `later` minus `earlier`, bucket by bucket: what was counted between two snapshots of the same histogram. */
export function histogramDelta(later: HistogramSnapshot, earlier: HistogramSnapshot | undefined): HistogramSnapshot {
  if (!earlier || earlier.counts.length !== later.counts.length) return later;
  const counts = later.counts.map((c, i) => c - earlier.counts[i]);
  // A workload that came back (a new runtime host) counts from zero again: its whole histogram is new.
  if (counts.some((c) => c < 0)) return later;
  return { boundsMs: later.boundsMs, counts, sumMs: later.sumMs - earlier.sumMs };
}

/**
 * The q-quantile (0..1) in ms, interpolated within its bucket as Prometheus' histogram_quantile does;
 * undefined when nothing was counted. Past the largest bound it answers that bound.
 */
export function quantileMs(h: HistogramSnapshot, q: number): number | undefined {
  const total = h.counts.reduce((a, b) => a + b, 0);
  if (total === 0) return undefined;
  const rank = q * total;
  let seen = 0;
  for (let i = 0; i < h.counts.length; i++) {
    const c = h.counts[i];
    if (c > 0 && seen + c >= rank) {
      if (i >= h.boundsMs.length) return h.boundsMs[h.boundsMs.length - 1];
      const lower = i === 0 ? 0 : h.boundsMs[i - 1];
      return lower + (h.boundsMs[i] - lower) * ((rank - seen) / c);
    }
    seen += c;
  }
  return h.boundsMs[h.boundsMs.length - 1];
}
