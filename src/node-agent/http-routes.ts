// Which workload serves which HTTP route, on every node of the bus. Routes live in the KV bucket
// NEX_HTTP_ROUTES, one entry per workload (key <node>.<workload>, value {namespace, name, route}); every
// node keeps a live copy (live-claims.ts), so its gateway serves every route of every namespace and a
// deploy's check costs no request (as trigger-claims.ts does for subjects).
//
// A namespace owns its routes: a deploy whose route overlaps (hosts compatible, one prefix covering the
// other) a route of another namespace is refused, so no tenant can take over another's paths, not even
// a longer prefix below them. Inside a namespace the same route may be served by replicas (same name);
// two different workloads on the same host and prefix are refused, as the gateway could not tell them apart.

import type { NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "pino";
import type { StaticFile, StaticManifest } from "../protocol/static.js";
import { type HttpRoute, HttpRouteSchema, httpSubject, prefixCovers, routesOverlap } from "../protocol/http.js";
import { NAMESPACE_PATTERN, token } from "../protocol/control.js";
import { LiveClaims } from "../cluster/live-claims.js";

const BUCKET = "NEX_HTTP_ROUTES";

export interface RouteClaim {
  namespace: string;
  /** The workload name: its HTTP subject is $NEX.HTTP.<namespace>.<name>. */
  name: string;
  route: HttpRoute;
  /** A static workload's files (path → sha256, size, type) and its manifest's hash: the gateways serve them from the object store. */
  static?: { manifest: string; files: StaticManifest["files"] };
}

/** A route as the gateway matches it; a static route's files in a Map, so no path finds an Object.prototype member. */
export interface ServedRoute extends Omit<RouteClaim, "static"> {
  subject: string;
  static?: { manifest: string; files: ReadonlyMap<string, StaticFile> };
}

/**
 * A claim read from the bucket, checked as a deploy's route is: anyone who can write the bucket could
 * put `methods: 1` there (a throw in every gateway's request handler) or a path "" (every path).
 */
function readRoute(json: unknown): RouteClaim | null {
  const c = json as RouteClaim | null;
  if (typeof c !== "object" || c === null) return null;
  if (typeof c.namespace !== "string" || !NAMESPACE_PATTERN.test(c.namespace) || !token.safeParse(c.name).success) return null;
  const route = HttpRouteSchema.safeParse(c.route);
  if (!route.success) return null;
  if (c.static !== undefined) {
    const files: unknown = c.static?.files;
    if (typeof c.static?.manifest !== "string" || typeof files !== "object" || files === null || Array.isArray(files)) return null;
  }
  return { namespace: c.namespace, name: c.name, route: route.data, ...(c.static !== undefined ? { static: c.static } : {}) };
}

/** Maps built from claims' file records (a claim's record does not change), so a rebuild does not copy them again. */
const fileMaps = new WeakMap<object, ReadonlyMap<string, StaticFile>>();

/**
 * A static claim's files as a Map of its own entries (a record parsed from JSON has Object.prototype:
 * files["constructor"] would be a function). Entries that are not a file (sha256, size, type) are left out.
 */
function fileMap(files: StaticManifest["files"]): ReadonlyMap<string, StaticFile> {
  let map = fileMaps.get(files);
  if (!map) {
    const m = new Map<string, StaticFile>();
    for (const [p, f] of Object.entries(files)) {
      if (typeof f === "object" && f !== null && typeof f.sha256 === "string" && /^[0-9a-f]{64}$/.test(f.sha256) && typeof f.size === "number" && typeof f.type === "string") m.set(p, f);
    }
    fileMaps.set(files, (map = m));
  }
  return map;
}

export class HttpRoutes {
  /** Longest prefix first, then host-specific before any-host: the first match wins. */
  private table: ServedRoute[] = [];
  private claims!: LiveClaims<RouteClaim>;

  static async open(nc: NatsConnection, nodeId: string, log?: Logger): Promise<HttpRoutes> {
    const routes = new HttpRoutes();
    routes.claims = await LiveClaims.open(nc, BUCKET, nodeId, readRoute, () => routes.rebuild(), log);
    routes.rebuild();
    return routes;
  }

  /** Why the route may not be claimed for this workload, or undefined. */
  conflict(namespace: string, name: string, route: HttpRoute): string | undefined {
    for (const claim of this.claims.values()) {
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
    await this.claims.put(workloadId, claim);
    return undefined;
  }

  async release(workloadId: string): Promise<void> {
    if (this.claims.has(workloadId)) await this.claims.drop(workloadId);
  }

  /** After a restart: drops this node's routes for workloads it no longer runs. */
  keepOnly(workloadIds: Set<string>): Promise<void> {
    return this.claims.keepOnly(workloadIds);
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
    this.claims.close();
  }

  private rebuild(): void {
    if (!this.claims) return; // claims loading: the table is built once they are in
    const seen = new Set<string>();
    const table: ServedRoute[] = [];
    // Newest first: of replicas of one workload name (a static redeploy), the latest claim is served.
    const newest = this.claims.withRevisions().sort((a, b) => b.revision - a.revision);
    for (const { claim } of newest) {
      const id = `${claim.namespace} ${claim.name} ${claim.route.host ?? ""} ${claim.route.path}`;
      if (seen.has(id)) continue;
      seen.add(id);
      const { static: files, ...rest } = claim;
      table.push({ ...rest, subject: httpSubject(claim.namespace, claim.name), ...(files ? { static: { manifest: files.manifest, files: fileMap(files.files) } } : {}) });
    }
    table.sort((a, b) => b.route.path.length - a.route.path.length || (a.route.host === undefined ? 1 : 0) - (b.route.host === undefined ? 1 : 0));
    this.table = table;
  }
}

function describe(route: HttpRoute): string {
  return `${route.host ?? ""}${route.path}`;
}
