// Node-row workloads that talk to the node's control API directly (no CLI process per deploy):
// cold start (deploy request sent → first trigger reply) and density (1,000 functions on one node).
// Artifacts are uploaded the way `nex run` does it (object store bucket NEX_ARTIFACTS, key = SHA-256)
// before anything is timed; deploy requests are signed with a throwaway issuer key (the bench node has
// --allow-any-issuer, so any valid signature is accepted).
//
// Runs in the orchestrator process: these rows measure milliseconds, and the node (broker, agent,
// runtime host) runs in processes of its own. Every loop is bounded by a count and a deadline.

import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { hrtime } from "node:process";
import { connect, type Msg, type NatsConnection } from "@nats-io/transport-node";
import { Objm, type ObjectStore } from "@nats-io/obj";
import { createAccount, type KeyPair } from "@nats-io/nkeys";
import { ControlClient } from "../src/cli/control-client.js";
import { ARTIFACT_BUCKET, DEFAULT_NAMESPACE, PROTOCOL_VERSION, type DeployResponse } from "../src/protocol/control.js";
import { type DeployRequestInput } from "../src/protocol/deploy-request.js";
import { sha256Hex } from "../src/util/sha256.js";
import { REPO_ROOT, withTimeout } from "./servers.js";
import type { RunningNode } from "./node.js";

/** The bucket `nex run` uploads artifacts to (src/cli/run-command.ts). */

const CONNECT_TIMEOUT_MS = 10_000;
const DEPLOY_TIMEOUT_MS = 30_000;
const TRIGGER_TIMEOUT_MS = 10_000;
/** First trigger after a deploy: retries on "no responders" (should not happen: the deploy reply comes after the subscription). */
const FIRST_TRIGGER_RETRIES = 50;
const UPLOAD_WINDOW = 16;

/** Monotonic time for timing a step, and the milliseconds since such a time. */
export const now = (): bigint => hrtime.bigint();
export const msSince = (t: bigint): number => Number(now() - t) / 1e6;
const decoder = new TextDecoder();

/** Source of a small, distinct function: answers `<tag> <subject>`. */
export function functionSource(tag: string): string {
  return `// nex bench function ${tag}\n(subject, payload) => ${JSON.stringify(`${tag} `)} + subject;\n`;
}

/** The trivial function of the trigger rows: returns its payload. */
export const ECHO_SOURCE = "// nex bench: returns its payload\n(subject, payload) => payload;\n";

/** A service (nex run --service) that answers `subject` through ctx.subscribe with its payload. */
export function serviceEchoSource(subject: string): string {
  return `// nex bench: a service answering its payload\nexport default { start(ctx) { ctx.subscribe(${JSON.stringify(subject)}, (subject, payload) => payload); } };\n`;
}

/** A service answering `<tag> <subject>` on `subject` (the cold-start rows' contract). */
export function serviceColdSource(tag: string, subject: string): string {
  return `export default { start(ctx) { ctx.subscribe(${JSON.stringify(subject)}, (s) => ${JSON.stringify(tag)} + " " + s); } };\n`;
}

/** Keys the kvfn function (and its bare peer) roll over: one per trigger, so a key is rewritten every KVFN_KEYS triggers. */
export const KVFN_KEYS = 1024;

/**
 * The kvfn row's function: stores its payload under the next of KVFN_KEYS rolling keys with the KV host
 * service, reads the same key back and returns what it read (both calls synchronous in the isolate). The
 * counter is module state (one warm context; with concurrency 1, one trigger at a time).
 */
export const KVFN_SOURCE =
  "// nex bench kvfn: kv.set(key, payload), then kv.get(key), returns the value read\n" +
  "let n = 0;\n" +
  "(subject, payload) => {\n" +
  `  const key = "k" + (n++ % ${KVFN_KEYS});\n` +
  "  this.hostServices.kv.set(key, payload);\n" +
  "  return this.hostServices.kv.get(key);\n" +
  "};\n";

/**
 * The same work with the awaitable host services (this.hostServices.async): an async function, so the
 * triggers of a batch have their KV calls out at the same time instead of one isolate taking turns.
 */
