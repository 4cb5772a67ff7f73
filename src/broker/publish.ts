// The publish path in one place, as nats-server keeps processPub → deliverMsg together in client.go:
//
//   a client's PUB/HPUB (processPub: checked, counted, permitted)
//   → the matching subscriptions (the publisher's last-subject cache, else the sublist)
//   → route: every plain subscription and one member of each queue group
//   → deliverTo: a callback inside the server (JetStream), or writeMsg framing MSG/HMSG into the
//     receiver's Outbound; a request nobody receives gets the 503 no-responders status
//   → after the whole read is parsed, Broker.flush writes each touched socket once (server.ts).
//
// Publishes from inside the server (JetStream acks, API replies, consumer deliveries) join at route.

import type { Broker } from "./server.js";
import type { ClientConnection } from "./client.js";
import type { PubFrame } from "./parser.js";
import type { MatchResult, Sublist, Subscription } from "./sublist.js";
import { isValidPublishSubject } from "../protocol/subjects.js";
import { goQuote } from "./go-quote.js";

const NO_RESPONDERS_HEADER = Buffer.from("NATS/1.0 503\r\n\r\n", "latin1");
const EMPTY = Buffer.alloc(0);
/** Subjects up to this length are kept by the last-subject cache. */
const CACHED_SUBJECT_MAX = 256;

/** One client publish, after the connection admitted the operation (auth first). */
export function processPub(broker: Broker, from: ClientConnection, frame: PubFrame): void {
  if (from.opts.pedantic && !isValidPublishSubject(subjectOf(frame))) from.queueText("-ERR 'Invalid Publish Subject'\r\n");
  from.inMsgs++;
  from.inBytes += frame.size;
  const pubPerms = from.pubPerms;
  if (pubPerms !== null) {
    const subject = subjectOf(frame);
    if (!pubPerms.canPublish(subject)) {
      from.queueText(`-ERR 'Permissions Violation for Publish to ${goQuote(subject)}'\r\n`); // the connection stays
      return;
    }
  }
  const replyPerms = from.replyPerms;
  if (replyPerms !== null && frame.replyEnd > frame.replyStart) {
    const reply = frame.buf.toString("latin1", frame.replyStart, frame.replyEnd);
    if (!replyPerms.canReceiveOn(reply)) {
      from.queueText(`-ERR 'Permissions Violation for Publish with Reply of ${goQuote(reply)}'\r\n`); // the connection stays
      return;
    }
  }
  if (from.opts.verbose) from.queueText("+OK\r\n"); // nats-server acknowledges before delivering
  route(broker, from, from.lastSubject.match(broker.sublist, frame), frame);
}

/**
 * A publish from inside the server. `routeSubject` picks the subscribers; the MSG line carries
 * `subject`, which differs for consumer deliveries (nats-server's "match on one subject, deliver with
 * another"). Returns the delivery count.
 */
export function publishFromServer(broker: Broker, routeSubject: string, subject: string, reply: string, header: Buffer | null, data: Buffer): number {
  return route(broker, null, broker.sublist.match(routeSubject), internalFrame(subject, reply, header, data));
}

/**
 * A connection's last-subject cache: a publisher usually repeats its subject, so its bytes are compared
 * before a string is built and the sublist asked. Valid while the sublist's generation is unchanged.
 */
export class LastSubjectCache {
  private readonly bytes = Buffer.allocUnsafe(CACHED_SUBJECT_MAX);
  private length = -1;
  private generation = -1;
  private result: MatchResult | null = null;

  match(sublist: Sublist, frame: PubFrame): MatchResult {
    const { buf, subjectStart, subjectEnd } = frame;
    const n = subjectEnd - subjectStart;
    if (n === this.length && this.generation === sublist.generation) {
      const cached = this.bytes;
      let i = 0;
      while (i < n && cached[i] === buf[subjectStart + i]) i++;
      if (i === n) return this.result as MatchResult;
    }
    const result = sublist.match(buf.toString("latin1", subjectStart, subjectEnd));
    if (n <= CACHED_SUBJECT_MAX) {
      buf.copy(this.bytes, 0, subjectStart, subjectEnd);
      this.length = n;
      this.generation = sublist.generation;
      this.result = result;
    }
    return result;
  }
}

