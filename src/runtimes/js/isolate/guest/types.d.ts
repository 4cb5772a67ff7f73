// The values the host hands the bootstrap's setup function (bootstrap.ts builds them; setup.d.ts types
// the guest files' view of them), in one place so both sides are checked against the same shape.

/** What the bootstrap bounds inside the isolate, per trigger or per value. */
export interface GuestLimits {
  maxLogLines: number;
  /** Characters of one console line; longer lines are cut. */
  maxLogChars: number;
  /** Characters of an error message (a throw, a rejection); longer ones are cut. */
  maxErrorChars: number;
  /** Bytes of one reply (the NATS server's max_payload); longer replies answer 413. */
  maxReplyBytes: number;
  /** Bytes of one value handed to a host service, and characters of one of its names (key, subject...). */
  maxHostValueBytes: number;
  maxHostNameChars: number;
  /** Awaitable host calls one context may have out (sent and not answered) at once; past it a call fails "overloaded". */
  maxHostCallsOut: number;
}

/**
 * The result channel's layout (../../host/result-channel.ts), the HTTP subject prefix and the service
 * protocol's codes (bootstrap.ts), as values: params.js copies them into constants at setup.
 */
export interface GuestLayout {
  HEAD: { batch: number; running: number; collectAsked: number };
  ENTRY: { kind: number; offset: number; length: number; started: number; size: number };
  RESULT_KIND: { none: number; ok: number; error: number; expired: number; byCallback: number; tooLarge: number; unavailable: number };
  SIGNAL: { collect: number; done: number };
  TABLE_OFFSET: number;
  MAX_RESULTS: number;
  DATA_OFFSET: number;
  DATA_BYTES: number;
  FLUSH_AFTER_MS: number;
  HTTP_SUBJECT_PREFIX: string;
  SERVICE_EVENT: { ping: number; start: number; message: number; timer: number; trigger: number; stop: number };
  SERVICE_RESULT: { ok: number; error: number; tooLarge: number; unavailable: number };
}
