// The oci runtime: long-running service containers on a Docker-API engine (dockerode). The node deploys,
// undeploys and asks for stats; the runtime reports log lines and the container's exits and restarts.
//
// Deploy: engine answers → image resolved (local, else pulled) → a container left for this workload by a
// previous run of the node is adopted when it is running with the same spec, else removed → create,
// attach logs, start. A deploy that fails leaves no container behind.
//
// Every container carries labels naming its node and workload, so after a node restart the containers
// nobody redeploys are found and removed (removeUnclaimed).

import type Docker from "dockerode";
import pino, { type Logger } from "pino";
import type { ContainerSpec, ContainerStats, NatsAuth, Runtime, RuntimeObserver, WorkloadSpec } from "../types.js";
import { type ContainerContext, createOptions, DEFAULT_CONTAINER_USER, Labels } from "./container-config.js";
import { ContainerWorkload } from "./container-workload.js";
import { settleWithin } from "../../util/settle-within.js";
import { checkEngine, type Engine, engineMessage, openEngine, resolveImage, statusCode } from "./engine.js";

export interface OciRuntimeOptions {
  /** Labels containers with it, so a restarted node finds its own. */
  nodeId: string;
  /** The broker URL(s) the node uses, comma-separated; containers get them in NEX_NATS_URL. */
  natsUrl: string;
  natsAuth?: NatsAuth;
  /** unix:///path, a socket path or tcp://host:port; default $DOCKER_HOST or /var/run/docker.sock. */
  dockerHost?: string;
  observer: RuntimeObserver;
  log?: Logger;
  /** uid[:gid] containers run as (default 65534:65534, nobody). */
  containerUser?: string;
  /** Seconds between SIGTERM and SIGKILL on undeploy (default 10, as `docker stop`). */
  stopGraceS?: number;
  /** How long a missing image may take to pull (default 5 min). */
  pullTimeoutMs?: number;
}

const USAGE_TIMEOUT_MS = 500;
/** How long an engine check answers auctions before the engine is asked again. */
const ENGINE_CHECK_TTL_MS = 2_000;

export class OciRuntime implements Runtime {
  readonly type = "oci" as const;
  private readonly engine: Engine;
  private readonly log: Logger;
  private readonly workloads = new Map<string, ContainerWorkload>();
  /** Containers of this node from a previous run, by workload id, until deployed again or removed. */
  private leftovers: Promise<Map<string, Docker.ContainerInfo>> | undefined;
  private closed = false;
  private engineCheck?: { at: number; problem: Promise<string | undefined> };

  constructor(private readonly o: OciRuntimeOptions) {
    this.engine = openEngine(o.dockerHost);
    this.log = (o.log ?? pino({ level: "silent" })).child({ runtime: "oci" });
  }

  /** Whether the engine answers, asked at most every ENGINE_CHECK_TTL_MS (auctions come in bursts). */
  unavailable(): Promise<string | undefined> {
    if (this.closed) return Promise.resolve("the oci runtime is shut down");
    const now = Date.now();
    if (!this.engineCheck || now - this.engineCheck.at > ENGINE_CHECK_TTL_MS) {
      this.engineCheck = { at: now, problem: checkEngine(this.engine).then(() => undefined, (err: Error) => err.message) };
    }
    return this.engineCheck.problem;
  }

