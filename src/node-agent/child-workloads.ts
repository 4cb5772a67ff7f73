// Workloads that deploy workloads (lobby and shard), on every node of the bus.
//
// The registry is the KV bucket NEX_GRANTS, shared by all nodes:
//   g.<grant_id>          → { parent, node, namespace, issuer, max_children }: the grant is bound to one
//                            parent on one node; created once (KV create) when the parent is deployed,
//                            deleted when the parent is undeployed.
//   s.<grant_id>.<slot>   → { child, node, name, parent }: one per live child, slot < max_children,
//                            created with KV create by the parent's node before it asks for the child,
//                            so two deploys can never hold the same slot and a grant never has more
//                            than max_children children, whichever nodes the calls land on.
// The parent's node picks a node by auction and sends DEPLOY_CHILD.<node>, signed with its node key and
// carrying the issuer's signed grant; the receiving node checks all of it (childDeployRequest) before
// the child is deployed as any workload is. A child is recorded with its link (grant, parent, slot), so it
// is restored after a node restart only while its parent's binding and its slot stand. Every node watches
// the slots of the children it runs: when a slot goes (the parent's node released it after a stop message
// that did not arrive, say), the child stops here too.

import { randomBytes } from "node:crypto";
import type { Msg, NatsConnection } from "@nats-io/transport-node";
import { headers as natsHeaders } from "@nats-io/transport-node";
import type { KV } from "@nats-io/kv";
import { createKv } from "../util/replicated-buckets.js";
import type { Logger } from "pino";
import { type AuctionBid, ARTIFACT_BUCKET, describeZodError, type DeployResponse, PROTOCOL_VERSION } from "../protocol/control.js";
import { type DeployRequest, DeployRequestSchema } from "../protocol/deploy-request.js";
import {
  ChildDeployRequestSchema,
  type ChildSpec,
  ChildSpecSchema,
  ChildSubjects,
  ChildUndeployRequestSchema,
  type GrantBody,
  NODE_HEADER,
  signAsNode,
  type SignedGrant,
  verifyGrant,
  verifyNodeSigned,
} from "../protocol/grants.js";
import { requestAgeProblem, SIGNATURE_HEADER } from "../protocol/signing.js";
import { HostError } from "../host-services/errors.js";
import type { HostMethod } from "../host-services/server.js";
import { HostHeaders, NO_DEPLOY_GRANT } from "../protocol/host-services.js";
import { ControlError, parseRequestBody } from "./errors.js";
import { createIfAbsent } from "../util/kv-create.js";
import { collectBids } from "./auction.js";
import { KvFollower } from "../cluster/kv-follower.js";
import { retryWhileTransient } from "../host-services/jetstream-retry.js";
import type { NodeIdentity } from "./identity.js";
import type { ReplayGuard } from "./replay-guard.js";

const BUCKET = "NEX_GRANTS";
/** Time for a child deploy or undeploy request to another node. */
const CHILD_REQUEST_TIMEOUT_MS = 4500;

/** What a child workload keeps of where it comes from (in the node's record and desired state). */
export interface ChildLink {
  grant: SignedGrant;
  grant_id: string;
  parent_id: string;
  parent_node: string;
  slot: number;
}

interface Binding {
  parent: string;
  node: string;
  namespace: string;
  issuer: string;
  max_children: number;
}

interface Slot {
  child: string;
  node: string;
  name: string;
  parent: string;
}

/** The node's side of a workload, as this module needs it. */
export interface LineageWorkload {
  id: string;
  namespace: string;
  issuer: string;
  request: DeployRequest;
  grant?: GrantBody;
  parent?: ChildLink;
}

export interface LineageHost {
  nc: NatsConnection;
  identity: NodeIdentity;
  log: Logger;
  issuerAllowed(issuer: string): boolean;
  /** Whether a bid from this node may win a child auction (this node's own always may). */
  nodeTrusted(nodeId: string): boolean;
  /** How many live nodes (heartbeats) take workloads and are trusted: an auction they all answered is over. */
  biddersAlive(): number;
  replays(): ReplayGuard;
  workload(id: string): LineageWorkload | undefined;
  /** Deploys a verified child here (as the node deploys any workload). */
  deployChild(id: string, namespace: string, issuer: string, request: DeployRequest, link: ChildLink): Promise<void>;
  /** Undeploys (and forgets) a workload running here; false when it does not run here. */
  undeployHere(id: string, reason: string): Promise<boolean>;
}

