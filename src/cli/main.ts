// The `nex` command line.

import { Command, CommanderError } from "commander";
import { createRequire } from "node:module";
import { brokerCommand } from "./broker-command.js";
import { monitorCommand } from "./monitor-command.js";
import { kvCommands } from "./kv-command.js";
import { natsToolCommands } from "./nats-tools.js";
import { nodeCommand } from "./node-command.js";
import { runCommand } from "./run-command.js";
import { workloadCommand } from "./workload-command.js";

const { version } = createRequire(import.meta.url)("../../../package.json") as { version: string };

const program = new Command("nex")
  .description("Nex-style workloads on NATS")
  .version(version)
  .showHelpAfterError()
  .addCommand(nodeCommand(version))
  .addCommand(runCommand())
  .addCommand(workloadCommand())
  .addCommand(kvCommands())
  .addCommand(brokerCommand());
for (const cmd of natsToolCommands()) program.addCommand(cmd);
program.addCommand(monitorCommand());

program.parseAsync(process.argv).catch((err: unknown) => {
  if (err instanceof CommanderError) process.exit(err.exitCode);
  console.error(`nex: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
