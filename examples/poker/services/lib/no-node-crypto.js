// Stands in for Node's "crypto" in the service bundles: tweetnacl asks for it (behind a typeof-require
// check that esbuild's bundle turns true) to find a random source; in an isolate there is none, and
// lib/common.js gives tweetnacl crypto.getRandomValues instead.
export {};
