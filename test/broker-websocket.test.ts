// The WebSocket listener under bad and unusual input, byte by byte over bare sockets (helpers/ws-frames.ts):
// handshakes, frame-level protocol errors, the close handshake, fragmentation, ping/pong, text frames,
// permessage-deflate, and a seeded fuzz of the frame decoder. Each case runs against nats-server 2.9.10's
// websocket listener and the bundled broker with the same expectations, except where a comment says
// nats-server does something else (then the case is bundled-only and asserts what the spec asks).
// After every bad client, bystanders (a TCP and a WebSocket nats.js client) must still be served.
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { randomBytes } from "node:crypto";
import net from "node:net";
import { deflateRawSync, inflateRawSync, constants as zlibConstants } from "node:zlib";
import { WebSocket } from "ws";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startBroker } from "../src/broker/index.js";
import { prng } from "./helpers/prng.js";
import { RawClient } from "./helpers/raw.js";
import { eventually, waitFor } from "./helpers/wait.js";
import { describeEachServer, startServer, type RunningServer, type ServerKind } from "./helpers/servers.js";
import { wsConnect } from "./helpers/ws-client.js";
import {
  buildFrame,
  closePayload,
  natsFrame,
  OP,
  rawHttp,
  upgradeRequest,
  WsRawClient,
  type FrameSpec,
  type HandshakeOpts,
} from "./helpers/ws-frames.js";

const GOOD_ORIGIN = "http://good.example";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// Bundled broker: a WebSocket message may be at most max_payload + max_control_line + 64 KiB (spec).
const MAX_PAYLOAD = 1024 * 1024;
const MAX_WS_MESSAGE = MAX_PAYLOAD + 4096 + 64 * 1024;

