// Raw WebSocket (RFC 6455) by hand, for byte-exact tests of a server's WebSocket listener: build the
// upgrade request and frames ourselves (masked or not, any bits, any length form), read the server's
// frames back from a plain net.Socket. No WebSocket library is involved, so nothing is "fixed up".
import { createHash, randomBytes } from "node:crypto";
import net from "node:net";
import { untilSignalled } from "./wait.js";

export const WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

export const OP = { cont: 0x0, text: 0x1, binary: 0x2, close: 0x8, ping: 0x9, pong: 0xa } as const;

/** The Sec-WebSocket-Accept a server must answer for `key`. */
export function acceptFor(key: string): string {
  return createHash("sha1").update(key + WS_GUID).digest("base64");
}

export interface FrameSpec {
  opcode: number;
  payload?: Uint8Array | string;
  /** FIN bit (default true). */
  fin?: boolean;
  /** RSV1..3 as the 3-bit value 0bRRR (RSV1 = 4, RSV2 = 2, RSV3 = 1). */
  rsv?: number;
  /** Mask the payload (default true, as a client must); a Buffer is used as the masking key. */
  mask?: boolean | Uint8Array;
  /** Claim this payload length in the header instead of the real one (truncated/oversized frames). */
  declaredLength?: number;
}

/** One frame's bytes. Strings are UTF-8. */
export function buildFrame(spec: FrameSpec): Buffer {
  const payload = typeof spec.payload === "string" ? Buffer.from(spec.payload, "utf8") : Buffer.from(spec.payload ?? new Uint8Array(0));
  const len = spec.declaredLength ?? payload.length;
  const maskKey = spec.mask === false ? undefined : spec.mask === undefined || spec.mask === true ? randomBytes(4) : Buffer.from(spec.mask);
  const b0 = ((spec.fin ?? true) ? 0x80 : 0) | (((spec.rsv ?? 0) & 7) << 4) | (spec.opcode & 0x0f);
  const maskBit = maskKey ? 0x80 : 0;
  let head: Buffer;
  if (len < 126) {
    head = Buffer.from([b0, maskBit | len]);
  } else if (len < 65536) {
    head = Buffer.alloc(4);
    head[0] = b0;
    head[1] = maskBit | 126;
    head.writeUInt16BE(len, 2);
  } else {
    head = Buffer.alloc(10);
    head[0] = b0;
    head[1] = maskBit | 127;
    head.writeBigUInt64BE(BigInt(len), 2);
  }
  if (!maskKey) return Buffer.concat([head, payload]);
  const masked = Buffer.alloc(payload.length);
  for (let i = 0; i < payload.length; i++) masked[i] = payload[i]! ^ maskKey[i & 3]!;
  return Buffer.concat([head, maskKey, masked]);
}

/** A masked binary frame carrying NATS protocol text (what a client sends). */
export const natsFrame = (proto: string, opcode: number = OP.binary): Buffer => buildFrame({ opcode, payload: Buffer.from(proto, "latin1") });

/** A close frame's payload: 2-byte code and a reason. */
export function closePayload(code: number, reason = ""): Buffer {
  const b = Buffer.alloc(2 + Buffer.byteLength(reason));
  b.writeUInt16BE(code, 0);
  b.write(reason, 2);
  return b;
}

export interface Frame {
  fin: boolean;
  rsv: number;
  opcode: number;
  masked: boolean;
  payload: Buffer;
}

/** Parses whole frames off the front of `buf`; returns them and how many bytes they took. */
export function parseFrames(buf: Buffer): { frames: Frame[]; used: number } {
  const frames: Frame[] = [];
  let off = 0;
  for (;;) {
    if (buf.length - off < 2) break;
    const b0 = buf[off]!;
    const b1 = buf[off + 1]!;
    let len = b1 & 0x7f;
    let p = off + 2;
    if (len === 126) {
      if (buf.length - p < 2) break;
      len = buf.readUInt16BE(p);
      p += 2;
    } else if (len === 127) {
      if (buf.length - p < 8) break;
      len = Number(buf.readBigUInt64BE(p));
      p += 8;
    }
    const masked = (b1 & 0x80) !== 0;
    let key: Buffer | undefined;
    if (masked) {
      if (buf.length - p < 4) break;
      key = buf.subarray(p, p + 4);
      p += 4;
    }
    if (buf.length - p < len) break;
    let payload = Buffer.from(buf.subarray(p, p + len));
    if (key) payload = Buffer.from(payload.map((x, i) => x ^ key[i & 3]!));
    frames.push({ fin: (b0 & 0x80) !== 0, rsv: (b0 >> 4) & 7, opcode: b0 & 0x0f, masked, payload });
    off = p + len;
  }
  return { frames, used: off };
}

export interface HandshakeOpts {
  path?: string;
  method?: string;
  /** Header name -> value; `null` leaves out a header the default request has. */
  headers?: Record<string, string | null>;
  key?: string;
}

