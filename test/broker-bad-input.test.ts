// Hostile and awkward input: random bytes, every split of valid traffic, huge
// lines, absurd sizes, connection churn. After each, a fresh client must still
// complete a request/reply round trip: the broker must never crash or wedge.
import { connect } from "@nats-io/transport-node";
import net from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { connectLine, RawClient } from "./helpers/raw.js";
import { describeEachServer, startServer, unavailableReason, type RunningServer, type ServerKind } from "./helpers/servers.js";
import { prng } from "./helpers/prng.js";
import { waitFor } from "./helpers/wait.js";

// Override with FUZZ_SEED=<n> to reproduce a failure reported with that seed.
const SEED = Number(process.env.FUZZ_SEED ?? 20240611);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Write and wait until the bytes are handed to the kernel (so splits become separate segments). */
function writeNow(s: net.Socket, data: Buffer): Promise<void> {
  return new Promise((resolve) => (s.destroyed ? resolve() : s.write(data, () => resolve())));
}

/** Run `fn` over `items` with at most `width` in flight. */
async function inBatches<T>(items: T[], width: number, fn: (item: T, i: number) => Promise<void>): Promise<void> {
  for (let i = 0; i < items.length; i += width) {
    await Promise.all(items.slice(i, i + width).map((it, j) => fn(it, i + j)));
  }
}

let healthSeq = 0;
/** A brand-new nats.js client can subscribe, request and get the reply. */
async function assertServes(url: string): Promise<void> {
  const responder = await connect({ servers: url, reconnect: false });
  const requester = await connect({ servers: url, reconnect: false });
  try {
    const subject = `health.${healthSeq++}`;
    responder.subscribe(subject, {
      callback: (_e, m) => {
        m.respond(`pong:${m.string()}`);
      },
    });
    await responder.flush();
    const r = await requester.request(subject, "ping", { timeout: 5000 });
    expect(r.string()).toBe("pong:ping");
  } finally {
    await requester.close();
    await responder.close();
  }
}

// A valid session touching every op; replies are deterministic. `p` keeps the
// subjects (and queue group) of concurrent sessions apart.
const HDR = "NATS/1.0\r\nK: v\r\n\r\n";
const BIN = "a\r\nb\x00\xff\r\n";
const session = (p: string) =>
  connectLine({ headers: true }) +
  `SUB ${p}.a 1\r\nSUB ${p}.* q${p} 2\r\n` +
  `PUB ${p}.a r.1 11\r\nhello world\r\n` +
  `HPUB ${p}.a ${HDR.length} ${HDR.length + 3}\r\n${HDR}xyz\r\n` +
  `PUB ${p}.b ${BIN.length}\r\n${BIN}\r\n` +
  `UNSUB 1\r\nPUB ${p}.a 0\r\n\r\nPING\r\n`;
const sessionReply = (p: string) =>
  `MSG ${p}.a 1 r.1 11\r\nhello world\r\nMSG ${p}.a 2 r.1 11\r\nhello world\r\n` +
  `HMSG ${p}.a 1 ${HDR.length} ${HDR.length + 3}\r\n${HDR}xyz\r\nHMSG ${p}.a 2 ${HDR.length} ${HDR.length + 3}\r\n${HDR}xyz\r\n` +
  `MSG ${p}.b 2 ${BIN.length}\r\n${BIN}\r\n` +
  `MSG ${p}.a 2 0\r\n\r\nPONG\r\n`;
/** Same-length prefixes, so every session has the same byte positions. */
const prefix = (i: number) => `s${String(i).padStart(4, "0")}`;

