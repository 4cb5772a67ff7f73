// How a trigger ends: its reply data, or an error reply's code and message.

export type Outcome =
  | { ok: true; data: string | Uint8Array | undefined }
  | { ok: false; code: number; message: string };

/** Error codes of error replies (the Nats-Service-Error-Code header), HTTP-like. */
export const ErrorCodes = {
  badRequest: 400,
  failed: 500,
  overloaded: 503,
  /** A host service the function needed was briefly unavailable (host error code `unavailable`). */
  unavailable: 503,
  timeout: 504,
  tooLarge: 413,
} as const;

export function failure(code: number, message: string): Outcome {
  return { ok: false, code, message };
}

export function timeoutOutcome(ms: number): Outcome {
  return failure(ErrorCodes.timeout, `timeout: the trigger did not finish within ${ms} ms`);
}

export function cpuOutcome(ms: number): Outcome {
  return failure(ErrorCodes.timeout, `timeout: the trigger used more than ${ms} ms of CPU time`);
}

/** `slot`: what the trigger waited for ("isolate", "wasm worker"). */
export function queueTimeoutOutcome(ms: number, slot = "isolate"): Outcome {
  return failure(ErrorCodes.timeout, `timeout: the trigger waited more than ${ms} ms for a free ${slot}`);
}

export function memoryOutcome(mb: number): Outcome {
  return failure(ErrorCodes.failed, `memory limit exceeded: the isolate went over ${mb} MB and was disposed`);
}

export const UNAVAILABLE: Outcome = failure(ErrorCodes.overloaded, "unavailable: the workload is stopping");

export function errorText(err: unknown): string {
  const e = err as Error;
  if (e && typeof e.message === "string") return e.name && e.name !== "Error" ? `${e.name}: ${e.message}` : e.message;
  return String(err);
}
