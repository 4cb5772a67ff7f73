// Subject mapping for stream republish, as nats-server 2.9 maps a source subject (with wildcards) to a
// destination. A destination token is literal text, `$N`, or a mapping function in `{{...}}`:
// wildcard(N), partition(count, N...), splitFromLeft/splitFromRight(N, position),
// sliceFromLeft/sliceFromRight(N, size) and split(N, delimiter), N counting the source's `*` from 1.
// A trailing `>` of the source carries over to a trailing `>` of the destination.

/** Maps one or more source tokens to the text of one (or, after a split, several) destination tokens. */
type TokenMapper = (tokens: string[]) => string;

/** Function names match with their first letter and inner capitals in either case, as in nats-server. */
function functionPattern(name: string): RegExp {
  const letters = name.replace(/^(.)|([A-Z])/g, (c) => `[${c.toLowerCase()}${c.toUpperCase()}]`);
  return new RegExp(`^\\{\\{\\s*${letters}\\s*\\((.*)\\)\\s*\\}\\}$`);
}

const FUNCTIONS = {
  wildcard: functionPattern("wildcard"),
  partition: functionPattern("partition"),
  splitFromLeft: functionPattern("splitFromLeft"),
  splitFromRight: functionPattern("splitFromRight"),
  sliceFromLeft: functionPattern("sliceFromLeft"),
  sliceFromRight: functionPattern("sliceFromRight"),
  split: functionPattern("split"),
};

/** A whole number as Go's strconv.Atoi reads it (spaces around it trimmed), or null. */
function integer(text: string): number | null {
  const trimmed = text.replace(/^ +| +$/g, "");
  return /^[+-]?\d{1,15}$/.test(trimmed) ? Number(trimmed) : null;
}

/**
 * The 32-bit FNV-1a hash of a subject's bytes (nats-server's partition hash). The broker holds subjects
 * as latin1 strings, one character per byte, so cutting and hashing them works on bytes as in Go.
 */
function fnv1a32(text: string): number {
  let hash = 0x811c9dc5;
  for (const byte of Buffer.from(text, "latin1")) hash = Math.imul(hash ^ byte, 0x01000193) >>> 0;
  return hash;
}

/** Cuts text into pieces of `size`, the short piece at the end (fromLeft) or at the start. */
function slices(text: string, size: number, fromLeft: boolean): string[] {
  const pieces: string[] = [];
  let end = fromLeft ? 0 : text.length % size;
  if (end > 0) pieces.push(text.slice(0, end));
  for (; end < text.length; end += size) pieces.push(text.slice(end, end + size));
  return pieces;
}

export class SubjectTransform {
  private constructor(
    private readonly source: string[],
    private readonly dest: TokenMapper[],
    private readonly fullWildcard: boolean,
  ) {}

  /** The transform from `src` to `dest`, or null when nats-server would refuse the pair. */
  static parse(src: string, dest: string): SubjectTransform | null {
    const source = src.split(".");
    const destTokens = dest.split(".");
    const valid = (tokens: string[]) => tokens.every((t, i) => t !== "" && (t !== ">" || i === tokens.length - 1));
    if (!valid(source) || !valid(destTokens) || destTokens.includes("*")) return null;
    const fullWildcard = source[source.length - 1] === ">";
    if (fullWildcard !== (destTokens[destTokens.length - 1] === ">")) return null;
    // The N-th `*` of the source (from 1) is this source token; nats-server reads N <= 0 as the first token.
    const wildcardPositions = source.flatMap((t, i) => (t === "*" ? [i] : []));
    const position = (n: number): number | null => (n > wildcardPositions.length ? null : n >= 1 ? wildcardPositions[n - 1] : 0);
    const mappers: TokenMapper[] = [];
    let functions = 0;
    for (const token of fullWildcard ? destTokens.slice(0, -1) : destTokens) {
      const mapper = SubjectTransform.mapper(token, position);
      if (mapper === null) return null;
      if (typeof mapper === "string") {
        mappers.push(() => mapper);
      } else {
        mappers.push(mapper);
        functions++;
      }
    }
    // nats-server 2.9 wants at least as many mapped tokens as the source has wildcards, and none without.
    if (functions < wildcardPositions.length || (wildcardPositions.length === 0 && functions > 0)) return null;
    return new SubjectTransform(source, mappers, fullWildcard);
  }

  /** One destination token: literal text, a mapper, or null when it is a malformed mapping. */
  private static mapper(token: string, position: (n: number) => number | null): string | TokenMapper | null {
    const dollar = /^\$([+-]?\d+)$/.exec(token);
    if (dollar) {
      const at = position(Number(dollar[1]));
      return at === null ? null : (tokens) => tokens[at];
    }
    if (!(token.length > 4 && token.startsWith("{{") && token.endsWith("}}"))) return token;
    const argsOf = (pattern: RegExp): string[] | null => {
      const match = pattern.exec(token);
      return match ? match[1].split(/,\s*/) : null;
    };
    let args = argsOf(FUNCTIONS.wildcard);
    if (args) {
      const n = args.length === 1 ? integer(args[0]) : null;
      const at = n === null ? null : position(n);
      return at === null ? null : (tokens) => tokens[at];
    }
    args = argsOf(FUNCTIONS.partition);
    if (args) {
      const count = integer(args[0]);
      const positions = args.slice(1).map((a) => {
        const n = integer(a);
        return n === null ? null : position(n);
      });
      // A count of 0 would make nats-server divide by zero; it is refused here instead.
      if (args.length < 2 || count === null || count <= 0 || positions.some((p) => p === null)) return null;
      return (tokens) => String(fnv1a32(positions.map((p) => tokens[p as number]).join("")) % count);
    }
    for (const [name, cut] of [
      ["splitFromLeft", (t: string, n: number) => [t.slice(0, n), t.slice(n)]],
      ["splitFromRight", (t: string, n: number) => [t.slice(0, t.length - n), t.slice(t.length - n)]],
      ["sliceFromLeft", (t: string, n: number) => slices(t, n, true)],
      ["sliceFromRight", (t: string, n: number) => slices(t, n, false)],
    ] as const) {
      args = argsOf(FUNCTIONS[name]);
      if (!args) continue;
      const n = args.length === 2 ? integer(args[0]) : null;
      const size = args.length === 2 ? integer(args[1]) : null;
      const at = n === null ? null : position(n);
      if (at === null || size === null) return null;
      // A token too short to cut (or a size out of range) stays whole.
      return (tokens) => (size > 0 && size < tokens[at].length ? cut(tokens[at], size).join(".") : tokens[at]);
    }
    args = argsOf(FUNCTIONS.split);
    if (args) {
      const n = args.length === 2 ? integer(args[0]) : null;
      const at = n === null ? null : position(n);
      const delimiter = args[1];
      if (at === null || delimiter.includes(" ") || delimiter.includes(".")) return null;
      return (tokens) => tokens[at].split(delimiter).filter((part) => part !== "").join(".");
    }
    return null; // an unknown function
  }

  /** The destination for a subject, or null when the subject does not match the source. */
  apply(subject: string): string | null {
    const tokens = subject.split(".");
    const fixed = this.fullWildcard ? this.source.length - 1 : this.source.length;
    if (this.fullWildcard ? tokens.length <= fixed : tokens.length !== fixed) return null;
    for (let i = 0; i < fixed; i++) {
      if (this.source[i] !== "*" && this.source[i] !== tokens[i]) return null;
    }
    const out = this.dest.map((map) => map(tokens));
    if (this.fullWildcard) out.push(...tokens.slice(fixed));
    return out.join(".");
  }
}
