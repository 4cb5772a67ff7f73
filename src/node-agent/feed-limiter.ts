// Per-workload token buckets for what the node publishes on a workload's behalf (log lines, trigger_failed
// events). A workload that floods its output must not flood the bus, the subscribers of the feed or the
// node: past its rate the rest is dropped and counted, and the count is reported once the flood is over.

export interface FeedRate {
  /** Items per second, and how many may come at once. */
  perSecond: number;
  burst: number;
  /** Bytes per second, and how many may come at once. */
  bytesPerSecond: number;
  burstBytes: number;
}

export const LOG_RATE: FeedRate = { perSecond: 200, burst: 1_000, bytesPerSecond: 256 * 1024, burstBytes: 1024 * 1024 };
export const FAILURE_EVENT_RATE: FeedRate = { perSecond: 20, burst: 100, bytesPerSecond: 64 * 1024, burstBytes: 256 * 1024 };

/** How often dropped counts are reported while a workload keeps flooding. */
const REPORT_EVERY_MS = 1_000;

interface Bucket {
  items: number;
  bytes: number;
  at: number;
  dropped: number;
}

export class FeedLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private reportTimer: NodeJS.Timeout | null = null;

  /** `report(key, dropped)` is called once a second for keys that dropped something since the last report. */
  constructor(
    private readonly rate: FeedRate,
    private readonly report: (key: string, dropped: number) => void,
  ) {}

  /** True when an item of `bytes` may go out now; false when it is dropped (and counted). */
  admit(key: string, bytes: number, now = Date.now()): boolean {
    const r = this.rate;
    let b = this.buckets.get(key);
    if (!b) {
      b = { items: r.burst, bytes: r.burstBytes, at: now, dropped: 0 };
      this.buckets.set(key, b);
    }
    const elapsed = Math.max(0, now - b.at) / 1000;
    b.items = Math.min(r.burst, b.items + elapsed * r.perSecond);
    b.bytes = Math.min(r.burstBytes, b.bytes + elapsed * r.bytesPerSecond);
    b.at = now;
    if (b.items >= 1 && b.bytes >= bytes) {
      b.items -= 1;
      b.bytes -= bytes;
      return true;
    }
    b.dropped++;
    this.reportTimer ??= setInterval(() => this.reportDrops(), REPORT_EVERY_MS).unref();
    return false;
  }

  /** Forgets a workload (reporting what it dropped last). */
  forget(key: string): void {
    const b = this.buckets.get(key);
    if (b && b.dropped > 0) this.report(key, b.dropped);
    this.buckets.delete(key);
  }

  close(): void {
    if (this.reportTimer) clearInterval(this.reportTimer);
    this.reportTimer = null;
  }

  private reportDrops(): void {
    let any = false;
    for (const [key, b] of this.buckets) {
      if (b.dropped === 0) continue;
      any = true;
      this.report(key, b.dropped);
      b.dropped = 0;
    }
    if (!any) this.close();
  }
}
