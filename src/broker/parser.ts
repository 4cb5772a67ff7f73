// The client protocol parser. It walks each read chunk once, keeps arguments as offsets into the chunk
// and jumps over payloads by their declared size (nothing scans or copies a payload that arrived whole).
// Only a control line or payload split across reads is copied into a holding buffer.

export const enum ParseError {
  UnknownOperation,
  MaxControlLine,
  MaxPayload,
  /** Malformed arguments: nats-server closes such a connection without an -ERR. */
  BadArguments,
  /** The client sent -ERR: nats-server closes the connection. */
  ClientError,
}

/** One PUB/HPUB, valid only during the onPub call (its buffer is the read chunk). */
export interface PubFrame {
  buf: Buffer;
  subjectStart: number;
  subjectEnd: number;
  /** replyStart === replyEnd when there is no reply subject. */
  replyStart: number;
  replyEnd: number;
  /** Header bytes at the start of the payload; 0 for PUB. */
  headerSize: number;
  /** Total payload bytes, headers included. */
  size: number;
  payloadStart: number;
  /** True for HPUB. */
  hasHeaders: boolean;
}

export interface ProtocolSink {
  onConnect(json: string): void;
  onPub(frame: PubFrame): void;
  onSub(subject: string, queue: string | undefined, sid: string): void;
  onUnsub(sid: string, max: number): void;
  onPing(): void;
  onPong(): void;
  onParseError(error: ParseError): void;
  /** Whether HPUB is allowed (the client negotiated headers). */
  readonly headersEnabled: boolean;
}

const MAX_ARGS = 5;
/** CONNECT is the longest operation name; a longer word cannot be one. */
const LONGEST_OP = 7;
/** CONNECT carries credentials (JWTs) and is not bound by max_control_line, but by this. */
const MAX_CONNECT_LINE = 1024 * 1024;

const enum Op {
  Unknown,
  Pub,
  Hpub,
  Sub,
  Unsub,
  Ping,
  Pong,
  Connect,
  Info,
  Ok,
  Err,
}

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x09;
}

/** First bytes that can start a client operation (P, S, U, C, I, H, +, -), either case. */
function canStartOp(c: number): boolean {
  const l = c | 0x20;
  return l === 0x70 || l === 0x73 || l === 0x75 || l === 0x63 || l === 0x69 || l === 0x68 || c === 0x2b || c === 0x2d;
}

function opAt(buf: Buffer, s: number, e: number): Op {
  const n = e - s;
  const c0 = buf[s] | 0x20;
  if (n === 3 && c0 === 0x70 && (buf[s + 1] | 0x20) === 0x75 && (buf[s + 2] | 0x20) === 0x62) return Op.Pub;
  const word = buf.toString("latin1", s, e).toUpperCase();
  switch (word) {
    case "HPUB":
      return Op.Hpub;
    case "SUB":
      return Op.Sub;
    case "UNSUB":
      return Op.Unsub;
    case "PING":
      return Op.Ping;
    case "PONG":
      return Op.Pong;
    case "CONNECT":
      return Op.Connect;
    case "INFO":
      return Op.Info;
    case "+OK":
      return Op.Ok;
    case "-ERR":
      return Op.Err;
    default:
      return Op.Unknown;
  }
}

function parseDecimal(buf: Buffer, s: number, e: number): number {
  if (e <= s || e - s > 15) return -1;
  let v = 0;
  for (let i = s; i < e; i++) {
    const d = buf[i] - 48;
    if (d < 0 || d > 9) return -1;
    v = v * 10 + d;
  }
  return v;
}

export class ProtocolParser {
  /** Set by the owner when the connection closes; parsing stops at the next operation. */
  stopped = false;
  private held: Buffer | null = null; // an incomplete control line, or a split PUB (line + payload so far)
  private heldFill = 0; // bytes of `held` filled, while a split payload is being completed
  private readonly args = new Int32Array(MAX_ARGS * 2);
  private argc = 0;
  private readonly frame: PubFrame = {
    buf: Buffer.alloc(0),
    subjectStart: 0,
    subjectEnd: 0,
    replyStart: 0,
    replyEnd: 0,
    headerSize: 0,
    size: 0,
    payloadStart: 0,
    hasHeaders: false,
  };

  constructor(
    private readonly sink: ProtocolSink,
    private readonly maxControlLine: number,
    private readonly maxPayload: number,
  ) {}

