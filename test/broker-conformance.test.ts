// Client-level conformance over TCP: the official nats.js client against the bundled broker and the
// reference nats-server, with identical expectations. The scenarios live in helpers/conformance-suite.ts
// and run over WebSocket too (broker-conformance-ws.test.ts).
import { conformanceSuite } from "./helpers/conformance-suite.js";

conformanceSuite("tcp");
