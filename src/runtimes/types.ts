// The small interface every workload runtime (js, wasm, oci) offers the node agent. The node owns
// lifecycles, records and events; a runtime prepares an artifact, starts it serving its trigger subjects,
// stops it, and reports what happens inside (logs, failed triggers, crashes).

import type { ContainerInfo, ServiceInfo, WorkloadType } from "../protocol/control.js";
import type { RestartPolicy } from "../protocol/deploy-request.js";
import type { StaticManifest } from "../protocol/static.js";
import type { HistogramSnapshot } from "../util/histogram.js";

/** The workload types (protocol/control.ts WORKLOAD_TYPES). */
export type { WorkloadType };

/** Credentials for the NATS server, as the node has them; runtimes connect (or hand them on) with the same. */
export interface NatsAuth {
  user?: string;
  pass?: string;
  token?: string;
  /** TLS to the server (nats.js `tls` options): the CA to trust, and a client certificate where one is required. */
  tls?: { caFile?: string; certFile?: string; keyFile?: string };
}

/**
 * Slots (JavaScript isolates, wasm worker threads) a runtime host keeps loaded by default; past it the
 * least recently triggered idle functions unload until their next trigger (host/warm-pools.ts).
 */
export const DEFAULT_MAX_WARM_SLOTS = 256;

export interface WorkloadLimits {
  /** Memory ceiling in MiB (isolate heap, container memory). */
  memoryMb: number;
  /** Wall-clock deadline per trigger, in ms. */
  timeoutMs: number;
  /** CPU time per trigger, in ms. */
  cpuMs: number;
  /** OCI: CPUs the container may use (fractions allowed); unlimited when absent. */
  cpus?: number;
  /** OCI: most processes/threads in the container; the runtime's default when absent. */
  pids?: number;
}

/** How an OCI workload runs, beyond what every workload has. */
export interface ContainerOptions {
  /** Command and arguments instead of the image's CMD. */
  argv?: string[];
  restart: RestartPolicy;
  /** The root filesystem is read-only unless the workload asks otherwise. */
  readOnlyRootfs: boolean;
}

/** What every workload has; the node has verified the request and unsealed its environment. */
interface WorkloadBase {
  id: string;
  name: string;
  namespace: string;
  triggerSubjects: string[];
  limits: WorkloadLimits;
  /** Environment values, already unsealed. */
  env: Record<string, string>;
}

/** A function (JavaScript or wasm): code run in isolates or worker threads of a runtime host. */
interface FunctionBase extends WorkloadBase {
  /** The artifact bytes (JS source, wasm bytes). */
  artifact: Uint8Array;
  /** SHA-256 of the artifact, hex; runtimes cache compiled code by it. */
  sha256: string;
  /** Isolates (or worker threads) serving triggers in parallel. */
  concurrency: number;
  /** Deployed with a deploy grant: its `workloads.*` host calls go to the node (else they are refused at once). */
  deploysWorkloads: boolean;
}

export interface JavaScriptSpec extends FunctionBase {
  type: "javascript";
  /** A fresh context for every trigger (original Nex) instead of one warm context. */
  freshContextPerTrigger: boolean;
  /** Set for a long-running service (start(ctx) once, its own subscriptions and timers) instead of a function. */
  service?: ServiceOptions;
}

/** How a JavaScript service runs, beyond what a function has. */
export interface ServiceOptions {
  /** What happens when a run of the service ends (a throw from start, a loop, its memory limit). */
  restart: RestartPolicy;
}

export interface WasmSpec extends FunctionBase {
  type: "wasm";
}

/** An OCI workload: a container from an image, with its own NATS credentials where the node mints them. */
export interface ContainerSpec extends WorkloadBase {
  type: "oci";
  image: string;
  container: ContainerOptions;
  /** The workload's own NATS credentials (a user the node minted); the node's when absent. */
  natsAuth?: NatsAuth;
}

/** Static assets: no process; the manifest is recorded with the route, and the gateways serve the files. */
export interface StaticSpec extends WorkloadBase {
  type: "static";
  manifest: StaticManifest;
}

export type FunctionWorkloadSpec = JavaScriptSpec | WasmSpec;

/** Everything a runtime needs to run one workload, one variant per kind. */
export type WorkloadSpec = FunctionWorkloadSpec | ContainerSpec | StaticSpec;

/** The defaults of a workload that sets no limits of its own (the node's config may change them). */
export const DEFAULT_WORKLOAD_LIMITS: WorkloadLimits = { memoryMb: 128, timeoutMs: 10_000, cpuMs: 5_000 };

/** What a function runtime (JS, wasm) reports of a workload. */
export interface FunctionStats {
  triggers: number;
  failures: number;
  /** Mean and last trigger duration in ms. */
  meanMs: number;
  lastMs: number;
  memoryBytes: number;
  /** Trigger durations (trigger received → reply sent), for percentiles and the Prometheus histogram. */
  durations?: HistogramSnapshot;
  /** Failed triggers by error code (the Nats-Service-Error-Code of their replies). */
  failureCodes?: Record<string, number>;
  /** Host-service calls by service, then by outcome ("ok" or the host error code). */
  hostCalls?: Record<string, Record<string, number>>;
  /** A JavaScript service: its subscriptions, timers, restarts and CPU. */
  service?: ServiceInfo;
}

/** What the oci runtime reports of a workload: the container behind it. */
export interface ContainerStats {
  container: ContainerInfo;
}

/** What a runtime reports of a workload. */
export type WorkloadStats = FunctionStats | ContainerStats;

export type LogStream = "stdout" | "stderr";

/** What a runtime reports back to the node agent. */
export interface RuntimeObserver {
  log(workloadId: string, stream: LogStream, line: string): void;
  triggerFailed(workloadId: string, subject: string, error: string): void;
  /** The runtime lost its workloads (e.g. its host process died) and is recovering them. */
  restarted(reason: string, workloadIds: string[]): void;
  /** A long-running workload changed on its own: its container exited (or was OOM killed) or came back. */
  workloadEvent(workloadId: string, event: WorkloadEvent): void;
}

/** Why a long-running workload's run ended: a container's exit, or a JavaScript service's throw (crashed), loop (timeout) or memory (oom_killed). */
export type ExitReason = "exited" | "crashed" | "oom_killed" | "timeout";

/** A long-running workload (a container, a JavaScript service) ended a run or came back. */
export type WorkloadEvent =
  | {
      type: "exited";
      /** Containers: which one. */
      containerId?: string;
      reason: ExitReason;
      /** Containers: the exit code. */
      exitCode?: number;
      /** Services: what ended the run (the error's message). */
      message?: string;
      restarts: number;
      /** When it starts again, or null: it stays down (no restart policy, or retries used up). */
      restartInMs: number | null;
    }
  | { type: "restarted"; containerId?: string; restarts: number };

export interface Runtime {
  readonly type: WorkloadType;
  /** Prepares the artifact and starts serving the trigger subjects; rejects with a clear error. */
  deploy(spec: WorkloadSpec): Promise<void>;
  undeploy(workloadId: string): Promise<void>;
  stats(workloadId: string): Promise<WorkloadStats | undefined>;
  /** Why the runtime cannot take a deploy right now (its engine is down), or undefined when it can. */
  unavailable?(): Promise<string | undefined>;
  /** After the node has redeployed its desired workloads: removes what a previous run left that none claimed. */
  removeUnclaimed?(): Promise<void>;
  /** Stops every workload (waiting for triggers in flight up to the deadline) and the runtime. */
  close(): Promise<void>;
}
