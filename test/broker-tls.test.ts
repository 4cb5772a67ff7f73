// TLS on the client port: the same config files through `nats-server -c` and the bundled broker.
// Certificates are made here with openssl (a CA, a server certificate, a client certificate).
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { connect } from "@nats-io/transport-node";
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
