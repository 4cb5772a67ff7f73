// WebAssembly for the wasm tests: the examples (built by examples/wasm/build.mjs, which keeps fresh
// outputs, so calling it from every test file costs nothing after the first), and small broken or
// hostile guests written as WAT here: core modules through wabt, components by giving a core module a
// WIT world with jco's wasm-tools.

import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import wabt from "wabt";
import { componentEmbed, componentNew } from "@bytecodealliance/jco-transpile/wasm-tools";
import { ROOT } from "./nex-cli.js";

export const WASM_EXAMPLES = path.join(ROOT, "examples/wasm/build");

/** Builds the wasm examples if they are missing or stale; returns their folder. */
export function buildWasmExamples(): string {
  execFileSync(process.execPath, [path.join(ROOT, "examples/wasm/build.mjs")], { stdio: "inherit" });
  return WASM_EXAMPLES;
}

export function example(name: string): Uint8Array {
  return new Uint8Array(fs.readFileSync(path.join(WASM_EXAMPLES, name)));
}

let parser: Awaited<ReturnType<typeof wabt>> | undefined;

/** A core module from WAT text. */
export async function wat(text: string): Promise<Uint8Array> {
  parser ??= await wabt();
  const module = parser.parseWat("fixture.wat", text);
  try {
    return new Uint8Array(module.toBinary({}).buffer);
  } finally {
    module.destroy();
  }
}

/** A component from a core module in WAT and the WIT world it implements. */
export async function component(coreWat: string, witSource = fs.readFileSync(path.join(ROOT, "wit/nex.wit"), "utf8"), world = "function"): Promise<Uint8Array> {
  const core = await wat(coreWat);
  return componentNew(await componentEmbed({ binary: core, witSource, world }));
}

/** A WASI command whose _start is `body` (WAT instructions), with proc_exit and fd_write imported. */
export function command(body: string): Promise<Uint8Array> {
  return wat(`(module
    (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
    (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
    (memory (export "memory") 1)
    (func (export "_start") ${body}))`);
}

/**
 * A core module for wit/nex.wit's `function` world whose handle runs `body` and then returns the
 * result area at offset 16 (by default an `err("nope")`). cabi_realloc is a bump allocator reset on
 * every call, enough for guests that never read their arguments.
 */
export function handleModule(body: string): string {
  return `(module
    (memory (export "memory") 1)
    (global $next (mut i32) (i32.const 1024))
    (data (i32.const 16) "\\01\\00\\00\\00\\20\\00\\00\\00\\04\\00\\00\\00")
    (data (i32.const 32) "nope")
    (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
      (local $p i32)
      (local.set $p (global.get $next))
      (global.set $next (i32.add (global.get $next) (i32.and (i32.add (local.get 3) (i32.const 7)) (i32.const -8))))
      (local.get $p))
    (func (export "handle") (param i32 i32 i32 i32) (result i32)
      (global.set $next (i32.const 1024))
      ${body}
      (i32.const 16)))`;
}

/** Grows memory a MiB at a time until memory.grow fails. */
export const GROW_LOOP = "(loop $grow (br_if $grow (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))";
/** GROW_LOOP, then traps. */
export const GROW_UNTIL_REFUSED = `${GROW_LOOP} unreachable`;

/** Issue 12's table bomb: grows a table a million elements at a time until table.grow fails, then returns. */
export const TABLE_BOMB = `(module (memory (export "memory") 1) (table 1 funcref) (func (export "_start") (loop $l (br_if $l (i32.ne (table.grow (ref.null func) (i32.const 1000000)) (i32.const -1))))))`;

/** TABLE_BOMB that traps once table.grow is refused (so a capped table shows as an error reply). */
export const TABLE_BOMB_THEN_TRAP = TABLE_BOMB.replace("(i32.const -1))))))", "(i32.const -1)))) unreachable))");

/** A WASI command that writes `line` (newline included) to `fd` forever, or `times` times. */
export function writeLoop(fd: 1 | 2, line: string, times?: number): Promise<Uint8Array> {
  const bytes = new TextEncoder().encode(line);
  const data = Array.from(bytes, (b) => `\\${b.toString(16).padStart(2, "0")}`).join("");
  const write = `(drop (call $write (i32.const ${fd}) (i32.const 0) (i32.const 1) (i32.const 16)))`;
  const body =
    times === undefined
      ? `(loop $l ${write} (br $l))`
      : `(local $n i32) (loop $l ${write} (local.set $n (i32.add (local.get $n) (i32.const 1))) (br_if $l (i32.lt_u (local.get $n) (i32.const ${times}))))`;
  return wat(`(module
    (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
    (memory (export "memory") ${Math.ceil((64 + bytes.byteLength) / 65536)})
    (data (i32.const 0) "\\40\\00\\00\\00")
    (data (i32.const 4) "${writeU32Hex(bytes.byteLength)}")
    (data (i32.const 64) "${data}")
    (func (export "_start") ${body}))`);
}

function writeU32Hex(n: number): string {
  return [0, 8, 16, 24].map((s) => `\\${((n >>> s) & 0xff).toString(16).padStart(2, "0")}`).join("");
}

/** A WASI command that writes `bytes` bytes of "a\n" lines to `fd` in one fd_write (the buffer is filled in a loop, not a data segment). */
export function oneBigWrite(fd: 1 | 2, bytes: number): Promise<Uint8Array> {
  const pages = Math.ceil((16 + bytes) / 65536);
  return wat(`(module
    (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
    (memory (export "memory") ${pages})
    (func (export "_start") (local $i i32)
      (loop $fill
        (i32.store16 (i32.add (i32.const 16) (local.get $i)) (i32.const 0x0a61))
        (local.set $i (i32.add (local.get $i) (i32.const 2)))
        (br_if $fill (i32.lt_u (local.get $i) (i32.const ${bytes}))))
      (i32.store (i32.const 0) (i32.const 16))
      (i32.store (i32.const 4) (i32.const ${bytes}))
      (drop (call $write (i32.const ${fd}) (i32.const 0) (i32.const 1) (i32.const 8)))))`);
}
