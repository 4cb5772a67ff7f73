// The host side of a guest's host-service call (a JavaScript isolate parked in applySyncPromise, a wasm
// worker parked in Atomics.wait): kv, objectStore and messaging are served in this process by
// HostServices (no broker hop); `workloads.*` needs the node (its key, its records), so it is one NATS
// request to $NEX.HOST.<ns>.<workloadId>.workloads.<method>, per src/protocol/host-services.ts, made
// only for a workload deployed with a grant. Arguments come from the guest, so every one is checked
// here again before it is served or goes on the wire.

import { errors, headers as natsHeaders, type Msg, type MsgHdrs, type NatsConnection } from "@nats-io/transport-node";
import { requestFailureKind } from "../../protocol/errors.js";
import type { HostServices, WorkloadRef } from "../../host-services/server.js";
import {
  HOST_CALL_TIMEOUT_MS,
  HOST_METHODS,
  HostHeaders,
  hostSubject,
  HOST_ERROR_CODES,
  hostValueLimit,
  MAX_HOST_VALUE_BYTES,
  NO_DEPLOY_GRANT,
  type HostErrorCode,
  type HostService,
} from "../../protocol/host-services.js";

/** What a host call hands back into the isolate (copied in as a plain object). */
export type HostCallResult =
  | { ok: true; headers: Record<string, string>; body: Uint8Array; list?: Uint8Array[] }
  | { ok: false; code: HostErrorCode; message: string };

export const MAX_HEADER_VALUE_CHARS = 1024;
const KNOWN_CODES: ReadonlySet<string> = new Set(HOST_ERROR_CODES);
/** Time left for a host service's answer to travel back after its own wait (Nex-Timeout-Ms) ends. */
const INNER_MARGIN_MS = 50;
const encoder = new TextEncoder();

const ALLOWED_HEADERS = new Set<string>([
  HostHeaders.key,
  HostHeaders.bucket,
  HostHeaders.subject,
  HostHeaders.revision,
  HostHeaders.timeoutMs,
  HostHeaders.maxMessages,
  HostHeaders.filter,
]);

function fail(code: HostErrorCode, message: string): HostCallResult {
  return { ok: false, code, message };
}

function isHostService(s: unknown): s is HostService {
  return typeof s === "string" && Object.prototype.hasOwnProperty.call(HOST_METHODS, s);
}

function replyHeaders(h: MsgHdrs | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (!h) return out;
  for (const k of h.keys()) {
    if (k.toLowerCase().startsWith("nex-")) out[k] = h.get(k);
  }
  return out;
}

function decodeBase64List(body: Uint8Array): Uint8Array[] | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString("utf8"));
  } catch {
    return undefined;
  }
  if (!Array.isArray(parsed) || !parsed.every((x) => typeof x === "string")) return undefined;
  return parsed.map((s: string) => new Uint8Array(Buffer.from(s, "base64")));
}

function classifyRequestError(err: unknown): { code: HostErrorCode; message: string } {
  const kind = requestFailureKind(err);
  if (kind === "no_responders") return { code: "no_responders", message: "no host service is answering" };
  if (kind === "timeout") return { code: "timeout", message: "host service call timed out" };
  return { code: "internal", message: `host service call failed: ${err instanceof Error ? err.message : String(err)}` };
}

/** The parts of a reply the bridge reads, from the bus or from an in-process call. */
interface Answer {
  header(name: string): string | undefined;
  data: Uint8Array;
  headers(): Record<string, string>;
}

export class HostBridge {
  /** Calls made, by service and outcome ("ok" or the error code), for the workload's stats. */
  readonly calls: Record<string, Record<string, number>> = {};

  constructor(
    private readonly nc: NatsConnection,
    private readonly workload: WorkloadRef,
    private readonly services: HostServices,
    /** Deployed with a deploy grant: the node serves its `workloads.*` on the bus. */
    private readonly deploysWorkloads: boolean,
  ) {}

