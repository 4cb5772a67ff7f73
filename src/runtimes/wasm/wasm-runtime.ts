// The WebAssembly runtime: WASI preview1 commands and components, each workload on its own warm
// worker threads inside the node process. It connects to NATS itself (its trigger traffic stays off
// the node's control connection), subscribes each workload's trigger subjects in a queue group named
// after its namespace and name (HostedWorkload, shared with the JS runtime), and serves the components' host
// calls in-process with the same handlers the node serves on $NEX.HOST.

import { connect, type NatsConnection } from "@nats-io/transport-node";
import pino, { type Logger } from "pino";
import { HostServices } from "../../host-services/server.js";
import { builtScript } from "../../util/built-script.js";
import { sha256Hex } from "../../util/sha256.js";
import { HostedWorkload, normalizeLimits, poolSize } from "../hosted-workload.js";
import { HostBridge } from "../host-bridge.js";
import type { FunctionStats, NatsAuth, Runtime, RuntimeObserver, WorkloadSpec } from "../types.js";
import { ComponentCache } from "./component-cache.js";
import { GuestPool } from "./guest-pool.js";
import { prepareProgram } from "./prepare.js";

export interface WasmRuntimeOptions {
  /** NATS server URL(s), comma-separated. */
  natsUrl: string;
  natsAuth?: NatsAuth;
  observer: RuntimeObserver;
  /** Where transpiled components are kept, by artifact SHA-256. */
  cacheDir: string;
  log?: Logger;
}


/** The compiled guest-worker.js (from source, the one under dist/). */
export function defaultWorkerScript(): string {
  return builtScript(import.meta.url, "guest-worker.js");
}

export class WasmRuntime implements Runtime {
  readonly type = "wasm" as const;
  private readonly log: Logger;
  private readonly workerScript: string;
  private readonly components: ComponentCache;
  private readonly workloads = new Map<string, HostedWorkload>();
  private readonly deploying = new Map<string, Promise<void>>();
  private connection?: Promise<NatsConnection>;
  private hostServices?: HostServices;
  private closed = false;
  /** Components transpiled by this runtime (cache misses); the rest came from the cache. */
  transpileCount = 0;

  constructor(private readonly opts: WasmRuntimeOptions) {
    this.log = (opts.log ?? pino({ level: "silent" })).child({ runtime: "wasm" });
    this.workerScript = defaultWorkerScript();
    this.components = new ComponentCache(opts.cacheDir);
  }

  private connect(): Promise<NatsConnection> {
    this.connection ??= connect({
      servers: this.opts.natsUrl.split(",").map((s) => s.trim()),
      name: "nex-wasm-runtime",
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      // Host-service calls are requests; a stack trace captured for each costs more than the call (as in runtime-host.ts).
      noAsyncTraces: true,
      ...this.opts.natsAuth,
    }).catch((err: Error) => {
      this.connection = undefined;
      throw new Error(`the wasm runtime cannot connect to NATS at ${this.opts.natsUrl}: ${err.message}`);
    });
    return this.connection;
  }

  async deploy(spec: WorkloadSpec): Promise<void> {
    if (this.closed) throw new Error("the wasm runtime is closed");
    if (spec.type !== "wasm") throw new Error(`the wasm runtime cannot run a ${spec.type} workload`);
    if (this.workloads.has(spec.id) || this.deploying.has(spec.id)) throw new Error(`workload ${spec.id} is already deployed`);
    const work = this.start(spec);
    this.deploying.set(spec.id, work);
    try {
      await work;
    } finally {
      this.deploying.delete(spec.id);
    }
  }

  private async start(spec: WorkloadSpec): Promise<void> {
    const nc = await this.connect();
    const wlog = this.log.child({ workloadId: spec.id, namespace: spec.namespace, workload: spec.name });
    // The wall-clock deadline is enforced per trigger; CPU time is not measured separately for wasm.
    const limits = normalizeLimits(spec.limits);
    const sha256 = sha256Hex(spec.artifact);
    const { program, transpiled } = await prepareProgram({ ...spec, sha256 }, limits, this.components);
    if (transpiled) this.transpileCount++;
    this.hostServices ??= new HostServices(nc, this.log.child({ component: "host-services" }));
    const local = this.hostServices ? { services: this.hostServices, workloadName: spec.name } : undefined;
    const bridge = new HostBridge(nc, spec.namespace, spec.id, local);
    const pool = await GuestPool.start({
      workerScript: this.workerScript,
      program,
      limits,
      concurrency: poolSize(spec.concurrency),
      hostCall: (r, deadlineAt) => bridge.call(r.service, r.method, r.headers, r.body, deadlineAt),
      log: (stream, text) => {
        for (const line of text.split("\n")) this.opts.observer.log(spec.id, stream, line);
      },
      logger: wlog,
    });
    const events = { failure: (id: string, subject: string, error: string) => this.opts.observer.triggerFailed(id, subject, error) };
    const workload = new HostedWorkload({ id: spec.id, name: spec.name, namespace: spec.namespace, triggerSubjects: spec.triggerSubjects, limits }, nc, pool, events, wlog);
    await workload.listen();
    if (this.closed) {
      await workload.stop();
      throw new Error("the wasm runtime is closed");
    }
    this.workloads.set(spec.id, workload);
    wlog.info({ subjects: spec.triggerSubjects, form: program.form, transpiled }, "wasm workload deployed");
  }

  async undeploy(workloadId: string): Promise<void> {
    await this.deploying.get(workloadId)?.catch(() => undefined);
    const workload = this.workloads.get(workloadId);
    if (!workload) return;
    this.workloads.delete(workloadId);
    await workload.stop();
  }

  async stats(workloadId: string): Promise<FunctionStats | undefined> {
    return this.workloads.get(workloadId)?.stats();
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.allSettled([...this.deploying.values()]);
    await Promise.allSettled([...this.workloads.values()].map((w) => w.stop()));
    this.workloads.clear();
    await this.components.close();
    const nc = await this.connection?.catch(() => undefined);
    await nc?.drain().catch(() => undefined);
  }
}
