// Which functions a runtime host keeps loaded. A loaded slot (a JavaScript isolate with its context, a
// wasm worker thread) holds a megabyte or more while nothing triggers it, so a node with many rarely
// used functions would spend its memory on idle ones. Past a budget of loaded slots, the least recently
// triggered idle functions unload ("hibernate", as serverless platforms evict idle isolates) and load
// again on their next trigger. That trigger pays a load (with the code cache, a few milliseconds), and
// what the function kept in its globals is gone, as after any replacement of a slot.

/** A function's pool of slots, as the budget sees it (SlotPool). */
export interface Hibernating {
  /** Slots the pool loads when awake. */
  readonly size: number;
  /** Unloads every slot if nothing runs or waits; false when busy (it stays loaded). */
  hibernate(): boolean;
}

/** Pools looked at past the budget per trigger: the trim stays cheap when the oldest pools are busy. */
const MAX_SCAN = 32;

export class WarmPools {
  /** The loaded pools, least recently triggered first (a Map keeps insertion order). */
  private readonly order = new Map<Hibernating, true>();
  private loadedSlots = 0;
  /** The pool used last: a pool triggered again and again (the usual case) costs one comparison. */
  private latest?: Hibernating;

  constructor(readonly maxSlots: number) {}

  /** A pool was triggered or has just loaded: it becomes the most recent, and the oldest idle ones past the budget unload. */
  used(pool: Hibernating): void {
    if (pool === this.latest) return;
    this.latest = pool;
    if (this.order.delete(pool)) this.order.set(pool, true);
    else {
      this.order.set(pool, true);
      this.loadedSlots += pool.size;
    }
    if (this.loadedSlots > this.maxSlots) this.trim(pool);
  }

  /** A pool that closed for good. */
  forget(pool: Hibernating): void {
    if (this.latest === pool) this.latest = undefined;
    if (this.order.delete(pool)) this.loadedSlots -= pool.size;
  }

  get loaded(): number {
    return this.loadedSlots;
  }

  private trim(keep: Hibernating): void {
    let scanned = 0;
    for (const pool of this.order.keys()) {
      if (this.loadedSlots <= this.maxSlots || ++scanned > MAX_SCAN) return;
      if (pool === keep || !pool.hibernate()) continue;
      if (this.latest === pool) this.latest = undefined;
      this.order.delete(pool);
      this.loadedSlots -= pool.size;
    }
  }
}
