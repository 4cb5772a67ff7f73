// `nex node up` without the CLI around it: optionally the bundled broker in-process, a NATS connection,
// the runtimes the config allows, and the node agent. Used by the CLI and by tests.
//
// In two steps, for a quick start: this module takes the data-dir lock and starts the bundled broker,
// loading little else, so clients can connect at once; then start-agent.ts (loaded only then) connects
// the node and starts its runtimes, agent and gateway.

import path from "node:path";
import { type BrokerAuth, type BrokerOptions, type RunningBroker, startBroker } from "../broker/index.js";
import type { NatsAuth } from "../runtimes/types.js";
import { issuerKey, nexHome } from "../util/nex-home.js";
import { type LocalBrokerConnection, loadOrCreateBrokerUsers, recordLocalBroker } from "./broker-credentials.js";
import type { WorkloadCredentials } from "./workload-credentials.js";
import { lockDataDir } from "./data-dir-lock.js";
import type { NodeUpOptions, RunningNode } from "./up-options.js";

/**
 * Who may use a bundled broker, and as whom the node and the local CLI connect: the given
 * --user/--password or --token; else, unless --no-auth, the users generated on first start.
 */
function bundledBrokerAccess(o: NodeUpOptions): { brokerAuth?: BrokerAuth; node?: NatsAuth; local?: NatsAuth; workloadSecret?: string } {
  const configured = o.brokerOptions?.auth;
  if (configured) {
    // The config file's users or token: the node connects as the --user/--token given, which must be one of them.
    if (!o.auth?.user && !o.auth?.token) {
      throw new Error("the broker config has an authorization block: give the node one of its users with --user/--password (or its --token)");
    }
    const workloadSecret = configured.users?.length ? loadOrCreateBrokerUsers(path.resolve(o.config.data_dir)).workload_secret : undefined;
    return { brokerAuth: configured, node: o.auth, local: o.auth, workloadSecret };
  }
  if (o.auth?.token) return { brokerAuth: { token: o.auth.token }, node: o.auth, local: o.auth };
  if (o.noAuth && !o.auth?.user) return {};
  const users = loadOrCreateBrokerUsers(path.resolve(o.config.data_dir));
  if (o.auth?.user) {
    const given = { user: o.auth.user, password: o.auth.pass ?? "" };
    return { brokerAuth: { users: [given] }, node: o.auth, local: o.auth, workloadSecret: users.workload_secret };
  }
  return {
    brokerAuth: { users: [users.node, users.local] },
    node: { user: users.node.user, pass: users.node.password },
    local: { user: users.local.user, pass: users.local.password },
    workloadSecret: users.workload_secret,
  };
}

function withoutUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

export async function nodeUp(o: NodeUpOptions): Promise<RunningNode> {
  if (!o.config.allow_any_issuer && o.config.allowed_issuers.length === 0) {
    // The default allow-list: the issuer `nex run` on this machine signs with (created here if new).
    o = { ...o, config: { ...o.config, allowed_issuers: [issuerKey().getPublicKey()] } };
  }
  if (o.config.artifact_dir) {
    const { resolveArtifactDir } = await import("./artifacts.js");
    o = { ...o, config: { ...o.config, artifact_dir: await resolveArtifactDir(o.config.artifact_dir, [o.config.data_dir, nexHome()]) } };
  }
  const lock = lockDataDir(o.config.data_dir);
  try {
    return await startNode(o, lock.release);
  } catch (err) {
    lock.release();
    throw err;
  }
}

async function startNode(o: NodeUpOptions, releaseDataDir: () => void): Promise<RunningNode> {
  let broker: RunningBroker | undefined;
  let local: LocalBrokerConnection | undefined;
  let credentials: WorkloadCredentials | undefined;
  if (!o.server) {
    const access = bundledBrokerAccess(o);
    const given = { host: o.host, port: o.port, httpPort: o.httpPort };
    const options: BrokerOptions = { port: 4222, ...o.brokerOptions, ...withoutUndefined(given), dataDir: o.config.data_dir, jetstream: true, auth: access.brokerAuth };
    broker = await startBroker(options, o.log.child({ component: "broker" }));
    // Over TLS the node (and its runtime hosts) trust the broker's CA, and show their certificate where one is required.
    const tls = options.tls ? { caFile: options.tls.caFile, ...(options.tls.verify ? { certFile: options.tls.certFile, keyFile: options.tls.keyFile } : {}) } : undefined;
    o = { ...o, auth: access.node || tls ? { ...access.node, ...(tls ? { tls } : {}) } : undefined };
    local = access.local ? recordLocalBroker(broker.url, { ...access.local, ...(tls ? { tls } : {}) }, broker.wsUrl) : undefined;
    // Containers connect with users of their own; a broker with a token or without auth has no users to mint.
    if (access.workloadSecret) credentials = new (await import("./workload-credentials.js")).BrokerWorkloadUsers(broker.users, access.workloadSecret);
  }
  try {
    const { startAgent } = await import("./start-agent.js");
    return await startAgent(o, { broker, brokerUrl: broker?.url ?? (o.server as string), local, credentials, releaseDataDir });
  } catch (err) {
    await broker?.close();
    throw err;
  }
}
