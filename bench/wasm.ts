// WebAssembly rows, on one fresh `nex node up` (bench/node.ts) in the same run as the JavaScript echo:
//
//   wasm      warm trigger round trip (p50/p99 of sequential 16 B requests) and requests/s with 50 in
//             flight, for the JS echo (examples/echo's contract), the WASI echo and the component echo
//             (examples/wasm, built by examples/wasm/build.mjs).
//   wasmcold  cold start, deploy request sent → first trigger reply, p50 of COLD_DEPLOYS each: the JS
//             echo, the WASI echo, the component without the transpile cache (fresh bytes each time: a
//             custom section with a counter) and with it (the same bytes again).
//
// Targets (issue #6): component warm p50 < 1 ms, WASI warm p50 < 2 ms, cached cold start < 100 ms.
// Selected with `--only wasm,wasmcold` (run.ts hands those names here); a full run includes both.

import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { type RunningNode, startNode } from "./node.js";
import { artifactFor, ECHO_SOURCE, msSince, NodeClient, now, percentileOf, type Artifact } from "./nexload.js";
import { REPO_ROOT } from "./servers.js";
import { formatNumber, renderTable } from "./table.js";

export const WASM_ROWS = ["wasm", "wasmcold"] as const;
type WasmRow = (typeof WASM_ROWS)[number];

const PAYLOAD = "0123456789abcdef";
const IN_FLIGHT = 50;
const COLD_DEPLOYS = 10;
const TARGET_COMPONENT_P50_MS = 1;
const TARGET_WASI_P50_MS = 2;
const TARGET_CACHED_COLD_MS = 100;

export interface WasmSelection {
  rows: WasmRow[];
  /** Only wasm rows were asked for: run.ts runs nothing else. */
  alone: boolean;
  quick: boolean;
  /** argv without the wasm row names, for run.ts's own parser. */
  rest: string[];
}

/** Takes the wasm row names out of --only (all of them run when there is no --only). */
export function takeWasmRows(argv: string[]): WasmSelection {
  const rest: string[] = [];
  let named: WasmRow[] | undefined;
  let others = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const inline = a.startsWith("--only=");
    if (a !== "--only" && !inline) {
      rest.push(a);
      continue;
    }
    const parts = (inline ? a.slice("--only=".length) : (argv[++i] ?? "")).split(",").map((p) => p.trim().toLowerCase());
    named ??= [];
    const kept = parts.filter((p) => {
      if ((WASM_ROWS as readonly string[]).includes(p)) named!.push(p as WasmRow);
      return p !== "" && !(WASM_ROWS as readonly string[]).includes(p);
    });
    if (kept.length > 0) {
      others = true;
      rest.push("--only", kept.join(","));
    }
  }
  const rows = named ? [...new Set(named)] : [...WASM_ROWS];
  return { rows, alone: named !== undefined && !others && rows.length > 0, quick: argv.includes("--quick"), rest };
}


interface Warm {
  p50: number;
  p99: number;
  rate: number;
}

/** One echo trigger; throws unless the reply is the payload. */
const expectEcho = (client: NodeClient, subject: string): Promise<number> => client.trigger(subject, PAYLOAD, 0, PAYLOAD);

async function warm(client: NodeClient, subject: string, measureMs: number): Promise<Warm> {
  const warmUntil = Date.now() + 300;
  while (Date.now() < warmUntil) await expectEcho(client, subject);
  const samples: number[] = [];
  const until = Date.now() + measureMs;
  while (Date.now() < until) {
    const t = now();
    await expectEcho(client, subject);
    samples.push(msSince(t));
  }
  let done = 0;
  const rateUntil = Date.now() + measureMs;
  const t0 = now();
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (Date.now() < rateUntil) {
        await expectEcho(client, subject);
        done++;
      }
    }),
  );
  return { p50: percentileOf(samples, 0.5), p99: percentileOf(samples, 0.99), rate: done / (msSince(t0) / 1000) };
}

/** A component's bytes with a custom section appended, so its SHA-256 (and cache key) is new. */
function withCustomSection(bytes: Uint8Array, tag: string): Uint8Array {
  const name = new TextEncoder().encode("nex-bench");
  const data = new TextEncoder().encode(tag);
  const body = [name.length, ...name, ...data];
  if (body.length > 127) throw new Error("custom section too long for a one-byte size");
  return Uint8Array.from([...bytes, 0, body.length, ...body]);
}

function wasmArtifact(bytes: Uint8Array, subject: string, name: string): Artifact {
  return artifactFor(name, subject, name, bytes);
}

async function cold(client: NodeClient, artifacts: Artifact[], type: "javascript" | "wasm"): Promise<number[]> {
  await client.upload(artifacts, now() + 60_000_000_000n);
  const totals: number[] = [];
  for (const a of artifacts) {
    const t = now();
    await client.deploy(a, type);
    await expectEcho(client, a.subject);
    totals.push(msSince(t));
  }
  return totals;
}

