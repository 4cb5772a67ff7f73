// Time values as JetStream's JSON carries them.

const ZERO_TIME = "0001-01-01T00:00:00Z";

/** RFC 3339 from epoch milliseconds; Go's zero time for 0. */
export function rfc3339(ms: number): string {
  return ms > 0 ? new Date(ms).toISOString() : ZERO_TIME;
}
