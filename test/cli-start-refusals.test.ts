// The CLI's refusals at start: flags that cannot apply (the bundled broker's WebSocket flags with --server,
// gateway settings without --web-port), values out of range, and a gateway that cannot listen.
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

describe("nex node up flag values", () => {
  const home = tempDir("nex-webflags-");
  afterAll(() => rmSync(home, { recursive: true, force: true }));

  const bad: [string[], RegExp][] = [
    [["--web-port", "70000"], /--web-port must be 0-65535/],
    [["--web-port", "abc"], /--web-port must be 0-65535/],
    [["--web-port", "0", "--web-host", ""], /--web-host must name an interface/],
    [["--web-port", "0", "--web-max-in-flight", "0"], /--web-max-in-flight must be a whole number from 1/],
    [["--web-port", "0", "--web-max-header-size", "99999999999"], /--web-max-header-size must be a whole number from 1024 to 1048576/],
    [["--web-port", "0", "--web-header-timeout", "0s"], /--web-header-timeout must be at least 1ms/],
    [["--web-port", "0", "--web-timeout", "soon"], /invalid duration "soon"/],
    // Only node ids (N...): not a user, an account, a wildcard or anything else.
    [["--trusted-node", "bogus"], /trusted_nodes\.0: must be a node id \(N\.\.\.\)/],
    [["--trusted-node", "*"], /trusted_nodes\.0: must be a node id/],
    [["--trusted-node", "A".repeat(56)], /trusted_nodes\.0: must be a node id/],
    // Replicas: a whole number 1-5 (JetStream's own range); the grace period: a duration up to an hour.
    [["--js-replicas", "abc"], /js_replicas: Invalid input: expected number/],
    [["--js-replicas", "0"], /js_replicas: Too small/],
    [["--js-replicas", "7"], /js_replicas: Too big/],
    [["--js-replicas", "2.5"], /js_replicas: Invalid input: expected int/],
    [["--failover-grace", "soon"], /invalid duration "soon"/],
    [["--failover-grace", "2h"], /failover_grace_ms: Too big/],
  ];
  it.each(bad)("%j is refused with its reason, before anything starts", async (args, reason) => {
    const res = await runNex(["node", "up", "--port", "0", "--data-dir", `${home}/node`, ...args], { NEX_HOME: home });
    expect(res.code).not.toBe(0);
    expect(res.stderr).toMatch(reason);
    expect(res.stdout).not.toMatch(/is up/);
  });

  it("refuses gateway settings without --web-port (they would be ignored)", async () => {
    const res = await runNex(["node", "up", "--port", "0", "--data-dir", `${home}/node`, "--web-host", "0.0.0.0", "--web-timeout", "5s"], { NEX_HOME: home });
    expect(res.code).toBe(2);
    expect(res.stderr).toBe("nex: --web-host, --web-timeout: HTTP gateway settings go with --web-port (no gateway starts without it)\n");
  });
});

describe("nex run --allow-deploy / --max-children values", () => {
  const home = tempDir("nex-grantflags-");
  afterAll(() => rmSync(home, { recursive: true, force: true }));
  const fixture = new URL("./fixtures/children/lobby.js", import.meta.url).pathname;

  it.each([["0"], ["1001"], ["2.5"], ["abc"]])("--max-children %s is refused", async (n) => {
    const res = await runNex(["run", fixture, "-t", "x.y", "--allow-deploy", fixture, "--max-children", n, "-s", "nats://127.0.0.1:1"], { NEX_HOME: home });
    expect(res.code).not.toBe(0);
    expect(res.stderr).toMatch(/--max-children <n>' argument .* is invalid\. a whole number from 1 to 1000/);
  });

  it("--max-children without --allow-deploy is refused", async () => {
    const res = await runNex(["run", fixture, "-t", "x.y", "--max-children", "3", "-s", "nats://127.0.0.1:1"], { NEX_HOME: home });
    expect(res.code).not.toBe(0);
    expect(res.stderr).toMatch(/--max-children goes with --allow-deploy/);
  });
});