const decoder = new TextDecoder();
const encoder = new TextEncoder();

export class ChildWorkloads {
  /** Where the next free slot of a grant probably is (only the parent's node claims its slots). */
  private readonly cursors = new Map<string, number>();
  /** The children running here, by their slot key (s.<grant_id>.<slot>). */
  private readonly childrenHere = new Map<string, string>();
  private stopWatching?: () => void;

  private constructor(
    private readonly kv: KV,
    private readonly host: LineageHost,
  ) {}

  static async open(host: LineageHost): Promise<ChildWorkloads> {
    const children = new ChildWorkloads(await retryWhileTransient(() => createKv(host.nc, BUCKET, { history: 1 })), host);
    await children.watchSlots();
    return children;
  }

  close(): void {
    this.stopWatching?.();
  }

  /** A released slot whose child runs here stops that child (its parent is gone, or let it go). */
  private async watchSlots(): Promise<void> {
    const follower = await KvFollower.follow(
      this.kv,
      (entry) => {
        if (entry.operation === "PUT") return;
        const child = this.childrenHere.get(entry.key);
        if (child === undefined) return;
        this.childrenHere.delete(entry.key);
        const w = this.host.workload(child);
        const fields = { workload_id: child, namespace: w?.namespace, workload: w?.request.name, slot: entry.key };
        this.host.log.info(fields, "the child's slot was released: stopping it");
        void this.host.undeployHere(child, "parent undeployed").catch((err: Error) => this.host.log.warn({ ...fields, err: err.message }, "stopping a released child failed"));
      },
      { key: "s.>", readExisting: false, log: this.host.log },
    );
    this.stopWatching = () => follower.stop();
  }

  /** A child runs here under this link (deployed, or restored after a restart). */
  private runsHere(id: string, link: ChildLink): void {
    this.childrenHere.set(`s.${link.grant_id}.${link.slot}`, id);
  }

  private get nodeId(): string {
    return this.host.identity.id;
  }

  // ---- the parent's deploy: verify and bind its grant ----------------------------------------------

  /**
   * A deploy request's grant, checked and bound to this workload (idempotent for the same workload on
   * this node, as after a restart). Refused when it is not the deploying issuer's, names another
   * namespace, or is bound to another workload already (a captured grant reused).
   */
  async bindGrant(id: string, namespace: string, issuer: string, request: DeployRequest): Promise<GrantBody | undefined> {
    if (!request.grant) return undefined;
    const verified = verifyGrant(request.grant);
    if ("problem" in verified) throw new ControlError(401, verified.problem);
    const grant = verified.body;
    if (request.grant.issuer !== issuer) throw new ControlError(403, "the deploy grant is signed by another issuer than the deploy request");
    if (grant.namespace !== namespace) throw new ControlError(403, `the deploy grant is for namespace ${grant.namespace}, not ${namespace}`);
    const binding: Binding = { parent: id, node: this.nodeId, namespace, issuer, max_children: grant.max_children };
    const key = `g.${grant.grant_id}`;
    if (await this.create(key, JSON.stringify(binding))) return grant;
    const existing = await this.binding(grant.grant_id);
    if (existing && existing.parent === id && existing.node === this.nodeId) return grant;
    throw new ControlError(409, `deploy grant ${grant.grant_id} is already bound to another workload (a grant is good for one parent; sign a new one)`);
  }

  /** Forgets a parent's grant: its children are stopped first (cascade), on whichever nodes they run. */
  async parentGone(parent: LineageWorkload): Promise<void> {
    if (!parent.grant) return;
    const grantId = parent.grant.grant_id;
    // Only the parent the grant is bound to (here) has children: a deploy refused for a grant bound
    // elsewhere (a captured grant) must not touch the real parent's.
    const binding = await this.binding(grantId);
    if (!binding || binding.parent !== parent.id || binding.node !== this.nodeId) return;
    const slots = await this.slots(grantId);
    await Promise.allSettled(
      slots.map(async ({ slot, value }) => {
        try {
          await this.stopChild(parent, grantId, value, "parent undeployed");
        } catch (err) {
          const fields = { workload_id: value.child, namespace: parent.namespace, workload: value.name, node: value.node };
          this.host.log.warn({ ...fields, err: (err as Error).message }, "could not stop a child of an undeployed parent; it stops when its node finds the parent gone");
        }
        await this.kv.delete(`s.${grantId}.${slot}`).catch(() => undefined);
      }),
    );
    await this.kv.delete(`g.${grantId}`).catch(() => undefined);
    this.cursors.delete(grantId);
  }

