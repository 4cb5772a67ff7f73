// Subject rules as nats-server applies them. Subjects are handled internally as latin1 strings:
// one char per byte, so any UTF-8 subject round-trips exactly and byte-wise comparison is free.

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
