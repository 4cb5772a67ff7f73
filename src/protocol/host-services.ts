// The host-services wire format, shared by every runtime (callers) and src/host-services (the server).
//
// A call is a NATS request to $NEX.HOST.<namespace>.<workloadId>.<service>.<method>. Small arguments
// travel as headers (Nex-Key, Nex-Bucket, Nex-Subject, Nex-Timeout-Ms, Nex-Revision, ...), the value as
// the body, so binary values need no encoding. A reply with a Nex-Error-Code header is an error; its
// body is the message. Results are bytes (kv.get, objectStore.get, messaging.request) or JSON
// (kv.keys, objectStore.list, kv.set's revision).

export const HOST_PREFIX = "$NEX.HOST";

export type HostService = "kv" | "objectStore" | "messaging" | "workloads";

export const HOST_METHODS: Record<HostService, readonly string[]> = {
  kv: ["get", "set", "create", "update", "delete", "purge", "keys", "history"],
  objectStore: ["get", "put", "info", "delete", "list"],
  messaging: ["publish", "request", "requestMany"],
  /** Children of a workload deployed with a grant (nex run --allow-deploy); served by the node only. */
  workloads: ["deploy", "undeploy", "list"],
};

export const HostHeaders = {
  key: "Nex-Key",
  bucket: "Nex-Bucket",
  subject: "Nex-Subject",
  revision: "Nex-Revision",
  timeoutMs: "Nex-Timeout-Ms",
  maxMessages: "Nex-Max-Messages",
  filter: "Nex-Filter",
  errorCode: "Nex-Error-Code",
  error: "Nex-Error",
} as const;

/**
 * Error codes a host call can answer with; the workload sees them on the thrown error's `code`.
 * `unavailable`: JetStream was briefly without a leader or unreachable for longer than the call could wait.
 */
export const HOST_ERROR_CODES = [
  "not_found",
  "bad_request",
  "forbidden",
  "too_large",
  "timeout",
  "wrong_revision",
  "exists",
  "no_responders",
  "overloaded",
  "unavailable",
  "internal",
] as const;
export type HostErrorCode = (typeof HOST_ERROR_CODES)[number];

export function hostSubject(namespace: string, workloadId: string, service: HostService, method: string): string {
  return `${HOST_PREFIX}.${namespace}.${workloadId}.${service}.${method}`;
}

/** Largest value a workload may send to, or receive from, a host service (one limit for every path). */
export const MAX_HOST_VALUE_BYTES = 8 * 1024 * 1024;

/** Largest value one host call carries: MAX_HOST_VALUE_BYTES, and the NATS server's max_payload bounds one request (headers included). */
export function hostValueLimit(maxPayload: number | undefined): number {
  return Math.min(MAX_HOST_VALUE_BYTES, (maxPayload ?? MAX_HOST_VALUE_BYTES) - 4096);
}

/** What a `workloads.*` call of a workload deployed without a deploy grant answers (code forbidden). */
export const NO_DEPLOY_GRANT = "this workload may not deploy workloads: it was deployed without a grant (nex run --allow-deploy <file>)";

/** Default and ceiling for a call's time; the node bounds every call. */
export const HOST_CALL_TIMEOUT_MS = 5000;
