// HTTP triggers end to end (issue #16): `nex node up --web-port 0` and `nex run --http-path`, requests with
// Node's fetch (and raw sockets for what fetch will not send) against the real gateway, on the bundled
// broker and on nats-server -js (where a second node's gateway serves the route of a workload that runs on
// the first). Every status the README lists, bad input with the node still serving, route claims across
// namespaces, and the access feed.

import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import path from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { connect, headers as natsHeaders, type Msg, type NatsConnection } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import { fromSeed } from "@nats-io/nkeys";
import { signRequest } from "../src/protocol/signing.js";
import { ARTIFACT_BUCKET, ControlSubjects, PROTOCOL_VERSION } from "../src/protocol/control.js";
import { connectLine, RawClient } from "./helpers/raw.js";
import { describeEachServer } from "./helpers/servers.js";
import { eventually, waitFor } from "./helpers/wait.js";
import { type NodeProcess, NodeUnderTest, ROOT, runNex, webUrlOf } from "./helpers/nex-cli.js";

const fixture = (name: string): string => path.join(ROOT, "test/fixtures/http", name);

/** One request over a fresh socket, with whatever path and headers (fetch normalizes `..` and refuses some). */
function raw(base: string, method: string, p: string, headers: Record<string, string | number> = {}, body?: Uint8Array | string): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    let answered = false;
    const req = http.request({ host: u.hostname, port: Number(u.port), method, path: p, headers, agent: false }, (res) => {
      answered = true;
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (d) => (text += d));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
      res.on("error", reject);
    });
    // A server may answer (413, say) before the whole body is sent: what it answered counts, not a later write error.
    req.on("error", (err) => (answered ? undefined : reject(err)));
    if (body !== undefined) req.write(body, () => undefined);
    req.end();
  });
}

/**
 * One request as raw bytes over a fresh socket (for what Node's client refuses to send), read until the
 * server closes (send `Connection: close`); the status line's code, 0 if none. The socket is not half-closed:
 * the server would drop a request whose client ended its side.
 */
function rawBytes(base: string, request: string | Buffer): Promise<{ status: number; text: string }> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(u.port), u.hostname);
    let text = "";
    socket.setEncoding("latin1");
    socket.on("data", (d: string) => (text += d));
    socket.on("error", reject);
    socket.on("close", () => resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0), text }));
    socket.write(typeof request === "string" ? Buffer.from(request, "latin1") : request);
  });
}

