// Reading a wasm binary before running it: which form it is (core module or component, from the
// header's version and layer bytes) and capping what a core module can grow. Linear memory and tables
// are not bounded by a worker's resourceLimits: memory lives outside the V8 heap, and a table that
// outgrows the heap ends the whole process with a V8 fatal error (WasmTableObject::Grow), not a
// catchable one. So the cap is written into the module itself: every memory and table it defines or
// imports gets a maximum of at most the workload's share, and a guest growing past it sees memory.grow
// or table.grow return -1 instead of taking the process's memory.

export type WasmForm = "module" | "component";

export class WasmFormatError extends Error {}

const MAGIC = [0x00, 0x61, 0x73, 0x6d];
export const WASM_PAGE_BYTES = 64 * 1024;
const IMPORT_SECTION = 2;
const TABLE_SECTION = 4;
const MEMORY_SECTION = 5;
const IMPORT_FUNC = 0x00;
const IMPORT_TABLE = 0x01;
const IMPORT_MEMORY = 0x02;
const IMPORT_GLOBAL = 0x03;
const IMPORT_TAG = 0x04;
const FUNCREF = 0x70;
const EXTERNREF = 0x6f;
/** What one table element may cost V8 (the slot, and for funcref the dispatch table entry), rounded up. */
const TABLE_ELEMENT_BYTES = 64;
/**
 * Elements any table may have, whatever the memory limit: also the runtime host's
 * --wasm-max-table-size, which fences tables the cap here does not see (created from JavaScript).
 */
export const MAX_TABLE_ELEMENTS = 1_000_000;

/** The form of a wasm binary, from its 8-byte header; throws a WasmFormatError for anything else. */
export function wasmForm(bytes: Uint8Array): WasmForm {
  if (bytes.byteLength < 8 || MAGIC.some((b, i) => bytes[i] !== b)) {
    throw new WasmFormatError("not a WebAssembly binary (it does not start with \\0asm)");
  }
  const version = bytes[4] | (bytes[5] << 8);
  const layer = bytes[6] | (bytes[7] << 8);
  if (layer === 0 && version === 1) return "module";
  if (layer === 1) return "component";
  throw new WasmFormatError(`unsupported WebAssembly binary: version ${version}, layer ${layer}`);
}

function writeU32(value: number): number[] {
  const out: number[] = [];
  do {
    let b = value & 0x7f;
    value = Math.floor(value / 128);
    if (value !== 0) b |= 0x80;
    out.push(b);
  } while (value !== 0);
  return out;
}

/** Reads LEB128 integers and bytes of a binary, refusing to run past `end`. */
class Reader {
  constructor(
    private readonly bytes: Uint8Array,
    public at: number,
    private readonly end: number,
  ) {}

  byte(): number {
    if (this.at >= this.end) throw new WasmFormatError("truncated or malformed WebAssembly binary");
    return this.bytes[this.at++];
  }

  u32(): number {
    let value = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      const b = this.byte();
      value += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return value;
    }
    throw new WasmFormatError("truncated or malformed WebAssembly binary");
  }

  /** Skips a length-prefixed name. */
  skipName(): void {
    const length = this.u32();
    if (this.at + length > this.end) throw new WasmFormatError("truncated WebAssembly binary");
    this.at += length;
  }

  /** The bytes from `from` to here, as numbers to copy into a rewritten section. */
  since(from: number): number[] {
    return Array.from(this.bytes.subarray(from, this.at));
  }
}

/** Pages of 64 KiB in `mb` MiB. */
export function pagesFor(mb: number): number {
  return Math.floor((mb * 1024 * 1024) / WASM_PAGE_BYTES);
}

/** Table elements a workload of `mb` MiB may have: their cost stays within a quarter of its limit. */
export function tableElementsFor(mb: number): number {
  return Math.min(MAX_TABLE_ELEMENTS, Math.floor((mb * 1024 * 1024) / 4 / TABLE_ELEMENT_BYTES));
}

export interface GrowthCaps {
  memoryPages: number;
  tableElements: number;
}

const mib = (pages: number): number => (pages * WASM_PAGE_BYTES) / 1048576;

/** A memory's limits, with the maximum capped (0x01: a maximum follows the minimum). */
function memoryLimits(r: Reader, cap: number): number[] {
  const flags = r.byte();
  if (flags & 0x02) throw new WasmFormatError("shared memories are not supported");
  if (flags & 0x04) throw new WasmFormatError("64-bit memories are not supported");
  if (flags & ~0x01) throw new WasmFormatError(`unsupported memory limits (flags ${flags})`);
  const min = r.u32();
  const max = flags & 0x01 ? r.u32() : Infinity;
  if (min > cap) {
    throw new WasmFormatError(`the module starts with ${mib(min)} MiB of linear memory, over the workload's ${mib(cap)} MiB limit`);
  }
  return [0x01, ...writeU32(min), ...writeU32(Math.min(max, cap))];
}