describeEachServer("WebSocket listener", (kind: ServerKind) => {
  let server: RunningServer;
  const conns: NatsConnection[] = [];
  let tcpBystander: NatsConnection;
  let wsBystander: NatsConnection;
  let served = 0;

  beforeAll(async () => {
    server = await startServer(kind, { websocket: { allowedOrigins: [GOOD_ORIGIN] } });
    const responder = await connect({ servers: server.url, reconnect: false });
    responder.subscribe("bystander.echo", { callback: (_e, m) => void m.respond(m.data) });
    await responder.flush();
    tcpBystander = await connect({ servers: server.url, reconnect: false });
    wsBystander = await wsConnect({ servers: server.wsUrl!, reconnect: false });
    conns.push(responder, tcpBystander, wsBystander);
  });
  afterAll(async () => {
    await Promise.all(conns.map((c) => c.close().catch(() => undefined)));
    await server?.stop();
  });

  /** Both bystanders, connected before any bad client, still get answers from the broker. */
  async function bystandersServed(): Promise<void> {
    const tag = `r${++served}`;
    const [a, b] = await Promise.all([
      tcpBystander.request("bystander.echo", `tcp-${tag}`, { timeout: 3000 }),
      wsBystander.request("bystander.echo", `ws-${tag}`, { timeout: 3000 }),
    ]);
    expect([a.string(), b.string()]).toEqual([`tcp-${tag}`, `ws-${tag}`]);
    expect(tcpBystander.isClosed() || wsBystander.isClosed()).toBe(false);
  }

  describe("handshake", () => {
    it("a good upgrade gets 101 with the right Sec-WebSocket-Accept, then INFO in a binary, unmasked frame", async () => {
      const c = await WsRawClient.open(server.wsPort!, { headers: { Origin: GOOD_ORIGIN } });
      expect(c.response.status).toBe(101);
      expect(c.response.headers.upgrade?.toLowerCase()).toBe("websocket");
      expect(c.frames[0]).toMatchObject({ opcode: OP.binary, masked: false, fin: true, rsv: 0 });
      expect(c.info).toMatchObject({ headers: true, max_payload: MAX_PAYLOAD, client_ip: "127.0.0.1" });
      // Protocol goes both ways: CONNECT, SUB, PUB, and our own message back.
      expect(await c.sync('CONNECT {"verbose":false}\r\nSUB hs 1\r\nPUB hs 2\r\nhi\r\n')).toBe("MSG hs 1 2\r\nhi\r\nPONG\r\n");
      await c.close();
    });

    // Both answer every refused upgrade with the status and a `Sec-WebSocket-Version: 13` header.
    const refused: [string, number, HandshakeOpts][] = [
      ["missing Sec-WebSocket-Key", 400, { headers: { "Sec-WebSocket-Key": null } }],
      ["wrong version (12)", 400, { headers: { "Sec-WebSocket-Version": "12" } }],
      ["no Sec-WebSocket-Version", 400, { headers: { "Sec-WebSocket-Version": null } }],
      ["no Upgrade header", 400, { headers: { Upgrade: null } }],
      ["no Connection: Upgrade", 400, { headers: { Connection: "keep-alive" } }],
      ["not a GET (POST)", 405, { method: "POST" }],
      ["an Origin outside allowed_origins", 403, { headers: { Origin: "http://evil.example" } }],
    ];
    it.each(refused)("%s -> HTTP %i", async (_name, status, opts) => {
      const a = await rawHttp(server.wsPort!, upgradeRequest(server.wsPort!, opts).text);
      expect(a.status).toBe(status);
      expect(a.headers["sec-websocket-version"]).toBe("13");
      expect(a.headers["sec-websocket-accept"]).toBeUndefined();
      await bystandersServed();
    });

    it("clients that reset the connection right after a refused upgrade leave the listener serving", async () => {
      // The refusal is written while the peer's RST arrives: the socket's error must be someone's to
      // handle (it once reached no listener and ended the broker's process).
      const text = upgradeRequest(server.wsPort!, { method: "POST" }).text;
      const resetAfter = (delayMs: number) =>
        new Promise<void>((done) => {
          const s = net.connect({ port: server.wsPort!, host: "127.0.0.1" }, () => {
            s.write(text);
            setTimeout(() => s.resetAndDestroy(), delayMs);
          });
          s.on("error", () => undefined);
          s.on("close", () => done());
        });
      for (let round = 0; round < 10; round++) await Promise.all(Array.from({ length: 30 }, (_, i) => resetAfter(i % 4)));
      await bystandersServed();
    });

    it("no Host header -> HTTP 400", async () => {
      // nats-server refuses this in Go's HTTP server, before its own checks (so no Sec-WebSocket-Version).
      const a = await rawHttp(server.wsPort!, upgradeRequest(server.wsPort!, { headers: { Host: null } }).text);
      expect(a.status).toBe(400);
      await bystandersServed();
    });

    it("oversized request headers (1.1 MiB) -> HTTP 431 and the connection closes", async () => {
      // Past nats-server's 1 MiB header limit (Go's http.DefaultMaxHeaderBytes) and any smaller one.
      const a = await rawHttp(server.wsPort!, upgradeRequest(server.wsPort!, { headers: { "X-Big": "a".repeat(1100 * 1024) } }).text);
      expect(a.status).toBe(431);
      expect(a.closedAfter).toBe(true);
      await bystandersServed();
    });

    // Bundled only: nats-server 2.9.10 kept such a connection open for the whole 20 s we watched (its
    // handshake_timeout does not cover a request that never completes); the spec's handshakeTimeoutMs
    // (default 2 s) does.
    if (kind === "bundled") it("a peer that never finishes its upgrade request is dropped within a bounded time (bundled only)", async () => {
      const sock = net.connect({ port: server.wsPort!, host: "127.0.0.1" });
      sock.on("error", () => undefined);
      await new Promise((r) => sock.once("connect", r));
      sock.write(`GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n`); // and then nothing
      // Dropped at all is what counts; the test's timeout (20 s, ten handshake timeouts) bounds the wait.
      await new Promise((r) => sock.once("close", r));
      await bystandersServed();
    });

    it("an allowed Origin, and no Origin at all, are accepted with allowed_origins set", async () => {
      for (const headers of [{ Origin: GOOD_ORIGIN }, {}] as Record<string, string>[]) {
        const c = await WsRawClient.open(server.wsPort!, { headers });
        expect(await c.sync()).toBe("PONG\r\n");
        await c.close();
      }
    });
  });

  describe("frame-level protocol errors: close 1002, then the socket closes", () => {
    /**
     * A bad frame after a good handshake: the broker sends close `code` and closes the socket.
     * nats-server 2.9.10 queues the close frame and closes the connection at once, so the frame is
     * mostly lost (measured: 0 to 2 of 8 runs carry it); there only the closing and, when a close
     * frame does arrive, its code are asserted. The bundled broker must send it (spec).
     */
    async function expectClosedWith(bytes: Buffer, code: number): Promise<void> {
      const c = await WsRawClient.open(server.wsPort!);
      expect(await c.sync('CONNECT {"verbose":false}\r\n')).toBe("PONG\r\n");
      c.write(bytes);
      await c.waitClose(3000);
      const closes = c.frames.filter((f) => f.opcode === OP.close);
      if (kind === "bundled") expect(closes).toHaveLength(1);
      for (const f of closes) expect(f.payload.readUInt16BE(0)).toBe(code);
      // Nothing but the close after the bad frame: no PONG to a PING that came with it.
      expect(c.data().slice(c.cursor)).toBe("");
      await bystandersServed();
    }

    const bad: [string, () => Buffer][] = [
      ["an unmasked client frame", () => buildFrame({ opcode: OP.binary, payload: "PING\r\n", mask: false })],
      ["reserved data opcode 0x3", () => buildFrame({ opcode: 0x3, payload: "PING\r\n" })],
      ["reserved control opcode 0xB", () => buildFrame({ opcode: 0xb, payload: "x" })],
      ["RSV1 set without negotiated compression", () => buildFrame({ opcode: OP.binary, rsv: 4, payload: "PING\r\n" })],
      ["a fragmented control frame (ping without FIN)", () => buildFrame({ opcode: OP.ping, fin: false, payload: "x" })],
      ["a control frame with 126 bytes of payload", () => buildFrame({ opcode: OP.ping, payload: "x".repeat(126) })],
      ["a continuation frame with no message started", () => buildFrame({ opcode: OP.cont, payload: "PING\r\n" })],
      [
        "a new data frame while a fragmented message is open",
        () => Buffer.concat([buildFrame({ opcode: OP.binary, fin: false, payload: "PI" }), buildFrame({ opcode: OP.binary, payload: "NG\r\n" })]),
      ],
    ];
    it.each(bad)("%s", async (_name, bytes) => {
      await expectClosedWith(bytes(), 1002);
    });

    // The cases below are registered for the bundled broker only, because nats-server 2.9.10 differs
    // from RFC 6455 there and the spec asks for the RFC's answer:
    if (kind === "bundled") {
      // nats-server does not check RSV2/RSV3 at all (it answered PONG to such a frame).
      it.each([
        ["RSV2", 2],
        ["RSV3", 1],
      ])("%s set -> 1002 (bundled only; nats-server ignores RSV2/RSV3)", async (_n, rsv) => {
        await expectClosedWith(buildFrame({ opcode: OP.binary, rsv, payload: "PING\r\n" }), 1002);
      });

      // nats-server does not validate UTF-8 in text frames (invalid UTF-8 reaches its NATS parser: a
      // valid PUB is delivered, anything else gets -ERR and close 1002).
      it("invalid UTF-8 in a text frame -> 1007 (bundled only)", async () => {
        await expectClosedWith(buildFrame({ opcode: OP.text, payload: Buffer.from("PUB u 2\r\n\xff\xfe\r\n", "latin1") }), 1007);
      });

      // nats-server does not bound frame sizes (it waits for all the declared bytes and lets the NATS
      // parser refuse); the bundled broker closes as soon as the header announces too much.
      it("a frame longer than max_payload + max_control_line + 64 KiB -> 1009 (bundled only)", async () => {
        await expectClosedWith(buildFrame({ opcode: OP.binary, payload: "PUB a 1\r\n", declaredLength: MAX_WS_MESSAGE + 1 }), 1009);
      });
    }
  });

  describe("well-formed traffic", () => {
    it("a PUB of exactly max_payload in one frame is delivered", async () => {
      const c = await WsRawClient.open(server.wsPort!);
      const body = Buffer.alloc(MAX_PAYLOAD, 0x61);
      expect(await c.sync('CONNECT {"verbose":false}\r\nSUB big 1\r\n')).toBe("PONG\r\n");
      c.send(`PUB big ${MAX_PAYLOAD}\r\n${body.toString("latin1")}\r\nPING\r\n`);
      const got = await c.waitFor(/^MSG big 1 1048576\r\n[\s\S]*?\r\nPONG\r\n/, 10_000);
      expect(got.length).toBe(`MSG big 1 ${MAX_PAYLOAD}\r\n`.length + MAX_PAYLOAD + 2 + 6);
      await c.close();
    });

    it("a PUB split over a text frame and continuation frames, with a ping between fragments, arrives whole", async () => {
      const c = await WsRawClient.open(server.wsPort!);
      const tcpSub = await connect({ servers: server.url, reconnect: false });
      conns.push(tcpSub);
      const atTcp: string[] = [];
      tcpSub.subscribe("frag", { callback: (_e, m) => void atTcp.push(m.string()) });
      await tcpSub.flush();
      expect(await c.sync('CONNECT {"verbose":false}\r\nSUB frag 7\r\n')).toBe("PONG\r\n");
      const text = "PUB frag 11\r\nhello world\r\nPING\r\n";
      c.write(buildFrame({ opcode: OP.text, fin: false, payload: text.slice(0, 5) }));
      c.write(buildFrame({ opcode: OP.cont, fin: false, payload: text.slice(5, 15) }));
      // A control frame may come between the fragments of a message (RFC 6455 5.4).
      c.write(buildFrame({ opcode: OP.ping, payload: "mid" }));
      await sleep(20);
      c.write(buildFrame({ opcode: OP.cont, fin: true, payload: text.slice(15) }));
      expect(await c.waitFor(/^[\s\S]*?PONG\r\n/)).toBe("MSG frag 7 11\r\nhello world\r\nPONG\r\n");
      const pong = await c.waitFrame((f) => f.opcode === OP.pong);
      expect(pong.payload.toString()).toBe("mid");
      await tcpSub.flush();
      expect(atTcp).toEqual(["hello world"]);
      await c.close();
    });

    it("a ping gets a pong with the same payload (empty and 125 bytes too)", async () => {
      const c = await WsRawClient.open(server.wsPort!);
      for (const payload of ["", "ping-payload", "p".repeat(125)]) {
        const before = c.frames.length;
        c.sendFrame({ opcode: OP.ping, payload });
        const pong = await c.waitFrame((f) => f.opcode === OP.pong && c.frames.indexOf(f) >= before);
        expect(pong).toMatchObject({ fin: true, masked: false, rsv: 0 });
        expect(pong.payload.toString()).toBe(payload);
      }
      expect(await c.sync()).toBe("PONG\r\n");
      await c.close();
    });

    it("text frames carry the protocol like binary ones; answers come in binary frames", async () => {
      const c = await WsRawClient.open(server.wsPort!);
      c.write(natsFrame('CONNECT {"verbose":false}\r\nSUB t 1\r\nPUB t 4\r\ntext\r\nPING\r\n', OP.text));
      expect(await c.waitFor(/^[\s\S]*?PONG\r\n/)).toBe("MSG t 1 4\r\ntext\r\nPONG\r\n");
      expect(c.frames.every((f) => f.opcode === OP.binary && !f.masked)).toBe(true);
      await c.close();
    });

    it("a client's close (1000) is answered with a close frame echoing the code, then the socket closes", async () => {
      const c = await WsRawClient.open(server.wsPort!);
      expect(await c.sync('CONNECT {"verbose":false}\r\n')).toBe("PONG\r\n");
      c.sendFrame({ opcode: OP.close, payload: closePayload(1000, "bye") });
      const close = await c.closeFrame(3000);
      expect(close.code).toBe(1000);
      await c.waitClose(3000);
      await bystandersServed();
    });

    it("a PUB over max_payload gets -ERR 'Maximum Payload Violation', then close 1009", async () => {
      const c = await WsRawClient.open(server.wsPort!, { answerClose: true });
      c.send(`CONNECT {"verbose":false}\r\nPUB too.big ${MAX_PAYLOAD + 1}\r\n`);
      expect(await c.waitFor(/^-ERR '[^']*'\r\n/)).toBe("-ERR 'Maximum Payload Violation'\r\n");
      expect((await c.closeFrame()).code).toBe(1009);
      await c.waitClose(3000);
      await bystandersServed();
    });

    it("a peer that never answers the broker's close is dropped within a bounded time", async () => {
      const c = await WsRawClient.open(server.wsPort!);
      // A NATS protocol error makes the broker close: -ERR, then a close frame (1002, as nats-server).
      c.send("BOGUS\r\n");
      expect(await c.waitFor(/^-ERR '[^']*'\r\n/)).toBe("-ERR 'Unknown Protocol Operation'\r\n");
      const close = await c.closeFrame(3000);
      expect(close.code).toBe(1002);
      // We never send our close frame and keep the socket open: the broker must not wait forever (it
      // waits 2 s; the wait here only bounds the test).
      await c.waitClose(15_000);
      await bystandersServed();
    });
  });

  describe("fuzzing the frame decoder", () => {
    /** One random frame: any opcode, bits, mask, length form, payload shaped from NATS text or noise. */
    function randomFrame(rnd: () => number): { bytes: Buffer; complete: boolean; closeCode?: number } {
      const pick = <T>(xs: T[]): T => xs[Math.floor(rnd() * xs.length)]!;
      const texts = ["PING\r\n", "PUB fz 3\r\nabc\r\n", "SUB fz 1\r\n", 'CONNECT {"verbose":false}\r\n', "PUB fz 999999999\r\n", "MSG\r\n", "\r\n"];
      const len = pick([0, 1, 2, 5, 60, 125, 126, 127, 200, 4000, 70_000]);
      let payload: Buffer;
      const shape = rnd();
      if (shape < 0.4) payload = Buffer.from(Array.from({ length: len }, () => Math.floor(rnd() * 256)));
      else if (shape < 0.8) payload = Buffer.from(pick(texts).repeat(1 + Math.floor(rnd() * 3)), "latin1");
      else payload = Buffer.alloc(Math.min(len, 125), 0x70);
      const spec: FrameSpec = {
        opcode: rnd() < 0.7 ? pick([OP.binary, OP.text, OP.cont, OP.ping, OP.pong, OP.close]) : Math.floor(rnd() * 16),
        fin: rnd() < 0.8,
        rsv: rnd() < 0.85 ? 0 : Math.floor(rnd() * 8),
        mask: rnd() < 0.9,
        payload,
      };
      // Sometimes lie about the length: announce more (a truncated frame) or a huge frame.
      const lie = rnd();
      if (lie < 0.08) spec.declaredLength = payload.length + 1 + Math.floor(rnd() * 1000);
      else if (lie < 0.1) spec.declaredLength = payload.length + 1 + Math.floor(rnd() * 2 ** 40);
      // nats-server echoes a close frame's code, and answers one without a code with 1005.
      const closeCode = spec.opcode === OP.close ? (payload.length >= 2 ? payload.readUInt16BE(0) : 1005) : undefined;
      return { bytes: buildFrame(spec), complete: spec.declaredLength === undefined, closeCode };
    }

    /**
     * One case on its own connection. Returns "closed" if the broker closed it, "alive" if it answered a
     * WebSocket ping probe after the case's bytes (frame boundary kept), or "open" for a truncated case
     * (the decoder is mid-frame and rightly waits) that the broker kept open. The client answers the
     * broker's close frame, as a real one would, so a closing broker closes the socket promptly.
     */
    async function runCase(seed: number): Promise<"closed" | "alive" | "open"> {
      const rnd = prng(seed);
      const frames = Array.from({ length: 1 + Math.floor(rnd() * 3) }, () => randomFrame(rnd));
      let bytes = Buffer.concat(frames.map((f) => f.bytes));
      const truncate = rnd() < 0.3;
      if (truncate) bytes = bytes.subarray(0, Math.floor(rnd() * bytes.length));
      // A frame announcing more bytes than it has leaves the decoder mid-frame, as truncation does.
      const midFrame = truncate || frames.some((f) => !f.complete);
      const c = await WsRawClient.open(server.wsPort!, { answerClose: true });
      try {
        c.write(bytes);
        await sleep(30);
        if (midFrame) return c.closed ? "closed" : "open";
        const probe = `probe-${seed}`;
        c.sendFrame({ opcode: OP.ping, payload: probe });
        try {
          const f = await c.waitFrame((x) => x.opcode === OP.close || (x.opcode === OP.pong && x.payload.toString() === probe), 2000);
          if (f.opcode === OP.pong) return "alive";
          await c.waitClose(3000);
          return "closed";
        } catch {
          // No pong and no close frame: then the broker must have closed the socket (waitFrame ends on close).
          await c.waitClose(3000);
          return "closed";
        } finally {
          // Any close frame the broker sent carries a code a server sends on its own (or echoes one
          // our case sent: nats-server echoes any code, even invalid ones).
          const echoed = frames.flatMap((f) => (f.closeCode !== undefined ? [f.closeCode] : []));
          for (const f of c.frames.filter((x) => x.opcode === OP.close && x.payload.length >= 2)) {
            expect([1000, 1001, 1002, 1003, 1007, 1008, 1009, 1011, ...echoed]).toContain(f.payload.readUInt16BE(0));
          }
        }
      } finally {
        await c.close();
      }
    }

    it("300 random and truncated frame sequences: never a crash, each connection closed or still serving", { timeout: 30_000 }, async () => {
      const outcomes = { closed: 0, alive: 0, open: 0 };
      const seeds = Array.from({ length: 300 }, (_, i) => 0x5eed0000 + i);
      for (let i = 0; i < seeds.length; i += 25) {
        const batch = await Promise.all(seeds.slice(i, i + 25).map(async (s) => [s, await runCase(s).catch((e: Error) => `seed ${s}: ${e.message}`)] as const));
        for (const [, r] of batch) {
          if (r === "closed" || r === "alive" || r === "open") outcomes[r]++;
          else throw new Error(r);
        }
        await bystandersServed();
      }
      // Every outcome occurred (runCase returns one of them per case or the test fails): connections
      // refused, connections that kept working, and connections mid-frame that were rightly kept waiting
      // (both servers: about 255 / 23 / 20 of the 300 seeds).
      expect(outcomes.closed).toBeGreaterThan(30);
      expect(outcomes.alive).toBeGreaterThan(10);
      expect(outcomes.open).toBeGreaterThan(5);
      // And a fresh client gets full service after the fuzz.
      const fresh = await wsConnect({ servers: server.wsUrl!, reconnect: false });
      conns.push(fresh);
      expect((await fresh.request("bystander.echo", "after-fuzz", { timeout: 3000 })).string()).toBe("after-fuzz");
    });
  });
});

describeEachServer("WebSocket permessage-deflate", (kind: ServerKind) => {
  let server: RunningServer;
  let plain: RunningServer;
  beforeAll(async () => {
    [server, plain] = await Promise.all([startServer(kind, { websocket: { compression: true } }), startServer(kind, { websocket: {} })]);
  });
  afterAll(async () => {
    await Promise.all([server?.stop(), plain?.stop()]);
  });
  const offer = { "Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits" };
  // No context takeover either way, so each compressed frame is deflated/inflated on its own.
  const offerNoContext = { "Sec-WebSocket-Extensions": "permessage-deflate; server_no_context_takeover; client_no_context_takeover" };

  it("is negotiated when compression is on, and declined when it is off", async () => {
    const on = await rawHttp(server.wsPort!, upgradeRequest(server.wsPort!, { headers: offer }).text);
    expect(on.status).toBe(101);
    expect(on.headers["sec-websocket-extensions"]).toMatch(/^permessage-deflate\b/);
    const off = await rawHttp(plain.wsPort!, upgradeRequest(plain.wsPort!, { headers: offer }).text);
    expect(off.status).toBe(101);
    expect(off.headers["sec-websocket-extensions"]).toBeUndefined();
  });

  it("a compressed frame in, a compressed frame out: a large message round-trips intact", async () => {
    const c = await WsRawClient.open(server.wsPort!, { headers: offerNoContext, readInfo: false });
    expect(c.response.headers["sec-websocket-extensions"]).toMatch(/^permessage-deflate\b/);
    const inflate = (b: Buffer) =>
      inflateRawSync(Buffer.concat([b, Buffer.from([0, 0, 0xff, 0xff])]), { finishFlush: zlibConstants.Z_SYNC_FLUSH }).toString("latin1");
    // INFO may itself come compressed (RSV1).
    const first = await c.waitFrame(() => true);
    const info = first.rsv & 4 ? inflate(first.payload) : first.payload.toString("latin1");
    expect(info).toMatch(/^INFO /);
    const body = "compress me please ".repeat(3000);
    const proto = `CONNECT {"verbose":false}\r\nSUB z 1\r\nPUB z ${body.length}\r\n${body}\r\nPING\r\n`;
    const deflated = deflateRawSync(Buffer.from(proto, "latin1"), { finishFlush: zlibConstants.Z_SYNC_FLUSH });
    expect(deflated.subarray(-4)).toEqual(Buffer.from([0, 0, 0xff, 0xff]));
    c.sendFrame({ opcode: OP.binary, rsv: 4, payload: deflated.subarray(0, -4) });
    let text = "";
    const start = c.frames.indexOf(first) + 1;
    await c.waitFrame((f) => {
      if (c.frames.indexOf(f) < start || f.opcode !== OP.binary) return false;
      text += f.rsv & 4 ? inflate(f.payload) : f.payload.toString("latin1");
      return text.endsWith("PONG\r\n");
    }, 5000);
    expect(text).toBe(`MSG z 1 ${body.length}\r\n${body}\r\nPONG\r\n`);
    // The big message came back compressed (RSV1) and much smaller than it is.
    const big = c.frames.slice(start).find((f) => f.opcode === OP.binary && f.rsv & 4);
    expect(big).toBeDefined();
    expect(big!.payload.length).toBeLessThan(body.length / 10);
    await c.close();
  });

  it("the ws client with perMessageDeflate round-trips through nats.js clients on both listeners", async () => {
    const ws = new WebSocket(server.wsUrl!, { perMessageDeflate: true });
    let all = "";
    ws.on("message", (d: Buffer) => {
      all += d.toString("latin1");
    });
    await new Promise<void>((resolve, reject) => {
      ws.once("open", () => resolve());
      ws.once("error", reject);
    });
    expect(ws.extensions).toMatch(/permessage-deflate/);
    const waitText = (re: RegExp) =>
      new Promise<string>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`timed out waiting for ${re}; got ${JSON.stringify(all.slice(-200))}`)), 5000);
        const check = () => {
          const m = re.exec(all);
          if (m) {
            clearTimeout(t);
            ws.off("message", onMsg);
            resolve(m[0]);
          }
        };
        const onMsg = () => check();
        ws.on("message", onMsg);
        check();
      });
    await waitText(/^INFO [^\r\n]+\r\n/);
    const tcp = await connect({ servers: server.url, reconnect: false });
    try {
      tcp.subscribe("deflate.in", { callback: (_e, m) => void m.respond(`ack:${m.data.length}`) });
      await tcp.flush();
      const body = "zip ".repeat(20_000);
      ws.send(`CONNECT {"verbose":false}\r\nSUB _INBOX.d 1\r\nPUB deflate.in _INBOX.d ${body.length}\r\n${body}\r\nPING\r\n`);
      const got = await waitText(/MSG _INBOX\.d 1 \d+\r\nack:80000\r\n/);
      expect(got).toBe("MSG _INBOX.d 1 9\r\nack:80000\r\n");
      // And the other way: a big message from TCP arrives intact over the compressed connection.
      ws.send("SUB deflate.out 2\r\nPING\r\n");
      await waitText(/PONG\r\n[\s\S]*PONG\r\n/);
      tcp.publish("deflate.out", body);
      await tcp.flush();
      expect(await waitText(/MSG deflate\.out 2 80000\r\n(zip ){20000}\r\n/)).toContain(body);
    } finally {
      await tcp.close();
      ws.close();
    }
  });
});

