// What every isolate of a JavaScript workload starts from, before anything of the workload is in it: the
// isolate with its memory limit, the bootstrap compiled (from a code cache shared by the process), and
// contexts in which the bootstrap has run. Nothing here depends on the workload, so a spare one can be
// made ahead of a deploy (spare-isolate.ts).

import ivm from "isolated-vm";
import { BOOTSTRAP_SOURCE, GUEST_LAYOUT } from "../isolate/bootstrap.js";

/** Time allowed for evaluating the workload's top-level code (or the bootstrap) in a new context. */
export const LOAD_TIMEOUT_MS = 5000;

/** isolated-vm's memoryLimit for a workload's memory_mb (isolated-vm takes no less than 8). */
export function isolateMemoryLimitMb(memoryMb: number): number {
  return Math.max(8, Math.floor(memoryMb));
}

/** A context in which the bootstrap ran; `setup` is its completion value (../isolate/bootstrap.ts). */
export interface BlankContext {
  context: ivm.Context;
  setup: ivm.Reference<unknown>;
}

/** GUEST_LAYOUT copied out of this isolate once per process; each setup call gets a copy of it. */
const layoutCopy = new ivm.ExternalCopy(GUEST_LAYOUT);

/** setup's `layout` argument (../isolate/bootstrap.ts). */
export function guestLayout(): unknown {
  return layoutCopy.copyInto();
}

/** V8 code cache of BOOTSTRAP_SOURCE, shared by every isolate of this process. */
let bootstrapCache: Uint8Array | undefined;

export async function compileBootstrap(isolate: ivm.Isolate): Promise<ivm.Script> {
  const cached = bootstrapCache;
  const script = (await isolate.compileScript(BOOTSTRAP_SOURCE, {
    filename: "nex:bootstrap",
    ...(cached
      ? { cachedData: new ivm.ExternalCopy(cached.buffer.slice(cached.byteOffset, cached.byteOffset + cached.byteLength) as ArrayBuffer) }
      : { produceCachedData: true }),
  })) as ivm.Script & { cachedData?: ivm.ExternalCopy<ArrayBuffer>; cachedDataRejected?: boolean };
  if (script.cachedData) {
    bootstrapCache = new Uint8Array(script.cachedData.copy());
    script.cachedData.release();
  } else if (script.cachedDataRejected) {
    bootstrapCache = undefined;
  }
  return script;
}

export class BlankIsolate {
  readonly isolate: ivm.Isolate;
  private bootstrap?: ivm.Script;
  /** The context made with the isolate, until the first workload context takes it. */
  private first?: BlankContext;
  /** Where isolated-vm's report that it lost control of the isolate goes; the slot taking it sets its own. */
  onCatastrophic: (message: string) => void;

  private constructor(
    readonly memoryLimitMb: number,
    onCatastrophic: (message: string) => void,
  ) {
    this.onCatastrophic = onCatastrophic;
    this.isolate = new ivm.Isolate({ memoryLimit: memoryLimitMb, onCatastrophicError: (message: string) => this.onCatastrophic(message) });
  }

  /** An isolate with the bootstrap compiled and a context ready; disposed again if that fails. */
  static async make(memoryLimitMb: number, onCatastrophic: (message: string) => void): Promise<BlankIsolate> {
    const blank = new BlankIsolate(memoryLimitMb, onCatastrophic);
    try {
      blank.bootstrap = await compileBootstrap(blank.isolate);
      blank.first = await blank.newContext();
      return blank;
    } catch (err) {
      blank.dispose();
      throw err;
    }
  }

  /** The context made ahead if it is still unused, else a new one. */
  async context(): Promise<BlankContext> {
    const first = this.first;
    this.first = undefined;
    return first ?? this.newContext();
  }

  private async newContext(): Promise<BlankContext> {
    const context = await this.isolate.createContext();
    try {
      const setup = (await this.bootstrap!.run(context, { reference: true, timeout: LOAD_TIMEOUT_MS })) as ivm.Reference<unknown>;
      return { context, setup };
    } catch (err) {
      releaseQuietly(context);
      throw err;
    }
  }

  dispose(): void {
    if (this.isolate.isDisposed) return;
    try {
      this.isolate.dispose();
    } catch {
      // already gone
    }
  }
}

/** Releases a handle whose isolate may be gone already. */
export function releaseQuietly(handle: { release(): void }): void {
  try {
    handle.release();
  } catch {
    // released with the isolate
  }
}
