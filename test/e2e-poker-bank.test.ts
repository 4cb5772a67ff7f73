// The poker demo's user and bank services end to end: deployed with the real CLI as JavaScript services
// (the bank with two replicas, so their KV updates really race), driven over NATS. Registration and
// name uniqueness (also racing), token checks, balances, transfers, every bad input refused without a
// change, idempotent refs, and 200 concurrent random transfers that neither create nor lose a chip.

import { execFileSync } from "node:child_process";
import { createHmac, randomBytes } from "node:crypto";
import path from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import nacl from "tweetnacl";
import { describeEachServer } from "./helpers/servers.js";
import { eventually } from "./helpers/wait.js";
import { NodeUnderTest, ROOT, runNex } from "./helpers/nex-cli.js";
import { pokerApi, type User } from "./helpers/poker.js";

/** The bundled service (examples/poker/build.mjs, run once before the tests). */
const service = (f: string): string => path.join(ROOT, "examples/poker/dist", f);


describeEachServer(
  "poker user and bank services",
  (kind) => {
    let t: NodeUnderTest;
    let nc: NatsConnection;
    const tableKey = randomBytes(32).toString("hex");
    const secretOf = (table: string): string => createHmac("sha256", tableKey).update(table).digest("hex");
    const nex = (...args: string[]) => runNex([...args, "-s", t.node.url], t.env);

    const { ask, register, balance, ledger } = pokerApi(() => nc, 20_000);
    function expectConserved(accounts: Map<string, number>): void {
      const users = [...accounts.keys()].filter((k) => !k.startsWith("acct.table.")).length;
      const total = [...accounts.values()].reduce((a, b) => a + b, 0);
      expect(total).toBe(1000 * users);
      for (const [k, v] of accounts) expect(v, k).toBeGreaterThanOrEqual(0);
    }

    let ann: User;
    let bob: User;

    beforeAll(async () => {
      execFileSync(process.execPath, [path.join(ROOT, "examples/poker/build.mjs")], { cwd: ROOT });
      t = await NodeUnderTest.start(kind, "poker-bank");
      const user = await nex("run", service("user.js"), "--service", "--name", "user");
      expect(user.code, user.stderr).toBe(0);
      const bank = await nex(
        "run", service("bank.js"), "--service", "--name", "bank", "--replicas", "2",
        "--env", `TABLE_KEY=${tableKey}`, "--trigger-timeout", "60s",
      );
      expect(bank.code, bank.stderr).toBe(0);
      nc = await connect(t.connectOptions());
      // The services subscribe in start(): wait until both answer.
      await eventually("the user service", async () => ask("poker.user.verify", { user: "0".repeat(24), token: "x" }));
      await eventually("the bank", async () => ask("poker.bank.balance", { user: "table:warmup" }));
    }, 120_000);

    afterAll(async () => {
      await nc?.close();
      await t?.stop();
    });

    it("registers users with a random id and a 256-bit token, and verifies tokens", async () => {
      ann = await register("Ann");
      bob = await register("bob the 2nd");
      expect(ann.id).toMatch(/^[0-9a-f]{24}$/);
      expect(ann.token).toMatch(/^[0-9a-f]{64}$/);
      expect(ann.name).toBe("Ann");
      expect(bob.id).not.toBe(ann.id);
      expect(bob.token).not.toBe(ann.token);
      expect(await ask("poker.user.verify", { user: ann.id, token: ann.token })).toEqual({ ok: true, name: "Ann" });
      expect((await ask("poker.user.verify", { user: ann.id, token: bob.token })).error).toMatch(/wrong token/);
      expect((await ask("poker.user.verify", { user: ann.id })).error).toMatch(/wrong token/);
      expect((await ask("poker.user.verify", { user: "f".repeat(24), token: ann.token })).error).toMatch(/unknown user/);
      expect((await ask("poker.user.verify", "{nope")).error).toMatch(/not JSON/);
    });

    it("stores a hash of the token, not the token", async () => {
      const kv = await new Kvm(nc).open("hs_default_user");
      const rec = (await kv.get(`user.${ann.id}`))?.json() as Record<string, string>;
      expect(Object.keys(rec).sort()).toEqual(["id", "name", "token_hash"]);
      expect(JSON.stringify(rec)).not.toContain(ann.token);
    });

    it("refuses a taken name (case-insensitively) and bad names", async () => {
      expect((await ask("poker.user.register", { name: "ANN" })).error).toMatch(/taken/);
      expect((await ask("poker.user.register", { name: "ann" })).error).toMatch(/taken/);
      for (const name of ["", "x".repeat(25), "a/b", "ann!", "é", " lead", "trail ", 42, null]) {
        expect((await ask("poker.user.register", { name })).error, JSON.stringify(name)).toBeTruthy();
      }
      expect((await ask("poker.user.register", "not json")).error).toMatch(/not JSON/);
      // A browser's registration: the token sealed to its one-time key, never in the clear; a bad key changes nothing.
      expect((await ask("poker.user.register", { name: `boxed${kind}`, box_key: "zz" })).error).toMatch(/box_key must be 64 hex digits/);
      const keys = nacl.box.keyPair();
      const boxed = await ask("poker.user.register", { name: `boxed${kind}`, box_key: Buffer.from(keys.publicKey).toString("hex") });
      expect(boxed.token).toBeUndefined();
      const box = boxed.token_box as { key: string; nonce: string; box: string };
      const token = new TextDecoder().decode(nacl.box.open(Buffer.from(box.box, "hex"), Buffer.from(box.nonce, "hex"), Buffer.from(box.key, "hex"), keys.secretKey)!);
      expect((await ask("poker.user.verify", { user: boxed.id, token })).ok).toBe(true);
      expect((await ask("poker.user.register", "[1]")).error).toMatch(/object/);
      expect((await ask("poker.user.register", { name: "x".repeat(24) })).id).toBeTruthy();
    });

    it("lets exactly one of racing registrations of a name win", async () => {
      const names = ["Racer", "racer", "RACER", "rAcEr", "Racer", "racer", "RaCeR", "racer", "Racer", "RACER"];
      const answers = await Promise.all(names.map((name) => ask("poker.user.register", { name })));
      const winners = answers.filter((a) => a.id !== undefined);
      expect(winners).toHaveLength(1);
      for (const a of answers.filter((x) => x.id === undefined)) expect(a.error).toMatch(/taken/);
      expect(await ask("poker.user.verify", { user: winners[0].id, token: winners[0].token })).toMatchObject({ ok: true });
    });

    it("opens a user's account with 1,000 chips and a table's with 0", async () => {
      expect(await balance(ann.id)).toBe(1000);
      expect(await balance(bob.id)).toBe(1000);
      expect(await balance("table:t1")).toBe(0);
      expect((await ask("poker.bank.balance", { user: "f".repeat(24) })).error).toMatch(/unknown user/);
      expect((await ask("poker.bank.balance", { user: "nobody" })).error).toMatch(/unknown user/);
      expect((await ask("poker.bank.balance", { user: "table:bad/id" })).error).toMatch(/table id/);
      expect((await ask("poker.bank.balance", "{")).error).toMatch(/not JSON/);
    });

    it("moves chips between users and tables", async () => {
      const r = await ask("poker.bank.transfer", { from: ann.id, to: bob.id, amount: 100, ref: "t-1", token: ann.token });
      expect(r).toEqual({ ok: true, ref: "t-1", from: ann.id, to: bob.id, amount: 100, balance: 900 });
      expect(await balance(ann.id)).toBe(900);
      expect(await balance(bob.id)).toBe(1100);
      const buyIn = await ask("poker.bank.transfer", { from: bob.id, to: "table:t1", amount: 300, ref: "t-2", token: bob.token });
      expect(buyIn.ok).toBe(true);
      const payout = await ask("poker.bank.transfer", { from: "table:t1", to: ann.id, amount: 250, ref: "t-3", secret: secretOf("t1") });
      expect(payout).toMatchObject({ ok: true, balance: 50 });
      expect(await balance(ann.id)).toBe(1150);
      expect(await balance(bob.id)).toBe(800);
      expect(await balance("table:t1")).toBe(50);
      expectConserved(await ledger());
    });

    it("refuses every bad transfer and changes nothing", async () => {
      const before = await ledger();
      const ok = { from: ann.id, to: bob.id, amount: 10, token: ann.token };
      const bad: [unknown, RegExp][] = [
        ["not json", /not JSON/],
        ["[]", /object/],
        [{ ...ok, ref: "b-1", to: "f".repeat(24) }, /unknown user/],
        [{ ...ok, ref: "b-2", from: "f".repeat(24) }, /unknown user/],
        [{ ...ok, ref: "b-3", to: "someone" }, /unknown user/],
        [{ ...ok, ref: "b-4", token: bob.token }, /wrong token/],
        [{ ...ok, ref: "b-5", token: undefined }, /wrong token/],
        [{ ...ok, ref: "b-6", amount: -10 }, /amount/],
        [{ ...ok, ref: "b-7", amount: 0 }, /amount/],
        [{ ...ok, ref: "b-8", amount: 1.5 }, /amount/],
        [{ ...ok, ref: "b-9", amount: 1e12 }, /amount/],
        [{ ...ok, ref: "b-10", amount: "10" }, /amount/],
        [{ ...ok, ref: "b-11", amount: Number.MAX_SAFE_INTEGER + 2 }, /amount/],
        [{ ...ok, ref: "b-12", amount: 5000 }, /insufficient/],
        [{ ...ok, ref: "b-13", to: ann.id }, /same account/],
        [{ ...ok, ref: "" }, /ref/],
        [{ ...ok, ref: "a b" }, /ref/],
        [{ ...ok }, /ref/],
        [{ from: "table:t1", to: ann.id, amount: 10, ref: "b-14" }, /secret/],
        [{ from: "table:t1", to: ann.id, amount: 10, ref: "b-15", secret: secretOf("t2") }, /secret/],
        [{ from: "table:t1", to: ann.id, amount: 10, ref: "b-16", token: ann.token }, /secret/],
        [{ from: "table:t1", to: ann.id, amount: 51, ref: "b-17", secret: secretOf("t1") }, /insufficient/],
        [{ from: "table:../x", to: ann.id, amount: 1, ref: "b-18", secret: secretOf("../x") }, /table id/],
      ];
      for (const [body, error] of bad) {
        const r = await ask("poker.bank.transfer", body);
        expect(r.error, JSON.stringify(body)).toMatch(error);
        expect(r.ok).toBeUndefined();
      }
      expect(await ledger()).toEqual(before);
      // A refused ref is not used up: once the balance is there, the same ref goes through.
      const later = await ask("poker.bank.transfer", { from: "table:t1", to: ann.id, amount: 50, ref: "b-17", secret: secretOf("t1") });
      expect(later).toMatchObject({ ok: true, balance: 0 });
      expectConserved(await ledger());
    });

    it("applies a transfer once however often its ref is sent", async () => {
      const body = { from: ann.id, to: bob.id, amount: 7, ref: "once-1", token: ann.token };
      const first = await ask("poker.bank.transfer", body);
      expect(first.ok).toBe(true);
      const after = await ledger();
      const again = await ask("poker.bank.transfer", body);
      expect(again).toMatchObject({ ok: true, replayed: true, balance: first.balance });
      const racing = await Promise.all(Array.from({ length: 10 }, () => ask("poker.bank.transfer", body)));
      for (const r of racing) expect(r).toMatchObject({ ok: true, replayed: true });
      expect((await ask("poker.bank.transfer", { ...body, amount: 8 })).error).toMatch(/another transfer/);
      expect((await ask("poker.bank.transfer", { ...body, to: "table:t1" })).error).toMatch(/another transfer/);
      expect(await ledger()).toEqual(after);
      // Refs belong to the debited account: another account may use the same ref.
      const bobs = await ask("poker.bank.transfer", { from: bob.id, to: ann.id, amount: 7, ref: "once-1", token: bob.token });
      expect(bobs).toMatchObject({ ok: true });
      expect(bobs.replayed).toBeUndefined();
      // A fresh ref sent ten times at once is applied once too.
      const burst = await Promise.all(Array.from({ length: 10 }, () => ask("poker.bank.transfer", { ...body, ref: "once-2" })));
      expect(burst.filter((r) => r.ok === true)).toHaveLength(10);
      const final = await ledger();
      expect(final.get(`acct.${ann.id}`)).toBe(after.get(`acct.${ann.id}`)! - 7 + 7);
      expect(final.get(`acct.${bob.id}`)).toBe(after.get(`acct.${bob.id}`)! + 7 - 7);
      expect((await new Kvm(nc).open("hs_default_bank").then((kv) => kv.get(`ref.${ann.id}.once-2`)))?.json()).toMatchObject({ state: "done", amount: 7 });
    });

    it("neither creates nor loses chips under 200 concurrent random transfers", async () => {
      const players = await Promise.all(["p1", "p2", "p3", "p4", "p5"].map((n) => register(`player ${n}`)));
      const accounts = [...players.map((p) => p.id), "table:ta", "table:tb"];
      for (const a of accounts) await balance(a);
      const before = await ledger();
      expectConserved(before);

      let seed = 12345;
      const rnd = (n: number): number => {
        seed = (seed * 1103515245 + 12345) % 2 ** 31;
        return seed % n;
      };
      const sends: { ref: string; body: Record<string, unknown> }[] = [];
      for (let i = 0; i < 200; i++) {
        const from = accounts[rnd(accounts.length)];
        let to = accounts[rnd(accounts.length)];
        if (to === from) to = accounts[(accounts.indexOf(from) + 1) % accounts.length];
        const body: Record<string, unknown> = { from, to, amount: 1 + rnd(100), ref: `c-${i}` };
        if (from.startsWith("table:")) body.secret = secretOf(from.slice(6));
        else body.token = players.find((p) => p.id === from)!.token;
        sends.push({ ref: body.ref as string, body });
        if (i % 10 === 0) sends.push({ ref: body.ref as string, body }); // some sent twice at once
      }
      const answers = await Promise.all(sends.map((s) => ask("poker.bank.transfer", s.body)));

      const applied = new Map<string, Record<string, unknown>>();
      answers.forEach((a, i) => {
        if (a.ok === true) applied.set(sends[i].ref, sends[i].body);
        else expect(a.error, JSON.stringify(sends[i].body)).toMatch(/insufficient balance/);
      });
      // Many go through: the tables start empty, and which transfers find a balance depends on the order
      // the bank takes them in, so the count varies from run to run (100 was seen); conservation is the point.
      expect(applied.size).toBeGreaterThan(60);

      const after = await ledger();
      expectConserved(after);
      // Each account moved by exactly the transfers that were answered ok, each counted once.
      const expected = new Map(before);
      const keyOf = (a: string): string => (a.startsWith("table:") ? `acct.table.${a.slice(6)}` : `acct.${a}`);
      for (const b of applied.values()) {
        expected.set(keyOf(b.from as string), (expected.get(keyOf(b.from as string)) ?? 0) - (b.amount as number));
        expected.set(keyOf(b.to as string), (expected.get(keyOf(b.to as string)) ?? 0) + (b.amount as number));
      }
      expect(after).toEqual(expected);
      for (const a of accounts) expect(await balance(a)).toBe(after.get(keyOf(a)));

      // Both replicas served transfers, so their updates of the same accounts raced (the revision check
      // turned those races into conflicts, retried); how many conflicts is up to the scheduling.
      const stats: { workload: string; transfers: number; conflicts: number }[] = [];
      for await (const m of await nc.requestMany("poker.bank.stats", "", { strategy: "count", maxMessages: 2, maxWait: 10_000 })) stats.push(m.json());
      expect(stats).toHaveLength(2);
      for (const s of stats) expect(s.transfers).toBeGreaterThan(0);
      console.log(`bank replicas: ${JSON.stringify(stats)}`);
    }, 120_000);

    it("keeps users and balances across a node restart", async () => {
      const before = await ledger();
      await nc.close();
      await t.node.stop();
      await t.up(); // the bundled broker comes back on another port
      nc = await connect(t.connectOptions());
      const verified = await eventually("the user service back", async () => {
        const r = await ask("poker.user.verify", { user: ann.id, token: ann.token });
        if (r.ok !== true) throw new Error(JSON.stringify(r));
        return r;
      });
      expect(verified.name).toBe("Ann");
      const annBefore = before.get(`acct.${ann.id}`)!;
      const r = await eventually("the bank back", async () => {
        const a = await ask("poker.bank.transfer", { from: ann.id, to: bob.id, amount: 1, ref: "after-restart", token: ann.token });
        if (a.ok !== true) throw new Error(JSON.stringify(a));
        return a;
      });
      expect(r.balance).toBe(annBefore - 1);
      expect((await ask("poker.user.register", { name: "ann" })).error).toMatch(/taken/);
      expectConserved(await ledger());
    }, 120_000);
  },

);
