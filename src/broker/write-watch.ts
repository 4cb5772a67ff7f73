// Finds a peer that stopped reading. nats-server writes with a deadline and closes a client whose
// flush does not finish within write_deadline; Node writes asynchronously, so the equivalent here is:
// while output waits in the socket, the bytes the kernel has taken must keep growing, and a socket
// whose output makes no progress for write_deadline is stuck. The publish path pays one addition per
// write; the timer runs only while something waits.

import type { ClientTransport } from "./transport.js";

export class WriteWatch {
  /** Bytes handed to write() over the connection's life. */
  private handed = 0;
  /** Bytes the socket had finished writing at the last check that saw progress. */
  private doneAtProgress = 0;
  private progressAt = 0;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly transport: ClientTransport,
    private readonly deadlineMs: number,
    private readonly onStuck: () => void,
  ) {}

  /** After socket.write(n bytes) left `backlog` bytes waiting: starts watching if it is the first wait. */
  wrote(n: number, backlog: number): void {
    this.handed += n;
    if (backlog > 0 && this.timer === null) this.start();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  private start(): void {
    this.progressAt = Date.now();
    this.doneAtProgress = this.done();
    // Checked four times per deadline, so a stuck peer goes within 1.25 deadlines.
    this.timer = setInterval(() => this.check(), Math.max(5, this.deadlineMs / 4));
    this.timer.unref();
  }

  private done(): number {
    return this.handed - this.transport.backlog;
  }

  private check(): void {
    if (this.transport.backlog === 0) return this.stop();
    const done = this.done();
    const now = Date.now();
    if (done !== this.doneAtProgress) {
      this.doneAtProgress = done;
      this.progressAt = now;
    } else if (now - this.progressAt >= this.deadlineMs) {
      this.stop();
      this.onStuck();
    }
  }
}
