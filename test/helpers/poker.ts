// The poker demo's NATS API as the e2e tests use it: JSON requests, registration, balances, and the bank's
// ledger read straight from its bucket (for chip-conservation checks).

import type { NatsConnection } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import { expect } from "vitest";

export interface Answer {
  error?: string;
  [k: string]: unknown;
}

export interface User {
  id: string;
  name: string;
  token: string;
}

export function pokerApi(nc: () => NatsConnection, defaultTimeout: number) {
  /** A JSON request (a string body goes as it is, for malformed input). */
  async function ask<T = Answer>(subject: string, body: unknown, timeout = defaultTimeout): Promise<T> {
    const data = typeof body === "string" ? body : JSON.stringify(body);
    const msg = await nc().request(subject, data, { timeout });
    return JSON.parse(msg.string()) as T;
  }
  async function register(name: string): Promise<User> {
    const r = await ask("poker.user.register", { name });
    expect(r.error, `register ${name}`).toBeUndefined();
    return r as unknown as User;
  }
  async function balance(account: string): Promise<number> {
    const r = await ask("poker.bank.balance", { user: account });
    expect(r.error, `balance of ${account}`).toBeUndefined();
    expect(r.user).toBe(account);
    return r.balance as number;
  }
  /** Every account the bank opened, from its bucket: the chips it created are 1,000 per user account. */
  async function ledger(): Promise<Map<string, number>> {
    const kv = await new Kvm(nc()).open("hs_default_bank");
    const out = new Map<string, number>();
    for await (const key of await kv.keys("acct.>")) {
      const e = await kv.get(key);
      if (e?.operation === "PUT") out.set(key, (e.json() as { balance: number }).balance);
    }
    return out;
  }
  return { ask, register, balance, ledger };
}