describeEachServer("bad input", (kind: ServerKind) => {
  let server: RunningServer;
  const clients: RawClient[] = [];

  beforeAll(async () => {
    server = await startServer(kind, { monitoring: true });
  });
  afterAll(async () => {
    await server?.stop();
  });
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
  });

  async function raw(): Promise<RawClient> {
    const c = await RawClient.connect(server.port);
    clients.push(c);
    return c;
  }

  describe("fuzz", () => {
    const VOCAB = [
      "PUB", "SUB", "UNSUB", "HPUB", "MSG", "PING", "PONG", "CONNECT", "INFO", "+OK", "-ERR",
      " ", " ", "\t", "\r\n", "\r\n", "\n", "\r", "0", "1", "5", "12", "-1", "99999999999", "4096",
      "foo", "foo.bar", "*", ">", ".", "..", "q", "{", "}", '{"verbose":true}', '{"headers":true}',
      "NATS/1.0", ":", "\x00", "\xff",
    ];

    /** One hostile stream: raw noise, protocol-word salad, or a mutated valid session. */
    function hostile(rand: () => number): Buffer {
      const mode = Math.floor(rand() * 3);
      if (mode === 0) {
        const b = Buffer.alloc(1 + Math.floor(rand() * 4096));
        for (let i = 0; i < b.length; i++) b[i] = Math.floor(rand() * 256);
        return b;
      }
      if (mode === 1) {
        let s = "";
        const n = 5 + Math.floor(rand() * 200);
        for (let i = 0; i < n; i++) s += VOCAB[Math.floor(rand() * VOCAB.length)];
        return Buffer.from(s, "latin1");
      }
      const b = Buffer.from(session(prefix(Math.floor(rand() * 10000))), "latin1");
      const edits = 1 + Math.floor(rand() * 6);
      for (let e = 0; e < edits; e++) b[Math.floor(rand() * b.length)] = Math.floor(rand() * 256);
      return b;
    }

    /** Cut a stream into 1..8 random pieces so the parser sees odd boundaries. */
    function pieces(bytes: Buffer, rand: () => number): Buffer[] {
      const cuts = [...Array(Math.floor(rand() * 8)).keys()].map(() => Math.floor(rand() * bytes.length));
      const sorted = [0, ...cuts.sort((a, b) => a - b), bytes.length];
      return sorted.slice(1).map((end, i) => bytes.subarray(sorted[i], end)).filter((p) => p.length > 0);
    }

    it(`survives hostile byte streams on 300 connections (seed ${SEED})`, async () => {
      // All randomness is drawn up front: async interleaving must not change the streams.
      const rand = prng(SEED);
      const streams = Array.from({ length: 300 }, () => pieces(hostile(rand), rand));
      await inBatches(streams, 50, async (parts) => {
        const c = await RawClient.connect(server.port);
        try {
          for (const p of parts) if (!c.closed) await writeNow(c.socket, p);
          c.send("\r\nPING\r\n");
          // Either the server closes us or answers; a stream may also leave it
          // waiting for a payload, which is fine. Bounded wait, not a verdict.
          await Promise.race([c.waitClose(300), c.waitFor(/PONG\r\n/, 300)]).catch(() => undefined);
        } finally {
          await c.close();
        }
      });
      await assertServes(server.url);
    });

    it(`survives a valid session followed by garbage on one connection (seed ${SEED + 1})`, async () => {
      const rand = prng(SEED + 1);
      for (let i = 0; i < 20; i++) {
        const c = await raw();
        expect(await c.sync(session(prefix(i)).replace(/PING\r\n$/, ""))).toBe(sessionReply(prefix(i)));
        c.send(hostile(rand));
        c.send("\r\n");
        await c.close();
      }
      await assertServes(server.url);
    });
  });

  describe("fragmentation", () => {
    it("answers a full session split into two writes at every byte boundary", { timeout: 60_000 }, async () => {
      const length = session(prefix(0)).length;
      const cuts = [...Array(length - 1).keys()].map((i) => i + 1);
      const failures: string[] = [];
      await inBatches(cuts, 16, async (cut) => {
        const bytes = Buffer.from(session(prefix(cut)), "latin1");
        const c = await RawClient.connect(server.port);
        try {
          await writeNow(c.socket, bytes.subarray(0, cut));
          await sleep(1); // give the server a chance to read the first part on its own
          await writeNow(c.socket, bytes.subarray(cut));
          const got = await c.waitFor(/^[\s\S]*?PONG\r\n/).catch((e: Error) => `error: ${e.message}`);
          if (got !== sessionReply(prefix(cut))) failures.push(`cut at ${cut}: ${JSON.stringify(got)}`);
        } finally {
          await c.close();
        }
      });
      expect(failures).toEqual([]);
      await assertServes(server.url);
    });

    it("answers a full session sent one byte per write", async () => {
      const c = await raw();
      const bytes = Buffer.from(session("one"), "latin1");
      for (let i = 0; i < bytes.length; i++) await writeNow(c.socket, bytes.subarray(i, i + 1));
      expect(await c.waitFor(/^[\s\S]*?PONG\r\n/)).toBe(sessionReply("one"));
    });

    it("delivers exactly the message to another subscriber for every split of PUB and HPUB", { timeout: 60_000 }, async () => {
      const sub = await raw();
      const pub = await raw();
      await sub.sync(connectLine({ headers: true }) + "SUB frag.> 9\r\n");
      await pub.sync(connectLine({ headers: true }));
      const frames: [string, string][] = [
        ["PUB frag.a rep 7\r\nab\r\ncd\n\r\n", "MSG frag.a 9 rep 7\r\nab\r\ncd\n\r\n"],
        [`HPUB frag.b ${HDR.length} ${HDR.length + 2}\r\n${HDR}ok\r\n`, `HMSG frag.b 9 ${HDR.length} ${HDR.length + 2}\r\n${HDR}ok\r\n`],
      ];
      const failures: string[] = [];
      for (const [frame, expected] of frames) {
        const bytes = Buffer.from(frame, "latin1");
        for (let cut = 1; cut < bytes.length; cut++) {
          await writeNow(pub.socket, bytes.subarray(0, cut));
          await sleep(1);
          await writeNow(pub.socket, bytes.subarray(cut));
          const got = (await sub.waitForBytes(expected.length)).toString("latin1");
          if (got !== expected) failures.push(`${frame.slice(0, 4)} cut at ${cut}: ${JSON.stringify(got)}`);
        }
      }
      expect(failures).toEqual([]);
      expect(await sub.sync()).toBe("PONG\r\n"); // nothing extra arrived
      await assertServes(server.url);
    });
  });

  describe("oversized input", () => {
    it.each([
      ["10 KB", 10 * 1024],
      ["1 MB", 1024 * 1024],
      ["8 MB", 8 * 1024 * 1024],
    ])("closes a connection sending a %s control line without a newline", async (_n, size) => {
      const c = await raw();
      c.send(connectLine());
      const chunk = Buffer.alloc(64 * 1024, "A");
      c.send("PUB ");
      for (let sent = 0; sent < size && !c.closed; sent += chunk.length) {
        await writeNow(c.socket, chunk.subarray(0, Math.min(chunk.length, size - sent)));
      }
      await c.waitClose();
      // The -ERR can be lost if the server resets a socket with unread input.
      expect(["", "-ERR 'maximum control line exceeded'\r\n"]).toContain(c.rest());
      await assertServes(server.url);
    });

    it.each([
      ["PUB one over the limit, payload sent anyway", `PUB big 1048577\r\n${"x".repeat(1048577)}\r\n`],
      ["PUB size 2^31", "PUB big 2147483648\r\n"],
      ["PUB size 2^64", "PUB big 18446744073709551616\r\n"],
      ["PUB size with 30 digits", `PUB big ${"9".repeat(30)}\r\n`],
      ["PUB size in exponent form", "PUB big 1e3\r\n"],
      ["PUB size in hex", "PUB big 0x10\r\n"],
      ["HPUB total 2^53", "HPUB big 12 9007199254740993\r\n"],
      ["HPUB negative header size", "HPUB big -12 20\r\n"],
    ])("closes the connection on %s", async (_name, bytes) => {
      const watcher = await raw();
      await watcher.sync(connectLine() + "SUB big 1\r\n");
      const c = await raw();
      c.send(connectLine({ headers: true }));
      c.send(bytes);
      await c.waitClose();
      expect(c.rest()).not.toMatch(/MSG|PONG/);
      expect(await watcher.sync()).toBe("PONG\r\n"); // nothing was delivered
      await assertServes(server.url);
    });
  });

  describe("connection churn", () => {
    it("survives 2,400 connections opening and closing in batches", { timeout: 60_000 }, async () => {
      // Four ways to leave: clean handshake, immediate drop, half-close, reset.
      const styles = ["handshake", "drop", "half-close", "reset"] as const;
      const total = 2400;
      let handshakes = 0;
      await inBatches([...Array(total).keys()], 200, async (i) => {
        const style = styles[i % styles.length]!;
        const s = net.connect({ port: server.port, host: "127.0.0.1" });
        const closed = new Promise<void>((r) => s.once("close", () => r()));
        s.on("error", () => undefined); // resets are expected here
        await new Promise<void>((r) => s.once("connect", () => r()));
        if (style === "drop") {
          s.destroy();
        } else if (style === "reset") {
          s.resetAndDestroy();
        } else if (style === "half-close") {
          s.end(connectLine() + "SUB churn 1\r\nPUB churn 1\r\nx\r\n");
          s.resume();
        } else {
          let text = "";
          let sentConnect = false;
          await new Promise<void>((resolve, reject) => {
            const t = setTimeout(() => reject(new Error(`no PONG; got ${JSON.stringify(text)}`)), 10_000);
            s.on("data", (d: Buffer) => {
              text += d.toString("latin1");
              if (!sentConnect && /^INFO [^\r\n]*\r\n/.test(text)) {
                sentConnect = true;
                s.write(connectLine() + "PING\r\n");
              }
              if (text.endsWith("PONG\r\n")) {
                clearTimeout(t);
                resolve();
              }
            });
          });
          handshakes++;
          s.end();
        }
        await closed;
      });
      expect(handshakes).toBe(total / styles.length);
      await assertServes(server.url);
      // Every one of those connections must eventually be released by the server.
      let conns = -1;
      await waitFor(
        "the server to release every connection",
        async () => {
          conns = ((await (await fetch(`${server.httpUrl}/varz`)).json()) as { connections: number }).connections;
          return conns === 0;
        },
        15_000,
        50,
      );
      expect(conns).toBe(0);
    });
  });
});

