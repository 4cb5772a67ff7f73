// A real browser on the broker's WebSocket listener (issue #14): Debian's Chromium, driven by
// playwright-core, loads a page served from 127.0.0.1 whose module (test/fixtures/browser/page.js,
// bundled here with esbuild) talks NATS itself with wsconnect() from @nats-io/nats-core: it subscribes
// and publishes to itself, asks a JavaScript function deployed with `nex run`, and reads a KV key this
// test wrote over TCP. The test asserts what the page shows. Runs on a node with its bundled broker
// (`nex node up --ws-port 0`) and on a node connected to nats-server with a websocket block, the
// reference the bundled broker must not be told apart from.
//
// Needs Chromium at /usr/bin/chromium (`apt-get install chromium`; .ci/run installs it): without it the
// suite fails, it does not skip (NEX_CHROMIUM=<path> runs another Chromium build). A screenshot of the page goes to the suite's temp dir (kept, and named,
// when a test fails); NEX_BROWSER_SCREENSHOT=<dir/x.png> copies the bundled broker's to dir/x.png and
// nats-server's to dir/x-nats-server.png.

import { copyFileSync, existsSync, readFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, expect, it, onTestFailed } from "vitest";
import { build } from "esbuild";
import { type BrowserContext, chromium } from "playwright-core";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import { describeEachServer } from "./helpers/servers.js";
import { NodeUnderTest, removeDir, ROOT, runNex, tempDir } from "./helpers/nex-cli.js";

/** Debian's Chromium; NEX_CHROMIUM names another build. */
const CHROMIUM = process.env.NEX_CHROMIUM ?? "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--headless",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
const FIXTURES = path.join(ROOT, "test/fixtures/browser");

