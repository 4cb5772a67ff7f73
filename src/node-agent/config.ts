// Node configuration: defaults, a JSON config file with the same keys as the flags, and validation.

import fs from "node:fs";
import os from "node:os";
import { z } from "zod";
import { defaultNodeDataDir } from "../util/nex-home.js";
import { describeZodError, WORKLOAD_TYPES, WorkloadTypeSchema } from "../protocol/control.js";
import { DEFAULT_MAX_WARM_SLOTS, DEFAULT_WORKLOAD_LIMITS } from "../runtimes/types.js";

export const NodeConfigSchema = z
  .object({
    name: z.string().min(1).max(64).default(os.hostname()),
    tags: z.record(z.string(), z.string()).default({}),
    /** oci is on by default: without a reachable Docker engine the node still starts, and oci deploys say why they fail. */
    workload_types: z.array(WorkloadTypeSchema).min(1).default([...WORKLOAD_TYPES]),
    /** Issuer public nkeys allowed to deploy, undeploy and lame-duck; empty = the local issuer (NEX_HOME/issuer.nk). */
    allowed_issuers: z.array(z.string().regex(/^[A-Z][A-Z2-7]{55}$/)).default([]),
    /** Nodes (public node nkeys, N...) that may win this node's child auctions besides itself; empty = any node whose xkey is signed. */
    trusted_nodes: z.array(z.string().regex(/^N[A-Z2-7]{55}$/, "must be a node id (N...)")).default([]),
    /** Accept any validly signed request (a lab setting; a warning is logged). */
    allow_any_issuer: z.boolean().default(false),
    /** Defaults for workloads that do not set their own, and ceilings they may not exceed. */
    limits: z
      .object({
        memory_mb: z.number().int().min(8).default(DEFAULT_WORKLOAD_LIMITS.memoryMb),
        timeout_ms: z.number().int().min(1).default(DEFAULT_WORKLOAD_LIMITS.timeoutMs),
        cpu_ms: z.number().int().min(1).default(DEFAULT_WORKLOAD_LIMITS.cpuMs),
        max_memory_mb: z.number().int().min(8).default(1024),
        max_workloads: z.number().int().min(1).default(10_000),
        max_artifact_bytes: z.number().int().min(1).default(64 * 1024 * 1024),
        /** Isolates (JS) or worker threads (wasm) each runtime host keeps loaded; past it idle functions unload until their next trigger. */
        max_warm_slots: z.number().int().min(1).default(DEFAULT_MAX_WARM_SLOTS),
      })
      .strict()
      .default({
        memory_mb: DEFAULT_WORKLOAD_LIMITS.memoryMb,
        timeout_ms: DEFAULT_WORKLOAD_LIMITS.timeoutMs,
        cpu_ms: DEFAULT_WORKLOAD_LIMITS.cpuMs,
        max_memory_mb: 1024, max_workloads: 10_000, max_artifact_bytes: 64 * 1024 * 1024, max_warm_slots: DEFAULT_MAX_WARM_SLOTS }),
    /** Node identity, state and (bundled broker) JetStream data; NEX_HOME/node by default, apart from the issuer's keys. */
    data_dir: z.string().min(1).default(defaultNodeDataDir),
    /** Lets a namespace serve trigger subjects that overlap another namespace's (refused by default: it would take their requests). */
    allow_shared_triggers: z.boolean().default(false),
    /** Where file:// artifacts may come from; without it the node fetches artifacts from the object store only. */
    artifact_dir: z.string().min(1).optional(),
    /** The Docker-API engine for oci workloads: unix:///path/docker.sock or tcp://host:port (default: $DOCKER_HOST, else the local socket). */
    docker_host: z.string().min(1).optional(),
    /** uid[:gid] OCI containers run as; nobody (65534:65534) by default. */
    container_user: z.string().regex(/^\d+(:\d+)?$/, "must be uid or uid:gid").optional(),
    /** One JavaScript and one wasm runtime host per namespace, so tenants do not share a crash domain. */
    runtime_host_per_namespace: z.boolean().default(false),
    /** Copies JetStream keeps of each bucket nex creates; default min(3, JetStream servers in the cluster). */
    js_replicas: z.number().int().min(1).max(5).optional(),
    /** How long a lost node's workloads wait before they move to other nodes (ms). */
    failover_grace_ms: z.number().int().min(0).max(3_600_000).optional(),
  })
  .strict();

export type NodeConfig = z.infer<typeof NodeConfigSchema>;

/** Reads a --config file (JSON) and merges flags over it; throws one readable line on bad input. */
export function loadNodeConfig(file: string | undefined, overrides: Partial<Record<keyof NodeConfig, unknown>>): NodeConfig {
  let raw: Record<string, unknown> = {};
  if (file) {
    try {
      raw = JSON.parse(fs.readFileSync(file, "utf8")) as Record<string, unknown>;
    } catch (err) {
      throw new Error(`cannot read config ${file}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  for (const [key, value] of Object.entries(overrides)) if (value !== undefined) raw[key] = value;
  const parsed = NodeConfigSchema.safeParse(raw);
  if (!parsed.success) throw new Error(`invalid node config: ${describeZodError(parsed.error)}`);
  return parsed.data;
}
