// The deploy request: one variant per workload kind, each saying which fields it takes. A field of
// another kind is refused by name ("argv: is for oci workloads only") rather than ignored, so a request
// never means more than the node will do with it.

import { z } from "zod";
import { ARTIFACT_BUCKET, PROTOCOL_VERSION, token, triggerSubject, WorkloadTypeSchema } from "./control.js";
import { SignedGrantSchema } from "./grants.js";
import { httpSubject, HttpRouteSchema } from "./http.js";

/** A field that belongs to other kinds: absent, or refused with the kinds that take it. */
const onlyFor = (kinds: string) => z.undefined({ error: `is for ${kinds} workloads only` }).optional();

const functionLimits = {
  memory_mb: z.number().int().min(8).max(16384).optional(),
  timeout_ms: z.number().int().min(1).max(600_000).optional(),
  cpu_ms: z.number().int().min(1).max(600_000).optional(),
};

const FunctionLimitsSchema = z.strictObject({ ...functionLimits, cpus: onlyFor("oci"), pids: onlyFor("oci") });

const ContainerLimitsSchema = z.strictObject({
  ...functionLimits,
  /** CPUs the container may use, e.g. 0.5. */
  cpus: z.number().min(0.01).max(1024).optional(),
  /** Most processes and threads in the container. */
  pids: z.number().int().min(1).max(4_194_304).optional(),
});

export const RestartPolicySchema = z.strictObject({
  /** never: stays down; on-failure: back after a non-zero exit or OOM kill; always: back after any exit. */
  policy: z.enum(["never", "on-failure", "always"]),
  /** Restarts in a row before it stays down; unlimited when absent. */
  max_retries: z.number().int().min(0).max(1_000_000).optional(),
});
export type RestartPolicy = z.infer<typeof RestartPolicySchema>;

/** What every kind has. */
const common = {
  version: z.literal(PROTOCOL_VERSION),
  name: token,
  description: z.string().max(1024).optional(),
  /** Environment sealed to the node's xkey: base64 of curve25519 box of a JSON object of strings. */
  env_sealed: z.string().max(256 * 1024).optional(),
  /** The sender's xkey, needed to open env_sealed. */
  sender_xkey: z.string().regex(/^X[A-Z2-7]{55}$/).optional(),
  tags: z.record(z.string(), z.string()).default({}),
  /** A client's retry after a timeout with the same key (same issuer and namespace, within 10 minutes) gets the same workload. */
  idempotency_key: token.optional(),
  /** When the issuer signed it (ISO 8601); requests older than the replay window are refused. */
  requested_at: z.string().datetime(),
  /** An issuer-signed deploy grant: this workload may deploy the grant's artifacts as its children (protocol/grants.ts). */
  grant: SignedGrantSchema.optional(),
  /** An HTTP route: the node gateways send requests under this path prefix to the workload (protocol/http.ts). Any kind may take one. */
  http: HttpRouteSchema.optional(),
};

