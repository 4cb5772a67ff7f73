// Pull requests (CONSUMER.MSG.NEXT bodies and the part after "+NXT" in an ack): read, and checked against
// the consumer's request limits before they are queued, with the status texts nats-server answers.

import { type ConsumerConfig, NS_PER_MS } from "./config.js";
import { goDuration } from "./time.js";

export interface PullRequest {
  reply: string;
  remaining: number;
  maxBytes: number; // 0 = no limit; counts down as messages are sent
  delivered: number;
  expiresAt: number; // 0 = never
  noWait: boolean;
  heartbeatMs: number;
  lastSentAt: number;
  /** Expiry and idle-heartbeat timers, cleared when the request leaves the queue. */
  timers: NodeJS.Timeout[];
}

/** A request, or the status line that refuses it at once. */
export type PullRequestOrRefusal = { request: PullRequest } | { refused: string };

/** A bare number is a batch size; JSON is {batch, expires, no_wait, max_bytes, idle_heartbeat}; empty is one message. */
export function readPullRequest(reply: string, body: string, config: ConsumerConfig, now: number): PullRequestOrRefusal {
  let batch = 1;
  let expiresNs = 0;
  let noWait = false;
  let maxBytes = 0;
  let heartbeatNs = 0;
  const text = body.trim();
  if (/^\d+$/.test(text)) batch = Number(text);
  else if (text.startsWith("{")) {
    let fields: Record<string, unknown>;
    try {
      fields = JSON.parse(text) as Record<string, unknown>;
    } catch {
      return { refused: "400 Bad Request" };
    }
    batch = typeof fields.batch === "number" && fields.batch > 0 ? Math.floor(fields.batch) : 1;
    expiresNs = typeof fields.expires === "number" ? fields.expires : 0;
    noWait = fields.no_wait === true;
    maxBytes = typeof fields.max_bytes === "number" ? fields.max_bytes : 0;
    heartbeatNs = typeof fields.idle_heartbeat === "number" ? fields.idle_heartbeat : 0;
  }
  // Heartbeats need an expiry at least twice as long, so no request heartbeats forever.
  if (heartbeatNs > 0 && heartbeatNs * 2 > expiresNs) return { refused: "400 Bad Request - heartbeat value too large" };
  const limits = requestLimitRefusal(config, batch, expiresNs, maxBytes);
  if (limits !== null) return { refused: limits };
  return {
    request: {
      reply,
      remaining: batch,
      maxBytes,
      delivered: 0,
      expiresAt: expiresNs > 0 ? now + expiresNs / NS_PER_MS : 0,
      noWait,
      heartbeatMs: heartbeatNs / NS_PER_MS,
      lastSentAt: now,
      timers: [],
    },
  };
}

/** The consumer's max_batch, max_expires and max_bytes, which refuse a request rather than trim it. */
function requestLimitRefusal(config: ConsumerConfig, batch: number, expiresNs: number, maxBytes: number): string | null {
  if (config.max_batch !== undefined && batch > config.max_batch) return `409 Exceeded MaxRequestBatch of ${config.max_batch}`;
  if (config.max_expires !== undefined && expiresNs > config.max_expires) return `409 Exceeded MaxRequestExpires of ${goDuration(config.max_expires)}`;
  if (config.max_bytes !== undefined && maxBytes > config.max_bytes) return `409 Exceeded MaxRequestMaxBytes of ${config.max_bytes}`;
  return null;
}

/** The headers a request's end carries: what it still wanted. */
export function pendingHeaders(request: PullRequest): [string, string][] {
  return [
    ["Nats-Pending-Messages", String(request.remaining)],
    ["Nats-Pending-Bytes", String(request.maxBytes)],
  ];
}
