// `nex run --allow-deploy <file> [--max-children N]`: the artifacts a workload may deploy as its children
// are uploaded to the object store (content-addressed, as nex run uploads its own artifact), and each
// deployed copy gets a grant of its own, signed with the issuer key (protocol/grants.ts).

import { randomBytes } from "node:crypto";
import fs from "node:fs/promises";
import path from "node:path";
import type { KeyPair } from "@nats-io/nkeys";
import { InvalidArgumentError } from "commander";
import { PROTOCOL_VERSION } from "../protocol/control.js";
import { DEFAULT_MAX_CHILDREN, type GrantArtifact, MAX_CHILDREN_CEILING, MAX_GRANT_ARTIFACTS, signGrant, type SignedGrant } from "../protocol/grants.js";
import { sha256Hex } from "../util/sha256.js";
import { CliError, ExitCode } from "./output.js";

export type Uploader = (bytes: Uint8Array, sha256: string, name: string) => Promise<string>;

/** Reads and uploads the files; refuses what cannot be a child (not a .js/.mjs/.cjs/.wasm file, unreadable, a name twice). */
export async function grantArtifacts(files: string[], upload: Uploader): Promise<GrantArtifact[]> {
  if (files.length > MAX_GRANT_ARTIFACTS) throw new CliError(`at most ${MAX_GRANT_ARTIFACTS} --allow-deploy files`, ExitCode.usage);
  const out: GrantArtifact[] = [];
  for (const file of files) {
    const name = path.basename(file);
    const ext = path.extname(name).toLowerCase();
    const type = ext === ".wasm" ? "wasm" : [".js", ".mjs", ".cjs"].includes(ext) ? "javascript" : undefined;
    if (!type) throw new CliError(`--allow-deploy ${file}: a child must be a JavaScript (.js, .mjs, .cjs) or .wasm file`, ExitCode.usage);
    if (out.some((a) => a.name === name)) throw new CliError(`--allow-deploy names two files called ${name}; a parent asks for a child by its file name`, ExitCode.usage);
    let bytes: Uint8Array;
    try {
      bytes = await fs.readFile(file);
    } catch {
      throw new CliError(`cannot read ${file}`, ExitCode.notFound);
    }
    const sha256 = sha256Hex(bytes);
    await upload(bytes, sha256, name);
    out.push({ name, sha256, type });
  }
  return out;
}

export function maxChildrenArg(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > MAX_CHILDREN_CEILING) throw new InvalidArgumentError(`a whole number from 1 to ${MAX_CHILDREN_CEILING}`);
  return n;
}

/** A new grant (a random grant id) for one deployed copy. */
export function newGrant(issuer: KeyPair, namespace: string, artifacts: GrantArtifact[], maxChildren = DEFAULT_MAX_CHILDREN): SignedGrant {
  return signGrant(issuer, {
    version: PROTOCOL_VERSION,
    kind: "nex-deploy-grant",
    grant_id: randomBytes(16).toString("hex"),
    namespace,
    artifacts,
    max_children: maxChildren,
    issued_at: new Date().toISOString(),
  });
}

