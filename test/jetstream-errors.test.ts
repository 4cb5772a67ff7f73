// The classification of nats.js errors as transient JetStream unavailability, on the error objects
// nats.js 3.4 actually throws (seen against a 3-server cluster: see src/host-services/jetstream-errors.ts),
// and the retry that uses it, also around a create/update whose first answer was lost.
import { errors } from "@nats-io/nats-core";
import { JetStreamApiError, jserrors } from "@nats-io/jetstream/internal";
import { describe, expect, it } from "vitest";
import { HostError } from "../src/host-services/errors.js";
import { transientCause } from "../src/host-services/jetstream-errors.js";
import { backoffMs, withJetStreamRetry } from "../src/host-services/jetstream-retry.js";
import { kvMethods } from "../src/host-services/kv.js";

/** What a KV put to a stream without a leader throws. */
function noLeader(subject: string): Error {
  const nr = new errors.NoRespondersError(subject);
  return new jserrors.JetStreamNotEnabled("jetstream is not enabled", { cause: new errors.RequestError(nr.message, { cause: nr }) });
}

describe("transientCause", () => {
  it("names the stream of a KV or object store subject nobody answered", () => {
    expect(transientCause(noLeader("$KV.hs_default_todo.a"))).toEqual({ cause: "stream KV_hs_default_todo has no leader", ambiguous: false });
    expect(transientCause(noLeader("$O.hso_default_x.C.abc"))?.cause).toBe("stream OBJ_hso_default_x has no leader");
    expect(transientCause(noLeader("$JS.API.STREAM.INFO.KV_x"))?.cause).toMatch(/JetStream API did not answer/);
  });

  it("a timeout is transient and may have been applied", () => {
    expect(transientCause(new errors.TimeoutError())).toEqual({ cause: "JetStream did not answer in time", ambiguous: true });
  });

  it("the JetStream API's 503 (no meta leader) is transient", () => {
    const e = new JetStreamApiError({ code: 503, err_code: 10008, description: "JetStream system temporarily unavailable" });
    expect(transientCause(e)?.cause).toBe("JetStream system temporarily unavailable");
  });

  it("what is not transient is left alone", () => {
    expect(transientCause(new JetStreamApiError({ code: 400, err_code: 10071, description: "wrong last sequence: 3" }))).toBeUndefined();
    expect(transientCause(new jserrors.StreamNotFoundError({ code: 404, err_code: 10059, description: "stream not found" }))).toBeUndefined();
    expect(transientCause(new JetStreamApiError({ code: 503, err_code: 10039, description: "jetstream not enabled for account" }))).toBeUndefined();
    expect(transientCause(new Error("message size exceeds maximum allowed"))).toBeUndefined();
    expect(transientCause(new errors.ClosedConnectionError())).toBeUndefined();
    expect(transientCause("not an error")).toBeUndefined();
  });
});

