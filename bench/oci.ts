// The oci bench row: deploy request sent → the container running and answering its first request, p50
// over OCI_DEPLOYS deploys on a fresh `nex node up`; beside it, a plain `docker run` of the same image
// (the Docker CLI, attached, host network, the same environment) timed from spawn to its first answer.
// Both answer through the node's bundled broker; the runs alternate so drift on a noisy machine hits both.
// The image is the examples/oci greeter, built with examples/oci/build-image.sh. Target: ≤ 1.3× docker run.

import { execFileSync, spawn } from "node:child_process";
import path from "node:path";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { createAccount, type KeyPair } from "@nats-io/nkeys";
import { ControlClient } from "../src/cli/control-client.js";
import { DEFAULT_NAMESPACE, PROTOCOL_VERSION } from "../src/protocol/control.js";
import { type DeployRequestInput } from "../src/protocol/deploy-request.js";
import { msSince, now, percentileOf } from "./nexload.js";
import { startNode, type RunningNode } from "./node.js";
import { REPO_ROOT } from "./servers.js";
import { formatNumber, formatRatio, renderTable } from "./table.js";

export const OCI_ROW_ID = 17;
const OCI_DEPLOYS = 10;
const OCI_TARGET = 1.3;
const IMAGE = "nex-bench/greeter:latest";
const ANSWER_TIMEOUT_MS = 30_000;
const REQUEST_TIMEOUT_MS = 1000;


/** Asks `subject` until the greeter answers (no responders until it has subscribed). */
async function firstAnswer(nc: NatsConnection, subject: string): Promise<void> {
  const deadline = Date.now() + ANSWER_TIMEOUT_MS;
  for (;;) {
    try {
      const reply = await nc.request(subject, "bench", { timeout: REQUEST_TIMEOUT_MS });
      if (reply.string() !== "hello, bench") throw new Error(`${subject}: unexpected answer ${reply.string().slice(0, 80)}`);
      return;
    } catch (err) {
      if (!/no responders|timeout/i.test((err as Error).message) || Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 2));
    }
  }
}

/** nex: deploy request sent → first answer (the undeploy afterwards is not timed). */
async function nexRun(node: RunningNode, nc: NatsConnection, issuer: KeyPair, i: number): Promise<number> {
  const subject = `bench.oci.nex.${i}`;
  const request: DeployRequestInput = {
    version: PROTOCOL_VERSION,
    name: `oci-bench-${i}`,
    type: "oci",
    artifact: { url: IMAGE },
    trigger_subjects: [subject],
    limits: {},
    tags: {},
    requested_at: new Date().toISOString(),
  };
  const started = now();
  const control = new ControlClient(nc, DEFAULT_NAMESPACE, ANSWER_TIMEOUT_MS);
  const { workload_id } = await control.deploy(issuer, node.nodeId, request);
  await firstAnswer(nc, subject);
  const ms = msSince(started);
  await control.undeploy(issuer, workload_id);
  return ms;
}

/** docker run: CLI spawned → first answer (the removal afterwards is not timed). */
async function dockerRun(node: RunningNode, nc: NatsConnection, i: number): Promise<number> {
  const subject = `bench.oci.docker.${i}`;
  const name = `nex-bench-docker-${process.pid}-${i}`;
  const env = { NEX_NATS_URL: node.url, NEX_TRIGGER_SUBJECTS: subject, NEX_WORKLOAD_NAME: name };
  const started = now();
  const child = spawn("docker", ["run", "--rm", "--name", name, "--network", "host", ...Object.entries(env).flatMap(([k, v]) => ["-e", `${k}=${v}`]), IMAGE], {
    stdio: "ignore",
  });
  try {
    await firstAnswer(nc, subject);
    return msSince(started);
  } finally {
    execFileSync("docker", ["rm", "-f", name], { stdio: "ignore" });
    child.kill("SIGKILL");
  }
}

/** Runs the row and returns its lines for the report (a table, or why it did not run). */
export async function runOciRow(log: (msg: string) => void): Promise<string[]> {
  const title = `oci: deploy request → container running and answering, p50 of ${OCI_DEPLOYS}; peer: plain \`docker run\` of the same image`;
  log(`[row ${OCI_ROW_ID}] ${title}`);
  try {
    execFileSync("docker", ["info"], { stdio: "ignore" });
    execFileSync("bash", [path.join(REPO_ROOT, "examples/oci/build-image.sh"), IMAGE], { stdio: "ignore" });
  } catch (err) {
    return [`Row ${OCI_ROW_ID} (oci) not run: no Docker engine, or the greeter image could not be built (${(err as Error).message.split("\n")[0]})`];
  }
  const node = await startNode();
  const nc = await connect({ servers: node.url, name: "nex-bench-oci" });
  const issuer = createAccount();
  const nex: number[] = [];
  const docker: number[] = [];
  try {
    // One untimed round of each, so image layers and caches are warm for both.
    await nexRun(node, nc, issuer, -1);
    await dockerRun(node, nc, -1);
    for (let i = 0; i < OCI_DEPLOYS; i++) {
      if (i % 2 === 0) {
        nex.push(await nexRun(node, nc, issuer, i));
        docker.push(await dockerRun(node, nc, i));
      } else {
        docker.push(await dockerRun(node, nc, i));
        nex.push(await nexRun(node, nc, issuer, i));
      }
    }
  } finally {
    await nc.close();
    await node.stop();
  }
  const n = percentileOf(nex, 0.5);
  const d = percentileOf(docker, 0.5);
  log(`[row ${OCI_ROW_ID}] nex ${nex.map((v) => v.toFixed(0)).join(" ")} ms; docker run ${docker.map((v) => v.toFixed(0)).join(" ")} ms`);
  const verdict = n / d <= OCI_TARGET ? `meets target ≤ ${OCI_TARGET}` : `above target ≤ ${OCI_TARGET}`;
  return [
    renderTable(
      ["#", "Benchmark", "nex (ms)", "docker run (ms)", "ratio (nex / docker run)"],
      ["---:", ":---", "---:", "---:", "---:"],
      [[String(OCI_ROW_ID), title, formatNumber(n), formatNumber(d), `${formatRatio(n, d)} (lower is better; ${verdict})`]],
    ),
    `oci row: the greeter (examples/oci) answers "hello, bench" through the node's bundled broker; nex runs ${nex.map((v) => v.toFixed(0)).join(", ")} ms, docker run ${docker.map((v) => v.toFixed(0)).join(", ")} ms.`,
  ];
}