export const KVFN_ASYNC_SOURCE =
  "// nex bench kvfn, async: await kv.set(key, payload), then await kv.get(key), returns the value read\n" +
  "let n = 0;\n" +
  "(async function (subject, payload) {\n" +
  `  const key = "k" + (n++ % ${KVFN_KEYS});\n` +
  "  const kv = this.hostServices.async.kv;\n" +
  "  await kv.set(key, payload);\n" +
  "  return await kv.get(key);\n" +
  "});\n";

export interface Artifact {
  tag: string;
  subject: string;
  name: string;
  sha256: string;
  bytes: Uint8Array;
}

export function artifactFor(tag: string, subject: string, name: string, source: string | Uint8Array = functionSource(tag)): Artifact {
  const bytes = typeof source === "string" ? new TextEncoder().encode(source) : source;
  return { tag, subject, name, bytes, sha256: sha256Hex(bytes) };
}

export class NodeClient {
  private store: ObjectStore | null = null;
  private readonly issuer: KeyPair = createAccount();

  private readonly control: ControlClient;

  private constructor(
    readonly nc: NatsConnection,
    readonly node: RunningNode,
  ) {
    this.control = new ControlClient(nc, DEFAULT_NAMESPACE, DEPLOY_TIMEOUT_MS);
  }

  static async open(node: RunningNode): Promise<NodeClient> {
    const nc = await connect({ servers: node.url, timeout: CONNECT_TIMEOUT_MS, reconnect: false, name: "nex-bench" });
    return new NodeClient(nc, node);
  }

  async close(): Promise<void> {
    await withTimeout(this.nc.close(), 5000, "closing the bench connection").catch(() => undefined);
  }

  /** Uploads artifacts (content-addressed, like `nex run`), at most UPLOAD_WINDOW at a time. */
  async upload(artifacts: Artifact[], deadline: bigint): Promise<void> {
    this.store ??= await withTimeout(new Objm(this.nc).create(ARTIFACT_BUCKET), DEPLOY_TIMEOUT_MS, `creating ${ARTIFACT_BUCKET}`);
    const store = this.store;
    let next = 0;
    const worker = async () => {
      while (next < artifacts.length) {
        if (now() > deadline) throw new Error(`artifact upload ran out of time after ${next} of ${artifacts.length}`);
        const a = artifacts[next++]!;
        await withTimeout(store.putBlob({ name: a.sha256, description: a.name }, a.bytes), DEPLOY_TIMEOUT_MS, `uploading ${a.name}`);
      }
    };
    await Promise.all(Array.from({ length: Math.min(UPLOAD_WINDOW, artifacts.length) }, worker));
  }

  /** A signed DEPLOY request to this node; throws with the node's reason on an error reply. */
  async deploy(a: Artifact, type: "javascript" | "wasm" = "javascript", service = false): Promise<DeployResponse> {
    const request: DeployRequestInput = {
      version: PROTOCOL_VERSION,
      name: a.name,
      type,
      artifact: { url: `nats://${ARTIFACT_BUCKET}/${a.sha256}`, sha256: a.sha256 },
      trigger_subjects: service ? [] : [a.subject],

      limits: {},
      concurrency: 1,
      tags: {},
      requested_at: new Date().toISOString(),
      ...(service ? { service: true } : {}),
    } as DeployRequestInput;
    try {
      return await this.control.deploy(this.issuer, this.node.nodeId, request);
    } catch (e) {
      throw new Error(`deploy of ${a.name} refused: ${(e as Error).message}`);
    }
  }

  /** One trigger request; checks that the reply is `expect`. Returns the retries ("no responders") it needed. */
  async trigger(subject: string, expect: string, retries = 0, payload = "x"): Promise<number> {
    for (let attempt = 0; ; attempt++) {
      let reply: Msg;
      try {
        reply = await this.nc.request(subject, payload, { timeout: TRIGGER_TIMEOUT_MS });
      } catch (e) {
        const noResponders = /no responders/i.test((e as Error).message) || (e as Error).name === "NoRespondersError";
        if (noResponders && attempt < retries) {
          await new Promise((r) => setTimeout(r, 2));
          continue;
        }
        throw new Error(`${subject}: ${(e as Error).message}`);
      }
      const error = reply.headers?.get("Nex-Error");
      if (error) throw new Error(`${subject}: error reply: ${error}`);
      const got = decoder.decode(reply.data);
      if (got !== expect) throw new Error(`${subject}: expected ${JSON.stringify(expect)}, got ${JSON.stringify(got.slice(0, 80))}`);
      return attempt;
    }
  }

