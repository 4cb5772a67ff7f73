// The JavaScript runtime-host child process: runs JavaScript workloads in isolated-vm isolates, away
// from the node agent, so a crashing isolate library cannot take the node down. Started by JsRuntime
// (node process) with `node --no-node-snapshot runtime-host.js` and an IPC channel; the serving loop,
// NATS connection and trigger subscriptions are shared with the wasm runtime host
// (../../host/runtime-host-child.ts). What is JavaScript's own: compiling the source (with a code cache) into
// a pool of isolates, the first of them made ahead of the deploy (spare-isolate.ts).

import { serveRuntimeHost } from "../../host/runtime-host-child.js";
import { poolSize } from "../../host/hosted-workload.js";
import { SameTurn } from "../../../util/same-turn.js";
import { CodeCache, WorkloadLoadError, type WorkloadCode } from "./compile.js";
import type { DeployResult, JsDeployExtra } from "../ipc.js";
import { WorkloadPool } from "./isolate-pool.js";
import { SpareIsolate } from "./spare-isolate.js";
import { isolateMemoryLimitMb } from "./blank-isolate.js";
import type { FunctionSpec } from "../../runtime-host-ipc.js";
import { JsService } from "./service-supervisor.js";
import { openClaims, ServiceSubjects } from "./service-subjects.js";

/** Host calls of all isolates, started together per event-loop turn so their requests share writes. */
const hostCallTurn = new SameTurn();
const codeCache = new CodeCache();
const spare = new SpareIsolate();

function decodeSource(name: string, artifact: Uint8Array): string {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(artifact);
  } catch {
    throw new WorkloadLoadError(`JavaScript workload '${name}' is not UTF-8 text`);
  }
}

/** NATS's default max_payload, for a server that did not say its own. */
const DEFAULT_MAX_PAYLOAD = 1024 * 1024;

/** The workload's code, with what this process (or the parent) kept of an earlier compile of the same source. */
function workloadCode(spec: FunctionSpec, sha256: string, given: JsDeployExtra["code"]): WorkloadCode {
  // A code cache is machine code tied to one source: use the parent's only for that exact source.
  const cached = codeCache.get(sha256) ?? (given?.sha256 === sha256 ? given : undefined);
  return {
    name: spec.name,
    filename: `file:///${encodeURIComponent(spec.namespace)}/${encodeURIComponent(spec.name.replace(/\.m?js$/, ""))}.js`,
    source: decodeSource(spec.name, spec.artifact),
    sha256,
    kind: cached?.kind,
    cachedData: cached?.cachedData,
    compiledBefore: cached !== undefined,
  };
}

function keepCode(code: WorkloadCode, sha256: string): DeployResult {
  if (code.kind) codeCache.set(sha256, code.kind, code.cachedData);
  return { code: code.producedCache && code.kind ? { sha256, kind: code.kind, cachedData: code.cachedData } : undefined };
}

serveRuntimeHost<JsDeployExtra, DeployResult>({
  name: "js-runtime-host",
  async load({ spec, code: given }, ctx) {
    const { sha256, bridge } = ctx;
    const code = workloadCode(spec, sha256, given);
    const cached = code.cachedData !== undefined;
    const pool = await WorkloadPool.create({
      code,
      limits: ctx.limits,
      fresh: spec.freshContextPerTrigger === true,
      concurrency: poolSize(spec.concurrency),
      env: spec.env && typeof spec.env === "object" ? { ...spec.env } : {},
      maxPayload: ctx.nc.info?.max_payload ?? DEFAULT_MAX_PAYLOAD,
      hooks: {
        log: (stream, line) => ctx.events.log(spec.id, stream, line),
        hostCall: (service, method, headers, body, deadlineAt) => hostCallTurn.run(() => bridge.call(service, method, headers, body, deadlineAt)),
        catastrophic: (message) => ctx.fatal(`isolated-vm catastrophic error in workload ${spec.id}: ${message}`),
      },
      log: ctx.log,
      spare,
      warm: ctx.warm,
    });
    spare.refillSoon(isolateMemoryLimitMb(ctx.limits.memoryMb), (message) => ctx.fatal(`isolated-vm catastrophic error in the spare isolate: ${message}`));
    const result = keepCode(code, sha256);
    return { pool, result, details: { kind: code.kind, cached } };
  },
  // A long-running service: its own isolate, start(ctx) once, subscriptions and timers (service-*.ts).
  async loadService({ spec, code: given }, ctx) {
    const { sha256, bridge } = ctx;
    const code = workloadCode(spec, sha256, given);
    const cached = code.cachedData !== undefined;
    const claims = await openClaims(ctx.nc, ctx.settings.nodeId ?? "runtime-host", ctx.log);
    const service = await JsService.start({
      code,
      limits: ctx.limits,
      env: spec.env && typeof spec.env === "object" ? { ...spec.env } : {},
      maxPayload: ctx.nc.info?.max_payload ?? DEFAULT_MAX_PAYLOAD,
      workload: { id: spec.id, name: spec.name, namespace: spec.namespace, node: ctx.settings.nodeId ?? "" },
      nc: ctx.nc,
      subjects: new ServiceSubjects(spec.id, spec.namespace, spec.name, claims),
      hooks: {
        log: (stream, line) => ctx.events.log(spec.id, stream, line),
        hostCall: (service, method, headers, body, deadlineAt) => hostCallTurn.run(() => bridge.call(service, method, headers, body, deadlineAt)),
        catastrophic: (message) => ctx.fatal(`isolated-vm catastrophic error in service ${spec.id}: ${message}`),
      },
      log: ctx.log,
      restart: spec.service?.restart ?? { policy: "never" },
      report: ctx.report,
    });
    const result = keepCode(code, sha256);
    return { service, triggers: service.triggers(), result, details: { kind: code.kind, cached } };
  },
  async close() {
    spare.close();
  },
});
