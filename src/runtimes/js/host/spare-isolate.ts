// One blank isolate (blank-isolate.ts) made ahead of the next deploy in the runtime host. Building an
// isolate, its first context and the bootstrap is most of a JavaScript cold start (~8 ms of ~30, the
// isolate itself synchronously on the main thread), so a deploy takes the one made earlier and the next is
// made a little after the deploy, once the new workload's first trigger has likely had the event loop.

import { BlankIsolate } from "./blank-isolate.js";

/** From a deploy to making the next spare. */
const REFILL_DELAY_MS = 10;

export class SpareIsolate {
  private spare?: BlankIsolate;
  private timer?: NodeJS.Timeout;
  /** The spare being made, with its memory limit; its isolate exists already, its context is on the way. */
  private making?: { memoryLimitMb: number; done: Promise<void> };
  private closed = false;

  /**
   * The spare, if it has this memory limit (waiting for it when it is being made: less than making
   * another); `onCatastrophic` is then where its isolate's fatal errors go.
   */
  async take(memoryLimitMb: number, onCatastrophic: (message: string) => void): Promise<BlankIsolate | undefined> {
    if (this.making?.memoryLimitMb === memoryLimitMb) await this.making.done;
    const spare = this.spare;
    if (!spare || spare.memoryLimitMb !== memoryLimitMb || spare.isolate.isDisposed) return undefined;
    this.spare = undefined;
    spare.onCatastrophic = onCatastrophic;
    return spare;
  }

  /**
   * Makes a spare with this memory limit (the last deploy's: most deploys use the node's default) after
   * REFILL_DELAY_MS, unless one is there; `fatal` hears its isolate's catastrophic errors until it is taken.
   */
  refillSoon(memoryLimitMb: number, fatal: (message: string) => void): void {
    if (this.closed || this.timer || this.making || this.spare?.memoryLimitMb === memoryLimitMb) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      const done = BlankIsolate.make(memoryLimitMb, fatal).then(
        (made) => {
          this.making = undefined;
          if (this.closed) return made.dispose();
          this.spare?.dispose();
          this.spare = made;
        },
        () => {
          // The next deploy builds its own isolate, and says why if that fails too.
          this.making = undefined;
        },
      );
      this.making = { memoryLimitMb, done };
    }, REFILL_DELAY_MS);
    this.timer.unref();
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.spare?.dispose();
    this.spare = undefined;
  }
}
