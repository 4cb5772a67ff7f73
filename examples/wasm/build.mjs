// Builds the WebAssembly examples from their AssemblyScript sources into examples/wasm/build/:
//   echo-wasi.wasm          a WASI preview1 command (echo-wasi.ts, with @assemblyscript/wasi-shim)
//   echo-component.wasm     a component exporting handle (component/echo.ts)
//   counter-component.wasm  a component counting triggers per subject in KV (component/counter.ts)
//   notes-component.wasm    a component keeping a note per subject in the object store (component/notes.ts)
//   lobby-component.wasm    a component deploying and stopping child workloads (component/lobby.ts)
// Components are a core module from asc, given wit/nex.wit's `function` world with jco's wasm-tools
// (componentEmbed + componentNew). An output newer than every input is kept, so running this again
// costs nothing. Usage: npm run build:wasm [-- --force]

import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { execFileSync } from "node:child_process";
import { createRequire } from "node:module";
import { componentEmbed, componentNew } from "@bytecodealliance/jco-transpile/wasm-tools";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
const out = path.join(here, "build");
const wit = path.join(root, "wit", "nex.wit");
const force = process.argv.includes("--force");

const targets = [
  { output: "echo-wasi.wasm", source: "echo-wasi.ts", form: "module" },
  { output: "echo-component.wasm", source: "component/echo.ts", form: "component" },
  { output: "counter-component.wasm", source: "component/counter.ts", form: "component" },
  { output: "notes-component.wasm", source: "component/notes.ts", form: "component" },
  { output: "lobby-component.wasm", source: "component/lobby.ts", form: "component" },
];

function newerThanInputs(output, inputs) {
  if (force || !fs.existsSync(output)) return false;
  const built = fs.statSync(output).mtimeMs;
  return inputs.every((input) => fs.statSync(input).mtimeMs <= built);
}

const ascBin = path.join(path.dirname(createRequire(import.meta.url).resolve("assemblyscript/package.json")), "bin", "asc.js");

/** One asc process per module: asc keeps library state between in-process runs. */
function compile(source, flags) {
  const binary = path.join(out, `${path.basename(source, ".ts")}.${process.pid}.core.wasm`);
  execFileSync(process.execPath, [ascBin, path.join(here, source), "-O3", "--noAssert", "-o", binary, ...flags], { stdio: "inherit" });
  const bytes = fs.readFileSync(binary);
  fs.rmSync(binary);
  return bytes;
}

// asc resolves the shim's library folder from the working directory.
process.chdir(root);
fs.mkdirSync(out, { recursive: true });
for (const t of targets) {
  const output = path.join(out, t.output);
  const inputs = [path.join(here, t.source), fileURLToPath(import.meta.url), ...(t.form === "component" ? [wit, path.join(here, "component/nex.ts")] : [])];
  if (newerThanInputs(output, inputs)) continue;
  let bytes;
  if (t.form === "module") {
    bytes = compile(t.source, ["--config", "node_modules/@assemblyscript/wasi-shim/asconfig.json"]);
  } else {
    // `--use abort=` leaves out the env.abort import: a failed assertion traps instead.
    const core = compile(t.source, ["--use", "abort="]);
    const embedded = await componentEmbed({ binary: core, witSource: fs.readFileSync(wit, "utf8"), world: "function" });
    bytes = await componentNew(embedded);
  }
  fs.writeFileSync(output, bytes);
  console.log(`built ${path.relative(root, output)} (${bytes.length} bytes)`);
}
