// `nex run <file|image>`: upload the artifact to the object store, pick a node (auction, or --node),
// seal --env to that node's xkey, sign and send the deploy request, print the workload id.

import fs from "node:fs/promises";
import path from "node:path";
import { Command, InvalidArgumentError, Option } from "commander";
import type { NatsConnection } from "@nats-io/transport-node";
import { createObjectStore } from "../util/replicated-buckets.js";
import { ARTIFACT_BUCKET, ControlSubjects, PROTOCOL_VERSION, WORKLOAD_TYPES } from "../protocol/control.js";
import { triggerSubjectProblem } from "../protocol/subjects.js";
import { type DeployCommonInput, type DeployRequestInput, type RestartPolicy } from "../protocol/deploy-request.js";
import { addConnectionOptions, durationArg } from "./connection.js";
import { ControlClient } from "./control-client.js";
import { issuerKey, publisherXkey } from "../util/nex-home.js";
import { type ClientOpts, collect, keyValues, namespaceOption } from "./node-command.js";
import { CliError, ExitCode, printJson, withErrors } from "./output.js";
import { type Spinner, spinner } from "./spinner.js";
import { sha256Hex } from "../util/sha256.js";
import { connectFromOptions } from "./connection.js";
import { contentTypeFor, STATIC_MAX_FILE_BYTES, STATIC_MAX_FILES, STATIC_MAX_TOTAL_BYTES, type StaticManifest, staticPathProblem } from "../protocol/static.js";
import { HTTP_METHODS, type HttpRoute, routeHostProblem, routePathProblem, routeProblem } from "../protocol/http.js";
import { grantArtifacts, maxChildrenArg, newGrant } from "./deploy-grant.js";

interface RunOpts extends ClientOpts {
  type?: DeployRequestInput["type"];
  name?: string;
  triggerSubject?: string[];
  env?: Record<string, string>;
  node?: string;
  tag?: Record<string, string>;
  memory?: number;
  triggerTimeout?: number;
  cpu?: number;
  freshContext?: boolean;
  concurrency?: number;
  replicas: number;
  restart?: RestartPolicy;
  cpus?: number;
  pids?: number;
  writableRootfs?: boolean;
  idempotencyKey?: string;
  trustedNode?: string[];
  service?: boolean;
  allowDeploy?: string[];
  maxChildren?: number;
  httpPath?: string;
  httpHost?: string;
  httpMethod?: string[];
}

function typeFor(file: string, explicit?: DeployRequestInput["type"]): DeployRequestInput["type"] {
  if (explicit) return explicit;
  const ext = path.extname(file).toLowerCase();
  if (ext === ".js" || ext === ".mjs" || ext === ".cjs") return "javascript";
  if (ext === ".wasm") return "wasm";
  throw new CliError(`cannot tell the workload type of ${file}; pass --type javascript|wasm|oci`, ExitCode.usage);
}

/** A workload name from a file (echo.js → echo) or an image (registry/team/greeter:1.2 → greeter). */
function defaultName(file: string, type: DeployRequestInput["type"]): string {
  const last = type === "oci" ? (file.split("/").pop() ?? file).replace(/[@:].*$/, "") : path.basename(file);
  const base = last.replace(/\.[^.]+$/, "").replace(/[^A-Za-z0-9_-]/g, "-").slice(0, 64);
  return base || "workload";
}

/** Uploads content-addressed (key = SHA-256), so re-running the same file uploads nothing. */
async function uploadArtifact(nc: NatsConnection, bytes: Uint8Array, sha256: string, name: string, json: boolean): Promise<string> {
  const store = await createObjectStore(nc, ARTIFACT_BUCKET);
  const existing = await store.info(sha256);
  if (existing && !existing.deleted && existing.size === bytes.length) return `nats://${ARTIFACT_BUCKET}/${sha256}`;
  const s = spinner(`uploading ${name} (${bytes.length} bytes)`, { json });
  try {
    let shown = -1;
    const progress = withProgress(bytes, (sent) => {
      // Whole percents: the text (and the terminal) changes at most a hundred times, however large the file.
      const percent = Math.floor((sent / bytes.length) * 100);
      if (percent === shown) return;
      shown = percent;
      s.update(`uploading ${name}: ${mib(sent)} / ${mib(bytes.length)} (${percent}%)`);
    });
    await store.put({ name: sha256, description: name }, progress);
    s.succeed(`uploaded ${name} (${bytes.length} bytes) to ${ARTIFACT_BUCKET}`);
  } catch (err) {
    s.fail();
    throw err;
  }
  return `nats://${ARTIFACT_BUCKET}/${sha256}`;
}

