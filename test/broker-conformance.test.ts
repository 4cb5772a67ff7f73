// Client-level conformance: the official nats.js client against the bundled
// broker and the reference nats-server, with identical expectations.
import {
  AuthorizationError,
  connect,
  headers,
  InvalidArgumentError,
  NoRespondersError,
  RequestError,
  type ConnectionOptions,
  type Msg,
  type NatsConnection,
  type SubscriptionOptions,
} from "@nats-io/transport-node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { connectLine, RawClient } from "./helpers/raw.js";
import { describeEachServer, startServer, type RunningServer, type ServerKind } from "./helpers/servers.js";

const te = new TextEncoder();
const td = new TextDecoder();

describeEachServer("nats.js conformance", (kind: ServerKind) => {
  let server: RunningServer;
  const open: NatsConnection[] = [];

  beforeAll(async () => {
    server = await startServer(kind);
  });
  afterAll(async () => {
    await server?.stop();
  });
  afterEach(async () => {
    await Promise.all(open.splice(0).map((nc) => nc.close().catch(() => undefined)));
  });

  async function nc(opts: Partial<ConnectionOptions> = {}, url = server.url): Promise<NatsConnection> {
    // reconnect:false so a dropped connection surfaces instead of retrying silently.
    const c = await connect({ servers: url, reconnect: false, ...opts });
    open.push(c);
    return c;
  }

  /** Subscribe with a callback that records messages in arrival order. */
  function collect(c: NatsConnection, subject: string, opts: SubscriptionOptions = {}): Msg[] {
    const got: Msg[] = [];
    c.subscribe(subject, {
      ...opts,
      callback: (err, m) => {
        if (!err) got.push(m);
      },
    });
    return got;
  }

  /** After both flushes, anything the server routed from `pub` to `sub` has been dispatched. */
  async function barrier(pub: NatsConnection, sub: NatsConnection): Promise<void> {
    await pub.flush();
    await sub.flush();
  }

  describe("pub/sub", () => {
    it("delivers messages in order with subject and data intact", async () => {
      const sub = await nc();
      const pub = await nc();
      const got = collect(sub, "greet.one");
      await sub.flush();
      for (let i = 0; i < 5; i++) pub.publish("greet.one", `hello ${i}`);
      pub.publish("greet.two", "not for us");
      await barrier(pub, sub);
      expect(got.map((m) => [m.subject, m.string()])).toEqual(
        [0, 1, 2, 3, 4].map((i) => ["greet.one", `hello ${i}`]),
      );
    });

    it("fans out to every matching subscription, including two on one connection", async () => {
      const a = await nc();
      const b = await nc();
      const a1 = collect(a, "fan");
      const a2 = collect(a, "fan");
      const b1 = collect(b, "fan");
      await a.flush();
      await b.flush();
      b.publish("fan", "x");
      await barrier(b, a);
      expect([a1.length, a2.length, b1.length]).toEqual([1, 1, 1]);
    });

    it("'*' matches exactly one token", async () => {
      const sub = await nc();
      const got = collect(sub, "w.*.end");
      await sub.flush();
      for (const s of ["w.a.end", "w.b.end", "w.end", "w.a.b.end", "w.a.end.x", "w.a.endx"]) sub.publish(s, s);
      await sub.flush();
      expect(got.map((m) => m.subject)).toEqual(["w.a.end", "w.b.end"]);
    });

    it("'>' matches one or more trailing tokens but not the bare prefix", async () => {
      const sub = await nc();
      const got = collect(sub, "fw.>");
      await sub.flush();
      for (const s of ["fw", "fw.a", "fw.a.b.c", "fwx.a", "other.fw.a"]) sub.publish(s, s);
      await sub.flush();
      expect(got.map((m) => m.subject)).toEqual(["fw.a", "fw.a.b.c"]);
    });

    it("empty payloads arrive empty, with and without headers", async () => {
      const sub = await nc();
      const got = collect(sub, "empty");
      await sub.flush();
      sub.publish("empty");
      sub.publish("empty", new Uint8Array(0));
      const h = headers();
      h.set("K", "v");
      sub.publish("empty", undefined, { headers: h });
      await sub.flush();
      expect(got.map((m) => m.data.length)).toEqual([0, 0, 0]);
      expect(got.map((m) => m.headers?.get("K") ?? null)).toEqual([null, null, "v"]);
    });

    it("binary payloads arrive byte-for-byte (all byte values, CRLF and protocol words inside)", async () => {
      const sub = await nc();
      const pub = await nc();
      const got = collect(sub, "bin");
      await sub.flush();
      const all = Uint8Array.from({ length: 256 }, (_, i) => i);
      const tricky = te.encode("\r\nMSG bin 1 5\r\nPING\r\n+OK\r\n-ERR 'x'\r\n\r\n");
      const big = new Uint8Array(300_000);
      for (let i = 0; i < big.length; i++) big[i] = (i * 2654435761) >>> 24; // deterministic noise
      for (const p of [all, tricky, big]) pub.publish("bin", p);
      await barrier(pub, sub);
      expect(got).toHaveLength(3);
      expect(Buffer.from(got[0]!.data).equals(Buffer.from(all))).toBe(true);
      expect(Buffer.from(got[1]!.data).equals(Buffer.from(tricky))).toBe(true);
      expect(Buffer.from(got[2]!.data).equals(Buffer.from(big))).toBe(true);
    });

    it("handles many subscriptions on one connection", async () => {
      const sub = await nc();
      const pub = await nc();
      const n = 1500;
      const counts = new Array<number>(n).fill(0);
      for (let i = 0; i < n; i++) sub.subscribe(`many.${i}`, { callback: () => void counts[i]!++ });
      const wild = collect(sub, "many.*");
      await sub.flush();
      for (let i = 0; i < n; i++) pub.publish(`many.${i}`, String(i));
      await barrier(pub, sub);
      expect(counts.every((c) => c === 1)).toBe(true);
      expect(wild.map((m) => m.string())).toEqual(counts.map((_, i) => String(i)));
    });
  });

  describe("queue groups", () => {
    it("delivers each message to exactly one member and spreads the load", async () => {
      const conns = [await nc(), await nc(), await nc()];
      const members = conns.map((c) => collect(c, "work", { queue: "workers" }));
      const plain = collect(conns[0]!, "work");
      await Promise.all(conns.map((c) => c.flush()));
      const pub = await nc();
      const n = 300;
      for (let i = 0; i < n; i++) pub.publish("work", String(i));
      await pub.flush();
      await Promise.all(conns.map((c) => c.flush()));
      const seen = members.flatMap((m) => m.map((x) => Number(x.string())));
      expect(seen.sort((x, y) => x - y)).toEqual([...Array(n).keys()]);
      // Random pick per message: a member getting none of 300 has odds ~(2/3)^300.
      for (const m of members) expect(m.length).toBeGreaterThan(0);
      expect(plain).toHaveLength(n); // a plain subscriber alongside still gets everything
    });

    it("delivers one copy per distinct group", async () => {
      const c = await nc();
      const g1 = [collect(c, "grp", { queue: "a" }), collect(c, "grp", { queue: "a" })];
      const g2 = [collect(c, "grp", { queue: "b" })];
      await c.flush();
      c.publish("grp", "x");
      await c.flush();
      expect(g1[0]!.length + g1[1]!.length).toBe(1);
      expect(g2[0]!.length).toBe(1);
    });
  });

  describe("headers", () => {
    it("sets and reads headers, case preserved, repeated keys kept", async () => {
      const sub = await nc();
      const got = collect(sub, "hdr");
      await sub.flush();
      const h = headers();
      h.set("X-Trace", "abc-123");
      h.append("Multi", "one");
      h.append("Multi", "two");
      h.set("lower-case", "Value With Spaces");
      sub.publish("hdr", "body", { headers: h });
      await sub.flush();
      expect(got).toHaveLength(1);
      const m = got[0]!;
      expect(m.string()).toBe("body");
      expect(m.headers?.get("X-Trace")).toBe("abc-123");
      expect(m.headers?.values("Multi")).toEqual(["one", "two"]);
      expect(m.headers?.get("lower-case")).toBe("Value With Spaces");
      expect(m.headers?.keys().sort()).toEqual(["Multi", "X-Trace", "lower-case"]);
    });

    it("passes status lines through (code and description)", async () => {
      const sub = await nc();
      const got = collect(sub, "status");
      await sub.flush();
      sub.publish("status", "payload", { headers: headers(408, "Request Timeout") });
      sub.publish("status", undefined, { headers: headers(100, "Idle Heartbeat") });
      await sub.flush();
      expect(got.map((m) => [m.headers?.code, m.headers?.description, m.string()])).toEqual([
        [408, "Request Timeout", "payload"],
        [100, "Idle Heartbeat", ""],
      ]);
    });
  });

  describe("request/reply", () => {
    async function responder(c: NatsConnection, subject: string): Promise<void> {
      c.subscribe(subject, {
        callback: (_e, m) => {
          const h = headers();
          h.set("Echo-Subject", m.subject);
          m.respond(`re:${m.string()}`, { headers: h });
        },
      });
      await c.flush();
    }

    it("works with the default mux inbox, including concurrent requests", async () => {
      const srv = await nc();
      await responder(srv, "svc.echo");
      const cli = await nc();
      const replies = await Promise.all(
        [...Array(20).keys()].map((i) => cli.request("svc.echo", `q${i}`, { timeout: 5000 })),
      );
      expect(replies.map((r) => r.string())).toEqual([...Array(20).keys()].map((i) => `re:q${i}`));
      expect(replies[0]!.headers?.get("Echo-Subject")).toBe("svc.echo");
    });

    it("works old style with noMux (one inbox subscription per request)", async () => {
      const srv = await nc();
      await responder(srv, "svc.old");
      const cli = await nc();
      const r = await cli.request("svc.old", "ping", { timeout: 5000, noMux: true });
      expect(r.string()).toBe("re:ping");
      const r2 = await cli.request("svc.old", "again", { timeout: 5000, noMux: true });
      expect(r2.string()).toBe("re:again");
    });

    it("fails fast with no responders", async () => {
      const cli = await nc();
      for (const noMux of [false, true]) {
        const err = await cli.request("nobody.home", "x", { timeout: 5000, noMux }).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(RequestError);
        expect((err as RequestError).isNoResponders()).toBe(true);
        expect((err as RequestError).cause).toBeInstanceOf(NoRespondersError);
      }
    });
  });

  describe("subscription lifecycle", () => {
    it("auto-unsubscribes after max messages", async () => {
      const sub = await nc();
      const pub = await nc();
      const got: string[] = [];
      const s = sub.subscribe("auto", { max: 3, callback: (_e, m) => void got.push(m.string()) });
      await sub.flush();
      for (let i = 0; i < 6; i++) pub.publish("auto", String(i));
      await barrier(pub, sub);
      expect(got).toEqual(["0", "1", "2"]);
      expect(s.isClosed()).toBe(true);
      expect(s.getProcessed()).toBe(3);
    });

    it("drain delivers what was already sent, then closes", async () => {
      const sub = await nc();
      const pub = await nc();
      const got: string[] = [];
      sub.subscribe("drain.me", { callback: (_e, m) => void got.push(m.string()) });
      await sub.flush();
      for (let i = 0; i < 100; i++) pub.publish("drain.me", String(i));
      await pub.flush();
      await sub.drain();
      expect(sub.isClosed()).toBe(true);
      expect(got).toEqual([...Array(100).keys()].map(String));
    });

    it("subscription drain stops delivery but keeps the connection", async () => {
      const c = await nc();
      const got: string[] = [];
      const s = c.subscribe("sdrain", { callback: (_e, m) => void got.push(m.string()) });
      c.publish("sdrain", "before");
      await s.drain();
      c.publish("sdrain", "after");
      await c.flush();
      expect(got).toEqual(["before"]);
      expect(c.isClosed()).toBe(false);
    });

    it("flush resolves and orders after earlier publishes", async () => {
      const sub = await nc();
      const pub = await nc();
      const got = collect(sub, "fl");
      await sub.flush();
      pub.publish("fl", "1");
      await pub.flush();
      await sub.flush();
      expect(got.map((m) => m.string())).toEqual(["1"]);
      await expect(pub.flush()).resolves.toBeUndefined();
    });
  });

  describe("echo", () => {
    it("noEcho suppresses only the connection's own messages", async () => {
      const quiet = await nc({ noEcho: true });
      const other = await nc();
      const mine = collect(quiet, "echo");
      const theirs = collect(other, "echo");
      await quiet.flush();
      await other.flush();
      quiet.publish("echo", "from-quiet");
      other.publish("echo", "from-other");
      await barrier(quiet, other);
      await barrier(other, quiet);
      expect(mine.map((m) => m.string())).toEqual(["from-other"]);
      expect(theirs.map((m) => m.string()).sort()).toEqual(["from-other", "from-quiet"]);
    });

    it("echo is on by default", async () => {
      const c = await nc();
      const got = collect(c, "echo.default");
      await c.flush();
      c.publish("echo.default", "self");
      await c.flush();
      expect(got.map((m) => m.string())).toEqual(["self"]);
    });
  });

  describe("server info", () => {
    it("exposes the fields clients rely on", async () => {
      const c = await nc();
      const info = c.info!;
      expect(info.version).toMatch(/^\d+\.\d+\.\d+/);
      expect(info.max_payload).toBe(1024 * 1024);
      expect(info.headers).toBe(true);
      expect(info.proto).toBe(1);
      expect(typeof info.client_id).toBe("number");
      expect(info.client_ip).toBe("127.0.0.1");
      expect(typeof info.server_id).toBe("string");
      expect(info.server_id.length).toBeGreaterThan(0);
      const c2 = await nc();
      expect(c2.info!.client_id).not.toBe(info.client_id);
    });
  });

  describe("max payload", () => {
    let small: RunningServer;
    beforeAll(async () => {
      small = await startServer(kind, { maxPayload: 1024 });
    });
    afterAll(async () => {
      await small?.stop();
    });

    it("advertises the configured limit and the client refuses bigger messages", async () => {
      const c = await nc({}, small.url);
      expect(c.info!.max_payload).toBe(1024);
      const got = collect(c, "mp");
      await c.flush();
      c.publish("mp", new Uint8Array(1024)); // exactly at the limit: allowed
      expect(() => c.publish("mp", new Uint8Array(1025))).toThrow(InvalidArgumentError);
      // Headers count towards the limit too.
      const h = headers();
      h.set("Pad", "x".repeat(100));
      expect(() => c.publish("mp", new Uint8Array(1000), { headers: h })).toThrow(/max_payload/);
      await c.flush();
      expect(got.map((m) => m.data.length)).toEqual([1024]);
      expect(c.isClosed()).toBe(false);
    });

    it("rejects an oversized PUB from a client that ignores max_payload, then closes it", async () => {
      const watcher = await nc({}, small.url);
      const got = collect(watcher, "mp.raw");
      await watcher.flush();
      const raw = await RawClient.connect(small.port);
      expect(raw.info.max_payload).toBe(1024);
      raw.send('CONNECT {"verbose":false,"pedantic":false}\r\n');
      raw.send(`PUB mp.raw 1025\r\n${"z".repeat(1025)}\r\n`);
      await raw.waitClose();
      expect(raw.text().slice(raw.infoLine.length)).toBe("-ERR 'Maximum Payload Violation'\r\n");
      await watcher.flush();
      expect(got).toHaveLength(0);
      // The server itself is fine.
      const c = await nc({}, small.url);
      await expect(c.flush()).resolves.toBeUndefined();
    });
  });

  describe("authentication", () => {
    let secured: RunningServer;
    beforeAll(async () => {
      secured = await startServer(kind, { auth: { users: [{ user: "ann", password: "pw1" }, { user: "bob", password: "pw2" }] } });
    });
    afterAll(async () => {
      await secured?.stop();
    });

    it("accepts each configured user and rejects bad or missing credentials", async () => {
      for (const [user, pass] of [["ann", "pw1"], ["bob", "pw2"]]) {
        const c = await nc({ user, pass }, secured.url);
        expect(c.info!.auth_required).toBe(true);
        await expect(c.flush()).resolves.toBeUndefined();
      }
      for (const creds of [{ user: "ann", pass: "pw2" }, { user: "eve", pass: "pw1" }, {}]) {
        await expect(nc(creds, secured.url)).rejects.toBeInstanceOf(AuthorizationError);
      }
    });

    it("token auth accepts the token and rejects anything else", async () => {
      const tok = await startServer(kind, { auth: { token: "s3cr3t-token" } });
      try {
        const c = await nc({ token: "s3cr3t-token" }, tok.url);
        await expect(c.flush()).resolves.toBeUndefined();
        await expect(nc({ token: "wrong" }, tok.url)).rejects.toBeInstanceOf(AuthorizationError);
      } finally {
        await Promise.all(open.splice(0).map((x) => x.close().catch(() => undefined)));
        await tok.stop();
      }
    });
  });

  describe("a client that never reads", () => {
    let guarded: RunningServer;
    const varz = async (): Promise<Record<string, unknown>> => (await (await fetch(`${guarded.httpUrl}/varz`)).json()) as Record<string, unknown>;
    const pendingOf = async (cid: unknown): Promise<number> => {
      const connz = (await (await fetch(`${guarded.httpUrl}/connz?cid=${String(cid)}`)).json()) as { connections?: { pending_bytes: number }[] };
      return connz.connections?.[0]?.pending_bytes ?? -1;
    };
    afterEach(async () => {
      await guarded?.stop();
    });

    it("is cut off as a slow consumer, and meanwhile request/reply stays fast", { timeout: 90_000 }, async () => {
      // Short enough for a test, long enough to measure while the slow client still exists.
      guarded = await startServer(kind, { monitoring: true, maxPending: 32 * 1024 * 1024, writeDeadlineMs: 6000 });
      const slow = await RawClient.connect(guarded.port);
      await slow.sync("CONNECT {}\r\nSUB > 1\r\n");
      slow.socket.pause(); // never reads again

      // Fill the kernel buffers and then the server's own queue for it, well past where producers stall
      // (4 MiB on the bundled broker) and well short of max_pending.
      const filler = await RawClient.connect(guarded.port);
      const batch = `PUB fill 60000\r\n${"x".repeat(60000)}\r\n`.repeat(16);
      let pending = 0;
      for (let i = 0; i < 100 && pending < 8 * 1024 * 1024; i++) {
        await filler.sync(batch, 1, 30_000);
        pending = await pendingOf(slow.info.client_id);
      }
      expect(pending).toBeGreaterThanOrEqual(8 * 1024 * 1024);
      await filler.close();

      const responder = await nc({}, guarded.url);
      responder.subscribe("svc", { callback: (_err, m) => void m.respond(m.data) });
      const requester = await nc({}, guarded.url);
      await requester.flush();
      await responder.flush();
      const roundTrips: number[] = [];
      const started = performance.now();
      for (let i = 0; i < 220 && performance.now() - started < 20_000; i++) {
        const t0 = performance.now();
        await requester.request("svc", te.encode("ping"), { timeout: 5000 });
        if (i >= 20) roundTrips.push(performance.now() - t0); // the first ones warm up
      }
      // The measurement ran while the slow client was still there.
      expect((await varz()).slow_consumers).toBe(0);
      expect(roundTrips.length, "200 round trips within 20 s").toBe(200);
      roundTrips.sort((x, y) => x - y);
      expect(roundTrips[100]).toBeLessThan(10); // p50 in ms

      // The write deadline passes and the server lets go of it.
      let cut = 0;
      for (let waited = 0; waited < 30_000 && cut === 0; waited += 250) {
        await new Promise((r) => setTimeout(r, 250));
        cut = (await varz()).slow_consumers as number;
      }
      expect(cut).toBeGreaterThanOrEqual(1);
      slow.socket.resume();
      await slow.waitClose(30_000);
      // Everyone else is still served.
      await expect(requester.request("svc", te.encode("after"), { timeout: 5000 })).resolves.toBeDefined();
    });
  });

  it("refuses subscriptions past max_subscriptions with -ERR and keeps the connection", async () => {
    const limited = await startServer(kind, { maxSubscriptions: 3 });
    try {
      const raw = await RawClient.connect(limited.port);
      const subs = "SUB s.1 1\r\nSUB s.2 2\r\nSUB s.3 3\r\nSUB s.4 4\r\n";
      expect(await raw.sync(connectLine() + subs)).toBe("-ERR 'maximum subscriptions exceeded'\r\nPONG\r\n");
      // Still connected; the first three subscriptions work, the refused one does not exist.
      expect(await raw.sync("PUB s.3 1\r\na\r\nPUB s.4 1\r\nb\r\n")).toBe("MSG s.3 3 1\r\na\r\nPONG\r\n");
      await raw.close();
    } finally {
      await limited.stop();
    }
  });

  it("decodes text payloads as UTF-8", async () => {
    const c = await nc();
    const got = collect(c, "utf8");
    await c.flush();
    c.publish("utf8", "héllo wörld ✓ 🚀");
    await c.flush();
    expect(td.decode(got[0]!.data)).toBe("héllo wörld ✓ 🚀");
  });
});