  /** A workload stopped for good (or not restored): its children stop, its grant and its slot are released. */
  async forgotten(w: LineageWorkload): Promise<void> {
    if (w.parent) await this.childGone(w);
    let grant = w.grant;
    if (!grant && w.request.grant) {
      const verified = verifyGrant(w.request.grant);
      if ("body" in verified) grant = verified.body;
    }
    if (grant) await this.parentGone({ ...w, grant });
  }

  /** A child stopped for good: its slot frees up for another. */
  async childGone(child: LineageWorkload): Promise<void> {
    const link = child.parent;
    if (!link) return;
    const key = `s.${link.grant_id}.${link.slot}`;
    if (this.childrenHere.get(key) === child.id) this.childrenHere.delete(key);
    const entry = await this.kv.get(key).catch(() => null);
    if (!entry || entry.operation !== "PUT") return;
    const slot = parseJson<Slot>(entry.string());
    if (slot?.child === child.id) await this.kv.delete(key, { previousSeq: entry.revision }).catch(() => undefined);
  }

  /** After a restart: a child comes back only while its parent's binding and its own slot stand. */
  async checkRestore(id: string, link: ChildLink): Promise<void> {
    const binding = await this.binding(link.grant_id);
    if (!binding || binding.parent !== link.parent_id) throw new Error(`its parent ${link.parent_id} is gone`);
    const slot = await this.slot(link.grant_id, link.slot);
    if (!slot || slot.child !== id) throw new Error("its slot under the parent was released");
    this.runsHere(id, link);
  }

  // ---- host services: what a parent calls -----------------------------------------------------------

  parentOf(id: string): LineageWorkload & { grant: GrantBody } {
    const w = this.host.workload(id);
    if (!w) throw new HostError("not_found", `workload ${id} does not run on this node`);
    if (!w.grant) throw new HostError("forbidden", NO_DEPLOY_GRANT);
    return w as LineageWorkload & { grant: GrantBody };
  }

  async list(parent: LineageWorkload & { grant: GrantBody }): Promise<{ workload_id: string; node_id: string; name: string }[]> {
    return (await this.slots(parent.grant.grant_id)).map(({ value }) => ({ workload_id: value.child, node_id: value.node, name: value.name }));
  }

  async undeploy(parent: LineageWorkload & { grant: GrantBody }, childId: string): Promise<void> {
    const grantId = parent.grant.grant_id;
    const found = (await this.slots(grantId)).find(({ value }) => value.child === childId);
    if (!found) throw new HostError("forbidden", `workload ${childId} is not a child of this workload`);
    await this.stopChild(parent, grantId, found.value, "undeployed by its parent");
    await this.kv.delete(`s.${grantId}.${found.slot}`).catch(() => undefined);
  }

  private async stopChild(parent: LineageWorkload, grantId: string, slot: Slot, reason: "undeployed by its parent" | "parent undeployed"): Promise<void> {
    if (slot.node === this.nodeId) {
      await this.host.undeployHere(slot.child, reason);
      return;
    }
    const body = { version: PROTOCOL_VERSION, requested_at: new Date().toISOString(), grant_id: grantId, parent_id: parent.id, child_id: slot.child, reason };
    const reply = await this.signedRequest(ChildSubjects.undeploy(parent.namespace, slot.node), body);
    const error = replyError(reply);
    if (error && error.code !== 404) throw new HostError(hostCode(error.code), error.message);
  }

