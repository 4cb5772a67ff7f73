// Subject mapping for stream republish, as nats-server 2.9 maps a source subject (with wildcards) to a
// destination: `$N` or `{{wildcard(N)}}` stands for the N-th `*` of the source, and a trailing `>` of the
// source carries over to a trailing `>` of the destination. The split/slice/partition functions of
// nats-server are not supported: a destination using them is refused as invalid.

import { isValidSubscriptionSubject } from "../subject.js";

/** A destination token: literal text, or the index (0-based) of a source `*` whose token it takes. */
type DestToken = string | number;

const WILDCARD_FUNCTION = /^\{\{\s*wildcard\s*\(\s*(\d+)\s*\)\s*\}\}$/i;
const DOLLAR_PLACEHOLDER = /^\$(\d+)$/;

export class SubjectTransform {
  private constructor(
    private readonly source: string[],
    private readonly dest: DestToken[],
    private readonly fullWildcard: boolean,
  ) {}

  /** The transform from `src` to `dest`, or null when nats-server would refuse the pair. */
  static parse(src: string, dest: string): SubjectTransform | null {
    if (!isValidSubscriptionSubject(src) || dest === "") return null;
    const source = src.split(".");
    const destTokens = dest.split(".");
    const fullWildcard = source[source.length - 1] === ">";
    if (fullWildcard !== (destTokens[destTokens.length - 1] === ">")) return null;
    const wildcards = source.filter((t) => t === "*").length;
    const mapped: DestToken[] = [];
    let placeholders = 0;
    for (const [i, token] of destTokens.entries()) {
      if (token === "") return null;
      if (token === ">") {
        if (i !== destTokens.length - 1) return null;
        continue; // the source's trailing tokens go here
      }
      if (token === "*") return null;
      const placeholder = DOLLAR_PLACEHOLDER.exec(token) ?? WILDCARD_FUNCTION.exec(token);
      if (placeholder) {
        const n = Number(placeholder[1]);
        if (n < 1 || n > wildcards) return null;
        mapped.push(n - 1);
        placeholders++;
      } else if (token.includes("{{") || /\s/.test(token)) {
        return null; // a mapping function this broker does not implement, or garbage
      } else {
        mapped.push(token);
      }
    }
    // nats-server wants every source wildcard to have a place in the destination.
    if (placeholders < wildcards) return null;
    return new SubjectTransform(source, mapped, fullWildcard);
  }

  /** The destination for a subject, or null when the subject does not match the source. */
  apply(subject: string): string | null {
    const tokens = subject.split(".");
    const fixed = this.fullWildcard ? this.source.length - 1 : this.source.length;
    if (this.fullWildcard ? tokens.length <= fixed : tokens.length !== fixed) return null;
    const captured: string[] = [];
    for (let i = 0; i < fixed; i++) {
      const pattern = this.source[i];
      if (pattern === "*") captured.push(tokens[i]);
      else if (pattern !== tokens[i]) return null;
    }
    const out = this.dest.map((t) => (typeof t === "number" ? captured[t] : t));
    if (this.fullWildcard) out.push(...tokens.slice(fixed));
    return out.join(".");
  }
}
