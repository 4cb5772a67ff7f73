// Client-level conformance over WebSocket: every scenario of helpers/conformance-suite.ts, with nats.js
// connecting through `wsconnect` (and raw clients through helpers/ws-frames.ts) to nats-server's
// websocket listener and to the bundled broker's, with the same expectations as over TCP.
import { conformanceSuite } from "./helpers/conformance-suite.js";

conformanceSuite("websocket");
