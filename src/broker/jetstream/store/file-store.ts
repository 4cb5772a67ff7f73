// MessageStore on append-only segment files (storage: file).
//
// On disk: <dir>/<10-digit id>.seg, replayed in id order. Every record, little-endian:
//   u32 record length (all bytes, this field and the CRC included) | u8 type | u64 seq | body | u32 CRC32
// where the CRC covers everything before it. Types and bodies:
//   1 message    f64 time ms | u32 subject len | u32 header len (0xffffffff: no header) | subject | header | data
//   2 delete     (none; seq is the removed sequence)
//   3 purge      (none; every sequence below seq is removed)
//   4 marker     f64 last time ms (seq is the last sequence assigned); written first in every segment
// Recovery stops at the first record that is short, malformed or fails its CRC and truncates the file
// there, so a torn or garbage tail costs only itself.
//
// Memory: payloads stay on disk. The index keeps, per live message, its sequence, subject, time,
// segment and offset; get() reads the record back with one pread (or from the pending buffer if not
// yet written), or from a chunk read ahead when reads go on through a file (read-ahead.ts). The
// active segment stays open, and the 16 most recently read others.
//
// Durability: append/remove/purge encode records into one pending buffer; flush() hands it to the
// OS with a single write (no fsync: what was flushed survives a process kill). More than AUTO_FLUSH
// pending bytes, or a segment roll, write early.
//
// A segment whose messages were all removed is deleted at the next flush (never the one being
// written). Its delete/purge records may still be needed for messages that sit dead in older,
// surviving segments, so those are re-appended to the active segment before the file goes.

import {
  closeSync,
  fstatSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readdirSync,
  rmSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import path from "node:path";
import zlib from "node:zlib";
import { ReadAhead, readFully } from "./read-ahead.js";
import { IndexedStore, type IndexEntry, type SubjectState } from "./seq-index.js";
import type { PurgeRequest, StoredMessage } from "./types.js";

/** The read cache: small messages only, bounded in count and bytes. */
const CACHE_MAX_MESSAGE = 16 * 1024;
const CACHE_MAX_BYTES = 8 * 1024 * 1024;
const CACHE_MAX_MESSAGES = 8192;

function cachedSize(m: StoredMessage): number {
  return MSG_FIXED + m.subject.length + (m.header?.length ?? 0) + m.data.length;
}

const T_MSG = 1;
const T_DEL = 2;
const T_PURGE = 3;
const T_MARK = 4;

/** Fixed bytes of a message record: len 4, type 1, seq 8, time 8, subject len 4, header len 4, crc 4. */
const MSG_FIXED = 33;
const MSG_BODY = 29; // where the subject starts
const SMALL_REC = 17; // delete and purge records
const MARK_REC = 25;
const NO_HDR = 0xffffffff;
const MAX_REC = 0x7fffffff;

const DEFAULT_SEGMENT = 64 * 1024 * 1024;
const INITIAL_PENDING = 64 * 1024;
const AUTO_FLUSH = 8 * 1024 * 1024;
const KEEP_PENDING = 16 * 1024 * 1024;
const READ_CHUNK = 1024 * 1024;
/** Segments other than the active one whose file stays open for reads (least recently used closed). */
const MAX_OPEN_READERS = 16;

/** CRC-32 (IEEE, as zlib) lookup tables for slicing by 8 bytes. */
const CRC_TABLE = (() => {
  const t = new Int32Array(256 * 8);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c;
  }
  for (let n = 0; n < 256; n++) {
    let c = t[n];
    for (let k = 1; k < 8; k++) {
      c = t[c & 0xff] ^ (c >>> 8);
      t[k * 256 + n] = c;
    }
  }
  return t;
})();

