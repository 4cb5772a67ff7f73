// Components are transpiled with jco into an ES module plus core modules, once per artifact: the
// output is kept on disk under <cacheDir>/<sha256>/ and a later deploy of the same bytes (on this
// node, also after a restart) loads it without transpiling. Only components that fit the contract
// are cached: they export `handle` with the signature of wit/nex.wit and import nothing but nex:host
// interfaces. Anything else (WASI filesystem, sockets, clocks, environment...) is refused at deploy,
// which is how a component gets no capability the node does not give it.

import fs from "node:fs/promises";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { ENTRY, Transpiler } from "./transpiler.js";

const META = "meta.json";

export interface TranspiledComponent {
  entryUrl: string;
  /** Core module files (name → bytes) that the entry module asks for. */
  coreModules: Record<string, Uint8Array>;
  /** True when this load transpiled (a cache miss). */
  transpiled: boolean;
}

interface Meta {
  coreModules: string[];
  /** Bytes of each file written (the entry and the core modules), checked on read. */
  sizes?: Record<string, number>;
}

/** Staging directories older than this were left by a process killed mid-write. */
const STALE_STAGING_MS = 10 * 60_000;

export class ComponentCache {
  private readonly inFlight = new Map<string, Promise<TranspiledComponent>>();
  private readonly transpiler = new Transpiler();
  private swept = false;

  constructor(private readonly dir: string) {}

  /** Stops the transpiler thread (if one was started). */
  close(): Promise<void> {
    return this.transpiler.close();
  }

  /** The transpiled component for these bytes, from the cache or transpiled now. */
  load(bytes: Uint8Array, sha256: string): Promise<TranspiledComponent> {
    let loading = this.inFlight.get(sha256);
    if (!loading) {
      loading = this.loadOrTranspile(bytes, sha256).finally(() => this.inFlight.delete(sha256));
      this.inFlight.set(sha256, loading);
    }
    return loading;
  }

  private async loadOrTranspile(bytes: Uint8Array, sha256: string): Promise<TranspiledComponent> {
    if (!/^[0-9a-f]{64}$/.test(sha256)) throw new Error(`invalid artifact sha256 ${JSON.stringify(sha256)}`);
    const target = path.join(this.dir, sha256);
    if (!this.swept) await this.sweepStaging();
    const cached = await this.read(target);
    if (typeof cached === "object") return cached;
    // Damaged (a crash mid-write, a full disk): made again below, in place of what is there. (Only then:
    // an absent one may be another process's, renamed into place just now.)
    if (cached === "broken") await fs.rm(target, { recursive: true, force: true });
    const files = await this.transpiler.transpile(bytes);
    const staging = `${target}.${process.pid}.${Date.now()}.tmp`;
    await fs.mkdir(staging, { recursive: true });
    const coreModules: Record<string, Uint8Array> = {};
    const sizes: Record<string, number> = {};
    for (const [name, data] of Object.entries(files)) {
      if (name.endsWith(".wasm")) coreModules[name] = data;
      if (name.endsWith(".wasm") || name === ENTRY) {
        await fs.writeFile(path.join(staging, name), data);
        sizes[name] = data.byteLength;
      }
    }
    const meta: Meta = { coreModules: Object.keys(coreModules), sizes };
    await fs.writeFile(path.join(staging, META), JSON.stringify(meta));
    // A whole directory appears at once; if another deploy got there first, theirs is as good.
    await fs.rename(staging, target).catch(() => fs.rm(staging, { recursive: true, force: true }));
    return { entryUrl: pathToFileURL(path.join(target, ENTRY)).href, coreModules, transpiled: true };
  }

  /** The cached entry; "absent" when there is none, "broken" when it is not whole (then it is made again). */
  private async read(target: string): Promise<TranspiledComponent | "absent" | "broken"> {
    try {
      await fs.access(target);
    } catch {
      return "absent";
    }
    try {
      const meta = JSON.parse(await fs.readFile(path.join(target, META), "utf8")) as Meta;
      if (!Array.isArray(meta.coreModules) || !meta.coreModules.every((n) => typeof n === "string")) return "broken";
      for (const [name, size] of Object.entries(meta.sizes ?? {})) {
        if ((await fs.stat(path.join(target, path.basename(name)))).size !== size) return "broken";
      }
      const coreModules: Record<string, Uint8Array> = {};
      for (const name of meta.coreModules) coreModules[name] = await fs.readFile(path.join(target, path.basename(name)));
      return { entryUrl: pathToFileURL(path.join(target, ENTRY)).href, coreModules, transpiled: false };
    } catch {
      return "broken";
    }
  }

  /** Removes staging directories a killed process left (once per cache; others' recent ones stay). */
  private async sweepStaging(): Promise<void> {
    this.swept = true;
    const names = await fs.readdir(this.dir).catch(() => [] as string[]);
    for (const name of names) {
      if (!name.endsWith(".tmp")) continue;
      const at = path.join(this.dir, name);
      const stat = await fs.stat(at).catch(() => undefined);
      if (stat && Date.now() - stat.mtimeMs > STALE_STAGING_MS) await fs.rm(at, { recursive: true, force: true });
    }
  }
}
