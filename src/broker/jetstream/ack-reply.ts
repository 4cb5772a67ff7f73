// The reply subject of each delivery, $JS.ACK.<stream>.<consumer>.<deliveries>.<sseq>.<dseq>.<ts>.<pending>,
// written byte by byte into a scratch buffer and read out as one string. Built from a template it took
// about ten intermediate strings per message (and a flattening copy when framed): over a third of what
// a replay allocated, and as much of its garbage collection.

import { NS_PER_MS } from "./config.js";

/** Room for the five numbers and their dots. */
const NUMBERS_MAX = 5 * 21;

export class AckReplies {
  private readonly scratch: Buffer;
  private readonly prefixLength: number;
  /** The timestamp field of the last subject: a replay sends many messages stored in the same millisecond. */
  private lastTimeMs = -1;
  private readonly timeDigits = Buffer.allocUnsafe(32);
  private timeLength = 0;

  constructor(streamName: string, consumerName: string) {
    const prefix = `$JS.ACK.${streamName}.${consumerName}.`;
    this.scratch = Buffer.allocUnsafe(prefix.length + NUMBERS_MAX);
    this.prefixLength = this.scratch.write(prefix, 0, "latin1");
  }

  /** The subject for a delivery of stream message `seq` stored at `timeMs`. */
  subject(deliveries: number, seq: number, dseq: number, timeMs: number, pending: number): string {
    const b = this.scratch;
    let p = this.prefixLength;
    p = writeDecimal(b, p, deliveries);
    b[p++] = 0x2e; // .
    p = writeDecimal(b, p, seq);
    b[p++] = 0x2e;
    p = writeDecimal(b, p, dseq);
    b[p++] = 0x2e;
    if (timeMs !== this.lastTimeMs) this.setTime(timeMs);
    const time = this.timeDigits;
    for (let i = 0; i < this.timeLength; i++) b[p++] = time[i]; // short: cheaper than a native copy
    b[p++] = 0x2e;
    p = writeDecimal(b, p, pending);
    return b.toString("latin1", 0, p);
  }

  /** Nanoseconds: whole milliseconds (what the stream stores) and six zeros, as the product would print. */
  private setTime(timeMs: number): void {
    const t = this.timeDigits;
    if (Number.isSafeInteger(timeMs) && timeMs > 0) {
      const p = writeDecimal(t, 0, timeMs);
      t.fill(0x30, p, p + 6);
      this.timeLength = p + 6;
    } else {
      this.timeLength = t.write(String(timeMs * NS_PER_MS), 0, "latin1");
    }
    this.lastTimeMs = timeMs;
  }
}

/** Writes a non-negative integer in decimal at p; returns the end. */
function writeDecimal(b: Buffer, p: number, value: number): number {
  if (value > 0x7fffffff) return p + b.write(String(value), p, "latin1"); // rare: times, huge sequences
  let digits = 1;
  for (let v = value; v >= 10; v = (v / 10) | 0) digits++;
  const end = p + digits;
  let v = value;
  let q = end;
  do {
    const rest = (v / 10) | 0;
    b[--q] = 0x30 + v - rest * 10;
    v = rest;
  } while (v > 0);
  return end;
}
