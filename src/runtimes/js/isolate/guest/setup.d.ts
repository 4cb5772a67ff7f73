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
};
/** Fire-and-forget (ivm.Callback): awaitable host calls [id, service, method, headers, body, ...], answered later through deliverAnswers. */
declare const hostOut: (calls: unknown[]) => void;
/** The workload's environment (a copy). */
declare const envIn: Record<string, string>;
declare const limits: GuestLimits;
/** Fire-and-forget (ivm.Callback): a result too large for the shared area, or (index SIGNAL.*) a signal. */
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

/** A host call's answer once checked (host-services.js): HostCallResult's ok case (../../host/host-bridge.ts). */
interface HostAnswer {
  ok: true;
  headers: Record<string, string>;
  body: Uint8Array;
  list?: Uint8Array[];
}

/** The sync or the async face of the host calls (host-services.js). */
interface Face {
  call(service: string, method: string, headers: Record<string, string>, body: Uint8Array, then: (r: HostAnswer) => unknown, missingIsNull?: boolean): unknown;
  method(fn: Function): Function;
}

/** A service's makeRunner arguments (service.js; ../../host/service-run.ts hands them over). */
interface ServiceInfo {
  workload: { id: string; name: string; namespace: string; node: string };
  maxTimers: number;
  maxSubscriptions: number;
}
/** subscribe/unsubscribe/timer/untimer, synchronous (ivm.Callback): "" or an id, or "code\0message". */
type ServiceControl = (op: "subscribe" | "unsubscribe" | "timer" | "untimer", a: unknown, b: unknown, c: boolean) => string | number;
/** Fire-and-forget (ivm.Callback): the result of a request that settled later. */
type ServiceReply = (reqId: number, kind: number, value: string | Uint8Array | undefined) => void;
/** How a service's start, stop, trigger or reply ended: [SERVICE_RESULT code, the reply or the message]. */
type Outcome = [number, string | Uint8Array | undefined];

/** A header of http.js's Headers: [name, value], the name in lower case. */
type HeaderPair = Readonly<{ 0: string; 1: string }>;
/** A Request's or Response's body as http.js keeps it. */
type BodyValue = string | Uint8Array | null;
