// An error the control API reports to the caller as {"error":{code,message}} with a Nex-Error header.
// Codes are HTTP-like: 400 bad request, 401 unsigned/badly signed, 403 issuer not allowed, 404 not found,
// 409 conflict, 413 too large, 422 the runtime refused the workload, 503 lame duck or over capacity.

import type { z } from "zod";
import { describeZodError } from "../protocol/control.js";

const decoder = new TextDecoder();
export class ControlError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

/** Parses and validates a JSON request body; a bad one is a 400 with a readable reason. */
export function parseRequestBody<T extends z.ZodTypeAny>(schema: T, data: Uint8Array): z.infer<T> {
  let json: unknown;
  try {
    json = JSON.parse(decoder.decode(data));
  } catch {
    throw new ControlError(400, "request body is not valid JSON");
  }
  const result = schema.safeParse(json);
  if (!result.success) throw new ControlError(400, `invalid request: ${describeZodError(result.error)}`);
  return result.data;
}
