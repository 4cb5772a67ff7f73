// The parts of the WebAssembly JS API only the tests use (linking a capped module against tables and
// memories made here, validating truncated modules), merged into src/types/webassembly.d.ts.

declare namespace WebAssembly {
  class Table {
    constructor(descriptor: { initial: number; maximum?: number; element: "anyfunc" | "externref" });
  }
  class LinkError extends Error {}
  function validate(bytes: BufferSource): boolean;
}