describeEachServer("a browser on the broker's WebSocket listener", (kind) => {
  let dir = "";
  let keep = false;
  let t: NodeUnderTest | undefined;
  let nc: NatsConnection | undefined;
  let server: http.Server | undefined;
  let context: BrowserContext | undefined;
  let closing = async (): Promise<void> => undefined;
  let pageUrl = "";

  const nonce = randomBytes(4).toString("hex");
  const config = {
    broker: kind === "bundled" ? "the bundled broker (nex node up --ws-port 0)" : "nats-server's websocket listener",
    ws_url: "",
    user: "",
    password: "",
    echo_subject: `browser.echo.${nonce}`,
    echo_message: `hello from Chromium ${nonce}`,
    function_subject: "browser.greet",
    function_payload: `browser ${nonce}`,
    kv_bucket: "browser_demo",
    kv_key: "greeting",
  };
  const kvValue = `written over TCP before the page loaded (${nonce})`;

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) {
      throw new Error(`Chromium is not installed at ${CHROMIUM}: this suite drives a real browser (apt-get install chromium; .ci/run installs it)`);
    }
    dir = tempDir("nex-browser-");

    // The page's module, bundled for the browser: nats-core, kv, jetstream and their dependencies (tweetnacl...).
    await build({
      entryPoints: [path.join(FIXTURES, "page.js")],
      outfile: path.join(dir, "page.js"),
      bundle: true,
      format: "esm",
      platform: "browser",
      target: "es2022",
      logLevel: "silent",
    });

    // Chromium starts while the node comes up and takes the function.
    const launching = chromium.launchPersistentContext(path.join(dir, "profile"), {
      executablePath: CHROMIUM,
      args: CHROMIUM_ARGS,
      headless: true,
      viewport: { width: 1000, height: 560 },
    });
    // afterAll closes it whatever fails before it is awaited below.
    closing = () => launching.then((c) => c.close(), () => undefined);
    t = await NodeUnderTest.start(kind, "browser", [], { websocket: true });
    const ws = t.wsConnectOptions();
    Object.assign(config, { ws_url: ws.servers, user: ws.user ?? "", password: ws.pass ?? "" });
    expect(config.ws_url).toMatch(/^ws:\/\/127\.0\.0\.1:\d+$/);

    const run = await runNex(["run", path.join(FIXTURES, "greet.js"), "--trigger-subject", config.function_subject, "--node", t.node.nodeId, "-s", t.node.url], t.env);
    expect(run.code, run.stderr).toBe(0);

    nc = await connect(t.connectOptions());
    const kv = await new Kvm(nc).create(config.kv_bucket);
    await kv.put(config.kv_key, kvValue);

    // The page comes from 127.0.0.1: Chromium does not let about:blank or other origins reach loopback.
    const bundle = readFileSync(path.join(dir, "page.js"));
    const html = readFileSync(path.join(FIXTURES, "index.html"));
    server = http.createServer((req, res) => {
      const send = (type: string, body: string | Buffer) => res.writeHead(200, { "content-type": type, "cache-control": "no-store" }).end(body);
      if (req.url === "/") send("text/html; charset=utf-8", html);
      else if (req.url === "/page.js") send("text/javascript; charset=utf-8", bundle);
      else if (req.url === "/config.json") send("application/json", JSON.stringify(config));
      else if (req.url === "/favicon.ico") res.writeHead(204).end();
      else res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => server!.listen(0, "127.0.0.1", resolve));
    pageUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;

    context = await launching;
  }, 90_000);

  afterAll(async () => {
    await closing();
    await new Promise((r) => (server ? server.close(r) : r(undefined)));
    await nc?.close();
    await t?.stop();
    if (keep) console.error(`browser test [${kind}]: kept ${dir} (screenshot.png, the bundle)`);
    else if (dir) removeDir(dir);
  });

  it("connects with wsconnect(), echoes its own message, asks a nex function and reads KV", async () => {
    onTestFailed(() => {
      keep = true;
    });
    // The URL the page uses is the one `nex node up` announces (nats-server's comes from its config file).
    if (kind === "bundled") expect(t!.node.output()).toMatch(new RegExp(`websocket:\\s+${config.ws_url.replace(/\./g, "\\.")}\\s`));
    // A TCP client sees what the browser publishes.
    const tcpSeen = nc!.subscribe(config.echo_subject, { max: 1 });
    await nc!.flush();

    const page = await context!.newPage();
    const logs: string[] = [];
    page.on("console", (m) => logs.push(`console.${m.type()}: ${m.text()}`));
    page.on("pageerror", (e) => logs.push(`page error: ${e.message}`));
    page.on("requestfailed", (r) => logs.push(`request failed: ${r.url()} ${r.failure()?.errorText ?? ""}`));

    await page.goto(pageUrl);
    await page.waitForSelector('#status[data-state="done"], #status[data-state="failed"]', { timeout: 30_000 });
    const screenshot = path.join(dir, "screenshot.png");
    await page.screenshot({ path: screenshot, fullPage: true });
    const copy = process.env.NEX_BROWSER_SCREENSHOT;
    if (copy) copyFileSync(screenshot, kind === "bundled" ? copy : copy.replace(/(\.png)?$/, `-${kind}$1`));

    const text = async (selector: string): Promise<string> => ((await page.locator(selector).textContent()) ?? "").trim();
    const status = await text("#status");
    expect(status, `the page failed:\n${await page.locator("#results").innerText()}\n${logs.join("\n")}`).toBe("done");

    expect(await text("#connected .value")).toContain(`${config.ws_url} as ${config.user}`);
    expect(await text("#echo .value")).toBe(config.echo_message);
    expect(await text("#function .value")).toBe(`hello ${config.function_payload}, from a nex function on ${config.function_subject}`);
    expect(await text("#kv .value")).toBe(kvValue);
    expect(await text("#closed .value")).toBe("closed cleanly");

    for await (const m of tcpSeen) expect(m.string()).toBe(config.echo_message);
    await page.close();
  });
});
