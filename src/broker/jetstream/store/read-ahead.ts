// Sequential reads of segment files served from one chunk read ahead. A consumer replaying a stream
// asks for record after record in file order; reading them one pread each made the syscall the
// replay's main cost. A read that continues the previous one (at or shortly after where it ended, in
// the same segment) reads a new chunk from there, and records in it are handed out as views, not
// copies (fewer allocations per message, so less garbage collection); any other read (a KV get, say)
// reads only its own bytes. Written segment bytes never change (files are append-only), so a chunk stays valid until
// its segment goes, and a segment is identified by its object, not its descriptor.

import { readSync } from "node:fs";

/** Bytes read ahead at once: about a thousand small records. */
const CHUNK = 64 * 1024;

export class ReadAhead {
  private chunk: Buffer = Buffer.allocUnsafe(0);
  /** The segment whose bytes [start, start + len) are in the chunk. */
  private owner: object | null = null;
  private start = 0;
  private len = 0;
  /** Where the previous read ended, in lastOwner: the next read continuing from there is sequential. */
  private lastOwner: object | null = null;
  private lastEnd = -1;
  /** Set by read(): where in the returned buffer the bytes start, and whether that buffer is the shared chunk. */
  at = 0;
  fromChunk = false;

  /**
   * File bytes [pos, pos + n) of `owner` (open as fd): a buffer holding them from `at`, or null on a
   * short read. Bytes in the chunk come back as the chunk itself: each chunk is a new buffer, never
   * overwritten, so what a caller keeps of it stays valid (and keeps the chunk alive).
   */
  read(owner: object, fd: number, n: number, pos: number): Buffer | null {
    const sequential = owner === this.lastOwner && pos >= this.lastEnd && pos - this.lastEnd < CHUNK;
    this.lastOwner = owner;
    this.lastEnd = pos + n;
    if (owner !== this.owner || pos < this.start || pos + n > this.start + this.len) {
      if (!sequential || n > CHUNK) {
        const own = Buffer.allocUnsafe(n);
        this.at = 0;
        this.fromChunk = false;
        return readFully(fd, own, n, pos) === n ? own : null;
      }
      this.chunk = Buffer.allocUnsafe(CHUNK);
      this.owner = owner;
      this.start = pos;
      this.len = readFully(fd, this.chunk, CHUNK, pos);
      if (this.len < n) return null;
    }
    this.at = pos - this.start;
    this.fromChunk = true;
    return this.chunk;
  }

  /** Drops the chunk of a segment that goes away. */
  forget(owner: object): void {
    if (this.owner === owner) {
      this.owner = null;
      this.chunk = Buffer.allocUnsafe(0);
    }
    if (this.lastOwner === owner) this.lastOwner = null;
  }
}

/** Reads up to n bytes at pos into the start of buf; fewer only at the end of the file. */
export function readFully(fd: number, buf: Buffer, n: number, pos: number): number {
  let got = 0;
  while (got < n) {
    const read = readSync(fd, buf, got, n - got, pos + got);
    if (read === 0) break;
    got += read;
  }
  return got;
}
