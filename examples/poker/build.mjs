// Bundles the poker services (with the engine and lib/common.js) into single-file workloads under
// examples/poker/dist/: one ES module each, no Node built-ins (they run in V8 isolates). `npm run build:poker`.
import { build } from "esbuild";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const out = path.join(here, "dist");
mkdirSync(out, { recursive: true });

for (const name of ["user", "bank", "table", "lobby"]) {
  await build({
    entryPoints: [path.join(here, "services", `${name}.js`)],
    outfile: path.join(out, `${name}.js`),
    bundle: true,
    format: "esm",
    platform: "neutral",
    // tweetnacl is CommonJS (its "main"), and asks for Node's crypto: it gets an empty stand-in.
    mainFields: ["module", "main"],
    alias: { crypto: path.join(here, "services", "lib", "no-node-crypto.js") },
    target: "es2022",
    logLevel: "warning",
    legalComments: "none",
  });
}
console.log(`poker: bundled user.js, bank.js, table.js and lobby.js into ${path.relative(process.cwd(), out) || "."}`);