  async deploy(parent: LineageWorkload & { grant: GrantBody }, body: Uint8Array): Promise<DeployResponse> {
    const grant = parent.grant;
    let json: unknown;
    try {
      json = JSON.parse(decoder.decode(body));
    } catch {
      throw new HostError("bad_request", "workloads.deploy takes an object { name, artifact, ... }");
    }
    const parsed = ChildSpecSchema.safeParse(json);
    if (!parsed.success) throw new HostError("bad_request", `workloads.deploy: ${describeZodError(parsed.error)}`);
    const spec = parsed.data;
    const artifact = grant.artifacts.find((a) => a.name === spec.artifact || a.sha256 === spec.artifact);
    if (!artifact) {
      throw new HostError("forbidden", `artifact ${spec.artifact} is not in this workload's grant (it may deploy: ${grant.artifacts.map((a) => a.name).join(", ")})`);
    }
    // Checked here first, so a bad spec is told before a slot is taken or a node asked.
    const draft = childRequest(spec, artifact.type, artifact.sha256, {});
    const valid = DeployRequestSchema.safeParse(draft);
    if (!valid.success) throw new HostError("bad_request", `workloads.deploy: ${describeZodError(valid.error)}`);

    const target = await this.auction(parent.namespace, artifact.type, spec.tags ?? {}, spec.limits?.memory_mb);
    const childId = randomBytes(10).toString("hex");
    const slot = await this.claimSlot(grant, { child: childId, node: target.node_id, name: spec.name, parent: parent.id });
    try {
      const request = childRequest(spec, artifact.type, artifact.sha256, this.sealEnv(spec.env, target.xkey));
      const message = {
        version: PROTOCOL_VERSION,
        requested_at: new Date().toISOString(),
        grant: parent.request.grant as SignedGrant,
        parent_id: parent.id,
        child_id: childId,
        slot,
        deploy: request,
      };
      const reply = await this.signedRequest(ChildSubjects.deploy(parent.namespace, target.node_id), message);
      const error = replyError(reply);
      if (error) throw new HostError(hostCode(error.code), `child deploy refused by node ${target.node_id}: ${error.message}`);
      return { workload_id: childId, node_id: target.node_id, started: true };
    } catch (err) {
      await this.kv.delete(`s.${grant.grant_id}.${slot}`).catch(() => undefined);
      throw err;
    }
  }

  /** Nodes that can take the child bid; the least loaded of those whose xkey is signed by their id wins. */
  private async auction(namespace: string, type: string, tags: Record<string, string>, memoryMb: number | undefined): Promise<AuctionBid> {
    const ask = { namespace, type, tags, memoryMb };
    const { bids } = await collectBids(this.host.nc, ask, (node) => this.host.nodeTrusted(node), this.host.biddersAlive());
    if (bids.length === 0) throw new HostError("no_responders", `no node bid for a ${type} child${Object.keys(tags).length ? ` with tags ${JSON.stringify(tags)}` : ""}`);
    const least = Math.min(...bids.map((b) => b.workload_count));
    const best = bids.filter((b) => b.workload_count === least);
    return best[Math.floor(Math.random() * best.length)];
  }

  /** The first free slot below max_children, taken with a KV create (two callers never get one slot). */
  private async claimSlot(grant: GrantBody, value: Slot): Promise<number> {
    const max = grant.max_children;
    const id = grant.grant_id;
    // First the slot after the last one taken (usually free: one KV create), then a look at all of them.
    const hint = (this.cursors.get(id) ?? 0) % max;
    if (await this.create(`s.${id}.${hint}`, JSON.stringify(value))) {
      this.cursors.set(id, hint + 1);
      return hint;
    }
    const taken = new Set((await this.slots(id)).map((s) => s.slot));
    for (let k = 0; k < max; k++) {
      if (taken.has(k)) continue;
      if (await this.create(`s.${id}.${k}`, JSON.stringify(value))) {
        this.cursors.set(id, k + 1);
        return k;
      }
    }
    throw new HostError("forbidden", `this workload already has the ${grant.max_children} children its grant allows at once (nex run --max-children)`);
  }

  private sealEnv(env: Record<string, string> | undefined, xkey: string): { env_sealed?: string; sender_xkey?: string } {
    if (!env || Object.keys(env).length === 0) return {};
    const curve = this.host.identity.curve;
    const sealed = curve.seal(encoder.encode(JSON.stringify(env)), xkey);
    return { env_sealed: Buffer.from(sealed).toString("base64"), sender_xkey: curve.getPublicKey() };
  }

