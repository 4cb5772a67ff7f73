// TLS on the client port: the same config files through `nats-server -c` and the bundled broker; and
// the WebSocket listener over TLS (wss://) with the same server certificate.
// Certificates are made here with openssl (a CA, a server certificate, a client certificate).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { wsconnect, type NatsConnection } from "@nats-io/nats-core";
import { connect } from "@nats-io/transport-node";
import { WebSocket } from "ws";
import { afterAll, beforeAll, expect, it } from "vitest";
import { connectLine, RawClient } from "./helpers/raw.js";
import { makeTestCertificates } from "./helpers/certs.js";
import { describeEachServer, startServer, type RunningServer, type ServerKind } from "./helpers/servers.js";

let dir: string;
const file = (name: string): string => path.join(dir, name);

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), "nex-tls-"));
  makeTestCertificates(dir);
  const tls = (extra: string) => `tls {\n  cert_file: "${file("server.pem")}"\n  key_file: "${file("server.key")}"\n${extra}}\n`;
  writeFileSync(file("tls.conf"), tls(""));
  writeFileSync(file("verify.conf"), tls(`  ca_file: "${file("ca.pem")}"\n  verify: true\n`));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describeEachServer("TLS", (kind: ServerKind) => {
  let plainTls: RunningServer;
  let verify: RunningServer;
  beforeAll(async () => {
    plainTls = await startServer(kind, { configFile: file("tls.conf") });
    verify = await startServer(kind, { configFile: file("verify.conf") });
  });
  afterAll(async () => {
    await plainTls?.stop();
    await verify?.stop();
  });

  it("INFO (in plaintext) says tls_required; tls_verify with verify", async () => {
    const a = await RawClient.connect(plainTls.port);
    expect(a.info.tls_required).toBe(true);
    expect(a.info.tls_verify).toBeUndefined();
    await a.close();
    const b = await RawClient.connect(verify.port);
    expect(b.info.tls_required).toBe(true);
    expect(b.info.tls_verify).toBe(true);
    await b.close();
  });

  it("a client speaking plain NATS is dropped", async () => {
    const c = await RawClient.connect(plainTls.port);
    c.send(connectLine() + "PING\r\n");
    await c.waitClose();
    expect(c.rest()).not.toContain("PONG");
  });

  it("a TLS client that trusts the CA connects and exchanges messages", async () => {
    const nc = await connect({ servers: plainTls.url, reconnect: false, tls: { caFile: file("ca.pem") } });
    const sub = nc.subscribe("t", { max: 1 });
    nc.publish("t", "over tls");
    for await (const m of sub) expect(m.string()).toBe("over tls");
    await nc.close();
  });

  it("with verify: no client certificate is refused, a CA-signed one is accepted", async () => {
    await expect(connect({ servers: verify.url, reconnect: false, tls: { caFile: file("ca.pem") } })).rejects.toThrow();
    const nc = await connect({
      servers: verify.url,
      reconnect: false,
      tls: { caFile: file("ca.pem"), certFile: file("client.pem"), keyFile: file("client.key") },
    });
    await nc.flush();
    await nc.close();
  });
});

/**
 * nats.js over wss:// trusting the test CA: wsconnect opens the global WebSocket with a URL only, so
 * for this connect the global is `ws`'s WebSocket with the CA added.
 */
async function wssConnect(url: string): Promise<NatsConnection> {
  const ca = readFileSync(file("ca.pem"));
  const g = globalThis as { WebSocket?: unknown };
  const before = g.WebSocket;
  g.WebSocket = class extends WebSocket {
    constructor(address: string, protocols?: string | string[]) {
      super(address, protocols, { ca });
    }
  };
  try {
    return await wsconnect({ servers: url, reconnect: false });
  } finally {
    g.WebSocket = before;
  }
}

describeEachServer("WebSocket over TLS (wss)", (kind: ServerKind) => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startServer(kind, { websocket: { tls: { certFile: file("server.pem"), keyFile: file("server.key") } } });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it("a wss client that trusts the CA connects, and publishes and receives with a TCP client", async () => {
    expect(server.wsUrl).toMatch(/^wss:\/\/127\.0\.0\.1:\d+$/);
    const wss = await wssConnect(server.wsUrl!);
    const tcp = await connect({ servers: server.url, reconnect: false });
    try {
      const toWss = wss.subscribe("wss.in", { max: 1 });
      const toTcp = tcp.subscribe("wss.out", { max: 1 });
      await Promise.all([wss.flush(), tcp.flush()]);
      tcp.publish("wss.in", "to the wss client");
      wss.publish("wss.out", "from the wss client");
      for await (const m of toWss) expect(m.string()).toBe("to the wss client");
      for await (const m of toTcp) expect(m.string()).toBe("from the wss client");
      // A request both ways through the TLS listener.
      tcp.subscribe("wss.echo", { callback: (_e, m) => void m.respond(m.data) });
      await tcp.flush();
      expect((await wss.request("wss.echo", "ping over wss", { timeout: 5000 })).string()).toBe("ping over wss");
    } finally {
      await Promise.all([wss.close(), tcp.close()]);
    }
  });

  it("a plain ws:// client gets no WebSocket, and a wss client that does not trust the CA neither", async () => {
    const attempt = (url: string) =>
      new Promise<string>((resolve) => {
        const ws = new WebSocket(url);
        ws.on("open", () => {
          resolve("open");
          ws.terminate();
        });
        ws.on("error", (e) => resolve(`error: ${e.message}`));
        ws.on("close", () => resolve("closed"));
      });
    expect(await attempt(server.wsUrl!.replace(/^wss:/, "ws:"))).toMatch(/^(error|closed)/);
    expect(await attempt(server.wsUrl!)).toMatch(/^error: .*(self-signed|unable to verify|certificate)/i);
    // The listener still serves wss after both.
    const nc = await wssConnect(server.wsUrl!);
    await nc.flush();
    await nc.close();
  });
});
