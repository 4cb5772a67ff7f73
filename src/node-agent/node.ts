// The node agent: its identity, the control API, and the lifecycle of the workloads it runs.
//
// The deploy path: DEPLOY request → validate (schema, signature, issuer, replay window, lame duck, type)
// → fetch artifact and check SHA-256 → unseal env → runtime.deploy (which subscribes the triggers) →
// record in the cluster-wide registry (workload-registry.ts) → UNDEPLOY.<id> endpoint → events. The node
// is not on the trigger path: runtimes subscribe to trigger subjects themselves. The node runs what the
// registry names it owner of: at start (a restart), when failover (failover.ts) gives it a lost node's
// workload, and it stops a copy the registry gave to another node meanwhile.

import { randomBytes } from "node:crypto";
import os from "node:os";
import type { Msg, NatsConnection, Subscription } from "@nats-io/transport-node";
import type { Logger } from "pino";
import { ARTIFACT_BUCKET, type AuctionBid, AuctionRequestSchema, ControlSubjects, type DeployResponse, type InfoResponse, LameDuckRequestSchema, NAMESPACE_PATTERN, type PingResponse, UndeployRequestSchema, type WorkloadSummary } from "../protocol/control.js";
import { type DeployRequest, DeployRequestSchema, servedSubjects } from "../protocol/deploy-request.js";
import { ISSUER_HEADER, requestAgeProblem, SIGNATURE_HEADER, signNodeXkey, verifyRequest } from "../protocol/signing.js";
import { createObjectStore } from "../util/replicated-buckets.js";
import { type PlacedWorkload, type RegistryChange, type SignedDeploy, WorkloadRegistry } from "./workload-registry.js";
import { NodeHeartbeats } from "./node-heartbeats.js";
import { retryWhileTransient } from "../host-services/jetstream-retry.js";
import { DEFAULT_FAILOVER_GRACE_MS, Failover, placedSubject } from "./failover.js";
import type { Runtime, RuntimeObserver, WorkloadEvent, WorkloadSpec, WorkloadType } from "../runtimes/types.js";
import { HostServices } from "../host-services/server.js";
import type { NodeConfig } from "./config.js";
import { ControlApi, NO_REPLY } from "./control-api.js";
import { ControlError, parseRequestBody } from "./errors.js";
import { EventPublisher } from "./events.js";
import { ReplayGuard } from "./replay-guard.js";
import { TriggerClaims } from "../cluster/trigger-claims.js";
import { HttpRoutes } from "./http-routes.js";
import { type ChildLink, ChildWorkloads, type LineageHost, workloadsHostMethods } from "./child-workloads.js";
import { ChildSubjects, type GrantBody } from "../protocol/grants.js";
import { workloadLimits, workloadSpec } from "./workload-spec.js";
import type { WorkloadCredentials } from "./workload-credentials.js";
import type { NodeIdentity } from "./identity.js";
import { settleWithin } from "../util/settle-within.js";
import { deployWait } from "./deploy-waits.js";
import { quantileMs } from "../util/histogram.js";

/** Where a deploy comes from: a signed request, a parent (a child), or the registry (restored or adopted). */
interface WorkloadOrigin {
  signed?: SignedDeploy;
  parent?: ChildLink;
  /** Already in the registry, naming this node: not recorded again. */
  placed?: boolean;
}

interface Workload {
  id: string;
  request: DeployRequest;
  namespace: string;
  issuer: string;
  state: WorkloadSummary["state"];
  startedAt: string;
  unsubscribeUndeploy: () => void;
  /** The deploy grant it was deployed with: it may deploy children (child-workloads.ts). */
  grant?: GrantBody;
  /** It is a child: its parent, grant and slot. */
  parent?: ChildLink;
  /** Times its runtime host died and redeployed it. */
  restarts: number;
}

export interface NodeAgentOptions {
  nc: NatsConnection;
  identity: NodeIdentity;
  config: NodeConfig;
  runtimes: Map<WorkloadType, Runtime>;
  brokerUrl: string;
  /** Mints a broker user per container workload (bundled broker with users); without it containers get the node's credentials. */
  credentials?: WorkloadCredentials;
  version: string;
  log: Logger;
  /** Called when lame duck mode has stopped every workload: the process should exit. */
  onLameDuckDone?: () => void;
}

const decoder = new TextDecoder();

export class NodeAgent implements RuntimeObserver {
  readonly id: string;
  private readonly workloads = new Map<string, Workload>();
  /** Namespaces of workloads being deployed: a container may log before its deploy returns. */
  private readonly deploying = new Map<string, string>();
  /** Events a workload reported before its deploy returned (a service whose first start failed): told once it is recorded. */
  private readonly earlyEvents = new Map<string, WorkloadEvent[]>();
  /** Workloads the registry placed here that are being checked and started. */
  private readonly placing = new Set<string>();
  /** Workloads being stopped (until they are out of the registry, they must not be started again). */
  private readonly stopping = new Set<string>();
  private readonly events: EventPublisher;
  private readonly api: ControlApi;
  private readonly hostServices: HostServices;
  private readonly started = Date.now();
  private readonly xkeySignature: string;
  private registry: WorkloadRegistry | null = null;
  private readonly heartbeats: NodeHeartbeats;
  private failover: Failover | null = null;
  private placedCheck?: NodeJS.Timeout;
  private placedChecks = 0;
  private placedSub?: Subscription;
  private replayGuard: ReplayGuard | null = null;
  private triggerClaims: TriggerClaims | null = null;
  private routes: HttpRoutes | null = null;
  private children: ChildWorkloads | null = null;
  private lameDuck = false;
  private stopped = false;

