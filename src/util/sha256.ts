// The SHA-256 of some bytes as lowercase hex: how artifacts are named and checked everywhere.

import { createHash } from "node:crypto";

export function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}
