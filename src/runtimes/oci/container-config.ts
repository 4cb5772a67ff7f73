// What a workload's container looks like to the engine: its environment (the deploy request's values plus
// the NEX_* connection and identity variables), limits, labels and the privileges it does without.

import { createHash } from "node:crypto";
import type { ContainerCreateOptions } from "dockerode";
import { triggerQueueGroup } from "../../protocol/control.js";
import { workloadInboxPrefix } from "../../protocol/workload-permissions.js";
import type { ContainerSpec, NatsAuth } from "../types.js";

export const Labels = {
  node: "io.nex.node",
  workload: "io.nex.workload",
  namespace: "io.nex.namespace",
  name: "io.nex.name",
  /** Hash of the create options: a container left by a previous run is adopted only when it matches. */
  spec: "io.nex.spec",
} as const;

/** A fork bomb stops here unless the workload asks for more (limits.pids). */
const DEFAULT_PIDS_LIMIT = 256;

export interface ContainerContext {
  nodeId: string;
  /** The broker URL(s) the node uses, comma-separated. */
  natsUrl: string;
  natsAuth?: NatsAuth;
  /** The local image id the reference resolved to (part of the spec hash). */
  imageId: string;
  /** uid[:gid] the container's command runs as. */
  user: string;
}

/** Containers run as nobody unless the operator says otherwise: root in a container is one kernel bug from root on the node. */
export const DEFAULT_CONTAINER_USER = "65534:65534";

/** The node's broker URL(s) with its credentials in them, as NATS clients take them: nats://user:pass@host:port. */
export function natsUrlWithAuth(natsUrl: string, auth: NatsAuth | undefined): string {
  if (!auth?.user && !auth?.token) return natsUrl;
  return natsUrl
    .split(",")
    .map((server) => {
      const trimmed = server.trim();
      const url = new URL(trimmed.includes("://") ? trimmed : `nats://${trimmed}`);
      if (auth.user) {
        url.username = auth.user;
        url.password = auth.pass ?? "";
      } else if (auth.token) {
        url.username = auth.token;
      }
      return url.toString().replace(/\/$/, "");
    })
    .join(",");
}

/** Deploy env first, then the NEX_* values, which a workload cannot override. */
function containerEnv(spec: ContainerSpec, ctx: ContainerContext): string[] {
  const env: Record<string, string> = {
    ...spec.env,
    NEX_NATS_URL: natsUrlWithAuth(ctx.natsUrl, spec.natsAuth ?? ctx.natsAuth),
    // A workload user may subscribe only under its own inbox prefix (nats.js: the inboxPrefix option).
    ...(spec.natsAuth ? { NEX_INBOX_PREFIX: workloadInboxPrefix(spec.id) } : {}),
    NEX_WORKLOAD_ID: spec.id,
    NEX_WORKLOAD_NAME: spec.name,
    NEX_NAMESPACE: spec.namespace,
    NEX_NODE_ID: ctx.nodeId,
    NEX_TRIGGER_SUBJECTS: spec.triggerSubjects.join(","),
    NEX_QUEUE_GROUP: triggerQueueGroup(spec.namespace, spec.name),
  };
  return Object.entries(env).map(([key, value]) => {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) throw new Error(`environment name ${JSON.stringify(key)} is not a valid variable name`);
    if (value.includes("\0")) throw new Error(`environment value of ${key} contains a NUL byte`);
    return `${key}=${value}`;
  });
}

function containerName(workloadId: string): string {
  return `nex-${workloadId}`;
}

export function createOptions(spec: ContainerSpec, ctx: ContainerContext): ContainerCreateOptions {
  const options = spec.container;
  const memoryBytes = spec.limits.memoryMb * 1024 * 1024;
  const config: ContainerCreateOptions = {
    name: containerName(spec.id),
    Image: spec.image,
    User: ctx.user,
    Env: containerEnv(spec, ctx),
    ...(options.argv ? { Cmd: options.argv } : {}),
    Tty: false,
    OpenStdin: false,
    AttachStdout: true,
    AttachStderr: true,
    Labels: {
      [Labels.node]: ctx.nodeId,
      [Labels.workload]: spec.id,
      [Labels.namespace]: spec.namespace,
      [Labels.name]: spec.name,
    },
    HostConfig: {
      // The container reaches the broker on loopback, like any process on the node.
      NetworkMode: "host",
      Memory: memoryBytes,
      MemorySwap: memoryBytes, // no swap on top of the memory limit
      ...(spec.limits.cpus !== undefined ? { NanoCpus: Math.round(spec.limits.cpus * 1e9) } : {}),
      PidsLimit: spec.limits.pids ?? DEFAULT_PIDS_LIMIT,
      CapDrop: ["ALL"],
      SecurityOpt: ["no-new-privileges"],
      ReadonlyRootfs: options.readOnlyRootfs,
      // Scratch space that dies with the container (and counts against its memory).
      Tmpfs: { "/tmp": "rw,nosuid,nodev,size=64m" },
      // The node restarts containers itself (with backoff and events), never the engine.
      RestartPolicy: { Name: "no" },
      AutoRemove: false,
      // No init process: the command is PID 1, as with a plain `docker run`, so a missing program fails the
      // deploy. As PID 1 it must handle SIGTERM itself, or undeploy ends it with SIGKILL after the grace period.
    },
  };
  const hash = createHash("sha256").update(ctx.imageId).update(JSON.stringify(config)).digest("hex").slice(0, 16);
  (config.Labels as Record<string, string>)[Labels.spec] = hash;
  return config;
}
