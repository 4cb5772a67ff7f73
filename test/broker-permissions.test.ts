// Unit tests of the per-connection permission state (the wire behaviour is in broker-auth.test.ts).
import { afterEach, describe, expect, it, vi } from "vitest";
import { CompiledPermissions, ConnectionPermissions } from "../src/broker/permissions.js";

afterEach(() => vi.restoreAllMocks());

describe("allow_responses reply rights", () => {
  it("a flood of unanswered requests does not sweep all rights on every delivery", () => {
    const perms = new ConnectionPermissions(new CompiledPermissions({ subscribe: { allow: ["svc.>"] }, allow_responses: true }));
    // Each grant reads the clock once and each sweep once more: count the sweeps through the clock.
    const now = vi.spyOn(Date, "now");
    const grants = 30_000;
    for (let i = 0; i < grants; i++) perms.grantReply(`_INBOX.flood.${i}`);
    const sweeps = now.mock.calls.length - grants;
    expect(sweeps).toBeLessThan(10); // was one full sweep per grant past 4096 (about 26,000 here)
    // The rights still work: the newest and the oldest (unexpired) may be answered once.
    expect(perms.canPublish(`_INBOX.flood.${grants - 1}`)).toBe(true);
    expect(perms.canPublish(`_INBOX.flood.0`)).toBe(true);
    expect(perms.canPublish(`_INBOX.flood.0`)).toBe(false);
  });

  it("used rights are swept once there are enough of them", () => {
    const perms = new ConnectionPermissions(new CompiledPermissions({ allow_responses: true }));
    for (let i = 0; i < 5000; i++) {
      perms.grantReply(`r.${i}`);
      expect(perms.canPublish(`r.${i}`)).toBe(true);
    }
    // Every right was used: the sweep past 4096 dropped them, so the map stays small.
    expect((perms as unknown as { replies: Map<string, unknown> }).replies.size).toBeLessThan(4097);
  });
});