/** An upgrade request; by default a valid one for 127.0.0.1:port. */
export function upgradeRequest(port: number, opts: HandshakeOpts = {}): { text: string; key: string } {
  const key = opts.key ?? randomBytes(16).toString("base64");
  const h: Record<string, string | null> = {
    Host: `127.0.0.1:${port}`,
    Upgrade: "websocket",
    Connection: "Upgrade",
    "Sec-WebSocket-Key": key,
    "Sec-WebSocket-Version": "13",
    ...opts.headers,
  };
  const lines = Object.entries(h)
    .filter((e): e is [string, string] => e[1] !== null)
    .map(([k, v]) => `${k}: ${v}`);
  return { text: `${opts.method ?? "GET"} ${opts.path ?? "/"} HTTP/1.1\r\n${lines.join("\r\n")}\r\n\r\n`, key };
}

export interface HttpAnswer {
  status: number;
  statusLine: string;
  /** Lower-cased header names. */
  headers: Record<string, string>;
  /** Bytes after the header block (frames, after a 101). */
  rest: Buffer;
}

function parseHead(buf: Buffer): HttpAnswer | undefined {
  const end = buf.indexOf("\r\n\r\n");
  if (end < 0) return undefined;
  const [statusLine, ...lines] = buf.subarray(0, end).toString("latin1").split("\r\n");
  const headers: Record<string, string> = {};
  for (const l of lines) {
    const i = l.indexOf(":");
    if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  return { status: Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine!)?.[1] ?? 0), statusLine: statusLine!, headers, rest: buf.subarray(end + 4) };
}

function connectSocket(port: number, timeoutMs: number): Promise<net.Socket> {
  const s = net.connect({ port, host: "127.0.0.1" });
  s.setNoDelay(true);
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => (s.destroy(), reject(new Error("ws raw connect timeout"))), timeoutMs);
    s.once("connect", () => (clearTimeout(t), resolve(s)));
    s.once("error", (e) => (clearTimeout(t), reject(e)));
  });
}

/**
 * Sends `request` (text or bytes) and resolves with the server's HTTP answer, then destroys the socket.
 * `closedAfter` tells whether the server closed the connection within a moment of answering.
 */
