// HTTP triggers: a deploy's route (path prefix, optional host and methods), the subject the gateway sends
// requests to, and the mapping between an HTTP request/response and a NATS request/reply (README, "HTTP
// triggers").
//
// One hop: the gateway in a node publishes a request to $NEX.HTTP.<ns>.<name>, which the node adds to the
// workload's trigger subjects, so the workload's queue group (nex.<ns>.<name>) answers it as any trigger
// and replicas share the load. The body is the payload; the request line and headers travel as NATS
// headers; the reply's headers carry the status and the response headers.

import { z } from "zod";

/** The subject prefix of HTTP requests; never a trigger subject a deploy may name ($NEX is refused there). */
export const HTTP_SUBJECT_PREFIX = "$NEX.HTTP.";

/** The subject a workload's HTTP requests arrive on (its namespace and name: replicas share it). */
export function httpSubject(namespace: string, name: string): string {
  return `${HTTP_SUBJECT_PREFIX}${namespace}.${name}`;
}

/** NATS headers of a request from the gateway. */
export const HttpHeaders = {
  method: "Nex-Http-Method",
  /** The path as the client sent it (percent-encoded), without the query. */
  path: "Nex-Http-Path",
  /** The query string without '?', absent when there is none. */
  query: "Nex-Http-Query",
  /** http://<host><path>?<query>, as the client addressed it. */
  url: "Nex-Http-Url",
  /** The route prefix that matched (the deploy's --http-path). */
  route: "Nex-Http-Route",
  /** The client's address. */
  remote: "Nex-Http-Remote",
  /** On a reply: the HTTP status (default 200). */
  status: "Nex-Status",
} as const;

export const HTTP_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"] as const;
export type HttpMethod = (typeof HTTP_METHODS)[number];

/** Hop-by-hop headers (RFC 9110 7.6.1) and those the gateway sets itself: never passed either way. */
export const HOP_BY_HOP = new Set(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authorization", "proxy-authenticate", "content-length"]);

/** A header a client or a workload may not pass through the gateway: hop-by-hop, or one of NATS' or nex's own. */
export function reservedHeader(lowerName: string): boolean {
  return HOP_BY_HOP.has(lowerName) || lowerName.startsWith("nex-") || lowerName.startsWith("nats-");
}

const PATH_CHARS = /^[A-Za-z0-9._~!$&'()*+,;=:@/-]+$/;

/** Why a route prefix is not acceptable, or undefined. */
export function routePathProblem(p: string): string | undefined {
  if (!p.startsWith("/")) return "must start with /";
  if (p.length > 256) return "must be at most 256 characters";
  if (!PATH_CHARS.test(p)) return "may contain only letters, digits and - . _ ~ ! $ & ' ( ) * + , ; = : @ / (no % escapes, no spaces)";
  if (p !== "/" && p.endsWith("/")) return "may not end with / (a prefix covers what is below it)";
  if (p.includes("//")) return "may not contain //";
  if (p.split("/").some((s) => s === "." || s === "..")) return "may not contain . or .. segments";
  return undefined;
}

/** Why a route host is not acceptable, or undefined. */
export function routeHostProblem(h: string): string | undefined {
  if (!/^[a-z0-9]([a-z0-9-]{0,62})(\.[a-z0-9]([a-z0-9-]{0,62}))*$/.test(h) || h.length > 253) return "must be a lowercase host name (letters, digits, '-', dots; no port)";
  return undefined;
}

/**
 * Why a whole route (path and host together) is not acceptable, or undefined. A host-less "/" would
 * cover every path of every host: the first namespace to claim it would hold the gateways' whole surface
 * (every other namespace's route overlaps it), as a trigger subject may not start with a wildcard.
 */
export function routeProblem(route: { path: string; host?: string }): string | undefined {
  if (route.path === "/" && route.host === undefined) return "needs a host (--http-host): without one it would cover every path of every host";
  return undefined;
}

export const HttpRouteSchema = z.strictObject({
  /** Path prefix: requests to it and below it go to the workload. */
  path: z.string().superRefine((p, ctx) => {
    const problem = routePathProblem(p);
    if (problem) ctx.addIssue({ code: "custom", message: `http path ${JSON.stringify(p)} ${problem}` });
  }),
  /** Only requests whose Host header names this host (port aside); any host when absent. */
  host: z
    .string()
    .superRefine((h, ctx) => {
      const problem = routeHostProblem(h);
      if (problem) ctx.addIssue({ code: "custom", message: `http host ${JSON.stringify(h)} ${problem}` });
    })
    .optional(),
  /** Methods the route takes (HEAD goes with GET); all when absent. */
  methods: z.array(z.enum(HTTP_METHODS)).min(1).max(HTTP_METHODS.length).optional(),
}).superRefine((r, ctx) => {
  const problem = routeProblem(r);
  if (problem) ctx.addIssue({ code: "custom", path: ["path"], message: `http path ${JSON.stringify(r.path)} ${problem}` });
});
export type HttpRoute = z.infer<typeof HttpRouteSchema>;

/** Whether the prefix covers the path: itself, or below it on a segment boundary. */
export function prefixCovers(prefix: string, path: string): boolean {
  return prefix === "/" || path === prefix || (path.startsWith(prefix) && path.charCodeAt(prefix.length) === 47);
}

/** Two routes overlap when a request could match both: compatible hosts and nested prefixes. */
export function routesOverlap(a: Pick<HttpRoute, "path" | "host">, b: Pick<HttpRoute, "path" | "host">): boolean {
  if (a.host !== undefined && b.host !== undefined && a.host !== b.host) return false;
  return prefixCovers(a.path, b.path) || prefixCovers(b.path, a.path);
}

/** Whether the route allows the method (HEAD with GET). */
export function methodAllowed(methods: readonly string[] | undefined, method: string): boolean {
  if (!methods) return true;
  return methods.includes(method) || (method === "HEAD" && methods.includes("GET"));
}
