// Runs in the node process. The runtime-host children of one function runtime: by default one shared
// by every workload; with hostPerNamespace, one per namespace, so a tenant whose guest brings its
// runtime host down (or makes it restart) costs no other tenant a request. Each child is supervised
// on its own (runtime-host-supervisor.ts).

import type { DeployOn, RuntimeHostOptions } from "./runtime-host-supervisor.js";
import { RuntimeHostSupervisor } from "./runtime-host-supervisor.js";
import type { FunctionStats, FunctionWorkloadSpec } from "./types.js";

/** The key of the child every workload shares when there is not one per namespace. */
const SHARED = "";

export class RuntimeHosts<Extra = object> {
  private readonly hosts = new Map<string, RuntimeHostSupervisor<Extra>>();
  /** Which child each deployed (or deploying) workload is on. */
  private readonly hostOf = new Map<string, RuntimeHostSupervisor<Extra>>();
  private closed = false;

  constructor(
    private readonly opts: RuntimeHostOptions,
    private readonly deployOn: DeployOn<Extra>,
    private readonly perNamespace: boolean,
  ) {}

  private hostFor(namespace: string): RuntimeHostSupervisor<Extra> {
    const key = this.perNamespace ? namespace : SHARED;
    let host = this.hosts.get(key);
    if (!host) {
      const opts = this.perNamespace
        ? { ...this.opts, connectionName: `${this.opts.connectionName} ${namespace}`, log: this.opts.log.child({ namespace }) }
        : this.opts;
      host = new RuntimeHostSupervisor<Extra>(opts, this.deployOn);
      this.hosts.set(key, host);
    }
    return host;
  }

  /** The process id of the child serving `namespace` (any namespace without hostPerNamespace), while it runs. */
  childPidFor(namespace: string): number | undefined {
    return this.hosts.get(this.perNamespace ? namespace : SHARED)?.childPid;
  }

  /** Starts the shared child now (with one per namespace, each starts on its namespace's first deploy). */
  async start(): Promise<void> {
    if (!this.perNamespace) await this.hostFor(SHARED).start();
  }

  async deploy(spec: FunctionWorkloadSpec): Promise<void> {
    // A closed runtime starts no new child for a namespace it has not seen.
    if (this.closed) throw new Error(`the ${this.opts.label} runtime is closed`);
    if (this.hostOf.has(spec.id)) throw new Error(`workload ${spec.id} is already deployed`);
    const host = this.hostFor(spec.namespace);
    this.hostOf.set(spec.id, host);
    try {
      await host.deploy(spec);
    } catch (err) {
      this.hostOf.delete(spec.id);
      throw err;
    }
  }

  async undeploy(workloadId: string): Promise<void> {
    const host = this.hostOf.get(workloadId);
    await host?.undeploy(workloadId);
    this.hostOf.delete(workloadId);
  }

  stats(workloadId: string): Promise<FunctionStats | undefined> {
    return this.hostOf.get(workloadId)?.stats(workloadId) ?? Promise.resolve(undefined);
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.hosts.values()].map((h) => h.close()));
  }
}