  constructor(private readonly o: NodeAgentOptions) {
    this.id = o.identity.id;
    this.events = new EventPublisher(o.nc, this.id);
    this.xkeySignature = signNodeXkey(o.identity.signer, o.identity.xkey);
    this.heartbeats = new NodeHeartbeats(o.nc, o.identity, () => this.lameDuck, o.log.child({ component: "heartbeats" }));
    this.hostServices = new HostServices(o.nc, o.log.child({ component: "host-services" }), undefined, { workloads: workloadsHostMethods(() => this.children) });
    this.api = new ControlApi(
      o.nc,
      { name: "nex-node", id: this.id, version: o.version, description: "Nex node control API", metadata: { node_name: o.config.name } },
      (err, subject) => o.log.error({ err, subject }, "control request failed"),
    );
  }

  /** Opens the registry, brings back the workloads it says this node runs, then starts serving the control API. */
  async start(): Promise<void> {
    const { log, config } = this.o;
    if (config.allow_any_issuer) log.warn("allow_any_issuer is set: any validly signed request may deploy, undeploy and lame-duck this node");
    // Each step below waits on JetStream, and on a cluster that is electing leaders (a server just lost)
    // each may retry for a while: the operator is told what the node waits on instead of seeing nothing.
    const startedAt = Date.now();
    let step = "opening the workload registry";
    const slow = setInterval(() => log.warn({ step, waited_s: Math.round((Date.now() - startedAt) / 1000) }, "node start-up is still waiting on JetStream"), START_SLOW_WARN_MS);
    try {
      try {
        this.registry = await WorkloadRegistry.open(this.o.nc, log.child({ component: "registry" }), (change) => void this.reconcile(change));
      } catch (err) {
        throw new Error(`the NATS server must have JetStream enabled (node state is kept in a KV bucket): ${err instanceof Error ? err.message : err}`);
      }
      // The artifact store is made (or scaled up) here too, so a cluster's copy count holds before the first upload.
      step = "opening the artifact store";
      await retryWhileTransient(() => createObjectStore(this.o.nc, ARTIFACT_BUCKET));
      step = "opening the replay guard";
      this.replayGuard = await retryWhileTransient(() => ReplayGuard.open(this.o.nc, this.id));
      step = "opening the trigger claims";
      this.triggerClaims = await TriggerClaims.open(this.o.nc, this.id, log);
      step = "opening the HTTP routes";
      this.routes = await HttpRoutes.open(this.o.nc, this.id, log);
      step = "opening the child records";
      this.children = await ChildWorkloads.open(this.lineageHost());
      step = "restoring this node's workloads";
      await this.restoreOwned();
    } finally {
      clearInterval(slow);
    }
    this.heartbeats.start();
    this.failover = new Failover(
      {
        nc: this.o.nc,
        nodeId: this.id,
        config,
        log: log.child({ component: "failover" }),
        registry: this.registry,
        heartbeats: this.heartbeats,
        nodeTrusted: (n) => this.lineageHost().nodeTrusted(n),
        moved: (entry, to, reason) => this.events.emit(entry.namespace, "workload_moved", { workload_id: entry.id, name: entry.request.name, from: entry.owner, to, reason }),
      },
      config.failover_grace_ms ?? DEFAULT_FAILOVER_GRACE_MS,
    );
    this.failover.start();
    this.placedCheck = setInterval(() => void this.runMissing(), RETRY_PLACED_MS);
    this.placedCheck.unref();
    this.listenForPlacements();
    await Promise.all([...this.o.runtimes.values()].map((r) => r.removeUnclaimed?.()));
    const api = this.api;
    const id = this.id;
    api.endpoint("PING", "$NEX.SVC.*.control.PING", async () => this.ping());
    api.endpoint("INFO", `$NEX.SVC.*.control.INFO.${id}`, async (_m, t) => this.info(t[2]));
    api.endpoint("AUCTION", "$NEX.SVC.*.control.AUCTION", async (m) => this.auction(m));
    api.endpoint("DEPLOY", `$NEX.SVC.*.control.DEPLOY.${id}`, async (m, t) => this.deployRequest(m, t[2]));
    api.endpoint("WORKLOADS", "$NEX.SVC.*.control.WORKLOADS", async (_m, t) => ({ node_id: id, workloads: await this.summaries(t[2]) }));
    api.endpoint("LAMEDUCK", ControlSubjects.lameDuck(id), async (m) => this.lameDuckRequest(m));
    api.endpoint("DEPLOY_CHILD", ChildSubjects.deploy("*", id), async (m, t) => this.lineage().childDeployRequest(m, t[2]));
    api.endpoint("UNDEPLOY_CHILD", ChildSubjects.undeploy("*", id), async (m, t) => this.lineage().childUndeployRequest(m, t[2]));
    await this.o.nc.flush();
    this.events.emit("system", "node_started", { node_id: id, name: config.name, version: this.o.version, xkey: this.o.identity.xkey, tags: config.tags });
    log.info({ node_id: id, xkey: this.o.identity.xkey, workloads: this.workloads.size }, "node started");
  }

