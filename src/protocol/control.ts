// Control-plane messages: subjects, request/response shapes and their validation (zod). Shared by the
// node agent, the CLI and the tests. Every request is versioned and validated on receipt; a bad one
// gets {"error":{code,message}} (with a Nex-Error header) and changes nothing.

import { z } from "zod";
import { triggerSubjectProblem } from "./subjects.js";

export const PROTOCOL_VERSION = 1;
export const DEFAULT_NAMESPACE = "default";
export const SYSTEM_NAMESPACE = "system";

export const ControlSubjects = {
  ping: (ns: string) => `$NEX.SVC.${ns}.control.PING`,
  info: (ns: string, node: string) => `$NEX.SVC.${ns}.control.INFO.${node}`,
  auction: (ns: string) => `$NEX.SVC.${ns}.control.AUCTION`,
  deploy: (ns: string, node: string) => `$NEX.SVC.${ns}.control.DEPLOY.${node}`,
  undeploy: (ns: string, workload: string) => `$NEX.SVC.${ns}.control.UNDEPLOY.${workload}`,
  workloads: (ns: string) => `$NEX.SVC.${ns}.control.WORKLOADS`,
  lameDuck: (node: string) => `$NEX.SVC.${SYSTEM_NAMESPACE}.control.LAMEDUCK.${node}`,
  events: (ns: string, type: string) => `$NEX.FEED.${ns}.events.${type}`,
  logs: (ns: string, workload: string, stream: "stdout" | "stderr") => `$NEX.FEED.${ns}.logs.${workload}.${stream}`,
  /** A workload's log lines on both streams. */
  workloadLogs: (ns: string, workload: string) => `$NEX.FEED.${ns}.logs.${workload}.*`,
  /** The HTTP gateway's access log, lines of JSON in batches. */
  httpAccess: (ns: string) => `$NEX.FEED.${ns}.http`,
};

/** The object store bucket `nex run` uploads artifacts to; the only bucket a node fetches artifacts from. */
export const ARTIFACT_BUCKET = "NEX_ARTIFACTS";

/**
 * The queue group a workload's trigger subscriptions join: its namespace and name, so copies of one
 * workload share the load while a same-named workload of another namespace never takes its requests.
 */
export function triggerQueueGroup(namespace: string, workloadName: string): string {
  return `nex.${namespace}.${workloadName}`;
}

/** Names are single subject tokens. */
export const token = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, "must be 1-64 letters, digits, '_' or '-'");
/** Namespaces are single tokens without '_', so host-service bucket names stay unambiguous. */
export const NAMESPACE_PATTERN = /^[A-Za-z0-9-]{1,64}$/;

export const triggerSubject = z.string().superRefine((subject, ctx) => {
  const problem = triggerSubjectProblem(subject);
  if (problem) ctx.addIssue({ code: "custom", message: `trigger subject ${JSON.stringify(subject)} ${problem}` });
});

/** Every workload type, the one list: each has a runtime factory in runtimes/registry.ts. */
export const WORKLOAD_TYPES = ["javascript", "wasm", "oci", "static"] as const;
export type WorkloadType = (typeof WORKLOAD_TYPES)[number];
export const WorkloadTypeSchema = z.enum(WORKLOAD_TYPES);


export const UndeployRequestSchema = z
  .object({ version: z.literal(PROTOCOL_VERSION), workload_id: z.string().min(1).max(64), requested_at: z.string().datetime() })
  .strict();
export type UndeployRequest = z.infer<typeof UndeployRequestSchema>;

export const AuctionRequestSchema = z
  .object({
    version: z.literal(PROTOCOL_VERSION),
    type: WorkloadTypeSchema,
    tags: z.record(z.string(), z.string()).default({}),
    memory_mb: z.number().int().min(0).optional(),
  })
  .strict();
export type AuctionRequest = z.infer<typeof AuctionRequestSchema>;

export const LameDuckRequestSchema = z
  .object({
    version: z.literal(PROTOCOL_VERSION),
    requested_at: z.string().datetime(),
    delay_ms: z.number().int().min(0).max(600_000).optional(),
    /** Hand the node's workloads to other nodes (by auction) instead of only stopping them. */
    move: z.boolean().optional(),
  })
  .strict();