describeEachServer("HTTP triggers through the node's gateway", (kind) => {
  let t: NodeUnderTest;
  let node: NodeProcess;
  let nc: NatsConnection;
  let web = "";
  let env: Record<string, string>;
  const ids: Record<string, string> = {};

  const nex = (...args: string[]) => runNex([...args, "-s", node.url], env);
  const stopped = async (id: string, ...args: string[]): Promise<number> => (await nex("workload", "stop", id, ...args)).code;
  const run = async (name: string, ...args: string[]): Promise<string> => {
    const r = await nex("run", ...args);
    expect(r.stderr, r.stderr).not.toMatch(/nex: /);
    expect(r.code).toBe(0);
    ids[name] = r.stdout.trim();
    return ids[name];
  };

  /**
   * A route in NEX_HTTP_ROUTES (namespace default) whose "workload" is this test's subscription: it sees
   * each NATS request as the gateway sent it. `answer` replies to a request and returns true, or leaves
   * it held (in flight at the gateway until the test answers it or the gateway's 504); GET <path>/probe
   * is answered "probe", which is how the helper knows the gateway routes the path.
   */
  const testRoute = async (name: string, routePath: string, answer: (m: Msg) => boolean = () => false, namespace = "default") => {
    const kv = await new Kvm(nc).open("NEX_HTTP_ROUTES");
    const key = `NTEST.${createHash("sha256").update(name).digest("hex").slice(0, 20)}`;
    const sub = nc.subscribe(`$NEX.HTTP.${namespace}.${name}`);
    const held: Msg[] = [];
    void (async () => {
      for await (const m of sub) {
        if (m.headers?.get("Nex-Http-Path") === `${routePath}/probe`) m.respond("probe");
        else if (!answer(m)) held.push(m);
      }
    })();
    await nc.flush();
    await kv.put(key, JSON.stringify({ namespace, name, route: { path: routePath } }));
    await eventually(`${routePath} on the gateway`, async () => {
      const r = await raw(web, "GET", `${routePath}/probe`);
      if (r.status !== 200) throw new Error(`${r.status}`);
    }, 5000);
    return {
      held,
      close: async (): Promise<void> => {
        sub.unsubscribe();
        await kv.delete(key);
      },
    };
  };

  /** A test route answering every request with `answer`, keeping each NATS request it was sent. */
  const spyRoute = async (name: string, routePath: string, answer: string) => {
    const seen: Msg[] = [];
    const route = await testRoute(name, routePath, (m) => {
      seen.push(m);
      m.respond(answer);
      return true;
    });
    return { seen, close: route.close };
  };

  beforeAll(async () => {
    t = await NodeUnderTest.start(kind, "http", [
      "--web-port", "0", "--web-max-in-flight", "8", "--web-header-timeout", "1s", "--web-timeout", "2s", "--web-max-header-size", "4096",
    ]);
    node = t.node;
    env = t.env;
    web = await webUrlOf(node);
    nc = await connect(t.connectOptions());
    await run("api", fixture("fetch.js"), "--name", "api", "--http-path", "/api", "-e", "GREETING=hi", "--trigger-timeout", "1s");
    await run("deep", fixture("fetch.js"), "--name", "deep", "--http-path", "/api/deep", "-e", "GREETING=deep");
    await run("slow", fixture("fetch.js"), "--name", "slow", "--http-path", "/slow", "--trigger-timeout", "20s");
    await run("plain", fixture("plain.js"), "--http-path", "/plain", "--http-method", "GET,PUT");
  }, 90_000);

  afterAll(async () => {
    await nc?.close();
    await t?.stop();
  });

  it("prints the gateway's URL and answers a fetch handler with its Request, env and Response.json", async () => {
    expect(web).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const res = await fetch(`${web}/api/x?q=1`, { headers: { "x-test": "yes" } });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/json");
    expect(await res.json()).toEqual({ method: "GET", path: "/api/x", q: "1", search: "?q=1", host: "127.0.0.1", ua: "yes", ct: null, body: "", env: "hi", hasHeaders: true });
    const post = await fetch(`${web}/api/p`, { method: "POST", headers: { "content-type": "text/plain" }, body: "hello" });
    expect(await post.json()).toMatchObject({ method: "POST", ct: "text/plain", body: "hello" });
  });

  it("maps a Response's status, headers and body (text, bytes, none, a plain object as JSON)", async () => {
    const made = await fetch(`${web}/api/status`);
    expect(made.status).toBe(201);
    expect(made.headers.get("x-made-by")).toBe("nex");
    expect(made.headers.get("set-cookie")).toBe("a=1");
    expect(await made.text()).toBe("made");
    const bytes = await fetch(`${web}/api/bytes`);
    expect(bytes.headers.get("content-type")).toBe("application/octet-stream");
    expect([...new Uint8Array(await bytes.arrayBuffer())]).toEqual([1, 2, 3]);
    const none = await fetch(`${web}/api/nobody`);
    expect(none.status).toBe(204);
    expect(await none.text()).toBe("");
    expect(await (await fetch(`${web}/api/plain`)).json()).toEqual({ plain: true });
  });

  it("gives a (subject, payload) function the request in this.request, and the body as payload", async () => {
    const res = await fetch(`${web}/plain/a?b=1`, { method: "PUT", body: "hi" });
    expect(res.status).toBe(200);
    expect(await res.text()).toBe("PUT /plain/a hi on $NEX.HTTP.default.plain");
  });

  it("routes the longest prefix, on segment boundaries, and answers 404 where no route is", async () => {
    expect(await (await fetch(`${web}/api/deep/x`)).json()).toMatchObject({ env: "deep", path: "/api/deep/x" });
    expect(await (await fetch(`${web}/api/deeper`)).json()).toMatchObject({ env: "hi" });
    const miss = await fetch(`${web}/apix`);
    expect(miss.status).toBe(404);
    expect(await miss.text()).toBe("404 Not Found\n");
    expect((await fetch(`${web}/`)).status).toBe(404);
  });

  it("refuses methods the route does not take (405 with Allow) and answers HEAD where GET is allowed", async () => {
    const post = await fetch(`${web}/plain/a`, { method: "POST", body: "x" });
    expect(post.status).toBe(405);
    expect(post.headers.get("allow")).toBe("GET, PUT, HEAD");
    const head = await fetch(`${web}/plain/a`, { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe("");
    expect(Number(head.headers.get("content-length"))).toBeGreaterThan(0);
  });

  it("answers an error reply with 500 and a short body without the workload's message", async () => {
    const res = await fetch(`${web}/api/throw`);
    expect(res.status).toBe(500);
    const body = await res.text();
    expect(body).toBe("500 Internal Server Error\n");
    expect(body).not.toMatch(/secret/);
  });

  it("answers 504 when the workload's deadline passes and when the gateway's does", async () => {
    const workload = await fetch(`${web}/api/hang`);
    expect(workload.status).toBe(504);
    const started = Date.now();
    const gateway = await fetch(`${web}/slow/hang`);
    expect(gateway.status).toBe(504);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1900);
  });

  it("answers 503 when a route has no responders (a node gone without releasing it)", async () => {
    const kv = await new Kvm(nc).open("NEX_HTTP_ROUTES");
    await kv.put("NGONE.0123456789abcdef0123", JSON.stringify({ namespace: "default", name: "gone", route: { path: "/gone" } }));
    try {
      const res = await eventually("the route on the gateway", async () => {
        const r = await fetch(`${web}/gone/x`);
        if (r.status === 404) throw new Error("not routed yet");
        return r;
      }, 5000);
      expect(res.status).toBe(503);
    } finally {
      await kv.delete("NGONE.0123456789abcdef0123");
    }
  });

  it("passes the gateway's Nex-Http-*, never a client's Nex-*/Nats-* headers, and carries many headers and Latin-1 values", async () => {
    const spy = await spyRoute("spy", "/spy", "spied");
    const seen = spy.seen;
    try {
      const forged = await raw(web, "GET", "/spy/x", {
        "Nex-Http-Method": "DELETE", "Nex-Http-Remote": "10.6.6.6", "Nex-Http-Route": "/api", "Nex-Status": "201",
        "Nats-Service-Error-Code": "500", "Nats-Expected-Stream": "x", "X-Custom": "kept",
      });
      expect(forged.status).toBe(200);
      expect(forged.body).toBe("spied");
      expect(seen).toHaveLength(1);
      const h = seen[0].headers;
      expect(h?.get("Nex-Http-Method")).toBe("GET");
      expect(h?.values("Nex-Http-Remote")).toEqual([expect.stringMatching(/127\.0\.0\.1$/)]);
      expect(h?.values("Nex-Http-Route")).toEqual(["/spy"]);
      expect(h?.has("Nex-Status")).toBe(false);
      expect((h?.keys() ?? []).filter((k) => /^nats-/i.test(k))).toEqual([]);
      expect(h?.get("X-Custom")).toBe("kept");
      // Many headers (up to --web-max-header-size, 4 KiB here), distinct and repeated, all carried.
      seen.length = 0;
      const many = Array.from({ length: 150 }, (_, i) => `X-H${i}: ${i}\r\n`).join("") + "X-R: 1\r\n".repeat(150);
      const carried = await rawBytes(web, `GET /spy/many HTTP/1.1\r\nHost: 127.0.0.1\r\n${many}Connection: close\r\n\r\n`);
      expect(carried.status).toBe(200);
      expect(seen).toHaveLength(1);
      expect(seen[0].headers?.get("X-H149")).toBe("149");
      expect(seen[0].headers?.values("X-R")).toHaveLength(150);
      // More than fits (names and values past 4 KiB): 431 from Node's parser, before any NATS request.
      const more = Array.from({ length: 200 }, (_, i) => `X-Fill-${i}: ${"v".repeat(20)}\r\n`).join("");
      expect((await rawBytes(web, `GET /spy/more HTTP/1.1\r\nHost: 127.0.0.1\r\n${more}Connection: close\r\n\r\n`)).status).toBe(431);
      // A Latin-1 byte in a value is that character (Node reads header bytes as Latin-1), sent on as UTF-8.
      const latin = await rawBytes(web, Buffer.from("GET /spy/latin HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Latin: caf\xe9\r\nConnection: close\r\n\r\n", "latin1"));
      expect(latin.status).toBe(200);
      expect(seen[1].headers?.get("X-Latin")).toBe("caf\u00e9");
      expect(seen).toHaveLength(2);
    } finally {
      await spy.close();
    }
  });

  it("refuses a request whose headers carry CR, LF, NUL or controls, or names that are not tokens (400), before any NATS request", async () => {
    const seen: Msg[] = [];
    const spy = await testRoute("spy2", "/spy2", (m) => {
      seen.push(m);
      m.respond("spied");
      return true;
    });
    try {
      const hostile = [
        "X-A: a\rNex-Http-Method: DELETE", "X-A: a\nNex-Http-Method: DELETE", "X-A: a\n Nex-Http-Method: DELETE", "X-A: a\r\rb",
        "X-A: a\u0000b", "X-A: a\u0001b", "X-A: a\u007fb",
        "X(a): 1", "X a: 1", "X@a: 1", "X\u007fa: 1", "caf\u00e9: 1", ": 1", "X-A : 1", " X-A: 1", "X-A\u0000: 1",
      ];
      for (const header of hostile) {
        const r = await rawBytes(web, `GET /spy2/x HTTP/1.1\r\nHost: 127.0.0.1\r\n${header}\r\nConnection: close\r\n\r\n`);
        expect(r.status, JSON.stringify(header)).toBe(400);
      }
      expect(seen).toHaveLength(0);
      expect((await raw(web, "GET", "/spy2/x")).status).toBe(200);
      expect(seen).toHaveLength(1);
    } finally {
      await spy.close();
    }
  });

  it("maps a workload's reply headers: status checked, framing dropped, headers HTTP cannot carry 502 (raw NATS replies), and keeps serving", async () => {
    // A hostile responder speaking the NATS protocol itself, so its reply headers are whatever bytes it writes.
    const o = t.connectOptions();
    const c = await RawClient.connect(Number(new URL(o.servers).port));
    c.send(connectLine({ headers: true, no_responders: true, ...(o.user ? { user: o.user, pass: o.pass } : {}) }));
    await c.sync("SUB $NEX.HTTP.default.rawspy 1\r\n");
    let lines: string[] = [];
    let body = "raw";
    const serving = (async () => {
      for (;;) {
        let line: string;
        try {
          line = await c.waitFor(/HMSG \S+ \S+ (\S+) (\d+) (\d+)\r\n/, 120_000);
        } catch {
          return; // closed
        }
        const [, replyTo, , total] = /HMSG \S+ \S+ (\S+) (\d+) (\d+)\r\n/.exec(line) ?? [];
        await c.waitForBytes(Number(total) + 2);
        const hdr = Buffer.from(`NATS/1.0\r\n${lines.map((l) => `${l}\r\n`).join("")}\r\n`, "utf8");
        const payload = Buffer.from(body, "utf8");
        c.send(Buffer.concat([Buffer.from(`HPUB ${replyTo} ${hdr.length} ${hdr.length + payload.length}\r\n`), hdr, payload, Buffer.from("\r\n")]));
      }
    })();
    const kv = await new Kvm(nc).open("NEX_HTTP_ROUTES");
    await kv.put("NTEST.0123456789abcdef0125", JSON.stringify({ namespace: "default", name: "rawspy", route: { path: "/rawspy" } }));
    try {
      await eventually("the rawspy route on the gateway", async () => {
        if ((await raw(web, "GET", "/rawspy/x")).status !== 200) throw new Error("not routed yet");
      }, 5000);
      const answer = async (given: string[], payload = "raw") => {
        lines = given;
        body = payload;
        return raw(web, "GET", "/rawspy/x");
      };
      // A status that is not an integer 200-599: 502.
      for (const status of ["abc", "99", "600", "1.5", "2e2", "0xc8", "200.0", "+200", "2\u0660\u0660"]) {
        const r = await answer([`Nex-Status: ${status}`]);
        expect(r.status, status).toBe(502);
        expect(r.body).toBe("502 Bad Gateway\n");
      }
      // Framing, Nex-* and Nats-* headers of the workload are dropped: the gateway frames the body itself.
      const framed = await answer(["Nex-Status: 201", "Transfer-Encoding: chunked", "Content-Length: 999", "Connection: close", "Nex-Other: 1", "X-Ok: caf\u00e9"]);
      expect(framed.status).toBe(201);
      expect(framed.body).toBe("raw");
      expect(framed.headers["transfer-encoding"]).toBeUndefined();
      expect(framed.headers["content-length"]).toBe("3");
      expect(framed.headers["nex-other"]).toBeUndefined();
      expect(framed.headers["x-ok"]).toBe("caf\u00e9"); // written as Latin-1, read back as Latin-1
      // Many headers pass as they are.
      const many = await answer(Array.from({ length: 500 }, (_, i) => `X-H${i}: ${i}`));
      expect(many.status).toBe(200);
      expect(many.headers["x-h499"]).toBe("499");
      // Names that are not HTTP tokens, values Node would not write (controls, above U+00FF), and header
      // lines NATS' own client cannot read (a space in a name, a bare CR or LF in a value): 502, with or without a body.
      const hostile = [["X(a): 1"], ["X@a: 1"], ["X-A: \u20ac"], ["X-A: a\u0001b"], ["X-A: a\u007fb"], ["X A: 1"], ["caf\u00e9: 1"], ["X-A: a\nb"], ["X-A: a\rb"]];
      for (const given of hostile) {
        for (const payload of ["raw", ""]) {
          const r = await answer(given, payload);
          expect(r.status, `${JSON.stringify(given)} ${JSON.stringify(payload)}`).toBe(502);
          expect(r.body).toBe("502 Bad Gateway\n");
        }
      }
      expect((await answer(["X-Ok: 1"])).status).toBe(200);
      expect((await fetch(`${web}/api/x`)).status).toBe(200);
    } finally {
      // Caught: a node that lost its connection cannot delete it, and that error would hide the one above.
      await kv.delete("NTEST.0123456789abcdef0125").catch(() => undefined);
      await c.close();
      await serving;
    }
  });

  it("a raw publisher's unreadable headers on a function's HTTP subject cost that message only: the runtime host keeps serving", async () => {
    // Whoever may publish to $NEX.HTTP.<ns>.<name> can write header lines nats.js cannot parse. Read inside
    // the runtime host's subscription callback, such a line used to end its connection's reader: every
    // function of that runtime host went deaf.
    const o = t.connectOptions();
    const c = await RawClient.connect(Number(new URL(o.servers).port));
    try {
      c.send(connectLine({ headers: true, no_responders: true, ...(o.user ? { user: o.user, pass: o.pass } : {}) }));
      await c.sync("SUB _INBOX.hostile.> 1\r\n");
      for (const [i, line] of ["Bad Name: x", "caf\u00e9: 1", "X-A: a\rb"].entries()) {
        const hdr = `NATS/1.0\r\n${line}\r\n\r\n`;
        const size = Buffer.byteLength(hdr, "latin1"); // RawClient sends a string as Latin-1 bytes
        await c.sync(`HPUB $NEX.HTTP.default.api _INBOX.hostile.${i} ${size} ${size + 4}\r\n${hdr}body\r\n`);
        // The message is answered with an error (as a trigger it cannot read), not left to time out.
        await c.waitFor(new RegExp(`HMSG _INBOX\\.hostile\\.${i} [^\\r]*\\r\\n[^]*?Nats-Service-Error-Code: 400`), 5000);
      }
      expect((await fetch(`${web}/api/x`)).status).toBe(200);
      expect((await fetch(`${web}/plain`)).status).toBe(200);
      expect((await nc.request(`$NEX.HTTP.default.api`, "", { timeout: 2000 })).string()).toMatch(/"method":"GET"/);
    } finally {
      await c.close();
    }
  });

  it("answers 413 for a body over max_payload (declared or streamed) and keeps serving", async () => {
    const big = new Uint8Array(2 * 1024 * 1024).fill(97);
    const declared = await raw(web, "POST", "/api/p", { "content-length": big.byteLength }, big);
    expect(declared.status).toBe(413);
    const chunked = await raw(web, "POST", "/api/p", { "transfer-encoding": "chunked" }, big);
    expect(chunked.status).toBe(413);
    // At the edge: a body that max_payload holds alone, but not with the request's headers, is 413 too
    // (never a NATS error), declared or streamed; one that fits with them goes through.
    const max = nc.info?.max_payload ?? 1024 * 1024;
    const edge = new Uint8Array(max - 64).fill(98);
    expect((await raw(web, "POST", "/api/p", { "content-length": edge.byteLength }, edge)).status).toBe(413);
    expect((await raw(web, "POST", "/api/p", { "transfer-encoding": "chunked" }, edge)).status).toBe(413);
    const fits = new Uint8Array(max - 8192).fill(99);
    expect((await raw(web, "POST", "/api/p", { "content-length": fits.byteLength }, fits)).status).toBe(200);
    expect((await fetch(`${web}/api/x`)).status).toBe(200);
  });

  it("answers 431 for oversized headers, 400 for .. and encoded dot segments, and keeps serving", async () => {
    expect((await raw(web, "GET", "/api/x", { "x-big": "a".repeat(8000) })).status).toBe(431);
    expect((await raw(web, "GET", "/api/../plain/a")).status).toBe(400);
    expect((await raw(web, "GET", "/api/%2e%2e/plain/a")).status).toBe(400);
    expect((await raw(web, "GET", "/api/./x")).status).toBe(400);
    expect((await raw(web, "GET", "*")).status).toBe(400);
    expect((await fetch(`${web}/api/x`)).status).toBe(200);
  });

  it("refuses a Host header with anything past its host and port (400): it would rewrite the URL the workload sees", async () => {
    const spy = await spyRoute("hosts", "/hosts", "ok");
    const seen = spy.seen;
    try {
      for (const host of ["127.0.0.1:1/admin/delete?all=1#", "a.example:1/hosts/../../admin#", "a.example b", "a.example:port"]) {
        expect((await raw(web, "GET", "/hosts/page", { host })).status, host).toBe(400);
      }
      expect(seen).toHaveLength(0);
      for (const host of ["shop.example:8080", "[::1]:80", "localhost"]) {
        const r = await raw(web, "GET", "/hosts/page?q=1", { host });
        expect(r.status, host).toBe(200);
      }
      expect(seen.map((m) => new URL(m.headers!.get("Nex-Http-Url")).pathname)).toEqual(["/hosts/page", "/hosts/page", "/hosts/page"]);
      expect(seen[0].headers!.get("Nex-Http-Url")).toBe("http://shop.example:8080/hosts/page?q=1");
    } finally {
      await spy.close();
    }
  });

  it("ignores route claims in the bucket that a deploy could not have made, and keeps serving", async () => {
    const kv = await new Kvm(nc).open("NEX_HTTP_ROUTES");
    const bad = [
      { namespace: "default", name: "m", route: { path: "/badm", methods: 1 } },
      { namespace: "default", name: "e", route: { path: "" } },
      { namespace: "no_such", name: "u", route: { path: "/badns" } },
      { namespace: "default", name: "a.b", route: { path: "/badname" } },
      { namespace: "default", name: "x", route: { path: "/badx", extra: true } },
    ];
    for (const [i, claim] of bad.entries()) await kv.put(`NTEST.bad${i}`, JSON.stringify(claim));
    // A good claim put after them is served once the gateway has read them all (the bucket's order).
    const after = await testRoute("afterbad", "/afterbad");
    try {
      for (const p of ["/badm/x", "/anything", "/badns/x", "/badname/x", "/badx/x"]) expect((await raw(web, "GET", p)).status, p).toBe(404);
      expect((await fetch(`${web}/api/x`)).status).toBe(200);
    } finally {
      await after.close();
      for (const i of bad.keys()) await kv.delete(`NTEST.bad${i}`);
    }
  });

  it("drops a slowloris client after the header timeout (408) while serving others", async () => {
    const u = new URL(web);
    const socket = net.connect(Number(u.port), u.hostname);
    let received = "";
    socket.on("data", (d) => (received += d));
    const closed = new Promise<void>((resolve) => socket.on("close", () => resolve()));
    socket.write("GET /api/x HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ");
    const drip = setInterval(() => socket.writable && socket.write("a"), 200);
    expect((await fetch(`${web}/api/x`)).status).toBe(200);
    await closed;
    clearInterval(drip);
    expect(received).toMatch(/^HTTP\/1\.1 408/);
  });

  it("keeps connections alive and answers 503 past its requests in flight", async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const u = new URL(web);
    const get = (): Promise<boolean> =>
      new Promise((resolve, reject) => {
        const req = http.get({ host: u.hostname, port: Number(u.port), path: "/api/x", agent }, (res) => {
          res.resume();
          res.on("end", () => resolve(req.reusedSocket));
        });
        req.on("error", reject);
      });
    expect(await get()).toBe(false);
    expect(await get()).toBe(true);
    agent.destroy();
    // 8 in flight at most, 4 of them for one namespace: two namespaces holding 4 each take every slot, so a third gets 503.
    const a = await testRoute("held-a", "/held-a");
    const b = await testRoute("held-b", "/held-b", undefined, "tenant-b");
    try {
      const pending = ["/held-a", "/held-a", "/held-a", "/held-a", "/held-b", "/held-b", "/held-b", "/held-b"].map((p) => raw(web, "GET", `${p}/x`));
      await waitFor("8 requests in flight", () => a.held.length + b.held.length === 8, 5000);
      const full = await raw(web, "GET", "/api/x");
      expect(full.status).toBe(503);
      expect(full.headers["retry-after"]).toBe("1");
      for (const m of [...a.held, ...b.held]) m.respond("done");
      // Answered, or the gateway's 504 if its 2 s passed first.
      for (const r of await Promise.all(pending)) expect([200, 504]).toContain(r.status);
      expect((await fetch(`${web}/api/x`)).status).toBe(200);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it("gives one namespace at most half the requests in flight: past it its routes get 503, other namespaces' still answer", async () => {
    const slow = await testRoute("held-c", "/held-c");
    const elsewhere = await testRoute("other", "/other-ns", (m) => (m.respond("other"), true), "tenant-b");
    try {
      const pending = Array.from({ length: 4 }, () => raw(web, "GET", "/held-c/x"));
      await waitFor("4 requests of the route in flight", () => slow.held.length === 4, 5000);
      // The namespace's share (4 of the gateway's 8) is taken: one more is refused at once, without
      // reaching the workload, and so is a request for another of its routes.
      const refused = await raw(web, "GET", "/held-c/y");
      expect(refused.status).toBe(503);
      expect(refused.headers["retry-after"]).toBe("1");
      expect(slow.held).toHaveLength(4);
      expect((await raw(web, "GET", "/api/x")).status).toBe(503);
      // Another namespace's route still answers: 4 slots of the gateway's are left.
      const other = await raw(web, "GET", "/other-ns/x");
      expect([other.status, other.body]).toEqual([200, "other"]);
      for (const m of slow.held) m.respond("done");
      for (const r of await Promise.all(pending)) expect([200, 504]).toContain(r.status);
      // Its requests done, the route takes requests again.
      expect((await raw(web, "GET", "/held-c/probe")).status).toBe(200);
    } finally {
      await slow.close();
      await elsewhere.close();
    }
  });

  it("logs every request to the access feed with status and duration", async () => {
    const sub = nc.subscribe("$NEX.FEED.default.http", { max: 50 });
    await nc.flush();
    await fetch(`${web}/api/x?feed=1`);
    await fetch(`${web}/plain/a`, { method: "DELETE" });
    const seen: { status: number; ms: number; path: string; workload?: string; method: string }[] = [];
    // One JSON object a line; lines of up to 100 ms go together in one message.
    for await (const m of sub) {
      for (const line of m.string().split("\n")) seen.push(JSON.parse(line));
      if (seen.some((e) => e.method === "DELETE")) break;
    }
    // (Lines of requests just before the subscription may come in the same message.)
    const get = seen.find((e) => e.method === "GET" && e.path === "/api/x");
    expect(get).toMatchObject({ status: 200, workload: "api", route: "/api" });
    expect(get?.ms).toBeGreaterThan(0);
    expect(seen.find((e) => e.method === "DELETE")).toMatchObject({ status: 405, workload: "plain", path: "/plain/a" });
  });

  it("refuses a route that overlaps another namespace's, and a second workload on the same route", async () => {
    const other = await nex("run", fixture("fetch.js"), "--name", "thief", "--http-path", "/api/deep/more", "-n", "other");
    expect(other.code).toBe(4);
    expect(other.stderr).toMatch(/overlaps \/api\/deep, which namespace default serves|overlaps \/api/);
    // "/" with a host of its own still covers the host-less /api of namespace default on that host.
    const above = await nex("run", fixture("fetch.js"), "--name", "thief", "--http-path", "/", "--http-host", "example.com", "-n", "other");
    expect(above.code).toBe(4);
    expect(above.stderr).toMatch(/overlaps \/api/);
    const hosted = await nex("run", fixture("fetch.js"), "--name", "hosted", "--http-path", "/api", "--http-host", "example.com", "-n", "other");
    expect(hosted.code).toBe(4);
    const same = await nex("run", fixture("fetch.js"), "--name", "twin", "--http-path", "/api");
    expect(same.code).toBe(4);
    expect(same.stderr).toMatch(/served by workload api/);
    const bad = await nex("run", fixture("fetch.js"), "--http-path", "/a/../b");
    expect(bad.code).toBe(2);
    // Another namespace may take what nobody serves, with a host of its own.
    const own = await nex("run", fixture("fetch.js"), "--name", "site", "--http-path", "/site", "--http-host", "shop.example", "-n", "other");
    expect(own.code).toBe(0);
    const viaHost = await raw(web, "GET", "/site/x", { host: "shop.example:8080" });
    expect(viaHost.status).toBe(200);
    expect((await raw(web, "GET", "/site/x")).status).toBe(404);
  });

  it("refuses a route on / without a host (every host's whole surface); / with a host is that host's", async () => {
    const cli = await nex("run", fixture("fetch.js"), "--name", "root", "--http-path", "/", "-n", "rootns");
    expect(cli.code).toBe(2);
    expect(cli.stderr).toMatch(/--http-host/);
    // The node refuses it too, from any sender (400, before any claim is looked at).
    const source = readFileSync(fixture("fetch.js"));
    const sha = createHash("sha256").update(source).digest("hex");
    const issuer = fromSeed(new TextEncoder().encode(readFileSync(path.join(t.home, "issuer.nk"), "utf8").trim()));
    const subject = ControlSubjects.deploy("rootns", node.nodeId);
    const data = new TextEncoder().encode(JSON.stringify({
      version: PROTOCOL_VERSION, name: "root", type: "javascript", artifact: { url: `nats://${ARTIFACT_BUCKET}/${sha}`, sha256: sha },
      trigger_subjects: [], requested_at: new Date().toISOString(), http: { path: "/" },
    }));
    const h = natsHeaders();
    for (const [k, v] of Object.entries(signRequest(issuer, subject, data))) h.set(k, v);
    const reply = (await nc.request(subject, data, { timeout: 15_000, headers: h })).json<{ error?: { code: number; message: string } }>();
    expect(reply.error?.code).toBe(400);
    expect(reply.error?.message).toMatch(/host/);
    // Another namespace's host-less route still deploys.
    const b = await nex("run", fixture("fetch.js"), "--name", "b", "--http-path", "/b", "-n", "bns");
    expect(b.code, b.stderr).toBe(0);
    expect((await raw(web, "GET", "/b/x")).status).toBe(200);
    expect(await stopped(b.stdout.trim(), "-n", "bns")).toBe(0);
    // With a host, "/" is accepted and serves that host only (a longer route still wins there).
    const hosted = await nex("run", fixture("fetch.js"), "--name", "root", "--http-path", "/", "--http-host", "root.example", "-e", "GREETING=root");
    expect(hosted.code, hosted.stderr).toBe(0);
    const there = await raw(web, "GET", "/x", { host: "root.example" });
    expect(there.status).toBe(200);
    expect(JSON.parse(there.body)).toMatchObject({ env: "root", path: "/x" });
    expect((await raw(web, "GET", "/x")).status).toBe(404);
    expect(JSON.parse((await raw(web, "GET", "/api/x", { host: "root.example" })).body)).toMatchObject({ env: "hi" });
    // Another namespace deploys beside it on a host of its own; a host-less route would be served on
    // root.example too, inside default's "/", so that one overlaps (hosts equal or either without one).
    const beside = await nex("run", fixture("fetch.js"), "--name", "c", "--http-path", "/c", "--http-host", "c.example", "-n", "bns");
    expect(beside.code, beside.stderr).toBe(0);
    expect((await raw(web, "GET", "/c/x", { host: "c.example" })).status).toBe(200);
    expect((await nex("run", fixture("fetch.js"), "--name", "c2", "--http-path", "/c", "-n", "bns")).code).toBe(4);
    expect(await stopped(beside.stdout.trim(), "-n", "bns")).toBe(0);
    expect(await stopped(hosted.stdout.trim())).toBe(0);
  });

  it("serves a route through another node's gateway", async () => {
    const peer = await t.peer(["--web-port", "0"]);
    const peerWeb = await webUrlOf(peer);
    expect(peerWeb).not.toBe(web);
    const res = await fetch(`${peerWeb}/api/x?q=2`);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ q: "2", env: "hi" });
  });

  it("drops a route when its workload goes", async () => {
    const stop = await nex("workload", "stop", ids.plain);
    expect(stop.code).toBe(0);
    await eventually("the route gone", async () => {
      const r = await fetch(`${web}/plain/a`);
      if (r.status !== 404) throw new Error(`still ${r.status}`);
    }, 5000);
    expect((await fetch(`${web}/api/x`)).status).toBe(200);
  });
});
