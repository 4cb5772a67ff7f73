import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 20_000,
    hookTimeout: 20_000,
    // Each file starts its own servers on OS-chosen ports, so files can run in parallel.
    pool: "forks",
    fileParallelism: true,
  },
});