  private async signedRequest(subject: string, body: unknown): Promise<Msg> {
    const data = encoder.encode(JSON.stringify(body));
    const h = natsHeaders();
    for (const [k, v] of Object.entries(signAsNode(this.host.identity.signer, subject, data))) h.set(k, v);
    try {
      return await this.host.nc.request(subject, data, { timeout: CHILD_REQUEST_TIMEOUT_MS, headers: h });
    } catch (err) {
      const text = (err as Error)?.message ?? String(err);
      if (/no responders/i.test(text)) throw new HostError("no_responders", `no node answers on ${subject}`);
      if (/timeout/i.test(text)) throw new HostError("timeout", `no answer on ${subject} in time`);
      throw new HostError("internal", text);
    }
  }

  // ---- the receiving node ---------------------------------------------------------------------------

  /** DEPLOY_CHILD.<this node>: everything is checked before anything is started. */
  async childDeployRequest(msg: Msg, namespace: string): Promise<DeployResponse> {
    const message = parseRequestBody(ChildDeployRequestSchema, msg.data);
    const signer = await this.authorizeNode(msg, message.requested_at);
    const grant = this.checkGrant(message.grant, namespace);
    const binding = await this.binding(grant.grant_id);
    if (!binding) throw new ControlError(403, "the grant is not bound to a live parent");
    if (binding.parent !== message.parent_id || binding.node !== signer || binding.namespace !== namespace) {
      throw new ControlError(403, "the grant is bound to another parent or another node than the one that signed this request");
    }
    const parsed = DeployRequestSchema.safeParse(message.deploy);
    if (!parsed.success) throw new ControlError(400, `invalid child deploy: ${describeZodError(parsed.error)}`);
    const request = parsed.data;
    if (request.type === "oci") throw new ControlError(403, "a child must be a function from the grant's artifacts");
    if (request.grant) throw new ControlError(403, "a child cannot carry a deploy grant of its own");
    const artifact = grant.artifacts.find((a) => a.sha256 === request.artifact.sha256);
    if (!artifact || artifact.type !== request.type || request.artifact.url !== `nats://${ARTIFACT_BUCKET}/${artifact.sha256}`) {
      throw new ControlError(403, "the child's artifact is not one the grant names");
    }
    if (message.slot >= grant.max_children) throw new ControlError(403, `slot ${message.slot} is beyond the grant's ${grant.max_children} children`);
    const slot = await this.slot(grant.grant_id, message.slot);
    if (!slot || slot.child !== message.child_id || slot.node !== this.nodeId || slot.parent !== message.parent_id) {
      throw new ControlError(403, "no slot of the grant is held for this child on this node");
    }
    if (this.host.workload(message.child_id)) throw new ControlError(409, `workload ${message.child_id} already runs here`);
    const link: ChildLink = { grant: message.grant, grant_id: grant.grant_id, parent_id: message.parent_id, parent_node: signer, slot: message.slot };
    await this.host.deployChild(message.child_id, namespace, message.grant.issuer, request, link);
    this.runsHere(message.child_id, link);
    return { workload_id: message.child_id, node_id: this.nodeId, started: true };
  }

  /** UNDEPLOY_CHILD.<this node>: only the node its parent runs on may stop a child, for that parent. */
  async childUndeployRequest(msg: Msg, namespace: string): Promise<unknown> {
    const message = parseRequestBody(ChildUndeployRequestSchema, msg.data);
    const signer = await this.authorizeNode(msg, message.requested_at);
    const child = this.host.workload(message.child_id);
    if (!child || child.namespace !== namespace) throw new ControlError(404, `no workload ${message.child_id} on this node`);
    const link = child.parent;
    if (!link || link.grant_id !== message.grant_id || link.parent_id !== message.parent_id || link.parent_node !== signer) {
      throw new ControlError(403, "that workload is not a child of the parent named, on the node that signed");
    }
    await this.host.undeployHere(child.id, message.reason);
    return { workload_id: child.id, node_id: this.nodeId, stopped: true };
  }

  private async authorizeNode(msg: Msg, requestedAt: string): Promise<string> {
    const signature = msg.headers?.get(SIGNATURE_HEADER);
    const verified = verifyNodeSigned(msg.subject, msg.data, msg.headers?.get(NODE_HEADER), signature);
    if ("problem" in verified) throw new ControlError(401, verified.problem);
    const age = requestAgeProblem(requestedAt);
    if (age) throw new ControlError(401, age);
    await this.host.replays().admit(signature as string);
    return verified.node;
  }