  /** Every HTTP route of the bus (for the gateway); null before start. */
  get httpRoutes(): HttpRoutes | null {
    return this.routes;
  }

  /** Publishes one line of the HTTP access feed ($NEX.FEED.<ns>.http). */
  httpAccess(namespace: string, entry: object): void {
    this.events.httpAccess(namespace, entry);
  }

  // ---- queries ---------------------------------------------------------------------------------------

  ping(): PingResponse {
    const { config, identity } = this.o;
    return {
      node_id: this.id,
      name: config.name,
      version: this.o.version,
      uptime_s: Math.round((Date.now() - this.started) / 1000),
      tags: config.tags,
      xkey: identity.xkey,
      xkey_sig: this.xkeySignature,
      workload_types: [...this.o.runtimes.keys()],
      workload_count: this.workloads.size,
      lame_duck: this.lameDuck,
    };
  }

  async info(namespace: string): Promise<InfoResponse> {
    const memory = process.memoryUsage();
    return {
      ...this.ping(),
      broker_url: this.o.brokerUrl,
      memory: { rss: memory.rss, heap_used: memory.heapUsed, total: os.totalmem(), free: os.freemem() },
      workloads: await this.summaries(namespace),
    };
  }

  /** Every workload of every namespace, with what its runtime reports (the node's /metrics). */
  allSummaries(): Promise<WorkloadSummary[]> {
    return this.summaries();
  }

  /** With what each runtime reports: trigger counts, or an oci workload's container and its usage. */
  private async summaries(namespace?: string): Promise<WorkloadSummary[]> {
    const list = [...this.workloads.values()].filter((w) => namespace === undefined || w.namespace === namespace);
    return Promise.all(
      list.map(async (w) => {
        const summary = this.summary(w);
        const runtime = this.o.runtimes.get(w.request.type);
        const stats = runtime ? await settleWithin(runtime.stats(w.id), STATS_TIMEOUT_MS).catch(() => undefined) : undefined;
        if (!stats) return summary;
        if ("container" in stats) return { ...summary, container: stats.container, restarts: w.restarts + stats.container.restarts };
        const ms = (v: number): number => Math.round(v * 1000) / 1000;
        const d = stats.durations;
        const p50 = d && quantileMs(d, 0.5);
        const p99 = d && quantileMs(d, 0.99);
        return {
          ...summary,
          triggers: stats.triggers,
          failures: stats.failures,
          mean_ms: ms(stats.meanMs),
          last_ms: ms(stats.lastMs),
          memory_bytes: stats.memoryBytes,
          ...(d ? { durations: { le_ms: [...d.boundsMs], counts: d.counts, sum_ms: ms(d.sumMs) } } : {}),
          ...(p50 !== undefined ? { p50_ms: ms(p50) } : {}),
          ...(p99 !== undefined ? { p99_ms: ms(p99) } : {}),
          ...(stats.failureCodes ? { failures_by_code: stats.failureCodes } : {}),
          ...(stats.hostCalls ? { host_calls: stats.hostCalls } : {}),
          restarts: w.restarts + (stats.service?.restarts ?? 0),
          ...(stats.service ? { service: stats.service } : {}),
        };
      }),
    );
  }

  private summary(w: Workload): WorkloadSummary {
    return {
      id: w.id,
      name: w.request.name,
      namespace: w.namespace,
      type: w.request.type,
      node_id: this.id,
      state: w.state,
      trigger_subjects: w.request.trigger_subjects,
      issuer: w.issuer,
      started_at: w.startedAt,
      sha256: w.request.artifact.sha256,
      ...(w.parent ? { parent_id: w.parent.parent_id } : {}),
      restarts: w.restarts,
    };
  }

  /** Bids (answers) only when this node can take the workload. */
  private async auction(msg: Msg): Promise<unknown> {
    if (this.lameDuck) return NO_REPLY;
    const request = parseRequestBody(AuctionRequestSchema, msg.data);
    if (!this.o.runtimes.has(request.type)) return NO_REPLY;
    const tags = this.o.config.tags;
    for (const [k, v] of Object.entries(request.tags)) if (tags[k] !== v) return NO_REPLY;
    if (request.memory_mb !== undefined && request.memory_mb > this.o.config.limits.max_memory_mb) return NO_REPLY;
    if (this.workloads.size >= this.o.config.limits.max_workloads) return NO_REPLY;
    // A node whose runtime is down still bids, saying why, so a client with no better bid can tell the user.
    const unavailable = await this.o.runtimes.get(request.type)?.unavailable?.();
    const bid: AuctionBid = { ...this.ping(), ...(unavailable ? { unavailable } : {}) };
    return bid;
  }

  // ---- deploy ----------------------------------------------------------------------------------------