export interface WorkloadSummary {
  id: string;
  name: string;
  namespace: string;
  type: z.infer<typeof WorkloadTypeSchema>;
  node_id: string;
  /** exited: an OCI workload's container ended and stays down (failed when it ended badly); restarting: it comes back after a backoff. */
  state: "starting" | "running" | "restarting" | "stopping" | "exited" | "failed";
  trigger_subjects: string[];
  issuer: string;
  started_at: string;
  sha256?: string;
  /** A child workload: the workload that deployed it (workloads.deploy). */
  parent_id?: string;
  /** Functions: triggers answered and failed, their mean and last duration (ms, trigger received → reply sent). */
  triggers?: number;
  failures?: number;
  mean_ms?: number;
  last_ms?: number;
  /** Functions: what their isolates (JS) or worker threads (wasm) hold in memory, in bytes. */
  memory_bytes?: number;
  /** Functions: trigger durations since the workload (its runtime host) started, and their p50 and p99 (ms). */
  durations?: DurationHistogram;
  p50_ms?: number;
  p99_ms?: number;
  /** Functions: failed triggers by error code. */
  failures_by_code?: Record<string, number>;
  /** Functions: host-service calls by service, then by outcome ("ok" or the host error code). */
  host_calls?: Record<string, Record<string, number>>;
  /** Times it came back: its runtime host restarted, or (a service, a container) it ran again. */
  restarts?: number;
  /** OCI workloads: the container and what it uses. */
  container?: ContainerInfo;
  /** JavaScript services: what the service holds now and how often it came back. */
  service?: ServiceInfo;
}

/** Counts per bucket (not cumulative): counts[i] ≤ le_ms[i], the last one over the largest bound. */
export interface DurationHistogram {
  le_ms: number[];
  counts: number[];
  sum_ms: number;
}

export interface ServiceInfo {
  /** running; restarting (a run ended, it comes back after restart_in_ms); failed (it stays down); stopping. */
  state: "starting" | "running" | "restarting" | "failed" | "stopping";
  restarts: number;
  /** Subjects it subscribed with ctx.subscribe (queue groups after a space). */
  subscriptions: string[];
  /** Timers pending (setTimeout, setInterval). */
  timers: number;
  /** Timers of the runtime host that its timers hold (one per run at most, armed for the earliest due). */
  host_timers?: number;
  /** Writes of what it subscribes to the trigger claims (NEX_TRIGGERS) running or owed: coalesced, at most 2. */
  claim_writes_queued?: number;
  /** CPU time its isolate used in this run, in ms. */
  cpu_ms: number;
  /** Messages to its subscriptions dropped or refused (overloaded) because its queue was full. */
  dropped: number;
  /** Why the last run ended, when one did. */
  last_exit?: string;
}

export interface ContainerInfo {
  id: string;
  image: string;
  /** The engine's state: created, running, restarting, exited, ... */
  state: string;
  restarts: number;
  exit_code?: number;
  oom_killed?: boolean;
  /** CPU time used since the container started, in seconds. */
  cpu_seconds?: number;
  memory_bytes?: number;
  memory_limit_bytes?: number;
  pids?: number;
}

export interface PingResponse {
  node_id: string;
  name: string;
  version: string;
  uptime_s: number;
  tags: Record<string, string>;
  xkey: string;
  /** The xkey signed with the node's nkey (signing.ts signNodeXkey): check it before sealing anything to xkey. */
  xkey_sig: string;
  workload_types: string[];
  workload_count: number;
  lame_duck: boolean;
}

/** A node's bid: its ping, and why it could not run the workload now if its runtime is down. */
export interface AuctionBid extends PingResponse {
  unavailable?: string;
}

export interface InfoResponse extends PingResponse {
  broker_url: string;
  memory: { rss: number; heap_used: number; total: number; free: number };
  workloads: WorkloadSummary[];
}

export interface DeployResponse {
  workload_id: string;
  node_id: string;
  started: boolean;
}

/** Turns a zod error into one readable line: "name: must be ...; artifact.sha256: is required". */
export function describeZodError(error: z.ZodError): string {
  return error.issues.map((i) => (i.path.length ? `${i.path.join(".")}: ${i.message}` : i.message)).join("; ");
}
