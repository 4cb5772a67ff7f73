// The component transpiler thread (see transpiler.ts): jco's transpile of a component, and the checks
// that it fits the contract of wit/nex.wit, away from the node's event loop.

import { parentPort } from "node:worker_threads";
import { WasmFormatError } from "../binary.js";
import { ENTRY, PROVIDED_IMPORTS, type TranspileReply, type TranspileRequest } from "../host/transpiler.js";

const HANDLE_SIGNATURE = /export handle: func\(\s*[\w-]+: string,\s*[\w-]+: list<u8>\s*\) -> result<list<u8>, string>;/;

/** jco's output for a component that fits the contract; a WasmFormatError says why one does not. */
async function transpileChecked(bytes: Uint8Array): Promise<Record<string, Uint8Array>> {
  // Loaded on first use: jco brings its own wasm builds of the component tools.
  const { transpileBytes } = await import("@bytecodealliance/jco-transpile");
  const { componentWit } = await import("@bytecodealliance/jco-transpile/wasm-tools");
  let out: Awaited<ReturnType<typeof transpileBytes>>;
  try {
    out = await transpileBytes(bytes, { name: "component", instantiation: "sync", base64Cutoff: 0, noComponentErrorWrapping: true });
  } catch (err) {
    throw new WasmFormatError(`invalid WebAssembly component: ${(err as Error).message ?? String(err)}`);
  }
  const handle = out.exports.find(([name]) => name === "handle");
  if (!handle || handle[1] !== "function") {
    const names = out.exports.map(([name]) => name).join(", ") || "nothing";
    throw new WasmFormatError(`the component does not export a handle function (it exports ${names}); see wit/nex.wit`);
  }
  const wit = await componentWit(bytes);
  if (!HANDLE_SIGNATURE.test(wit)) {
    throw new WasmFormatError("the component's handle is not func(subject: string, payload: list<u8>) -> result<list<u8>, string>; see wit/nex.wit");
  }
  const unsupported = out.imports.map((name) => name.replace(/@.*$/, "")).filter((name) => !PROVIDED_IMPORTS.includes(name));
  if (unsupported.length > 0) {
    throw new WasmFormatError(`the component imports ${unsupported.join(", ")}, which nex does not provide (a component may import ${PROVIDED_IMPORTS.join(", ")})`);
  }
  if (!out.files[ENTRY]) throw new WasmFormatError(`jco produced no ${ENTRY}`);
  return out.files;
}

const port = parentPort!;
// One request at a time, in order: jco's tools are not meant to run interleaved.
let queue: Promise<void> = Promise.resolve();
port.on("message", (request: TranspileRequest) => {
  queue = queue.then(async () => {
    let reply: TranspileReply;
    try {
      reply = { id: request.id, ok: true, files: await transpileChecked(request.bytes) };
    } catch (err) {
      reply = { id: request.id, ok: false, format: err instanceof WasmFormatError, message: (err as Error)?.message ?? String(err) };
    }
    port.postMessage(reply);
  });
});