export async function rawHttp(port: number, request: string | Buffer, timeoutMs = 5000): Promise<HttpAnswer & { closedAfter: boolean }> {
  const s = await connectSocket(port, timeoutMs);
  let buf = Buffer.alloc(0);
  let closed = false;
  s.on("error", () => undefined);
  try {
    return await new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no HTTP answer within ${timeoutMs}ms (got ${JSON.stringify(buf.toString("latin1").slice(0, 200))})`)), timeoutMs);
      const done = () => {
        const a = parseHead(buf);
        if (!a) return;
        clearTimeout(t);
        // Give the server a moment to close (or not) after its answer.
        const settle = setTimeout(() => resolve({ ...a, rest: buf.subarray(buf.length - a.rest.length), closedAfter: closed }), 150);
        s.once("close", () => (clearTimeout(settle), resolve({ ...a, closedAfter: true })));
      };
      s.on("data", (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        done();
      });
      s.on("close", () => {
        closed = true;
        if (!parseHead(buf)) {
          clearTimeout(t);
          reject(new Error(`closed without an HTTP answer (got ${JSON.stringify(buf.toString("latin1").slice(0, 200))})`));
        }
      });
      s.write(request);
    });
  } finally {
    s.destroy();
  }
}

/**
 * A WebSocket client over a bare socket. After open() the handshake is done (101 checked, accept key
 * verified) and every frame the server sends is recorded; the payloads of data frames form the NATS
 * protocol text, read with waitFor()/sync() like helpers/raw.ts.
 */
export class WsRawClient {
  readonly frames: Frame[] = [];
  response!: HttpAnswer;
  closed = false;
  closedAt = 0;
  error?: Error;
  info: Record<string, unknown> = {};
  infoLine = "";
  /** Offset into data() where the next waitFor() starts. */
  cursor = 0;
  /** Answer the server's close frame with ours (echoing its code), as a well-behaved client does. */
  answerClose = false;
  private sentClose = false;
  private pending = Buffer.alloc(0);
  private dataText = "";
  private waiters = new Set<() => void>();
  private closedP: Promise<void>;

  private constructor(readonly socket: net.Socket) {
    socket.on("error", (e) => (this.error = e));
    this.closedP = new Promise((resolve) =>
      socket.on("close", () => {
        this.closed = true;
        this.closedAt = Date.now();
        this.wake();
        resolve();
      }),
    );
  }

  /** Connects and upgrades; with `readInfo` (default) waits for the INFO line too. */
  static async open(
    port: number,
    opts: HandshakeOpts & { readInfo?: boolean; timeoutMs?: number; answerClose?: boolean } = {},
  ): Promise<WsRawClient> {
    const timeoutMs = opts.timeoutMs ?? 5000;
    const socket = await connectSocket(port, timeoutMs);
    const c = new WsRawClient(socket);
    c.answerClose = opts.answerClose ?? false;
    const { text, key } = upgradeRequest(port, opts);
    let head = Buffer.alloc(0);
    const answer = await new Promise<HttpAnswer>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error("no upgrade answer")), timeoutMs);
      const onData = (d: Buffer) => {
        head = Buffer.concat([head, d]);
        const a = parseHead(head);
        if (!a) return;
        clearTimeout(t);
        socket.off("data", onData);
        resolve(a);
      };
      socket.on("data", onData);
      socket.once("close", () => reject(new Error(`closed during the handshake: ${JSON.stringify(head.toString("latin1"))}`)));
      socket.write(text);
    });
    c.response = answer;
    if (answer.status !== 101) {
      socket.destroy();
      throw new Error(`upgrade refused: ${answer.statusLine}`);
    }
    if (answer.headers["sec-websocket-accept"] !== acceptFor(key)) {
      socket.destroy();
      throw new Error(`bad Sec-WebSocket-Accept ${answer.headers["sec-websocket-accept"]}`);
    }
    socket.on("data", (d: Buffer) => c.onBytes(d));
    if (answer.rest.length) c.onBytes(answer.rest);
    if (opts.readInfo ?? true) {
      const line = await c.waitFor(/^INFO[ \t]+([^\r\n]+)\r\n/, timeoutMs);
      c.infoLine = line;
      c.info = JSON.parse(/^INFO[ \t]+([^\r\n]+)\r\n/.exec(line)![1]!) as Record<string, unknown>;
    }
    return c;
  }

  private onBytes(d: Buffer): void {
    this.pending = Buffer.concat([this.pending, d]);
    const { frames, used } = parseFrames(this.pending);
    this.pending = this.pending.subarray(used);
    for (const f of frames) {
      this.frames.push(f);
      if (f.opcode === OP.binary || f.opcode === OP.text || f.opcode === OP.cont) this.dataText += f.payload.toString("latin1");
      if (f.opcode === OP.close && this.answerClose && !this.sentClose) {
        this.sentClose = true;
        this.write(buildFrame({ opcode: OP.close, payload: f.payload.subarray(0, 2) }));
      }
    }
    this.wake();
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }

  private until(cond: () => boolean, timeoutMs: number, what: () => string): Promise<void> {
    return untilSignalled(this.waiters, cond, timeoutMs, what);
  }

  /** The NATS protocol text received so far (data frame payloads, latin1). */
  data(): string {
    return this.dataText;
  }

  write(bytes: Uint8Array): void {
    if (!this.socket.destroyed) this.socket.write(bytes);
  }

  sendFrame(spec: FrameSpec): void {
    if (spec.opcode === OP.close) this.sentClose = true;
    this.write(buildFrame(spec));
  }

  /** NATS protocol text in one masked binary frame. */
  send(proto: string): void {
    this.write(natsFrame(proto));
  }

  async waitFor(re: RegExp, timeoutMs = 5000): Promise<string> {
    const hit: { m: RegExpExecArray | null } = { m: null };
    const rest = () => this.dataText.slice(this.cursor);
    await this.until(() => (hit.m = re.exec(rest())) !== null || this.closed, timeoutMs, () => `${re} (got ${JSON.stringify(rest().slice(0, 300))})`);
    if (!hit.m) throw new Error(`connection closed while waiting for ${re}; got ${JSON.stringify(rest().slice(0, 300))}`);
    this.cursor += hit.m.index + hit.m[0].length;
    return hit.m[0];
  }

  /**
   * Sends `proto` + PING in one frame; resolves with everything up to the `pongs`-th PONG (count
   * PINGs inside `proto` in `pongs`), as helpers/raw.ts' sync does.
   */
  async sync(proto = "", pongs = 1, timeoutMs = 5000): Promise<string> {
    this.send(proto + "PING\r\n");
    return this.waitFor(new RegExp(`^(?:[\\s\\S]*?PONG\\r\\n){${pongs}}`), timeoutMs);
  }

  /** The first frame (from the start of the connection) matching `pred`. */
  async waitFrame(pred: (f: Frame) => boolean, timeoutMs = 5000): Promise<Frame> {
    let hit: Frame | undefined;
    await this.until(() => (hit = this.frames.find(pred)) !== undefined || this.closed, timeoutMs, () => `a frame (got opcodes ${this.frames.map((f) => f.opcode).join(",")})`);
    if (!hit) throw new Error(`socket closed without the expected frame (got opcodes ${this.frames.map((f) => f.opcode).join(",")})`);
    return hit;
  }

  /** The server's close frame: its code (undefined if it carried none) and reason. */
  async closeFrame(timeoutMs = 5000): Promise<{ code?: number; reason: string }> {
    const f = await this.waitFrame((x) => x.opcode === OP.close, timeoutMs);
    return f.payload.length >= 2 ? { code: f.payload.readUInt16BE(0), reason: f.payload.subarray(2).toString("utf8") } : { reason: "" };
  }

  /** Waits until the server has closed the TCP connection. */
  async waitClose(timeoutMs = 5000): Promise<void> {
    await this.until(() => this.closed, timeoutMs, () => "the socket to close");
  }

  async close(): Promise<void> {
    if (!this.closed) this.socket.destroy();
    await this.closedP;
  }
}