// max_connections counts TCP and WebSocket clients together; the one over the limit is refused the same
// way on either listener: -ERR 'maximum connections exceeded' and the connection closes (nats-server
// sends its INFO first; the bundled broker refuses before INFO, so the INFO line is left out here).
describeEachServer("WebSocket max_connections", (kind: ServerKind) => {
  const REFUSAL = "-ERR 'maximum connections exceeded'\r\n";
  let server: RunningServer;
  beforeAll(async () => {
    server = await startServer(kind, { maxConnections: 2, websocket: {} });
  });
  afterAll(async () => {
    await server?.stop();
  });

  const withoutInfo = (text: string) => text.replace(/^INFO [^\r\n]*\r\n/, "");

  it("refuses a WebSocket client over the limit as a TCP one, and admits one once a slot frees", async () => {
    const tcp = await RawClient.connect(server.port);
    expect(await tcp.sync('CONNECT {"verbose":false}\r\n')).toBe("PONG\r\n");
    const ws = await WsRawClient.open(server.wsPort!);
    expect(await ws.sync('CONNECT {"verbose":false}\r\n')).toBe("PONG\r\n");
    const opened = [tcp, ws];
    try {
      const overTcp = await RawClient.connect(server.port, { readInfo: false });
      await overTcp.waitClose();
      expect(withoutInfo(overTcp.text())).toBe(REFUSAL);

      const overWs = await WsRawClient.open(server.wsPort!, { readInfo: false, answerClose: true });
      await overWs.waitClose();
      expect(withoutInfo(overWs.data())).toBe(REFUSAL);
      // nats-server may lose its close frame (see the frame-level errors above); the bundled broker sends it.
      const closes = overWs.frames.filter((f) => f.opcode === OP.close);
      if (kind === "bundled") expect(closes).toHaveLength(1);
      for (const f of closes) expect(f.payload.readUInt16BE(0)).toBe(1008);

      // The admitted two were not disturbed.
      expect(await ws.sync()).toBe("PONG\r\n");
      expect(await tcp.sync()).toBe("PONG\r\n");

      // A TCP slot freed is a slot for a WebSocket client.
      await tcp.close();
      const next = await eventually("a WebSocket client admitted once the TCP one left", async () => {
        const c = await WsRawClient.open(server.wsPort!);
        opened.push(c);
        expect(await c.sync('CONNECT {"verbose":false}\r\n')).toBe("PONG\r\n");
        return c;
      });
      expect(next.closed).toBe(false);
    } finally {
      await Promise.all(opened.map((c) => c.close()));
    }
  });
});

