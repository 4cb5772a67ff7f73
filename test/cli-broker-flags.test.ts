// The CLI's broker flags where they cannot apply: `nex node up --server` starts no broker, so the
// bundled broker's WebSocket flags are refused (exit 2, usage) instead of being silently ignored.
import { rmSync } from "node:fs";
import { afterAll, describe, expect, it } from "vitest";
import { runNex, tempDir } from "./helpers/nex-cli.js";

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
