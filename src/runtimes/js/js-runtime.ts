// Runs in the node process. JsRuntime implements Runtime by running every JS workload in one supervised
// runtime-host child process (`node --no-node-snapshot dist/src/runtimes/js/host/runtime-host.js`, which
// isolated-vm needs on Node 20). The supervision (restart with backoff, redeploy, close) is shared with
// the wasm runtime (../runtime-host-supervisor.ts); what is JavaScript's own here is the child to run
// and the V8 code caches kept across child restarts, so a redeploy does not compile again.

import pino, { type Logger } from "pino";
import { builtScript } from "../../util/built-script.js";
import { toFunctionSpec } from "../runtime-host-ipc.js";
import { DEPLOY_TIMEOUT_MS, type HostProcess } from "../runtime-host-supervisor.js";
import { HostedFunctionRuntime } from "../hosted-function-runtime.js";
import { RuntimeHosts } from "../runtime-hosts.js";
import type { NatsAuth, RuntimeObserver, FunctionWorkloadSpec } from "../types.js";
import type { CompiledCode, DeployResult, JsDeployExtra } from "./ipc.js";

/**
 * V8 flags of the runtime-host process (they hold for every isolate in it): isolated-vm's memory limit
 * counts ArrayBuffers but not WebAssembly memories nor the reserved backing of resizable buffers, so a
 * function with --memory 16 could hold gigabytes through either. JavaScript workloads get neither
 * (WebAssembly workloads run in the wasm runtime).
 */
const GUEST_MEMORY_FLAGS = ["--no-expose-wasm", "--no-harmony-rab-gsab"];

export interface JsRuntimeOptions {
  /** NATS server URL(s) for the runtime host; comma-separated for several. */
  natsUrl: string;
  natsAuth?: NatsAuth;
  observer: RuntimeObserver;
  log?: Logger;
  /** One runtime host per namespace instead of one for all, so tenants do not share a crash domain. */
  hostPerNamespace?: boolean;
  /** How long the child may take to start and connect (default 15 s). */
  startTimeoutMs?: number;
  /** How long close() waits for a graceful stop before SIGKILL (default: longest trigger deadline + 5 s). */
  closeTimeoutMs?: number;
  /** The compiled runtime-host.js to run; found next to this file (or under dist/ when running from source). */
  hostScript?: string;
  /** Extra Node flags for the runtime host (after --no-node-snapshot), e.g. ["--cpu-prof"] when profiling. */
  hostExecArgv?: string[];
  /** The node's id, which a service reads as ctx.workload.node. */
  nodeId?: string;
  /** Replicas of the host-service buckets the runtime host creates (undefined: auto, util/replicated-buckets.ts). */
  jsReplicas?: number;
  /** Isolates the runtime host keeps loaded (DEFAULT_MAX_WARM_SLOTS when absent). */
  maxWarmSlots?: number;
}

const MAX_CACHED_CODES = 64;
const MAX_CACHED_CODE_BYTES = 64 * 1024 * 1024;

/** The compiled runtime-host.js (from source, the one under dist/). */
export function defaultHostScript(): string {
  return builtScript(import.meta.url, "host/runtime-host.js");
}

export class JsRuntime extends HostedFunctionRuntime<JsDeployExtra> {
  readonly type = "javascript" as const;
  protected readonly host: RuntimeHosts<JsDeployExtra>;
  private readonly codes = new Map<string, CompiledCode>();

  constructor(opts: JsRuntimeOptions) {
    super();
    const log = (opts.log ?? pino({ level: "silent" })).child({ runtime: "javascript" });
    this.host = new RuntimeHosts<JsDeployExtra>(
      {
        label: "JavaScript",
        script: opts.hostScript ?? defaultHostScript(),
        execArgv: ["--no-node-snapshot", ...GUEST_MEMORY_FLAGS, ...(opts.hostExecArgv ?? [])],
        natsUrl: opts.natsUrl,
        natsAuth: opts.natsAuth,
        connectionName: "nex-js-runtime-host",
        settings: {
          ...(opts.nodeId ? { nodeId: opts.nodeId } : {}),
          ...(opts.jsReplicas ? { jsReplicas: String(opts.jsReplicas) } : {}),
          ...(opts.maxWarmSlots ? { maxWarmSlots: String(opts.maxWarmSlots) } : {}),
        },
        observer: opts.observer,
        log,
        startTimeoutMs: opts.startTimeoutMs,
        closeTimeoutMs: opts.closeTimeoutMs,
      },
      (hp, spec) => this.deployOn(hp, spec),
      opts.hostPerNamespace === true,
    );
  }

  private async deployOn(hp: HostProcess<JsDeployExtra>, spec: FunctionWorkloadSpec): Promise<void> {
    const given = this.codes.get(spec.sha256?.toLowerCase?.() ?? "");
    const result = await hp.request<DeployResult>({ type: "deploy", spec: toFunctionSpec(spec), code: given }, DEPLOY_TIMEOUT_MS);
    if (result?.code) this.keepCode(result.code);
  }

  private keepCode(code: CompiledCode): void {
    this.codes.delete(code.sha256);
    this.codes.set(code.sha256, code);
    let bytes = 0;
    for (const c of this.codes.values()) bytes += c.cachedData?.byteLength ?? 0;
    while (this.codes.size > MAX_CACHED_CODES || bytes > MAX_CACHED_CODE_BYTES) {
      const oldest = this.codes.keys().next().value;
      if (oldest === undefined) break;
      bytes -= this.codes.get(oldest)?.cachedData?.byteLength ?? 0;
      this.codes.delete(oldest);
    }
  }
}
