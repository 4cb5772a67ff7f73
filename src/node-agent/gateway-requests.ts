// The HTTP gateway's NATS requests, with the replies read by the gateway's own code.
//
// Why not nc.request(): nats.js reads a reply's headers inside the connection's reader when the reply has
// no payload (to spot "no responders"), and a header line it cannot parse (a space in a name, a bare CR or
// LF in a value, which a workload that speaks the protocol itself can send) throws there and stops that
// reader: the node's connection would hear nothing more. Here one wildcard subscription on an inbox of the
// gateway's own takes every reply; its callback only looks the request up, and the headers are read, in
// a try, by the request that waits for them.

import { createInbox, type Msg, type MsgHdrs, type NatsConnection, type Subscription } from "@nats-io/transport-node";

export type RequestOutcome =
  | { kind: "reply"; headers: MsgHdrs | undefined; data: Uint8Array }
  /** The server's 503 status: nobody subscribes to the subject. */
  | { kind: "no-responders" }
  | { kind: "timeout" }
  /** A reply whose headers NATS' client cannot read. */
  | { kind: "unreadable"; error: string }
  /** The request could not be sent (the connection closed, the payload too large). */
  | { kind: "failed"; error: string };

export class GatewayRequests {
  private readonly prefix = `${createInbox()}.`;
  private readonly pending = new Map<string, (msg: Msg) => void>();
  private next = 0;
  private readonly sub: Subscription;

  constructor(private readonly nc: NatsConnection) {
    this.sub = nc.subscribe(`${this.prefix}*`, {
      callback: (err, msg) => {
        if (err) return;
        const token = msg.subject.slice(this.prefix.length);
        const waiting = this.pending.get(token);
        if (!waiting) return; // late (timed out) or not ours
        this.pending.delete(token);
        waiting(msg);
      },
    });
  }

  /** Sends the request; resolves with what came of it (never rejects). */
  request(subject: string, body: Uint8Array, headers: MsgHdrs, timeoutMs: number): Promise<RequestOutcome> {
    const token = (this.next++).toString(36);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.pending.delete(token);
        resolve({ kind: "timeout" });
      }, timeoutMs);
      this.pending.set(token, (msg) => {
        clearTimeout(timer);
        resolve(readReply(msg));
      });
      try {
        this.nc.publish(subject, body, { reply: `${this.prefix}${token}`, headers });
      } catch (err) {
        clearTimeout(timer);
        this.pending.delete(token);
        resolve({ kind: "failed", error: (err as Error)?.message ?? String(err) });
      }
    });
  }

  close(): void {
    this.sub.unsubscribe();
  }
}

/** A reply as the gateway uses it; its headers decoded here, where a throw costs one request only. */
export function readReply(msg: Msg): RequestOutcome {
  let headers: MsgHdrs | undefined;
  try {
    headers = msg.headers;
  } catch (err) {
    return { kind: "unreadable", error: (err as Error)?.message ?? String(err) };
  }
  if (msg.data.length === 0 && headers?.code === 503) return { kind: "no-responders" };
  return { kind: "reply", headers, data: msg.data };
}
