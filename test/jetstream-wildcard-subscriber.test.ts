// A wildcard subscriber on the bus (`nex sub '>'`, a monitoring tap on `_INBOX.>`) receives consumer
// deliveries but must not bind anyone's push consumer: ordered consumers (KV keys/watch, object gets)
// keep working, as on nats-server.
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { Objm } from "@nats-io/obj";
import { afterEach, beforeEach, expect, it } from "vitest";
import { useJetStreamServer } from "./helpers/jetstream-fixture.js";
import { connectLine, RawClient } from "./helpers/raw.js";
import { describeEachServer, type ServerKind } from "./helpers/servers.js";

describeEachServer("JetStream with a wildcard subscriber on the bus", (kind: ServerKind) => {
  const js = useJetStreamServer(kind);
  let seq = 0;
  const name = (tag: string) => `${tag}_${++seq}`;
  let taps: RawClient[] = [];

  beforeEach(async () => {
    // Two taps, as a user would run them: everything, and every inbox.
    const all = await RawClient.connect(js.server().port);
    await all.sync("CONNECT {}\r\nSUB > 1\r\n");
    const inboxes = await RawClient.connect(js.server().port);
    await inboxes.sync(connectLine() + "SUB _INBOX.> 1\r\n");
    taps = [all, inboxes];
  });
  afterEach(async () => {
    await Promise.all(taps.map((t) => t.close()));
  });

  it("an ordered push consumer is not push_bound and consumes", async () => {
    const c = await js.nc();
    const stream = name("WILD");
    await (await jetstreamManager(c)).streams.add({ name: stream, subjects: [`${stream}.>`] });
    const client = jetstream(c);
    for (let i = 0; i < 3; i++) await client.publish(`${stream}.m`, `v${i}`);
    const consumer = await client.consumers.getPushConsumer(stream);
    expect((await consumer.info(true)).push_bound).toBeFalsy();
    const messages = await consumer.consume();
    const got: string[] = [];
    for await (const m of messages) {
      got.push(m.string());
      if (got.length === 3) break;
    }
    expect(got).toEqual(["v0", "v1", "v2"]);
  });

  it("kv.keys() returns the keys", async () => {
    const c = await js.nc();
    const kv = await new Kvm(c).create(name("wildkv"));
    await kv.put("a", "1");
    await kv.put("b.c", "2");
    const keys: string[] = [];
    for await (const k of await kv.keys()) keys.push(k);
    expect(keys.sort()).toEqual(["a", "b.c"]);
  });

  it("a wildcard subscriber that stopped reading does not hold up the deliveries", async () => {
    const [all] = taps;
    all!.socket.pause();
    const filler = await RawClient.connect(js.server().port);
    const batch = `PUB fill 60000\r\n${"x".repeat(60000)}\r\n`.repeat(16);
    filler.send(connectLine());
    for (let i = 0; i < 8; i++) await filler.sync(batch, 1, 30_000); // ~8 MB it will never read
    await filler.close();
    const c = await js.nc();
    const kv = await new Kvm(c).create(name("stuckkv"));
    await kv.put("k", "v");
    const started = Date.now();
    const keys: string[] = [];
    for await (const k of await kv.keys()) keys.push(k);
    expect(keys).toEqual(["k"]);
    expect(Date.now() - started).toBeLessThan(3000); // well inside the 10 s write deadline
  });

  it("an object-store get returns the object", async () => {
    const c = await js.nc();
    const os = await new Objm(c).create(name("wildobj"));
    const data = new Uint8Array(300 * 1024).map((_, i) => i % 251);
    await os.putBlob({ name: "blob" }, data);
    expect(await os.getBlob("blob")).toEqual(data);
  });
});
