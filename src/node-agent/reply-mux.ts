// Requests of the HTTP gateway: one inbox subscription for every reply and one timer for every deadline.
// Replies are read here, their headers in a try: an unreadable one is that request's 502, nothing more.
//
// Why not nats.js's request(): per call it takes a random token, a setTimeout, a deferred and, when the
// reply has come, an Error (with its stack) that it throws away; at thousands of web requests a second that
// is a good part of the gateway's CPU. Every request here has the same timeout, so deadlines come in the
// order requests went out: pending requests sit in a Map (insertion order) and one timer, armed for the
// oldest, expires everything due.

import { createInbox, type Msg, type MsgHdrs, type NatsConnection, type Subscription } from "@nats-io/transport-node";

/** What became of a request: the reply, or why there is none. */
export type ReplyOutcome = { reply: Msg } | { failed: "no_responders" | "timeout" | "unreadable" | "closed" };

interface Pending {
  deadline: number;
  done: (outcome: ReplyOutcome) => void;
}

export class ReplyMux {
  private readonly prefix: string;
  private readonly sub: Subscription;
  private readonly pending = new Map<string, Pending>();
  private next = 0;
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly nc: NatsConnection,
    private readonly timeoutMs: number,
    inboxPrefix?: string,
  ) {
    this.prefix = `${createInbox(inboxPrefix)}.`;
    this.sub = nc.subscribe(`${this.prefix}*`, { callback: (_err, m) => this.onReply(m) });
    void this.sub.closed.then(() => this.failAll());
  }

  /** Publishes `data` to `subject` and calls `done` once: with the reply, on no responders, or at the deadline. */
  request(subject: string, data: Uint8Array, headers: MsgHdrs, done: (outcome: ReplyOutcome) => void): void {
    if (this.sub.isClosed()) return done({ failed: "closed" });
    const token = (this.next++).toString(36);
    this.pending.set(token, { deadline: Date.now() + this.timeoutMs, done });
    try {
      this.nc.publish(subject, data, { reply: this.prefix + token, headers });
    } catch {
      this.pending.delete(token);
      return done({ failed: "closed" });
    }
    if (!this.timer) this.arm();
  }

  close(): void {
    this.sub.unsubscribe();
    this.failAll();
  }

  private onReply(m: Msg): void {
    const token = m.subject.slice(this.prefix.length);
    const p = this.pending.get(token);
    if (!p) return; // late (expired) or never ours
    this.pending.delete(token);
    // A replier may send header lines nats.js cannot parse (a workload speaking the protocol itself); the
    // throw must cost this one request, not escape into the connection's reader (which would stop it).
    let headers: MsgHdrs | undefined;
    try {
      headers = m.headers;
    } catch {
      return p.done({ failed: "unreadable" });
    }
    // The server's answer when nobody listens on the subject: a 503 status and no body.
    if (m.data.length === 0 && headers?.code === 503) p.done({ failed: "no_responders" });
    else p.done({ reply: m });
  }

  /** One timer, for the oldest pending request (the first in the Map: they all wait the same time). */
  private arm(): void {
    const first = this.pending.values().next();
    if (first.done) {
      this.timer = undefined;
      return;
    }
    this.timer = setTimeout(() => this.expire(), Math.max(0, first.value.deadline - Date.now()));
    this.timer.unref();
  }

  private expire(): void {
    const now = Date.now();
    for (const [token, p] of this.pending) {
      if (p.deadline > now) break;
      this.pending.delete(token);
      p.done({ failed: "timeout" });
    }
    this.arm();
  }

  /** The subscription is gone: every pending request ends as closed. */
  private failAll(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const all = [...this.pending.values()];
    this.pending.clear();
    for (const p of all) p.done({ failed: "closed" });
  }
}
