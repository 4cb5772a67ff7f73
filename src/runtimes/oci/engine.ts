// The Docker-API engine behind oci workloads: where it is, whether it answers, and the image a workload
// names (taken from the local store, pulled only when missing). Every failure is one readable line that
// says which engine or image it is about.

import Docker from "dockerode";
import { settleWithin } from "../../util/settle-within.js";

export interface Engine {
  docker: Docker;
  /** Where the engine is, for messages: a socket path or tcp://host:port. */
  address: string;
}

const DEFAULT_SOCKET = "/var/run/docker.sock";
const PING_TIMEOUT_MS = 5_000;

/** dockerHost as in DOCKER_HOST: unix:///path, a bare socket path, or tcp://host:port; absent: $DOCKER_HOST or the local socket. */
export function openEngine(dockerHost?: string): Engine {
  if (!dockerHost) {
    // dockerode reads DOCKER_HOST (and its TLS variables) itself.
    return { docker: new Docker(), address: process.env.DOCKER_HOST || DEFAULT_SOCKET };
  }
  if (dockerHost.startsWith("unix://") || dockerHost.startsWith("/")) {
    const socketPath = dockerHost.replace(/^unix:\/\//, "");
    return { docker: new Docker({ socketPath }), address: socketPath };
  }
  const url = new URL(dockerHost.replace(/^tcp:\/\//, "http://"));
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new Error(`docker_host ${dockerHost}: expected unix:///path or tcp://host:port`);
  return {
    docker: new Docker({ host: url.hostname, port: Number(url.port || 2375), protocol: url.protocol === "https:" ? "https" : "http" }),
    address: dockerHost,
  };
}

/** The engine's own message for a failed call ("No such image: x"), else the error's. */
export function engineMessage(err: unknown): string {
  const json = (err as { json?: { message?: unknown } } | undefined)?.json;
  if (json && typeof json.message === "string") return json.message.trim();
  return err instanceof Error ? err.message : String(err);
}

export function statusCode(err: unknown): number | undefined {
  return (err as { statusCode?: number } | undefined)?.statusCode;
}

/** Resolves when the engine answers a ping; otherwise rejects with where it looked and why it failed. */
export async function checkEngine(engine: Engine): Promise<void> {
  try {
    const answered = await settleWithin(engine.docker.ping().then(() => true), PING_TIMEOUT_MS);
    if (!answered) throw new Error(`no answer in ${PING_TIMEOUT_MS} ms`);
  } catch (err) {
    throw new Error(`Docker engine not reachable at ${engine.address}: ${engineMessage(err)}`);
  }
}

/** The local image's id; a missing image is pulled (registries only), bounded by timeoutMs. */
export async function resolveImage(engine: Engine, ref: string, timeoutMs: number): Promise<string> {
  try {
    return (await engine.docker.getImage(ref).inspect()).Id;
  } catch (err) {
    if (statusCode(err) !== 404) throw new Error(`cannot inspect image ${ref}: ${engineMessage(err)}`);
  }
  try {
    await pull(engine.docker, ref, timeoutMs);
    return (await engine.docker.getImage(ref).inspect()).Id;
  } catch (err) {
    throw new Error(`image ${ref} is not on the node's engine and could not be pulled: ${engineMessage(err)}`);
  }
}

/** A pull's response stream ends when the pull is done, not when the request returns: follow it to the end. */
function pull(docker: Docker, ref: string, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`pull took longer than ${timeoutMs} ms`)), timeoutMs);
    const done = (err: unknown): void => {
      clearTimeout(timer);
      if (err) reject(err);
      else resolve();
    };
    docker.pull(ref, (err: unknown, stream: NodeJS.ReadableStream) => {
      if (err) return done(err);
      docker.modem.followProgress(stream, (progressErr: unknown, output: { error?: string }[]) => {
        const failed = output?.find((o) => o.error);
        done(progressErr ?? (failed ? new Error(failed.error) : undefined));
      });
    });
  });
}