describe("withJetStreamRetry", () => {
  it("backs off 25, 50, 100, 200, then 400 ms", () => {
    expect([0, 1, 2, 3, 4, 5, 9].map(backoffMs)).toEqual([25, 50, 100, 200, 400, 400, 400]);
  });

  it("retries a transient failure until it passes", async () => {
    let n = 0;
    const v = await withJetStreamRetry(2000, async () => {
      if (++n < 3) throw noLeader("$KV.hs_default_todo.a");
      return "ok";
    });
    expect(v).toBe("ok");
    expect(n).toBe(3);
  });

  it("tells a later attempt that an earlier one may have been applied", async () => {
    const seen: boolean[] = [];
    await withJetStreamRetry(2000, async (info) => {
      seen.push(info.ambiguous);
      if (seen.length === 1) throw new errors.TimeoutError();
      if (seen.length === 2) throw noLeader("$KV.b.k");
    });
    expect(seen).toEqual([false, true, true]);
  });

  it("gives up within its budget with code unavailable, naming the cause", async () => {
    const t = Date.now();
    const err = await withJetStreamRetry(600, async () => {
      throw noLeader("$KV.hs_default_todo.a");
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HostError);
    expect((err as HostError).code).toBe("unavailable");
    expect((err as HostError).message).toMatch(/^JetStream temporarily unavailable: stream KV_hs_default_todo has no leader \(retried for \d+ ms\)$/);
    console.log(`gave up after ${Date.now() - t} ms of a 600 ms budget`);
  });

  it("answers in time when an attempt never returns", async () => {
    const err = await withJetStreamRetry(300, () => new Promise(() => {})).catch((e: unknown) => e);
    expect((err as HostError).code).toBe("unavailable");
    expect((err as HostError).message).toMatch(/did not answer in time/);
  });

  it("gives up on one attempt after attemptMs and tries again", async () => {
    let n = 0;
    const seen: boolean[] = [];
    const v = await withJetStreamRetry(
      2000,
      (info) => {
        seen.push(info.ambiguous);
        return ++n === 1 ? new Promise(() => {}) : Promise.resolve("second");
      },
      { attemptMs: 100 },
    );
    expect(v).toBe("second");
    expect(seen).toEqual([false, true]);
  });

  it("names the stream when the cause does not", async () => {
    const err = await withJetStreamRetry(300, () => new Promise(() => {}), { stream: () => "KV_hs_default_todo" }).catch((e: unknown) => e);
    expect((err as HostError).message).toMatch(/^JetStream temporarily unavailable: JetStream did not answer in time \(stream KV_hs_default_todo\) \(retried for \d+ ms\)$/);
  });

  it("does not retry what is not transient", async () => {
    let n = 0;
    const err = await withJetStreamRetry(2000, async () => {
      n++;
      throw new HostError("wrong_revision", "key k is not at revision 3");
    }).catch((e: unknown) => e);
    expect((err as HostError).code).toBe("wrong_revision");
    expect(n).toBe(1);
  });
});

describe("kv create/update retried after an answer was lost", () => {
  const value = new TextEncoder().encode("mine");
  const conflict = () => new JetStreamApiError({ code: 400, err_code: 10071, description: "wrong last sequence: 7" });

  /** A bucket whose first write is applied but times out, and whose retry then conflicts; the key holds `stored`. */
  function lostAck(stored: Uint8Array) {
    let calls = 0;
    const entry = { value: stored, revision: 7, operation: "PUT" };
    const write = async () => {
      if (++calls === 1) throw new errors.TimeoutError();
      throw conflict();
    };
    const kv = { create: write, update: write, get: async () => entry };
    return {
      ctx: (headers: Record<string, string>) => ({
        workload: { id: "w", name: "todo", namespace: "default" },
        body: value,
        header: (n: string) => headers[n],
        required: (n: string) => headers[n],
        kv: async () => kv,
        timeoutMs: () => 2000,
      }),
      calls: () => calls,
    };
  }

  it("create: the key holding our bytes is our own write, not exists", async () => {
    const b = lostAck(value);
    const r = await kvMethods.create(b.ctx({ "Nex-Key": "k" }) as never);
    expect(r.headers?.["Nex-Revision"]).toBe("7");
    expect(b.calls()).toBe(2);
  });

  it("create: other bytes there are exists", async () => {
    const b = lostAck(new TextEncoder().encode("theirs"));
    const err = await kvMethods.create(b.ctx({ "Nex-Key": "k" }) as never).catch((e: unknown) => e);
    expect((err as HostError).code).toBe("exists");
  });

  it("update: our bytes at a later revision are our own write; a conflict without a lost answer stays wrong_revision", async () => {
    const b = lostAck(value);
    const r = await kvMethods.update(b.ctx({ "Nex-Key": "k", "Nex-Revision": "6" }) as never);
    expect(r.headers?.["Nex-Revision"]).toBe("7");
    const plain = { create: async () => Promise.reject(conflict()), update: async () => Promise.reject(conflict()), get: async () => ({ value, revision: 7, operation: "PUT" }) };
    const ctx = { ...b.ctx({ "Nex-Key": "k", "Nex-Revision": "6" }), kv: async () => plain };
    expect(((await kvMethods.update(ctx as never).catch((e: unknown) => e)) as HostError).code).toBe("wrong_revision");
  });
});
