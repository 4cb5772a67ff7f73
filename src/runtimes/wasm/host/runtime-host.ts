// The wasm runtime-host child process: runs WebAssembly workloads (WASI preview1 commands and
// components) on worker threads, away from the node agent and the bundled broker, so a guest that
// brings V8 down (a fatal out-of-memory error, say) costs a restart of this process, never the node.
// Started by WasmRuntime (node process) with an IPC channel; the serving loop, NATS connection and
// trigger subscriptions are shared with the JavaScript runtime host (../../host/runtime-host-child.ts). What
// is wasm's own: preparing the artifact (caps, compile, transpile with the component cache) into a
// pool of guest workers (guest-pool.ts, guest-worker.ts).

import { builtScript } from "../../../util/built-script.js";
import { poolSize } from "../../host/hosted-workload.js";
import { serveRuntimeHost } from "../../host/runtime-host-child.js";
import { ComponentCache } from "./component-cache.js";
import { startGuestPool } from "./guest-pool.js";
import type { WasmDeployResult } from "../ipc.js";
import { prepareProgram } from "./prepare.js";

/** Largest reply a guest may give, when the NATS server allows more. */
const MAX_REPLY_BYTES = 8 * 1024 * 1024;

const workerScript = builtScript(import.meta.url, "../worker/guest-worker.js");
let components: ComponentCache | undefined;

serveRuntimeHost<object, WasmDeployResult>({
  name: "wasm-runtime-host",
  async load({ spec }, ctx) {
    if (!ctx.settings.cacheDir) throw new Error("the wasm runtime host has no component cache directory");
    components ??= new ComponentCache(ctx.settings.cacheDir);
    // The wall-clock deadline is enforced per trigger; CPU time is not measured separately for wasm.
    const { program, transpiled } = await prepareProgram({ ...spec, sha256: ctx.sha256 }, ctx.limits, components);
    const pool = await startGuestPool({
      workerScript,
      program,
      limits: ctx.limits,
      concurrency: poolSize(spec.concurrency),
      maxReplyBytes: Math.min(MAX_REPLY_BYTES, ctx.nc.info?.max_payload ?? MAX_REPLY_BYTES),
      hostCall: (r, deadlineAt) => ctx.bridge.call(r.service, r.method, r.headers, r.body, deadlineAt),
      log: (stream, text) => ctx.events.log(spec.id, stream, text),
      logger: ctx.log,
      warm: ctx.warm,
    });
    return { pool, result: { transpiled: transpiled === true }, details: { form: program.form, transpiled } };
  },
  close: () => components?.close() ?? Promise.resolve(),
});
