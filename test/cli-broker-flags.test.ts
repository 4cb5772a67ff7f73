// The CLI's refusals at start: `nex node up --server` starts no broker, so the bundled broker's WebSocket
// flags are refused (exit 2, usage) instead of being silently ignored; a gateway that cannot listen ends the start.
import { rmSync } from "node:fs";
import net from "node:net";
import { afterAll, describe, expect, it } from "vitest";
import { runNex, tempDir } from "./helpers/nex-cli.js";
import { freePort } from "./helpers/servers.js";

describe("nex node up --server with --ws-* flags", () => {
  const home = tempDir("nex-wsflags-");
  afterAll(() => rmSync(home, { recursive: true, force: true }));

  // Nothing listens on port 1: a command that went past the check would fail on connecting instead.
  const server = "nats://127.0.0.1:1";
  const cases: [string, string[]][] = [
    ["--ws-port", ["--ws-port", "0"]],
    ["--ws-host", ["--ws-host", "127.0.0.1"]],
    ["--ws-compression", ["--ws-compression"]],
    ["--ws-allowed-origin", ["--ws-allowed-origin", "https://app.example.com"]],
  ];
  it.each(cases)("%s is refused as a bundled broker setting, before anything starts", async (flag, args) => {
    const res = await runNex(["node", "up", "--server", server, ...args], { NEX_HOME: home });
    expect(res.code).toBe(2);
    expect(res.stderr).toBe(
      `nex: ${flag}: the WebSocket listener is a bundled broker setting and cannot be combined with --server (configure the websocket block of that server instead)\n`,
    );
  });

  it("names every --ws-* flag given", async () => {
    const res = await runNex(["node", "up", "-s", server, "--ws-compression", "--ws-port", "8080", "--ws-host", "0.0.0.0"], { NEX_HOME: home });
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(/^nex: --ws-port, --ws-host, --ws-compression: the WebSocket listener is a bundled broker setting/);
  });
});

describe("nex node up whose HTTP gateway cannot listen", () => {
  const home = tempDir("nex-webport-");
  afterAll(() => rmSync(home, { recursive: true, force: true }));

  it("exits with the reason instead of running on without its gateway", async () => {
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
    const webPort = (taken.address() as net.AddressInfo).port;
    const brokerPort = await freePort();
    try {
      const res = await runNex(["node", "up", "--port", String(brokerPort), "--web-port", String(webPort), "--data-dir", `${home}/node`], { NEX_HOME: home });
      expect(res.code).not.toBe(0);
      expect(res.stderr).toMatch(new RegExp(`cannot start the HTTP gateway on 127\\.0\\.0\\.1:${webPort}: .*EADDRINUSE`));
      // Nothing of it stays up: the bundled broker it had started no longer holds its port.
      const again = net.createServer();
      await new Promise<void>((resolve, reject) => again.once("error", reject).listen(brokerPort, "127.0.0.1", resolve));
      await new Promise<void>((resolve) => again.close(() => resolve()));
    } finally {
      await new Promise<void>((resolve) => taken.close(() => resolve()));
    }
  }, 60_000);
});