  async deploy(spec: WorkloadSpec): Promise<void> {
    if (this.closed) throw new Error("the oci runtime is shut down");
    if (spec.type !== "oci") throw new Error(`the oci runtime cannot run a ${spec.type} workload`);
    const oci: ContainerSpec = spec;
    const image = spec.image;
    if (this.workloads.has(spec.id)) throw new Error(`workload ${spec.id} is already running`);
    // The auction before a deploy has usually asked already: that answer serves.
    const problem = await this.unavailable();
    if (problem) throw new Error(problem);
    const imageId = await resolveImage(this.engine, image, this.o.pullTimeoutMs ?? 300_000);
    const context: ContainerContext = {
      nodeId: this.o.nodeId,
      natsUrl: this.o.natsUrl,
      natsAuth: this.o.natsAuth,
      imageId,
      user: this.o.containerUser ?? DEFAULT_CONTAINER_USER,
    };
    const options = createOptions(oci, context);
    const log = this.log.child({ workload_id: spec.id, namespace: spec.namespace, workload: spec.name });
    const workloadOptions = { docker: this.engine.docker, observer: this.o.observer, log, stopGraceS: this.o.stopGraceS ?? 10 };

    const leftovers = await this.loadLeftovers();
    const previous = leftovers.get(spec.id);
    leftovers.delete(spec.id);
    if (previous?.State === "running" && previous.Labels[Labels.spec] === options.Labels?.[Labels.spec]) {
      const adopted = new ContainerWorkload(workloadOptions, oci, this.engine.docker.getContainer(previous.Id));
      await adopted.adopt();
      this.workloads.set(spec.id, adopted);
      log.info({ container_id: previous.Id }, "adopted the running container of a previous node run");
      return;
    }
    if (previous) await this.remove(previous.Id);

    let container: Docker.Container;
    try {
      container = await this.engine.docker.createContainer(options);
    } catch (err) {
      throw new Error(`cannot create a container from ${spec.image}: ${engineMessage(err)}`);
    }
    const workload = new ContainerWorkload(workloadOptions, oci, container);
    try {
      await workload.start();
    } catch (err) {
      await workload.stop().catch((e) => log.warn({ err: engineMessage(e) }, "could not remove the container of a failed deploy"));
      throw new Error(`cannot start a container from ${spec.image}: ${engineMessage(err)}`);
    }
    this.workloads.set(spec.id, workload);
    log.info({ container_id: container.id, image: spec.image }, "container started");
  }

  async undeploy(workloadId: string): Promise<void> {
    const workload = this.workloads.get(workloadId);
    if (!workload) return;
    this.workloads.delete(workloadId);
    await workload.stop();
  }

  async stats(workloadId: string): Promise<ContainerStats | undefined> {
    const workload = this.workloads.get(workloadId);
    if (!workload) return undefined;
    // A slow engine leaves the usage out rather than stalling a listing.
    const usage = await settleWithin(workload.usage(), USAGE_TIMEOUT_MS).catch(() => undefined);
    const container = { ...workload.info(), ...usage };
    return { container };
  }

  async removeUnclaimed(): Promise<void> {
    let leftovers: Map<string, Docker.ContainerInfo>;
    try {
      leftovers = await this.loadLeftovers();
    } catch (err) {
      // Info, not a warning: a node without Docker is normal when it runs no oci workloads.
      this.log.info({ err: err instanceof Error ? err.message : err }, "cannot look for containers of a previous run");
      return;
    }
    const unclaimed = [...leftovers.values()];
    leftovers.clear();
    await Promise.all(unclaimed.map((c) => this.remove(c.Id)));
    if (unclaimed.length > 0) this.log.info({ containers: unclaimed.length }, "removed containers no workload claims");
  }

  /** Stops and removes every container (lame duck, node stop). */
  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.workloads.values()];
    this.workloads.clear();
    await Promise.allSettled(all.map((w) => w.stop()));
  }

  /** Lists this node's labelled containers once; a failed listing is tried again next time. */
  private loadLeftovers(): Promise<Map<string, Docker.ContainerInfo>> {
    this.leftovers ??= this.engine.docker
      .listContainers({ all: true, filters: { label: [`${Labels.node}=${this.o.nodeId}`] } })
      .then((list) => new Map(list.map((c) => [c.Labels[Labels.workload], c])))
      .catch((err: unknown) => {
        this.leftovers = undefined;
        throw new Error(`Docker engine not reachable at ${this.engine.address}: ${engineMessage(err)}`);
      });
    return this.leftovers;
  }

  private async remove(containerId: string): Promise<void> {
    try {
      await this.engine.docker.getContainer(containerId).remove({ force: true, v: true });
    } catch (err) {
      if (statusCode(err) !== 404) this.log.warn({ container_id: containerId, err: engineMessage(err) }, "cannot remove a leftover container");
    }
  }
}
