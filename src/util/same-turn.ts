// Work that arrives in separate tasks (each isolate's host call is a task of its own on the event loop),
// started together in one later turn.
//
// Why: nats.js sends what was published in one microtask checkpoint with one write(). Host calls started
// each in their own task cost a write() and a wake-up of the broker each; started together, the calls
// of every trigger in flight share them. The price is one setImmediate hop per call.

export class SameTurn {
  private queue: (() => void)[] = [];

  /** Starts `work` in the next turn, together with everything else handed over before it. */
  run<T>(work: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push(() => work().then(resolve, reject));
      if (this.queue.length === 1) setImmediate(() => this.startAll());
    });
  }

  private startAll(): void {
    const queue = this.queue;
    this.queue = [];
    for (const start of queue) start();
  }
}