  parse(chunk: Buffer): void {
    let buf = chunk;
    let pos = 0;
    if (this.held !== null) {
      if (this.heldFill > 0) {
        pos = this.fillSplitPayload(chunk);
        if (pos < 0 || this.stopped) return;
      } else {
        buf = Buffer.concat([this.held, chunk]);
        this.held = null;
      }
    }
    const len = buf.length;
    while (pos < len && !this.stopped) {
      const next = this.parseOne(buf, pos, len);
      if (next < 0) return; // incomplete (held) or failed
      pos = next;
    }
  }

  /** Parses one operation at pos; returns the position after it, or -1 when it is incomplete or fatal. */
  private parseOne(buf: Buffer, pos: number, len: number): number {
    if (!canStartOp(buf[pos])) return this.fail(ParseError.UnknownOperation);
    let opEnd = pos;
    while (opEnd < len) {
      const c = buf[opEnd];
      if (isSpace(c) || c === 0x0d || c === 0x0a) break;
      if (opEnd - pos >= LONGEST_OP) return this.pingPongPrefix(buf, pos, len);
      opEnd++;
    }
    if (opEnd === len) return this.holdLine(buf, pos, len, opEnd, false);
    const op = opAt(buf, pos, opEnd);
    if (op === Op.Unknown) return this.pingPongPrefix(buf, pos, len);
    // Operations with arguments need a separator before them: `UNSUB\r\n` is an unknown operation to nats-server.
    if (op <= Op.Unsub && !isSpace(buf[opEnd])) return this.fail(ParseError.UnknownOperation);
    const nl = this.scanArgs(buf, opEnd, len);
    const isConnect = op === Op.Connect || op === Op.Info;
    if (nl < 0) return this.holdLine(buf, pos, len, opEnd, isConnect);
    // Like nats-server, the limit applies to the arguments: the bytes after the operation and its separator.
    const lineEnd = buf[nl - 1] === 0x0d ? nl - 1 : nl;
    if (lineEnd - (opEnd + 1) > (isConnect ? MAX_CONNECT_LINE : this.maxControlLine)) return this.fail(ParseError.MaxControlLine);
    const args = this.args;
    const argc = this.argc;
    switch (op) {
      case Op.Pub:
      case Op.Hpub:
        return this.parsePub(buf, pos, nl, len, op === Op.Hpub);
      case Op.Sub: {
        if (argc !== 2 && argc !== 3) return this.fail(ParseError.BadArguments);
        const subject = buf.toString("latin1", args[0], args[1]);
        const queue = argc === 3 ? buf.toString("latin1", args[2], args[3]) : undefined;
        const sidAt = (argc - 1) * 2;
        this.sink.onSub(subject, queue, buf.toString("latin1", args[sidAt], args[sidAt + 1]));
        return nl + 1;
      }
      case Op.Unsub: {
        if (argc !== 1 && argc !== 2) return this.fail(ParseError.BadArguments);
        // A max that is not a number is ignored (unsubscribe now), as nats-server does.
        const max = argc === 2 ? Math.max(0, parseDecimal(buf, args[2], args[3])) : 0;
        this.sink.onUnsub(buf.toString("latin1", args[0], args[1]), max);
        return nl + 1;
      }
      case Op.Ping:
        this.sink.onPing();
        return nl + 1;
      case Op.Pong:
        this.sink.onPong();
        return nl + 1;
      case Op.Connect:
        this.sink.onConnect(buf.toString("utf8", opEnd, nl));
        return nl + 1;
      case Op.Info:
      case Op.Ok:
        return nl + 1; // accepted and ignored, as nats-server does for clients
      case Op.Err:
        return this.fail(ParseError.ClientError);
    }
    return this.fail(ParseError.UnknownOperation);
  }

