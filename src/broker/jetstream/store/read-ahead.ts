// Sequential reads of segment files served from one chunk read ahead. A consumer replaying a stream
// asks for record after record in file order; reading them one pread each made the syscall the
// replay's main cost. A read that continues the previous one (at or shortly after where it ended, in
// the same segment) fills the chunk from there; any other read (a KV get, say) reads only its own
// bytes. Written segment bytes never change (files are append-only), so a chunk stays valid until
// its segment goes, and a segment is identified by its object, not its descriptor.

import { readSync } from "node:fs";

/** Bytes read ahead at once: about a thousand small records. */
const CHUNK = 64 * 1024;

export class ReadAhead {
  private readonly chunk = Buffer.allocUnsafe(CHUNK);
  /** The segment whose bytes [start, start + len) are in the chunk. */
  private owner: object | null = null;
  private start = 0;
  private len = 0;
  /** Where the previous read ended, in lastOwner: the next read continuing from there is sequential. */
  private lastOwner: object | null = null;
  private lastEnd = -1;
  /** Whether the last read continued the one before it. */
  sequential = false;

  /**
   * Copies file bytes [pos, pos + n) of `owner` (open as fd) into the start of dst; returns how many
   * it got, fewer than n only at the end of the file.
   */
  read(owner: object, fd: number, dst: Buffer, n: number, pos: number): number {
    const sequential = owner === this.lastOwner && pos >= this.lastEnd && pos - this.lastEnd < CHUNK;
    this.sequential = sequential;
    this.lastOwner = owner;
    this.lastEnd = pos + n;
    if (owner === this.owner && pos >= this.start && pos + n <= this.start + this.len) {
      const from = pos - this.start;
      this.chunk.copy(dst, 0, from, from + n);
      return n;
    }
    if (!sequential || n > CHUNK) return readFully(fd, dst, n, pos);
    this.owner = owner;
    this.start = pos;
    this.len = readFully(fd, this.chunk, CHUNK, pos);
    const got = Math.min(n, this.len);
    this.chunk.copy(dst, 0, 0, got);
    return got;
  }

  /** Drops the chunk of a segment that goes away. */
  forget(owner: object): void {
    if (this.owner === owner) this.owner = null;
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
