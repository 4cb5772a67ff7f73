// An error the control API reports to the caller as {"error":{code,message}} with a Nex-Error header.
// Codes are HTTP-like: 400 bad request, 401 unsigned/badly signed, 403 issuer not allowed, 404 not found,
// 409 conflict, 413 too large, 422 the runtime refused the workload, 503 lame duck or over capacity.

export class ControlError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}
