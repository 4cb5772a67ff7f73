// Which workload serves which HTTP route, on every node of the bus. Routes live in the KV bucket
// NEX_HTTP_ROUTES, one entry per workload (key <node>.<workload>, value {namespace, name, route}); every
// node keeps a live copy through a watch, so its gateway serves every route of every namespace and a
// deploy's check costs no request (as trigger-claims.ts does for subjects).
//
// A namespace owns its routes: a deploy whose route overlaps (hosts compatible, one prefix covering the
// other) a route of another namespace is refused, so no tenant can take over another's paths, not even
// a longer prefix below them. Inside a namespace the same route may be served by replicas (same name);
// two different workloads on the same host and prefix are refused, as the gateway could not tell them apart.

import type { NatsConnection } from "@nats-io/transport-node";
import { Kvm, type KV, type KvEntry } from "@nats-io/kv";
import type { StaticManifest } from "../protocol/static.js";
import { type HttpRoute, httpSubject, prefixCovers, routesOverlap } from "../protocol/http.js";

const BUCKET = "NEX_HTTP_ROUTES";

export interface RouteClaim {
  namespace: string;
  /** The workload name: its HTTP subject is $NEX.HTTP.<namespace>.<name>. */
  name: string;
  route: HttpRoute;
  /** A static workload's files (path → sha256, size, type) and its manifest's hash: the gateways serve them from the object store. */
  static?: { manifest: string; files: StaticManifest["files"] };
}

/** A route as the gateway matches it. */
export interface ServedRoute extends RouteClaim {
  subject: string;
}

export class HttpRoutes {
  private readonly claims = new Map<string, { revision: number; claim: RouteClaim }>();
  /** Longest prefix first, then host-specific before any-host: the first match wins. */
  private table: ServedRoute[] = [];
  private stopWatching?: () => void;

  private constructor(
    private readonly kv: KV,
    private readonly nodeId: string,
  ) {}

  static async open(nc: NatsConnection, nodeId: string): Promise<HttpRoutes> {
    const routes = new HttpRoutes(await new Kvm(nc).create(BUCKET, { history: 1 }), nodeId);
    await routes.load();
    return routes;
  }

  /** Why the route may not be claimed for this workload, or undefined. */
  conflict(namespace: string, name: string, route: HttpRoute): string | undefined {
    for (const { claim } of this.claims.values()) {
      if (claim.namespace !== namespace) {
        if (routesOverlap(claim.route, route)) {
          return `http route ${describe(route)} overlaps ${describe(claim.route)}, which namespace ${claim.namespace} serves`;
        }
      } else if (claim.name !== name && claim.route.path === route.path && claim.route.host === route.host) {
        return `http route ${describe(route)} is served by workload ${claim.name} of this namespace`;
      }
    }
    return undefined;
  }

  /** Claims the route (checked and recorded in one turn, so two deploys on this node cannot both pass); the conflict instead, if any. */
  async claim(workloadId: string, claim: RouteClaim): Promise<string | undefined> {
    const conflict = this.conflict(claim.namespace, claim.name, claim.route);
    if (conflict) return conflict;
    const key = this.key(workloadId);
    this.set(key, this.claims.get(key)?.revision ?? 0, claim);
    let revision: number;
    try {
      revision = await this.kv.put(key, JSON.stringify(claim));
    } catch (err) {
      this.delete(key);
      throw err;
    }
    this.apply(key, revision, claim);
    return undefined;
  }

  async release(workloadId: string): Promise<void> {
    const key = this.key(workloadId);
    if (!this.claims.has(key)) return;
    await this.kv.delete(key).catch(() => undefined);
    this.delete(key);
  }

  /** After a restart: drops this node's routes for workloads it no longer runs. */
  async keepOnly(workloadIds: Set<string>): Promise<void> {
    const prefix = `${this.nodeId}.`;
    const stale = [...this.claims.keys()].filter((k) => k.startsWith(prefix) && !workloadIds.has(k.slice(prefix.length)));
    for (const key of stale) {
      await this.kv.delete(key).catch(() => undefined);
      this.delete(key);
    }
  }

  /** The route for a request: host (lowercase, no port) and path; the longest prefix wins. */
  match(host: string, path: string): ServedRoute | undefined {
    for (const r of this.table) {
      if (r.route.host !== undefined && r.route.host !== host) continue;
      if (prefixCovers(r.route.path, path)) return r;
    }
    return undefined;
  }

  close(): void {
    this.stopWatching?.();
  }

  private key(workloadId: string): string {
    return `${this.nodeId}.${workloadId}`;
  }

  private async load(): Promise<void> {
    const watch = await this.kv.watch({ include: "updates" });
    this.stopWatching = () => watch.stop();
    void (async () => {
      for await (const entry of watch) this.applyEntry(entry);
    })().catch(() => undefined);
    const keys: string[] = [];
    for await (const key of await this.kv.keys()) keys.push(key);
    for (const key of keys) {
      const entry = await this.kv.get(key);
      if (entry) this.applyEntry(entry);
    }
  }

  private applyEntry(entry: KvEntry): void {
    let claim: RouteClaim | null = null;
    if (entry.operation === "PUT") {
      try {
        claim = JSON.parse(entry.string()) as RouteClaim;
        if (typeof claim?.route?.path !== "string" || typeof claim.namespace !== "string" || typeof claim.name !== "string") claim = null;
      } catch {
        claim = null;
      }
    }
    this.apply(entry.key, entry.revision, claim);
  }

  private apply(key: string, revision: number, claim: RouteClaim | null): void {
    const known = this.claims.get(key);
    if (known && known.revision >= revision) return;
    if (claim) this.set(key, revision, claim);
    else this.delete(key);
  }

  private set(key: string, revision: number, claim: RouteClaim): void {
    this.claims.set(key, { revision, claim });
    this.rebuild();
  }

  private delete(key: string): void {
    if (this.claims.delete(key)) this.rebuild();
  }

  private rebuild(): void {
    const seen = new Set<string>();
    const table: ServedRoute[] = [];
    // Newest first: of replicas of one workload name (a static redeploy), the latest claim is served.
    const newest = [...this.claims.values()].sort((a, b) => b.revision - a.revision);
    for (const { claim } of newest) {
      const id = `${claim.namespace} ${claim.name} ${claim.route.host ?? ""} ${claim.route.path}`;
      if (seen.has(id)) continue;
      seen.add(id);
      table.push({ ...claim, subject: httpSubject(claim.namespace, claim.name) });
    }
    table.sort((a, b) => b.route.path.length - a.route.path.length || (a.route.host === undefined ? 1 : 0) - (b.route.host === undefined ? 1 : 0));
    this.table = table;
  }
}

function describe(route: HttpRoute): string {
  return `${route.host ?? ""}${route.path}`;
}