function verdict(value: number, target: number): string {
  return value < target ? `meets < ${target} ms` : `misses < ${target} ms`;
}

export async function runWasmBench(sel: WasmSelection, log: (line: string) => void = (l) => console.error(l)): Promise<void> {
  execFileSync(process.execPath, [path.join(REPO_ROOT, "examples/wasm/build.mjs")], { stdio: "inherit" });
  const example = (f: string) => new Uint8Array(readFileSync(path.join(REPO_ROOT, "examples/wasm/build", f)));
  const wasi = example("echo-wasi.wasm");
  const component = example("echo-component.wasm");
  const measureMs = sel.quick ? 1000 : 3000;
  let node: RunningNode | undefined;
  let client: NodeClient | undefined;
  const out: string[] = [];
  try {
    node = await startNode();
    client = await NodeClient.open(node);
    const js = (tag: string) => artifactFor(tag, `bench.wasm.js.${tag}`, `bench-js-${tag}`, ECHO_SOURCE.replace("payload;", `payload; // ${tag}`));

    if (sel.rows.includes("wasm")) {
      log("bench: [wasm] warm triggers: JS echo, WASI echo, component echo");
      const targets = [
        { label: "JavaScript echo (examples/echo contract)", artifact: js("warm"), type: "javascript" as const, target: null },
        { label: "WASI preview1 echo (echo-wasi.wasm)", artifact: wasmArtifact(wasi, "bench.wasm.wasi", "bench-wasi"), type: "wasm" as const, target: TARGET_WASI_P50_MS },
        { label: "component echo (echo-component.wasm)", artifact: wasmArtifact(component, "bench.wasm.component", "bench-component"), type: "wasm" as const, target: TARGET_COMPONENT_P50_MS },
      ];
      await client.upload(targets.map((t) => t.artifact), now() + 60_000_000_000n);
      const body: string[][] = [];
      for (const t of targets) {
        await client.deploy(t.artifact, t.type);
        const r = await warm(client, t.artifact.subject, measureMs);
        body.push([
          t.label,
          formatNumber(r.p50 * 1000),
          formatNumber(r.p99 * 1000),
          formatNumber(r.rate),
          t.target === null ? "—" : verdict(r.p50, t.target),
        ]);
      }
      out.push(`**WebAssembly: warm trigger round trip, 16 B, 1 sequential requester (p50/p99) and ${IN_FLIGHT} in flight (req/s); one worker or isolate each**`, "");
      out.push(renderTable(["Function", "p50 (µs)", "p99 (µs)", "requests/s", "target (p50)"], [":---", "---:", "---:", "---:", ":---"], body), "");
    }

    if (sel.rows.includes("wasmcold")) {
      log(`bench: [wasmcold] cold starts, ${COLD_DEPLOYS} deploys each`);
      const stamp = Date.now().toString(36);
      const name = (kind: string, i: number) => `bench-cold-${kind}-${stamp}-${i}`;
      const series = [
        { label: "JavaScript echo (distinct source each)", type: "javascript" as const, artifacts: Array.from({ length: COLD_DEPLOYS }, (_, i) => js(`cold-${stamp}-${i}`)), target: null },
        { label: "WASI echo (compiled per deploy)", type: "wasm" as const, artifacts: Array.from({ length: COLD_DEPLOYS }, (_, i) => wasmArtifact(wasi, `bench.cold.wasi.${i}`, name("wasi", i))), target: null },
        {
          label: "component echo, transpile cache miss (new bytes each)",
          type: "wasm" as const,
          artifacts: Array.from({ length: COLD_DEPLOYS }, (_, i) => wasmArtifact(withCustomSection(component, `${stamp}-${i}`), `bench.cold.miss.${i}`, name("miss", i))),
          target: null,
        },
        {
          label: "component echo, transpile cache hit (same bytes again)",
          type: "wasm" as const,
          artifacts: Array.from({ length: COLD_DEPLOYS }, (_, i) => wasmArtifact(withCustomSection(component, `${stamp}-0`), `bench.cold.hit.${i}`, name("hit", i))),
          target: TARGET_CACHED_COLD_MS,
        },
      ];
      const body: string[][] = [];
      for (const s of series) {
        const totals = await cold(client, s.artifacts, s.type);
        body.push([s.label, formatNumber(percentileOf(totals, 0.5)), formatNumber(Math.max(...totals)), s.target === null ? "—" : verdict(percentileOf(totals, 0.5), s.target)]);
      }
      out.push(`**WebAssembly: cold start, deploy request sent → first trigger reply (ms), ${COLD_DEPLOYS} deploys each on one node**`, "");
      out.push(renderTable(["Function", "p50 (ms)", "max (ms)", "target (p50)"], [":---", "---:", "---:", ":---"], body), "");
      out.push("The cache-hit series deploys the bytes of the cache-miss series' first deploy, so every one of its deploys finds them transpiled.");
    }
  } finally {
    await client?.close();
    await node?.stop();
  }
  process.stdout.write(out.join("\n") + "\n");
}