// same_origin: a browser's Origin must name the host and port the request was sent to (its Host header);
// no Origin at all is a non-browser client and is accepted, as with allowed_origins.
describeEachServer("WebSocket same_origin", (kind: ServerKind) => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startServer(kind, { websocket: { sameOrigin: true } });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it("accepts an Origin of the listener's own host and port, and no Origin at all", async () => {
    const port = server.wsPort!;
    // The raw client's Host is 127.0.0.1:<port>.
    for (const headers of [{ Origin: `http://127.0.0.1:${port}` }, {}] as Record<string, string>[]) {
      const c = await WsRawClient.open(port, { headers });
      expect(c.response.status).toBe(101);
      expect(await c.sync()).toBe("PONG\r\n");
      await c.close();
    }
  });

  it("accepts the Host's default port when neither names one (http: 80)", async () => {
    const a = await rawHttp(server.wsPort!, upgradeRequest(server.wsPort!, { headers: { Host: "127.0.0.1", Origin: "http://127.0.0.1" } }).text);
    expect(a.status).toBe(101);
  });

  const other: [string, (port: number) => string][] = [
    ["another host", (port) => `http://localhost:${port}`],
    ["another port", (port) => `http://127.0.0.1:${port === 65535 ? port - 1 : port + 1}`],
    ["https on the port's default (443)", () => "https://127.0.0.1"],
  ];
  it.each(other)("refuses an Origin on %s with 403", async (_name, origin) => {
    const port = server.wsPort!;
    const a = await rawHttp(port, upgradeRequest(port, { headers: { Origin: origin(port) } }).text);
    expect(a.status).toBe(403);
    expect(a.headers["sec-websocket-accept"]).toBeUndefined();
  });
});

