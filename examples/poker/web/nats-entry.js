// The NATS client for the page: esbuild bundles this into nats.js (examples/poker/build-web.mjs).
export { wsconnect } from "@nats-io/nats-core";
