// A counter per subject in the workload's KV bucket: each trigger adds one to the count stored under
// its subject and replies with the new count. Built by `npm run build:wasm`.
import { kv, liftPayload, liftSubject, log, lowerReply, postReturn, Reply } from "./nex";
export { cabi_realloc } from "./nex";

function count(subject: string): Reply {
  const current = kv.get(subject);
  if (current.error !== null) return Reply.error(`kv.get: ${current.error!.code}: ${current.error!.message}`);
  let n: i64 = 0;
  if (current.value !== null) n = I64.parseInt(String.UTF8.decode(current.value!.buffer));
  n += 1;
  const text = n.toString();
  const failed = kv.set(subject, Uint8Array.wrap(String.UTF8.encode(text)));
  if (failed !== null) return Reply.error(`kv.set: ${failed.code}: ${failed.message}`);
  log.info(`${subject} is at ${text}`);
  return Reply.text(text);
}

export function handle(subjectPtr: usize, subjectLen: usize, payloadPtr: usize, payloadLen: usize): usize {
  const subject = liftSubject(subjectPtr, subjectLen);
  liftPayload(payloadPtr, payloadLen);
  return lowerReply(count(subject));
}

export function cabi_post_handle(area: usize): void {
  postReturn(area);
}
