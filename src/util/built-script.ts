// Child processes and worker threads run compiled JavaScript. A script is found next to the module
// that starts it; when that module runs from source (vitest loads src/*.ts), the compiled one under
// dist/ is used instead.

import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** `fileName` beside the module at `moduleUrl` (its import.meta.url), or its compiled twin under dist/. */
export function builtScript(moduleUrl: string, fileName: string): string {
  const here = path.dirname(fileURLToPath(moduleUrl));
  const beside = path.join(here, fileName);
  if (fs.existsSync(beside)) return beside;
  const marker = `${path.sep}src${path.sep}`;
  const at = here.lastIndexOf(marker);
  if (at < 0 || here.includes(`${path.sep}dist${path.sep}`)) return beside;
  return path.join(here.slice(0, at), "dist", "src", here.slice(at + marker.length), fileName);
}