/** A function's code: from the object store (nats://NEX_ARTIFACTS/<key>) or the node's artifact directory (file:///<path>). */
const FunctionArtifactSchema = z.strictObject({
  url: z
    .string()
    .min(1)
    .max(2048)
    .regex(/^(nats|file):\/\//, `must be nats://${ARTIFACT_BUCKET}/<key> or file:///<path>`),
  /** SHA-256 of the artifact bytes, hex. */
  sha256: z.string().regex(/^[0-9a-f]{64}$/, "must be 64 lowercase hex digits"),
});

/** What JavaScript and wasm functions share: code, trigger subjects, isolates or workers in parallel. */
const functionFields = {
  ...common,
  artifact: FunctionArtifactSchema,
  /** At least one, unless the function has an HTTP route (checked below). */
  trigger_subjects: z.array(triggerSubject).max(64).default([]),
  limits: FunctionLimitsSchema.default({}),
  concurrency: z.number().int().min(1).max(64).default(1),
  argv: onlyFor("oci"),
  restart: onlyFor("oci"),
  read_only_rootfs: onlyFor("oci"),
};

// ---- JavaScript services (long-running: start(ctx) once, subscriptions and timers of their own) ----

const javaScriptServiceFields = {
  /** A long-running service (default-exports { start, stop?, handle? }) instead of a function. */
  service: z.boolean().default(false),
  /** Services: trigger subjects are optional (handle() answers them). Functions: at least one. */
  trigger_subjects: z.array(triggerSubject).max(64).default([]),
  /** Services: what happens when a run of the service ends (a throw from start, a loop, memory); default never. */
  restart: RestartPolicySchema.optional(),
};

/** A function needs a trigger subject; restart is for services (and containers). */
function checkJavaScriptService(req: { service: boolean; trigger_subjects: string[]; restart?: unknown; fresh_context?: boolean; concurrency?: number; http?: unknown }, ctx: z.RefinementCtx): void {
  if (!req.service) {
    if (req.trigger_subjects.length === 0 && req.http === undefined) ctx.addIssue({ code: "custom", path: ["trigger_subjects"], message: "a function needs at least one trigger subject or an http route" });
    if (req.restart !== undefined) ctx.addIssue({ code: "custom", path: ["restart"], message: "is for oci workloads and javascript services only" });
    return;
  }
  if (req.fresh_context) ctx.addIssue({ code: "custom", path: ["fresh_context"], message: "is for javascript functions only (a service has one isolate)" });
  if (req.concurrency !== undefined && req.concurrency !== 1) ctx.addIssue({ code: "custom", path: ["concurrency"], message: "is for javascript functions only (a service has one isolate)" });
}

const JavaScriptDeploySchema = z.strictObject({
  ...functionFields,
  type: z.literal("javascript"),
  /** A fresh context for every trigger (original Nex) instead of one warm context. */
  fresh_context: z.boolean().default(false),
  ...javaScriptServiceFields,
});

const WasmDeploySchema = z.strictObject({
  ...functionFields,
  type: z.literal("wasm"),
  fresh_context: onlyFor("javascript"),
  service: onlyFor("javascript"),
});

const OciDeploySchema = z.strictObject({
  ...common,
  type: z.literal("oci"),
  artifact: z.strictObject({
    /** An image reference. */
    url: z
      .string()
      .min(1)
      .max(2048)
      .regex(/^[A-Za-z0-9][A-Za-z0-9._\-/:@]*$/, "must be an image reference such as nex-examples/greeter:latest"),
    sha256: onlyFor("javascript and wasm"),
  }),
  /** Subjects the container serves itself (claimed for it, granted in its broker user's permissions). */
  trigger_subjects: z.array(triggerSubject).max(64).default([]),
  limits: ContainerLimitsSchema.default({}),
  /** Command and arguments instead of the image's CMD. */
  argv: z.array(z.string().max(4096)).min(1).max(256).optional(),
  /** What happens when the container exits on its own (default: it stays down). */
  restart: RestartPolicySchema.optional(),
  /** false gives the container a writable root filesystem (read-only by default). */
  read_only_rootfs: z.boolean().optional(),
  concurrency: onlyFor("javascript and wasm"),
  fresh_context: onlyFor("javascript"),
  service: onlyFor("javascript"),
});

// ---- static assets (no process: the node's gateways serve the files from the object store) ----

const StaticDeploySchema = z.strictObject({
  ...common,
  type: z.literal("static"),
  /** The manifest (protocol/static.ts), uploaded to the object store: nats://NEX_ARTIFACTS/<sha256>. */
  artifact: FunctionArtifactSchema.extend({ url: z.string().min(1).max(2048).regex(/^nats:\/\//, `must be nats://${ARTIFACT_BUCKET}/<key>`) }),
  /** Required: the files are served under this route, GET and HEAD only. */
  http: HttpRouteSchema.refine((r) => r.methods === undefined, { message: "methods: a static route takes GET and HEAD only (leave methods out)" }),
  trigger_subjects: z.array(triggerSubject).max(0, "a static workload has no trigger subjects").default([]),
  limits: onlyFor("javascript, wasm and oci"),
  concurrency: onlyFor("javascript and wasm"),
  argv: onlyFor("oci"),
  restart: onlyFor("oci"),
  read_only_rootfs: onlyFor("oci"),
  fresh_context: onlyFor("javascript"),
  service: onlyFor("javascript"),
  env_sealed: onlyFor("javascript, wasm and oci"),
  grant: onlyFor("javascript, wasm and oci"),
});

/** The fields every kind has, checked first, so a bad request hears about all of them at once. */
const DeployEnvelopeSchema = z.looseObject({ ...common, type: WorkloadTypeSchema });

const DeployVariantsSchema = z.discriminatedUnion("type", [JavaScriptDeploySchema, WasmDeploySchema, OciDeploySchema, StaticDeploySchema]);

export const DeployRequestSchema = DeployEnvelopeSchema
  // The envelope passes every key on; the variant then takes its own and refuses the rest.
  .pipe(DeployVariantsSchema as unknown as z.ZodType<z.output<typeof DeployVariantsSchema>, z.output<typeof DeployEnvelopeSchema>>)
  .superRefine((req, ctx) => {
    if (req.env_sealed && !req.sender_xkey) ctx.addIssue({ code: "custom", path: ["sender_xkey"], message: "is required with env_sealed" });
    if (req.type === "javascript") checkJavaScriptService(req, ctx);
    if (req.type === "wasm" && req.trigger_subjects.length === 0 && req.http === undefined) {
      ctx.addIssue({ code: "custom", path: ["trigger_subjects"], message: "a function needs at least one trigger subject or an http route" });
    }
  });

/** A deploy request as the node has it, defaults filled in. */
export type DeployRequest = z.infer<typeof DeployRequestSchema>;
/** The fields every kind of request has, as a client sends them. */
export type DeployCommonInput = z.input<z.ZodObject<typeof common>> & { trigger_subjects: string[] };
/** Every subject the workload's queue group serves: its trigger subjects, and its HTTP subject when it has a route. */
export function servedSubjects(request: DeployRequest, namespace: string): string[] {
  if (request.type === "static") return [];
  return request.http ? [...request.trigger_subjects, httpSubject(namespace, request.name)] : request.trigger_subjects;
}
/** A deploy request as a client sends it (fields with defaults may be left out). */
export type DeployRequestInput = z.input<typeof DeployVariantsSchema>;
export type JavaScriptDeployRequest = z.infer<typeof JavaScriptDeploySchema>;
export type WasmDeployRequest = z.infer<typeof WasmDeploySchema>;
export type OciDeployRequest = z.infer<typeof OciDeploySchema>;
export type StaticDeployRequest = z.infer<typeof StaticDeploySchema>;
