// Client-level conformance: the official nats.js client against the bundled
// broker and the reference nats-server, with identical expectations, over TCP
// (test/broker-conformance.test.ts) and over WebSocket (test/broker-conformance-ws.test.ts):
// every scenario runs once per transport, so a WebSocket client must see exactly what a TCP one does.
// Over WebSocket the servers get a websocket listener (nats-server: `websocket { no_tls: true }`) and
// every client, nats.js (`wsconnect`) or raw (helpers/ws-frames.ts), connects through it.
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
import { AckPolicy, jetstream, jetstreamManager, type JsMsg } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { Objm } from "@nats-io/obj";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { take } from "./iterate.js";
import { connectLine, RawClient } from "./raw.js";
import { describeEachServer, startServer, type RunningServer, type ServerKind, type ServerOpts } from "./servers.js";
import { wsConnect } from "./ws-client.js";
import { WsRawClient } from "./ws-frames.js";

const te = new TextEncoder();
const td = new TextDecoder();

export type Transport = "tcp" | "websocket";

/** A raw protocol client over either transport: NATS protocol text in, everything after INFO out. */
interface RawConn {
  info: Record<string, unknown>;
  send(proto: string): void;
  sync(proto?: string, pongs?: number, timeoutMs?: number): Promise<string>;
  /** What the server sent after its INFO line (data frames' payloads over WebSocket). */
  afterInfo(): string;
  waitClose(timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
  /** Stop/resume reading the socket (a client that never reads). */
  pause(): void;
  resume(): void;
}

async function rawConn(transport: Transport, server: RunningServer): Promise<RawConn> {
  if (transport === "tcp") {
    const r = await RawClient.connect(server.port);
    return {
      info: r.info,
      send: (p) => r.send(p),
      sync: (p, n, t) => r.sync(p, n, t),
      afterInfo: () => r.text().slice(r.infoLine.length),
      waitClose: (t) => r.waitClose(t),
      close: () => r.close(),
      pause: () => r.socket.pause(),
      resume: () => r.socket.resume(),
    };
  }
  // Like any WebSocket client, it answers the server's close frame.
  const w = await WsRawClient.open(server.wsPort!, { answerClose: true });
  return {
    info: w.info,
    send: (p) => w.send(p),
    sync: (p, n, t) => w.sync(p, n, t),
    afterInfo: () => w.data().slice(w.infoLine.length),
    waitClose: (t) => w.waitClose(t),
    close: () => w.close(),
    pause: () => w.socket.pause(),
    resume: () => w.socket.resume(),
  };
}

export function conformanceSuite(transport: Transport): void {
  const title = transport === "tcp" ? "nats.js conformance" : "nats.js conformance over websocket";
  describeEachServer(title, (kind: ServerKind) => suite(kind, transport));
}

function suite(kind: ServerKind, transport: Transport): void {
  let server: RunningServer;
  const open: NatsConnection[] = [];
  /** A server of this kind, with a websocket listener when the clients go over WebSocket. */
  const start = (opts: ServerOpts = {}): Promise<RunningServer> =>
    startServer(kind, transport === "websocket" ? { ...opts, websocket: {} } : opts);
  const raw = (target: RunningServer = server): Promise<RawConn> => rawConn(transport, target);

  beforeAll(async () => {
    server = await start();
  });
  afterAll(async () => {
    await server?.stop();
  });
  afterEach(async () => {
    await Promise.all(open.splice(0).map((nc) => nc.close().catch(() => undefined)));
  });

  async function nc(opts: Partial<ConnectionOptions> = {}, target: RunningServer = server): Promise<NatsConnection> {
    // reconnect:false so a dropped connection surfaces instead of retrying silently.
    const c =
      transport === "tcp"
        ? await connect({ servers: target.url, reconnect: false, ...opts })
        : await wsConnect({ servers: target.wsUrl!, reconnect: false, ...opts });
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
      small = await start({ maxPayload: 1024 });
    });
    afterAll(async () => {
      await small?.stop();
    });