  private async deployRequest(msg: Msg, namespace: string): Promise<DeployResponse> {
    const request = parseRequestBody(DeployRequestSchema, msg.data);
    const issuer = await this.authorize(msg, request.requested_at);
    if (this.lameDuck) throw new ControlError(503, "node is in lame duck mode and takes no new workloads");
    // Kept as signed, so a node that restores or adopts the workload can check the issuer's signature again.
    const signed: SignedDeploy = { subject: msg.subject, body: Buffer.from(msg.data).toString("base64"), issuer, signature: msg.headers?.get(SIGNATURE_HEADER) ?? "" };
    const key = request.idempotency_key;
    if (!key) return { workload_id: (await this.deploy(generateId(), namespace, issuer, request, { signed })).id, node_id: this.id, started: true };
    const claim = await this.replays().deployOnce(issuer, namespace, key, generateId());
    if (!claim.fresh) return this.earlierDeploy(claim.workloadId);
    try {
      await this.deploy(claim.workloadId, namespace, issuer, request, { signed });
    } catch (err) {
      await this.replays().release(issuer, namespace, key);
      throw err;
    }
    return { workload_id: claim.workloadId, node_id: this.id, started: true };
  }

  /** The answer to a retried deploy: the workload its idempotency key was first given. */
  private earlierDeploy(id: string): DeployResponse {
    if (this.workloads.has(id)) return { workload_id: id, node_id: this.id, started: true };
    if (this.deploying.has(id)) throw new ControlError(409, `workload ${id} of this idempotency key is still being deployed; ask again shortly`);
    throw new ControlError(409, `workload ${id} of this idempotency key is no longer running`);
  }

  private replays(): ReplayGuard {
    if (!this.replayGuard) throw new ControlError(503, "node is starting");
    return this.replayGuard;
  }

  /** Checks the signature, the issuer allow-list, the replay window and that the request is new; returns the issuer. */
  private async authorize(msg: Msg, requestedAt: string): Promise<string> {
    const signature = msg.headers?.get(SIGNATURE_HEADER);
    const issuer = this.allowedSigner(msg.subject, msg.data, msg.headers?.get(ISSUER_HEADER), signature);
    const age = requestAgeProblem(requestedAt);
    if (age) throw new ControlError(401, age);
    await this.replays().admit(signature as string);
    return issuer;
  }

  /** The issuer whose valid signature the message carries, if this node allows it (401 or 403 otherwise). */
  private allowedSigner(subject: string, data: Uint8Array, issuer: string | undefined, signature: string | undefined): string {
    const verified = verifyRequest(subject, data, issuer, signature);
    if ("problem" in verified) throw new ControlError(401, verified.problem);
    const { allowed_issuers: allowed, allow_any_issuer: anyIssuer } = this.o.config;
    if (!anyIssuer && !allowed.includes(verified.issuer)) throw new ControlError(403, `issuer ${verified.issuer} is not allowed on this node`);
    return verified.issuer;
  }

  /**
   * The node's logger for lines about one workload: each carries its id, namespace and name (under the
   * keys the runtimes use too), so one filter on workload_id finds all of them.
   */
  private logFor(w: { id: string; namespace: string; request?: { name: string } }): Logger {
    return this.o.log.child({ workload_id: w.id, namespace: w.namespace, workload: w.request?.name });
  }

  /** Hands the spec to its runtime; a refusal is told as a 422 and a workload_failed event. */
  private async runWith(runtime: Runtime, spec: WorkloadSpec, request: DeployRequest, workloadLog: Logger): Promise<void> {
    const waitingFor = deployWait(spec);
    if (waitingFor) this.events.emit(spec.namespace, "workload_preparing", { workload_id: spec.id, name: request.name, node_id: this.id, waiting_for: waitingFor });
    try {
      await runtime.deploy(spec);
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      workloadLog.warn({ err: message }, "deploy refused by the runtime");
      // A runtime's message may quote the artifact (a ReferenceError names an identifier in it). An
      // object-store artifact is the sender's own upload; a file under the artifact directory may not be
      // theirs to read, so its failure is told without the runtime's words (the node's log has them).
      const told = request.artifact.url.startsWith("file://") ? "the artifact file did not load (the node's log says why)" : message;
      this.events.emit(spec.namespace, "workload_failed", { workload_id: spec.id, name: request.name, error: told });
      throw new ControlError(422, `deploy failed: ${told}`);
    }
  }

  /** Starts a workload; while it starts, its id is known (for its logs, and for a retried idempotent deploy). */
  private async deploy(id: string, namespace: string, issuer: string, request: DeployRequest, origin: WorkloadOrigin): Promise<Workload> {
    this.deploying.set(id, namespace);
    try {
      return await this.startWorkload(id, namespace, issuer, request, origin);
    } finally {
      this.deploying.delete(id);
      const early = this.earlyEvents.get(id) ?? [];
      this.earlyEvents.delete(id);
      for (const event of early) this.workloadEvent(id, event);
    }
  }

