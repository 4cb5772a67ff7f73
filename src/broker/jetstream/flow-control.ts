// Flow control for a push consumer, as nats-server runs it: the consumer counts the bytes it has sent
// and, once they pass half of a window, publishes a "100 FlowControl Request" status to the deliver
// subject with a reply subject ($JS.FC.<stream>.<consumer>.<id>). Delivery pauses while the bytes
// sent pass the whole window; the client's answer on that subject takes the bytes sent up to the request
// off the count and doubles the window (slow start), up to a limit.

import { randomBytes } from "node:crypto";
import type { Broker } from "../server.js";
import type { Subscription } from "../sublist.js";

/** The window's limit; it starts at a sixteenth of this. */
const MAX_PENDING_BYTES = 32 * 1024 * 1024;
const REQUEST_HEADER = Buffer.from("NATS/1.0 100 FlowControl Request\r\n\r\n", "latin1");
const EMPTY = Buffer.alloc(0);

export class FlowControl {
  private window = MAX_PENDING_BYTES / 16;
  private pendingBytes = 0;
  /** The bytes the outstanding request covers: what its answer takes off the count. */
  private requestedBytes = 0;
  /** The reply subject of the request waiting for an answer, "" when none is. */
  private outstanding = "";
  private readonly prefix: string;
  private readonly subscription: Subscription;

  constructor(
    private readonly broker: Broker,
    streamName: string,
    consumerName: string,
    private readonly onAnswered: () => void,
  ) {
    this.prefix = `$JS.FC.${streamName}.${consumerName}.`;
    this.subscription = broker.subscribeInternal(`${this.prefix}*`, (frame) => {
      this.answered(frame.buf.toString("latin1", frame.subjectStart, frame.subjectEnd));
    });
  }

  /** Whether delivery must wait for the client's answer. */
  get paused(): boolean {
    return this.pendingBytes > this.window;
  }

  /** The reply subject of an unanswered request, for the Nats-Consumer-Stalled heartbeat header; "" when none. */
  get stalledOn(): string {
    return this.outstanding;
  }

  /** Counts a delivery of `size` bytes and sends a request to `deliverSubject` when one is due. */
  delivered(size: number, deliverSubject: string): void {
    this.pendingBytes += size;
    if (this.outstanding === "") {
      if (this.pendingBytes > this.window / 2) this.request(deliverSubject);
    } else if (this.pendingBytes - this.requestedBytes >= this.window) {
      this.requestedBytes += size; // far past the request: let its answer release these bytes too
    }
  }

  private request(deliverSubject: string): void {
    this.outstanding = this.prefix + randomBytes(3).toString("base64url");
    this.requestedBytes = this.pendingBytes;
    this.broker.publishInternal(deliverSubject, deliverSubject, this.outstanding, REQUEST_HEADER, EMPTY);
  }

  private answered(subject: string): void {
    if (subject !== this.outstanding) return; // an old or unknown request
    this.window = Math.min(this.window * 2, MAX_PENDING_BYTES);
    this.pendingBytes = Math.max(0, this.pendingBytes - this.requestedBytes);
    this.outstanding = "";
    this.requestedBytes = 0;
    this.onAnswered();
  }

  close(): void {
    this.broker.unsubscribeInternal(this.subscription);
  }
}
