// One vocabulary for failures on the bus: the error reply every nex responder sends (the node's control
// API, workloads, services) and how a NATS request failed, read from what nats.js throws.

import { headers as natsHeaders, type MsgHdrs } from "@nats-io/transport-node";

/** Longest error line in a header; longer messages are cut there (the body keeps more). */
const MAX_ERROR_HEADER_CHARS = 1024;
/** Longest error message in an error reply's body. */
export const MAX_ERROR_BODY_CHARS = 16 * 1024;

function oneLine(s: string, max: number): string {
  const flat = s.replace(/[\r\n]+/g, " ").trim();
  return flat.length > max ? `${flat.slice(0, max - 3)}...` : flat;
}

/**
 * An error reply: the body `{"error":{"code","message"}}` and the headers micro-service clients read
 * (`Nats-Service-Error-Code`, `Nats-Service-Error`) plus `Nex-Error`.
 */
export function errorReply(code: number | string, message: string): { body: string; headers: MsgHdrs } {
  const line = oneLine(message, MAX_ERROR_HEADER_CHARS) || "error";
  const headers = natsHeaders();
  headers.set("Nats-Service-Error-Code", String(code));
  headers.set("Nats-Service-Error", line);
  headers.set("Nex-Error", line);
  return { body: JSON.stringify({ error: { code, message: message.slice(0, MAX_ERROR_BODY_CHARS) } }), headers };
}

/** How a NATS request failed: nobody listened, or no reply in time. */
export type RequestFailureKind = "no_responders" | "timeout";

/** The kind of a nats.js request failure: the error itself or a cause down its chain says it. */
export function requestFailureKind(err: unknown): RequestFailureKind | undefined {
  let e: unknown = err;
  for (let depth = 0; e instanceof Error && depth < 8; depth++, e = e.cause) {
    if (e.name === "NoRespondersError" || (e as { isNoResponders?: () => boolean }).isNoResponders?.() === true) return "no_responders";
    if (e.name === "TimeoutError") return "timeout";
  }
  return undefined;
}