  private async startWorkload(id: string, namespace: string, issuer: string, request: DeployRequest, origin: WorkloadOrigin): Promise<Workload> {
    const parent = origin.parent;
    const { config } = this.o;
    if (!NAMESPACE_PATTERN.test(namespace)) throw new ControlError(400, `invalid namespace ${namespace}: 1-64 letters, digits or '-'`);
    const runtime = this.o.runtimes.get(request.type);
    if (!runtime) throw new ControlError(400, `workload type ${request.type} is not supported by this node (it runs: ${[...this.o.runtimes.keys()].join(", ")})`);
    if (this.workloads.size >= config.limits.max_workloads) throw new ControlError(503, `node is at its limit of ${config.limits.max_workloads} workloads`);
    const memoryMb = workloadLimits(request, config.limits).memoryMb;
    if (memoryMb > config.limits.max_memory_mb) throw new ControlError(400, `memory_mb ${memoryMb} is over this node's ceiling of ${config.limits.max_memory_mb}`);
    const env = this.unsealEnv(request);
    const workloadLog = this.logFor({ id, namespace, request });
    const spec = await workloadSpec({ id, namespace }, request, { nc: this.o.nc, config, env });
    // A grant is bound to this workload before it runs (refused when bound to another: a captured grant).
    const grant = await this.lineage().bindGrant(id, namespace, issuer, request);
    try {
      // Claimed before its triggers subscribe, so a deploy elsewhere in another namespace sees it at once.
      await this.claimTriggerSubjects(id, namespace, request.trigger_subjects);
      if (request.http) {
        const staticFiles = spec.type === "static" && request.type === "static" ? { static: { manifest: request.artifact.sha256, files: spec.manifest.files } } : {};
        const conflict = await this.routes?.claim(id, { namespace, name: request.name, route: request.http, ...staticFiles });
        if (conflict) throw new ControlError(409, conflict);
      }
      // A container connects itself, as a user of its own (functions run in runtime hosts, on the node's connection).
      if (spec.type === "oci") spec.natsAuth = this.o.credentials?.grant({ id, namespace, name: request.name, triggerSubjects: servedSubjects(request, namespace) });
      // Host services on the bus, for whom they serve, answering before the first trigger can call them:
      // a container reaches every service over NATS; a function is served in its runtime host, and only
      // its `workloads.*` (children, with a grant) needs this node.
      const onBus = spec.type === "oci" ? "all" : request.type !== "static" && request.grant ? "workloads" : undefined;
      if (onBus) {
        this.hostServices.attach({ id, name: request.name, namespace }, onBus === "all" ? undefined : onBus);
        await this.o.nc.flush();
      }
      await this.runWith(runtime, spec, request, workloadLog);
    } catch (err) {
      // Whatever step failed, nothing of the workload stays: its claims, route, user, host services and grant.
      this.hostServices.detach(id);
      this.o.credentials?.revoke(id);
      await this.triggerClaims?.release(id);
      await this.routes?.release(id);
      if (grant) await this.lineage().forgotten({ id, namespace, issuer, request, grant }).catch(() => undefined);
      throw err;
    }
    const sub = this.api.endpoint("UNDEPLOY", ControlSubjects.undeploy(namespace, id), async (m) => this.undeployRequest(m, id));
    const workload: Workload = {
      id,
      request,
      namespace,
      issuer,
      state: "running",
      startedAt: new Date().toISOString(),
      unsubscribeUndeploy: () => sub.unsubscribe(),
      restarts: 0,
      ...(grant ? { grant } : {}),
      ...(parent ? { parent } : {}),
    };
    this.workloads.set(id, workload);
    // A restored or adopted workload is in the registry already, naming this node.
    if (!origin.placed) await this.registry?.record({ id, namespace, issuer, request, owner: this.id, epoch: 0, ...(origin.signed ? { signed: origin.signed } : {}), ...(parent ? { parent } : {}) });
    workloadLog.info({ triggers: request.trigger_subjects }, "workload started");
    this.events.emit(namespace, "workload_deployed", { workload_id: id, name: request.name, type: request.type, node_id: this.id });
    this.events.emit(namespace, "workload_started", { workload_id: id, name: request.name, trigger_subjects: request.trigger_subjects, ...(request.http ? { http: request.http } : {}) });
    return workload;
  }

  /** Claims the trigger subjects, refusing those that overlap what another namespace serves unless the operator allows sharing. */
  private async claimTriggerSubjects(id: string, namespace: string, subjects: string[]): Promise<void> {
    const conflict = await this.triggerClaims?.claim(id, namespace, subjects, !this.o.config.allow_shared_triggers);
    if (!conflict) return;
    throw new ControlError(
      409,
      `trigger subject ${conflict.subject} overlaps ${conflict.other}, which namespace ${conflict.namespace} already serves (an operator may allow sharing with --allow-shared-triggers)`,
    );
  }

  private unsealEnv(request: DeployRequest): Record<string, string> {
    if (!request.env_sealed || !request.sender_xkey) return {};
    let opened: Uint8Array | null = null;
    try {
      opened = this.o.identity.curve.open(Buffer.from(request.env_sealed, "base64"), request.sender_xkey);
    } catch {
      opened = null;
    }
    if (!opened) throw new ControlError(400, "env_sealed could not be opened with this node's xkey (sealed for another node?)");
    let env: unknown;
    try {
      env = JSON.parse(decoder.decode(opened));
    } catch {
      throw new ControlError(400, "env_sealed does not hold a JSON object");
    }
    if (typeof env !== "object" || env === null || Array.isArray(env) || Object.values(env).some((v) => typeof v !== "string")) {
      throw new ControlError(400, "env_sealed must hold a JSON object of strings");
    }
    return env as Record<string, string>;
  }