  private parsePub(buf: Buffer, pos: number, nl: number, len: number, hasHeaders: boolean): number {
    const args = this.args;
    const argc = this.argc;
    if (hasHeaders && !this.sink.headersEnabled) return this.fail(ParseError.BadArguments);
    const sizeArgs = hasHeaders ? 2 : 1;
    if (argc !== 1 + sizeArgs && argc !== 2 + sizeArgs) return this.fail(ParseError.BadArguments);
    const last = (argc - 1) * 2;
    const size = parseDecimal(buf, args[last], args[last + 1]);
    let headerSize = 0;
    if (hasHeaders) {
      headerSize = parseDecimal(buf, args[last - 2], args[last - 1]);
      if (headerSize < 0 || headerSize > size) return this.fail(ParseError.BadArguments);
    }
    if (size < 0) return this.fail(ParseError.BadArguments);
    if (size > this.maxPayload) return this.fail(ParseError.MaxPayload);
    const f = this.frame;
    f.subjectStart = args[0];
    f.subjectEnd = args[1];
    if (argc === 2 + sizeArgs) {
      f.replyStart = args[2];
      f.replyEnd = args[3];
    } else {
      f.replyStart = f.replyEnd = 0;
    }
    f.headerSize = headerSize;
    f.size = size;
    f.hasHeaders = hasHeaders;
    const payloadStart = nl + 1;
    const end = payloadStart + size;
    if (end + 2 > len) {
      // The payload continues in later reads: hold the control line and what we have of the payload.
      const held = Buffer.allocUnsafe(end + 2 - pos);
      buf.copy(held, 0, pos, len);
      this.rebase(pos);
      f.payloadStart = payloadStart - pos;
      this.held = held;
      this.heldFill = len - pos;
      return -1;
    }
    if (buf[end] !== 0x0d || buf[end + 1] !== 0x0a) return this.fail(ParseError.UnknownOperation);
    f.buf = buf;
    f.payloadStart = payloadStart;
    this.sink.onPub(f);
    return end + 2;
  }

  /** Continues a held split PUB with the new chunk; returns the position after it, or -1. */
  private fillSplitPayload(chunk: Buffer): number {
    const held = this.held as Buffer;
    const need = held.length - this.heldFill;
    const take = Math.min(need, chunk.length);
    chunk.copy(held, this.heldFill, 0, take);
    this.heldFill += take;
    if (this.heldFill < held.length) return -1;
    this.held = null;
    this.heldFill = 0;
    if (held[held.length - 2] !== 0x0d || held[held.length - 1] !== 0x0a) return this.fail(ParseError.UnknownOperation);
    this.frame.buf = held;
    this.sink.onPub(this.frame);
    return take;
  }

  private rebase(pos: number): void {
    const f = this.frame;
    f.subjectStart -= pos;
    f.subjectEnd -= pos;
    if (f.replyEnd > 0) {
      f.replyStart -= pos;
      f.replyEnd -= pos;
    }
  }

  /** Records argument offsets up to the line end; returns the index of '\n' or -1 when not yet received. */
  private scanArgs(buf: Buffer, from: number, len: number): number {
    const args = this.args;
    let argc = 0;
    let tokenStart = -1;
    for (let i = from; i < len; i++) {
      const c = buf[i];
      if (c === 0x20 || c === 0x09 || c === 0x0d || c === 0x0a) {
        if (tokenStart >= 0) {
          if (argc < MAX_ARGS) {
            args[argc * 2] = tokenStart;
            args[argc * 2 + 1] = i;
          }
          argc++;
          tokenStart = -1;
        }
        if (c === 0x0a) {
          this.argc = argc;
          return i;
        }
      } else if (tokenStart < 0) {
        tokenStart = i;
      }
    }
    return -1;
  }

  /** nats-server reads PING/PONG and ignores anything after them up to the newline (`PINGX` is a PING). */
  private pingPongPrefix(buf: Buffer, pos: number, len: number): number {
    if (len - pos >= 4) {
      const word = buf.toString("latin1", pos, pos + 4).toUpperCase();
      if (word === "PING" || word === "PONG") {
        const nl = buf.indexOf(0x0a, pos + 4);
        if (nl < 0) return this.holdLine(buf, pos, len, pos + 4, false);
        if (word === "PING") this.sink.onPing();
        else this.sink.onPong();
        return nl + 1;
      }
    }
    return this.fail(ParseError.UnknownOperation);
  }

  private holdLine(buf: Buffer, pos: number, len: number, opEnd: number, isConnect: boolean): number {
    if (len - (opEnd + 1) > (isConnect ? MAX_CONNECT_LINE : this.maxControlLine)) return this.fail(ParseError.MaxControlLine);
    this.held = Buffer.from(buf.subarray(pos, len));
    this.heldFill = 0;
    return -1;
  }

  private fail(error: ParseError): number {
    this.stopped = true;
    this.held = null;
    this.sink.onParseError(error);
    return -1;
  }
}
