// From a verified deploy request to what a runtime runs: the one place that knows each kind's fields,
// where its artifact comes from, and how the node's default limits fill in what the request leaves out.

import type { NatsConnection } from "@nats-io/transport-node";
import { type DeployRequest, servedSubjects } from "../protocol/deploy-request.js";
import type { WorkloadLimits, WorkloadSpec } from "../runtimes/types.js";
import { fetchArtifact } from "./artifacts.js";
import type { NodeConfig } from "./config.js";
import { ControlError } from "./errors.js";
import { StaticManifestSchema } from "../protocol/static.js";
import { describeZodError } from "../protocol/control.js";

/** Who the workload is, as the node assigned it. */
export interface WorkloadIdentity {
  id: string;
  namespace: string;
}

/** The request's limits over the node's defaults. */
export function workloadLimits(request: DeployRequest, defaults: NodeConfig["limits"]): WorkloadLimits {
  // A static workload runs nothing; its limits are only what the summary shows.
  if (request.type === "static") return { memoryMb: 0, timeoutMs: defaults.timeout_ms, cpuMs: defaults.cpu_ms };
  const l = request.limits;
  const limits: WorkloadLimits = {
    memoryMb: l.memory_mb ?? defaults.memory_mb,
    timeoutMs: l.timeout_ms ?? defaults.timeout_ms,
    cpuMs: l.cpu_ms ?? defaults.cpu_ms,
  };
  if (request.type === "oci") {
    if (l.cpus !== undefined) limits.cpus = l.cpus;
    if (l.pids !== undefined) limits.pids = l.pids;
  }
  return limits;
}

export interface SpecInputs {
  nc: NatsConnection;
  config: NodeConfig;
  /** The environment, unsealed. */
  env: Record<string, string>;
}

/**
 * The runtime's spec for a request; a function's artifact is fetched (and its hash checked) here. An oci
 * workload's own broker user (`natsAuth`) is the node's to add, once its trigger subjects are claimed.
 */
export async function workloadSpec(who: WorkloadIdentity, request: DeployRequest, inputs: SpecInputs): Promise<WorkloadSpec> {
  const { config } = inputs;
  const base = {
    id: who.id,
    name: request.name,
    namespace: who.namespace,
    // With an HTTP route, also $NEX.HTTP.<ns>.<name>: the gateway's requests take the trigger path.
    triggerSubjects: servedSubjects(request, who.namespace),
    limits: workloadLimits(request, config.limits),
    env: inputs.env,
  };
  switch (request.type) {
    case "oci":
      return {
        ...base,
        type: "oci",
        image: request.artifact.url,
        container: { argv: request.argv, restart: request.restart ?? { policy: "never" }, readOnlyRootfs: request.read_only_rootfs ?? true },
      };
    case "static": {
      // The manifest, hash-checked, then checked as the protocol bounds it (its files are checked by the static runtime).
      const bytes = await fetchArtifact(inputs.nc, request.artifact.url, request.artifact.sha256, { maxBytes: 1024 * 1024 });
      let parsed: unknown;
      try {
        parsed = JSON.parse(new TextDecoder().decode(bytes));
      } catch {
        throw new ControlError(400, "the static manifest is not JSON");
      }
      const manifest = StaticManifestSchema.safeParse(parsed);
      if (!manifest.success) throw new ControlError(400, `static manifest: ${describeZodError(manifest.error)}`);
      return { ...base, type: "static", manifest: manifest.data };
    }
    case "javascript":
    case "wasm": {
      const artifact = await fetchArtifact(inputs.nc, request.artifact.url, request.artifact.sha256, {
        artifactDir: config.artifact_dir,
        maxBytes: config.limits.max_artifact_bytes,
      });
      const fn = { ...base, artifact, sha256: request.artifact.sha256, concurrency: request.concurrency, deploysWorkloads: request.grant !== undefined };
      if (request.type === "wasm") return { ...fn, type: "wasm" };
      const js = { ...fn, type: "javascript" as const, freshContextPerTrigger: request.fresh_context };
      return request.service ? { ...js, service: { restart: request.restart ?? { policy: "never" } } } : js;
    }
  }
}