/** The object store's chunk size: the store publishes (and awaits) one chunk before it reads the next. */
const UPLOAD_SLICE = 128 * 1024;

/**
 * The bytes as a stream the object store pulls a chunk at a time (no read-ahead: highWaterMark 0), so the
 * bytes handed out are the bytes sent, give or take the chunk in flight; `sent` is told as they go.
 */
function withProgress(bytes: Uint8Array, sent: (n: number) => void): ReadableStream<Uint8Array> {
  let offset = 0;
  return new ReadableStream<Uint8Array>(
    {
      pull(controller) {
        if (offset >= bytes.length) return controller.close();
        const slice = bytes.subarray(offset, offset + UPLOAD_SLICE);
        offset += slice.length;
        controller.enqueue(slice);
        sent(offset);
      },
    },
    { highWaterMark: 0 },
  );
}

const mib = (n: number): string => `${(n / 1048576).toFixed(1)} MiB`;

/**
 * Shows in the spinner what the node says the deploy waits for (its workload_preparing event: an image
 * pull, a transpile). Matched by node and name: the workload's id is known only once the deploy answers.
 */
function followPreparing(nc: NatsConnection, namespace: string, nodeId: string, name: string, s: Spinner): { unsubscribe(): void } {
  return nc.subscribe(ControlSubjects.events(namespace, "workload_preparing"), {
    callback: (_err, msg) => {
      try {
        const data = (JSON.parse(msg.string()) as { data?: { node_id?: unknown; name?: unknown; waiting_for?: unknown } }).data;
        if (data?.node_id === nodeId && data.name === name && typeof data.waiting_for === "string") s.update(`deploying ${name} to ${nodeId}: waiting for ${data.waiting_for}`);
      } catch {
        // not an event
      }
    },
  });
}

/** A static deploy's files, found and checked before anything is sent. */
interface StaticFolder {
  dir: string;
  files: { rel: string; abs: string; size: number }[];
}

/**
 * `--type static <dir>`: every regular file under the folder (names starting with "." and symlinks left
 * out), checked as the node checks them (protocol/static.ts: paths, file and total sizes, how many) before
 * the CLI connects or uploads anything.
 */
async function scanStatic(dir: string): Promise<StaticFolder> {
  let stat;
  try {
    stat = await fs.stat(dir);
  } catch {
    throw new CliError(`cannot read ${dir}`, ExitCode.notFound);
  }
  if (!stat.isDirectory()) throw new CliError(`--type static takes a folder; ${dir} is not one`, ExitCode.usage);
  const found: StaticFolder["files"] = [];
  let total = 0;
  const walk = async (abs: string, rel: string): Promise<void> => {
    let entries;
    try {
      entries = await fs.readdir(abs, { withFileTypes: true });
    } catch {
      throw new CliError(`cannot read ${abs}`, ExitCode.notFound);
    }
    for (const e of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
      if (e.name.startsWith(".")) continue;
      const childAbs = path.join(abs, e.name);
      const childRel = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) await walk(childAbs, childRel);
      else if (e.isFile()) {
        const problem = staticPathProblem(childRel);
        if (problem) throw new CliError(`${childRel}: a static file's path ${problem}`, ExitCode.usage);
        const size = (await fs.stat(childAbs)).size;
        if (size > STATIC_MAX_FILE_BYTES) throw new CliError(`${childRel} is ${size} bytes; a static file may be at most ${STATIC_MAX_FILE_BYTES}`, ExitCode.usage);
        total += size;
        found.push({ rel: childRel, abs: childAbs, size });
        if (found.length > STATIC_MAX_FILES) throw new CliError(`${dir} has more than ${STATIC_MAX_FILES} files; a static deploy takes at most ${STATIC_MAX_FILES}`, ExitCode.usage);
        if (total > STATIC_MAX_TOTAL_BYTES) throw new CliError(`${dir} holds more than ${STATIC_MAX_TOTAL_BYTES} bytes; a static deploy takes at most ${STATIC_MAX_TOTAL_BYTES}`, ExitCode.usage);
      }
    }
  };
  await walk(dir, "");
  if (found.length === 0) throw new CliError(`${dir} has no files to serve`, ExitCode.usage);
  return { dir, files: found };
}

