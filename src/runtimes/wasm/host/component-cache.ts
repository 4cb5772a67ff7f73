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
}

export class ComponentCache {
  private readonly inFlight = new Map<string, Promise<TranspiledComponent>>();
  private readonly transpiler = new Transpiler();

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
    const cached = await this.read(target);
    if (cached) return cached;
    const files = await this.transpiler.transpile(bytes);
    const staging = `${target}.${process.pid}.${Date.now()}.tmp`;
    await fs.mkdir(staging, { recursive: true });
    const coreModules: Record<string, Uint8Array> = {};
    for (const [name, data] of Object.entries(files)) {
      if (name.endsWith(".wasm")) coreModules[name] = data;
      if (name.endsWith(".wasm") || name === ENTRY) await fs.writeFile(path.join(staging, name), data);
    }
    const meta: Meta = { coreModules: Object.keys(coreModules) };
    await fs.writeFile(path.join(staging, META), JSON.stringify(meta));
    // A whole directory appears at once; if another deploy got there first, theirs is as good.
    await fs.rename(staging, target).catch(() => fs.rm(staging, { recursive: true, force: true }));
    return { entryUrl: pathToFileURL(path.join(target, ENTRY)).href, coreModules, transpiled: true };
  }

  private async read(target: string): Promise<TranspiledComponent | undefined> {
    let meta: Meta;
    try {
      meta = JSON.parse(await fs.readFile(path.join(target, META), "utf8")) as Meta;
    } catch {
      return undefined;
    }
    const coreModules: Record<string, Uint8Array> = {};
    for (const name of meta.coreModules) coreModules[name] = await fs.readFile(path.join(target, path.basename(name)));
    return { entryUrl: pathToFileURL(path.join(target, ENTRY)).href, coreModules, transpiled: false };
  }
}
