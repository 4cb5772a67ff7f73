import { connect } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
const nc = await connect({ servers: process.argv[2] });
if (process.env.BAREKV) {
  const kv = await new Kvm(nc).create("barekv");
  let n = 0;
  nc.subscribe("echo", { queue: "q", callback: async (_e, m) => { const k = "k" + (n++ % 1024); await kv.put(k, m.data); const e = await kv.get(k); m.respond(e.value); } });
} else nc.subscribe("echo", { queue: "q", callback: (_e, m) => m.respond(m.data) });
await nc.flush(); process.send?.("ready");