/**
 * Uploads a scanned folder: each file under its SHA-256 (unchanged files are not uploaded again), then the
 * manifest (path → sha256, size, type), also content-addressed. A file whose size changed since the scan
 * is refused (the bounds were checked on the sizes the scan saw).
 */
async function uploadStatic(nc: NatsConnection, folder: StaticFolder, json: boolean): Promise<{ url: string; sha256: string }> {
  const files: StaticManifest["files"] = {};
  for (const f of folder.files) {
    const bytes = await fs.readFile(f.abs);
    if (bytes.length !== f.size) throw new CliError(`${f.rel} changed while it was being deployed (${f.size} bytes, now ${bytes.length}); run again`, ExitCode.error);
    const sha = sha256Hex(bytes);
    await uploadArtifact(nc, bytes, sha, f.rel, json);
    files[f.rel] = { sha256: sha, size: bytes.length, type: contentTypeFor(f.rel) };
  }
  const manifest = new TextEncoder().encode(JSON.stringify({ files }));
  const sha256 = sha256Hex(manifest);
  return { url: await uploadArtifact(nc, manifest, sha256, "manifest", json), sha256 };
}

export function runCommand(): Command {
  const cmd = addConnectionOptions(
    new Command("run")
      .description("deploy a workload: a JavaScript file, a .wasm module, (with --type oci) an image, or (with --type static) a folder of web assets")
      .argument("<artifact>", "file to run, or image reference for --type oci")
      .argument("[command...]", "oci: command and arguments instead of the image's CMD (after --)")
      .addOption(new Option("--type <type>", "workload type (default: from the file extension)").choices([...WORKLOAD_TYPES]))
      .option("--name <name>", "workload name (default: the file name)")
      .option("-t, --trigger-subject <subject>", "subject that triggers the function (repeatable)", collect)
      .option("-e, --env <key=value>", "environment value, sealed to the node (repeatable)", keyValues)
      .option("--node <node-id>", "deploy to this node (skips the auction)")
      .option("--tag <key=value>", "only nodes with this tag (repeatable)", keyValues)
      .option("--memory <mb>", "memory limit in MiB", (v) => Number(v))
      .addOption(new Option("--trigger-timeout <duration>", "wall-clock limit per trigger, e.g. 5s").argParser(durationArg))
      .option("--cpu <ms>", "CPU time limit per trigger in ms", (v) => Number(v))
      .option("--fresh-context", "a fresh JS context for every trigger (default: one warm context)")
      .option("--concurrency <n>", "isolates serving in parallel", (v) => Number(v))
      .option("--replicas <n>", "deploy this many copies (spread over the nodes that bid)", (v) => Number(v), 1)
      .option("--service", "javascript: a long-running service (default-exports { start(ctx), stop?(ctx), handle?(subject, payload) })")
      .option("--restart <policy>", "oci and --service: never, on-failure[:max-retries] or always[:max-retries] (default never)", restartArg)
      .option("--cpus <n>", "oci: CPUs the container may use, e.g. 0.5", (v) => Number(v))
      .option("--pids <n>", "oci: most processes in the container (default 256)", (v) => Number(v))
      .option("--writable-rootfs", "oci: a writable root filesystem (read-only by default)")
      .addOption(
        new Option("--trusted-node <node-id>", "deploy only to these nodes (repeatable or comma-separated; bids from others are ignored)")
          .env("NEX_TRUSTED_NODES")
          .argParser(collect),
      )
      .option("--allow-deploy <file>", "this workload may deploy this file as a child workload (repeatable; this.hostServices.workloads)", collect)
      .option("--max-children <n>", "with --allow-deploy: most children at once (default 10)", maxChildrenArg)
      .option("--http-path <prefix>", "serve HTTP requests under this path prefix through the nodes' gateways (nex node up --web-port)")
      .option("--http-host <host>", "with --http-path: only requests for this Host")
      .option("--http-method <method>", "with --http-path: only these methods (repeatable or comma-separated; HEAD goes with GET)", collect)
      .option("--idempotency-key <key>", "deploy once: a retry with the same key (within 10 minutes) gets the same workload; nex run retries once itself after a timeout")
      .addOption(namespaceOption()),
  );
  // --timeout (from the connection options) is the request timeout; --trigger-timeout is the workload's.
  return cmd.action(
    withErrors(async (artifact: string, command: string[], opts: RunOpts) => {
      const type = typeFor(artifact, opts.type);
      if (opts.service && type !== "javascript") throw new CliError("--service is for javascript workloads only", ExitCode.usage);
      const containerOnly = { command: command.length > 0, "--restart": opts.service ? undefined : opts.restart, "--cpus": opts.cpus, "--pids": opts.pids, "--writable-rootfs": opts.writableRootfs };
      for (const [what, value] of Object.entries(containerOnly)) {
        if (type !== "oci" && value !== undefined && value !== false) {
          const also = what === "--restart" && type === "javascript" ? " and --service" : "";
          throw new CliError(`${what === "command" ? "a command" : what} is for --type oci${also} only`, ExitCode.usage);
        }
      }
      const triggers = opts.triggerSubject ?? [];
      for (const subject of triggers) {
        const problem = triggerSubjectProblem(subject);
        if (problem) throw new CliError(`trigger subject ${subject} ${problem}`, ExitCode.usage);
      }
      const http = httpRoute(opts);
      if (type === "static") staticFlagProblems(opts, http, triggers);
      if (type !== "oci" && !opts.service && triggers.length === 0 && !http) throw new CliError("a function needs at least one --trigger-subject or an --http-path (a --service does not)", ExitCode.usage);
      const name = opts.name ?? defaultName(artifact, type);
      if (opts.maxChildren !== undefined && !opts.allowDeploy) throw new CliError("--max-children goes with --allow-deploy", ExitCode.usage);
      // A static folder is checked before connecting: a bad one costs no connection and no upload.
      const folder = type === "static" ? await scanStatic(artifact) : undefined;
      const nc = await connectFromOptions(opts, "nex run");
      try {
        const control = new ControlClient(nc, opts.namespace, opts.timeout ?? 5000);
        let url = artifact;
        let sha256: string | undefined;
        if (folder) {
          ({ url, sha256 } = await uploadStatic(nc, folder, Boolean(opts.json)));
        } else if (type !== "oci") {
          let bytes: Uint8Array;
          try {
            bytes = await fs.readFile(artifact);
          } catch {
            throw new CliError(`cannot read ${artifact}`, ExitCode.notFound);
          }
          sha256 = sha256Hex(bytes);
          url = await uploadArtifact(nc, bytes, sha256, name, Boolean(opts.json));
        }
        const children = opts.allowDeploy
          ? await grantArtifacts(opts.allowDeploy, (bytes, sha, file) => uploadArtifact(nc, bytes, sha, file, Boolean(opts.json)))
          : undefined;
        const targets = await chooseNodes(control, opts, type);
        const results = [];
        for (const [i, target] of targets.entries()) {
          const request = deployRequest(type, {
            version: PROTOCOL_VERSION,
            name,
            trigger_subjects: triggers,
            // The placement tags it was auctioned with: failover places it again with the same.
            tags: opts.tag ?? {},
            ...(opts.idempotencyKey ? { idempotency_key: i === 0 ? opts.idempotencyKey : `${opts.idempotencyKey}-${i}` } : {}),
            requested_at: new Date().toISOString(),
            ...(http ? { http } : {}),
            ...sealEnv(opts.env, target.xkey),
            // Each copy its own grant: a grant is bound to one workload.
            ...(children ? { grant: newGrant(issuerKey(), opts.namespace, children, opts.maxChildren) } : {}),
          }, { url, sha256, command, opts });
          const s = spinner(`deploying ${name} to ${target.node_id}`, { json: opts.json });
          const preparing = followPreparing(nc, opts.namespace, target.node_id, name, s);
          try {
            const reply = await deployWithRetry(control, target.node_id, request);
            s.stop();
            results.push(reply);
          } catch (err) {
            s.fail();
            throw err;
          } finally {
            preparing.unsubscribe();
          }
        }
        if (opts.json) return printJson(results.length === 1 ? results[0] : results);
        for (const r of results) console.log(r.workload_id);
      } finally {
        await nc.close();
      }
    }),
  );
}

