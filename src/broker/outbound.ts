// A connection's pending output. Everything produced for one socket while the server handles one read
// (MSG frames from any number of publishers, PONG, +OK, -ERR) is appended here and leaves in a single
// socket.write() when the server flushes. Bytes are appended into an arena; a flushed region is handed
// to the socket and never written again (libuv may still hold it), the next frames go after it.

const MIN_ARENA = 16 * 1024;
/** After a flush, an arena this big is dropped rather than kept for an idle connection. */
const RETAIN_LIMIT = 256 * 1024;

export class Outbound {
  buf: Buffer = Buffer.allocUnsafe(0);
  /** Start of the bytes not yet handed to the socket. */
  start = 0;
  /** End of the written bytes; appends go here. */
  end = 0;

  get pending(): number {
    return this.end - this.start;
  }

  /** Makes room for n more bytes, moving unflushed bytes to a new arena when needed. */
  reserve(n: number): void {
    if (this.end + n <= this.buf.length) return;
    const pending = this.end - this.start;
    const next = Buffer.allocUnsafe(Math.max(MIN_ARENA, (pending + n) * 2));
    if (pending > 0) this.buf.copy(next, 0, this.start, this.end);
    this.buf = next;
    this.start = 0;
    this.end = pending;
  }

  /** Appends ASCII text; the caller has reserved room. */
  ascii(text: string): void {
    const buf = this.buf;
    let p = this.end;
    for (let i = 0; i < text.length; i++) buf[p++] = text.charCodeAt(i);
    this.end = p;
  }

  /** Appends bytes src[from, to); the caller has reserved room. Short runs avoid the native copy call. */
  bytes(src: Uint8Array, from: number, to: number): void {
    const len = to - from;
    if (len > 48) {
      this.buf.set(src.subarray(from, to), this.end);
      this.end += len;
      return;
    }
    const buf = this.buf;
    let p = this.end;
    for (let i = from; i < to; i++) buf[p++] = src[i];
    this.end = p;
  }

  /** Appends a non-negative integer in decimal; the caller has reserved room (up to 16 bytes). */
  decimal(value: number): void {
    const buf = this.buf;
    if (value < 10) {
      buf[this.end++] = 48 + value;
      return;
    }
    let digits = 0;
    for (let v = value; v > 0; v = Math.floor(v / 10)) digits++;
    let p = this.end + digits;
    this.end = p;
    for (let v = value; v > 0; v = Math.floor(v / 10)) buf[--p] = 48 + (v % 10);
  }

  /** Hands the pending bytes over (for one socket.write) and resets. */
  take(): Buffer {
    const out = this.buf.subarray(this.start, this.end);
    this.start = this.end;
    if (this.buf.length > RETAIN_LIMIT) {
      this.buf = Buffer.allocUnsafe(0);
      this.start = this.end = 0;
    }
    return out;
  }
}
