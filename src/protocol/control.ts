// Control-plane messages: subjects, request/response shapes and their validation (zod). Shared by the
// node agent, the CLI and the tests. Every request is versioned and validated on receipt; a bad one
// gets {"error":{code,message}} (with a Nex-Error header) and changes nothing.

import { z } from "zod";

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
};

/** Names are single subject tokens. */
const token = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, "must be 1-64 letters, digits, '_' or '-'");
/** Namespaces are single tokens without '_', so host-service bucket names stay unambiguous. */
export const NAMESPACE_PATTERN = /^[A-Za-z0-9-]{1,64}$/;
const subjectToken = /^[^\s.*>]+$/;

/** A trigger subject must be a valid subscription subject outside the system prefixes. */
export const FORBIDDEN_TRIGGER_PREFIXES = ["$SYS", "$JS", "$NEX", "_INBOX", "$SRV", "$KV", "$O"];

export function triggerSubjectProblem(subject: string): string | undefined {
  const tokens = subject.split(".");
  if (subject.length === 0 || subject.length > 255) return "must be 1-255 characters";
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i];
    if (t === "*" || (t === ">" && i === tokens.length - 1)) continue;
    if (!subjectToken.test(t)) return "is not a valid NATS subject";
  }
  const first = tokens[0];
  if (first === ">" || first === "*") return "may not start with a wildcard (it would capture system subjects)";
  if (FORBIDDEN_TRIGGER_PREFIXES.includes(first)) return `may not be under ${first}.>`;
  return undefined;
}

const triggerSubject = z.string().superRefine((subject, ctx) => {
  const problem = triggerSubjectProblem(subject);
  if (problem) ctx.addIssue({ code: "custom", message: `trigger subject ${JSON.stringify(subject)} ${problem}` });
});

export const WorkloadTypeSchema = z.enum(["javascript", "wasm", "oci"]);

export const LimitsSchema = z
  .object({
    memory_mb: z.number().int().min(8).max(16384).optional(),
    timeout_ms: z.number().int().min(1).max(600_000).optional(),
    cpu_ms: z.number().int().min(1).max(600_000).optional(),
  })
  .strict();

export const DeployRequestSchema = z
  .object({
    version: z.literal(PROTOCOL_VERSION),
    name: token,
    description: z.string().max(1024).optional(),
    type: WorkloadTypeSchema,
    artifact: z
      .object({
        /** nats://<bucket>/<key> (object store), file:///abs/path (on the node), or an image reference (oci). */
        url: z.string().min(1).max(2048),
        /** SHA-256 of the artifact bytes, hex; required for nats:// and file:// artifacts. */
        sha256: z.string().regex(/^[0-9a-f]{64}$/, "must be 64 lowercase hex digits").optional(),
      })
      .strict(),
    trigger_subjects: z.array(triggerSubject).max(64).default([]),
    limits: LimitsSchema.default({}),
    /** Environment sealed to the node's xkey: base64 of curve25519 box of a JSON object of strings. */
    env_sealed: z.string().max(256 * 1024).optional(),
    /** The sender's xkey, needed to open env_sealed. */
    sender_xkey: z.string().regex(/^X[A-Z2-7]{55}$/).optional(),
    fresh_context: z.boolean().default(false),
    concurrency: z.number().int().min(1).max(64).default(1),
    tags: z.record(z.string(), z.string()).default({}),
    /** When the issuer signed it (ISO 8601); requests older than the replay window are refused. */
    requested_at: z.string().datetime(),
  })
  .strict()
  .superRefine((req, ctx) => {
    if (req.type !== "oci" && !req.artifact.sha256) ctx.addIssue({ code: "custom", path: ["artifact", "sha256"], message: "is required" });
    if (req.type !== "oci" && !/^(nats|file):\/\//.test(req.artifact.url)) {
      ctx.addIssue({ code: "custom", path: ["artifact", "url"], message: "must be nats://<bucket>/<key> or file:///<path>" });
    }
    if (req.type !== "oci" && req.trigger_subjects.length === 0) {
      ctx.addIssue({ code: "custom", path: ["trigger_subjects"], message: "a function needs at least one trigger subject" });
    }
    if (req.env_sealed && !req.sender_xkey) ctx.addIssue({ code: "custom", path: ["sender_xkey"], message: "is required with env_sealed" });
  });
export type DeployRequest = z.infer<typeof DeployRequestSchema>;

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
  .object({ version: z.literal(PROTOCOL_VERSION), requested_at: z.string().datetime(), delay_ms: z.number().int().min(0).max(600_000).optional() })
  .strict();

export interface WorkloadSummary {
  id: string;
  name: string;
  namespace: string;
  type: z.infer<typeof WorkloadTypeSchema>;
  node_id: string;
  state: "starting" | "running" | "stopping" | "failed";
  trigger_subjects: string[];
  issuer: string;
  started_at: string;
  sha256?: string;
  triggers?: number;
  failures?: number;
}

export interface PingResponse {
  node_id: string;
  name: string;
  version: string;
  uptime_s: number;
  tags: Record<string, string>;
  xkey: string;
  workload_types: string[];
  workload_count: number;
  lame_duck: boolean;
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