/** Delivers to every plain subscription and one member of each queue group; returns the delivery count. */
function route(broker: Broker, from: ClientConnection | null, result: MatchResult, frame: PubFrame): number {
  let deliveries = 0;
  const plain = result.plain;
  for (let i = 0; i < plain.length; i++) {
    if (deliverTo(plain[i], from, frame)) deliveries++;
  }
  const queues = result.queues;
  for (let g = 0; g < queues.length; g++) {
    const members = queues[g];
    const n = members.length;
    const first = n === 1 ? 0 : Math.floor(Math.random() * n);
    for (let k = 0; k < n; k++) {
      if (deliverTo(members[(first + k) % n], from, frame)) {
        deliveries++;
        break;
      }
    }
  }
  if (deliveries === 0 && from !== null && frame.replyEnd > frame.replyStart && from.opts.noResponders) {
    sendNoResponders(broker, from, frame);
  }
  return deliveries;
}

function deliverTo(sub: Subscription, from: ClientConnection | null, frame: PubFrame): boolean {
  const handler = sub.handler;
  if (handler !== undefined) {
    handler(frame, from);
    return true;
  }
  const to = sub.owner as ClientConnection;
  if (to.closed || (to === from && !to.opts.echo)) return false;
  const perms = to.perms;
  if (perms !== null && perms.filtersDeliveries && perms.deniesDelivery(subjectOf(frame))) return false;
  writeMsg(to, frame, sub);
  sub.delivered++;
  if (sub.max > 0 && sub.delivered >= sub.max) to.removeSubscription(sub);
  return true;
}

/** The 503 status goes to the publisher's own subscription on the reply subject, if it has one. */
function sendNoResponders(broker: Broker, from: ClientConnection, frame: PubFrame): void {
  const reply = frame.buf.toString("latin1", frame.replyStart, frame.replyEnd);
  const sub = broker.sublist.match(reply).plain.find((s) => s.owner === from);
  if (sub === undefined) return;
  writeMsg(from, internalFrame(reply, "", NO_RESPONDERS_HEADER, EMPTY), sub);
}

/** Frames one delivery as MSG or HMSG into the receiver's Outbound (headers stripped for clients that did not ask for them). */
function writeMsg(to: ClientConnection, frame: PubFrame, sub: Subscription): void {
  const out = to.out;
  const src = frame.buf;
  const withHeaders = frame.hasHeaders && to.opts.headers;
  const skip = frame.hasHeaders && !withHeaders ? frame.headerSize : 0;
  const payloadStart = frame.payloadStart + skip;
  const size = frame.size - skip;
  const subjectLen = frame.subjectEnd - frame.subjectStart;
  const replyLen = frame.replyEnd - frame.replyStart;
  if (replyLen > 0 && to.perms !== null && to.perms.tracksReplies) to.perms.grantReply(src.toString("latin1", frame.replyStart, frame.replyEnd));
  out.reserve(subjectLen + replyLen + sub.sidBytes.length + size + 48);
  const b = out.buf;
  let p = out.end;
  if (withHeaders) b[p++] = 0x48; // H
  b[p++] = 0x4d; // M
  b[p++] = 0x53; // S
  b[p++] = 0x47; // G
  b[p++] = 0x20;
  out.end = p;
  out.bytes(src, frame.subjectStart, frame.subjectEnd);
  b[out.end++] = 0x20;
  out.bytes(sub.sidBytes, 0, sub.sidBytes.length);
  b[out.end++] = 0x20;
  if (replyLen > 0) {
    out.bytes(src, frame.replyStart, frame.replyEnd);
    b[out.end++] = 0x20;
  }
  if (withHeaders) {
    out.decimal(frame.headerSize);
    b[out.end++] = 0x20;
  }
  out.decimal(size);
  b[out.end++] = 0x0d;
  b[out.end++] = 0x0a;
  out.bytes(src, payloadStart, payloadStart + size);
  b[out.end++] = 0x0d;
  b[out.end++] = 0x0a;
  to.outMsgs++;
  to.outBytes += size;
  to.markDirty();
}

function subjectOf(frame: PubFrame): string {
  return frame.buf.toString("latin1", frame.subjectStart, frame.subjectEnd);
}

/** A frame over a fresh buffer holding subject, reply, header and data, for publishes from the server. */
function internalFrame(subject: string, reply: string, header: Buffer | null, data: Buffer): PubFrame {
  const headerSize = header ? header.length : 0;
  const buf = Buffer.allocUnsafe(subject.length + reply.length + headerSize + data.length);
  let p = buf.write(subject, 0, "latin1");
  p += buf.write(reply, p, "latin1");
  if (header) p += header.copy(buf, p);
  data.copy(buf, p);
  return {
    buf,
    subjectStart: 0,
    subjectEnd: subject.length,
    replyStart: subject.length,
    replyEnd: subject.length + reply.length,
    headerSize,
    size: headerSize + data.length,
    payloadStart: subject.length + reply.length,
    hasHeaders: header !== null,
  };
}