/** The request's kind-specific part: a function's code and concurrency, a container's image, command and restart policy. */
function deployRequest(
  type: DeployRequestInput["type"],
  common: DeployCommonInput,
  given: { url: string; sha256?: string; command: string[]; opts: RunOpts },
): DeployRequestInput {
  const { opts } = given;
  const limits = {
    ...(opts.memory !== undefined ? { memory_mb: opts.memory } : {}),
    ...(opts.triggerTimeout !== undefined ? { timeout_ms: opts.triggerTimeout } : {}),
    ...(opts.cpu !== undefined ? { cpu_ms: opts.cpu } : {}),
  };
  if (type === "oci") {
    return {
      ...common,
      type,
      artifact: { url: given.url },
      limits: { ...limits, ...(opts.cpus !== undefined ? { cpus: opts.cpus } : {}), ...(opts.pids !== undefined ? { pids: opts.pids } : {}) },
      ...(given.command.length > 0 ? { argv: given.command } : {}),
      ...(opts.restart ? { restart: opts.restart } : {}),
      ...(opts.writableRootfs ? { read_only_rootfs: false } : {}),
    };
  }
  if (type === "static") {
    // The flags were checked before anything was uploaded (staticFlagProblems): an http route, and none of the rest.
    const { trigger_subjects: _t, env_sealed: _e, sender_xkey: _x, grant: _g, http, ...rest } = common;
    return { ...rest, http: http as HttpRoute, type, artifact: { url: given.url, sha256: given.sha256 ?? "" } };
  }
  const fn = { ...common, artifact: { url: given.url, sha256: given.sha256 ?? "" }, limits, concurrency: opts.concurrency ?? 1 };
  if (type === "javascript" && opts.service) return { ...fn, type, service: true, ...(opts.restart ? { restart: opts.restart } : {}), ...(opts.freshContext ? { fresh_context: true } : {}) };
  return type === "javascript" ? { ...fn, type, fresh_context: Boolean(opts.freshContext) } : { ...fn, type };
}