  /** In this process, or (`workloads.*`) a NATS request to the node that runs the workload. */
  private async ask(service: HostService, method: string, fields: Record<string, string>, body: Uint8Array, timeout: number): Promise<Answer> {
    if (service === "workloads") {
      const h = natsHeaders();
      for (const [k, v] of Object.entries(fields)) h.set(k, v);
      const reply: Msg = await this.nc.request(hostSubject(this.workload.namespace, this.workload.id, service, method), body, { timeout, headers: h });
      return { header: (k) => reply.headers?.get(k) || undefined, data: reply.data, headers: () => replyHeaders(reply.headers) };
    }
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new errors.TimeoutError()), timeout);
    });
    try {
      const answer = await Promise.race([this.services.invoke(this.workload, service, method, (k) => fields[k] || undefined, body), expired]);
      const data = typeof answer.body === "string" ? encoder.encode(answer.body) : answer.body;
      return { header: (k) => answer.headers[k], data, headers: () => answer.headers };
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * One host-service call. Never rejects: every failure is a `{ ok: false, code, message }` the guest
   * shim turns into an Error with `.code`. `deadlineAt` (epoch ms) is the calling trigger's deadline.
   */
  async call(service: unknown, method: unknown, headers: unknown, body: unknown, deadlineAt: number): Promise<HostCallResult> {
    const result = await this.attempt(service, method, headers, body, deadlineAt);
    // By service and outcome; a name the guest made up counts as "invalid", so it cannot grow the labels.
    const byOutcome = (this.calls[isHostService(service) ? service : "invalid"] ??= {});
    const outcome = result.ok ? "ok" : result.code;
    byOutcome[outcome] = (byOutcome[outcome] ?? 0) + 1;
    return result;
  }

  private async attempt(service: unknown, method: unknown, headers: unknown, body: unknown, deadlineAt: number): Promise<HostCallResult> {
    try {
      if (!isHostService(service)) return fail("bad_request", `unknown host service ${JSON.stringify(service)}`);
      if (typeof method !== "string" || !HOST_METHODS[service].includes(method)) {
        return fail("bad_request", `unknown method ${JSON.stringify(method)} of host service ${service}`);
      }
      if (!(body instanceof Uint8Array)) return fail("bad_request", "the value must be bytes");
      if (service === "workloads" && !this.deploysWorkloads) return fail("forbidden", NO_DEPLOY_GRANT);
      const limit = hostValueLimit(this.nc.info?.max_payload);
      if (body.byteLength > limit) {
        return fail("too_large", `value of ${body.byteLength} bytes exceeds the ${limit}-byte limit`);
      }
      const remaining = deadlineAt - Date.now();
      if (remaining <= 0) return fail("timeout", "the trigger's deadline has passed");
      const timeout = Math.max(1, Math.min(HOST_CALL_TIMEOUT_MS, remaining));

      // Checked headers for the call (a plain record: an in-process call never needs NATS headers).
      const fields: Record<string, string> = Object.create(null);
      // The host service waits at most Nex-Timeout-Ms itself (a request, a requestMany gather window, the
      // retries of a kv or object store call while JetStream elects a leader); keep it inside our own
      // wait so its answer can still come back.
      const innerMax = Math.max(1, timeout - INNER_MARGIN_MS);
      if ((service === "messaging" && (method === "request" || method === "requestMany")) || service === "kv" || service === "objectStore") {
        fields[HostHeaders.timeoutMs] = String(innerMax);
      }
      if (headers !== null && typeof headers === "object") {
        for (const [k, v] of Object.entries(headers as Record<string, unknown>)) {
          if (!ALLOWED_HEADERS.has(k)) return fail("bad_request", `header ${k} is not allowed`);
          if (typeof v !== "string" || v.length > MAX_HEADER_VALUE_CHARS || /[\r\n]/.test(v)) {
            return fail("bad_request", `header ${k} must be a single-line string of at most ${MAX_HEADER_VALUE_CHARS} characters`);
          }
          if (k === HostHeaders.timeoutMs) {
            const asked = Number(v);
            if (!Number.isFinite(asked) || asked <= 0) return fail("bad_request", `${k} must be a positive number`);
            fields[k] = String(Math.max(1, Math.min(Math.floor(asked), innerMax)));
            continue;
          }
          fields[k] = v;
        }
      }

      let reply: Answer;
      try {
        reply = await this.ask(service, method, fields, body, timeout);
      } catch (err) {
        const { code, message } = classifyRequestError(err);
        return fail(code, message);
      }
      const code = reply.header(HostHeaders.errorCode);
      if (code) {
        const text = Buffer.from(reply.data.buffer, reply.data.byteOffset, reply.data.byteLength).toString("utf8");
        const message = text || reply.header(HostHeaders.error) || code;
        // A reply from the bus may name any code: the guest and the call counts get only the known ones.
        return fail(KNOWN_CODES.has(code) ? (code as HostErrorCode) : "internal", message.slice(0, 4096));
      }
      if (reply.data.byteLength > MAX_HOST_VALUE_BYTES) {
        return fail("too_large", `the host service answered ${reply.data.byteLength} bytes, over the ${MAX_HOST_VALUE_BYTES}-byte limit`);
      }
      // A copy that owns its buffer: the reply may be a view into the connection's read buffer.
      const data = new Uint8Array(reply.data);
      if (service === "messaging" && method === "requestMany") {
        const list = data.byteLength === 0 ? [] : decodeBase64List(data);
        if (!list) return fail("internal", "malformed requestMany reply (expected a JSON array of base64 strings)");
        return { ok: true, headers: reply.headers(), body: new Uint8Array(0), list };
      }
      return { ok: true, headers: reply.headers(), body: data };
    } catch (err) {
      return fail("internal", `host service call failed: ${(err as Error)?.message ?? String(err)}`);
    }
  }
}
