// The poker demo's lobby and table services end to end on a real node: user and bank deployed as
// services, the lobby (bundled, with --allow-deploy of the bundled table) creates a table as a child
// workload, two bots register, join and play hands choosing random legal actions from the state the
// table shows them, bad inputs are refused without a change, chips are conserved throughout (bank
// balances + what the table holds = the chips the bank created), and closing the table pays everyone back
// and removes its workload.

import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import path from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { connect, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import { describeEachServer } from "./helpers/servers.js";
import nacl from "tweetnacl";
import { eventually, waitFor } from "./helpers/wait.js";
// @ts-ignore plain JS module with JSDoc types
import { replayHand } from "../examples/poker/engine/table.js";
import { NodeUnderTest, ROOT, runNex } from "./helpers/nex-cli.js";
import { pokerApi, type User } from "./helpers/poker.js";

const POKER = path.join(ROOT, "examples/poker");

interface Legal {
  action: string;
  amount?: number;
  min?: number;
  max?: number;
}
interface View {
  error?: string;
  closed: boolean;
  handNumber: number;
  seats: ({ seat: number; id: string; stack: number } | null)[];
  hand: null | {
    number: number;
    finished: boolean;
    pot: number;
    toAct: number | null;
    players: { id: string; holeCards: string[] | null }[];
    result: null | { showdown: boolean };
  };
  you?: { id: string; seat: number | null; holeCards: string[] | null; legalActions: Legal[] };
}

describeEachServer(
  "poker lobby and table services",
  (kind) => {
    let t: NodeUnderTest;
    let nc: NatsConnection;
    const tableKey = randomBytes(32).toString("hex");
    const nex = (...args: string[]) => runNex([...args, "-s", t.node.url], t.env);
    const workloads = async (): Promise<{ id: string; name: string; parent_id?: string; state?: string }[]> =>
      JSON.parse((await nex("workload", "ls", "--json")).stdout);

    const { ask, register, balance, ledger } = pokerApi(() => nc, 30_000);
    const onTable = (v: View): number => v.seats.reduce((a, s) => a + (s?.stack ?? 0), 0) + (v.hand && !v.hand.finished ? v.hand.pot : 0);
    /** Bank balances sum to the chips created, and the table's account holds exactly its stacks and pot. */
    async function expectConserved(tableId: string | null): Promise<void> {
      const accounts = await ledger();
      const users = [...accounts.keys()].filter((k) => !k.startsWith("acct.table.")).length;
      expect([...accounts.values()].reduce((a, b) => a + b, 0)).toBe(1000 * users);
      for (const [k, v] of accounts) expect(v, k).toBeGreaterThanOrEqual(0);
      if (tableId !== null) {
        const v = await ask<View>(`poker.table.${tableId}.state`, {});
        expect(accounts.get(`acct.table.${tableId}`) ?? 0).toBe(onTable(v));
      }
    }

    const events: { type: string; view: View }[] = [];
    const lobbyEvents: { type: string; table: { id: string }; reason?: string }[] = [];
    let subs: Subscription[] = [];
    let tableId = "";
    /** The player who opens the tables (a table belongs to its opener: only they may close it). */
    let owner: User;
    let ann: User;
    let bob: User;
    let eve: User;

    beforeAll(async () => {
      execFileSync(process.execPath, [path.join(POKER, "build.mjs")], { cwd: ROOT });
      t = await NodeUnderTest.start(kind, "poker-table");
      const user = await nex("run", path.join(POKER, "dist/user.js"), "--service", "--name", "user");
      expect(user.code, user.stderr).toBe(0);
      const bank = await nex("run", path.join(POKER, "dist/bank.js"), "--service", "--name", "bank", "--env", `TABLE_KEY=${tableKey}`, "--trigger-timeout", "60s");
      expect(bank.code, bank.stderr).toBe(0);
      const lobby = await nex(
        "run", path.join(POKER, "dist/lobby.js"), "--service", "--name", "lobby",
        "--env", `TABLE_KEY=${tableKey}`, "--env", "HAND_PAUSE_MS=20", "--trigger-timeout", "120s",
        "--allow-deploy", path.join(POKER, "dist/table.js"), "--max-children", "3",
      );
      expect(lobby.code, lobby.stderr).toBe(0);
      nc = await connect(t.connectOptions());
      await eventually("the user service", async () => ask("poker.user.verify", { user: "0".repeat(24), token: "x" }, 2000));
      await eventually("the bank", async () => ask("poker.bank.balance", { user: "table:warmup" }, 2000));
      await eventually("the lobby", async () => ask("poker.lobby.list", {}, 2000));
      const ls = nc.subscribe("poker.lobby.events");
      subs.push(ls);
      void (async () => {
        for await (const m of ls) lobbyEvents.push(m.json());
      })();
    }, 180_000);

    afterAll(async () => {
      for (const s of subs) s.unsubscribe();
      subs = [];
      await nc?.close();
      await t?.stop();
    });

    it("refuses bad table specs, then creates a table as a child workload", async () => {
      for (const [body, why] of [
        ["{nope", /not JSON/],
        [[1], /object/],
        [{ name: "", seats: 2, small_blind: 5, big_blind: 10 }, /name/],
        [{ name: "x", seats: 7, small_blind: 5, big_blind: 10 }, /seats/],
        [{ name: "x", seats: 2, small_blind: 5, big_blind: 4 }, /big_blind/],
        [{ name: "x", seats: 2, small_blind: "5", big_blind: 10 }, /small_blind/],
        [{ name: "x", seats: 2, small_blind: 5, big_blind: 10, turn_timeout_s: 0 }, /turn_timeout_s/],
        [{ name: "x", seats: 2, small_blind: 5, big_blind: 10 }, /user must be a user id/], // nobody's table
        [{ name: "x", seats: 2, small_blind: 5, big_blind: 10, user: "a".repeat(24), token: "x" }, /unknown user/],
      ] as [unknown, RegExp][]) {
        expect((await ask("poker.lobby.create", body)).error, JSON.stringify(body)).toMatch(why);
      }
      expect(await ask("poker.lobby.list", {})).toEqual([]);

      owner = await register("Owner");
      const created = await ask("poker.lobby.create", { name: "Main table", seats: 2, small_blind: 5, big_blind: 10, turn_timeout_s: 5, user: owner.id, token: owner.token });
      expect(created.error).toBeUndefined();
      tableId = created.id as string;
      expect(tableId).toMatch(/^[0-9a-f]{8}$/);
      await waitFor("the table workload", async () => (await workloads()).some((w) => w.name === `table-${tableId}` && w.parent_id !== undefined), 30_000, 200);
      const es = nc.subscribe(`poker.table.${tableId}.events`);
      subs.push(es);
      void (async () => {
        for await (const m of es) events.push(m.json());
      })();
      const v = await eventually("the table", async () => ask<View>(`poker.table.${tableId}.state`, {}, 2000));
      expect(v.seats).toEqual([null, null]);
      expect(v.closed).toBe(false);
      expect(await ask("poker.lobby.list", {})).toEqual([
        { id: tableId, name: "Main table", seats: 2, players: 0, small_blind: 5, big_blind: 10, state: "waiting" },
      ]);
      await waitFor("the created event", () => lobbyEvents.some((e) => e.type === "created" && e.table.id === tableId));
    }, 60_000);

    it("seats two players with their buy-ins moved to the table's account, refusing bad joins", async () => {
      ann = await register("Ann");
      bob = await register("Bob");
      eve = await register("Eve");
      const join = `poker.table.${tableId}.join`;
      for (const [body, why] of [
        ["{nope", /not JSON/],
        [{ user: ann.id, token: bob.token, buy_in: 500 }, /wrong token/],
        [{ user: ann.id, buy_in: 500 }, /wrong token/],
        [{ user: "f".repeat(24), token: ann.token, buy_in: 500 }, /unknown user/],
        [{ user: ann.id, token: ann.token, buy_in: 100 }, /bad_buy_in/], // below 20 big blinds
        [{ user: ann.id, token: ann.token, buy_in: 1500 }, /insufficient balance/], // above the balance
        [{ user: ann.id, token: ann.token, buy_in: 2001 }, /bad_buy_in/], // above 200 big blinds
        [{ user: ann.id, token: ann.token, buy_in: "500" }, /buy_in/],
      ] as [unknown, RegExp][]) {
        expect((await ask(join, body)).error, JSON.stringify(body)).toMatch(why);
      }
      expect(await balance(ann.id)).toBe(1000);
      expect(await balance(`table:${tableId}`)).toBe(0);
      await expect(nc.request("poker.table.ffffffff.join", JSON.stringify({ user: ann.id, token: ann.token, buy_in: 500 }), { timeout: 2000 })).rejects.toThrow();

      expect(await ask(join, { user: ann.id, token: ann.token, buy_in: 500 })).toEqual({ seat: 0 });
      expect((await ask(join, { user: ann.id, token: ann.token, buy_in: 500 })).error).toMatch(/already_seated/);
      expect(await ask(join, { user: bob.id, token: bob.token, buy_in: 500 })).toEqual({ seat: 1 });
      expect((await ask(join, { user: eve.id, token: eve.token, buy_in: 500 })).error).toMatch(/table_full/);
      expect(await balance(ann.id)).toBe(500);
      expect(await balance(eve.id)).toBe(1000);
      await expectConserved(tableId);
    }, 60_000);

    it("deals a hand: own hole cards with the token, nobody else's; bad actions change nothing", async () => {
      const state = (u?: User) => ask<View>(`poker.table.${tableId}.state`, u ? { user: u.id, token: u.token } : {});
      await waitFor("the first hand", async () => (await state()).hand !== null, 20_000, 50);
      const a = await state(ann);
      expect(a.you?.holeCards).toHaveLength(2);
      expect(a.hand?.players.every((p) => p.holeCards === null)).toBe(true);
      expect((await ask(`poker.table.${tableId}.state`, { user: ann.id, token: eve.token })).error).toMatch(/wrong token/);
      // Sealed (as the page asks): the same cards in a secretbox keyed by SHA-512 of the token, none in the clear.
      const sealed = await ask<View & { you: { holeCards_sealed: { nonce: string; box: string } } }>(`poker.table.${tableId}.state`, { user: ann.id, token: ann.token, seal: true });
      expect(sealed.you.holeCards).toBeNull();
      const key = nacl.hash(new TextEncoder().encode(ann.token)).subarray(0, nacl.secretbox.keyLength);
      const opened = nacl.secretbox.open(Buffer.from(sealed.you.holeCards_sealed.box, "hex"), Buffer.from(sealed.you.holeCards_sealed.nonce, "hex"), key);
      expect(JSON.parse(new TextDecoder().decode(opened!))).toEqual((await state(ann)).you?.holeCards);

      const views = [await state(ann), await state(bob)];
      const mover = views.findIndex((v) => (v.you?.legalActions.length ?? 0) > 0);
      expect(mover).toBeGreaterThanOrEqual(0);
      const [me, other] = mover === 0 ? [ann, bob] : [bob, ann];
      const legal = views[mover].you!.legalActions;
      const raise = legal.find((l) => l.action === "raise" || l.action === "bet")!;
      const act = `poker.table.${tableId}.act`;
      const before = JSON.stringify(await state());
      for (const [body, why] of [
        ["{nope", /not JSON/],
        [{ user: other.id, token: other.token, action: "call" }, /not_your_turn/],
        [{ user: me.id, token: other.token, action: "call" }, /wrong token/],
        [{ user: eve.id, token: eve.token, action: "call" }, /not_in_hand|unknown_player|not_your_turn/],
        [{ user: me.id, token: me.token, action: raise.action, amount: raise.min! - 1 }, /below_minimum/],
        [{ user: me.id, token: me.token, action: raise.action, amount: raise.max! + 1 }, /above_stack/],
        [{ user: me.id, token: me.token, action: raise.action }, /amount/],
        [{ user: me.id, token: me.token, action: "shove" }, /action/],
      ] as [unknown, RegExp][]) {
        expect((await ask(act, body)).error, JSON.stringify(body)).toMatch(why);
      }
      expect(JSON.stringify(await state())).toBe(before);
      // A flood of requests from made-up users, some padded past 4 KiB: refused before they queue,
      // so the player to act is answered as soon as it is their turn.
      const flood = Array.from({ length: 300 }, (_, i) =>
        ask(act, { user: (i % 16).toString(16).repeat(24), token: "x", action: "fold", ...(i % 3 === 0 ? { pad: "A".repeat(8000) } : {}) }, 30_000),
      );
      const answered = await ask(act, { user: me.id, token: me.token, action: "fold" }, 10_000);
      expect(answered.error).toBeUndefined();
      (await Promise.all(flood)).forEach((r, i) => expect(r.error).toMatch(i % 3 === 0 ? /at most 4096 bytes/ : /unknown user/));
      await expectConserved(tableId);
    }, 60_000);

    it("plays many hands of random legal actions, conserving chips, hole cards hidden until showdown", async () => {
      const bots = [ann, bob];
      const stateOf = (u: User) => ask<View>(`poker.table.${tableId}.state`, { user: u.id, token: u.token });
      const pick = (legal: Legal[]): { action: string; amount?: number } => {
        const r = Math.random();
        const by = (x: string) => legal.find((l) => l.action === x);
        const raise = by("raise") ?? by("bet");
        if (r < 0.02 && by("all_in")) return { action: "all_in" };
        if (r < 0.25 && raise) return { action: raise.action, amount: raise.min! + Math.floor(Math.random() * Math.min(3, raise.max! - raise.min! + 1)) };
        if (r < 0.37 && by("fold")) return { action: "fold" };
        const passive = by("check") ?? by("call") ?? legal[0];
        return { action: passive.action };
      };
      const target = 300;
      const startHand = (await ask<View>(`poker.table.${tableId}.state`, {})).handNumber;
      const budgetEnds = Date.now() + 150_000; // bounds the loop only; the assertions never depend on it
      let played = 0;
      let refusals = 0;
      let rebuys = 0;
      let lastChecked = -1;
      while (played < target && Date.now() < budgetEnds) {
        const views = await Promise.all(bots.map(stateOf));
        const pub = views[0];
        played = pub.handNumber - startHand;
        if (!pub.hand || pub.hand.finished) {
          if (pub.handNumber !== lastChecked) {
            lastChecked = pub.handNumber;
            await expectConserved(tableId);
          }
          // A bot with no chips left: both leave, the richer gives chips to the poorer, both buy in again.
          if (pub.seats.some((s) => s !== null && s.stack === 0)) {
            for (const b of bots) expect((await ask(`poker.table.${tableId}.leave`, { user: b.id, token: b.token })).ok).toBe(true);
            const [ba, bb] = [await balance(ann.id), await balance(bob.id)];
            const [rich, poor, diff] = ba > bb ? [ann, bob, ba - bb] : [bob, ann, bb - ba];
            const give = Math.floor(diff / 2);
            if (give > 0) {
              const r = await ask("poker.bank.transfer", { from: rich.id, to: poor.id, amount: give, ref: `rebalance-${rebuys}`, token: rich.token });
              expect(r.error).toBeUndefined();
            }
            for (const b of bots) expect((await ask(`poker.table.${tableId}.join`, { user: b.id, token: b.token, buy_in: 500 })).seat).toBeDefined();
            rebuys++;
            await expectConserved(tableId);
            continue;
          }
          await new Promise((r) => setTimeout(r, 10));
          continue;
        }
        const i = views.findIndex((v) => (v.you?.legalActions.length ?? 0) > 0);
        if (i < 0) continue;
        for (const v of views) {
          // Each bot sees its own cards and only its own.
          if (v.hand && !v.hand.finished) expect(v.you?.holeCards).toHaveLength(2);
          if (v.hand && !v.hand.result?.showdown) expect(v.hand.players.every((p) => p.holeCards === null)).toBe(true);
        }
        const choice = pick(views[i].you!.legalActions);
        const r = await ask(`poker.table.${tableId}.act`, { user: bots[i].id, token: bots[i].token, ...choice });
        if (r.error) {
          // Only the turn clock may have acted meanwhile on a slow machine.
          expect(r.error).toMatch(/not_your_turn|no_hand|hand_finished/);
          refusals++;
        }
      }
      console.log(`poker: ${played} hands played, ${rebuys} rebuys, ${refusals} actions overtaken by the turn clock, ${events.length} events`);
      expect(played).toBeGreaterThan(10);
      // Events never carried hole cards before a showdown.
      for (const e of events) {
        const h = e.view.hand;
        if (h && !h.result?.showdown) expect(h.players.every((p) => p.holeCards === null), e.type).toBe(true);
      }
      expect(events.some((e) => e.type === "hand_finished" && e.view.hand?.result?.showdown)).toBe(true);
      expect(events.some((e) => e.type === "action")).toBe(true);
    }, 240_000);

    it("records every finished hand (deck and actions) so it replays to the same result", async () => {
      const played = (await ask<View>(`poker.table.${tableId}.state`, {})).handNumber;
      expect(played).toBeGreaterThan(20);
      for (const n of [1, 2, 3, 10, 20]) {
        const rec = await ask<{ log: { deck: string[]; actions: unknown[] }; result: unknown; error?: string }>(`poker.table.${tableId}.hand`, { number: n });
        expect(rec.error, `hand ${n}`).toBeUndefined();
        expect(rec.log.deck).toHaveLength(52);
        expect(new Set(rec.log.deck).size).toBe(52);
        expect(replayHand(rec.log).hand.result, `hand ${n}`).toEqual(rec.result);
      }
      expect((await ask(`poker.table.${tableId}.hand`, { number: 1_000_000 })).error).toMatch(/no finished hand 1000000/);
      expect((await ask(`poker.table.${tableId}.hand`, { number: "1" })).error).toMatch(/number must be a hand number/);
    });

    it("acts for an idle player when the turn clock runs out", async () => {
      const from = events.length;
      // A bot left with no chips by the last hand buys in again (with the minimum), so a hand is dealt.
      const v = await ask<View>(`poker.table.${tableId}.state`, {});
      for (const b of [ann, bob]) {
        if (v.seats.some((s) => s?.id === b.id && s.stack === 0)) {
          // A stack of 0 may still be all-in in the hand being played: leaving waits for that hand to end.
          await waitFor("the busted bot to leave", async () => (await ask<{ ok?: boolean }>(`poker.table.${tableId}.leave`, { user: b.id, token: b.token })).ok === true, 30_000, 50);
          expect((await ask(`poker.table.${tableId}.join`, { user: b.id, token: b.token, buy_in: 200 })).seat).toBeDefined();
        }
      }
      await waitFor("a timeout event", () => events.slice(from).some((e) => e.type === "timeout"), 60_000, 100);
      await expectConserved(tableId);
    }, 90_000);

    it("continues the hand after a node restart (the table's state is in KV)", async () => {
      const stateOf = (u: User, timeout = 30_000) => ask<View>(`poker.table.${tableId}.state`, { user: u.id, token: u.token }, timeout);
      await waitFor("a hand in progress", async () => {
        const v = await stateOf(ann);
        return v.hand !== null && !v.hand.finished;
      }, 30_000, 50);
      // The turn clock acts every TURN_TIMEOUT_S meanwhile: right after it did, there is time for what follows.
      const from = events.length;
      await waitFor("the turn clock", () => events.slice(from).some((e) => e.type === "timeout"), 30_000, 20);
      await new Promise((r) => setTimeout(r, 200));
      const before = await stateOf(ann);
      expect(before.hand?.finished).toBe(false);
      // A crash between the bank and the table's KV write, made by hand: Eve's buy-in reached the table's
      // account, and the table had recorded the join as pending, but died before seating her. The table
      // (full) must settle it after the restart by paying her back.
      const paid = await ask("poker.bank.transfer", { from: eve.id, to: `table:${tableId}`, amount: 300, ref: "crash-join", token: eve.token });
      expect(paid.error).toBeUndefined();
      const tkv = await new Kvm(nc).open(`hs_default_table-${tableId}`);
      const stored = (await tkv.get("table"))!.json() as Record<string, unknown>;
      expect(stored.pending).toBeNull();
      await tkv.put("table", JSON.stringify({ ...stored, pending: { kind: "join", user: eve.id, name: "Eve", amount: 300, ref: `${tableId}-join-999` } }));
      await t.node.stop();
      await t.up();
      for (const s of subs) s.unsubscribe();
      subs = [];
      await nc.close();
      nc = await connect(t.connectOptions());
      const after = await eventually("the table after the restart", async () => stateOf(ann, 2000), 60_000);
      expect(after.handNumber).toBe(before.handNumber);
      expect(after.you?.holeCards).toEqual(before.you?.holeCards);
      expect(after.seats.map((s) => s?.id)).toEqual(before.seats.map((s) => s?.id));
      expect(after.hand?.finished).toBe(false);
      // And play goes on: whoever is to act can act.
      await eventually("the user service after the restart", async () => ask("poker.user.verify", { user: "0".repeat(24), token: "x" }, 2000));
      await eventually("the bank after the restart", async () => ask("poker.bank.balance", { user: "table:warmup" }, 2000));
      const views = [await stateOf(ann), await stateOf(bob)];
      const i = views.findIndex((v) => (v.you?.legalActions.length ?? 0) > 0);
      if (i >= 0 && views[i].handNumber === before.handNumber) {
        const u = i === 0 ? ann : bob;
        const r = await ask(`poker.table.${tableId}.act`, { user: u.id, token: u.token, action: "fold" });
        if (r.error) expect(r.error).toMatch(/not_your_turn|no_hand|hand_finished/); // the turn clock may have been first
      }
      await waitFor("Eve paid back", async () => (await balance(eve.id)) === 1000, 30_000, 200);
      await expectConserved(tableId);
      const ls = nc.subscribe("poker.lobby.events");
      subs.push(ls);
      void (async () => {
        for await (const m of ls) lobbyEvents.push(m.json());
      })();
      const es = nc.subscribe(`poker.table.${tableId}.events`);
      subs.push(es);
      void (async () => {
        for await (const m of es) events.push(m.json());
      })();
      await eventually("the lobby after the restart", async () => ask("poker.lobby.list", {}, 2000));
    }, 120_000);

    it("closes a table nobody sits at after its idle_close_s, not while someone does", async () => {
      const mine = { user: owner.id, token: owner.token };
      expect((await ask("poker.lobby.create", { name: "Idle", seats: 2, small_blind: 1, big_blind: 2, idle_close_s: 0, ...mine })).error).toMatch(/idle_close_s must be a whole number from 1/);
      const { id } = await ask<{ id: string }>("poker.lobby.create", { name: "Idle", seats: 2, small_blind: 1, big_blind: 2, idle_close_s: 2, ...mine });
      // Two open tables are the most one player may have: nobody takes every child slot.
      expect((await ask("poker.lobby.create", { name: "Third", seats: 2, small_blind: 1, big_blind: 2, ...mine })).error).toMatch(/2 open tables/);
      const joined = await eventually("a seat at the idle table", async () => {
        const r = await ask<{ seat?: number; error?: string }>(`poker.table.${id}.join`, { user: eve.id, token: eve.token, buy_in: 100 }, 2000);
        if (r.error) throw new Error(r.error);
        return r;
      });
      expect(joined.seat).toBeDefined();
      // Seated: the lobby sweeps (every 2 s) and leaves it alone.
      const sweeps = lobbyEvents.length;
      await new Promise((r) => setTimeout(r, 5000));
      expect(lobbyEvents.slice(sweeps).some((e) => e.type === "closed" && e.table.id === id)).toBe(false);
      expect((await workloads()).some((w) => w.name === `table-${id}`)).toBe(true);
      // Empty: it goes, and Eve's chips are back.
      expect((await ask(`poker.table.${id}.leave`, { user: eve.id, token: eve.token })).ok).toBe(true);
      await waitFor("the idle table to close", () => lobbyEvents.some((e) => e.type === "closed" && e.table.id === id && e.reason === "empty"), 30_000, 100);
      await waitFor("the idle table's workload to go", async () => !(await workloads()).some((w) => w.name === `table-${id}`), 30_000, 200);
      expect(await balance(eve.id)).toBe(1000);
      expect(await balance(`table:${id}`)).toBe(0);
    }, 90_000);

    it("closes the table: everyone paid back, the workload gone", async () => {
      expect((await ask("poker.lobby.close", { id: "ffffffff", user: owner.id, token: owner.token })).error).toMatch(/unknown table/);
      expect((await ask("poker.lobby.close", { id: tableId })).error).toMatch(/user must be a user id/);
      expect((await ask("poker.lobby.close", { id: tableId, user: ann.id, token: ann.token })).error).toMatch(/only the player who opened this table/);
      expect((await ask("poker.lobby.close", { id: "../x" })).error).toMatch(/id must be/);
      expect((await ask("poker.lobby.close", "{nope")).error).toMatch(/not JSON/);
      expect((await ask(`poker.table.${tableId}.close`, { secret: "0".repeat(64) })).error).toMatch(/wrong secret/);
      const seatedBefore = (await ask<View>(`poker.table.${tableId}.state`, {})).seats.filter((s) => s !== null).length;
      const closed = await ask("poker.lobby.close", { id: tableId, user: owner.id, token: owner.token }, 90_000);
      expect(closed.error).toBeUndefined();
      expect(closed.ok).toBe(true);
      expect(Object.keys(closed.paid as object)).toHaveLength(seatedBefore);
      await waitFor("the table workload to go", async () => !(await workloads()).some((w) => w.name === `table-${tableId}`), 30_000, 200);
      expect(await balance(`table:${tableId}`)).toBe(0);
      expect((await balance(ann.id)) + (await balance(bob.id))).toBe(2000);
      await expectConserved(null);
      expect(await ask("poker.lobby.list", {})).toEqual([]);
      await waitFor("the closed event", () => lobbyEvents.some((e) => e.type === "closed" && e.table.id === tableId));
      expect(events.some((e) => e.type === "closed")).toBe(true);
    }, 120_000);
  },
);