  /** Starts what the registry says this node runs (after a restart), and forgets the claims of the rest. */
  private async restoreOwned(): Promise<void> {
    const registry = this.registry as WorkloadRegistry;
    const mine = registry.all().filter(({ entry }) => entry.owner === this.id);
    // Trigger claims and routes this node left for workloads it no longer runs would block other namespaces.
    const ids = new Set(mine.map(({ entry }) => entry.id));
    await this.triggerClaims?.keepOnly(ids);
    await this.routes?.keepOnly(ids);
    for (const { entry } of mine) await this.runPlaced(entry, "workload restored after restart");
  }

  /**
   * Runs a workload the registry names this node owner of (restored or adopted). The request comes
   * from the issuer's signed bytes, checked again; what cannot run is forgotten with its claims.
   */
  private async runPlaced(entry: PlacedWorkload, told: string): Promise<void> {
    if (this.workloads.has(entry.id) || this.deploying.has(entry.id) || this.placing.has(entry.id) || this.stopping.has(entry.id)) return;
    this.placing.add(entry.id);
    try {
      const { namespace, issuer, request } = entry.parent ? entry : this.verifiedPlacement(entry);
      // A child comes back only under its parent (its grant still bound, its slot still held).
      if (entry.parent) await this.lineage().checkRestore(entry.id, entry.parent);
      await this.deploy(entry.id, namespace, issuer, request, { parent: entry.parent, signed: entry.signed, placed: true });
      this.logFor(entry).info({ epoch: entry.epoch }, told);
    } catch (err) {
      if (!(err instanceof ControlError && PERMANENT_REFUSALS.has(err.code))) {
        // JetStream or the artifact store may be electing a leader: the next check (RETRY_PLACED_MS) tries again.
        this.logFor(entry).warn({ err: err instanceof Error ? err.message : err }, "could not start a workload placed on this node yet; trying again");
        return;
      }
      this.logFor(entry).error({ err: err.message }, "could not run a workload placed on this node; forgetting it");
      this.events.emit(entry.namespace, "workload_failed", { workload_id: entry.id, name: entry.request?.name, error: `could not start on node ${this.id}` });
      await this.registry?.forget(entry.id, this.id).catch(() => undefined);
      await this.triggerClaims?.release(entry.id);
      await this.routes?.release(entry.id);
      if (entry.parent || entry.request?.grant) await this.children?.forgotten(entry).catch(() => undefined);
    } finally {
      this.placing.delete(entry.id);
    }
  }

  /** The namespace, issuer and request of a placed workload, from its signed deploy (checked as a new deploy is, but for its age). */
  private verifiedPlacement(entry: PlacedWorkload): { namespace: string; issuer: string; request: DeployRequest } {
    const signed = entry.signed;
    if (!signed) throw new ControlError(401, "the registry entry carries no signed deploy");
    const body = Buffer.from(signed.body, "base64");
    const issuer = this.allowedSigner(signed.subject, body, signed.issuer, signed.signature);
    // $NEX.SVC.<ns>.control.DEPLOY.<node>: the namespace is the one the issuer signed for.
    const tokens = signed.subject.split(".");
    const namespace = tokens[2];
    if (tokens.length !== 6 || signed.subject !== ControlSubjects.deploy(namespace, tokens[5])) throw new ControlError(400, "the signed deploy is not a deploy request");
    return { namespace, issuer, request: parseRequestBody(DeployRequestSchema, body) };
  }

  /** A "placed" notice (failover.ts): the entry is read again, and started if it names this node. */
  private listenForPlacements(): void {
    const refreshing = new Set<string>();
    this.placedSub = this.o.nc.subscribe(placedSubject(this.id), {
      callback: (_err, msg) => {
        let id: unknown;
        try {
          id = (JSON.parse(msg.string()) as { workload_id?: unknown }).workload_id;
        } catch {
          return;
        }
        // Anyone may send one: it costs a KV get, one at a time per id and a bounded number at once.
        if (typeof id !== "string" || !/^[A-Za-z0-9_-]{1,64}$/.test(id) || refreshing.has(id) || refreshing.size >= 256) return;
        refreshing.add(id);
        void this.registry
          ?.refresh(id)
          .catch((err: Error) => this.o.log.warn({ workload_id: id, err: err.message }, "reading a placed workload failed"))
          .finally(() => refreshing.delete(id as string));
      },
    });
  }

  /** Starts what the registry gives this node and it does not run; every RESYNC_EVERY checks the whole registry is read again. */
  private async runMissing(): Promise<void> {
    if (this.stopped || this.lameDuck || !this.registry) return;
    if (++this.placedChecks % RESYNC_EVERY === 0) await this.registry.resync().catch((err: Error) => this.o.log.warn({ err: err.message }, "reading the registry again failed"));
    for (const { entry } of this.registry.all()) {
      if (entry.owner === this.id && !this.workloads.has(entry.id)) await this.runPlaced(entry, "workload started from the registry");
    }
  }

