// What the guest files (*.js here) share: the parameters of the bootstrap's setup function
// (bootstrap.ts), declared as globals for the type check only (tsconfig.isolate.json). Names one guest
// file defines and another uses need nothing here: the files are scripts, so their top-level
// declarations are global to the check, as they are to setup's body.

type GuestLimits = import("./types.js").GuestLimits;
type GuestLayout = import("./types.js").GuestLayout;

/** Fire-and-forget (ivm.Callback): a console line. */
declare const emitLog: (stream: "stdout" | "stderr", line: string) => void;
/** The host-call function (ivm.Reference); captured by params.js only. */
declare const hostRef: {
  applySyncPromise: (receiver: undefined, args: unknown[], options: object) => unknown;
  apply: (receiver: undefined, args: unknown[], options: object) => Promise<unknown>;
};
/** The workload's environment (a copy). */
declare const envIn: Record<string, string>;
declare const limits: GuestLimits;
/** Fire-and-forget (ivm.Callback): a result too large for the shared area, or (index -1) "collect now". */
declare const emitResult: (batchId: number, index: number, kind: number, value: string | Uint8Array | undefined) => void;
/** The isolate's result channel (../../host/result-channel.ts). */
declare const shared: SharedArrayBuffer;
/** 32 bytes of the runtime host's CSPRNG for this context (crypto.js). */
declare const seed: Uint8Array;
declare const layout: GuestLayout;

/** The guest's errors carry a code, as the host services' do ("too_large", "not_found", ...). */
interface Error {
  code?: string;
}
