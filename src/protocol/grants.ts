// Workloads that deploy workloads: the deploy grant an issuer signs for a parent, and the child deploy
// and undeploy requests a parent's node sends on the parent's behalf.
//
// A grant is the issuer's word: "the workload deployed with this grant, in namespace N, may deploy these
// artifacts (by SHA-256, with their file names), at most max_children at once, until it is undeployed".
// It travels in the parent's deploy request as { body, issuer, signature }: `body` is the grant's JSON
// text exactly as signed, so no canonical form is needed. Its random grant_id is bound to the parent's
// workload id, once, in the NEX_GRANTS registry by the parent's node (node-agent/child-workloads.ts);
// a captured grant put into another deploy request finds that binding taken.
//
// Child requests are signed by the parent's node with its node nkey (the node id is the public key),
// over subject + body as control requests are (signing.ts), and carry the issuer-signed grant.

import type { KeyPair } from "@nats-io/nkeys";
import { z } from "zod";
import { PROTOCOL_VERSION, token } from "./control.js";
import { signRequest, verifyRequest } from "./signing.js";

/** Most artifacts one grant names; most children one grant allows at once. */
export const MAX_GRANT_ARTIFACTS = 64;
export const MAX_CHILDREN_CEILING = 1000;
export const DEFAULT_MAX_CHILDREN = 10;

/** A file name without directories: what a parent names an artifact by. */
const fileName = z
  .string()
  .min(1)
  .max(255)
  .regex(/^[^/\\\0]+$/, "must be a file name without directories")
  .refine((s) => s !== "." && s !== "..", "must be a file name");

export const GrantArtifactSchema = z.strictObject({
  name: fileName,
  sha256: z.string().regex(/^[0-9a-f]{64}$/, "must be 64 lowercase hex digits"),
  type: z.enum(["javascript", "wasm"]),
});
export type GrantArtifact = z.infer<typeof GrantArtifactSchema>;

export const GrantBodySchema = z.strictObject({
  version: z.literal(PROTOCOL_VERSION),
  kind: z.literal("nex-deploy-grant"),
  /** Random, 32 hex digits: the key the registry binds to the parent. */
  grant_id: z.string().regex(/^[0-9a-f]{32}$/, "must be 32 lowercase hex digits"),
  namespace: z.string().regex(/^[A-Za-z0-9-]{1,64}$/),
  artifacts: z.array(GrantArtifactSchema).min(1).max(MAX_GRANT_ARTIFACTS),
  max_children: z.number().int().min(1).max(MAX_CHILDREN_CEILING),
  issued_at: z.string().datetime(),
});
export type GrantBody = z.infer<typeof GrantBodySchema>;

/** The grant as it travels: the signed JSON text, who signed it, the signature. */
export const SignedGrantSchema = z.strictObject({
  body: z.string().min(1).max(64 * 1024),
  issuer: z.string().regex(/^A[A-Z2-7]{55}$/, "must be an account public nkey (A...)"),
  signature: z.string().min(1).max(200),
});
export type SignedGrant = z.infer<typeof SignedGrantSchema>;

const GRANT_CONTEXT = "nex-deploy-grant\n";

export function signGrant(issuer: KeyPair, body: GrantBody): SignedGrant {
  const text = JSON.stringify(body);
  const h = signRequest(issuer, GRANT_CONTEXT.trimEnd(), new TextEncoder().encode(text));
  return { body: text, issuer: issuer.getPublicKey(), signature: h["Nex-Signature"] };
}

/** The grant's body when its signature is the issuer's; a reason otherwise. */
export function verifyGrant(grant: SignedGrant): { body: GrantBody } | { problem: string } {
  const checked = SignedGrantSchema.safeParse(grant);
  if (!checked.success) return { problem: "grant is malformed" };
  const verified = verifyRequest(GRANT_CONTEXT.trimEnd(), new TextEncoder().encode(grant.body), grant.issuer, grant.signature);
  if ("problem" in verified) return { problem: `grant: ${verified.problem}` };
  let json: unknown;
  try {
    json = JSON.parse(grant.body);
  } catch {
    return { problem: "grant body is not JSON" };
  }
  const body = GrantBodySchema.safeParse(json);
  if (!body.success) return { problem: `grant body is invalid: ${body.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}` };
  return { body: body.data };
}

