// The NATS client for the page, and tweetnacl to open sealed replies: esbuild bundles both into nats.js
// (examples/poker/build-web.mjs).
export { wsconnect } from "@nats-io/nats-core";
export { default as nacl } from "tweetnacl";
