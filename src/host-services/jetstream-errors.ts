// Which nats.js errors mean "JetStream is briefly not there" (worth a retry) and what to call the cause.
//
// What nats.js 3.4 throws, seen against a 3-server nats-server 2.9.10 cluster (bench/nats-cluster.ts):
// - a KV put/create/update to a stream with no leader (its leader was killed or stopped, election not
//   over, or no quorum): JetStreamNotEnabled "jetstream is not enabled", cause RequestError whose cause
//   is NoRespondersError "no responders: '$KV.<bucket>.<key>'". Nothing received the message, so it was
//   not stored.
// - an API request while the meta group has no quorum (Kvm.create): JetStreamApiError code 10008,
//   status 503, "JetStream system temporarily unavailable".
// - a request nobody answered in time (server shutting down, the client reconnecting, a leader that
//   went away after taking the message): TimeoutError "timeout". The operation may have been applied.
// Classes are matched by name too: @nats-io/kv and @nats-io/obj may hold their own copies of them.

/** Why a call failed transiently, or undefined when the failure is not transient. */
export interface TransientCause {
  /** Human words for the cause, naming the stream when nats.js says which. */
  cause: string;
  /** The operation may have been applied although it failed (no answer came back). */
  ambiguous: boolean;
}

// JetStream API err_codes that pass: 10008 "JetStream system temporarily unavailable" (no meta leader),
// 10009 "JetStream cluster can not handle request" (asked a server that is not the leader), 10118 "stream
// is offline". Anything else with status 503 passes too.
const TRANSIENT_API_CODES = new Set([10008, 10009, 10118]);
// Also 503, but for good: JetStream is not enabled for the account (10039) or on the server (10076).
const NOT_ENABLED_API_CODES = new Set([10039, 10076]);

function named(err: unknown, name: string): boolean {
  return err instanceof Error && (err.name === name || err.constructor?.name === name);
}

/** The stream a $KV/$O subject is stored in. */
function streamOf(subject: string): string | undefined {
  const kv = /^\$KV\.([^.]+)\./.exec(subject);
  if (kv) return `KV_${kv[1]}`;
  const obj = /^\$O\.([^.]+)\./.exec(subject);
  if (obj) return `OBJ_${obj[1]}`;
  return undefined;
}

function noRespondersSubject(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 4; e = e.cause, depth++) {
    if (named(e, "NoRespondersError") || named(e, "NoResponders")) {
      const subject = (e as { subject?: unknown }).subject;
      if (typeof subject === "string") return subject;
      return /no responders: '([^']*)'/.exec(e.message)?.[1] ?? "";
    }
  }
  return undefined;
}

export function transientCause(err: unknown): TransientCause | undefined {
  if (!(err instanceof Error)) return undefined;
  const subject = noRespondersSubject(err);
  if (subject !== undefined) {
    const stream = streamOf(subject);
    if (stream) return { cause: `stream ${stream} has no leader`, ambiguous: false };
    if (subject.startsWith("$JS.API")) return { cause: "the JetStream API did not answer (no responders)", ambiguous: false };
    return { cause: `no responders on ${subject || "the JetStream subject"}`, ambiguous: false };
  }
  if (named(err, "TimeoutError") || /^timeout$/i.test(err.message)) {
    return { cause: "JetStream did not answer in time", ambiguous: true };
  }
  if (named(err, "JetStreamApiError")) {
    const api = (err as { apiError?: () => { code?: number; err_code?: number } }).apiError?.();
    if (api?.err_code !== undefined && NOT_ENABLED_API_CODES.has(api.err_code)) return undefined;
    if ((api?.err_code !== undefined && TRANSIENT_API_CODES.has(api.err_code)) || api?.code === 503) {
      return { cause: err.message, ambiguous: false };
    }
    return undefined;
  }
  if (named(err, "JetStreamStatusError") && (err as { code?: number }).code === 503) {
    return { cause: `JetStream answered 503 ${err.message}`, ambiguous: false };
  }
  // Last resort, by text: nats.js' own words for a missing JetStream (it says so on no responders),
  // and the server's for a stream or meta group between leaders.
  if (/temporarily unavailable|no leader|leader not found|cluster not available|jetstream is not enabled$/i.test(err.message) && !/for account/i.test(err.message)) {
    return { cause: err.message, ambiguous: false };
  }
  return undefined;
}
