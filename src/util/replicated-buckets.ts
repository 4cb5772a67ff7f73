// How many copies JetStream keeps of each bucket nex creates (its own NEX_* buckets and the workloads'
// host-service buckets), so that losing one NATS server loses no acknowledged write and stops nothing.
//
// The count is set once per connection (useReplicas): a number given by the operator (--js-replicas), or
// "auto", which is min(3, JetStream servers in the cluster). Auto needs no cluster survey: a single
// server (no `cluster` in its INFO) gets 1, and on a cluster a create asks for 3 and steps down while the
// server answers that it has too few peers for that many (nats-server: 10023 insufficient resources,
// 10074 replicas not supported); the count that worked is kept for the connection's next buckets.
// A bucket that exists with fewer replicas is scaled up when it is opened, and the log says so.

import type { NatsConnection } from "@nats-io/transport-node";
import { jetstreamManager, type JetStreamManager, JetStreamApiError, type StreamInfo } from "@nats-io/jetstream";
import { Kvm, type KV, type KvOptions } from "@nats-io/kv";
import { Objm, type ObjectStore, type ObjectStoreOptions } from "@nats-io/obj";

const AUTO_MAX_REPLICAS = 3;
/** nats-server's answers to "more replicas than this cluster can place". */
const TOO_FEW_PEERS = new Set([10023, 10074]);

interface ReplicaPolicy {
  /** What to ask for next: the operator's count, or auto's current guess. */
  replicas: number;
  auto: boolean;
  /** Told when an existing bucket is scaled up (or cannot be). */
  log?: (level: "info" | "warn", fields: object, message: string) => void;
}

const policies = new WeakMap<NatsConnection, ReplicaPolicy>();

/** Sets the replica count of the buckets created over `nc` (undefined: auto). */
export function useReplicas(nc: NatsConnection, replicas: number | undefined, log?: ReplicaPolicy["log"]): void {
  policies.set(nc, replicas === undefined ? { replicas: autoStart(nc), auto: true, log } : { replicas, auto: false, log });
}

/** The replica count buckets over `nc` get now. */
export function bucketReplicas(nc: NatsConnection): number {
  return policyOf(nc).replicas;
}

function autoStart(nc: NatsConnection): number {
  // A server outside a cluster cannot place a second copy anywhere.
  return nc.info?.cluster ? AUTO_MAX_REPLICAS : 1;
}

function policyOf(nc: NatsConnection): ReplicaPolicy {
  let policy = policies.get(nc);
  if (!policy) {
    policy = { replicas: autoStart(nc), auto: true };
    policies.set(nc, policy);
  }
  return policy;
}

/** Kvm.create with this connection's replica count; an existing bucket with fewer is scaled up. */
export function createKv(nc: NatsConnection, name: string, opts: Partial<KvOptions> = {}): Promise<KV> {
  return withReplicas(nc, `KV_${name}`, (replicas) => new Kvm(nc).create(name, { ...opts, replicas }));
}

/** Objm.create with this connection's replica count; an existing store with fewer is scaled up. */
export function createObjectStore(nc: NatsConnection, name: string, opts: Partial<ObjectStoreOptions> = {}): Promise<ObjectStore> {
  return withReplicas(nc, `OBJ_${name}`, (replicas) => new Objm(nc).create(name, { ...opts, replicas }));
}

async function withReplicas<T>(nc: NatsConnection, stream: string, create: (replicas: number) => Promise<T>): Promise<T> {
  const policy = policyOf(nc);
  // checkAPI: false: the stream info that follows asks JetStream anyway; no $JS.API.INFO round trip first.
  if (policy.replicas > 1) await scaleUp(await jetstreamManager(nc, { checkAPI: false }), stream, policy);
  for (;;) {
    try {
      return await create(policy.replicas);
    } catch (err) {
      if (!(policy.auto && policy.replicas > 1 && err instanceof JetStreamApiError && TOO_FEW_PEERS.has(err.code))) throw err;
      policy.replicas -= 1;
    }
  }
}

/** An existing stream with fewer replicas than the policy's gets more; a missing one is left to create. */
async function scaleUp(jsm: JetStreamManager, stream: string, policy: ReplicaPolicy): Promise<void> {
  let info: StreamInfo;
  try {
    info = await jsm.streams.info(stream);
  } catch (err) {
    if (err instanceof JetStreamApiError && err.code === 10059) return; // stream not found: create makes it
    throw err;
  }
  const had = info.config.num_replicas;
  if (had >= policy.replicas) return;
  try {
    await jsm.streams.update(stream, { ...info.config, num_replicas: policy.replicas });
    policy.log?.("info", { stream, from: had, to: policy.replicas }, `scaled ${stream} from ${had} to ${policy.replicas} replicas`);
  } catch (err) {
    // Too few servers now (one is down): the bucket works as it is and is scaled at the next open.
    policy.log?.("warn", { stream, replicas: had, wanted: policy.replicas, err: err instanceof Error ? err.message : String(err) }, `could not scale ${stream} up`);
  }
}
