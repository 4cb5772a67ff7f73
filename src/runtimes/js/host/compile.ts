// Compiling a workload's source in an isolate: a classic script whose completion value is the function,
// or an ES module with `export default`. The kind is found on first compile (a script that fails with
// "Unexpected token 'export'" or "Cannot use import statement" is a module) and V8 code caches are kept
// per source hash, so redeploys, replacement isolates and fresh contexts skip the parse. A code cache is
// made from a source's second compile on: making one costs the isolate ~70 KiB of resident memory for
// good, which a source compiled only once (most functions, one isolate each) would never earn back.

import ivm from "isolated-vm";

export type SourceKind = "script" | "module";

/** One workload's code, shared by all isolates of that workload. */
export interface WorkloadCode {
  /** Workload name, for messages. */
  name: string;
  /** Shown in stack traces. */
  filename: string;
  source: string;
  sha256: string;
  /** Known after the first compile (or from the cache). */
  kind?: SourceKind;
  /** V8 code cache for `source` compiled as `kind`. */
  cachedData?: Uint8Array;
  /** Set when this deploy produced `cachedData` (so the parent can keep it across restarts). */
  producedCache?: boolean;
  /** The source compiled before (in another isolate, or for an earlier deploy): a code cache is worth making. */
  compiledBefore?: boolean;
}

/** A deploy-time problem with the workload's code; its message is shown to the user as is. */
export class WorkloadLoadError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "WorkloadLoadError";
  }
}

/** Compiled-code facts by source SHA-256, kept for the life of the runtime host (bounded). */
export class CodeCache {
  private readonly entries = new Map<string, { kind: SourceKind; cachedData?: Uint8Array }>();
  constructor(private readonly maxEntries = 256) {}

  get(sha256: string): { kind: SourceKind; cachedData?: Uint8Array } | undefined {
    const e = this.entries.get(sha256);
    if (e) {
      // Most recently used last.
      this.entries.delete(sha256);
      this.entries.set(sha256, e);
    }
    return e;
  }

  set(sha256: string, kind: SourceKind, cachedData?: Uint8Array): void {
    this.entries.delete(sha256);
    this.entries.set(sha256, { kind, cachedData });
    while (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next().value;
      if (oldest === undefined) break;
      this.entries.delete(oldest);
    }
  }
}

const MODULE_SYNTAX = [/Unexpected token 'export'/, /Cannot use import statement outside a module/, /Cannot use 'import\.meta' outside a module/];

function isModuleSyntax(err: unknown): boolean {
  const message = (err as Error)?.message ?? "";
  return (err as Error)?.name === "SyntaxError" && MODULE_SYNTAX.some((re) => re.test(message));
}

function cacheOption(code: WorkloadCode): { cachedData?: ivm.ExternalCopy<ArrayBuffer>; produceCachedData?: boolean } {
  if (code.cachedData && code.cachedData.byteLength > 0) {
    const c = code.cachedData;
    return { cachedData: new ivm.ExternalCopy(c.buffer.slice(c.byteOffset, c.byteOffset + c.byteLength) as ArrayBuffer) };
  }
  return code.compiledBefore ? { produceCachedData: true } : {};
}

function takeProduced(code: WorkloadCode, produced: ivm.ExternalCopy<ArrayBuffer> | undefined): void {
  if (!produced) return;
  try {
    code.cachedData = new Uint8Array(produced.copy());
    code.producedCache = true;
  } finally {
    produced.release();
  }
}

export function compileError(code: WorkloadCode, err: unknown): WorkloadLoadError {
  if (err instanceof WorkloadLoadError) return err;
  const e = err as Error;
  const what = e?.name === "SyntaxError" ? "has a syntax error" : "does not compile";
  return new WorkloadLoadError(`JavaScript workload '${code.name}' ${what}: ${e?.message ?? String(err)}`);
}

/**
 * Compiles `code` as a classic script, unless it is already known to be a module. Returns undefined when
 * the source turns out to be a module (code.kind is then "module"; compile it per context with
 * compileModule). Throws WorkloadLoadError for real syntax errors.
 */
export async function compileScript(isolate: ivm.Isolate, code: WorkloadCode): Promise<ivm.Script | undefined> {
  if (code.kind === "module") return undefined;
  const options = { filename: code.filename, ...cacheOption(code) };
  let script: ivm.Script & { cachedData?: ivm.ExternalCopy<ArrayBuffer>; cachedDataRejected?: boolean };
  try {
    script = await isolate.compileScript(code.source, options);
  } catch (err) {
    if (code.kind === undefined && isModuleSyntax(err)) {
      code.kind = "module";
      if (!options.produceCachedData) code.cachedData = undefined;
      return undefined;
    }
    throw compileError(code, err);
  }
  code.kind = "script";
  code.compiledBefore = true;
  if (script.cachedDataRejected) {
    // Stale cache (another V8 build or flags): compile once more to produce a good one.
    code.cachedData = undefined;
    script.release();
    script = await isolate.compileScript(code.source, { filename: code.filename, produceCachedData: true });
  }
  takeProduced(code, script.cachedData);
  return script;
}

export async function compileModule(isolate: ivm.Isolate, code: WorkloadCode): Promise<ivm.Module> {
  let mod: ivm.Module & { cachedData?: ivm.ExternalCopy<ArrayBuffer>; cachedDataRejected?: boolean };
  try {
    mod = await isolate.compileModule(code.source, { filename: code.filename, ...cacheOption(code) });
  } catch (err) {
    throw compileError(code, err);
  }
  code.compiledBefore = true;
  if (mod.cachedDataRejected) code.cachedData = undefined;
  takeProduced(code, mod.cachedData);
  const imports = mod.dependencySpecifiers;
  if (imports.length > 0) {
    mod.release();
    throw new WorkloadLoadError(
      `JavaScript workload '${code.name}' imports ${imports.map((s) => `'${s}'`).join(", ")}; ` +
        "imports are not supported, bundle the function into one file",
    );
  }
  return mod;
}

/**
 * Runs the workload's code in a context and returns its default export (a script's completion value,
 * or a module's `default`), within `timeoutMs`. Modules may not import anything.
 */
export async function evaluateWorkload(isolate: ivm.Isolate, context: ivm.Context, code: WorkloadCode, script: ivm.Script | undefined, timeoutMs: number): Promise<ivm.Reference<unknown>> {
  if (script) return (await script.run(context, { reference: true, timeout: timeoutMs })) as ivm.Reference<unknown>;
  const mod = await compileModule(isolate, code);
  try {
    await mod.instantiate(context, (specifier: string) => {
      throw new Error(`cannot import '${specifier}'`);
    });
    await mod.evaluate({ timeout: timeoutMs });
    // The namespace is a reference of its own: left to the host's garbage collector it keeps the
    // context alive in the isolate, and with a fresh context per trigger the isolate filled up with
    // them (over 32 MB in about 150 triggers).
    const namespace = mod.namespace;
    try {
      return (await namespace.get("default", { reference: true })) as ivm.Reference<unknown>;
    } finally {
      namespace.release();
    }
  } finally {
    mod.release();
  }
}