    it("advertises the configured limit and the client refuses bigger messages", async () => {
      const c = await nc({}, small);
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
      const watcher = await nc({}, small);
      const got = collect(watcher, "mp.raw");
      await watcher.flush();
      const r = await raw(small);
      expect(r.info.max_payload).toBe(1024);
      r.send('CONNECT {"verbose":false,"pedantic":false}\r\n');
      r.send(`PUB mp.raw 1025\r\n${"z".repeat(1025)}\r\n`);
      await r.waitClose();
      expect(r.afterInfo()).toBe("-ERR 'Maximum Payload Violation'\r\n");
      await watcher.flush();
      expect(got).toHaveLength(0);
      // The server itself is fine.
      const c = await nc({}, small);
      await expect(c.flush()).resolves.toBeUndefined();
    });
  });

  describe("authentication", () => {
    let secured: RunningServer;
    beforeAll(async () => {
      secured = await start({ auth: { users: [{ user: "ann", password: "pw1" }, { user: "bob", password: "pw2" }] } });
    });
    afterAll(async () => {
      await secured?.stop();
    });

    it("accepts each configured user and rejects bad or missing credentials", async () => {
      for (const [user, pass] of [["ann", "pw1"], ["bob", "pw2"]]) {
        const c = await nc({ user, pass }, secured);
        expect(c.info!.auth_required).toBe(true);
        await expect(c.flush()).resolves.toBeUndefined();
      }
      for (const creds of [{ user: "ann", pass: "pw2" }, { user: "eve", pass: "pw1" }, {}]) {
        await expect(nc(creds, secured)).rejects.toBeInstanceOf(AuthorizationError);
      }
    });

    it("token auth accepts the token and rejects anything else", async () => {
      const tok = await start({ auth: { token: "s3cr3t-token" } });
      try {
        const c = await nc({ token: "s3cr3t-token" }, tok);
        await expect(c.flush()).resolves.toBeUndefined();
        await expect(nc({ token: "wrong" }, tok)).rejects.toBeInstanceOf(AuthorizationError);
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
      guarded = await start({ monitoring: true, maxPending: 32 * 1024 * 1024, writeDeadlineMs: 6000 });
      const slow = await raw(guarded);
      await slow.sync("CONNECT {}\r\nSUB > 1\r\n");
      slow.pause(); // never reads again

      // Fill the kernel buffers and then the server's own queue for it, well past where producers stall
      // (4 MiB on the bundled broker) and well short of max_pending.
      const filler = await raw(guarded);
      const batch = `PUB fill 60000\r\n${"x".repeat(60000)}\r\n`.repeat(16);
      let pending = 0;
      for (let i = 0; i < 100 && pending < 8 * 1024 * 1024; i++) {
        await filler.sync(batch, 1, 30_000);
        pending = await pendingOf(slow.info.client_id);
      }
      expect(pending).toBeGreaterThanOrEqual(8 * 1024 * 1024);
      await filler.close();

      const responder = await nc({}, guarded);
      responder.subscribe("svc", { callback: (_err, m) => void m.respond(m.data) });
      const requester = await nc({}, guarded);
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
      slow.resume();
      await slow.waitClose(30_000);
      // Everyone else is still served.
      await expect(requester.request("svc", te.encode("after"), { timeout: 5000 })).resolves.toBeDefined();
    });
  });

  describe("JetStream", () => {
    // One JetStream server for these scenarios; every client (and so every JetStream API request,
    // KV watcher and consumer delivery) goes over the transport under test.
    let jsServer: RunningServer;
    beforeAll(async () => {
      jsServer = await start({ jetstream: true });
    });
    afterAll(async () => {
      await jsServer?.stop();
    });

    it("KV: put, get, compare-and-set, history, and a watcher on another connection sees live updates", async () => {
      const writer = await nc({}, jsServer);
      const watcherConn = await nc({}, jsServer);
      const kv = await new Kvm(writer).create("conf_kv", { history: 5 });
      const r1 = await kv.put("color", "red");
      const watched = await new Kvm(watcherConn).open("conf_kv");
      const watch = await watched.watch({ key: "color" });
      const it = watch[Symbol.asyncIterator]();
      try {
        // The watcher first gets the current value, then live updates.
        const [initial] = await take(it, 1, "initial value");
        expect([initial!.key, initial!.string(), initial!.revision]).toEqual(["color", "red", r1]);
        const r2 = await kv.update("color", "green", r1);
        await expect(kv.update("color", "blue", r1)).rejects.toThrow(/wrong last sequence/);
        await kv.delete("color");
        const live = await take(it, 2, "live updates");
        expect(live.map((e) => [e.operation, e.string(), e.revision])).toEqual([
          ["PUT", "green", r2],
          ["DEL", "", r2 + 1],
        ]);
      } finally {
        watch.stop();
      }
      expect(await kv.get("color")).toMatchObject({ operation: "DEL" });
      const hist: string[] = [];
      for await (const e of await kv.history({ key: "color" })) hist.push(`${e.operation}:${e.string()}`);
      expect(hist).toEqual(["PUT:red", "PUT:green", "DEL:"]);
    });

    it("object store: a multi-chunk object written on one connection reads back byte-for-byte on another", async () => {
      const data = new Uint8Array(400_000);
      for (let i = 0; i < data.length; i++) data[i] = (i * 2654435761) >>> 24;
      const os = await new Objm(await nc({}, jsServer)).create("conf_obj");
      const info = await os.putBlob({ name: "blob.bin", options: { max_chunk_size: 64 * 1024 } }, data);
      expect([info.size, info.chunks]).toEqual([data.length, 7]);
      const reader = await new Objm(await nc({}, jsServer)).open("conf_obj");
      const back = await reader.getBlob("blob.bin");
      expect(back).not.toBeNull();
      expect(Buffer.compare(Buffer.from(back!), Buffer.from(data))).toBe(0);
      expect(await reader.getBlob("missing")).toBeNull();
    });

    it("consumers: durable pull fetch with acks, and an ordered consumer sees a live publish from another connection", async () => {
      const c = await nc({}, jsServer);
      const jsm = await jetstreamManager(c);
      await jsm.streams.add({ name: "CONF", subjects: ["conf.>"] });
      const js = jetstream(c);
      for (let i = 0; i < 10; i++) await js.publish(`conf.${i % 2}`, `m${i}`);
      await jsm.consumers.add("CONF", { durable_name: "dur", ack_policy: AckPolicy.Explicit });
      const dur = await js.consumers.get("CONF", "dur");
      const batch = await dur.fetch({ max_messages: 4, expires: 2000 });
      const got: JsMsg[] = await take(batch[Symbol.asyncIterator](), 4, "fetch");
      for (const m of got) await m.ackAck();
      expect(got.map((m) => [m.seq, m.subject, m.string()])).toEqual([
        [1, "conf.0", "m0"],
        [2, "conf.1", "m1"],
        [3, "conf.0", "m2"],
        [4, "conf.1", "m3"],
      ]);
      expect(await dur.info()).toMatchObject({ num_pending: 6, num_ack_pending: 0, delivered: { stream_seq: 4 } });

      const oc = await js.consumers.get("CONF", { filter_subjects: "conf.1" });
      const msgs = await oc.consume();
      const it = msgs[Symbol.asyncIterator]();
      try {
        const replay = await take(it, 5, "ordered replay");
        expect(replay.map((m) => m.seq)).toEqual([2, 4, 6, 8, 10]);
        await jetstream(await nc({}, jsServer)).publish("conf.1", "live");
        const [live] = await take(it, 1, "ordered live");
        expect([live!.seq, live!.string()]).toEqual([11, "live"]);
      } finally {
        msgs.stop();
      }
    });
  });

  it("refuses subscriptions past max_subscriptions with -ERR and keeps the connection", async () => {
    const limited = await start({ maxSubscriptions: 3 });
    try {
      const r = await raw(limited);
      const subs = "SUB s.1 1\r\nSUB s.2 2\r\nSUB s.3 3\r\nSUB s.4 4\r\n";
      expect(await r.sync(connectLine() + subs)).toBe("-ERR 'maximum subscriptions exceeded'\r\nPONG\r\n");
      // Still connected; the first three subscriptions work, the refused one does not exist.
      expect(await r.sync("PUB s.3 1\r\na\r\nPUB s.4 1\r\nb\r\n")).toBe("MSG s.3 3 1\r\na\r\nPONG\r\n");
      await r.close();
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
}
