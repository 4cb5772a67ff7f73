// The code that runs inside every workload context before the workload's own code: console,
// TextEncoder/TextDecoder (UTF-8), `env`, `hostServices`, and the batch runner that calls the
// workload's function and turns each result into reply bytes.
//
// BOOTSTRAP_SOURCE is a script whose completion value is `setup(emitLog, hostRef, hostOut, envIn,
// limits, emitResult, shared, seed, layout)`; it is compiled once per isolate and run in each new
// context. setup installs the globals and returns `[makeRunner, deliverAnswers]`: makeRunner(handler)
// returns `runBatch(batchId, [subjects, payloads, expiries, base])`; deliverAnswers takes the answers to
// awaitable host calls (host/host-answers.ts).
// None of these functions is reachable from workload code: only the runtime host holds references to them.
//   emitLog     a plain function (an ivm.Callback, fire-and-forget) taking (stream, line)
//   hostRef     an ivm.Reference to the host-call function, for the synchronous calls; captured here only,
//               never stored on a global or passed to workload code, so the workload cannot springboard
//               into the host isolate
//   hostOut     a plain function (ivm.Callback, fire-and-forget) taking [id, service, method, headers,
//               body, ...]: awaitable host calls, answered later through deliverAnswers
//   envIn       the workload's environment (a copy)
//   limits      GuestLimits (guest/types.d.ts; guestLimits below)
//   emitResult  a plain function (ivm.Callback, fire-and-forget) taking (batchId, index, kind, value), for
//               a result too large for the shared area: value is the reply (string, Uint8Array or
//               undefined) when kind is ok, the error message otherwise (RESULT_KIND); index -1 asks the
//               host to read the results ready in the shared area now
//   seed        32 bytes from the runtime host's CSPRNG for this context's crypto.getRandomValues
//               (guest/crypto.js)
//   shared      the isolate's result channel, a SharedArrayBuffer (layout in result-channel.ts): the
//               batch runner writes each result there, when each trigger started, and whose code runs
//   layout      GUEST_LAYOUT (below): the shared area's offsets and the codes the guest writes, as values
//
// The guest code is plain JavaScript in guest/*.js (GUEST_FILES, in order), checked by
// tsconfig.isolate.json against the language alone (setup.d.ts declares setup's parameters, types.d.ts
// the shapes the host hands over). Each file is a script: its top-level names are setup's locals, seen by
// the files after it (and by those before it inside functions). `npm run build` copies guest/ next to
// this module, which reads the files once per process when it is loaded.
//
// What the workload may not do (see guest/primordials.js and the tests in test/hostile-js.test.ts):
// - reach the shared result area or the host references: the bootstrap calls only built-ins captured
//   before workload code runs, uncurried, so replacing a prototype method, a getter or a global (even
//   Function.prototype.call, Promise[Symbol.species] or Symbol.hasInstance) changes nothing here;
// - copy anything unbounded out of the isolate: a reply is refused (413) by its length before it is
//   encoded or copied, JSON is counted while it is built, and error messages, console lines and
//   host-call arguments are cut or refused at their limits (GuestLimits) inside the isolate.

import { readFileSync } from "node:fs";
import { MAX_HEADER_VALUE_CHARS } from "../../host/host-bridge.js";
import { hostValueLimit } from "../../../protocol/host-services.js";
import { TRIGGER_LOG_LIMITS } from "../../host/trigger-log-limits.js";
import { MAX_ERROR_BODY_CHARS } from "../../../protocol/errors.js";
import { HTTP_SUBJECT_PREFIX } from "../../../protocol/http.js";
import { MAX_HOST_CALLS_IN_FLIGHT, MAX_HOST_CALLS_WAITING } from "../host/host-call-turns.js";
import { DATA_BYTES, DATA_OFFSET, ENTRY, FLUSH_AFTER_MS, HEAD, MAX_RESULTS, RESULT_KIND, SIGNAL, TABLE_OFFSET } from "../host/result-channel.js";
import type { GuestLayout, GuestLimits } from "./guest/types.js";

