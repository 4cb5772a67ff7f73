// Messages between JsRuntime (the node side) and its runtime-host child, over the child_process IPC
// channel with `serialization: "advanced"` (structured clone), so Uint8Array artifacts and V8 code
// caches travel as bytes. Requests carry a reqId; the child answers each with exactly one "result".
// Log lines and failed triggers flow the other way in batches ("events"), off the trigger's hot path.

import type { LogStream, NatsAuth, WorkloadLimits } from "../types.js";
import type { SourceKind } from "./compile.js";

/** What the child needs to run one JavaScript workload (a WorkloadSpec without the OCI bits). */
export interface JsWorkloadSpec {
  id: string;
  name: string;
  namespace: string;
  artifact: Uint8Array;
  sha256: string;
  triggerSubjects: string[];
  limits: WorkloadLimits;
  env: Record<string, string>;
  freshContextPerTrigger: boolean;
  concurrency: number;
}

export type ToHost =
  | { type: "init"; natsUrl: string; natsAuth?: NatsAuth; connectionName: string; hostServicesOnBus: boolean }
  | { type: "deploy"; reqId: number; spec: JsWorkloadSpec; code?: CompiledCode }
  | { type: "undeploy"; reqId: number; workloadId: string }
  | { type: "stats"; reqId: number; workloadId: string }
  | { type: "shutdown"; reqId: number };

export type RequestToHost = Extract<ToHost, { reqId: number }>;
type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
/** A request as the parent builds it; the reqId is added when it is sent. */
export type HostRequest = DistributiveOmit<RequestToHost, "reqId">;

/** What the parent keeps of a compiled source (by SHA-256) to speed up redeploys after a restart. */
export interface CompiledCode {
  /** SHA-256 (hex) of the source this belongs to; the child uses it only for that exact source. */
  sha256: string;
  kind: SourceKind;
  /** V8 code cache of the source compiled as `kind`. */
  cachedData?: Uint8Array;
}

export interface DeployResult {
  /** Set when this deploy compiled the source anew: the parent keeps it for the next runtime host. */
  code?: CompiledCode;
}

export interface LogEntry {
  workloadId: string;
  stream: LogStream;
  line: string;
}

export interface TriggerFailure {
  workloadId: string;
  subject: string;
  error: string;
}

export type FromHost =
  | { type: "ready"; pid: number }
  | { type: "result"; reqId: number; ok: true; value: unknown }
  | { type: "result"; reqId: number; ok: false; error: string }
  | { type: "events"; logs: LogEntry[]; failures: TriggerFailure[] }
  /** One pino JSON line of the child's own log; the parent re-logs it with its logger. */
  | { type: "log"; line: string }
  /** The child cannot go on (NATS connect failed, catastrophic isolate error); it exits right after. */
  | { type: "fatal"; error: string };
