// The reply subject of each delivery, $JS.ACK.<stream>.<consumer>.<deliveries>.<sseq>.<dseq>.<ts>.<pending>,
// written byte by byte into a scratch buffer and read out as one string. Built from a template it took
// about ten intermediate strings per message (and a flattening copy when framed): half of what a
// replay allocated, and so much of its garbage collection.

import { NS_PER_MS } from "./config.js";

/** Room for the five numbers and their dots. */
const NUMBERS_MAX = 5 * 21;

export class AckReplies {
  private readonly scratch: Buffer;
  private readonly prefixLength: number;

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
    // Nanoseconds: whole milliseconds (what the stream stores) followed by six zeros, as the
    // product would print; anything else is printed from the product.
    if (Number.isSafeInteger(timeMs) && timeMs > 0) {
      p = writeDecimal(b, p, timeMs);
      for (let i = 0; i < 6; i++) b[p++] = 0x30;
    } else {
      p += b.write(String(timeMs * NS_PER_MS), p, "latin1");
    }
    b[p++] = 0x2e;
    p = writeDecimal(b, p, pending);
    return b.toString("latin1", 0, p);
  }
}

/** Writes a non-negative safe integer in decimal at p; returns the end. */
function writeDecimal(b: Buffer, p: number, value: number): number {
  if (value < 10) {
    b[p] = 0x30 + value;
    return p + 1;
  }
  let digits = 0;
  for (let v = value; v >= 1; v = Math.floor(v / 10)) digits++;
  const end = p + digits;
  for (let v = value, q = end; v >= 1; v = Math.floor(v / 10)) b[--q] = 0x30 + (v % 10);
  return end;
}
