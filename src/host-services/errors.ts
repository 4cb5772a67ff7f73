// A host-service failure the workload sees as an exception with this code and message.

import type { HostErrorCode } from "../protocol/host-services.js";

export class HostError extends Error {
  constructor(
    readonly code: HostErrorCode,
    message: string,
  ) {
    super(message);
  }
}