/** What a parent asks for in workloads.deploy (JSON body of the host call). */
export const ChildSpecSchema = z.strictObject({
  name: token,
  /** A file name of the grant, or its SHA-256. */
  artifact: z.string().min(1).max(255),
  service: z.boolean().optional(),
  trigger_subjects: z.array(z.string()).max(64).optional(),
  env: z.record(z.string(), z.string()).optional(),
  limits: z.strictObject({ memory_mb: z.number().int().optional(), timeout_ms: z.number().int().optional(), cpu_ms: z.number().int().optional() }).optional(),
  tags: z.record(z.string(), z.string()).optional(),
});
export type ChildSpec = z.infer<typeof ChildSpecSchema>;

/** A child deploy, from the parent's node to the chosen node: $NEX.SVC.<ns>.control.DEPLOY_CHILD.<node>. */
export const ChildDeployRequestSchema = z.strictObject({
  version: z.literal(PROTOCOL_VERSION),
  requested_at: z.string().datetime(),
  grant: SignedGrantSchema,
  parent_id: z.string().regex(/^[0-9a-f]{1,64}$/),
  /** The child's workload id, chosen by the parent's node when it claimed the slot. */
  child_id: z.string().regex(/^[0-9a-f]{20}$/),
  /** The registry slot (0 ≤ slot < max_children) the parent's node claimed for this child. */
  slot: z.number().int().min(0).max(MAX_CHILDREN_CEILING - 1),
  /** The child's deploy request (validated as any deploy request is); its artifact must be one of the grant's. */
  deploy: z.record(z.string(), z.unknown()),
});
export type ChildDeployRequest = z.infer<typeof ChildDeployRequestSchema>;

/** A child stop, from the parent's node to the child's node: $NEX.SVC.<ns>.control.UNDEPLOY_CHILD.<node>. */
export const ChildUndeployRequestSchema = z.strictObject({
  version: z.literal(PROTOCOL_VERSION),
  requested_at: z.string().datetime(),
  grant_id: z.string().regex(/^[0-9a-f]{32}$/),
  parent_id: z.string().regex(/^[0-9a-f]{1,64}$/),
  child_id: z.string().regex(/^[0-9a-f]{20}$/),
  reason: z.enum(["undeployed by its parent", "parent undeployed"]),
});
export type ChildUndeployRequest = z.infer<typeof ChildUndeployRequestSchema>;

export const ChildSubjects = {
  deploy: (ns: string, node: string) => `$NEX.SVC.${ns}.control.DEPLOY_CHILD.${node}`,
  undeploy: (ns: string, node: string) => `$NEX.SVC.${ns}.control.UNDEPLOY_CHILD.${node}`,
};

/** Headers of a node-signed request: the node id (an N... nkey) and its signature. */
export const NODE_HEADER = "Nex-Node";

export function signAsNode(node: KeyPair, subject: string, body: Uint8Array): Record<string, string> {
  const h = signRequest(node, subject, body);
  return { [NODE_HEADER]: node.getPublicKey(), "Nex-Signature": h["Nex-Signature"] };
}

/** The signing node's id when the signature is by a node key (N...); a reason otherwise. */
export function verifyNodeSigned(subject: string, body: Uint8Array, node: string | undefined, signature: string | undefined): { node: string } | { problem: string } {
  if (!node || !/^N[A-Z2-7]{55}$/.test(node)) return { problem: "child request is not signed by a node (Nex-Node must be a node id)" };
  const verified = verifyRequest(subject, body, node, signature);
  return "problem" in verified ? verified : { node };
}

