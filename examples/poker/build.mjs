// Bundles the poker services that import other files (the engine, shared helpers) into single-file
// workloads under examples/poker/dist/: one ES module each, no Node built-ins (they run in V8 isolates).
// `npm run build:poker`. user.js and bank.js are single files already and run from services/ as they are.
import { build } from "esbuild";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const out = path.join(here, "dist");
mkdirSync(out, { recursive: true });

for (const name of ["table", "lobby"]) {
  await build({
    entryPoints: [path.join(here, "services", `${name}.js`)],
    outfile: path.join(out, `${name}.js`),
    bundle: true,
    format: "esm",
    platform: "neutral",
    target: "es2022",
    logLevel: "warning",
    legalComments: "none",
  });
}
console.log(`poker: bundled table.js and lobby.js into ${path.relative(process.cwd(), out) || "."}`);
