// A lobby that deploys and stops table workloads through nex:host/workloads (wit/nex.wit): the
// component form of test/fixtures/children/lobby.js. Deploy it with a grant for what it may start:
//
//   nex run examples/wasm/build/lobby-component.wasm -t lobby --allow-deploy ./table.js
//
// and send it a command as text (`nex req lobby 'deploy t1 table.1'`):
//
//   deploy <name> <subject> [<artifact>] [KEY=VALUE ...]   a child on <subject>; <artifact> is a file name
//                                                           of the grant or its SHA-256 (table.js when left
//                                                           out), KEY=VALUE its environment
//   deploy {"name": ..., "artifact": ..., ...}              a spec of the JavaScript face's shape, as it is
//   undeploy <workload id>                                  stops one of its children
//   list                                                    its children
//
// Replies are JSON of the JavaScript face's shapes: {"workload_id","node_id"}, {"ok":true} and
// [{"workload_id","node_id","name"}]. A refusal of the host (no grant, an artifact outside it, someone
// else's child: `forbidden`) is an error reply "<code>: <message>". Built by `npm run build:wasm`.
import { HostError, liftPayload, liftSubject, log, lowerReply, postReturn, Reply, workloads } from "./nex";
export { cabi_realloc } from "./nex";

const DEFAULT_ARTIFACT = "table.js";
const USAGE = "usage: deploy <name> <subject> [<artifact>] [KEY=VALUE ...] | deploy {spec json} | undeploy <id> | list";

/** A JSON string literal. */
function quote(s: string): string {
  let out = '"';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c == 0x22) out += '\\"';
    else if (c == 0x5c) out += "\\\\";
    else if (c < 0x20) out += "\\u00" + (c < 0x10 ? "0" : "") + c.toString(16);
    else out += String.fromCharCode(c);
  }
  return out + '"';
}

function refused(call: string, e: HostError): Reply {
  log.error(`${call}: ${e.code}: ${e.message}`);
  return Reply.error(`${e.code}: ${e.message}`);
}

/** The spec of `deploy <name> <subject> [<artifact>] [KEY=VALUE ...]`. */
function specOf(words: string[]): string | null {
  if (words.length < 3) return null;
  let artifact = DEFAULT_ARTIFACT;
  let env = "";
  for (let i = 3; i < words.length; i++) {
    const eq = words[i].indexOf("=");
    if (eq < 0) {
      if (i != 3) return null;
      artifact = words[i];
      continue;
    }
    env += (env.length > 0 ? "," : "") + quote(words[i].slice(0, eq)) + ":" + quote(words[i].slice(eq + 1));
  }
  return `{"name":${quote(words[1])},"artifact":${quote(artifact)},"trigger_subjects":[${quote(words[2])}],"env":{${env}}}`;
}

function deploy(spec: string): Reply {
  const d = workloads.deploy(spec);
  if (d.error !== null) return refused("deploy", d.error!);
  const child = d.child!;
  log.info(`deployed ${child.workloadId} on ${child.nodeId}`);
  return Reply.text(`{"workload_id":${quote(child.workloadId)},"node_id":${quote(child.nodeId)}}`);
}

function command(text: string): Reply {
  const trimmed = text.trim();
  if (trimmed.startsWith("deploy {")) return deploy(trimmed.slice(7));
  const words = trimmed.split(" ").filter((w: string) => w.length > 0);
  if (words.length == 0) return Reply.error(USAGE);
  const verb = words[0];
  if (verb == "deploy") {
    const spec = specOf(words);
    return spec === null ? Reply.error(USAGE) : deploy(spec);
  }
  if (verb == "undeploy" && words.length == 2) {
    const failed = workloads.undeploy(words[1]);
    if (failed !== null) return refused("undeploy", failed);
    return Reply.text('{"ok":true}');
  }
  if (verb == "list" && words.length == 1) {
    const listed = workloads.children();
    if (listed.error !== null) return refused("list", listed.error!);
    let out = "[";
    for (let i = 0; i < listed.children.length; i++) {
      const c = listed.children[i];
      if (i > 0) out += ",";
      out += `{"workload_id":${quote(c.workloadId)},"node_id":${quote(c.nodeId)},"name":${quote(c.name)}}`;
    }
    return Reply.text(out + "]");
  }
  return Reply.error(USAGE);
}

export function handle(subjectPtr: usize, subjectLen: usize, payloadPtr: usize, payloadLen: usize): usize {
  liftSubject(subjectPtr, subjectLen);
  const payload = liftPayload(payloadPtr, payloadLen);
  return lowerReply(command(String.UTF8.decode(payload.buffer)));
}

export function cabi_post_handle(area: usize): void {
  postReturn(area);
}