  /** trigger() for one of our artifacts: the reply must be `<tag> <subject>`. */
  triggerArtifact(a: Artifact, retries = 0): Promise<number> {
    return this.trigger(a.subject, `${a.tag} ${a.subject}`, retries);
  }
}

/**
 * Deploys a function (by default the echo function) with the real CLI: `nex run FILE --trigger-subject SUBJ
 * -s URL --node ID`. The file is written to the node's NEX_HOME as `<fileName>.js` (the workload's name).
 */
export async function deployWithCli(
  node: RunningNode,
  subject: string,
  timeoutMs = 60_000,
  fn: { fileName: string; source: string } = { fileName: "bench-echo", source: ECHO_SOURCE },
  service = false,
): Promise<string> {
  const file = path.join(node.home, `${fn.fileName}.js`);
  writeFileSync(file, fn.source);
  const what = service ? ["--service"] : ["--trigger-subject", subject];
  const args = [path.join(REPO_ROOT, "bin", "nex.js"), "run", file, ...what, "-s", node.url, "--node", node.nodeId];
  return await new Promise<string>((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: REPO_ROOT, env: node.env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString("utf8")));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString("utf8")));
    const t = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`nex run did not finish within ${timeoutMs} ms: ${stderr.slice(-500)}`));
    }, timeoutMs);
    child.on("error", (e) => {
      clearTimeout(t);
      reject(e);
    });
    child.on("close", (code) => {
      clearTimeout(t);
      const id = stdout.trim().split("\n").pop() ?? "";
      if (code === 0 && /^[0-9a-f]{8,64}$/.test(id)) resolve(id);
      else reject(new Error(`nex run exited with code ${code}: ${(stderr || stdout).trim().slice(-500)}`));
    });
  });
}

// ----------------------------------------------------------------------- cold start

export interface ColdReport {
  /** Deploy request sent → first trigger reply, one per deploy (ms). */
  totalMs: number[];
  /** Deploy request sent → deploy reply (ms). */
  deployMs: number[];
  /** Deploy reply → first trigger reply (ms). */
  firstReplyMs: number[];
  /** The untimed first deploy on the fresh node (it also starts the runtime host), same measure (ms). */
  firstDeployMs: number;
  /** Trigger retries on "no responders" after a deploy reply (should be 0). */
  retries: number;
  uploadSeconds: number;
}

/** `count` distinct functions, each with its own trigger subject, deployed and triggered one after another. */
export async function runCold(node: RunningNode, count: number, timeLimitMs: number, service = false): Promise<ColdReport> {
  const deadline = now() + BigInt(timeLimitMs) * 1_000_000n;
  const client = await NodeClient.open(node);
  try {
    const stamp = Date.now().toString(36);
    // A service (--service) answers through ctx.subscribe after its start(ctx) ran; a function on its trigger subject.
    const art = (tag: string, subject: string, name: string) => artifactFor(tag, subject, name, service ? serviceColdSource(tag, subject) : undefined);
    const warm = art(`cold-warm-${stamp}`, "bench.cold.warm", "bench-cold-warm");
    const arts = Array.from({ length: count }, (_, i) => art(`cold-${i}-${stamp}`, `bench.cold.${i}`, `bench-cold-${i}`));
    const u0 = now();
    await client.upload([warm, ...arts], deadline);
    const uploadSeconds = msSince(u0) / 1000;

    let retries = 0;
    const t0 = now();
    await client.deploy(warm, "javascript", service);
    retries += await client.triggerArtifact(warm, FIRST_TRIGGER_RETRIES);
    const firstDeployMs = msSince(t0);

    const totalMs: number[] = [];
    const deployMs: number[] = [];
    const firstReplyMs: number[] = [];
    for (const a of arts) {
      if (now() > deadline) throw new Error(`cold start ran out of time after ${totalMs.length} of ${count} deploys`);
      const s = now();
      await client.deploy(a, "javascript", service);
      const d = now();
      retries += await client.triggerArtifact(a, FIRST_TRIGGER_RETRIES);
      const e = now();
      totalMs.push(Number(e - s) / 1e6);
      deployMs.push(Number(d - s) / 1e6);
      firstReplyMs.push(Number(e - d) / 1e6);
    }
    return { totalMs, deployMs, firstReplyMs, firstDeployMs, retries, uploadSeconds };
  } finally {
    await client.close();
  }
}