export type { GuestLimits };

/** What the runtime host asks a service's isolate to run (guest/service.js). */
export const SERVICE_EVENT = { ping: 0, start: 1, message: 2, timer: 3, trigger: 4, stop: 5 } as const;
/** How a service's start, stop, reply or trigger ended. */
export const SERVICE_RESULT = { ok: 1, error: 2, tooLarge: 3, unavailable: 4 } as const;

/** setup's `layout`: frozen here, and copied into the guest's constants before any workload code runs. */
export const GUEST_LAYOUT: Readonly<GuestLayout> = Object.freeze(
  Object.assign(Object.create(null) as GuestLayout, {
    HEAD,
    ENTRY,
    RESULT_KIND,
    SIGNAL,
    TABLE_OFFSET,
    MAX_RESULTS,
    DATA_OFFSET,
    DATA_BYTES,
    FLUSH_AFTER_MS,
    HTTP_SUBJECT_PREFIX,
    SERVICE_EVENT,
    SERVICE_RESULT,
  }),
);

/** The limits for a NATS server whose max_payload is `maxPayload`. */
export function guestLimits(maxPayload: number): GuestLimits {
  return {
    ...TRIGGER_LOG_LIMITS,
    // What an error reply carries at most anyway: a longer message would only be cut after its copy out.
    maxErrorChars: MAX_ERROR_BODY_CHARS,
    maxReplyBytes: maxPayload,
    maxHostValueBytes: hostValueLimit(maxPayload),
    maxHostNameChars: MAX_HEADER_VALUE_CHARS,
    // What the host would take of them anyway (host-call-turns.ts): the rest is refused before it is copied out.
    maxHostCallsOut: MAX_HOST_CALLS_IN_FLIGHT + MAX_HOST_CALLS_WAITING,
  };
}

/** The guest files in the order setup runs them: none uses at its top level a name a later one declares. */
const GUEST_FILES = [
  "primordials.js",
  "params.js",
  "text.js",
  "http.js",
  "bytes.js",
  "console.js",
  "host-services.js",
  "make-random.js",
  "crypto.js",
  "runner.js",
  "service.js",
];

/**
 * The text of guest/<name> as setup runs it: without its comment lines, which are for readers, and its
 * JSDoc, which is for the type check; every isolate holds the whole source (about 9 KB of comments).
 * No guest string or template spans lines, so a line starting with // is always a comment.
 */
export function guestSource(name: string): string {
  return readFileSync(new URL(`./guest/${name}`, import.meta.url), "utf8")
    .replace(/^[ \t]*\/\/[^\n]*\n/gm, "")
    .replace(/^[ \t]*\/\*\*(?:[^*]|\*(?!\/))*\*\/[ \t]*\n/gm, "")
    .replace(/\/\*\*(?:[^*]|\*(?!\/))*\*\/ ?/g, "");
}

/**
 * `source` stored one byte a character. A string decoded from UTF-8 that held any character past ASCII
 * (the files' comments have some) stays two-byte in V8 after those are cut out, and isolated-vm
 * copies it into each isolate as it is: decoded again from its Latin-1 bytes it is one-byte.
 */
function oneByte(source: string): string {
  const wide = /[^\x00-\xff]/.exec(source);
  if (wide) throw new Error(`the bootstrap source must be Latin-1, but has U+${wide[0].codePointAt(0)!.toString(16).toUpperCase()} near: ${source.slice(Math.max(0, wide.index - 40), wide.index + 40)}`);
  return Buffer.from(source, "latin1").toString("latin1");
}

// Latin-1 only, comments at the end of a line included: one character past U+00FF would make V8 keep
// the whole source as a two-byte string, 70 KB more in every isolate (test/runtime-js.test.ts checks).
export const BOOTSTRAP_SOURCE = oneByte(`
(function setup(emitLog, hostRef, hostOut, envIn, limits, emitResult, shared, seed, layout) {
"use strict";
${GUEST_FILES.map(guestSource).join("\n")}
return [makeRunner, deliverAnswers];
})
`);
