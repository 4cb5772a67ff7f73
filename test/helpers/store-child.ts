// Builds a runnable copy of the store modules for child processes: the sources are transpiled with
// the project's TypeScript into a temp directory, so the kill test does not depend on dist/ being fresh.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import ts from "typescript";

const STORE_SRC = fileURLToPath(new URL("../../src/broker/jetstream/store/", import.meta.url));
const MODULES = ["types", "seq-index", "read-ahead", "memory-store", "file-store"];

/** Writes the store as ESM JavaScript into outDir/store and returns the file-store module path. */
export function buildStoreModules(outDir: string): string {
  const dir = path.join(outDir, "store");
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, "package.json"), '{"type":"module"}\n');
  for (const name of MODULES) {
    const source = readFileSync(path.join(STORE_SRC, `${name}.ts`), "utf8");
    const out = ts.transpileModule(source, {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
      fileName: `${name}.ts`,
    });
    writeFileSync(path.join(dir, `${name}.js`), out.outputText);
  }
  return path.join(dir, "file-store.js");
}

// The kill child appends KV-style (each subject keeps only its newest message) in flushed batches and
// prints the last sequence of every batch after flush() returns. Contents are a function of the
// sequence, mirrored by killSubject/killHeader/killPayload below.
export const KILL_SUBJECTS = 13;
export const KILL_SEGMENT_BYTES = 16 * 1024;

export function killSubject(seq: number): string {
  return `kv.k${seq % KILL_SUBJECTS}`;
}

export function killHeader(seq: number): Buffer | null {
  return seq % 5 === 0 ? Buffer.from(`NATS/1.0\r\nX-Seq: ${seq}\r\n\r\n`, "latin1") : null;
}

export function killPayload(seq: number): Buffer {
  const n = 20 + ((seq * 7919) % 700);
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (seq * 31 + i * 7) & 0xff;
  return b;
}

export function killChildSource(fileStoreModule: string): string {
  return `
import { FileStore } from ${JSON.stringify(pathToFileURL(fileStoreModule).href)};
const subject = (seq) => "kv.k" + (seq % ${KILL_SUBJECTS});
const header = (seq) => (seq % 5 === 0 ? Buffer.from("NATS/1.0\\r\\nX-Seq: " + seq + "\\r\\n\\r\\n", "latin1") : null);
const payload = (seq) => {
  const n = 20 + ((seq * 7919) % 700);
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (seq * 31 + i * 7) & 0xff;
  return b;
};
const store = new FileStore(process.argv[2], { maxSegmentBytes: ${KILL_SEGMENT_BYTES} });
let seq = store.state().lastSeq;
for (;;) {
  const batch = 1 + (seq % 7);
  for (let i = 0; i < batch; i++) {
    const next = seq + 1;
    seq = store.append(subject(next), header(next), payload(next), 1700000000000 + next);
    if (seq > ${KILL_SUBJECTS}) store.remove(seq - ${KILL_SUBJECTS});
  }
  store.flush();
  process.stdout.write(seq + "\\n");
}
`;
}
