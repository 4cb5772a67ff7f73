// A note per subject in the workload's object store: a trigger with a payload stores it as the object
// named after its subject and replies `stored <n> bytes`; an empty payload reads the note back (an
// error reply when there is none). Built by `npm run build:wasm`.
import { liftPayload, liftSubject, lowerReply, objectStore, postReturn, Reply } from "./nex";
export { cabi_realloc } from "./nex";

function note(subject: string, payload: Uint8Array): Reply {
  if (payload.byteLength > 0) {
    const failed = objectStore.put(subject, payload);
    if (failed !== null) return Reply.error(`object-store.put: ${failed.code}: ${failed.message}`);
    return Reply.text(`stored ${payload.byteLength} bytes`);
  }
  const stored = objectStore.get(subject);
  if (stored.error !== null) return Reply.error(`object-store.get: ${stored.error!.code}: ${stored.error!.message}`);
  if (stored.value === null) return Reply.error(`no note under ${subject}`);
  return Reply.bytes(stored.value!);
}

export function handle(subjectPtr: usize, subjectLen: usize, payloadPtr: usize, payloadLen: usize): usize {
  const subject = liftSubject(subjectPtr, subjectLen);
  return lowerReply(note(subject, liftPayload(payloadPtr, payloadLen)));
}

export function cabi_post_handle(area: usize): void {
  postReturn(area);
}
