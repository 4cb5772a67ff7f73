// Byte-exact protocol tests over raw sockets. The same expectations run
// against the bundled broker and the reference nats-server 2.9.10.
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { connectLine, RawClient } from "./helpers/raw.js";
import { describeEachServer, startServer, type RunningServer, type ServerKind, type ServerOpts } from "./helpers/servers.js";
import { waitFor } from "./helpers/wait.js";

const QUIET = { verbose: false, pedantic: false };
const HDRS = { ...QUIET, headers: true };

describeEachServer("protocol", (kind: ServerKind) => {
  let server: RunningServer;
  const clients: RawClient[] = [];
  const extraServers: RunningServer[] = [];

  beforeAll(async () => {
    server = await startServer(kind);
  });
  afterAll(async () => {
    await server?.stop();
  });
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
    await Promise.all(extraServers.splice(0).map((s) => s.stop()));
  });

  async function raw(port = server.port): Promise<RawClient> {
    const c = await RawClient.connect(port);
    clients.push(c);
    return c;
  }

  /** Raw client that has sent CONNECT (with `fields`) and completed a PING/PONG. */
  async function client(fields: Record<string, unknown> = QUIET, port = server.port): Promise<RawClient> {
    const c = await raw(port);
    expect(await c.sync(connectLine(fields))).toBe("PONG\r\n");
    return c;
  }

  async function extra(opts: ServerOpts): Promise<RunningServer> {
    const s = await startServer(kind, opts);
    extraServers.push(s);
    return s;
  }

  /** Expect exactly `bytes` and then a close initiated by the server. */
  async function expectClosedWith(c: RawClient, bytes: string): Promise<void> {
    await c.waitClose();
    expect(c.rest()).toBe(bytes);
  }

  describe("INFO", () => {
    it("is sent first, unprompted, as one line with the fields clients need", async () => {
      const c = await raw();
      expect(c.text().startsWith("INFO ")).toBe(true);
      // 2.9.10 puts a space after the JSON; clients accept any trailing blanks.
      expect(c.infoLine).toMatch(/^INFO \{[^\r\n]*\}[ \t]*\r\n$/);
      const i = c.info;
      expect(typeof i.server_id).toBe("string");
      expect((i.server_id as string).length).toBeGreaterThan(0);
      expect(i.version).toMatch(/^\d+\.\d+\.\d+/);
      expect(i.proto).toBe(1);
      expect(i.headers).toBe(true);
      expect(i.max_payload).toBe(1048576);
      expect(i.port).toBe(server.port);
      expect(typeof i.host).toBe("string");
      expect(Number.isInteger(i.client_id)).toBe(true);
      expect(i.client_ip).toBe("127.0.0.1");
      // Nothing that would send clients elsewhere or demand TLS/auth.
      expect(i.auth_required ?? false).toBe(false);
      expect(i.tls_required ?? false).toBe(false);
      expect(i.connect_urls).toBeUndefined();
      // Nothing else follows until the client speaks.
      expect(await c.sync()).toBe("PONG\r\n");
    });

    it("gives each connection its own client_id", async () => {
      const ids = new Set<unknown>();
      for (let i = 0; i < 5; i++) ids.add((await raw()).info.client_id);
      expect(ids.size).toBe(5);
    });

    it("advertises a configured max_payload", async () => {
      const s = await extra({ maxPayload: 4096 });
      const c = await raw(s.port);
      expect(c.info.max_payload).toBe(4096);
    });
  });

  describe("CONNECT, verbose and PING", () => {
    it("verbose answers +OK to CONNECT, SUB, UNSUB and PUB", async () => {
      const c = await raw();
      const out = await c.sync(`${connectLine({ verbose: true })}SUB v.a 1\r\nUNSUB 1\r\nPUB v.a 2\r\nhi\r\n`);
      expect(out).toBe("+OK\r\n+OK\r\n+OK\r\n+OK\r\nPONG\r\n");
    });

    it("verbose acknowledges a PUB before delivering it", async () => {
      const c = await raw();
      const out = await c.sync(`${connectLine({ verbose: true })}SUB v.b 1\r\nPUB v.b 2\r\nhi\r\n`);
      expect(out).toBe("+OK\r\n+OK\r\n+OK\r\nMSG v.b 1 2\r\nhi\r\nPONG\r\n");
    });

    it("verbose acknowledges UNSUB of an unknown sid and nothing else happens", async () => {
      const c = await raw();
      expect(await c.sync(`${connectLine({ verbose: true })}UNSUB 99\r\n`)).toBe("+OK\r\n+OK\r\nPONG\r\n");
    });

    it("without CONNECT, server defaults apply (verbose on)", async () => {
      const c = await raw();
      expect(await c.sync("SUB nc.a 1\r\nPUB nc.a 1\r\nx\r\n")).toBe("+OK\r\n+OK\r\nMSG nc.a 1 1\r\nx\r\nPONG\r\n");
    });

    it("answers every PING with a PONG, in order, and ignores an unsolicited PONG", async () => {
      const c = await client();
      expect(await c.sync("PONG\r\nPING\r\nPING\r\n", 3)).toBe("PONG\r\nPONG\r\nPONG\r\n");
    });

    it("accepts protocol 0 and 1", async () => {
      await client({ ...QUIET, protocol: 0 });
      await client({ ...QUIET, protocol: 1 });
    });
  });

  describe("MSG / HMSG framing", () => {
    it("frames MSG without and with a reply subject, and zero-length payloads", async () => {
      const sub = await client();
      const pub = await client();
      expect(await sub.sync("SUB frame.a 7\r\n")).toBe("PONG\r\n");
      await pub.sync("PUB frame.a 5\r\nhello\r\nPUB frame.a reply.to 5\r\nworld\r\nPUB frame.a 0\r\n\r\n");
      expect(await sub.sync()).toBe(
        "MSG frame.a 7 5\r\nhello\r\nMSG frame.a 7 reply.to 5\r\nworld\r\nMSG frame.a 7 0\r\n\r\nPONG\r\n",
      );
    });

    it("frames queue subscriptions like plain ones and echoes opaque sids", async () => {
      const c = await client();
      const out = await c.sync("SUB fq q1 abc.def-1\r\nPUB fq 1\r\nx\r\n");
      expect(out).toBe("MSG fq abc.def-1 1\r\nx\r\nPONG\r\n");
    });

    it("delivers binary payloads containing CRLF and protocol words untouched", async () => {
      const c = await client();
      const payload = "\r\nMSG a 1 2\r\nPING\r\n\x00\xff";
      const out = await c.sync(`SUB bin 1\r\nPUB bin ${payload.length}\r\n${payload}\r\n`);
      expect(out).toBe(`MSG bin 1 ${payload.length}\r\n${payload}\r\nPONG\r\n`);
    });

    it("frames HPUB as HMSG with header and total sizes", async () => {
      const sub = await client(HDRS);
      const pub = await client(HDRS);
      const hdr = "NATS/1.0\r\nA: b\r\nA: c\r\n\r\n"; // 30 bytes
      await sub.sync("SUB h.a 3\r\n");
      await pub.sync(
        `HPUB h.a ${hdr.length} ${hdr.length + 5}\r\n${hdr}hello\r\n` +
          `HPUB h.a r.1 ${hdr.length} ${hdr.length}\r\n${hdr}\r\n`,
      );
      expect(await sub.sync()).toBe(
        `HMSG h.a 3 ${hdr.length} ${hdr.length + 5}\r\n${hdr}hello\r\n` +
          `HMSG h.a 3 r.1 ${hdr.length} ${hdr.length}\r\n${hdr}\r\nPONG\r\n`,
      );
    });

    it("strips headers into a plain MSG for a subscriber that did not negotiate headers", async () => {
      const plain = await client({ ...QUIET, headers: false });
      const noConnect = await raw(); // no CONNECT at all: headers default off (and verbose on)
      const pub = await client(HDRS);
      await plain.sync("SUB h.s 1\r\n");
      expect(await noConnect.sync("SUB h.s 2\r\n")).toBe("+OK\r\nPONG\r\n");
      const hdr = "NATS/1.0\r\nX: y\r\n\r\n";
      await pub.sync(`HPUB h.s rep ${hdr.length} ${hdr.length + 5}\r\n${hdr}hello\r\n`);
      expect(await plain.sync()).toBe("MSG h.s 1 rep 5\r\nhello\r\nPONG\r\n");
      expect(await noConnect.sync()).toBe("MSG h.s 2 rep 5\r\nhello\r\nPONG\r\n");
    });

    it("closes a connection that sends HPUB without having negotiated headers", async () => {
      const watcher = await client();
      await watcher.sync("SUB h.n 1\r\n");
      const c = await client({ ...QUIET, headers: false });
      c.send("HPUB h.n 12 14\r\nNATS/1.0\r\n\r\nhi\r\n");
      await c.waitClose();
      expect(c.rest()).not.toMatch(/MSG/);
      expect(await watcher.sync()).toBe("PONG\r\n");
    });
  });

  describe("subscriptions", () => {
    it("UNSUB with max delivers exactly max messages", async () => {
      const c = await client();
      const out = await c.sync(
        "SUB um 1\r\nUNSUB 1 2\r\nPUB um 1\r\na\r\nPUB um 1\r\nb\r\nPUB um 1\r\nc\r\n",
      );
      expect(out).toBe("MSG um 1 1\r\na\r\nMSG um 1 1\r\nb\r\nPONG\r\n");
    });

    it("UNSUB with a max already reached removes the subscription at once", async () => {
      const c = await client();
      const out = await c.sync("SUB ur 1\r\nPUB ur 1\r\na\r\nUNSUB 1 1\r\nPUB ur 1\r\nb\r\nSUB ur0 2\r\nUNSUB 2 0\r\nPUB ur0 1\r\nc\r\n");
      expect(out).toBe("MSG ur 1 1\r\na\r\nPONG\r\n");
    });

    it("plain UNSUB stops delivery; UNSUB of an unknown sid is silent", async () => {
      const c = await client();
      expect(await c.sync("SUB up 1\r\nUNSUB 1\r\nUNSUB 42\r\nPUB up 1\r\na\r\n")).toBe("PONG\r\n");
    });

    it("ignores a duplicate SUB with an existing sid and keeps the first", async () => {
      const c = await client();
      const out = await c.sync("SUB dup.a 1\r\nSUB dup.b 1\r\nPUB dup.a 1\r\na\r\nPUB dup.b 1\r\nb\r\n");
      expect(out).toBe("MSG dup.a 1 1\r\na\r\nPONG\r\n");
    });

    it("does not echo to the publisher when CONNECT had echo:false", async () => {
      const quiet = await client({ ...QUIET, echo: false });
      const other = await client();
      await other.sync("SUB e.f 9\r\n");
      expect(await quiet.sync("SUB e.f 1\r\nPUB e.f 1\r\nq\r\n")).toBe("PONG\r\n");
      expect(await other.sync()).toBe("MSG e.f 9 1\r\nq\r\nPONG\r\n");
      await other.sync("PUB e.f 1\r\no\r\n");
      expect(await quiet.sync()).toBe("MSG e.f 1 1\r\no\r\nPONG\r\n");
    });

    it("delivers publishes to subjects with literal wildcard tokens (not pedantic)", async () => {
      const c = await client();
      const out = await c.sync("SUB lit.* 1\r\nPUB lit.* 1\r\na\r\nPUB lit.> 1\r\nb\r\n");
      expect(out).toBe("MSG lit.* 1 1\r\na\r\nMSG lit.> 1 1\r\nb\r\nPONG\r\n");
    });
  });

  describe("lexical leniency", () => {
    it("accepts ops in any case", async () => {
      const c = await raw();
      const hdr = "NATS/1.0\r\n\r\n";
      const out = await c.sync(
        `connect {"verbose":false,"pedantic":false,"headers":true}\r\n` +
          `sub lc.a 1\r\nSuB lc.b 2\r\npub lc.a 1\r\na\r\nPuB lc.b 1\r\nb\r\n` +
          `hpub lc.a ${hdr.length} ${hdr.length + 1}\r\n${hdr}c\r\nunsub 1\r\nUnSuB 2\r\npub lc.a 1\r\nd\r\npInG\r\n`,
        2,
      );
      expect(out).toBe(
        `MSG lc.a 1 1\r\na\r\nMSG lc.b 2 1\r\nb\r\nHMSG lc.a 1 ${hdr.length} ${hdr.length + 1}\r\n${hdr}c\r\nPONG\r\nPONG\r\n`,
      );
    });

    it("accepts tabs and runs of whitespace as separators", async () => {
      const c = await client();
      const out = await c.sync("SUB\ttab.a\t\t1\r\nSUB  tab.a \t q \t2\r\nPUB\ttab.a \t rep\t  3\r\nabc\r\n");
      expect(out).toBe("MSG tab.a 1 rep 3\r\nabc\r\nMSG tab.a 2 rep 3\r\nabc\r\nPONG\r\n");
    });

    it("accepts bare \\n line endings on control lines", async () => {
      const c = await raw();
      c.send(`CONNECT {"verbose":false,"pedantic":false}\nSUB lf.a 1\nPUB lf.a 2\nhi\r\nPING\n`);
      expect(await c.waitFor(/^[\s\S]*?PONG\r\n/)).toBe("MSG lf.a 1 2\r\nhi\r\nPONG\r\n");
    });

    it("accepts a control line whose arguments are exactly max_control_line (4096) bytes", async () => {
      const c = await client();
      const subject = "s".repeat(4094); // "SUB " + 4094 + " 1": 4096 argument bytes
      expect(await c.sync(`SUB ${subject} 1\r\nPUB ${subject} 1\r\nx\r\n`)).toBe(`MSG ${subject} 1 1\r\nx\r\nPONG\r\n`);
    });
  });

  describe("errors", () => {
    it.each([
      ["an unknown op", "FOO bar\r\n"],
      ["a server-only op (MSG)", "MSG foo 1 2\r\nhi\r\n"],
      ["an op glued to its argument", "SUBSCRIBE foo 1\r\n"],
      ["PUB with no arguments at all", "PUB\r\n"],
      ["SUB with no arguments at all", "SUB\r\n"],
      ["a payload not followed by CRLF", "PUB foo 2\r\nhiXX\r\n"],
    ])("'Unknown Protocol Operation' for %s, then close", async (_name, bytes) => {
      const c = await client();
      c.send(bytes);
      await expectClosedWith(c, "-ERR 'Unknown Protocol Operation'\r\n");
    });

    it.each([
      ["PUB", "PUB big 1048577\r\n"],
      ["HPUB", "HPUB big 12 1048577\r\n"],
    ])("'Maximum Payload Violation' for an oversized %s, then close", async (_op, bytes) => {
      const c = await client(HDRS);
      c.send(bytes);
      await expectClosedWith(c, "-ERR 'Maximum Payload Violation'\r\n");
    });

    it("'Maximum Payload Violation' honours a configured max_payload", async () => {
      const s = await extra({ maxPayload: 100 });
      const c = await client(QUIET, s.port);
      expect(await c.sync(`SUB mp 1\r\nPUB mp 100\r\n${"a".repeat(100)}\r\n`)).toBe(
        `MSG mp 1 100\r\n${"a".repeat(100)}\r\nPONG\r\n`,
      );
      c.send("PUB mp 101\r\n");
      await expectClosedWith(c, "-ERR 'Maximum Payload Violation'\r\n");
    });

    it.each([
      ["a terminated line", `PUB ${"a".repeat(5000)} 2\r\nhi\r\n`],
      ["an unterminated line", `SUB ${"a".repeat(5000)}`],
      ["arguments of max+1 bytes", `SUB ${"s".repeat(4095)} 1\r\n`],
    ])("'maximum control line exceeded' for %s, then close", async (_name, bytes) => {
      const c = await client();
      c.send(bytes);
      await expectClosedWith(c, "-ERR 'maximum control line exceeded'\r\n");
    });

    it("'maximum control line exceeded' honours a configured max_control_line", async () => {
      const s = await extra({ maxControlLine: 256 });
      const ok = await client(QUIET, s.port);
      expect(await ok.sync(`SUB ${"a".repeat(200)} 1\r\n`)).toBe("PONG\r\n");
      const bad = await client(QUIET, s.port);
      bad.send(`SUB ${"a".repeat(300)} 1\r\n`);
      await expectClosedWith(bad, "-ERR 'maximum control line exceeded'\r\n");
    });

    it.each(["foo..bar", ".foo", "foo.", "foo.>.bar", ">.foo"])(
      "'Invalid Subject' for SUB %s, and the connection stays open",
      async (subject) => {
        const c = await client();
        const out = await c.sync(`SUB ${subject} 1\r\nSUB ok.subject 2\r\nPUB ok.subject 1\r\nx\r\n`);
        expect(out).toBe("-ERR 'Invalid Subject'\r\nMSG ok.subject 2 1\r\nx\r\nPONG\r\n");
        expect(c.closed).toBe(false);
      },
    );

    it.each([2, 3, -1])("'invalid client protocol' for protocol %i, then close", async (protocol) => {
      const c = await raw();
      c.send(connectLine({ protocol }));
      await expectClosedWith(c, "-ERR 'invalid client protocol'\r\n");
    });

    it.each([{ no_responders: true }, { no_responders: true, headers: false }])(
      "'no responders requires headers support' for CONNECT %o, then close",
      async (fields) => {
        const c = await raw();
        c.send(connectLine(fields));
        await expectClosedWith(c, "-ERR 'no responders requires headers support'\r\n");
      },
    );

    it.each([
      ["a non-numeric PUB size", "PUB foo abc\r\n"],
      ["a negative PUB size", "PUB foo -1\r\n"],
      ["too many PUB arguments", "PUB foo bar baz 1\r\nx\r\n"],
      ["too few SUB arguments", "SUB foo\r\n"],
      ["HPUB header size larger than total", "HPUB foo 20 10\r\n"],
      ["CONNECT with invalid JSON", "CONNECT {bad json\r\n"],
    ])("closes the connection on %s", async (_name, bytes) => {
      const c = await client(HDRS);
      c.send(bytes);
      await c.waitClose();
      expect(c.rest()).not.toMatch(/MSG|PONG/);
    });
  });

  describe("authorization", () => {
    it("user/password: wrong password gets 'Authorization Violation', then close", async () => {
      const s = await extra({ auth: { users: [{ user: "alice", password: "s3cret" }] } });
      const c = await raw(s.port);
      expect(c.info.auth_required).toBe(true);
      c.send(connectLine({ user: "alice", pass: "wrong" }));
      await expectClosedWith(c, "-ERR 'Authorization Violation'\r\n");
      const anon = await raw(s.port);
      anon.send(connectLine({}));
      await expectClosedWith(anon, "-ERR 'Authorization Violation'\r\n");
      const good = await client({ ...QUIET, user: "alice", pass: "s3cret" }, s.port);
      expect(await good.sync("SUB a 1\r\nPUB a 1\r\nx\r\n")).toBe("MSG a 1 1\r\nx\r\nPONG\r\n");
    });

    it("with auth on, an op before CONNECT is an 'Authorization Violation'", async () => {
      const s = await extra({ auth: { users: [{ user: "u", password: "p" }] } });
      const c = await raw(s.port);
      c.send("PING\r\n");
      await expectClosedWith(c, "-ERR 'Authorization Violation'\r\n");
    });

    it("token: wrong token gets 'Authorization Violation'; right token works", async () => {
      const s = await extra({ auth: { token: "t0ken" } });
      const bad = await raw(s.port);
      expect(bad.info.auth_required).toBe(true);
      bad.send(connectLine({ auth_token: "nope" }));
      await expectClosedWith(bad, "-ERR 'Authorization Violation'\r\n");
      await client({ ...QUIET, auth_token: "t0ken" }, s.port);
    });

    it("with auth on, a silent connection gets 'Authentication Timeout', then close", async () => {
      const s = await extra({ auth: { token: "t" }, authTimeoutMs: 300 });
      const c = await raw(s.port);
      await expectClosedWith(c, "-ERR 'Authentication Timeout'\r\n");
    });
  });

  describe("keepalive", () => {
    it("sends PINGs and closes with 'Stale Connection' when none are answered", async () => {
      const s = await extra({ pingIntervalMs: 100, maxPingsOut: 2 });
      const c = await client(QUIET, s.port);
      await c.waitClose(10_000);
      expect(c.rest()).toBe("PING\r\nPING\r\n-ERR 'Stale Connection'\r\n");
    });

    it("keeps a connection that answers its PINGs", async () => {
      const s = await extra({ pingIntervalMs: 100, maxPingsOut: 2 });
      const c = await client(QUIET, s.port);
      // Answer 5 server PINGs: longer than the stale cut-off of an idle client.
      for (let i = 0; i < 5; i++) {
        await c.waitFor(/^PING\r\n/, 10_000);
        c.send("PONG\r\n");
      }
      c.send("PING\r\n");
      await c.waitFor(/PONG\r\n/); // server PINGs may interleave
      expect(c.closed).toBe(false);
    });
  });

  describe("no responders", () => {
    it("sends the exact 503 HMSG to the requester's reply subscription", async () => {
      const c = await client({ ...HDRS, no_responders: true });
      const out = await c.sync("SUB _INBOX.x.* 7\r\nPUB nobody _INBOX.x.1 2\r\nhi\r\n");
      expect(out).toBe("HMSG _INBOX.x.1 7 16 16\r\nNATS/1.0 503\r\n\r\n\r\nPONG\r\n");
      const hdr = "NATS/1.0\r\n\r\n";
      const out2 = await c.sync(`HPUB nobody _INBOX.x.2 ${hdr.length} ${hdr.length + 1}\r\n${hdr}x\r\n`);
      expect(out2).toBe("HMSG _INBOX.x.2 7 16 16\r\nNATS/1.0 503\r\n\r\n\r\nPONG\r\n");
    });

    it("sends no 503 when there is a responder, no reply, no reply subscription, or no_responders is off", async () => {
      const nr = await client({ ...HDRS, no_responders: true });
      const responder = await client();
      await responder.sync("SUB svc 1\r\n");
      expect(await nr.sync("SUB inbox.a 7\r\nPUB svc inbox.a 1\r\nq\r\nPUB nobody 1\r\nq\r\nPUB nobody not.subscribed 1\r\nq\r\n")).toBe(
        "PONG\r\n",
      );
      expect(await responder.sync()).toBe("MSG svc 1 inbox.a 1\r\nq\r\nPONG\r\n");
      const off = await client(HDRS);
      expect(await off.sync("SUB inbox.b 7\r\nPUB nobody inbox.b 1\r\nq\r\n")).toBe("PONG\r\n");
    });
  });

  describe("slow consumer", () => {
    const open: NatsConnection[] = [];
    afterEach(async () => {
      await Promise.all(open.splice(0).map((nc) => nc.close().catch(() => undefined)));
    });

    it("disconnects a subscriber that never reads while others keep receiving", { timeout: 60_000 }, async () => {
      const s = await extra({ maxPending: 256 * 1024, maxPayload: 64 * 1024, writeDeadlineMs: 500 });
      const slow = await client(QUIET, s.port);
      await slow.sync("SUB flood 1\r\n");
      slow.socket.pause(); // stop reading: kernel buffers fill, then the server's queue

      const normal = await connect({ servers: s.url, reconnect: false });
      open.push(normal);
      let received = 0;
      normal.subscribe("flood", { callback: () => void received++ });
      await normal.flush();

      const pub = await client(QUIET, s.port);
      const frame = `PUB flood 60000\r\n${"x".repeat(60000)}\r\n`;
      const perBatch = 16; // ~1 MB per batch, well under max_pending for a reader that keeps up
      let sent = 0;
      // Publish ~48 MB in paced batches: far beyond loopback socket buffers plus max_pending.
      for (let b = 0; b < 48; b++) {
        pub.send(frame.repeat(perBatch));
        sent += perBatch;
        await pub.sync("", 1, 30_000);
        // Pace on the normal subscriber so that it never falls behind itself.
        await normal.flush();
        await waitFor("the normal subscriber to keep up", () => received >= sent, 30_000, 2);
        expect(received).toBe(sent);
      }
      // Let the slow one read what reached it: the server must have closed it.
      slow.socket.resume();
      await slow.waitClose(30_000);
      expect(slow.receivedBytes).toBeLessThan(sent * 60_000);
      // The normal subscriber is still connected and served.
      expect(normal.isClosed()).toBe(false);
      pub.send("PUB flood 4\r\nlast\r\n");
      await pub.sync();
      await normal.flush();
      expect(received).toBe(sent + 1);
    });
  });
});
