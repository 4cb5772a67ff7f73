// Time values as JetStream's JSON carries them.

const ZERO_TIME = "0001-01-01T00:00:00Z";

/** RFC 3339 from epoch milliseconds; Go's zero time for 0. */
export function rfc3339(ms: number): string {
  return ms > 0 ? new Date(ms).toISOString() : ZERO_TIME;
}

/** A duration in nanoseconds as Go prints a time.Duration ("2s", "1m30s", "1.5ms"), for texts nats-server formats with %v. */
export function goDuration(ns: number): string {
  if (ns === 0) return "0s";
  const sign = ns < 0 ? "-" : "";
  const abs = Math.abs(Math.trunc(ns));
  if (abs < 1e3) return `${sign}${abs}ns`;
  if (abs < 1e6) return `${sign}${decimal(abs, 1e3)}µs`;
  if (abs < 1e9) return `${sign}${decimal(abs, 1e6)}ms`;
  const hours = Math.floor(abs / 3.6e12);
  const minutes = Math.floor((abs % 3.6e12) / 6e10);
  const seconds = `${decimal(abs % 6e10, 1e9)}s`;
  if (hours > 0) return `${sign}${hours}h${minutes}m${seconds}`;
  if (minutes > 0) return `${sign}${minutes}m${seconds}`;
  return `${sign}${seconds}`;
}

/** value / unit with the fraction's trailing zeros dropped. */
function decimal(value: number, unit: number): string {
  const whole = Math.floor(value / unit);
  const rest = value % unit;
  if (rest === 0) return String(whole);
  const digits = String(unit).length - 1;
  return `${whole}.${String(rest).padStart(digits, "0").replace(/0+$/, "")}`;
}
