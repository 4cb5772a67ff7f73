// The poker demo in a real browser: examples/poker/demo.mjs starts a node (bundled broker, WebSocket
// listener, web gateway on free ports) and deploys the user, bank and lobby services and the static page;
// Debian's Chromium opens the page in two browser contexts (two players with sessions of their own).
// Both register, the second sees the first one's new table appear in its lobby (poker.lobby.events),
// both join, play one hand to a showdown (check/call down) and one to a fold, leave, and the table is
// closed from the lobby, which removes its workload. The page connects as the launcher's restricted
// `poker-web` user; the suite checks that user cannot reach the bank's transfer subject or nex's control plane.
//
// Needs Chromium at /usr/bin/chromium (NEX_CHROMIUM=<path> for another build) and `npm run build`.
// Screenshots go to the suite's temp dir, or to NEX_POKER_SCREENSHOTS=<dir> when set (kept).

import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Browser, chromium, type Page } from "playwright-core";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { removeDir, ROOT, runNex, tempDir } from "./helpers/nex-cli.js";

const CHROMIUM = process.env.NEX_CHROMIUM ?? "/usr/bin/chromium";
const CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];
const BUY_IN = 200;

describe("the poker page in Chromium (examples/poker/demo.mjs)", () => {
  let dir = "";
  let shots = "";
  let demo: ChildProcess | undefined;
  let demoOut = "";
  let browser: Browser | undefined;
  let admin: NatsConnection | undefined;
  let url = "";
  let brokerUrl = "";
  const env = (): Record<string, string> => ({ NEX_HOME: path.join(dir, "home") });
  const nonce = randomBytes(3).toString("hex");

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`Chromium is not installed at ${CHROMIUM} (apt-get install chromium)`);
    dir = tempDir("nex-poker-browser-");
    shots = process.env.NEX_POKER_SCREENSHOTS ?? path.join(dir, "screenshots");
    mkdirSync(shots, { recursive: true });
    const launching = chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
    demo = spawn(process.execPath, [path.join(ROOT, "examples/poker/demo.mjs"), "--port", "0", "--ws-port", "0", "--web-port", "0", "--home", path.join(dir, "home"), "--hand-pause-ms", "1500"], {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
    });
    demo.stderr!.on("data", (d) => (demoOut += d));
    url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the demo did not come up:\n${demoOut}`)), 120_000);
      demo!.on("exit", (code) => reject(new Error(`the demo exited (${code}):\n${demoOut}`)));
      demo!.stdout!.on("data", (d) => {
        demoOut += d;
        const open = /poker: open (http:\/\/\S+)/.exec(demoOut)?.[1];
        if (open) {
          clearTimeout(timer);
          resolve(open);
        }
      });
    });
    brokerUrl = /poker: broker (nats:\/\/\S+)/.exec(demoOut)![1];
    const local = JSON.parse(readFileSync(path.join(dir, "home/local-broker.json"), "utf8"));
    admin = await connect({ servers: brokerUrl, user: local.user, pass: local.password });
    browser = await launching;
  }, 180_000);

  afterAll(async () => {
    await browser?.close().catch(() => undefined);
    await admin?.close().catch(() => undefined);
    if (demo && demo.exitCode === null) {
      const gone = new Promise((r) => demo!.once("exit", r));
      demo.kill("SIGINT");
      await gone;
    }
    if (!process.env.NEX_POKER_SCREENSHOTS && dir) removeDir(dir);
  }, 30_000);

  it("gives the page a restricted user: poker API only, no bank transfers, no nex control plane", async () => {
    const config = (await (await fetch(`${url}config.json`)).json()) as { ws_url: string; user: string; password: string };
    expect(config.user).toBe("poker-web");
    expect(config.ws_url).toMatch(/^ws:\/\/127\.0\.0\.1:\d+$/);
    const local = JSON.parse(readFileSync(path.join(dir, "home/local-broker.json"), "utf8"));
    expect(config.password).not.toBe(local.password);
    const nc = await connect({ servers: brokerUrl, user: config.user, pass: config.password, inboxPrefix: "_INBOX.web" });
    try {
      // An allowed subject works...
      const r = await nc.request("poker.lobby.list", "{}", { timeout: 10_000 });
      expect(Array.isArray(r.json())).toBe(true);
      // ...others are refused by the broker.
      for (const subject of ["poker.bank.transfer", "$NEX.SVC.default.PING", "$JS.API.INFO"]) {
        await expect(nc.request(subject, "{}", { timeout: 5_000 }), subject).rejects.toThrow(/permission/i);
      }
      // Neither other subjects nor the services' own inboxes (their KV reads hold a table's deck).
      for (const subject of ["poker.>", "_INBOX.>"]) {
        const sub = nc.subscribe(subject);
        // nats.js resolves (not rejects) a subscription's closed promise with the broker's refusal.
        expect(String(await sub.closed), `subscribe ${subject}`).toMatch(/permissions violation/i);
      }
    } finally {
      await nc.close();
    }
  }, 60_000);

  it("two players register, see a new table live, play a showdown and a fold, leave, and close the table", async () => {
    const ctxA = await browser!.newContext({ viewport: { width: 1100, height: 800 } });
    const ctxB = await browser!.newContext({ viewport: { width: 1100, height: 800 } });
    const logs: string[] = [];
    const open = async (ctx: typeof ctxA, who: string): Promise<Page> => {
      const page = await ctx.newPage();
      page.on("console", (m) => logs.push(`${who} console.${m.type()}: ${m.text()}`));
      page.on("pageerror", (e) => logs.push(`${who} page error: ${e.message}`));
      await page.goto(url);
      await page.waitForSelector('body[data-ready="true"]', { timeout: 30_000 });
      return page;
    };
    const shot = (page: Page, name: string) => page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
    // A third player's view of the bus: the same broker user as the pages, reading every inbox it may.
    const config = (await (await fetch(`${url}config.json`)).json()) as { user: string; password: string };
    const snooper = await connect({ servers: brokerUrl, user: config.user, pass: config.password, inboxPrefix: "_INBOX.web" });
    const snooped: string[] = [];
    const inboxes = snooper.subscribe("_INBOX.web.>", { callback: (_e, m) => void snooped.push(m.string()) });
    await snooper.flush();
    const a = await open(ctxA, "A");
    const b = await open(ctxB, "B");
    const pages = [a, b];
    const errorOf = async (p: Page) => ((await p.locator("#error").isVisible()) ? await p.locator("#error").innerText() : "");

    try {
      // Register: each gets 1,000 chips.
      for (const [p, name] of [[a, `Ann-${nonce}`], [b, `Bob-${nonce}`]] as const) {
        await p.fill("#register-name", name);
        await p.click('#register-form button[type="submit"]');
        await p.waitForSelector("#lobby:not([hidden])", { timeout: 20_000 });
        await expect.poll(() => p.locator("#balance").innerText(), { timeout: 20_000 }).toBe("1,000");
        expect(await p.locator("#me-name").innerText()).toBe(name);
      }

      // A opens a table; B's lobby shows it without reloading.
      const tableName = `Table ${nonce}`;
      await a.fill("#create-name", tableName);
      await a.fill("#create-timeout", "120");
      await a.click('#create-form button[type="submit"]');
      const rowB = b.locator("#lobby-list tr", { hasText: tableName });
      await rowB.waitFor({ timeout: 30_000 });
      const tableId = (await rowB.getAttribute("data-table"))!;
      expect(tableId).toMatch(/^[0-9a-f]{8}$/);
      // The table's own event feed: what each hand left in the stacks, and what each leave paid out.
      type TableEvent = { type: string; user?: string; paid?: number; view: { handNumber: number; seats: ({ id: string; stack: number } | null)[] } };
      const tableEvents: TableEvent[] = [];
      const eventsSub = admin!.subscribe(`poker.table.${tableId}.events`, { callback: (_e, m) => void tableEvents.push(m.json<TableEvent>()) });
      await admin!.flush();
      await shot(b, "1-lobby");

      // Both join with a buy-in of 200.
      for (const p of pages) {
        const row = p.locator(`#lobby-list tr[data-table="${tableId}"]`);
        await row.waitFor({ timeout: 20_000 });
        await row.locator("input").fill(String(BUY_IN));
        await row.locator("button[data-join]").click();
        await p.waitForSelector("#table:not([hidden])", { timeout: 20_000 });
      }
      for (const p of pages) await expect.poll(() => p.locator("#balance").innerText(), { timeout: 20_000 }).toBe("800");

      /** Plays until the page shows hand `n` finished: `choose` picks the button of whoever is to act. */
      const playHand = async (n: number, choose: (p: Page) => Promise<boolean>): Promise<void> => {
        for (let i = 0; i < 400; i++) {
          if ((await a.locator(`#last-hand[data-hand="${n}"]`).count()) > 0 && (await b.locator(`#last-hand[data-hand="${n}"]`).count()) > 0) return;
          let acted = false;
          for (const p of pages) {
            if (await choose(p)) {
              acted = true;
              break;
            }
          }
          if (!acted) await a.waitForTimeout(150);
        }
        throw new Error(`hand ${n} did not finish: A: ${await errorOf(a)} B: ${await errorOf(b)}\n${logs.join("\n")}`);
      };
      const click = async (p: Page, action: string): Promise<boolean> => {
        const button = p.locator(`#actions button[data-action="${action}"]`);
        if ((await button.count()) === 0) return false;
        await button.first().click({ timeout: 5_000 }).catch(() => undefined);
        return true;
      };

      // Hand 1: checked (or called) down to a showdown. Own hole cards show while it is played.
      let shotDuring = false;
      await playHand(1, async (p) => {
        if (!shotDuring && (await p.locator("#actions button").count()) > 0) {
          expect(await p.locator("#hole .card").count()).toBe(2);
          if ((await p.locator("#board .card").count()) >= 3 || (await p.locator("#street").innerText()) === "preflop") {
            await shot(p, "2-hand-in-play");
            shotDuring = true;
          }
        }
        return (await click(p, "check")) || (await click(p, "call"));
      });
      for (const p of pages) {
        const last = p.locator('#last-hand[data-hand="1"]');
        expect(await last.getAttribute("data-showdown")).toBe("true");
        expect(await last.innerText()).toMatch(/wins \d+/);
        expect(await last.locator(".card").count()).toBeGreaterThanOrEqual(5 + 4); // the board and both players' cards
      }
      await shot(a, "3-showdown");

      // Hand 2: whoever acts first folds.
      await playHand(2, (p) => click(p, "fold"));
      for (const p of pages) {
        const last = p.locator('#last-hand[data-hand="2"]');
        expect(await last.getAttribute("data-showdown")).toBe("false");
        expect(await last.innerText()).toContain("everyone else folded");
      }
      await shot(b, "4-fold");

      // Chips at the table are conserved: the stacks add up to both buy-ins (the table's public state).
      const state = (await admin!.request(`poker.table.${tableId}.state`, "{}", { timeout: 10_000 })).json<{ seats: ({ stack: number } | null)[]; hand: { finished: boolean; pot: number } | null }>();
      const inPot = state.hand && !state.hand.finished ? state.hand.pot : 0;
      expect(state.seats.reduce((s, x) => s + (x?.stack ?? 0), 0) + inPot).toBe(2 * BUY_IN);

      // Both leave (folding first if the next hand has started meanwhile); balances add up to 2,000 and moved.
      for (const p of pages) {
        for (let i = 0; i < 50 && !(await p.locator("#lobby").isVisible()); i++) {
          await click(p, "fold");
          await p.click("#leave");
          await p.waitForSelector("#lobby:not([hidden])", { timeout: 2_000 }).catch(() => undefined);
        }
        await p.waitForSelector("#lobby:not([hidden])", { timeout: 5_000 });
      }
      const balance = async (p: Page) => Number((await p.locator("#balance").innerText()).replace(/,/g, ""));
      await expect.poll(async () => (await balance(a)) + (await balance(b)), { timeout: 20_000 }).toBe(2000);
      // Chips moved: after the fold of hand 2 the stacks cannot both be the buy-in (the folder lost a
      // blind, which hand 1's pot of two big blinds cannot even out)...
      const afterHand2 = tableEvents.find((e) => e.type === "hand_finished" && e.view.handNumber === 2);
      expect(afterHand2, "hand 2's hand_finished event").toBeDefined();
      expect(afterHand2!.view.seats.filter((s) => s !== null).map((s) => s!.stack)).not.toEqual([BUY_IN, BUY_IN]);
      // ...and each page's balance is 800 plus exactly the stack its leave paid out (a later hand may
      // have moved chips again, so the paid amounts, not hand 2's stacks, are the reference).
      const me = (p: Page) => p.evaluate(() => JSON.parse((globalThis as unknown as { sessionStorage: { getItem(k: string): string | null } }).sessionStorage.getItem("poker.me") ?? "null")?.id as string);
      await expect.poll(() => tableEvents.filter((e) => e.type === "left").length, { timeout: 10_000 }).toBe(2);
      eventsSub.unsubscribe();
      for (const p of pages) {
        const id = await me(p);
        const paid = tableEvents.filter((e) => e.type === "left" && e.user === id).reduce((sum, e) => sum + e.paid!, 0);
        expect(await balance(p), `balance of ${id}`).toBe(1000 - BUY_IN + paid);
      }
      await shot(a, "5-after-leaving");

      // Closing the table from the lobby removes its workload and its row (live, in the other page too).
      const names = async () => {
        const r = await runNex(["workload", "ls", "--json", "-s", brokerUrl], env());
        expect(r.code, r.stderr).toBe(0);
        return (JSON.parse(r.stdout) as { name: string }[]).map((w) => w.name);
      };
      expect(await names()).toContain(`table-${tableId}`);
      await a.locator(`#lobby-list tr[data-table="${tableId}"] button[data-close]`).click();
      await b.locator(`#lobby-list tr[data-table="${tableId}"]`).waitFor({ state: "detached", timeout: 60_000 });
      await expect.poll(names, { timeout: 30_000 }).not.toContain(`table-${tableId}`);
      expect(await errorOf(a)).toBe("");
      expect(logs.filter((l) => l.includes("page error"))).toEqual([]);
      // Everything the pages were answered went by the snooper, and none of it gave a secret away: no
      // token in the clear, no player's own hole cards outside their sealed box.
      const tokens = await Promise.all(pages.map((p) => p.evaluate(() => JSON.parse((globalThis as unknown as { sessionStorage: { getItem(k: string): string | null } }).sessionStorage.getItem("poker.me") ?? "null")?.token as string)));
      expect(tokens.every((t) => /^[0-9a-f]{64}$/.test(t))).toBe(true);
      expect(snooped.length).toBeGreaterThan(20);
      expect(snooped.some((m) => m.includes('"token_box"'))).toBe(true);
      expect(snooped.some((m) => m.includes('"holeCards_sealed"'))).toBe(true);
      for (const m of snooped) {
        for (const t of tokens) expect(m.includes(t), "a token in the clear").toBe(false);
        expect(m, "own hole cards in the clear").not.toMatch(/"you":\{[^}]*"holeCards":\[/);
      }
    } catch (err) {
      await shot(a, "failed-A").catch(() => undefined);
      await shot(b, "failed-B").catch(() => undefined);
      throw new Error(`${(err as Error).message}\nscreenshots: ${shots}\npage logs:\n${logs.join("\n")}\ndemo:\n${demoOut.slice(-3000)}`);
    } finally {
      inboxes.unsubscribe();
      await snooper.close();
      await ctxA.close();
      await ctxB.close();
    }
  }, 300_000);
});