  /** The registry changed: start what it gives this node, stop what it gave to another node. */
  private async reconcile(change: RegistryChange): Promise<void> {
    // In lame duck the hand-over (handOver) stops what moved, once its new node has it.
    if (this.stopped || this.lameDuck) return;
    if (change.entry?.owner === this.id) {
      await this.runPlaced(change.entry, "workload adopted from another node");
      return;
    }
    const here = this.workloads.get(change.id);
    if (!here || here.state === "stopping") return;
    // Moved to another node (failover while this node was cut off, or a lame-duck hand-over), or forgotten.
    const to = change.entry?.owner;
    await this.undeploy(here, to ? `moved to node ${to}` : "removed from the registry", true).catch((err: Error) => this.logFor(here).warn({ err: err.message }, "stopping a moved workload failed"));
  }

  // ---- workloads that deploy workloads (child-workloads.ts) ------------------------------------------

  private lineage(): ChildWorkloads {
    if (!this.children) throw new ControlError(503, "node is starting");
    return this.children;
  }

  private lineageHost(): LineageHost {
    const { config } = this.o;
    return {
      nc: this.o.nc,
      identity: this.o.identity,
      log: this.o.log.child({ component: "children" }),
      issuerAllowed: (issuer) => config.allow_any_issuer || config.allowed_issuers.includes(issuer),
      nodeTrusted: (nodeId) => nodeId === this.id || config.trusted_nodes.length === 0 || config.trusted_nodes.includes(nodeId),
      biddersAlive: () => this.heartbeats.takers().filter((n) => n === this.id || config.trusted_nodes.length === 0 || config.trusted_nodes.includes(n)).length,
      replays: () => this.replays(),
      workload: (id) => this.workloads.get(id),
      deployChild: async (id, namespace, issuer, request, link) => {
        if (this.lameDuck) throw new ControlError(503, "node is in lame duck mode and takes no new workloads");
        await this.deploy(id, namespace, issuer, request, { parent: link });
      },
      undeployHere: async (id, reason) => {
        const w = this.workloads.get(id);
        if (!w) return false;
        await this.undeploy(w, reason, true);
        return true;
      },
    };
  }

  // ---- undeploy and lame duck ------------------------------------------------------------------------

  private async undeployRequest(msg: Msg, id: string): Promise<unknown> {
    const request = parseRequestBody(UndeployRequestSchema, msg.data);
    const issuer = await this.authorize(msg, request.requested_at);
    if (request.workload_id !== id) throw new ControlError(400, "workload_id does not match the subject");
    const workload = this.workloads.get(id);
    if (!workload) throw new ControlError(404, `no workload ${id} on this node`);
    if (workload.issuer !== issuer) throw new ControlError(403, "only the issuer that deployed a workload may stop it");
    await this.undeploy(workload, "undeployed", true);
    return { workload_id: id, node_id: this.id, stopped: true };
  }

  private async undeploy(workload: Workload, reason: string, forget: boolean): Promise<void> {
    workload.state = "stopping";
    workload.unsubscribeUndeploy();
    this.stopping.add(workload.id);
    try {
      await this.o.runtimes.get(workload.request.type)?.undeploy(workload.id);
    } finally {
      this.hostServices.detach(workload.id);
      this.o.credentials?.revoke(workload.id);
      this.workloads.delete(workload.id);
      if (forget) {
        await this.registry?.forget(workload.id, this.id);
        await this.triggerClaims?.release(workload.id);
        await this.routes?.release(workload.id);
        // Its children stop (on any node), its grant and its slot under a parent are released.
        await this.children?.forgotten(workload).catch((err: Error) => this.logFor(workload).warn({ err: err.message }, "releasing its children and grant failed"));
      }
      this.stopping.delete(workload.id);
      this.events.forget(workload.namespace, workload.id);
      this.events.emit(workload.namespace, "workload_stopped", { workload_id: workload.id, name: workload.request.name, reason });
      this.logFor(workload).info({ reason }, "workload stopped");
    }
  }

  private async lameDuckRequest(msg: Msg): Promise<unknown> {
    const request = parseRequestBody(LameDuckRequestSchema, msg.data);
    await this.authorize(msg, request.requested_at);
    if (!this.lameDuck) setTimeout(() => void this.enterLameDuck(request.move === true), request.delay_ms ?? 0);
    return { node_id: this.id, lame_duck: true, ...(request.move ? { move: true } : {}) };
  }

  /**
   * Stops taking deploys, drains and stops every workload, exits. With `move`, each workload that can
   * move is first given to another node and stops here once its new node has started it; the rest stay
   * in the registry under this node and come back when it starts again.
   */
  async enterLameDuck(move = false): Promise<void> {
    if (this.lameDuck) return;
    this.lameDuck = true;
    this.events.emit("system", "node_lame_duck", { node_id: this.id, workloads: this.workloads.size, move });
    this.o.log.info({ workloads: this.workloads.size, move }, "lame duck: draining workloads");
    if (move && this.failover) await this.handOver(this.failover);
    await Promise.allSettled([...this.workloads.values()].map((w) => this.undeploy(w, "lame duck", false)));
    await this.stop();
    this.o.onLameDuckDone?.();
  }

