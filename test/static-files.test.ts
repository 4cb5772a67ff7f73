// The gateway's static file cache (src/node-agent/static-files.ts): what concurrent requests share.

import { describe, expect, it } from "vitest";
import type { NatsConnection } from "@nats-io/transport-node";
import { StaticFiles } from "../src/node-agent/static-files.js";

describe("StaticFiles", () => {
  it("gzips a file once for concurrent cold requests, and they share the result", async () => {
    const files = new StaticFiles({} as NatsConnection);
    const bytes = new TextEncoder().encode("body { color: #333; }\n".repeat(200));
    const gzipped = (files as unknown as { gzipped(sha: string, b: Uint8Array): Promise<Uint8Array> }).gzipped.bind(files);
    const all = await Promise.all(Array.from({ length: 8 }, () => gzipped("a".repeat(64), bytes)));
    for (const z of all) expect(z).toBe(all[0]);
    // Cached afterwards: the same bytes again.
    expect(await gzipped("a".repeat(64), bytes)).toBe(all[0]);
  });
});