/** `--type static`: the flags a static deploy does not take, refused before anything is uploaded. */
function staticFlagProblems(opts: RunOpts, http: HttpRoute | undefined, triggers: string[]): void {
  if (!http) throw new CliError("--type static needs an --http-path (the files are served there)", ExitCode.usage);
  if (http.methods) throw new CliError("a static route takes GET and HEAD only (no --http-method)", ExitCode.usage);
  if (triggers.length > 0) throw new CliError("a static workload has no --trigger-subject", ExitCode.usage);
  if (opts.env && Object.keys(opts.env).length > 0) throw new CliError("a static workload takes no --env", ExitCode.usage);
  if (opts.memory !== undefined || opts.triggerTimeout !== undefined || opts.cpu !== undefined || opts.concurrency !== undefined) throw new CliError("a static workload takes no limits or --concurrency", ExitCode.usage);
  if (opts.allowDeploy) throw new CliError("a static workload takes no --allow-deploy", ExitCode.usage);
}

/** With an idempotency key, a deploy that timed out is sent once more (signed anew): the node answers with the same workload. */
async function deployWithRetry(control: ControlClient, nodeId: string, request: DeployRequestInput) {
  try {
    return await control.deploy(issuerKey(), nodeId, request);
  } catch (err) {
    if (!request.idempotency_key || !(err instanceof CliError) || err.exitCode !== ExitCode.unreachable) throw err;
    return control.deploy(issuerKey(), nodeId, { ...request, requested_at: new Date().toISOString() });
  }
}