// Bundled only (a log of the broker's own): a WebSocket connection broken by a frame error or a socket
// error is logged as a broken TCP connection is, "connection closed" at debug with reason "connection
// error", not as a client that closed.
describe("WebSocket connection errors in the log [bundled]", () => {
  it("a frame error and a reset socket are logged as a TCP reset is: reason 'connection error'", async () => {
    const records: Record<string, unknown>[] = [];
    const log = pino({ level: "debug" }, { write: (line: string) => void records.push(JSON.parse(line) as Record<string, unknown>) });
    const broker = await startBroker({ port: 0, jetstream: false, websocket: { port: 0, host: "127.0.0.1" } }, log);
    const closedLog = (cid: unknown) => records.find((r) => r.msg === "connection closed" && r.cid === cid);
    try {
      // A TCP client whose socket is reset.
      const tcp = await RawClient.connect(broker.port);
      expect(await tcp.sync('CONNECT {"verbose":false}\r\n')).toBe("PONG\r\n");
      tcp.socket.resetAndDestroy();
      await waitFor("the TCP reset in the log", () => closedLog(tcp.info.client_id) !== undefined);

      // A WebSocket client that sends an unmasked frame (a frame error: close 1002).
      const bad = await WsRawClient.open(broker.wsPort!, { answerClose: true });
      expect(await bad.sync('CONNECT {"verbose":false}\r\n')).toBe("PONG\r\n");
      bad.write(buildFrame({ opcode: OP.binary, payload: "PING\r\n", mask: false }));
      await bad.waitClose();
      await waitFor("the frame error in the log", () => closedLog(bad.info.client_id) !== undefined);

      // A WebSocket client whose socket is reset.
      const reset = await WsRawClient.open(broker.wsPort!);
      expect(await reset.sync('CONNECT {"verbose":false}\r\n')).toBe("PONG\r\n");
      reset.socket.resetAndDestroy();
      await waitFor("the WebSocket reset in the log", () => closedLog(reset.info.client_id) !== undefined);

      const shape = (r: Record<string, unknown> | undefined) => ({ level: r?.level, msg: r?.msg, reason: r?.reason });
      const expected = { level: 20, msg: "connection closed", reason: "connection error" };
      expect(shape(closedLog(tcp.info.client_id))).toEqual(expected);
      expect(shape(closedLog(bad.info.client_id))).toEqual(expected);
      expect(shape(closedLog(reset.info.client_id))).toEqual(expected);
      // A WebSocket client that closes properly is still a client that closed.
      const good = await WsRawClient.open(broker.wsPort!, { answerClose: true });
      expect(await good.sync('CONNECT {"verbose":false}\r\n')).toBe("PONG\r\n");
      good.sendFrame({ opcode: OP.close, payload: closePayload(1000) });
      await good.waitClose();
      await waitFor("the clean close in the log", () => closedLog(good.info.client_id) !== undefined);
      expect(shape(closedLog(good.info.client_id))).toEqual({ ...expected, reason: "client closed" });
    } finally {
      await broker.close();
    }
  });
});

