// The real Docker engine for the oci tests, and the one test image they share: a root filesystem with
// Debian's busybox-static (sh, sleep, dd, seq, ...) and the examples/oci greeter compiled static, turned
// into an image with `docker import` through dockerode. The tag carries a hash of what went in, so a run
// builds it at most once and later runs reuse it.
//
// Locally, a missing engine, gcc or busybox skips the suites with a one-line reason; under CI=true it is a
// failure (.ci/run installs them and starts dockerd).

import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, createReadStream, mkdirSync, readFileSync, symlinkSync } from "node:fs";
import path from "node:path";
import Docker from "dockerode";
import { removeDir, ROOT, tempDir } from "./nex-cli.js";

const BUSYBOX = "/bin/busybox";
const GREETER_C = path.join(ROOT, "examples/oci/greeter.c");
const APPLETS = ["sh", "echo", "cat", "sleep", "seq", "dd", "touch", "true", "false", "yes", "head"];
/** Bumped when the image layout below changes. */
const RECIPE = "3";

export const docker = new Docker();
const isCI = process.env.CI === "true";

/** Why the oci suites cannot run here (undefined: they run; under CI they always run, and fail if they must). */
export async function ociSkipReason(): Promise<string | undefined> {
  if (isCI) return undefined;
  try {
    await docker.ping();
  } catch (err) {
    return `no Docker engine (${err instanceof Error ? err.message : err})`;
  }
  if (spawnSync("gcc", ["--version"]).status !== 0) return "gcc not found (it builds the test image)";
  if (spawnSync(BUSYBOX, ["true"]).status !== 0) return `${BUSYBOX} not found (Debian: busybox-static)`;
  return undefined;
}

let image: Promise<string> | undefined;

/** The shared test image (CMD the greeter), built once per run and per content. */
export function testImage(): Promise<string> {
  image ??= buildTestImage();
  return image;
}

async function buildTestImage(): Promise<string> {
  try {
    await docker.ping();
  } catch (err) {
    throw new Error(`Docker engine not reachable (${err instanceof Error ? err.message : err}); .ci/run installs docker.io and starts dockerd`);
  }
  const hash = createHash("sha256").update(RECIPE).update(readFileSync(GREETER_C)).update(readFileSync(BUSYBOX)).digest("hex").slice(0, 12);
  const ref = `nex-test/oci:${hash}`;
  const exists = await docker
    .getImage(ref)
    .inspect()
    .then(() => true)
    .catch(() => false);
  if (exists) return ref;
  const work = tempDir("nex-oci-image-");
  try {
    const rootfs = path.join(work, "rootfs");
    mkdirSync(path.join(rootfs, "bin"), { recursive: true });
    // A world-writable directory in the image: containers run as nobody, so only here does a writable
    // root filesystem show (the rest of the image is root's).
    mkdirSync(path.join(rootfs, "data"), { mode: 0o1777 });
    chmodSync(path.join(rootfs, "data"), 0o1777);
    execFileSync("gcc", ["-static", "-O2", "-s", "-o", path.join(rootfs, "greeter"), GREETER_C]);
    execFileSync("cp", [BUSYBOX, path.join(rootfs, "bin/busybox")]);
    for (const applet of APPLETS) symlinkSync("busybox", path.join(rootfs, "bin", applet));
    const tarball = path.join(work, "rootfs.tar");
    execFileSync("tar", ["-C", rootfs, "--owner=0", "--group=0", "-cf", tarball, "."]);
    const progress = await docker.importImage(createReadStream(tarball), { repo: "nex-test/oci", tag: hash, changes: ['CMD ["/greeter"]', "ENV PATH=/bin"] } as object);
    await new Promise<void>((resolve, reject) => docker.modem.followProgress(progress, (err: unknown) => (err ? reject(err) : resolve())));
    return ref;
  } finally {
    removeDir(work);
  }
}

/** Containers carrying a label (e.g. io.nex.node=<id>), stopped ones too. */
export async function containersLabelled(label: string): Promise<Docker.ContainerInfo[]> {
  return docker.listContainers({ all: true, filters: { label: [label] } });
}

/** Removes every container with the label (test clean-up). */
export async function removeLabelled(label: string): Promise<void> {
  for (const c of await containersLabelled(label)) await docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined);
}

/**
 * The signals the engine has sent a container since `sinceMs` (epoch ms), in order: "15" is SIGTERM,
 * "9" SIGKILL. Read from the engine's event log, so it works after the container is removed.
 */
export async function killSignals(containerId: string, sinceMs: number): Promise<string[]> {
  const stream = await docker.getEvents({
    since: Math.floor(sinceMs / 1000),
    until: Date.now() / 1000,
    filters: { container: [containerId], event: ["kill"] },
  });
  let text = "";
  for await (const chunk of stream) text += chunk.toString();
  return text
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line) => (JSON.parse(line) as { Actor?: { Attributes?: { signal?: string } } }).Actor?.Attributes?.signal ?? "?");
}