async function chooseNodes(control: ControlClient, opts: RunOpts, type: DeployRequestInput["type"]): Promise<{ node_id: string; xkey: string }[]> {
  const replicas = Math.max(1, opts.replicas);
  const trusted = opts.trustedNode ?? [];
  if (opts.node) {
    if (trusted.length > 0 && !trusted.includes(opts.node)) throw new CliError(`node ${opts.node} is not one of the trusted nodes`, ExitCode.usage);
    const info = await control.info(opts.node);
    return Array.from({ length: replicas }, () => ({ node_id: info.node_id, xkey: info.xkey }));
  }
  const bidders = await control.auction(type, opts.tag ?? {}, opts.memory);
  const all = trusted.length > 0 ? bidders.filter((b) => trusted.includes(b.node_id)) : bidders;
  if (all.length === 0 && bidders.length > 0) {
    throw new CliError(`none of the ${bidders.length} node(s) that bid is one of the trusted nodes (--trusted-node / NEX_TRUSTED_NODES)`, ExitCode.notFound);
  }
  if (all.length === 0) {
    throw new CliError(`no node bid for a ${type} workload${opts.tag ? ` with tags ${JSON.stringify(opts.tag)}` : ""} (is \`nex node up\` running?)`, ExitCode.notFound);
  }
  const bids = all.filter((b) => !b.unavailable);
  if (bids.length === 0) {
    const first = all[0];
    throw new CliError(`no node can run ${type} workloads now: node ${first.name} (${first.node_id}): ${first.unavailable}`, ExitCode.refused);
  }
  // Least-loaded first; replicas go round the bidders.
  bids.sort((a, b) => a.workload_count - b.workload_count);
  return Array.from({ length: replicas }, (_, i) => bids[i % bids.length]);
}

/** --http-path, --http-host and --http-method as a deploy's route, checked as the node checks it. */
function httpRoute(opts: RunOpts): HttpRoute | undefined {
  if (opts.httpPath === undefined) {
    if (opts.httpHost !== undefined || opts.httpMethod !== undefined) throw new CliError("--http-host and --http-method go with --http-path", ExitCode.usage);
    return undefined;
  }
  const problem = routePathProblem(opts.httpPath);
  if (problem) throw new CliError(`--http-path ${opts.httpPath} ${problem}`, ExitCode.usage);
  const host = opts.httpHost?.toLowerCase();
  const hostProblem = host === undefined ? undefined : routeHostProblem(host);
  if (hostProblem) throw new CliError(`--http-host ${opts.httpHost} ${hostProblem}`, ExitCode.usage);
  const routeWide = routeProblem({ path: opts.httpPath, ...(host ? { host } : {}) });
  if (routeWide) throw new CliError(`--http-path ${opts.httpPath} ${routeWide}`, ExitCode.usage);
  const methods = opts.httpMethod?.map((m) => m.toUpperCase());
  for (const m of methods ?? []) {
    if (!(HTTP_METHODS as readonly string[]).includes(m)) throw new CliError(`--http-method ${m}: expected one of ${HTTP_METHODS.join(", ")}`, ExitCode.usage);
  }
  return { path: opts.httpPath, ...(host ? { host } : {}), ...(methods ? { methods: [...new Set(methods)] as HttpRoute["methods"] } : {}) };
}

/** `on-failure:5` → { policy: "on-failure", max_retries: 5 }, as `docker run --restart` takes it. */
function restartArg(value: string): RestartPolicy {
  const [policy, retries, ...rest] = value.split(":");
  if (!["never", "on-failure", "always"].includes(policy) || rest.length > 0 || (retries !== undefined && !/^\d+$/.test(retries)) || (policy === "never" && retries !== undefined)) {
    throw new InvalidArgumentError("expected never, on-failure[:max-retries] or always[:max-retries]");
  }
  return { policy: policy as RestartPolicy["policy"], ...(retries !== undefined ? { max_retries: Number(retries) } : {}) };
}

function sealEnv(env: Record<string, string> | undefined, nodeXkey: string): Pick<DeployRequestInput, "env_sealed" | "sender_xkey"> {
  if (!env || Object.keys(env).length === 0) return {};
  const sender = publisherXkey();
  const sealed = sender.seal(new TextEncoder().encode(JSON.stringify(env)), nodeXkey);
  return { env_sealed: Buffer.from(sealed).toString("base64"), sender_xkey: sender.getPublicKey() };
}