/** CRC-32 of b[start, end) in JavaScript: faster than node:zlib's for short inputs, and the fallback. */
export function crc32Js(b: Uint8Array, start = 0, end = b.length): number {
  const t = CRC_TABLE;
  let c = -1;
  let i = start;
  const end8 = end - ((end - start) & 7);
  while (i < end8) {
    const a = (b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24)) ^ c;
    c =
      t[1792 + (a & 0xff)] ^
      t[1536 + ((a >>> 8) & 0xff)] ^
      t[1280 + ((a >>> 16) & 0xff)] ^
      t[1024 + (a >>> 24)] ^
      t[768 + b[i + 4]] ^
      t[512 + b[i + 5]] ^
      t[256 + b[i + 6]] ^
      t[b[i + 7]];
    i += 8;
  }
  while (i < end) c = t[(c ^ b[i++]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

// node:zlib has crc32 from Node 20.15; its per-call cost only pays off on longer inputs.
const zcrc = (zlib as { crc32?: (data: Uint8Array) => number }).crc32;
const ZLIB_CRC_MIN = typeof zcrc === "function" ? 256 : Infinity;

function crc32(b: Buffer, start: number, end: number): number {
  if (end - start < ZLIB_CRC_MIN) return crc32Js(b, start, end);
  return (zcrc as (data: Uint8Array) => number)(b.subarray(start, end));
}

function getU64(b: Buffer, o: number): number {
  return b.readUInt32LE(o) + b.readUInt32LE(o + 4) * 4294967296;
}

/** nats-server filestore: 22 + subject + data + 8, plus 4 + header when there is a header. */
function fileMessageSize(subjectLen: number, headerLen: number, dataLen: number): number {
  return headerLen === 0 ? 22 + subjectLen + dataLen + 8 : 22 + subjectLen + 4 + headerLen + dataLen + 8;
}

class Segment {
  /** Logical size: bytes written plus, for the active segment, bytes pending. */
  size = 0;
  /** Bytes handed to the OS. */
  flushed = 0;
  /** Live messages stored here. */
  live = 0;
  /** Range of message sequences recorded here (dead ones too); 0 when none. */
  msgFirst = 0;
  msgLast = 0;
  /** Holds delete or purge records. */
  hasRemovals = false;
  dying = false;

  /** Open descriptor, -1 when closed (only the active segment is always open). */
  fd = -1;

  constructor(
    readonly id: number,
    readonly file: string,
  ) {}
}

class FileEntry implements IndexEntry {
  constructor(
    readonly seq: number,
    readonly subj: SubjectState,
    readonly time: number,
    readonly size: number,
    readonly seg: Segment,
    readonly off: number,
    readonly len: number,
  ) {}
}

/** Walks the records of a segment file, reading it in chunks. */
class RecordReader {
  private chunk: Buffer;
  private start = 0;
  private len = 0;
  /** Set by view(): the buffer and offset holding the requested bytes. */
  vb: Buffer;
  vo = 0;

  constructor(
    private readonly fd: number,
    readonly fileSize: number,
    chunk: Buffer,
  ) {
    this.chunk = chunk;
    this.vb = chunk;
  }

  /** Makes bytes [pos, pos + n) available in vb at vo; false if the file is shorter. */
  view(pos: number, n: number): boolean {
    if (pos + n > this.fileSize) return false;
    if (pos >= this.start && pos + n <= this.start + this.len) {
      this.vb = this.chunk;
      this.vo = pos - this.start;
      return true;
    }
    if (n > this.chunk.length) {
      const big = Buffer.allocUnsafe(n);
      if (readFully(this.fd, big, n, pos) < n) return false;
      this.vb = big;
      this.vo = 0;
      return true;
    }
    this.start = pos;
    this.len = readFully(this.fd, this.chunk, Math.min(this.chunk.length, this.fileSize - pos), pos);
    if (this.len < n) return false;
    this.vb = this.chunk;
    this.vo = 0;
    return true;
  }
}

/** Checks the record at pos (length, type, shape, CRC); its bytes are then in r.vb at r.vo. */
function validRecord(r: RecordReader, pos: number): number {
  if (!r.view(pos, 4)) return 0;
  const len = r.vb.readUInt32LE(r.vo);
  if (len < SMALL_REC || len > MAX_REC || !r.view(pos, len)) return 0;
  const b = r.vb;
  const o = r.vo;
  switch (b[o + 4]) {
    case T_MSG: {
      if (len < MSG_FIXED) return 0;
      const sl = b.readUInt32LE(o + 21);
      const hraw = b.readUInt32LE(o + 25);
      if (MSG_FIXED + sl + (hraw === NO_HDR ? 0 : hraw) > len) return 0;
      break;
    }
    case T_DEL:
    case T_PURGE:
      if (len !== SMALL_REC) return 0;
      break;
    case T_MARK:
      if (len !== MARK_REC) return 0;
      break;
    default:
      return 0;
  }
  if (crc32(b, o, o + len - 4) !== b.readUInt32LE(o + len - 4)) return 0;
  return len;
}

export interface FileStoreOptions {
  /** Roll to a new segment file past this many bytes (default 64 MiB). */
  maxSegmentBytes?: number;
}

const SEGMENT_NAME = /^(\d{10,})\.seg$/;

export class FileStore extends IndexedStore<FileEntry> {
  readonly dir: string;
  private readonly maxSegmentBytes: number;
  private segments: Segment[] = [];
  private active!: Segment;
  private pending: Buffer = Buffer.allocUnsafe(INITIAL_PENDING);
  private view = new DataView(this.pending.buffer, this.pending.byteOffset, this.pending.length);
  private pendingLen = 0;
  /** Segments with no live messages left, deleted at the next flush. */
  private dead: Segment[] = [];
  /** Non-active segments with an open descriptor, least recently used first. */
  private readers = new Map<Segment, true>();
  /** Recently written or read small messages, so KV gets and live consumers rarely touch the disk. */
  private readonly recent = new Map<number, StoredMessage>();
  private recentBytes = 0;
  private readonly readAhead = new ReadAhead();
  /** Highest purge floor seen: every sequence below it is gone. */
  private floor = 0;
  private replaying = false;
  private closed = false;

  /** Opens (creating if missing) the store in dir and recovers whatever it holds. */
  static open(dir: string, options: FileStoreOptions = {}): FileStore {
    return new FileStore(dir, options);
  }

  constructor(dir: string, options: FileStoreOptions = {}) {
    super();
    this.dir = dir;
    this.maxSegmentBytes = options.maxSegmentBytes ?? DEFAULT_SEGMENT;
    mkdirSync(dir, { recursive: true });
    this.recover();
  }

  private segmentPath(id: number): string {
    return path.join(this.dir, `${String(id).padStart(10, "0")}.seg`);
  }

  // ---- recovery

  private recover(): void {
    const ids: number[] = [];
    for (const name of readdirSync(this.dir)) {
      const m = SEGMENT_NAME.exec(name);
      if (m !== null) ids.push(Number(m[1]));
    }
    ids.sort((a, b) => a - b);
    const chunk = Buffer.allocUnsafe(READ_CHUNK);
    this.replaying = true;
    try {
      for (let i = 0; i < ids.length; i++) {
        const seg = new Segment(ids[i], this.segmentPath(ids[i]));
        seg.fd = openSync(seg.file, "r+");
        this.segments.push(seg);
        try {
          this.replay(seg, chunk);
        } finally {
          if (i < ids.length - 1) this.closeFd(seg);
        }
      }
    } finally {
      this.replaying = false;
    }
    const last = this.segments[this.segments.length - 1];
    if (last === undefined) {
      this.startSegment(1);
    } else {
      this.active = last;
      if (last.size === 0) this.writeMarker();
    }
    for (const seg of this.segments) if (seg !== this.active && seg.live === 0) this.dead.push(seg);
    this.flush();
  }

  private replay(seg: Segment, chunk: Buffer): void {
    const size = fstatSync(seg.fd).size;
    const r = new RecordReader(seg.fd, size, chunk);
    let pos = 0;
    while (pos < size) {
      const len = validRecord(r, pos);
      if (len === 0) break;
      this.apply(seg, r.vb, r.vo, len, pos);
      pos += len;
    }
    if (pos < size) ftruncateSync(seg.fd, pos);
    seg.size = seg.flushed = pos;
  }

  private apply(seg: Segment, b: Buffer, o: number, len: number, pos: number): void {
    const seq = getU64(b, o + 5);
    switch (b[o + 4]) {
      case T_MSG: {
        if (seq <= this.lastSeq) return; // out of order: cannot be a record we wrote
        const time = b.readDoubleLE(o + 13);
        const sl = b.readUInt32LE(o + 21);
        const hraw = b.readUInt32LE(o + 25);
        const hl = hraw === NO_HDR ? 0 : hraw;
        const subject = b.toString("latin1", o + MSG_BODY, o + MSG_BODY + sl);
        this.indexMessage(seg, seq, subject, time, fileMessageSize(sl, hl, len - MSG_FIXED - sl - hl), pos, len);
        return;
      }
      case T_DEL:
        seg.hasRemovals = true;
        this.removeSeq(seq);
        return;
      case T_PURGE:
        seg.hasRemovals = true;
        this.purgeBelow(seq);
        return;
      case T_MARK:
        if (seq >= this.lastSeq) {
          this.lastSeq = seq;
          this.lastTime = b.readDoubleLE(o + 13);
        }
        return;
    }
  }

  /** Indexes a message record at off in seg (appended now, or replayed). */
  private indexMessage(seg: Segment, seq: number, subject: string, time: number, size: number, off: number, len: number): void {
    this.insert(new FileEntry(seq, this.subjectState(subject), time, size, seg, off, len));
    seg.live++;
    if (seg.msgFirst === 0) seg.msgFirst = seq;
    seg.msgLast = seq;
  }

  // ---- writing

  private reserve(n: number): void {
    const need = this.pendingLen + n;
    if (need <= this.pending.length) return;
    this.setPending(Buffer.allocUnsafe(Math.max(need, this.pending.length * 2)), this.pendingLen);
  }

  private setPending(next: Buffer, keep: number): void {
    if (keep > 0) this.pending.copy(next, 0, 0, keep);
    this.pending = next;
    this.view = new DataView(next.buffer, next.byteOffset, next.length);
  }

  /** Reserves room for a record of len bytes and writes its length, type and seq; returns its offset in pending. */
  private writeHead(len: number, type: number, seq: number): number {
    this.reserve(len);
    const o = this.pendingLen;
    const v = this.view;
    v.setUint32(o, len, true);
    this.pending[o + 4] = type;
    v.setUint32(o + 5, seq >>> 0, true);
    v.setUint32(o + 9, Math.floor(seq / 4294967296), true);
    return o;
  }

  private writeSmall(type: number, seq: number): void {
    const o = this.writeHead(SMALL_REC, type, seq);
    this.view.setUint32(o + 13, crc32(this.pending, o, o + 13), true);
    this.pendingLen += SMALL_REC;
    this.active.size += SMALL_REC;
    this.active.hasRemovals = true;
  }

  private writeMarker(): void {
    const o = this.writeHead(MARK_REC, T_MARK, this.lastSeq);
    const v = this.view;
    v.setFloat64(o + 13, this.lastTime, true);
    v.setUint32(o + 21, crc32(this.pending, o, o + 21), true);
    this.pendingLen += MARK_REC;
    this.active.size += MARK_REC;
  }

  /** Writes the pending buffer to the active segment with one write. */
  private writePending(): void {
    const n = this.pendingLen;
    if (n === 0) return;
    const seg = this.active;
    let done = 0;
    while (done < n) done += writeSync(seg.fd, this.pending, done, n - done, seg.flushed + done);
    seg.flushed += n;
    this.pendingLen = 0;
    if (this.pending.length > KEEP_PENDING) this.setPending(Buffer.allocUnsafe(INITIAL_PENDING), 0);
  }

  private startSegment(id: number): void {
    const seg = new Segment(id, this.segmentPath(id));
    seg.fd = openSync(seg.file, "w+");
    this.segments.push(seg);
    this.active = seg;
    this.writeMarker();
  }

  private roll(): void {
    this.writePending();
    const old = this.active;
    this.startSegment(old.id + 1);
    this.keepReader(old);
    if (old.live === 0) this.dead.push(old);
  }

  /** An open descriptor for reading a segment. */
  private fdFor(seg: Segment): number {
    if (seg === this.active) return seg.fd;
    if (seg.fd >= 0) {
      this.readers.delete(seg);
      this.readers.set(seg, true);
      return seg.fd;
    }
    seg.fd = openSync(seg.file, "r");
    this.keepReader(seg);
    return seg.fd;
  }

  private keepReader(seg: Segment): void {
    this.readers.set(seg, true);
    if (this.readers.size > MAX_OPEN_READERS) {
      for (const oldest of this.readers.keys()) {
        this.closeFd(oldest);
        break;
      }
    }
  }

  private closeFd(seg: Segment): void {
    this.readers.delete(seg);
    if (seg.fd >= 0) closeSync(seg.fd);
    seg.fd = -1;
  }

  private checkOpen(): void {
    if (this.closed) throw new Error("file store is closed");
  }

  append(subject: string, header: Buffer | null, data: Buffer, time: number): number {
    this.checkOpen();
    const seq = this.lastSeq + 1;
    const sl = subject.length;
    const hl = header === null ? 0 : header.length;
    const dl = data.length;
    const len = MSG_FIXED + sl + hl + dl;
    if (len > MAX_REC) throw new Error("message too large for the file store");
    let seg = this.active;
    if (seg.size > MARK_REC && seg.size + len > this.maxSegmentBytes) {
      this.roll();
      seg = this.active;
    }
    const o = this.writeHead(len, T_MSG, seq);
    const b = this.pending;
    const v = this.view;
    v.setFloat64(o + 13, time, true);
    v.setUint32(o + 21, sl, true);
    v.setUint32(o + 25, header === null ? NO_HDR : hl, true);
    let p = o + MSG_BODY;
    if (sl <= 32) for (let i = 0; i < sl; i++) b[p++] = subject.charCodeAt(i);
    else p += b.write(subject, p, sl, "latin1");
    if (header !== null) p += header.copy(b, p);
    data.copy(b, p);
    v.setUint32(o + len - 4, crc32(b, o, o + len - 4), true);
    const off = seg.size;
    seg.size += len;
    this.pendingLen += len;
    this.indexMessage(seg, seq, subject, time, fileMessageSize(sl, hl, dl), off, len);
    if (this.pendingLen >= AUTO_FLUSH) this.writePending();
    if (len <= CACHE_MAX_MESSAGE) {
      this.remember({ seq, subject, time, header: header === null ? null : Buffer.from(header), data: Buffer.from(data) }, len);
    }
    return seq;
  }

  private remember(msg: StoredMessage, size: number): void {
    this.recent.set(msg.seq, msg);
    this.recentBytes += size;
    while (this.recentBytes > CACHE_MAX_BYTES || this.recent.size > CACHE_MAX_MESSAGES) {
      const [oldest, m] = this.recent.entries().next().value as [number, StoredMessage];
      this.recent.delete(oldest);
      this.recentBytes -= cachedSize(m);
    }
  }

  private forget(seq: number): void {
    const m = this.recent.get(seq);
    if (m === undefined) return;
    this.recent.delete(seq);
    this.recentBytes -= cachedSize(m);
  }

  sizeOf(subject: string, header: Buffer | null, data: Buffer): number {
    return fileMessageSize(subject.length, header === null ? 0 : header.length, data.length);
  }

  protected load(e: FileEntry): StoredMessage {
    this.checkOpen();
    const cached = this.recent.get(e.seq);
    if (cached !== undefined) return cached;
    const seg = e.seg;
    const len = e.len;
    let b: Buffer;
    let o = 0;
    let fromChunk = false;
    if (seg === this.active && e.off >= seg.flushed) {
      b = Buffer.allocUnsafe(len);
      const p = e.off - seg.flushed;
      this.pending.copy(b, 0, p, p + len);
    } else {
      const read = this.readAhead.read(seg, this.fdFor(seg), len, e.off);
      if (read === null) throw new Error(`file store: short read of sequence ${e.seq} in ${seg.file}`);
      b = read;
      o = this.readAhead.at;
      fromChunk = this.readAhead.fromChunk;
    }
    if (b.readUInt32LE(o) !== len || b[o + 4] !== T_MSG || getU64(b, o + 5) !== e.seq) {
      throw new Error(`file store: corrupt record for sequence ${e.seq} in ${seg.file}`);
    }
    const sl = b.readUInt32LE(o + 21);
    const hraw = b.readUInt32LE(o + 25);
    const hs = o + MSG_BODY + sl;
    const ds = hraw === NO_HDR ? hs : hs + hraw;
    const msg: StoredMessage = {
      seq: e.seq,
      subject: e.subj.subject,
      time: e.time,
      header: hraw === NO_HDR ? null : b.subarray(hs, ds),
      data: b.subarray(ds, o + len - 4),
    };
    // Messages read through a chunk (a replay, reading on through the file) would only push out what
    // gets come back for, and each would keep its whole chunk alive.
    if (len <= CACHE_MAX_MESSAGE && !fromChunk) this.remember(msg, len);
    return msg;
  }

  protected onRemoved(e: FileEntry, bulk: boolean): void {
    this.forget(e.seq);
    const seg = e.seg;
    seg.live--;
    if (this.replaying) return;
    if (!bulk) this.writeSmall(T_DEL, e.seq);
    if (seg.live === 0 && seg !== this.active) this.dead.push(seg);
  }

  protected onFloor(floor: number): void {
    for (const seq of [...this.recent.keys()]) if (seq < floor) this.forget(seq);
    if (floor > this.floor) this.floor = floor;
    if (this.replaying) return;
    this.writeSmall(T_PURGE, floor);
    // A purge that emptied the segment being written: move on so its dead data can go.
    if (this.active.live === 0 && this.active.msgLast !== 0) this.roll();
  }

  override remove(seq: number): boolean {
    this.checkOpen();
    return super.remove(seq);
  }

  override purge(request: PurgeRequest): number {
    this.checkOpen();
    return super.purge(request);
  }

  /** Hands pending records to the OS, then deletes segments that hold no live message. */
  flush(): void {
    if (this.closed) return;
    if (this.dead.length !== 0) this.reap();
    else if (this.pendingLen !== 0) this.writePending();
  }

  private reap(): void {
    const victims: Segment[] = [];
    for (const seg of this.dead) {
      if (seg.live === 0 && seg !== this.active && !seg.dying) {
        seg.dying = true;
        victims.push(seg);
      }
    }
    this.dead = [];
    // Removal records in the victims that still matter for messages in surviving segments move on.
    const holders = this.segments.filter((s) => !s.dying && s.msgFirst !== 0);
    let needFloor = false;
    let chunk: Buffer | null = null;
    for (const seg of victims) {
      if (!seg.hasRemovals) continue;
      chunk ??= Buffer.allocUnsafe(READ_CHUNK);
      const r = new RecordReader(this.fdFor(seg), seg.flushed, chunk);
      let pos = 0;
      while (pos < seg.flushed) {
        // Only record heads are needed: the file was checked at recovery or written by this process.
        if (!r.view(pos, 13)) break;
        const len = r.vb.readUInt32LE(r.vo);
        if (len < SMALL_REC) break;
        const type = r.vb[r.vo + 4];
        if (type === T_DEL) {
          const seq = getU64(r.vb, r.vo + 5);
          if (holdsSeq(holders, seq)) this.writeSmall(T_DEL, seq);
        } else if (type === T_PURGE) {
          needFloor = true;
        }
        pos += len;
      }
    }
    if (needFloor && holders.length > 0 && holders[0].msgFirst < this.floor) this.writeSmall(T_PURGE, this.floor);
    this.writePending();
    for (const seg of victims) {
      this.closeFd(seg);
      this.readAhead.forget(seg);
      unlinkSync(seg.file);
    }
    if (victims.length > 0) this.segments = this.segments.filter((s) => !s.dying);
  }

  /** Flushes and closes the files; the store can no longer be used. */
  close(): void {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    for (const seg of this.segments) this.closeFd(seg);
    this.segments = [];
  }

  /** Deletes the store's directory and everything in it. */
  destroy(): void {
    if (!this.closed) {
      this.closed = true;
      for (const seg of this.segments) this.closeFd(seg);
      this.segments = [];
    }
    this.index.clear();
    this.subjects.clear();
    this.totalBytes = 0;
    this.pendingLen = 0;
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Whether one of the segments (sorted, each with messages) recorded a message with this sequence. */
function holdsSeq(segs: Segment[], seq: number): boolean {
  let lo = 0;
  let hi = segs.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (segs[mid].msgLast < seq) lo = mid + 1;
    else hi = mid;
  }
  return lo < segs.length && segs[lo].msgFirst <= seq;
}