  private checkGrant(signed: SignedGrant, namespace: string): GrantBody {
    const verified = verifyGrant(signed);
    if ("problem" in verified) throw new ControlError(401, verified.problem);
    if (!this.host.issuerAllowed(signed.issuer)) throw new ControlError(403, `the grant's issuer ${signed.issuer} is not allowed on this node`);
    if (verified.body.namespace !== namespace) throw new ControlError(403, `the grant is for namespace ${verified.body.namespace}, not ${namespace}`);
    return verified.body;
  }

  // ---- the registry ---------------------------------------------------------------------------------

  private async binding(grantId: string): Promise<Binding | null> {
    const entry = await this.kv.get(`g.${grantId}`);
    return entry && entry.operation === "PUT" ? parseJson<Binding>(entry.string()) : null;
  }

  private async slot(grantId: string, k: number): Promise<Slot | null> {
    const entry = await this.kv.get(`s.${grantId}.${k}`);
    return entry && entry.operation === "PUT" ? parseJson<Slot>(entry.string()) : null;
  }

  private async slots(grantId: string): Promise<{ slot: number; value: Slot }[]> {
    const keys: string[] = [];
    for await (const key of await this.kv.keys(`s.${grantId}.*`)) keys.push(key);
    const out: { slot: number; value: Slot }[] = [];
    for (const key of keys) {
      const slot = Number(key.slice(key.lastIndexOf(".") + 1));
      const value = await this.slot(grantId, slot);
      if (value) out.push({ slot, value });
    }
    return out.sort((a, b) => a.slot - b.slot);
  }

  private create(key: string, value: string): Promise<boolean> {
    return createIfAbsent(this.kv, key, value);
  }
}

/** The `workloads` host service (deploy, undeploy, list) for the calling workload; served by the node. */
export function workloadsHostMethods(children: () => ChildWorkloads | null): Record<string, HostMethod> {
  const open = (): ChildWorkloads => {
    const c = children();
    if (!c) throw new HostError("overloaded", "the node is starting");
    return c;
  };
  return {
    deploy: async (ctx) => {
      const c = open();
      return { body: JSON.stringify(await c.deploy(c.parentOf(ctx.workload.id), ctx.body)) };
    },
    undeploy: async (ctx) => {
      const c = open();
      await c.undeploy(c.parentOf(ctx.workload.id), ctx.required(HostHeaders.key));
      return {};
    },
    list: async (ctx) => {
      const c = open();
      return { body: JSON.stringify(await c.list(c.parentOf(ctx.workload.id))) };
    },
  };
}

/** The deploy request of a child, as a parent asked for it. */
function childRequest(spec: ChildSpec, type: "javascript" | "wasm", sha256: string, sealed: { env_sealed?: string; sender_xkey?: string }): Record<string, unknown> {
  return {
    version: PROTOCOL_VERSION,
    type,
    name: spec.name,
    artifact: { url: `nats://${ARTIFACT_BUCKET}/${sha256}`, sha256 },
    trigger_subjects: spec.trigger_subjects ?? [],
    ...(spec.limits ? { limits: spec.limits } : {}),
    ...(spec.tags ? { tags: spec.tags } : {}),
    // `service` is the services kind's flag (issue 15); a node without it refuses the field by name.
    ...(spec.service !== undefined ? { service: spec.service } : {}),
    requested_at: new Date().toISOString(),
    ...sealed,
  };
}

function replyError(msg: Msg): { code: number; message: string } | undefined {
  const body = parseJson<{ error?: { code?: number; message?: string } }>(msg.string());
  if (!msg.headers?.get("Nex-Error") && !body?.error) return undefined;
  return { code: body?.error?.code ?? 500, message: body?.error?.message ?? msg.headers?.get("Nex-Error") ?? "error" };
}

function hostCode(code: number): HostError["code"] {
  if (code === 401 || code === 403) return "forbidden";
  if (code === 404) return "not_found";
  if (code === 409) return "exists";
  if (code === 413) return "too_large";
  if (code === 503) return "overloaded";
  if (code >= 400 && code < 500) return "bad_request";
  return "internal";
}

function parseJson<T>(text: string): T | null {
  try {
    return JSON.parse(text) as T;
  } catch {
    return null;
  }
}

