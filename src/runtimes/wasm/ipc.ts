// What the wasm runtime adds to the runtime-host protocol (../runtime-host-ipc.ts): a deploy's answer
// says whether the component was transpiled or came from the cache.

export interface WasmDeployResult {
  /** For components: whether this deploy transpiled (a cache miss). */
  transpiled: boolean;
}
