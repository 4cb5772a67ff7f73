// Runs in the node process. What the JavaScript and wasm runtimes share: their workloads run in
// supervised runtime-host children (RuntimeHosts: one, or one per namespace), so deploy, undeploy, stats
// and close go to the child serving the workload. A subclass says which child to run and how a deploy
// is made there (in the RuntimeHosts it builds).

import type { RuntimeHosts } from "./runtime-hosts.js";
import type { FunctionStats, Runtime, WorkloadSpec, WorkloadType } from "./types.js";

export abstract class HostedFunctionRuntime<Extra = object> implements Runtime {
  abstract readonly type: WorkloadType;
  protected abstract readonly host: RuntimeHosts<Extra>;

  /** The shared runtime host's process id, while one runs (tests kill it to exercise supervision). */
  get childPid(): number | undefined {
    return this.host.childPidFor("");
  }

  /** The process id of the runtime host serving `namespace`, while one runs. */
  childPidFor(namespace: string): number | undefined {
    return this.host.childPidFor(namespace);
  }

  /** Starts the runtime host now instead of on the first deploy; resolves once it is connected to NATS. */
  start(): Promise<void> {
    return this.host.start();
  }

  async deploy(spec: WorkloadSpec): Promise<void> {
    if (spec.type === "oci" || spec.type === "static" || spec.type !== this.type) throw new Error(`the ${this.type} runtime cannot run a ${spec.type} workload`);
    await this.host.deploy(spec);
  }

  undeploy(workloadId: string): Promise<void> {
    return this.host.undeploy(workloadId);
  }

  stats(workloadId: string): Promise<FunctionStats | undefined> {
    return this.host.stats(workloadId);
  }

  /** Drains every workload's triggers and stops the runtime hosts (SIGKILL after their close timeout). */
  close(): Promise<void> {
    return this.host.close();
  }
}
