// Messages between a runtime's supervisor in the node process (runtime-host-supervisor.ts) and its
// runtime-host child process (runtime-host-child.ts), over the child_process IPC channel with
// `serialization: "advanced"` (structured clone), so artifacts and V8 code caches travel as bytes.
// Requests carry a reqId; the child answers each with exactly one "result". Log lines and failed
// triggers flow the other way in batches ("events"), off the trigger's hot path. The JavaScript and
// the wasm runtime hosts speak the same protocol; only a deploy's extra fields and result differ.

import type { FunctionWorkloadSpec, LogStream, NatsAuth, ServiceOptions, WorkloadEvent, WorkloadLimits } from "./types.js";

/** What a runtime host needs to run one function workload, as plain data for the IPC channel. */
export interface FunctionSpec {
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
  deploysWorkloads: boolean;
  /** A JavaScript service instead of a function. */
  service?: ServiceOptions;
}

export function toFunctionSpec(spec: FunctionWorkloadSpec): FunctionSpec {
  const a = spec.artifact;
  return {
    id: spec.id,
    name: spec.name,
    namespace: spec.namespace,
    // A view (e.g. a pooled Buffer) would carry its whole backing buffer over IPC.
    artifact: a.byteOffset === 0 && a.byteLength === a.buffer.byteLength ? a : new Uint8Array(a),
    sha256: spec.sha256,
    triggerSubjects: [...spec.triggerSubjects],
    limits: { ...spec.limits },
    env: { ...spec.env },
    freshContextPerTrigger: spec.type === "javascript" && spec.freshContextPerTrigger,
    concurrency: spec.concurrency,
    deploysWorkloads: spec.deploysWorkloads,
    ...(spec.type === "javascript" && spec.service ? { service: { restart: { ...spec.service.restart } } } : {}),
  };
}

export interface HostInit {
  type: "init";
  natsUrl: string;
  natsAuth?: NatsAuth;
  connectionName: string;
  /** What only one kind of runtime host reads (the wasm host's component cache directory). */
  settings: Record<string, string>;
}

/** A deploy: the spec, plus what the runtime adds (the JavaScript runtime: a compiled code cache). */
export type DeployRequest<Extra = object> = { type: "deploy"; spec: FunctionSpec } & Extra;

export type HostRequest<Extra = object> =
  | DeployRequest<Extra>
  | { type: "undeploy"; workloadId: string }
  | { type: "stats"; workloadId: string }
  | { type: "shutdown" };

export type ToHost<Extra = object> = HostInit | (HostRequest<Extra> & { reqId: number });

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
  /** A long-running workload (a JavaScript service) ended a run or came back. */
  | { type: "workload-event"; workloadId: string; event: WorkloadEvent }
  /** One pino JSON line of the child's own log; the parent re-logs it with its logger. */
  | { type: "log"; line: string }
  /** The child cannot go on (NATS connect failed, catastrophic isolate error); it exits right after. */
  | { type: "fatal"; error: string };
