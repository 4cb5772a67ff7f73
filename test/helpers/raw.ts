// A raw TCP client for byte-exact protocol tests. It records every byte the
// server sends; tests wait for regexes over that record, or for the close.
import net from "node:net";
import { untilSignalled } from "./wait.js";

export const DEFAULT_WAIT_MS = 5000;

export interface RawOptions {
  /** Wait for and parse the INFO line before returning (default true). */
  readInfo?: boolean;
  timeoutMs?: number;
}

export class RawClient {
  readonly socket: net.Socket;
  /** Everything received, INFO line included. */
  private chunks: Buffer[] = [];
  private total = 0;
  /** Offset into the received bytes where the next waitFor() starts. */
  cursor = 0;
  closed = false;
  /** Socket error, if any (e.g. ECONNRESET when the server drops us). */
  error?: Error;
  info: Record<string, unknown> = {};
  infoLine = "";
  private waiters = new Set<() => void>();
  private closedP: Promise<void>;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on("data", (d: Buffer) => {
      this.chunks.push(d);
      this.total += d.length;
      this.wake();
    });
    socket.on("error", (e) => {
      this.error = e;
    });
    this.closedP = new Promise((resolve) => {
      socket.on("close", () => {
        this.closed = true;
        this.wake();
        resolve();
      });
    });
  }

  static async connect(port: number, opts: RawOptions = {}): Promise<RawClient> {
    const timeout = opts.timeoutMs ?? DEFAULT_WAIT_MS;
    const socket = net.connect({ port, host: "127.0.0.1" });
    socket.setNoDelay(true);
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => {
        socket.destroy();
        reject(new Error("raw connect timeout"));
      }, timeout);
      socket.once("connect", () => (clearTimeout(t), resolve()));
      socket.once("error", (e) => (clearTimeout(t), reject(e)));
    });
    const c = new RawClient(socket);
    if (opts.readInfo ?? true) {
      const line = await c.waitFor(/^INFO[ \t]+([^\r\n]+)\r\n/, timeout);
      c.infoLine = line;
      c.info = JSON.parse(/^INFO[ \t]+([^\r\n]+)\r\n/.exec(line)![1]!) as Record<string, unknown>;
    }
    return c;
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }

  /** All received bytes. */
  bytes(): Buffer {
    if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0] ?? Buffer.alloc(0);
  }

  /** Received bytes as latin1 text (1 char per byte, so offsets line up). */
  text(): string {
    return this.bytes().toString("latin1");
  }

  /** Text received after the cursor. */
  rest(): string {
    return this.bytes().subarray(this.cursor).toString("latin1");
  }

  get receivedBytes(): number {
    return this.total;
  }

  send(data: string | Uint8Array): void {
    if (!this.socket.destroyed) this.socket.write(typeof data === "string" ? Buffer.from(data, "latin1") : data);
  }

  /** Wait until `cond` is true, re-checking on every data/close event. */
  private until(cond: () => boolean, timeoutMs: number, what: () => string): Promise<void> {
    return untilSignalled(this.waiters, cond, timeoutMs, what);
  }

  /**
   * Wait for `re` to match the text after the cursor; returns the match and
   * moves the cursor past it. Rejects on timeout or if the socket closes first.
   */
  async waitFor(re: RegExp, timeoutMs = DEFAULT_WAIT_MS): Promise<string> {
    const hit: { m: RegExpExecArray | null } = { m: null };
    await this.until(
      () => (hit.m = re.exec(this.rest())) !== null || this.closed,
      timeoutMs,
      () => `${re} (got ${JSON.stringify(this.rest().slice(0, 300))})`,
    );
    if (!hit.m) {
      throw new Error(`connection closed while waiting for ${re}; got ${JSON.stringify(this.rest().slice(0, 300))}`);
    }
    this.cursor += hit.m.index + hit.m[0].length;
    return hit.m[0];
  }

  /** Wait until at least `n` bytes have arrived after the cursor. */
  async waitForBytes(n: number, timeoutMs = DEFAULT_WAIT_MS): Promise<Buffer> {
    await this.until(
      () => this.total - this.cursor >= n || this.closed,
      timeoutMs,
      () => `${n} bytes (have ${this.total - this.cursor})`,
    );
    if (this.total - this.cursor < n) throw new Error(`closed after ${this.total - this.cursor} of ${n} bytes`);
    const out = this.bytes().subarray(this.cursor, this.cursor + n);
    this.cursor += n;
    return out;
  }

  /**
   * Send `data` followed by PING and return everything received up to and
   * including the `pongs`-th PONG. The server answers in order, so this is
   * exactly what `data` produced (count PINGs inside `data` in `pongs`).
   */
  async sync(data = "", pongs = 1, timeoutMs = DEFAULT_WAIT_MS): Promise<string> {
    this.send(data + "PING\r\n");
    return this.waitFor(new RegExp(`^(?:[\\s\\S]*?PONG\\r\\n){${pongs}}`), timeoutMs);
  }

  /** Wait until the server closes the connection. */
  async waitClose(timeoutMs = DEFAULT_WAIT_MS): Promise<void> {
    await this.until(() => this.closed, timeoutMs, () => `close (got ${JSON.stringify(this.rest().slice(0, 300))})`);
  }

  /** Close our side and wait for the socket to finish closing. */
  async close(): Promise<void> {
    if (!this.closed) this.socket.destroy();
    await this.closedP;
  }
}

/** Build a CONNECT line; defaults match what a quiet raw client wants. */
export function connectLine(fields: Record<string, unknown> = {}): string {
  return `CONNECT ${JSON.stringify({ verbose: false, pedantic: false, protocol: 1, ...fields })}\r\n`;
}
