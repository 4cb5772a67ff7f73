// NEX_HOME (default ~/.nex): the local user's nex files. The CLI keeps its issuer and publisher keys
// there; a node started without --data-dir keeps its own data in NEX_HOME/node, a directory of its own,
// so nothing the node serves or reads for others sits beside the issuer's key.

import os from "node:os";
import path from "node:path";

export function nexHome(): string {
  return process.env.NEX_HOME ?? path.join(os.homedir(), ".nex");
}

export function defaultNodeDataDir(): string {
  return path.join(nexHome(), "node");
}
