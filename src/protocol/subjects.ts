// NATS subjects: the rules as nats-server applies them, and the subjects nex keeps for itself. The one
// home of these facts for the broker, the node, host services and the CLI.
//
// The broker handles subjects as latin1 strings: one char per byte, so any UTF-8 subject round-trips
// exactly and byte-wise comparison is free.

const DOT = 0x2e;

/** A subscription subject: non-empty tokens, `*` and `>` only as whole tokens, `>` only last. */
export function isValidSubscriptionSubject(subject: string): boolean {
  const n = subject.length;
  if (n === 0) return false;
  let tokenStart = 0;
  for (let i = 0; i <= n; i++) {
    if (i === n || subject.charCodeAt(i) === DOT) {
      const len = i - tokenStart;
      if (len === 0) return false;
      if (len === 1 && subject.charCodeAt(tokenStart) === 0x3e /* > */ && i !== n) return false;
      tokenStart = i + 1;
      continue;
    }
    const c = subject.charCodeAt(i);
    if (c === 0x20 || c === 0x09 || c === 0x0d || c === 0x0a) return false;
  }
  return true;
}

/** A literal subject fit to publish to: valid tokens and no wildcard tokens (checked only in pedantic mode). */
export function isValidPublishSubject(subject: string): boolean {
  if (!isValidSubscriptionSubject(subject)) return false;
  for (const token of subject.split(".")) {
    if (token === "*" || token === ">") return false;
  }
  return true;
}

/** A queue group name: non-empty, no whitespace. */
export function isValidQueueName(queue: string): boolean {
  if (queue.length === 0) return false;
  return !/[\s]/.test(queue);
}

/** True when some literal subject matches both subscription subjects (`*` one token, `>` one or more at the end). */
export function subjectsOverlap(a: string, b: string): boolean {
  const x = a.split(".");
  const y = b.split(".");
  for (let k = 0; ; k++) {
    const endX = k >= x.length;
    const endY = k >= y.length;
    if (endX || endY) return endX && endY;
    if (x[k] === ">") return true;
    if (y[k] === ">") return true;
    if (x[k] !== "*" && y[k] !== "*" && x[k] !== y[k]) return false;
  }
}

/** True when every subject matching `sub` also matches `sup` (both may have wildcards). */
export function subjectIsSubset(sub: string, sup: string): boolean {
  const a = sub.split(".");
  const b = sup.split(".");
  for (let i = 0; i < b.length; i++) {
    if (b[i] === ">") return i < a.length;
    if (i >= a.length || a[i] === ">") return false;
    if (b[i] !== "*" && b[i] !== a[i]) return false;
  }
  return a.length === b.length;
}

/**
 * First tokens of the system's subjects: NATS' own, JetStream's API, nex's control plane and host
 * services, inboxes, micro services, KV and object store. Workloads may neither trigger on them nor
 * publish or send requests to them (host-services/messaging.ts): they reach the control plane and other
 * workloads' state only through their host services.
 */
export const RESERVED_SUBJECT_PREFIXES = ["$SYS", "$JS", "$NEX", "_INBOX", "$SRV", "$KV", "$O"];

/** The reserved prefix `subject` is under, if any. */
export function reservedPrefixOf(subject: string): string | undefined {
  const dot = subject.indexOf(".");
  const first = dot < 0 ? subject : subject.slice(0, dot);
  return RESERVED_SUBJECT_PREFIXES.includes(first) ? first : undefined;
}

/** The longest subject nex accepts from users (deploy requests, host calls), in bytes of UTF-16. */
export const MAX_SUBJECT_LENGTH = 255;

const TRIGGER_TOKEN = /^[^\s.*>]+$/;

/** Why `subject` cannot be a trigger (a subscription subject outside the reserved prefixes), or undefined. */
export function triggerSubjectProblem(subject: string): string | undefined {
  const tokens = subject.split(".");
  if (subject.length === 0 || subject.length > MAX_SUBJECT_LENGTH) return `must be 1-${MAX_SUBJECT_LENGTH} characters`;
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i];
    if (t === "*" || (t === ">" && i === tokens.length - 1)) continue;
    if (!TRIGGER_TOKEN.test(t)) return "is not a valid NATS subject";
  }
  const first = tokens[0];
  if (first === ">" || first === "*") return "may not start with a wildcard (it would capture system subjects)";
  const reserved = reservedPrefixOf(subject);
  if (reserved) return `may not be under ${reserved}.>`;
  return undefined;
}
