// The in-memory index shared by both message stores, and the query/purge logic built on it.
//
// SeqIndex keeps the live entries of a stream ordered by sequence, in blocks that each cover a fixed
// span of sequences. Only non-empty blocks are kept, so walking over a huge run of removed sequences
// (a KV bucket that overwrote one key millions of times) costs one step per live block, not one per
// sequence. Locating a sequence is a binary search over blocks, then within the block.
//
// SubjectState keeps, per subject, the ascending list of its live sequences (with a head offset so
// dropping the oldest is O(1)): last/first/count are O(1), "first at or after" is O(log n).
//
// IndexedStore implements every MessageStore query on top of those two structures; the concrete
// stores only provide append, message loading and the hooks that persist removals.

import type { MessageStore, PurgeRequest, StoreState, StoredMessage, SubjectFilter } from "./types.js";

/** Sequences per index block. */
const SPAN = 512;

/** How many non-matching entries next() examines before considering a walk over the subjects. */
const SCAN_BUDGET = 256;

type SubjectTest = (subject: string) => boolean;

/**
 * A filter that matches exactly one subject and says so, letting stores answer from their
 * per-subject index. Any filter function may carry `literal` (see SubjectFilter); this builds one.
 */
export function literalFilter(subject: string): NonNullable<SubjectFilter> {
  return Object.assign((s: string): boolean => s === subject, { literal: subject });
}

export class SubjectState {
  /** Live sequences on this subject, ascending, starting at `head`. */
  seqs: number[] = [];
  head = 0;
  /** One-entry memo of the last filter tested against this subject. */
  memoFilter: SubjectTest | null = null;
  memoResult = false;

  constructor(readonly subject: string) {}

  get count(): number {
    return this.seqs.length - this.head;
  }

  get first(): number {
    return this.seqs[this.head];
  }

  get last(): number {
    return this.seqs[this.seqs.length - 1];
  }

