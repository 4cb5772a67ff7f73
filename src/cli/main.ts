// The `nex` command line.

import { Command, CommanderError } from "commander";
import { createRequire } from "node:module";

const { version } = createRequire(import.meta.url)("../../../package.json") as { version: string };

/**
 * Each top-level command with the module that builds it, in help order. Only the command being run is
 * loaded (the whole list for help or an unknown command): `nex broker` then starts without loading the
 * node's runtimes or the client commands' libraries, which is most of a start-up.
 */
const COMMANDS: { names: string[]; load: () => Promise<Command[]> }[] = [
  { names: ["node"], load: async () => [(await import("./node-command.js")).nodeCommand(version)] },
  { names: ["run"], load: async () => [(await import("./run-command.js")).runCommand()] },
  { names: ["workload", "workloads"], load: async () => [(await import("./workload-command.js")).workloadCommand()] },
  { names: ["kv"], load: async () => [(await import("./kv-command.js")).kvCommands()] },
  { names: ["broker"], load: async () => [(await import("./broker-command.js")).brokerCommand()] },
  { names: ["req", "pub", "sub"], load: async () => (await import("./nats-tools.js")).natsToolCommands() },
  { names: ["top"], load: async () => [(await import("./top-command.js")).topCommand()] },
  { names: ["monitor"], load: async () => [(await import("./monitor-command.js")).monitorCommand()] },
];

async function main(): Promise<void> {
  const program = new Command("nex").description("Nex-style workloads on NATS").version(version).showHelpAfterError();
  const asked = process.argv[2];
  const only = COMMANDS.find((c) => c.names.includes(asked));
  for (const entry of only ? [only] : COMMANDS) for (const cmd of await entry.load()) program.addCommand(cmd);
  await program.parseAsync(process.argv);
}

main().catch((err: unknown) => {
  if (err instanceof CommanderError) process.exit(err.exitCode);
  console.error(`nex: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
