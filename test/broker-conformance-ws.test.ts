// Client-level conformance over WebSocket: every scenario of helpers/conformance-suite.ts, with nats.js
// connecting through `wsconnect` (and raw clients through helpers/ws-frames.ts) to nats-server's
// websocket listener and to the bundled broker's, with the same expectations as over TCP.
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, expect, it } from "vitest";
import { conformanceSuite } from "./helpers/conformance-suite.js";
import { describeEachServer, startServer, type RunningServer, type ServerKind } from "./helpers/servers.js";
import { wsConnect } from "./helpers/ws-client.js";
import { WsRawClient } from "./helpers/ws-frames.js";

conformanceSuite("websocket");

interface ConnInfo {
  cid: number;
  kind?: string;
  type?: string;
  ip: string;
  port: number;
  name?: string;
  lang?: string;
  version?: string;
  subscriptions: number;
  subscriptions_list?: string[];
  in_msgs: number;
  out_msgs: number;
  in_bytes: number;
  out_bytes: number;
  pending_bytes: number;
}

// One broker, clients on both listeners: a WebSocket client is a full client of the same broker, and
// the monitoring endpoints count and list it as nats-server 2.9.10 does. What nats-server reports for a
// WebSocket client in /connz: kind "Client", type "websocket" (a TCP client: type "nats"), ip/port of
// the client's socket, name/lang/version from its CONNECT (nats.js' wsconnect says lang "nats.ws"), and
// the same message/byte counters (NATS payload bytes, not frame bytes) as a TCP client. Its fields, as
// nats-server 2.9.10 lists them: WS_CONNZ_FIELDS. /varz has a `websocket` block with the listener's config.
const WS_CONNZ_FIELDS = [
  "cid", "kind", "type", "ip", "port", "start", "last_activity", "rtt", "uptime", "idle", "pending_bytes",
  "in_msgs", "out_msgs", "in_bytes", "out_bytes", "subscriptions", "name", "lang", "version", "subscriptions_list",
].sort();
const ORIGINS = ["http://app.example"];
describeEachServer("TCP and WebSocket clients on one broker", (kind: ServerKind) => {
  let server: RunningServer;
  const open: NatsConnection[] = [];
  beforeAll(async () => {
    server = await startServer(kind, { monitoring: true, websocket: { compression: true, allowedOrigins: ORIGINS } });
  });
  afterAll(async () => {
    await Promise.all(open.map((c) => c.close().catch(() => undefined)));
    await server?.stop();
  });
  const json = async <T>(p: string): Promise<T> => (await (await fetch(`${server.httpUrl}${p}`)).json()) as T;

  it("see each other's messages, requests and replies in both directions", async () => {
    const tcp = await connect({ servers: server.url, reconnect: false, name: "tcp-side" });
    const ws = await wsConnect({ servers: server.wsUrl!, reconnect: false, name: "ws-side" });
    open.push(tcp, ws);
    const atTcp: string[] = [];
    const atWs: string[] = [];
    tcp.subscribe("mix.>", { callback: (_e, m) => void atTcp.push(`${m.subject}=${m.string()}`) });
    ws.subscribe("mix.>", { callback: (_e, m) => void atWs.push(`${m.subject}=${m.string()}`) });
    tcp.subscribe("svc.tcp", { callback: (_e, m) => void m.respond(`tcp:${m.string()}`) });
    ws.subscribe("svc.ws", { callback: (_e, m) => void m.respond(`ws:${m.string()}`) });
    await tcp.flush();
    await ws.flush();
    tcp.publish("mix.a", "from-tcp");
    ws.publish("mix.b", "from-ws");
    await tcp.flush();
    await ws.flush();
    await tcp.flush();
    expect(atTcp.sort()).toEqual(["mix.a=from-tcp", "mix.b=from-ws"]);
    expect(atWs.sort()).toEqual(["mix.a=from-tcp", "mix.b=from-ws"]);
    expect((await ws.request("svc.tcp", "q1", { timeout: 5000 })).string()).toBe("tcp:q1");
    expect((await tcp.request("svc.ws", "q2", { timeout: 5000 })).string()).toBe("ws:q2");
  });

  it("/varz counts and /connz lists a WebSocket client field by field as nats-server does", async () => {
    const before = await json<{ connections: number; total_connections: number }>("/varz");
    const tcp = await connect({ servers: server.url, reconnect: false, name: "tcp-mon" });
    open.push(tcp);
    const raw = await WsRawClient.open(server.wsPort!);
    raw.send(`CONNECT ${JSON.stringify({ verbose: false, pedantic: false, name: "ws-mon", lang: "raw-ws", version: "9.9.9", protocol: 1 })}\r\n`);
    await raw.sync("SUB mon.in 1\r\nSUB mon.x 2\r\n");
    // 3 messages in from the WebSocket client (15 payload bytes), 2 out to it (10 bytes).
    await raw.sync("PUB mon.out 5\r\naaaaa\r\nPUB mon.out 5\r\nbbbbb\r\nPUB mon.out 5\r\nccccc\r\n");
    tcp.publish("mon.in", "ddddd");
    tcp.publish("mon.in", "eeeee");
    await tcp.flush();
    await raw.waitFor(/MSG mon\.in 1 5\r\neeeee\r\n/);
    await raw.sync();

    const varz = await json<{ connections: number; total_connections: number; websocket?: Record<string, unknown> }>("/varz");
    expect(varz.connections).toBe(before.connections + 2);
    expect(varz.total_connections).toBe(before.total_connections + 2);
    expect(varz.websocket).toEqual({ host: "127.0.0.1", port: server.wsPort, no_tls: true, compression: true, allowed_origins: ORIGINS });

    const connz = await json<{ num_connections: number; connections: ConnInfo[] }>("/connz?subs=1");
    expect(connz.num_connections).toBe(varz.connections);
    const wsInfo = connz.connections.find((c) => c.cid === raw.info.client_id);
    const tcpInfo = connz.connections.find((c) => c.name === "tcp-mon");
    expect(wsInfo).toBeDefined();
    expect(tcpInfo).toBeDefined();
    expect(wsInfo).toMatchObject({
      kind: "Client",
      type: "websocket",
      ip: "127.0.0.1",
      port: raw.socket.localPort,
      name: "ws-mon",
      lang: "raw-ws",
      version: "9.9.9",
      subscriptions: 2,
      in_msgs: 3,
      in_bytes: 15,
      out_msgs: 2,
      out_bytes: 10,
      pending_bytes: 0,
    });
    expect(wsInfo!.subscriptions_list?.sort()).toEqual(["mon.in", "mon.x"]);
    expect(Object.keys(wsInfo!).sort()).toEqual(WS_CONNZ_FIELDS);
    expect(tcpInfo).toMatchObject({ kind: "Client", type: "nats", ip: "127.0.0.1", name: "tcp-mon" });
    // A nats.js wsconnect client, as nats-server lists it.
    const viaJs = await wsConnect({ servers: server.wsUrl!, reconnect: false, name: "ws-js" });
    open.push(viaJs);
    await viaJs.flush();
    const js = (await json<{ connections: ConnInfo[] }>("/connz")).connections.find((c) => c.name === "ws-js");
    expect(js).toMatchObject({ cid: viaJs.info!.client_id, kind: "Client", type: "websocket", ip: "127.0.0.1", lang: "nats.ws" });
    expect(js!.version).toMatch(/^\d+\.\d+\.\d+/);
    // Looked up by cid, and gone from the list once it disconnects.
    const one = await json<{ connections: ConnInfo[] }>(`/connz?cid=${String(raw.info.client_id)}`);
    expect(one.connections.map((c) => [c.cid, c.type])).toEqual([[raw.info.client_id, "websocket"]]);
    await raw.close();
    let after = connz;
    for (let i = 0; i < 50 && after.connections.some((c) => c.cid === raw.info.client_id); i++) {
      await new Promise((r) => setTimeout(r, 50));
      after = await json("/connz");
    }
    expect(after.connections.some((c) => c.cid === raw.info.client_id)).toBe(false);
  });
});

// The harness's child-process mode: `nex broker --ws-port 0 --ws-host 127.0.0.1` (from dist/) prints
// "Listening for websocket clients on ws://..." and serves nats.js over it; a restart keeps the port.
describeEachServer(
  "nex broker --ws-port (child process)",
  () => {
    it("serves WebSocket clients on the printed URL, and again on the same port after a restart", async () => {
      const server = await startServer("bundled", { childProcess: true, jetstream: false, websocket: {} });
      try {
        expect(server.wsUrl).toMatch(/^ws:\/\/127\.0\.0\.1:\d+$/);
        for (const round of ["first", "after restart"]) {
          const ws = await wsConnect({ servers: server.wsUrl!, reconnect: false });
          const tcp = await connect({ servers: server.url, reconnect: false });
          try {
            tcp.subscribe("child.svc", { callback: (_e, m) => void m.respond(`${round}:${m.string()}`) });
            await tcp.flush();
            expect((await ws.request("child.svc", "x", { timeout: 5000 })).string()).toBe(`${round}:x`);
          } finally {
            await Promise.all([ws.close(), tcp.close()]);
          }
          if (round === "first") await server.restart();
        }
      } finally {
        await server.stop();
      }
    });
  },
  ["bundled"],
);
