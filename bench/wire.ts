// Minimal NATS wire helpers for the raw-socket load generator.
//
// The subscriber hot path must do almost no work per message: when every MSG
// frame has the same subject, sid and payload size, its length is fixed, so the
// reader just checks the first byte and the two line ends and jumps over the
// frame. Anything else (INFO, PING, PONG, +OK, -ERR, or a MSG/HMSG frame that
// does not have the expected shape) goes through a general line parser, so the
// count stays exact even if the server interleaves PINGs or splits frames
// across reads.

const LF = 10;
const MAX_LINE = 64 * 1024;

export interface InboundHandlers {
  onPing(): void;
  onPong(): void;
  onError(text: string): void;
}

/** Exact shape of one MSG frame for a fixed subject, sid and payload size. */
export interface FrameShape {
  headerLen: number;
  frameLen: number;
}

export function msgFrameShape(subject: string, sid: string, payloadSize: number): FrameShape {
  const headerLen = Buffer.byteLength(`MSG ${subject} ${sid} ${payloadSize}\r\n`);
  return { headerLen, frameLen: headerLen + payloadSize + 2 };
}

/** Length in bytes of one `PUB subject n\r\n<payload>\r\n` command. */
export function pubCommandLen(subject: string, payloadSize: number): number {
  return Buffer.byteLength(`PUB ${subject} ${payloadSize}\r\n`) + payloadSize + 2;
}

/**
 * One buffer with `count` PUB commands followed by `PING\r\n`. The trailing
 * PING lets the publisher bound how much the server has not yet processed.
 */
export function buildPubBatch(subject: string, payloadSize: number, count: number): Buffer {
  const head = Buffer.from(`PUB ${subject} ${payloadSize}\r\n`);
  const one = head.length + payloadSize + 2;
  const ping = Buffer.from("PING\r\n");
  const out = Buffer.allocUnsafe(one * count + ping.length);
  let off = 0;
  for (let i = 0; i < count; i++) {
    head.copy(out, off);
    off += head.length;
    // Printable payload; content is irrelevant to both servers.
    out.fill(0x61 + (i % 26), off, off + payloadSize);
    off += payloadSize;
    out[off++] = 13;
    out[off++] = 10;
  }
  ping.copy(out, off);
  return out;
}

export function connectCommand(): string {
  return 'CONNECT {"verbose":false,"pedantic":false}\r\n';
}

/** Counts MSG/HMSG frames in a byte stream and dispatches control lines. */
export class InboundCounter {
  /** MSG + HMSG frames seen so far. */
  msgs = 0;
  private skip = 0;
  private partial: Buffer | null = null;
  private readonly headerLen: number;
  private readonly frameLen: number;

  constructor(shape: FrameShape | null, private readonly h: InboundHandlers) {
    // A zero shape never matches the fast path (frameLen 0 is rejected below).
    this.headerLen = shape ? shape.headerLen : 0;
    this.frameLen = shape ? shape.frameLen : 0;
  }

  /** Feed exactly the bytes received (no stale bytes past the end). */
  feed(chunk: Buffer): void {
    const len = chunk.length;
    let pos = 0;
    if (this.skip > 0) {
      const n = this.skip < len ? this.skip : len;
      pos = n;
      this.skip -= n;
      if (this.skip > 0) return;
    }
    if (this.partial !== null) {
      const nl = chunk.indexOf(LF, pos);
      if (nl < 0) {
        this.partial = Buffer.concat([this.partial, chunk.subarray(pos)]);
        if (this.partial.length > MAX_LINE) throw new Error("control line too long");
        return;
      }
      const line = Buffer.concat([this.partial, chunk.subarray(pos, nl + 1)]);
      this.partial = null;
      pos = nl + 1;
      this.skip = this.handleLine(line);
      if (this.skip > 0) {
        const n = this.skip < len - pos ? this.skip : len - pos;
        pos += n;
        this.skip -= n;
        if (this.skip > 0) return;
      }
    }
    const hl = this.headerLen;
    const fl = this.frameLen;
    while (pos < len) {
      // Fast path: a MSG frame with the expected fixed layout.
      if (chunk[pos] === 77 && fl > 0) {
        if (pos + fl <= len) {
          if (chunk[pos + hl - 1] === LF && chunk[pos + fl - 1] === LF) {
            this.msgs++;
            pos += fl;
            continue;
          }
        } else if (pos + hl <= len && chunk[pos + hl - 1] === LF) {
          // Header complete, payload continues in the next read.
          this.msgs++;
          this.skip = fl - (len - pos);
          return;
        }
      }
      // Slow path: one control line.
      const nl = chunk.indexOf(LF, pos);
      if (nl < 0) {
        this.partial = Buffer.from(chunk.subarray(pos));
        return;
      }
      const skip = this.handleLine(chunk.subarray(pos, nl + 1));
      pos = nl + 1;
      if (skip > 0) {
        if (pos + skip <= len) {
          pos += skip;
        } else {
          this.skip = skip - (len - pos);
          return;
        }
      }
    }
  }

  /** Handles one complete line (including its LF); returns payload bytes to skip. */
  private handleLine(line: Buffer): number {
    const c0 = line[0]! | 0x20;
    if (c0 === 0x6d /* m */ || c0 === 0x68 /* h */) {
      // MSG <subj> <sid> [reply] <n>  |  HMSG <subj> <sid> [reply] <hdr> <total>
      const text = line.toString("latin1").trim();
      const parts = text.split(/[ \t]+/);
      const op = parts[0]!.toUpperCase();
      if (op === "MSG" || op === "HMSG") {
        const n = Number(parts[parts.length - 1]);
        if (!Number.isInteger(n) || n < 0) throw new Error(`bad ${op} line: ${text}`);
        this.msgs++;
        return n + 2;
      }
    } else if (c0 === 0x70 /* p */) {
      const op = line.toString("latin1").trim().toUpperCase();
      if (op === "PING") {
        this.h.onPing();
        return 0;
      }
      if (op === "PONG") {
        this.h.onPong();
        return 0;
      }
    } else if (c0 === 0x69 /* i: INFO */ || c0 === 0x2b /* +OK */) {
      return 0;
    } else if (c0 === 0x2d /* -ERR */) {
      this.h.onError(line.toString("utf8").trim());
      return 0;
    }
    this.h.onError(`unexpected line from server: ${JSON.stringify(line.toString("latin1").slice(0, 80))}`);
    return 0;
  }
}
