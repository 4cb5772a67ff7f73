// An echo component: the reply is the payload. Built by `npm run build:wasm`.
import { liftPayload, liftSubject, lowerReply, postReturn, Reply } from "./nex";
export { cabi_realloc } from "./nex";

export function handle(subjectPtr: usize, subjectLen: usize, payloadPtr: usize, payloadLen: usize): usize {
  liftSubject(subjectPtr, subjectLen);
  return lowerReply(Reply.bytes(liftPayload(payloadPtr, payloadLen)));
}

export function cabi_post_handle(area: usize): void {
  postReturn(area);
}
