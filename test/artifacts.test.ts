// A node's artifact fetch from the NEX_ARTIFACTS object store (src/node-agent/artifacts.ts), against a real
// bundled broker: what a deploy request may name, and what it gets for each bad case.

import { createHash } from "node:crypto";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Objm, type ObjectStore } from "@nats-io/obj";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startBroker, type RunningBroker } from "../src/broker/index.js";
import { fetchArtifact } from "../src/node-agent/artifacts.js";
import { ARTIFACT_BUCKET } from "../src/protocol/control.js";

const sha = (b: Uint8Array): string => createHash("sha256").update(b).digest("hex");
const bytes = (n: number, fill: number): Uint8Array => new Uint8Array(n).fill(fill);

describe("artifacts from the object store", () => {
  let broker: RunningBroker;
  let nc: NatsConnection;
  let artifacts: ObjectStore;
  let tenant: ObjectStore;

  beforeAll(async () => {
    broker = await startBroker({ port: 0 });
    nc = await connect({ servers: broker.url });
    const objm = new Objm(nc);
    artifacts = await objm.create(ARTIFACT_BUCKET);
    tenant = await objm.create("hso_default_secrets");
  });

  afterAll(async () => {
    await nc?.close();
    await broker?.close();
  });

  const fetch = (key: string, expected: string, maxBytes = 1024 * 1024): Promise<Uint8Array> =>
    fetchArtifact(nc, `nats://${ARTIFACT_BUCKET}/${key}`, expected, { maxBytes });

  it("returns the bytes of an artifact whose SHA-256 is the one named, in one chunk or many", async () => {
    const small = new TextEncoder().encode("(subject, payload) => payload");
    await artifacts.putBlob({ name: sha(small) }, small);
    expect(await fetch(sha(small), sha(small))).toEqual(small);
    // 300 KiB: several chunks of the object store's 128 KiB.
    const big = Uint8Array.from({ length: 300 * 1024 }, (_, i) => (i * 7) & 0xff);
    await artifacts.putBlob({ name: "big" }, big);
    expect(await fetch("big", sha(big))).toEqual(big);
    // The store handle is kept per connection: a second deploy reads the same way.
    expect(await fetch(sha(small), sha(small))).toEqual(small);
  });

  it("refuses a missing artifact (404), one over the node's size limit (413) and a wrong hash (400)", async () => {
    await expect(fetch("nothing-here", "0".repeat(64))).rejects.toMatchObject({ code: 404 });
    const large = bytes(4096, 1);
    await artifacts.putBlob({ name: "large" }, large);
    await expect(fetch("large", sha(large), 1000)).rejects.toMatchObject({ code: 413, message: expect.stringMatching(/4096 bytes; this node takes at most 1000/) });
    await expect(fetch("large", "f".repeat(64))).rejects.toMatchObject({ code: 400, message: expect.stringMatching(/hash mismatch/) });
    // What was refused did not stop the next fetch.
    expect(await fetch("large", sha(large))).toEqual(large);
  });

  it("refuses a link out of the artifact store, even when the hash is right", async () => {
    const secret = bytes(64, 42);
    await tenant.putBlob({ name: "key" }, secret);
    await artifacts.link("stolen", await tenant.info("key").then((i) => i!));
    await expect(fetch("stolen", sha(secret))).rejects.toMatchObject({ code: 403, message: expect.stringMatching(/link out of the NEX_ARTIFACTS object store/) });
  });

  it("refuses other buckets and malformed urls", async () => {
    await expect(fetchArtifact(nc, "nats://hso_default_secrets/key", "0".repeat(64), { maxBytes: 1024 })).rejects.toMatchObject({ code: 403 });
    await expect(fetchArtifact(nc, `nats://${ARTIFACT_BUCKET}/`, "0".repeat(64), { maxBytes: 1024 })).rejects.toMatchObject({ code: 400 });
    await expect(fetchArtifact(nc, "http://example.invalid/a.js", "0".repeat(64), { maxBytes: 1024 })).rejects.toMatchObject({ code: 400 });
  });
});
