// IPC messages between the bench orchestrator (run.ts) and loadgen children.
// Times are process.hrtime.bigint() values (CLOCK_MONOTONIC, shared by all
// processes on the machine) sent as decimal strings.

/**
 * How a raw-protocol load generator reaches the server: a TCP socket, or a WebSocket (the `ws` package;
 * the same NATS protocol bytes carried in binary frames, masked as every client must). `port` is the
 * server's TCP port or its websocket port accordingly.
 */
export type Transport = "tcp" | "ws";

export interface PubConfig {
  role: "pub";
  transport: Transport;
  port: number;
  subject: string;
  payloadSize: number;
  /** Bytes per write (a batch of PUBs followed by one PING). */
  batchBytes: number;
  /** Max PINGs (batches) the server has not answered yet before we wait. */
  maxOutstandingPings: number;
  /** Max messages sent but not yet delivered (per the credit from subscribers). */
  maxLagMsgs: number;
}

export interface SubConfig {
  role: "sub";
  transport: Transport;
  port: number;
  subject: string;
  queue: string | null;
  payloadSize: number;
  /** How often to report the running count to the parent. */
  progressMs: number;
}

export interface ReqConfig {
  role: "req";
  /** nats://... (nats.js over TCP) or ws://... (nats.js `wsconnect` over the `ws` package's WebSocket). */
  url: string;
  subject: string;
  payloadSize: number;
}

/** Concurrent requester: `inflight` request loops on one nats.js connection (node row trigger50). */
export interface ReqcConfig {
  role: "reqc";
  url: string;
  subject: string;
  payloadSize: number;
  inflight: number;
}

export interface RepConfig {
  role: "rep";
  /** nats://... or ws://..., as ReqConfig.url. */
  url: string;
  subject: string;
}

/**
 * KV responder (node row kvfn's peer): per request, kv.put(key, request data) then kv.get(key) on a bucket
 * of its own (created before "ready"), and responds with the value read. Keys roll over `keys` names.
 */
export interface KvRepConfig {
  role: "kvrep";
  url: string;
  subject: string;
  bucket: string;
  keys: number;
  /** Bucket limits, the same as the node's host services use for a workload's bucket. */
  maxBytes: number;
  maxValueSize: number;
}

/** The JetStream workloads (one bench row each); see jsload.ts. */
export type JsWorkload = "kvput" | "kvget" | "jspub" | "replay" | "objput" | "objget";

export interface JsConfig {
  role: "js";
  url: string;
  workload: JsWorkload;
  /** KV value / stream message size in bytes. */
  payloadSize: number;
  /** kvget: keys in the bucket. */
  keys: number;
  /** jspub: max publishes whose ack has not arrived yet. */
  window: number;
  /** replay: messages pre-filled into the stream. */
  prefill: number;
  /** objput / objget: object size in bytes. */
  objectBytes: number;
  /** objput / objget: transfers of the object in the timed part (back to back). */
  objectRepeats: number;
  /** Seed for the kvget key sequence (the same for both servers). */
  seed: number;
}

export type ChildConfig = PubConfig | SubConfig | ReqConfig | ReqcConfig | RepConfig | KvRepConfig | JsConfig;

// parent -> child (the config itself is passed as argv[2], JSON)
export type ToChild =
  | { type: "start"; startAt: string; endAt: string } // pub
  | { type: "credit"; delivered: number } // pub
  | { type: "arm"; warmAt: string } // sub
  | { type: "finish" } // sub
  | { type: "run"; warmupMs: number; measureMs: number; maxRequests: number } // req
  | { type: "jsRun"; warmupMs: number; measureMs: number; timeoutMs: number } // js
  | { type: "reqcRun"; startAt: string; warmAt: string; endAt: string; maxRequests: number } // reqc
  | { type: "exit" };

export interface SubReport {
  count: number;
  /** Count just before the first read at or after warmAt (null: no read after warmAt). */
  snapCount: number | null;
  snapTime: string | null;
  /** Time of the last read that carried at least one message. */
  lastTime: string | null;
}

export interface PubReport {
  sent: number;
  t0: string;
  tEnd: string;
  /** Times the publisher had to wait because deliveries lagged (credit window). */
  creditWaits: number;
  /** Times it waited for PONGs (in-flight window). */
  pongWaits: number;
}

export interface ReqReport {
  count: number;
  p50us: number;
  p90us: number;
  p99us: number;
  meanUs: number;
  maxUs: number;
}

export interface ReqcReport {
  /** Requests answered between warmAt and endAt. */
  count: number;
  /** Requests issued in total (warm-up included). */
  issued: number;
  /** Failed requests (timeouts, no responders, error replies), warm-up included. */
  errors: number;
  firstError: string | null;
  /** Latency of the requests counted, in µs. */
  p50us: number;
  p99us: number;
  /** The client process's CPU use from startAt to the end, in cores. */
  clientCores: number;
}

export interface JsReport {
  /** Operations (messages, puts, gets; 1 per object) counted in the timed window. */
  ops: number;
  /** Payload bytes moved in the timed window (object rows). */
  bytes: number;
  /** Length of the timed window. */
  seconds: number;
  /** Untimed set-up (bucket/stream creation, pre-fill), for the log. */
  setupSeconds: number;
  /** The client process's CPU use during the timed part (warm-up included), in cores. */
  clientCores: number;
  /** Free-form details for the log. */
  detail: string;
  /** Something looked wrong (data mismatch, missing messages, ...), or null. */
  warning: string | null;
}

// child -> parent
export type FromChild =
  | { type: "ready" }
  | { type: "progress"; count: number }
  | { type: "pubDone"; report: PubReport }
  | { type: "subDone"; report: SubReport }
  | { type: "reqDone"; report: ReqReport }
  | { type: "jsDone"; report: JsReport }
  | { type: "reqcDone"; report: ReqcReport }
  | { type: "error"; message: string };
