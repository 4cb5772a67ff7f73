// Finds a peer that stopped reading. nats-server writes with a deadline and closes a client whose
// flush does not finish within write_deadline; Node writes asynchronously, so the equivalent here is:
// while output waits in the socket, the bytes the peer has taken (`transport.sent`) must keep growing,
// and a socket whose output makes no progress for write_deadline is stuck. Progress is read from the
// socket itself, not from what was handed to the transport: bytes the transport writes of its own
// accord (WebSocket pongs) or reshapes (compression) then cannot pass for bytes the peer took. The
// publish path pays nothing but a backlog check per write; the timer runs only while something waits.

import type { ClientTransport } from "./transport.js";

export class WriteWatch {
  /** `transport.sent` at the last check that saw progress. */
  private sentAtProgress = 0;
  private progressAt = 0;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly transport: ClientTransport,
    private readonly deadlineMs: number,
    private readonly onStuck: () => void,
  ) {}

  /** After a write left `backlog` bytes waiting: starts watching if it is the first wait. */
  wrote(backlog: number): void {
    if (backlog > 0 && this.timer === null) this.start();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  private start(): void {
    this.progressAt = Date.now();
    this.sentAtProgress = this.transport.sent;
    // Checked four times per deadline, so a stuck peer goes within 1.25 deadlines.
    this.timer = setInterval(() => this.check(), Math.max(5, this.deadlineMs / 4));
    this.timer.unref();
  }

  private check(): void {
    if (this.transport.backlog === 0) return this.stop();
    const sent = this.transport.sent;
    const now = Date.now();
    if (sent !== this.sentAtProgress) {
      this.sentAtProgress = sent;
      this.progressAt = now;
    } else if (now - this.progressAt >= this.deadlineMs) {
      this.stop();
      this.onStuck();
    }
  }
}
