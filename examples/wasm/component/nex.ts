// The guest side of wit/nex.wit for AssemblyScript, written by hand against the component model's
// canonical ABI (there is no AssemblyScript bindings generator): `cabi_realloc` for the host to place
// arguments in our memory, the `handle` export that lifts them and lowers the handler's result, and
// wrappers for the imports the examples use (kv get/set, object-store get/put, log, workloads). An
// import the module does not call is left out by asc, so a component imports only what it uses. Compile with `--use abort=` so the
// module has no `env` imports: a failed assertion traps instead.

/** What a handler returns: reply bytes, or an error message for an error reply. */
export class Reply {
  constructor(public readonly ok: Uint8Array | null, public readonly err: string | null) {}
  static bytes(data: Uint8Array): Reply {
    return new Reply(data, null);
  }
  static text(s: string): Reply {
    return new Reply(Uint8Array.wrap(String.UTF8.encode(s)), null);
  }
  static error(message: string): Reply {
    return new Reply(null, message);
  }
}

/** A host call that failed (wit `host-error`). */
export class HostError {
  constructor(public readonly code: string, public readonly message: string) {}
}

/** Raw memory the host reads after `handle` returns; freed by `cabi_post_handle`. */
const RESULT_AREA = memory.data(12, 4);
/** Where an import writes its result (the largest is result<option<list<u8>>, host-error>: 20 bytes). */
const IMPORT_AREA = memory.data(24, 8);

export function cabi_realloc(oldPtr: usize, oldSize: usize, align: usize, newSize: usize): usize {
  if (oldPtr == 0) return heap.alloc(max<usize>(newSize, 1));
  return heap.realloc(oldPtr, max<usize>(newSize, 1));
}

function takeBytes(ptr: usize, len: usize): Uint8Array {
  const out = new Uint8Array(<i32>len);
  memory.copy(out.dataStart, ptr, len);
  heap.free(ptr);
  return out;
}

function takeString(ptr: usize, len: usize): string {
  const s = String.UTF8.decodeUnsafe(ptr, len);
  heap.free(ptr);
  return s;
}

/** A string the host placed with cabi_realloc; jco passes an empty one as (1, 0), allocating nothing. */
function takeHostString(ptr: usize, len: usize): string {
  if (len == 0) return "";
  return takeString(ptr, len);
}

function rawCopy(data: Uint8Array): usize {
  const ptr = heap.alloc(max<usize>(data.byteLength, 1));
  memory.copy(ptr, data.dataStart, data.byteLength);
  return ptr;
}

/** Lowers a handler's reply into RESULT_AREA as result<list<u8>, string>. */
export function lowerReply(reply: Reply): usize {
  const ok = reply.ok;
  if (ok !== null) {
    store<u8>(RESULT_AREA, 0);
    store<u32>(RESULT_AREA, <u32>rawCopy(ok), 4);
    store<u32>(RESULT_AREA, ok.byteLength, 8);
  } else {
    const text = Uint8Array.wrap(String.UTF8.encode(reply.err !== null ? reply.err! : "error"));
    store<u8>(RESULT_AREA, 1);
    store<u32>(RESULT_AREA, <u32>rawCopy(text), 4);
    store<u32>(RESULT_AREA, text.byteLength, 8);
  }
  return RESULT_AREA;
}

/** Lifts `handle`'s arguments (the host allocated them with cabi_realloc; they are ours to free). */
export function liftSubject(ptr: usize, len: usize): string {
  return takeString(ptr, len);
}
export function liftPayload(ptr: usize, len: usize): Uint8Array {
  return takeBytes(ptr, len);
}

export function postReturn(area: usize): void {
  heap.free(<usize>load<u32>(area, 4));
}

function liftHostError(at: usize): HostError {
  const code = takeHostString(<usize>load<u32>(at, 0), <usize>load<u32>(at, 4));
  const message = takeHostString(<usize>load<u32>(at, 8), <usize>load<u32>(at, 12));
  return new HostError(code, message);
}

// @ts-ignore: decorator
@external("nex:host/kv@0.1.0", "get")
declare function kvGetImport(keyPtr: usize, keyLen: usize, ret: usize): void;
// @ts-ignore: decorator
@external("nex:host/kv@0.1.0", "set")
declare function kvSetImport(keyPtr: usize, keyLen: usize, valuePtr: usize, valueLen: usize, ret: usize): void;
// @ts-ignore: decorator
@external("nex:host/object-store@0.1.0", "get")
declare function objectGetImport(namePtr: usize, nameLen: usize, ret: usize): void;
// @ts-ignore: decorator
@external("nex:host/object-store@0.1.0", "put")
declare function objectPutImport(namePtr: usize, nameLen: usize, dataPtr: usize, dataLen: usize, ret: usize): void;
// @ts-ignore: decorator
@external("nex:host/workloads@0.1.0", "deploy")
declare function workloadsDeployImport(specPtr: usize, specLen: usize, ret: usize): void;
// @ts-ignore: decorator
@external("nex:host/workloads@0.1.0", "undeploy")
declare function workloadsUndeployImport(idPtr: usize, idLen: usize, ret: usize): void;
// @ts-ignore: decorator
@external("nex:host/workloads@0.1.0", "children")
declare function workloadsChildrenImport(ret: usize): void;
// @ts-ignore: decorator
@external("nex:host/log@0.1.0", "info")
declare function logInfoImport(ptr: usize, len: usize): void;
// @ts-ignore: decorator
@external("nex:host/log@0.1.0", "error")
declare function logErrorImport(ptr: usize, len: usize): void;

