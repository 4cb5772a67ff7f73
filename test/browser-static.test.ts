// Static assets in a real browser (issue #16): Chromium (playwright-core) loads a page deployed with
// `nex run --type static` from the node's gateway; the page's script calls a fetch function through the same
// gateway (same origin) and shows its answer. The DOM text is asserted; a screenshot goes to
// /work/notes/static-page.png when /work/notes exists (else the suite's temp dir).
//
// Needs Chromium at /usr/bin/chromium (NEX_CHROMIUM=<path> for another build): without it the suite fails.

import { existsSync, mkdirSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type BrowserContext, chromium } from "playwright-core";
import { describeEachServer } from "./helpers/servers.js";
import { NodeUnderTest, removeDir, ROOT, runNex, tempDir, webUrlOf } from "./helpers/nex-cli.js";

const CHROMIUM = process.env.NEX_CHROMIUM ?? "/usr/bin/chromium";
const CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];
const FIXTURES = path.join(ROOT, "test/fixtures/static");
const NOTES = "/work/notes";
/** In the page: the script has written the answer. */
const ANSWERED = `document.getElementById("answer")?.textContent !== "…"`;

describeEachServer("a static page in Chromium calls a function through the same gateway", (kind) => {
  let t: NodeUnderTest;
  let web = "";
  let dir = "";
  let context: BrowserContext | undefined;
  let closing: () => Promise<unknown> = async () => undefined;

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`Chromium is not installed at ${CHROMIUM}: this suite drives a real browser (apt-get install chromium)`);
    dir = tempDir("nex-browser-static-");
    const launching = chromium.launchPersistentContext(path.join(dir, "profile"), { executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true, viewport: { width: 900, height: 400 } });
    closing = () => launching.then((c) => c.close(), () => undefined);
    t = await NodeUnderTest.start(kind, "browser-static", ["--web-port", "0"]);
    web = await webUrlOf(t.node);
    const nex = (...args: string[]) => runNex([...args, "-s", t.node.url], t.env);
    const page = await nex("run", "--type", "static", path.join(FIXTURES, "page"), "--name", "page", "--http-path", "/app");
    expect(page.code, page.stderr).toBe(0);
    const fn = await nex("run", path.join(FIXTURES, "hello.js"), "--name", "hello", "--http-path", "/api");
    expect(fn.code, fn.stderr).toBe(0);
    context = await launching;
  }, 120_000);

  afterAll(async () => {
    await closing();
    await t?.stop();
    if (dir) removeDir(dir);
  });

  it("loads the page, its style and script, and shows the function's answer", async () => {
    const page = await context!.newPage();
    const responses: { url: string; status: number }[] = [];
    page.on("response", (r) => responses.push({ url: r.url(), status: r.status() }));
    await page.goto(`${web}/app`);
    expect(page.url()).toBe(`${web}/app/`);
    await page.waitForFunction(ANSWERED, undefined, { timeout: 10_000 });
    expect(await page.textContent("#answer")).toBe("hello, browser (from the page)");
    expect(await page.textContent("h1")).toBe("Static page from the nex gateway");
    // The stylesheet applied (served as text/css).
    expect(await page.evaluate(`getComputedStyle(document.getElementById("answer")).fontWeight`)).toBe("700");
    expect(responses.find((r) => r.url.endsWith("/app/style.css"))?.status).toBe(200);
    expect(responses.find((r) => r.url.endsWith("/api/hello?name=browser"))?.status).toBe(200);
    const shot = existsSync(NOTES) ? path.join(NOTES, kind === "bundled" ? "static-page.png" : `static-page-${kind}.png`) : path.join(dir, "static-page.png");
    mkdirSync(path.dirname(shot), { recursive: true });
    await page.screenshot({ path: shot });
    // A reload (revalidating the cached files) shows it again.
    responses.length = 0;
    await page.reload();
    await page.waitForFunction(ANSWERED);
    expect(await page.textContent("#answer")).toBe("hello, browser (from the page)");
    await page.close();
  });
});
