// A container's stdout or stderr as log lines: bytes in (from the demultiplexed attach stream), one
// callback per line out. A partial last line is flushed when the stream ends, and an endless line is cut
// at MAX_LINE_CHARS so one runaway writer cannot grow the node's memory.

import { Writable } from "node:stream";
import { StringDecoder } from "node:string_decoder";

const MAX_LINE_CHARS = 16 * 1024;

export function lineWriter(onLine: (line: string) => void): Writable {
  const decoder = new StringDecoder("utf8");
  let pending = "";
  const take = (text: string): void => {
    pending += text;
    let newline: number;
    while ((newline = pending.indexOf("\n")) >= 0) {
      onLine(pending.slice(0, newline).replace(/\r$/, ""));
      pending = pending.slice(newline + 1);
    }
    while (pending.length > MAX_LINE_CHARS) {
      onLine(pending.slice(0, MAX_LINE_CHARS));
      pending = pending.slice(MAX_LINE_CHARS);
    }
  };
  return new Writable({
    write(chunk: Buffer, _encoding, done) {
      take(decoder.write(chunk));
      done();
    },
    final(done) {
      take(decoder.end());
      if (pending.length > 0) onLine(pending);
      pending = "";
      done();
    },
  });
}
