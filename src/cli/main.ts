// The `nex` command line.

import { Command, CommanderError } from "commander";
import { createRequire } from "node:module";
import { brokerCommand } from "./broker-command.js";

const { version } = createRequire(import.meta.url)("../../../package.json") as { version: string };

const program = new Command("nex")
  .description("Nex-style workloads on NATS")
  .version(version)
  .showHelpAfterError()
  .addCommand(brokerCommand());

program.parseAsync(process.argv).catch((err: unknown) => {
  if (err instanceof CommanderError) process.exit(err.exitCode);
  console.error(`nex: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
