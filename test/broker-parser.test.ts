import { describe, expect, it } from "vitest";
import { ParseError, ProtocolParser, type ProtocolSink, type PubFrame } from "../src/broker/parser.js";

/** Records every operation the parser reports, as text, so split and unsplit input can be compared. */
class Recorder implements ProtocolSink {
  ops: string[] = [];
  headersEnabled = true;
  onConnect(json: string): void {
    this.ops.push(`CONNECT ${json.trim()}`);
  }
  onPub(f: PubFrame): void {
    const subject = f.buf.toString("latin1", f.subjectStart, f.subjectEnd);
    const reply = f.buf.toString("latin1", f.replyStart, f.replyEnd);
    const payload = f.buf.toString("latin1", f.payloadStart, f.payloadStart + f.size);
    this.ops.push(`${f.hasHeaders ? "HPUB" : "PUB"} ${subject} [${reply}] ${f.headerSize} ${JSON.stringify(payload)}`);
  }
  onSub(subject: string, queue: string | undefined, sid: string): void {
    this.ops.push(`SUB ${subject} ${queue ?? "-"} ${sid}`);
  }
  onUnsub(sid: string, max: number): void {
    this.ops.push(`UNSUB ${sid} ${max}`);
  }
  onPing(): void {
    this.ops.push("PING");
  }
  onPong(): void {
    this.ops.push("PONG");
  }
  onParseError(error: ParseError): void {
    this.ops.push(`ERROR ${error}`);
  }
}

function parseChunks(chunks: Buffer[], maxControlLine = 4096, maxPayload = 1024 * 1024): string[] {
  const sink = new Recorder();
  const parser = new ProtocolParser(sink, maxControlLine, maxPayload);
  for (const chunk of chunks) parser.parse(chunk);
  return sink.ops;
}

const STREAM = Buffer.from(
  'CONNECT {"verbose":false,"headers":true}\r\n' +
    "SUB foo.* 1\r\nsub\tbar  q 2\r\n" +
    "PUB foo.a 5\r\nhello\r\n" +
    "pub foo.b _INBOX.x.1 0\r\n\r\n" +
    "HPUB foo.c reply 23 28\r\nNATS/1.0\r\nA: bcdefg\r\n\r\nworld\r\n" +
    "PUB bin 4\r\n\r\n\r\n\r\n" + // a payload that is itself CRLFs
    "UNSUB 2 10\nPING\r\nPONG\r\n",
  "latin1",
);

describe("ProtocolParser", () => {
  const expected = parseChunks([STREAM]);

  it("parses a mixed stream of operations", () => {
    expect(expected).toEqual([
      'CONNECT {"verbose":false,"headers":true}',
      "SUB foo.* - 1",
      "SUB bar q 2",
      'PUB foo.a [] 0 "hello"',
      'PUB foo.b [_INBOX.x.1] 0 ""',
      'HPUB foo.c [reply] 23 "NATS/1.0\\r\\nA: bcdefg\\r\\n\\r\\nworld"',
      'PUB bin [] 0 "\\r\\n\\r\\n"',
      "UNSUB 2 10",
      "PING",
      "PONG",
    ]);
  });

  it("gives the same operations for the stream split at every byte boundary", () => {
    for (let cut = 1; cut < STREAM.length; cut++) {
      expect(parseChunks([STREAM.subarray(0, cut), STREAM.subarray(cut)]), `split at ${cut}`).toEqual(expected);
    }
  });

  it("gives the same operations when fed one byte at a time", () => {
    const bytes = [...STREAM].map((b) => Buffer.from([b]));
    expect(parseChunks(bytes)).toEqual(expected);
  });

  it("reports a payload without its trailing CRLF as an unknown operation", () => {
    expect(parseChunks([Buffer.from("PUB foo 2\r\nhix\r\n")])).toEqual([`ERROR ${ParseError.UnknownOperation}`]);
  });

  it("enforces the control line limit even when the line never ends", () => {
    const ops = parseChunks([Buffer.from("SUB " + "a".repeat(200))], 64);
    expect(ops).toEqual([`ERROR ${ParseError.MaxControlLine}`]);
  });

  it("rejects a payload over max_payload before reading it", () => {
    expect(parseChunks([Buffer.from("PUB foo 2000\r\n")], 4096, 1000)).toEqual([`ERROR ${ParseError.MaxPayload}`]);
  });

  it("stops at the first error and ignores what follows", () => {
    expect(parseChunks([Buffer.from("PING\r\nXYZ\r\nPING\r\n")])).toEqual(["PING", `ERROR ${ParseError.UnknownOperation}`]);
  });

  it("treats HPUB as a protocol violation when headers were not negotiated", () => {
    const sink = new Recorder();
    sink.headersEnabled = false;
    new ProtocolParser(sink, 4096, 1024).parse(Buffer.from("HPUB foo 12 12\r\nNATS/1.0\r\n\r\n\r\n"));
    expect(sink.ops).toEqual([`ERROR ${ParseError.BadArguments}`]);
  });

  it("reads PING/PONG followed by other bytes as PING/PONG, as nats-server does", () => {
    expect(parseChunks([Buffer.from("PINGX\r\nPONGfoo bar\r\nping\n")])).toEqual(["PING", "PONG", "PING"]);
  });

  it("measures max_control_line over the arguments only", () => {
    const args = "a".repeat(60) + " 1"; // 62 bytes of arguments
    expect(parseChunks([Buffer.from(`SUB ${args}\r\n`)], 62)).toEqual([`SUB ${"a".repeat(60)} - 1`]);
    expect(parseChunks([Buffer.from(`SUB ${args}\r\n`)], 61)).toEqual([`ERROR ${ParseError.MaxControlLine}`]);
  });

  it("rejects malformed sizes and argument counts", () => {
    for (const line of ["PUB foo\r\n", "PUB foo x\r\n", "PUB a b c 1\r\n", "SUB foo\r\n", "SUB a b c d\r\n", "HPUB foo 5 2\r\n"]) {
      expect(parseChunks([Buffer.from(line)]), line).toEqual([`ERROR ${ParseError.BadArguments}`]);
    }
  });
});
