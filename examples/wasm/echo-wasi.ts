// A WASI preview1 command (the Nex contract): the trigger payload arrives on stdin, the subject is
// argv[1], and whatever goes to stdout is the reply. Built by `npm run build:wasm`.

const chunk = new ArrayBuffer(64 * 1024);
for (;;) {
  const n = process.stdin.read(chunk);
  if (n <= 0) break;
  process.stdout.write(n == chunk.byteLength ? chunk : chunk.slice(0, n));
}