// Bundled only: the write deadline is judged from the bytes the peer's kernel has taken. A WebSocket
// client that never reads but pings keeps the broker writing pongs of its own; those must not count as
// progress (nor, with compression, the gap between what was handed to ws and what it queued compressed).
// nats-server's write deadline is a blocking write with a timeout, a different mechanism; the case
// exercises the bundled broker's progress accounting, so it runs there only.
describeEachServer(
  "WebSocket write deadline",
  (kind: ServerKind) => {
    const DEADLINE_MS = 400;
    // Above what loopback kernel buffers absorb from a peer that never reads, below max_pending (64 MiB),
    // so only the write deadline can cut the subscriber.
    const BURST_BYTES = 24 * 1024 * 1024;
    const CHUNK = 64 * 1024;

    it.each([
      ["plain", false],
      ["compression", true],
    ])("a subscriber that never reads but pings every deadline/4 is cut as a slow consumer (%s)", { timeout: 60_000 }, async (_name, compression) => {
      const server = await startServer(kind, { monitoring: true, writeDeadlineMs: DEADLINE_MS, websocket: { compression } });
      const pub = await connect({ servers: server.url, reconnect: false });
      let pinger: NodeJS.Timeout | undefined;
      let c: WsRawClient | undefined;
      try {
        const varz = async () => (await (await fetch(`${server.httpUrl}/varz`)).json()) as Record<string, unknown>;
        const headers: Record<string, string> = compression ? { "Sec-WebSocket-Extensions": "permessage-deflate; server_no_context_takeover; client_no_context_takeover" } : {};
        c = await WsRawClient.open(server.wsPort!, { headers, readInfo: false });
        if (compression) expect(c.response.headers["sec-websocket-extensions"]).toMatch(/^permessage-deflate\b/);
        c.send('CONNECT {"verbose":false}\r\nSUB > 1\r\nPING\r\n');
        await c.waitFrame((f) => f.opcode === OP.binary && f.payload.toString("latin1") === "PONG\r\n");
        // From here on the subscriber reads nothing, but sends a ping frame every deadline/4.
        c.socket.pause();
        const raw = c;
        pinger = setInterval(() => raw.sendFrame({ opcode: OP.ping, payload: "keepalive" }), DEADLINE_MS / 4);
        // Random bytes, so compression cannot shrink the burst into the kernel buffers.
        const chunk = randomBytes(CHUNK);
        for (let sent = 0; sent < BURST_BYTES; sent += CHUNK) {
          pub.publish("flood", chunk);
          if (sent % (1024 * 1024) === 0) await pub.flush();
        }
        await pub.flush();
        await waitFor("the silent subscriber to be cut as a slow consumer", async () => (await varz()).slow_consumers === 1, 30_000, 50);
        // The publisher was never the one cut.
        expect(pub.isClosed()).toBe(false);
        await pub.flush();
      } finally {
        if (pinger) clearInterval(pinger);
        await c?.close();
        await pub.close().catch(() => undefined);
        await server.stop();
      }
    });
  },
  ["bundled"],
);
