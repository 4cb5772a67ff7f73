// Reading a wasm binary before running it: which form it is (core module or component, from the
// header's version and layer bytes) and capping the linear memories a core module defines at the
// workload's memory limit. The cap is written into the module's memory section as its maximum, so a
// guest growing past the limit sees memory.grow fail (and usually traps) instead of taking the node's
// memory: linear memory is not V8 heap, so a worker's resourceLimits would not catch it.

export type WasmForm = "module" | "component";

export class WasmFormatError extends Error {}

const MAGIC = [0x00, 0x61, 0x73, 0x6d];
export const WASM_PAGE_BYTES = 64 * 1024;
const MEMORY_SECTION = 5;

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

function readU32(bytes: Uint8Array, at: number): { value: number; next: number } {
  let value = 0;
  let shift = 0;
  for (let i = at; i < bytes.byteLength && shift < 35; i++, shift += 7) {
    const b = bytes[i];
    value += (b & 0x7f) * 2 ** shift;
    if ((b & 0x80) === 0) return { value, next: i + 1 };
  }
  throw new WasmFormatError("truncated or malformed WebAssembly binary");
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

/** Pages of 64 KiB in `mb` MiB. */
export function pagesFor(mb: number): number {
  return Math.floor((mb * 1024 * 1024) / WASM_PAGE_BYTES);
}

/**
 * A copy of a core module whose defined memories have a maximum of at most `maxPages`. Throws a
 * WasmFormatError when a memory starts above the cap, or is shared or 64-bit (not supported here).
 * Imported memories are the defining module's business (in a component, jco's other core modules).
 */
export function capMemory(bytes: Uint8Array, maxPages: number): Uint8Array {
  let at = 8;
  let changed = false;
  const parts: Uint8Array[] = [bytes.subarray(0, 8)];
  while (at < bytes.byteLength) {
    const id = bytes[at];
    const size = readU32(bytes, at + 1);
    const end = size.next + size.value;
    if (end > bytes.byteLength) throw new WasmFormatError("truncated WebAssembly binary");
    if (id !== MEMORY_SECTION) {
      parts.push(bytes.subarray(at, end));
      at = end;
      continue;
    }
    const count = readU32(bytes, size.next);
    const body = [...writeU32(count.value)];
    let p = count.next;
    for (let i = 0; i < count.value; i++) {
      const flags = bytes[p++];
      if (flags & 0x02) throw new WasmFormatError("shared memories are not supported");
      if (flags & 0x04) throw new WasmFormatError("64-bit memories are not supported");
      const min = readU32(bytes, p);
      p = min.next;
      let max = Infinity;
      if (flags & 0x01) {
        const m = readU32(bytes, p);
        p = m.next;
        max = m.value;
      }
      if (min.value > maxPages) {
        throw new WasmFormatError(
          `the module starts with ${(min.value * WASM_PAGE_BYTES) / 1048576} MiB of linear memory, over the workload's ${(maxPages * WASM_PAGE_BYTES) / 1048576} MiB limit`,
        );
      }
      body.push(0x01, ...writeU32(min.value), ...writeU32(Math.min(max, maxPages)));
    }
    if (p !== end) throw new WasmFormatError("malformed memory section");
    parts.push(Uint8Array.from([MEMORY_SECTION, ...writeU32(body.length), ...body]));
    changed = true;
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
