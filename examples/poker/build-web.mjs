// Bundles the NATS client for the poker page: examples/poker/web/nats-entry.js → examples/poker/web/nats.js
// (an ES module exporting wsconnect from @nats-io/nats-core; app.js imports it). Run from the repository:
// `node examples/poker/build-web.mjs`; examples/poker/demo.mjs runs it before it deploys the site.
import { build } from "esbuild";
import path from "node:path";
import { fileURLToPath } from "node:url";

const web = path.join(path.dirname(fileURLToPath(import.meta.url)), "web");

export async function buildWeb() {
  await build({
    entryPoints: [path.join(web, "nats-entry.js")],
    outfile: path.join(web, "nats.js"),
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    minify: true,
    legalComments: "none",
    logLevel: "warning",
  });
  return path.join(web, "nats.js");
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  console.log(`built ${path.relative(process.cwd(), await buildWeb())}`);
}
