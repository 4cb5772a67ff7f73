// Row 22 (childdeploy): a child deploy from inside a workload to the child's first answer, on one node.
//
// A lobby function deployed with a grant for one table artifact (as `nex run lobby.js --allow-deploy
// table.js` does it) is asked, once per child, to call this.hostServices.workloads.deploy({ name,
// artifact: "table.js", trigger_subjects: [s] }) and then messaging.request(s): the lobby answers with
// the table's first reply. Timed from the client's request to the lobby until that answer arrives (so
// it includes one warm trigger round trip, about 0.4 ms); the lobby also reports its own Date.now()
// span (deploy call → first answer, ms resolution). The path: the lobby's host call goes to the node,
// which verifies the grant's binding, claims a slot in NEX_GRANTS, runs an auction, signs a
// DEPLOY_CHILD request; the node (itself here) checks grant, binding, slot and signature, fetches the
// artifact and deploys it. Every child is the same table artifact on its own subject (the shard
// pattern), so its compiled code is cached after the first; the first child is untimed and reported.

import { connect } from "@nats-io/transport-node";
import { Objm } from "@nats-io/obj";
import { createAccount } from "@nats-io/nkeys";
import { ControlClient } from "../src/cli/control-client.js";
import { newGrant } from "../src/cli/deploy-grant.js";
import { ARTIFACT_BUCKET, DEFAULT_NAMESPACE, PROTOCOL_VERSION } from "../src/protocol/control.js";
import type { DeployRequestInput } from "../src/protocol/deploy-request.js";
import { sha256Hex } from "../src/util/sha256.js";
import { msSince, now } from "./nexload.js";
import type { RunningNode } from "./node.js";

export const CHILD_DEPLOYS = 20;
export const CHILD_TARGET_MS = 100;

const LOBBY_SOURCE = `// nex bench lobby: deploys a table child, returns its first answer and the span it measured
export default function (subject, payload) {
  const spec = JSON.parse(this.hostServices.decode(payload));
  const t0 = Date.now();
  const child = this.hostServices.workloads.deploy(spec);
  let answer;
  for (let i = 0; ; i++) {
    try {
      answer = this.hostServices.messaging.request(spec.trigger_subjects[0], "deal", 2000);
      break;
    } catch (e) {
      if (e.code !== "no_responders" || i > 100) throw e;
    }
  }
  return { child, ms: Date.now() - t0, answer: this.hostServices.decode(answer) };
}
`;
const TABLE_SOURCE = "// nex bench table\n(subject, payload) => 'table ' + subject;\n";

export interface ChildDeployReport {
  /** Client's request to the lobby → lobby's answer with the child's first reply (ms). */
  totalMs: number[];
  /** The lobby's own span: deploy call → child's first answer (ms, Date.now() resolution). */
  innerMs: number[];
  /** The first child (untimed in the figures): its artifact is fetched and compiled the first time. */
  firstMs: number;
}

export async function runChildDeploys(node: RunningNode, count: number): Promise<ChildDeployReport> {
  const nc = await connect({ servers: node.url, name: "nex-bench-children" });
  try {
    const issuer = createAccount();
    const store = await new Objm(nc).create(ARTIFACT_BUCKET);
    const enc = new TextEncoder();
    const lobby = enc.encode(LOBBY_SOURCE);
    const table = enc.encode(TABLE_SOURCE);
    const lobbySha = sha256Hex(lobby);
    const tableSha = sha256Hex(table);
    await store.putBlob({ name: lobbySha, description: "bench-lobby.js" }, lobby);
    await store.putBlob({ name: tableSha, description: "table.js" }, table);
    const control = new ControlClient(nc, DEFAULT_NAMESPACE, 30_000);
    const request: DeployRequestInput = {
      version: PROTOCOL_VERSION,
      name: "bench-lobby",
      type: "javascript",
      artifact: { url: `nats://${ARTIFACT_BUCKET}/${lobbySha}`, sha256: lobbySha },
      trigger_subjects: ["bench.lobby"],
      limits: { timeout_ms: 30_000 },
      tags: {},
      requested_at: new Date().toISOString(),
      grant: newGrant(issuer, DEFAULT_NAMESPACE, [{ name: "table.js", sha256: tableSha, type: "javascript" }], count + 1),
    };
    await control.deploy(issuer, node.nodeId, request);
    const ask = async (i: number): Promise<{ ms: number; inner: number }> => {
      const subject = `bench.table.${i}`;
      const t0 = now();
      const reply = await nc.request("bench.lobby", JSON.stringify({ name: `table-${i}`, artifact: "table.js", trigger_subjects: [subject] }), { timeout: 30_000 });
      const ms = msSince(t0);
      const error = reply.headers?.get("Nex-Error");
      if (error) throw new Error(`child ${i}: ${error}`);
      const body = JSON.parse(reply.string()) as { ms: number; answer: string };
      if (body.answer !== `table ${subject}`) throw new Error(`child ${i}: unexpected answer ${JSON.stringify(body.answer)}`);
      return { ms, inner: body.ms };
    };
    const first = await ask(0);
    const totalMs: number[] = [];
    const innerMs: number[] = [];
    for (let i = 1; i <= count; i++) {
      const r = await ask(i);
      totalMs.push(r.ms);
      innerMs.push(r.inner);
    }
    return { totalMs, innerMs, firstMs: first.ms };
  } finally {
    await nc.close();
  }
}