// -------------------------------------------------------------------------- density

export interface DensityReport {
  functions: number;
  /** All deploys, sequential, first one included (it starts the runtime host). */
  deploySeconds: number;
  firstDeployMs: number;
  uploadSeconds: number;
  /** RSS (KiB) after the first deploy and after the last one: the node process and its runtime host. */
  rssAfterFirst: { node: number | null; host: number | null };
  rssAfterAll: { node: number | null; host: number | null };
  /** RSS after the sample triggers ran. */
  rssAfterSample: { node: number | null; host: number | null };
  sampled: number;
  answered: number;
  /** Deploy latency percentiles (ms) over all deploys. */
  deployP50Ms: number;
  deployP99Ms: number;
  /** Mean deploy time of the first and the last 100 deploys (does deploying slow down as the node fills?). */
  first100MeanMs: number;
  last100MeanMs: number;
  sampleErrors: string[];
}

export function percentileOf(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))]!;
}

const mean = (v: number[]): number => (v.length ? v.reduce((a, b) => a + b, 0) / v.length : NaN);

/**
 * Deploys `count` distinct functions one after another (each on its own subject), reads the RSS of the
 * node process and its runtime host, then checks that `sample` evenly spread subjects answer correctly.
 */
export async function runDensity(
  node: RunningNode,
  count: number,
  sample: number,
  timeLimitMs: number,
  rss: () => { node: number | null; host: number | null },
  progress: (msg: string) => void,
): Promise<DensityReport> {
  const deadline = now() + BigInt(timeLimitMs) * 1_000_000n;
  const client = await NodeClient.open(node);
  try {
    const stamp = Date.now().toString(36);
    const width = String(count - 1).length;
    const arts = Array.from({ length: count }, (_, i) => {
      const n = String(i).padStart(width, "0");
      return artifactFor(`density-${n}-${stamp}`, `bench.density.${n}`, `bench-density-${n}`);
    });
    const u0 = now();
    await client.upload(arts, deadline);
    const uploadSeconds = msSince(u0) / 1000;
    progress(`uploaded ${count} artifacts in ${uploadSeconds.toFixed(1)} s`);

    const lat: number[] = [];
    let rssAfterFirst = { node: null as number | null, host: null as number | null };
    const t0 = now();
    let lastLog = t0;
    for (const [i, a] of arts.entries()) {
      if (now() > deadline) {
        throw new Error(`aborted after ${i} of ${count} deploys: over the ${Math.round(timeLimitMs / 1000)} s limit`);
      }
      const s = now();
      await client.deploy(a);
      lat.push(msSince(s));
      if (i === 0) rssAfterFirst = rss();
      if (now() - lastLog > 10_000_000_000n) {
        lastLog = now();
        const r = rss();
        progress(`${i + 1} deployed in ${(msSince(t0) / 1000).toFixed(1)} s; RSS node ${mib(r.node)} MiB, runtime host ${mib(r.host)} MiB`);
      }
    }
    const deploySeconds = msSince(t0) / 1000;
    const rssAfterAll = rss();

    const sampleErrors: string[] = [];
    let answered = 0;
    const picks = Array.from({ length: Math.min(sample, count) }, (_, k) => Math.floor(((k + 0.5) * count) / Math.min(sample, count)));
    for (const i of picks) {
      if (now() > deadline) {
        sampleErrors.push(`ran out of time after ${answered} sample triggers`);
        break;
      }
      try {
        await client.triggerArtifact(arts[i]!);
        answered++;
      } catch (e) {
        sampleErrors.push((e as Error).message);
      }
    }
    const rssAfterSample = rss();
    return {
      functions: count,
      deploySeconds,
      firstDeployMs: lat[0]!,
      uploadSeconds,
      rssAfterFirst,
      rssAfterAll,
      rssAfterSample,
      sampled: picks.length,
      answered,
      deployP50Ms: percentileOf(lat, 0.5),
      deployP99Ms: percentileOf(lat, 0.99),
      first100MeanMs: mean(lat.slice(1, 101)),
      last100MeanMs: mean(lat.slice(-100)),
      sampleErrors,
    };
  } finally {
    await client.close();
  }
}

export function mib(kib: number | null): string {
  return kib === null ? "n/a" : Math.round(kib / 1024).toLocaleString("en-US");
}