/** A table's type (element type and limits), with the maximum capped. */
function tableType(r: Reader, cap: number): number[] {
  const element = r.byte();
  if (element !== FUNCREF && element !== EXTERNREF) throw new WasmFormatError(`unsupported table element type 0x${element.toString(16)}`);
  const flags = r.byte();
  if (flags & ~0x01) throw new WasmFormatError(`unsupported table limits (flags ${flags})`);
  const min = r.u32();
  const max = flags & 0x01 ? r.u32() : Infinity;
  if (min > cap) throw new WasmFormatError(`the module starts with a table of ${min} elements, over the workload's limit of ${cap}`);
  return [element, 0x01, ...writeU32(min), ...writeU32(Math.min(max, cap))];
}

/** An import section whose table and memory imports declare capped maximums; the rest is copied. */
function capImports(r: Reader, caps: GrowthCaps, counts: { memories: number }): number[] {
  const count = r.u32();
  const body = writeU32(count);
  for (let i = 0; i < count; i++) {
    const start = r.at;
    r.skipName();
    r.skipName();
    const kind = r.byte();
    body.push(...r.since(start));
    if (kind === IMPORT_TABLE) body.push(...tableType(r, caps.tableElements));
    else if (kind === IMPORT_MEMORY) {
      counts.memories++;
      body.push(...memoryLimits(r, caps.memoryPages));
    } else {
      const from = r.at;
      if (kind === IMPORT_FUNC) r.u32();
      else if (kind === IMPORT_GLOBAL) {
        const type = r.byte();
        if (type === 0x63 || type === 0x64) throw new WasmFormatError("typed reference globals are not supported");
        r.byte();
      } else if (kind === IMPORT_TAG) {
        r.byte();
        r.u32();
      } else throw new WasmFormatError(`unknown import kind ${kind}`);
      body.push(...r.since(from));
    }
  }
  return body;
}

function capVector(r: Reader, entry: (r: Reader) => number[]): number[] {
  const count = r.u32();
  const body = writeU32(count);
  for (let i = 0; i < count; i++) body.push(...entry(r));
  return body;
}

/**
 * A copy of a core module whose memories and tables (defined or imported) have a maximum of at most
 * the caps. Throws a WasmFormatError when one starts above its cap, or is of a kind not supported here
 * (shared or 64-bit memory, typed-reference table).
 */
export function capGrowth(bytes: Uint8Array, caps: GrowthCaps): Uint8Array {
  let at = 8;
  let changed = false;
  const counts = { memories: 0 };
  const parts: Uint8Array[] = [bytes.subarray(0, 8)];
  while (at < bytes.byteLength) {
    const id = bytes[at];
    const size = new Reader(bytes, at + 1, bytes.byteLength);
    const length = size.u32();
    const end = size.at + length;
    if (end > bytes.byteLength) throw new WasmFormatError("truncated WebAssembly binary");
    const r = new Reader(bytes, size.at, end);
    let body: number[] | undefined;
    if (id === IMPORT_SECTION) body = capImports(r, caps, counts);
    else if (id === TABLE_SECTION) body = capVector(r, (t) => tableType(t, caps.tableElements));
    else if (id === MEMORY_SECTION) {
      body = capVector(r, (m) => {
        counts.memories++;
        return memoryLimits(m, caps.memoryPages);
      });
    }
    // Each memory is capped on its own: with multi-memory (on by default from Node 22) a module of N
    // memories would get N times the workload's limit.
    if (counts.memories > 1) throw new WasmFormatError("a module may have one linear memory (several would each get the workload's memory limit)");
    if (body === undefined) {
      parts.push(bytes.subarray(at, end));
    } else {
      if (r.at !== end) throw new WasmFormatError(`malformed section ${id}`);
      parts.push(Uint8Array.from([id, ...writeU32(body.length), ...body]));
      changed = true;
    }
    at = end;
  }
  if (!changed) return bytes;
  const total = parts.reduce((n, part) => n + part.byteLength, 0);
  const result = new Uint8Array(total);
  let offset = 0;
  for (const part of parts) {
    result.set(part, offset);
    offset += part.byteLength;
  }
  return result;
}
