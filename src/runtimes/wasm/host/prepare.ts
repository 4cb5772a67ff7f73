// Runs in the wasm runtime-host child process. Deploy-time preparation of a wasm artifact into the program its workers run: the form is read from
// the header; core modules get their memories and tables capped (../binary.ts) and are compiled once (a WebAssembly.Module is shared with
// every worker without recompiling). Anything that cannot run is refused here with a WasmFormatError.

import type { FunctionSpec } from "../../runtime-host-ipc.js";
import type { WorkloadLimits } from "../../types.js";
import { capGrowth, pagesFor, tableElementsFor, WASM_PAGE_BYTES, WasmFormatError, wasmForm } from "../binary.js";
import type { ComponentCache } from "./component-cache.js";
import type { GuestProgram } from "./guest-pool.js";

const WASI_MODULE = "wasi_snapshot_preview1";
/**
 * Every preview1 function (node:wasi implements them all). Listed rather than read from a WASI
 * instance, which would print node's "WASI is experimental" warning in the node process.
 */
const WASI_FUNCTIONS = new Set(
  (
    "args_get args_sizes_get clock_res_get clock_time_get environ_get environ_sizes_get fd_advise fd_allocate fd_close " +
    "fd_datasync fd_fdstat_get fd_fdstat_set_flags fd_fdstat_set_rights fd_filestat_get fd_filestat_set_size " +
    "fd_filestat_set_times fd_pread fd_prestat_dir_name fd_prestat_get fd_pwrite fd_read fd_readdir fd_renumber fd_seek " +
    "fd_sync fd_tell fd_write path_create_directory path_filestat_get path_filestat_set_times path_link path_open " +
    "path_readlink path_remove_directory path_rename path_symlink path_unlink_file poll_oneoff proc_exit proc_raise " +
    "random_get sched_yield sock_accept sock_recv sock_send sock_shutdown"
  ).split(" "),
);

async function compile(bytes: Uint8Array, what: string, limits: WorkloadLimits): Promise<WebAssembly.Module> {
  const capped = capGrowth(bytes, { memoryPages: pagesFor(limits.memoryMb), tableElements: tableElementsFor(limits.memoryMb) });
  try {
    return await WebAssembly.compile(capped);
  } catch (err) {
    throw new WasmFormatError(`invalid ${what}: ${(err as Error).message}`);
  }
}

function checkCommand(module: WebAssembly.Module): void {
  const exports = WebAssembly.Module.exports(module);
  if (!exports.some((e) => e.name === "_start" && e.kind === "function")) {
    throw new WasmFormatError("the module has no _start export, so it is not a WASI command (build it as a command, not a reactor or library)");
  }
  if (!exports.some((e) => e.name === "memory" && e.kind === "memory")) throw new WasmFormatError("the module does not export its memory");
  for (const i of WebAssembly.Module.imports(module)) {
    if (i.module !== WASI_MODULE || i.kind !== "function" || !WASI_FUNCTIONS.has(i.name)) {
      throw new WasmFormatError(`the module imports ${i.module}.${i.name} (${i.kind}); a WASI command may import only ${WASI_MODULE} functions`);
    }
  }
}

export interface PreparedProgram {
  program: GuestProgram;
  /** For components: whether this deploy transpiled (false on a cache hit). */
  transpiled?: boolean;
}

export async function prepareProgram(spec: FunctionSpec, limits: WorkloadLimits, components: ComponentCache): Promise<PreparedProgram> {
  if (wasmForm(spec.artifact) === "module") {
    const module = await compile(spec.artifact, "WebAssembly module", limits);
    checkCommand(module);
    const maxMemoryBytes = pagesFor(limits.memoryMb) * WASM_PAGE_BYTES;
    return { program: { form: "module", module, name: spec.name, env: { ...spec.env }, maxMemoryBytes } };
  }
  const component = await components.load(spec.artifact, spec.sha256);
  const coreModules: Record<string, WebAssembly.Module> = {};
  for (const [name, bytes] of Object.entries(component.coreModules)) {
    coreModules[name] = await compile(bytes, `core module ${name} of the component`, limits);
  }
  return { program: { form: "component", entryUrl: component.entryUrl, coreModules }, transpiled: component.transpiled };
}
