// MessageStore kept entirely in memory (storage: memory). Each message's header and payload are
// copied into one buffer at append, since callers may hand in views of reused read buffers.

import { IndexedStore, type IndexEntry, type SubjectState } from "./seq-index.js";
import type { StoredMessage } from "./types.js";

class MemEntry implements IndexEntry {
  constructor(
    readonly seq: number,
    readonly subj: SubjectState,
    readonly time: number,
    readonly size: number,
    /** Header bytes (hdrLen of them, -1 for no header) followed by the payload. */
    readonly buf: Buffer,
    readonly hdrLen: number,
  ) {}
}

/** nats-server memstore: subject + header + data + 16. */
function memoryMessageSize(subjectLen: number, headerLen: number, dataLen: number): number {
  return subjectLen + headerLen + dataLen + 16;
}

export class MemoryStore extends IndexedStore<MemEntry> {
  append(subject: string, header: Buffer | null, data: Buffer, time: number): number {
    const seq = this.lastSeq + 1;
    const hl = header === null ? 0 : header.length;
    const buf = Buffer.allocUnsafe(hl + data.length);
    if (header !== null) header.copy(buf, 0);
    data.copy(buf, hl);
    const size = memoryMessageSize(subject.length, hl, data.length);
    this.insert(new MemEntry(seq, this.subjectState(subject), time, size, buf, header === null ? -1 : hl));
    return seq;
  }

  sizeOf(subject: string, header: Buffer | null, data: Buffer): number {
    return memoryMessageSize(subject.length, header === null ? 0 : header.length, data.length);
  }

  protected load(e: MemEntry): StoredMessage {
    const hl = e.hdrLen;
    return {
      seq: e.seq,
      subject: e.subj.subject,
      time: e.time,
      header: hl < 0 ? null : e.buf.subarray(0, hl),
      data: hl <= 0 ? e.buf : e.buf.subarray(hl),
    };
  }

  protected onRemoved(): void {}

  protected onFloor(): void {}

  flush(): void {}

  close(): void {}

  destroy(): void {
    this.index.clear();
    this.subjects.clear();
    this.totalBytes = 0;
  }
}
