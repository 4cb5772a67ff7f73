// Host services: key-value, object store and messaging for workloads. Every call is made as a known
// workload, in its namespace, with its buckets; it is bounded in time and size and answers with a
// result or Nex-Error-Code/Nex-Error; a malformed request gets an error and changes nothing.
// Two ways in, the same handlers (invoke):
// - in-process: a runtime host serves its functions' calls itself (runtimes/host/host-bridge.ts);
// - over NATS request/reply on $NEX.HOST.<ns>.<workloadId>.<service>.<method> (wire format:
//   src/protocol/host-services.ts): the node attaches these subjects for containers (which reach nex
//   only over NATS) and `workloads.*` for functions deployed with a grant.

import { headers as natsHeaders, type Msg, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import type { KV } from "@nats-io/kv";
import type { ObjectStore } from "@nats-io/obj";
import type { Logger } from "pino";
import { HOST_CALL_TIMEOUT_MS, HOST_PREFIX, HostHeaders, hostValueLimit, type HostService } from "../protocol/host-services.js";
import { bucketNameProblem, kvBucketName, objectBucketName } from "../protocol/buckets.js";
import { createKv, createObjectStore } from "../util/replicated-buckets.js";
import { HostError } from "./errors.js";
import { kvMethods } from "./kv.js";
import { messagingMethods } from "./messaging.js";
import { objectStoreMethods } from "./object-store.js";

export interface HostServicesOptions {
  /** Size limit of each KV bucket created on first use, bytes. */
  kvMaxBytes: number;
  /** Size limit of each object store created on first use, bytes. */
  objectMaxBytes: number;
}

export const DEFAULT_HOST_SERVICES_OPTIONS: HostServicesOptions = {
  kvMaxBytes: 64 * 1024 * 1024,
  objectMaxBytes: 1024 * 1024 * 1024,
};

export interface WorkloadRef {
  id: string;
  name: string;
  namespace: string;
}

/** What a method handler gets: the call, the workload, and lazy access to its storage. */
export interface HostCallContext {
  readonly workload: WorkloadRef;
  readonly body: Uint8Array;
  readonly options: HostServicesOptions;
  readonly nc: NatsConnection;
  header(name: string): string | undefined;
  required(name: string): string;
  kv(): Promise<KV>;
  objects(): Promise<ObjectStore>;
  /** The call's time budget in ms (Nex-Timeout-Ms, capped). */
  timeoutMs(): number;
}

export interface HostResult {
  body?: Uint8Array | string;
  headers?: Record<string, string>;
}

export type HostMethod = (ctx: HostCallContext) => Promise<HostResult>;

export interface HostAnswer {
  body: Uint8Array | string;
  headers: Record<string, string>;
}

const SERVICES: Record<string, Record<string, HostMethod>> = {
  kv: kvMethods,
  objectStore: objectStoreMethods,
  messaging: messagingMethods,
};

/**
 * Named buckets (kv.bucket(name), objectStore.bucket(name)) one namespace may use through one process's
 * host services, of each kind. Each is a JetStream stream with its own size limit, so without a count a
 * workload could make streams until the broker's disk is full; and each stays open here.
 */
export const MAX_BUCKETS_PER_NAMESPACE = 64;

export class HostServices {
  private readonly subs = new Map<string, Subscription>();
  private readonly kvs = new Map<string, Promise<KV>>();
  private readonly stores = new Map<string, Promise<ObjectStore>>();
  /** Bucket names opened, by kind and namespace ("kv ns", "objects ns"), for MAX_BUCKETS_PER_NAMESPACE. */
  private readonly bucketsOf = new Map<string, Set<string>>();

  constructor(
    private readonly nc: NatsConnection,
    private readonly log: Logger,
    private readonly options: HostServicesOptions = DEFAULT_HOST_SERVICES_OPTIONS,
    /** Services only this server has (the node's `workloads`, which needs its key and its records). */
    private readonly extra: Record<string, Record<string, HostMethod>> = {},
  ) {}

  /** Serves the workload's host-service subjects on the bus (all, or one service's) until detach(). */
  attach(workload: WorkloadRef, only?: HostService): void {
    const subject = `${HOST_PREFIX}.${workload.namespace}.${workload.id}.${only ? `${only}.` : ""}>`;
    const sub = this.nc.subscribe(subject, {
      callback: (err, msg) => {
        if (!err) void this.handle(workload, msg);
      },
    });
    this.subs.set(workload.id, sub);
  }

  detach(workloadId: string): void {
    this.subs.get(workloadId)?.unsubscribe();
    this.subs.delete(workloadId);
  }

  private async handle(workload: WorkloadRef, msg: Msg): Promise<void> {
    const [, , , , service, method] = msg.subject.split(".");
    const answer = await this.invoke(workload, service, method, (name) => msg.headers?.get(name) || undefined, msg.data);
    if (!msg.reply) return;
    const h = natsHeaders();
    for (const [k, v] of Object.entries(answer.headers)) h.set(k, v);
    msg.respond(answer.body, Object.keys(answer.headers).length > 0 ? { headers: h } : undefined);
  }

  /**
   * One call, as the bus subject would carry it; never throws (failures come back as Nex-Error-Code).
   * The JavaScript runtime host calls this in-process for its own workloads, saving two broker hops.
   */
  async invoke(workload: WorkloadRef, service: string, method: string, header: (name: string) => string | undefined, body: Uint8Array): Promise<HostAnswer> {
    try {
      const table = Object.prototype.hasOwnProperty.call(SERVICES, service) ? SERVICES[service] : Object.prototype.hasOwnProperty.call(this.extra, service) ? this.extra[service] : undefined;
      const handler = table && Object.prototype.hasOwnProperty.call(table, method) ? table[method] : undefined;
      if (!handler) throw new HostError("bad_request", `unknown host service method ${service}.${method}`);
      const limit = this.maxValueBytes();
      if (body.length > limit) throw new HostError("too_large", `value of ${body.length} bytes is over the ${limit}-byte limit`);
      const result = await handler(this.context(workload, header, body));
      return { body: result.body ?? new Uint8Array(0), headers: result.headers ?? {} };
    } catch (err) {
      const error = err instanceof HostError ? err : new HostError("internal", err instanceof Error ? err.message : String(err));
      if (!(err instanceof HostError)) this.log.warn({ err, workload_id: workload.id, namespace: workload.namespace, workload: workload.name, service, method }, "host service call failed");
      else if (error.code === "unavailable") this.log.warn({ workload_id: workload.id, namespace: workload.namespace, workload: workload.name, service, method, error: error.message }, "host service call failed: JetStream unavailable");
      return { body: error.message, headers: { [HostHeaders.errorCode]: error.code, [HostHeaders.error]: error.message.slice(0, 512).replace(/[\r\n]/g, " ") } };
    }
  }

  /** The one value limit (protocol/host-services.ts), within what this connection's server carries. */
  private maxValueBytes(): number {
    return hostValueLimit(this.nc.info?.max_payload);
  }

  private context(workload: WorkloadRef, header: (name: string) => string | undefined, body: Uint8Array): HostCallContext {
    const bucket = (): string => {
      const name = header(HostHeaders.bucket) ?? workload.name;
      const problem = bucketNameProblem(name);
      if (problem) throw new HostError("bad_request", problem);
      return name;
    };
    return {
      workload,
      body,
      options: this.options,
      nc: this.nc,
      header,
      required: (name) => {
        const value = header(name);
        if (value === undefined) throw new HostError("bad_request", `header ${name} is required`);
        return value;
      },
      kv: () => this.openKv(kvBucketName(workload.namespace, this.counted("kv", workload.namespace, bucket()))),
      objects: () => this.openObjects(objectBucketName(workload.namespace, this.counted("objects", workload.namespace, bucket()))),
      timeoutMs: () => {
        const asked = Number(header(HostHeaders.timeoutMs) ?? HOST_CALL_TIMEOUT_MS);
        if (!Number.isFinite(asked) || asked <= 0) throw new HostError("bad_request", `${HostHeaders.timeoutMs} must be a positive number`);
        return Math.min(asked, HOST_CALL_TIMEOUT_MS);
      },
    };
  }

  /** The bucket name, once the namespace may use it: one of the first MAX_BUCKETS_PER_NAMESPACE it named. */
  private counted(kind: "kv" | "objects", namespace: string, name: string): string {
    const key = `${kind} ${namespace}`;
    let names = this.bucketsOf.get(key);
    if (!names) this.bucketsOf.set(key, (names = new Set()));
    if (names.has(name)) return name;
    if (names.size >= MAX_BUCKETS_PER_NAMESPACE) {
      const what = kind === "kv" ? "key-value buckets" : "object stores";
      throw new HostError("forbidden", `namespace ${namespace} uses ${MAX_BUCKETS_PER_NAMESPACE} ${what} already, the most it may`);
    }
    names.add(name);
    return name;
  }

  /** Buckets are created on first use with the configured size limit, and kept open. */
  private openKv(name: string): Promise<KV> {
    let kv = this.kvs.get(name);
    if (!kv) {
      kv = createKv(this.nc, name, { max_bytes: this.options.kvMaxBytes, maxValueSize: this.maxValueBytes() });
      kv.catch(() => this.kvs.delete(name));
      this.kvs.set(name, kv);
    }
    return kv;
  }

  private openObjects(name: string): Promise<ObjectStore> {
    let store = this.stores.get(name);
    if (!store) {
      store = createObjectStore(this.nc, name, { max_bytes: this.options.objectMaxBytes });
      store.catch(() => this.stores.delete(name));
      this.stores.set(name, store);
    }
    return store;
  }

  close(): void {
    for (const sub of this.subs.values()) sub.unsubscribe();
    this.subs.clear();
  }
}