  /** Index in `seqs` of the first live sequence >= seq (seqs.length if none). */
  lowerBound(seq: number): number {
    const a = this.seqs;
    let lo = this.head;
    let hi = a.length;
    if (lo < hi && a[lo] >= seq) return lo;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (a[mid] < seq) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

function passes(st: SubjectState, filter: SubjectTest): boolean {
  if (st.memoFilter !== filter) {
    st.memoFilter = filter;
    st.memoResult = filter(st.subject);
  }
  return st.memoResult;
}

class Block<E extends { readonly seq: number }> {
  /** Live entries, ascending, starting at `head`. */
  items: E[] = [];
  head = 0;

  constructor(readonly no: number) {}

  get count(): number {
    return this.items.length - this.head;
  }

  lowerBound(seq: number): number {
    const a = this.items;
    let lo = this.head;
    let hi = a.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (a[mid].seq < seq) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

const blockNo = (seq: number): number => Math.floor(seq / SPAN);

/** Live entries ordered by sequence; entries must be added in ascending sequence order. */
export class SeqIndex<E extends { readonly seq: number }> {
  private blocks: Block<E>[] = [];
  /** Index of the first block in use (blocks before it were dropped from the front). */
  private bh = 0;
  size = 0;

  /** Index of the first block whose number is >= no (blocks.length if none). */
  private blockIdx(no: number): number {
    const bl = this.blocks;
    let lo = this.bh;
    let hi = bl.length;
    if (hi > lo && bl[hi - 1].no < no) return hi;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (bl[mid].no < no) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private dropBlock(i: number): void {
    const bl = this.blocks;
    if (i === this.bh) {
      bl[i] = undefined as unknown as Block<E>;
      this.bh++;
      if (this.bh === bl.length) {
        this.blocks = [];
        this.bh = 0;
      } else if (this.bh >= 32 && this.bh * 2 >= bl.length) {
        this.blocks = bl.slice(this.bh);
        this.bh = 0;
      }
    } else if (i === bl.length - 1) {
      bl.pop();
    } else {
      bl.splice(i, 1);
    }
  }

  add(e: E): void {
    const no = blockNo(e.seq);
    const bl = this.blocks;
    let b = bl.length > this.bh ? bl[bl.length - 1] : undefined;
    if (b === undefined || b.no !== no) {
      b = new Block<E>(no);
      bl.push(b);
    }
    b.items.push(e);
    this.size++;
  }

  get(seq: number): E | undefined {
    const no = blockNo(seq);
    const i = this.blockIdx(no);
    const b = this.blocks[i];
    if (b === undefined || b.no !== no) return undefined;
    const e = b.items[b.lowerBound(seq)];
    return e !== undefined && e.seq === seq ? e : undefined;
  }

  delete(seq: number): E | undefined {
    const no = blockNo(seq);
    const i = this.blockIdx(no);
    const b = this.blocks[i];
    if (b === undefined || b.no !== no) return undefined;
    const items = b.items;
    const j = b.lowerBound(seq);
    const e = items[j];
    if (e === undefined || e.seq !== seq) return undefined;
    if (j === b.head) {
      items[j] = undefined as unknown as E;
      b.head++;
    } else if (j === items.length - 1) {
      items.pop();
    } else {
      items.splice(j, 1);
    }
    this.size--;
    if (b.head === items.length) this.dropBlock(i);
    return e;
  }

  first(): E | undefined {
    if (this.size === 0) return undefined;
    const b = this.blocks[this.bh];
    return b.items[b.head];
  }

  last(): E | undefined {
    if (this.size === 0) return undefined;
    const items = this.blocks[this.blocks.length - 1].items;
    return items[items.length - 1];
  }

  /**
   * Visits live entries with seq >= from in order until visit returns true, and returns that entry
   * (undefined when the end is reached). With visit null, returns the first entry >= from.
   */
  scan(from: number, visit: ((e: E) => boolean) | null): E | undefined {
    const no = blockNo(from);
    for (let i = this.blockIdx(no); i < this.blocks.length; i++) {
      const b = this.blocks[i];
      const items = b.items;
      for (let j = b.no === no ? b.lowerBound(from) : b.head; j < items.length; j++) {
        const e = items[j];
        if (visit === null || visit(e)) return e;
      }
    }
    return undefined;
  }

  /** Number of live entries with seq >= from; walks the shorter side of the block list. */
  countFrom(from: number): number {
    if (this.size === 0) return 0;
    const no = blockNo(from);
    const bl = this.blocks;
    const i = this.blockIdx(no);
    if (i >= bl.length) return 0;
    const b = bl[i];
    const below = b.no === no ? b.lowerBound(from) - b.head : 0; // entries of block i below from
    if (i - this.bh < bl.length - i) {
      let n = below;
      for (let k = this.bh; k < i; k++) n += bl[k].count;
      return this.size - n;
    }
    let n = -below;
    for (let k = i; k < bl.length; k++) n += bl[k].count;
    return n;
  }

  /** The live entry with the given 0-based rank in sequence order. */
  nth(rank: number): E | undefined {
    if (rank < 0 || rank >= this.size) return undefined;
    const bl = this.blocks;
    if (rank < this.size / 2) {
      for (let k = this.bh; k < bl.length; k++) {
        const c = bl[k].count;
        if (rank < c) return bl[k].items[bl[k].head + rank];
        rank -= c;
      }
    } else {
      let back = this.size - 1 - rank;
      for (let k = bl.length - 1; k >= this.bh; k--) {
        const c = bl[k].count;
        if (back < c) return bl[k].items[bl[k].items.length - 1 - back];
        back -= c;
      }
    }
    return undefined;
  }

  /** Removes every entry with seq < floor, oldest first, calling removed for each; returns how many. */
  removeBelow(floor: number, removed: (e: E) => void): number {
    let n = 0;
    while (this.size > 0) {
      const b = this.blocks[this.bh];
      if (b.no * SPAN >= floor) break;
      const items = b.items;
      while (b.head < items.length && items[b.head].seq < floor) {
        const e = items[b.head];
        items[b.head] = undefined as unknown as E;
        b.head++;
        this.size--;
        n++;
        removed(e);
      }
      if (b.head < items.length) break;
      this.dropBlock(this.bh);
    }
    return n;
  }

  /** Blocks in use (each holds at least one live entry). */
  get blockCount(): number {
    return this.blocks.length - this.bh;
  }

  clear(): void {
    this.blocks = [];
    this.bh = 0;
    this.size = 0;
  }
}

/** What the shared index keeps per live message; stores extend it with where the payload lives. */
export interface IndexEntry {
  readonly seq: number;
  readonly subj: SubjectState;
  readonly time: number;
  /** Size as counted in StoreState.bytes. */
  readonly size: number;
}

/**
 * MessageStore queries, removal and purge over a SeqIndex plus per-subject lists. Filters are
 * assumed pure: a filter's answer for a subject is memoised while the same function is used.
 */
export abstract class IndexedStore<E extends IndexEntry> implements MessageStore {
  protected readonly index = new SeqIndex<E>();
  protected readonly subjects = new Map<string, SubjectState>();
  protected lastSeq = 0;
  protected lastTime = 0;
  protected totalBytes = 0;

  abstract append(subject: string, header: Buffer | null, data: Buffer, time: number): number;
  abstract sizeOf(subject: string, header: Buffer | null, data: Buffer): number;
  abstract flush(): void;
  abstract close(): void;
  abstract destroy(): void;
  /** Materialises a live entry. */
  protected abstract load(e: E): StoredMessage;
  /** An entry left the index; bulk means it went in a purge below a floor that onFloor reports next. */
  protected abstract onRemoved(e: E, bulk: boolean): void;
  /** Every sequence below floor was just purged. */
  protected abstract onFloor(floor: number): void;

  protected subjectState(subject: string): SubjectState {
    let st = this.subjects.get(subject);
    if (st === undefined) {
      st = new SubjectState(subject);
      this.subjects.set(subject, st);
    }
    return st;
  }

  /** Adds an entry whose sequence is above every indexed one. */
  protected insert(e: E): void {
    e.subj.seqs.push(e.seq);
    this.index.add(e);
    this.totalBytes += e.size;
    if (e.seq > this.lastSeq) this.lastSeq = e.seq;
    this.lastTime = e.time;
  }

  private unlinkSubject(e: E): void {
    const st = e.subj;
    const seqs = st.seqs;
    const seq = e.seq;
    if (seqs[st.head] === seq) {
      seqs[st.head] = 0;
      st.head++;
    } else if (seqs[seqs.length - 1] === seq) {
      seqs.pop();
    } else {
      const i = st.lowerBound(seq);
      if (seqs[i] === seq) seqs.splice(i, 1);
    }
    if (st.head >= seqs.length) {
      if (this.subjects.get(st.subject) === st) this.subjects.delete(st.subject);
      st.seqs = [];
      st.head = 0;
    } else if (st.head >= 32 && st.head * 2 >= seqs.length) {
      st.seqs = seqs.slice(st.head);
      st.head = 0;
    }
  }

  /** Removes one live message; false if it is not there. */
  protected removeSeq(seq: number): boolean {
    const e = this.index.delete(seq);
    if (e === undefined) return false;
    this.unlinkSubject(e);
    this.totalBytes -= e.size;
    this.onRemoved(e, false);
    return true;
  }

  /** Removes every live message below floor. */
  protected purgeBelow(floor: number): number {
    const n = this.index.removeBelow(floor, (e) => {
      this.unlinkSubject(e);
      this.totalBytes -= e.size;
      this.onRemoved(e, true);
    });
    this.onFloor(floor);
    return n;
  }

  get(seq: number): StoredMessage | null {
    if (seq < 1 || seq > this.lastSeq) return null;
    const e = this.index.get(seq);
    return e === undefined ? null : this.load(e);
  }

  subjectOf(seq: number): string | null {
    if (seq < 1 || seq > this.lastSeq) return null;
    const e = this.index.get(seq);
    return e === undefined ? null : e.subj.subject;
  }

  lastOnSubject(subject: string): StoredMessage | null {
    const st = this.subjects.get(subject);
    if (st === undefined) return null;
    const e = this.index.get(st.last);
    return e === undefined ? null : this.load(e);
  }

  next(from: number, filter: SubjectFilter): StoredMessage | null {
    const e = this.nextEntry(from < 1 ? 1 : from, filter);
    return e === undefined ? null : this.load(e);
  }

  protected nextEntry(from: number, filter: SubjectFilter): E | undefined {
    if (from > this.lastSeq || this.index.size === 0) return undefined;
    if (filter === null) return this.index.scan(from, null);
    if (filter.literal !== undefined) {
      const st = this.subjects.get(filter.literal);
      if (st === undefined) return undefined;
      const i = st.lowerBound(from);
      return i < st.seqs.length ? this.index.get(st.seqs[i]) : undefined;
    }
    // Walk entries in order; if matches are rare and there are few subjects, ask the subjects instead.
    let budget = SCAN_BUDGET;
    const state = { gaveUp: false, resume: from };
    const manySubjects = this.subjects.size * 4 >= this.index.size;
    const found = this.index.scan(from, (e) => {
      if (passes(e.subj, filter)) return true;
      if (--budget === 0 && !manySubjects) {
        state.gaveUp = true;
        state.resume = e.seq + 1;
        return true;
      }
      return false;
    });
    if (!state.gaveUp) return found;
    let best = Infinity;
    const at = state.resume;
    for (const st of this.subjects.values()) {
      if (st.last < at || st.first >= best || !passes(st, filter)) continue;
      const s = st.seqs[st.lowerBound(at)];
      if (s < best) best = s;
    }
    return best === Infinity ? undefined : this.index.get(best);
  }

  seqsSince(time: number): number[] {
    // Appends are in time order, so binary-search the first live entry at or after `time` by rank.
    let lo = 0;
    let hi = this.index.size;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.index.nth(mid) as E).time < time) lo = mid + 1;
      else hi = mid;
    }
    const out: number[] = [];
    for (let rank = lo; rank < this.index.size; rank++) out.push((this.index.nth(rank) as E).seq);
    return out;
  }

  countOnSubject(subject: string): number {
    return this.subjects.get(subject)?.count ?? 0;
  }

  firstSeqOnSubject(subject: string): number {
    return this.subjects.get(subject)?.first ?? 0;
  }

  subjectCounts(filter: SubjectFilter): [string, number][] {
    if (filter !== null && filter.literal !== undefined) {
      const st = this.subjects.get(filter.literal);
      return st === undefined || st.count === 0 ? [] : [[st.subject, st.count]];
    }
    const out: [string, number][] = [];
    for (const st of this.subjects.values()) {
      if (st.count > 0 && (filter === null || passes(st, filter))) out.push([st.subject, st.count]);
    }
    return out;
  }

  lastSeqsPerSubject(filter: SubjectFilter): number[] {
    if (filter !== null && filter.literal !== undefined) {
      const st = this.subjects.get(filter.literal);
      return st === undefined ? [] : [st.last];
    }
    const out: number[] = [];
    for (const st of this.subjects.values()) {
      if (filter === null || passes(st, filter)) out.push(st.last);
    }
    return out.sort((a, b) => a - b);
  }

  countFrom(from: number, filter: SubjectFilter): number {
    if (from < 1) from = 1;
    const size = this.index.size;
    if (size === 0 || from > this.lastSeq) return 0;
    const fromStart = from <= (this.index.first() as E).seq;
    if (filter === null) return fromStart ? size : this.index.countFrom(from);
    if (filter.literal !== undefined) {
      const st = this.subjects.get(filter.literal);
      return st === undefined ? 0 : st.seqs.length - st.lowerBound(from);
    }
    let n = 0;
    if (fromStart) {
      for (const st of this.subjects.values()) if (passes(st, filter)) n += st.count;
      return n;
    }
    const after = this.index.countFrom(from);
    if (after <= this.subjects.size) {
      this.index.scan(from, (e) => {
        if (passes(e.subj, filter)) n++;
        return false;
      });
      return n;
    }
    for (const st of this.subjects.values()) {
      if (st.last >= from && passes(st, filter)) n += st.seqs.length - st.lowerBound(from);
    }
    return n;
  }

  remove(seq: number): boolean {
    if (seq < 1 || seq > this.lastSeq) return false;
    return this.removeSeq(seq);
  }

  purge(request: PurgeRequest): number {
    const { filter } = request;
    const keep = request.keep > 0 ? request.keep : 0;
    const before = request.beforeSeq > 0 ? request.beforeSeq : Infinity;
    const size = this.index.size;
    if (size === 0) return 0;

    if (filter === null) {
      // The candidates are a prefix of the live messages: purge below a floor.
      const candidates = before === Infinity ? size : size - this.index.countFrom(before);
      const n = candidates - keep;
      if (n <= 0) return 0;
      const floor = n < size ? (this.index.nth(n) as E).seq : this.lastSeq + 1;
      return this.purgeBelow(floor);
    }

    let seqs: number[];
    if (filter.literal !== undefined) {
      const st = this.subjects.get(filter.literal);
      if (st === undefined) return 0;
      const end = before === Infinity ? st.seqs.length : st.lowerBound(before);
      const n = end - st.head - keep;
      if (n <= 0) return 0;
      seqs = st.seqs.slice(st.head, st.head + n);
    } else {
      seqs = [];
      for (const st of this.subjects.values()) {
        if (!passes(st, filter)) continue;
        const end = before === Infinity ? st.seqs.length : st.lowerBound(before);
        for (let i = st.head; i < end; i++) seqs.push(st.seqs[i]);
      }
      if (keep > 0) {
        if (seqs.length <= keep) return 0;
        seqs.sort((a, b) => a - b);
        seqs.length -= keep;
      }
    }
    if (seqs.length === size) return this.purgeBelow(this.lastSeq + 1);
    for (const seq of seqs) this.removeSeq(seq);
    return seqs.length;
  }

  state(): StoreState {
    const messages = this.index.size;
    const first = this.index.first();
    const firstSeq = first === undefined ? this.lastSeq + 1 : first.seq;
    return {
      messages,
      bytes: this.totalBytes,
      firstSeq,
      firstTime: first === undefined ? 0 : first.time,
      lastSeq: this.lastSeq,
      lastTime: this.lastTime,
      numSubjects: this.subjects.size,
      numDeleted: messages === 0 ? 0 : this.lastSeq - firstSeq + 1 - messages,
    };
  }
}
