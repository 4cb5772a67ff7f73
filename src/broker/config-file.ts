// nats-server's configuration syntax (HOCON-like), parsed into a tree that remembers line numbers:
// `key: value`, `key = value` or `key value`; `{}` maps and `[]` lists; `#` and `//` comments; quoted
// and unquoted strings; numbers with size suffixes (1MB, 64k); booleans (true/false/yes/no/on/off);
// `include "file"` (relative to the including file); `$VAR` references to an earlier key in an
// enclosing block, else to an environment variable.

import fs from "node:fs";
import path from "node:path";

export type ConfValue =
  | { kind: "string"; value: string; line: number }
  | { kind: "number"; value: number; line: number; raw: string }
  | { kind: "bool"; value: boolean; line: number }
  | { kind: "list"; value: ConfValue[]; line: number }
  | { kind: "map"; value: ConfMap; line: number };

/** A map's entries: the key's line is the value's line. Later duplicates replace earlier ones. */
export type ConfMap = Map<string, ConfValue>;

export class ConfigError extends Error {}

const SIZE_SUFFIXES: Record<string, number> = {
  k: 1e3, kb: 1024, ki: 1024, kib: 1024,
  m: 1e6, mb: 1024 ** 2, mi: 1024 ** 2, mib: 1024 ** 2,
  g: 1e9, gb: 1024 ** 3, gi: 1024 ** 3, gib: 1024 ** 3,
  t: 1e12, tb: 1024 ** 4, ti: 1024 ** 4, tib: 1024 ** 4,
};
const BOOLEANS: Record<string, boolean> = { true: true, yes: true, on: true, false: false, no: false, off: false };
/** Characters that end an unquoted key or value. */
const KEY_END = /[\s:=,;{}[\]#"']/;
const VALUE_END = /[\r\n,;}\]#]/;
/** Blocks, lists and includes nested deeper than this are refused (instead of overflowing the stack). */
const MAX_DEPTH = 64;

/** Parses a config file; includes are read relative to its directory. */
export function parseConfigFile(file: string, env: NodeJS.ProcessEnv = process.env): ConfMap {
  return parseConfig(readText(file, file), file, env);
}

export function parseConfig(text: string, file = "<config>", env: NodeJS.ProcessEnv = process.env): ConfMap {
  return new ConfigParser(text, file, env, [], [path.resolve(file)]).parseDocument();
}

function readText(file: string, from: string): string {
  try {
    return fs.readFileSync(file, "utf8");
  } catch (err) {
    throw new ConfigError(`${from}: cannot read config file ${file}: ${(err as Error).message}`);
  }
}

class ConfigParser {
  private pos = 0;
  private line = 1;

  constructor(
    private readonly text: string,
    private readonly file: string,
    private readonly env: NodeJS.ProcessEnv,
    /** Enclosing maps, innermost last, where `$VAR` looks first. */
    private readonly scopes: ConfMap[],
    /** The files being read, the including ones first: an include of one of them is a loop. */
    private readonly includes: string[],
  ) {}

  /** Blocks and lists open around the current position, counted across includes. */
  private get depth(): number {
    return this.scopes.length + this.openLists;
  }

  private openLists = 0;

  parseDocument(): ConfMap {
    const map: ConfMap = new Map();
    this.parseEntries(map, null);
    return map;
  }

  private fail(message: string, line = this.line): never {
    throw new ConfigError(`${this.file}:${line}: ${message}`);
  }

  private peek(offset = 0): string {
    return this.text[this.pos + offset] ?? "";
  }

  private advance(): string {
    const c = this.text[this.pos++];
    if (c === "\n") this.line++;
    return c;
  }

  /** Skips blanks, newlines, comments and, between entries, the `,`/`;` separators. */
  private skip(separators: boolean): void {
    for (;;) {
      const c = this.peek();
      if (c === " " || c === "\t" || c === "\r" || c === "\n" || (separators && (c === "," || c === ";"))) this.advance();
      else if (c === "#" || (c === "/" && this.peek(1) === "/")) while (this.pos < this.text.length && this.peek() !== "\n") this.advance();
      else return;
    }
  }

  private parseEntries(map: ConfMap, close: "}" | null): void {
    if (this.depth >= MAX_DEPTH) this.fail(`blocks nested deeper than ${MAX_DEPTH}`);
    this.scopes.push(map);
    for (;;) {
      this.skip(true);
      if (this.pos >= this.text.length) {
        if (close !== null) this.fail(`unexpected end of file, expected '${close}'`);
        break;
      }
      if (this.peek() === close) {
        this.advance();
        break;
      }
      const line = this.line;
      const key = this.parseKey();
      if (key === "include" && this.atIncludeTarget()) {
        this.include(map);
        continue;
      }
      this.skipInline();
      if (this.peek() === ":" || this.peek() === "=") {
        this.advance();
        this.skipInline();
      }
      if (this.pos >= this.text.length || this.peek() === "\n" || this.peek() === "}") this.fail(`key "${key}" has no value`, line);
      map.set(key, this.parseValue());
    }
    this.scopes.pop();
  }