  /**
   * Gives what can move to other nodes; each copy here stops when its new node says it deployed it (a
   * workload_deployed event, listened for before anything moves), or after HANDOVER_WAIT_MS.
   */
  private async handOver(failover: Failover): Promise<void> {
    const deployed = new Set<string>();
    let arrived = (): void => undefined;
    const sub = this.o.nc.subscribe(ControlSubjects.events("*", "workload_deployed"), {
      callback: (_err, m) => {
        try {
          const data = (JSON.parse(m.string()) as { data?: { workload_id?: string; node_id?: string } }).data;
          if (data?.workload_id && data.node_id && data.node_id !== this.id) deployed.add(data.workload_id);
          arrived();
        } catch {
          // not an event
        }
      },
    });
    try {
      const moved = await failover.handOver().catch(() => [] as string[]);
      const deadline = Date.now() + HANDOVER_WAIT_MS;
      while (moved.some((id) => !deployed.has(id)) && Date.now() < deadline) {
        await new Promise<void>((resolve) => {
          arrived = resolve;
          setTimeout(resolve, 100);
        });
      }
      await Promise.allSettled(
        moved.map((id) => {
          const here = this.workloads.get(id);
          return here && here.state !== "stopping" ? this.undeploy(here, `moved to node ${this.registry?.get(id)?.owner}`, true) : undefined;
        }),
      );
    } finally {
      sub.unsubscribe();
    }
  }

  // ---- RuntimeObserver -------------------------------------------------------------------------------

  log(workloadId: string, stream: "stdout" | "stderr", line: string): void {
    const namespace = this.workloads.get(workloadId)?.namespace ?? this.deploying.get(workloadId);
    if (namespace) this.events.log(namespace, workloadId, stream, line);
  }

  triggerFailed(workloadId: string, subject: string, error: string): void {
    const w = this.workloads.get(workloadId);
    if (w) this.events.triggerFailed(w.namespace, { workload_id: workloadId, name: w.request.name, subject, error });
  }

  restarted(reason: string, workloadIds: string[]): void {
    this.o.log.warn({ reason, workloads: workloadIds.length }, "runtime restarted; workloads redeployed");
    for (const id of workloadIds) {
      const w = this.workloads.get(id);
      if (!w) continue;
      w.restarts++;
      this.events.emit(w.namespace, "runtime_restarted", { workload_id: id, name: w.request.name, reason });
    }
  }

  /** A container exited (state and event; it may come back) or came back after a restart. */
  workloadEvent(workloadId: string, event: WorkloadEvent): void {
    const w = this.workloads.get(workloadId);
    if (!w && this.deploying.has(workloadId)) {
      const early = this.earlyEvents.get(workloadId) ?? [];
      if (early.length < 16) early.push(event);
      this.earlyEvents.set(workloadId, early);
      return;
    }
    if (!w || w.state === "stopping") return;
    // A container names itself and its exit code; a JavaScript service says what ended its run.
    const base = { workload_id: workloadId, name: w.request.name, ...(event.containerId ? { container_id: event.containerId } : {}), restarts: event.restarts };
    if (event.type === "restarted") {
      w.state = "running";
      this.events.emit(w.namespace, "workload_restarted", base);
      return;
    }
    w.state = event.restartInMs !== null ? "restarting" : event.reason === "exited" ? "exited" : "failed";
    const exit = { reason: event.reason, ...(event.exitCode !== undefined ? { exit_code: event.exitCode } : {}), ...(event.message !== undefined ? { message: event.message } : {}), restart_in_ms: event.restartInMs };
    this.logFor(w).warn(exit, "workload exited");
    this.events.emit(w.namespace, "workload_exited", { ...base, ...exit });
  }

  /** Stops serving; workloads stay in desired state so the next start brings them back. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.api.close();
    for (const w of this.workloads.values()) w.unsubscribeUndeploy();
    this.hostServices.close();
    this.failover?.close();
    clearInterval(this.placedCheck);
    this.placedSub?.unsubscribe();
    this.heartbeats.close();
    this.registry?.close();
    this.triggerClaims?.close();
    this.routes?.close();
    this.children?.close();
    await Promise.allSettled([...this.o.runtimes.values()].map((r) => r.close()));
    this.events.emit("system", "node_stopped", { node_id: this.id, graceful: true });
    this.events.close();
    if (!this.o.nc.isClosed()) await this.o.nc.flush().catch(() => undefined);
  }
}

/** How often a node whose start-up waits on JetStream says what it waits on. */
const START_SLOW_WARN_MS = 10_000;
/** Refusals that another try cannot change (a bad signature, an issuer not allowed, a runtime refusing the code). */
const PERMANENT_REFUSALS = new Set([400, 401, 403, 404, 409, 422]);
/** How often the node looks for workloads the registry gives it that it does not run (a missed watch event, a failed start). */
const RETRY_PLACED_MS = 5000;
/** Every how many of those checks the whole registry is read again (30 s), behind its watch. */
const RESYNC_EVERY = 6;

/** How long a lame-duck node keeps a workload it handed over running while its new node starts it. */
const HANDOVER_WAIT_MS = 10_000;

/** A stats call that takes longer than this leaves the summary without usage rather than stalling a listing. */
const STATS_TIMEOUT_MS = 1_000;

function generateId(): string {
  return randomBytes(10).toString("hex");
}