// The bundled broker closes a connection that never says anything (nats-server
// 2.9.10 only does that when auth is configured), so idle sockets cannot pile up.
const bundledSkip = unavailableReason("bundled");
describe.skipIf(bundledSkip !== undefined)(`bad input [bundled only]${bundledSkip ? ` (skipped: ${bundledSkip})` : ""}`, () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startServer("bundled", { connectTimeoutMs: 300 });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it("closes connections that send nothing at all within connectTimeoutMs, with -ERR 'Authentication Timeout'", async () => {
    const silent = await Promise.all([...Array(20)].map(() => RawClient.connect(server.port)));
    try {
      // Generous next to 300 ms, yet short of any fallback timeout a broker might have.
      await Promise.all(silent.map((c) => c.waitClose(5000)));
      expect(silent.every((c) => c.closed)).toBe(true);
      expect(silent.every((c) => c.text().includes("-ERR 'Authentication Timeout'\r\n"))).toBe(true);
      await assertServes(server.url);
    } finally {
      await Promise.all(silent.map((c) => c.close()));
    }
  });

  it("keeps a connection that sent CONNECT past connectTimeoutMs", async () => {
    const c = await RawClient.connect(server.port);
    try {
      expect(await c.sync(connectLine())).toBe("PONG\r\n");
      await sleep(600); // twice the timeout: a wrongly armed timer would have fired
      expect(await c.sync()).toBe("PONG\r\n");
    } finally {
      await c.close();
    }
  });
});