  private skipInline(): void {
    while (this.peek() === " " || this.peek() === "\t") this.advance();
  }

  private parseKey(): string {
    const c = this.peek();
    if (c === '"' || c === "'") return this.parseQuoted();
    const start = this.pos;
    while (this.pos < this.text.length && !KEY_END.test(this.peek())) this.advance();
    if (this.pos === start) this.fail(`unexpected '${c}'`);
    return this.text.slice(start, this.pos);
  }

  /** `include` is a directive only when a file name follows on the same line (not `include: x`). */
  private atIncludeTarget(): boolean {
    const rest = /^[ \t]+(["']?)[^\s:=]/.exec(this.text.slice(this.pos, this.pos + 512));
    return rest !== null;
  }

  private include(map: ConfMap): void {
    this.skipInline();
    const line = this.line;
    const c = this.peek();
    const target = c === '"' || c === "'" ? this.parseQuoted() : this.parseUnquoted();
    const file = path.resolve(path.dirname(this.file), target);
    if (!fs.existsSync(file)) this.fail(`include file ${JSON.stringify(target)} not found`, line);
    if (this.includes.includes(file)) this.fail(`include loop: ${JSON.stringify(target)} is already being read`, line);
    const included = new ConfigParser(readText(file, `${this.file}:${line}`), file, this.env, [...this.scopes], [...this.includes, file]);
    included.openLists = this.openLists;
    for (const [k, v] of included.parseDocument()) map.set(k, v);
  }

  private parseValue(): ConfValue {
    const line = this.line;
    const c = this.peek();
    if (c === "{") {
      this.advance();
      const map: ConfMap = new Map();
      this.parseEntries(map, "}");
      return { kind: "map", value: map, line };
    }
    if (c === "[") {
      this.advance();
      return { kind: "list", value: this.parseList(), line };
    }
    if (c === '"' || c === "'") return { kind: "string", value: this.parseQuoted(), line };
    const raw = this.parseUnquoted();
    if (raw.startsWith("$")) return this.lookup(raw.slice(1), line);
    return scalar(raw, line);
  }

  private parseList(): ConfValue[] {
    if (this.depth >= MAX_DEPTH) this.fail(`blocks nested deeper than ${MAX_DEPTH}`);
    this.openLists++;
    const items: ConfValue[] = [];
    for (;;) {
      this.skip(true);
      if (this.pos >= this.text.length) this.fail("unexpected end of file, expected ']'");
      if (this.peek() === "]") {
        this.advance();
        this.openLists--;
        return items;
      }
      items.push(this.parseValue());
    }
  }

  private parseUnquoted(): string {
    const start = this.pos;
    while (this.pos < this.text.length && !VALUE_END.test(this.peek()) && !(this.peek() === "/" && this.peek(1) === "/")) this.advance();
    const raw = this.text.slice(start, this.pos).trim();
    if (raw === "") this.fail(`unexpected '${this.peek()}'`);
    return raw;
  }

  private parseQuoted(): string {
    const quote = this.advance();
    const line = this.line;
    let out = "";
    for (;;) {
      if (this.pos >= this.text.length || this.peek() === "\n") this.fail("unterminated string", line);
      const c = this.advance();
      if (c === quote) return out;
      if (c !== "\\" || quote === "'") {
        out += c;
        continue;
      }
      const e = this.advance();
      if (e === "t") out += "\t";
      else if (e === "n") out += "\n";
      else if (e === "r") out += "\r";
      else if (e === '"' || e === "\\") out += e;
      else if (e === "u") {
        const hex = this.text.slice(this.pos, this.pos + 4);
        if (!/^[0-9a-fA-F]{4}$/.test(hex)) this.fail("invalid \\u escape");
        this.pos += 4;
        out += String.fromCharCode(parseInt(hex, 16));
      } else this.fail(`invalid escape '\\${e}'`);
    }
  }

  /** `$NAME`: the nearest enclosing block's key, else the environment. */
  private lookup(name: string, line: number): ConfValue {
    for (let i = this.scopes.length - 1; i >= 0; i--) {
      const v = this.scopes[i].get(name);
      if (v !== undefined) return v;
    }
    const fromEnv = this.env[name];
    if (fromEnv === undefined) this.fail(`variable reference for "${name}" can not be found`, line);
    return scalar(fromEnv, line);
  }
}

/** An unquoted value: a boolean, a number (with an optional size suffix) or a string. */
function scalar(raw: string, line: number): ConfValue {
  const lower = raw.toLowerCase();
  if (lower in BOOLEANS) return { kind: "bool", value: BOOLEANS[lower], line };
  const m = /^(-?\d+(?:\.\d+)?)\s*([a-zA-Z]*)$/.exec(raw);
  if (m !== null) {
    const suffix = m[2].toLowerCase();
    if (suffix === "") return { kind: "number", value: Number(m[1]), line, raw };
    const factor = SIZE_SUFFIXES[suffix];
    if (factor !== undefined) return { kind: "number", value: Number(m[1]) * factor, line, raw };
  }
  return { kind: "string", value: raw, line };
}
