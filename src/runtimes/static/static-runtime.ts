// The "runtime" of static assets: nothing runs. A deploy checks that every file of the manifest is in the
// object store with its size (so a route never names a file no gateway can serve); the node records the
// manifest with the route, and every node's gateway serves the files (node-agent/static-files.ts).

import type { NatsConnection } from "@nats-io/transport-node";
import { Objm } from "@nats-io/obj";
import { ARTIFACT_BUCKET } from "../../protocol/control.js";
import type { Runtime, WorkloadSpec, WorkloadStats } from "../types.js";

export class StaticRuntime implements Runtime {
  readonly type = "static" as const;
  private readonly workloads = new Set<string>();

  constructor(private readonly nc: NatsConnection) {}

  async deploy(spec: WorkloadSpec): Promise<void> {
    if (spec.type !== "static") throw new Error(`the static runtime cannot run a ${spec.type} workload`);
    const store = await new Objm(this.nc).open(ARTIFACT_BUCKET);
    const missing: string[] = [];
    const checks = Object.entries(spec.manifest.files).map(async ([p, f]) => {
      const info = await store.info(f.sha256);
      if (!info || info.deleted || info.size !== f.size) missing.push(p);
    });
    await Promise.all(checks);
    if (missing.length > 0) {
      missing.sort();
      throw new Error(`${missing.length} file(s) of the manifest are not in ${ARTIFACT_BUCKET} with their size: ${missing.slice(0, 5).join(", ")}${missing.length > 5 ? ", ..." : ""}`);
    }
    this.workloads.add(spec.id);
  }

  async undeploy(workloadId: string): Promise<void> {
    this.workloads.delete(workloadId);
  }

  async stats(workloadId: string): Promise<WorkloadStats | undefined> {
    return this.workloads.has(workloadId) ? { triggers: 0, failures: 0, meanMs: 0, lastMs: 0, memoryBytes: 0 } : undefined;
  }

  async close(): Promise<void> {
    this.workloads.clear();
  }
}
