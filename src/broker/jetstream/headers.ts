// NATS header blocks (`NATS/1.0[ code description]\r\nKey: value\r\n...\r\n\r\n`), read and written.
// Keys are case-sensitive, as nats-server reads them.

const CRLF = "\r\n";

/** Header lookups over one block; the block is decoded once however many keys are asked for. */
export class HeaderReader {
  private readonly text: string;

  constructor(block: Buffer | null) {
    this.text = block === null ? "" : block.toString("latin1");
  }

  /** The first value of a header, or undefined. */
  get(key: string): string | undefined {
    if (this.text === "") return undefined;
    const needle = `\r\n${key}:`;
    const at = this.text.indexOf(needle);
    if (at < 0) return undefined;
    const start = at + needle.length;
    const end = this.text.indexOf(CRLF, start);
    return this.text.slice(start, end < 0 ? undefined : end).trim();
  }
}

/** Builds a header block with an optional status line code/description. */
export function buildHeaders(entries: [string, string][], status?: string): Buffer {
  let text = status ? `NATS/1.0 ${status}\r\n` : "NATS/1.0\r\n";
  for (const [key, value] of entries) text += `${key}: ${value}\r\n`;
  return Buffer.from(text + CRLF, "latin1");
}

/** Appends headers to an existing block (or starts one), keeping the original status line and entries. */
export function appendHeaders(block: Buffer | null, entries: [string, string][]): Buffer {
  if (block === null || block.length < 4) return buildHeaders(entries);
  const text = block.toString("latin1");
  const body = text.endsWith("\r\n\r\n") ? text.slice(0, -2) : text.endsWith(CRLF) ? text : text + CRLF;
  let extra = "";
  for (const [key, value] of entries) extra += `${key}: ${value}\r\n`;
  return Buffer.from(body + extra + CRLF, "latin1");
}