/** Outcome of a host call: a value (null for none) or a host error. */
export class HostValue {
  constructor(public readonly value: Uint8Array | null, public readonly error: HostError | null) {}
}

/** Lifts a result<option<list<u8>>, host-error> the import wrote into IMPORT_AREA. */
function liftOptionalBytes(): HostValue {
  if (load<u8>(IMPORT_AREA) != 0) return new HostValue(null, liftHostError(IMPORT_AREA + 4));
  if (load<u8>(IMPORT_AREA, 4) == 0) return new HostValue(null, null);
  return new HostValue(takeBytes(<usize>load<u32>(IMPORT_AREA, 8), <usize>load<u32>(IMPORT_AREA, 12)), null);
}

export namespace kv {
  export function get(key: string): HostValue {
    const k = String.UTF8.encode(key);
    kvGetImport(changetype<usize>(k), k.byteLength, IMPORT_AREA);
    return liftOptionalBytes();
  }

  /** Stores the value; returns the host error, or null when it worked. */
  export function set(key: string, value: Uint8Array): HostError | null {
    const k = String.UTF8.encode(key);
    kvSetImport(changetype<usize>(k), k.byteLength, value.dataStart, value.byteLength, IMPORT_AREA);
    if (load<u8>(IMPORT_AREA) != 0) return liftHostError(IMPORT_AREA + 8);
    return null;
  }
}

export namespace objectStore {
  export function get(name: string): HostValue {
    const n = String.UTF8.encode(name);
    objectGetImport(changetype<usize>(n), n.byteLength, IMPORT_AREA);
    return liftOptionalBytes();
  }

  /** Stores the object; returns the host error, or null when it worked. */
  export function put(name: string, data: Uint8Array): HostError | null {
    const n = String.UTF8.encode(name);
    objectPutImport(changetype<usize>(n), n.byteLength, data.dataStart, data.byteLength, IMPORT_AREA);
    if (load<u8>(IMPORT_AREA) != 0) return liftHostError(IMPORT_AREA + 4);
    return null;
  }
}

export namespace log {
  export function info(line: string): void {
    const s = String.UTF8.encode(line);
    logInfoImport(changetype<usize>(s), s.byteLength);
  }
  export function error(line: string): void {
    const s = String.UTF8.encode(line);
    logErrorImport(changetype<usize>(s), s.byteLength);
  }
}

/** wit `workloads.deployed`: the child `deploy` started and the node it runs on. */
export class Deployed {
  constructor(public readonly workloadId: string, public readonly nodeId: string) {}
}

/** wit `workloads.child`: one of this workload's children. */
export class Child {
  constructor(public readonly workloadId: string, public readonly nodeId: string, public readonly name: string) {}
}

/** Outcome of workloads.deploy: the child, or a host error. */
export class Deployment {
  constructor(public readonly child: Deployed | null, public readonly error: HostError | null) {}
}

/** Outcome of workloads.children: the children (empty on error), or a host error. */
export class Children {
  constructor(public readonly children: Child[], public readonly error: HostError | null) {}
}

/** wit `record child { workload-id, node-id, name }` in a list: three strings, 24 bytes, align 4. */
const CHILD_SIZE: usize = 24;

export namespace workloads {
  /**
   * Deploys a child from a spec in JSON ({"name", "artifact", "trigger_subjects", "env", ...}; see
   * wit/nex.wit). Lowered as (spec ptr, spec len, result area); the result<deployed, host-error> is a
   * tag at 0 and two strings (pointer, length) from offset 4.
   */
  export function deploy(specJson: string): Deployment {
    const spec = String.UTF8.encode(specJson);
    workloadsDeployImport(changetype<usize>(spec), spec.byteLength, IMPORT_AREA);
    if (load<u8>(IMPORT_AREA) != 0) return new Deployment(null, liftHostError(IMPORT_AREA + 4));
    const workloadId = takeHostString(<usize>load<u32>(IMPORT_AREA, 4), <usize>load<u32>(IMPORT_AREA, 8));
    const nodeId = takeHostString(<usize>load<u32>(IMPORT_AREA, 12), <usize>load<u32>(IMPORT_AREA, 16));
    return new Deployment(new Deployed(workloadId, nodeId), null);
  }

  /** Stops one of this workload's children; returns the host error, or null when it worked. */
  export function undeploy(workloadId: string): HostError | null {
    const id = String.UTF8.encode(workloadId);
    workloadsUndeployImport(changetype<usize>(id), id.byteLength, IMPORT_AREA);
    if (load<u8>(IMPORT_AREA) != 0) return liftHostError(IMPORT_AREA + 4);
    return null;
  }

  /** This workload's live children. result<list<child>, host-error>: a tag, then the list's (pointer, count). */
  export function children(): Children {
    workloadsChildrenImport(IMPORT_AREA);
    if (load<u8>(IMPORT_AREA) != 0) return new Children([], liftHostError(IMPORT_AREA + 4));
    const list = <usize>load<u32>(IMPORT_AREA, 4);
    const count = <i32>load<u32>(IMPORT_AREA, 8);
    const out = new Array<Child>(count);
    for (let i = 0; i < count; i++) {
      const at = list + <usize>i * CHILD_SIZE;
      out[i] = new Child(
        takeHostString(<usize>load<u32>(at, 0), <usize>load<u32>(at, 4)),
        takeHostString(<usize>load<u32>(at, 8), <usize>load<u32>(at, 12)),
        takeHostString(<usize>load<u32>(at, 16), <usize>load<u32>(at, 20)),
      );
    }
    // The canonical ABI allocates a list's room even when it is empty.
    heap.free(list);
    return new Children(out, null);
  }
}
