import { connect } from "@nats-io/transport-node";
const nc = await connect({ servers: process.argv[2] });
nc.subscribe("echo", { queue: "q", callback: (_e, m) => m.respond(m.data) });
await nc.flush(); process.send?.("ready");
