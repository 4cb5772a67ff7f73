// `nex top`: a full-screen view of every node and workload that answers, asked again every second (each
// node's INFO over the control API), drawn on the terminal's alternate screen. Keys pick the sort
// column; q or Ctrl-C leaves, giving the terminal back as it was (main screen, cursor, cooked input).

import { Command, Option } from "commander";
import { addConnectionOptions, connectFromOptions, durationArg } from "./connection.js";
import { type ClientOpts, namespaceOption } from "./node-command.js";
import { CliError, ExitCode, withErrors } from "./output.js";

const ENTER = "\x1b[?1049h\x1b[?25l";
const LEAVE = "\x1b[?25h\x1b[?1049l";
const CTRL_C = "\x03";

export function topCommand(): Command {
  return addConnectionOptions(
    new Command("top")
      .description("a live view of nodes and workloads: rate, p50/p99, failures, memory (q quits)")
      .addOption(namespaceOption())
      .addOption(new Option("--interval <duration>", "how often to ask the nodes again").argParser(durationArg).default(1000, "1s")),
  ).action(
    withErrors(async (opts: ClientOpts & { interval: number }) => {
      const out = process.stdout;
      const input = process.stdin;
      if (!out.isTTY || !input.isTTY) throw new CliError("nex top needs a terminal (for a script: nex workload ls --json)", ExitCode.usage);
      if (opts.interval < 100) throw new CliError("--interval must be at least 100ms", ExitCode.usage);
      // Loaded here, so the command list stays quick to load.
      const [{ ControlClient }, view] = await Promise.all([import("./control-client.js"), import("./top-view.js")]);
      const nc = await connectFromOptions(opts, "nex top");
      const client = new ControlClient(nc, opts.namespace, opts.timeout ?? 5000);

      let frame: import("./top-view.js").Frame = { namespace: opts.namespace, intervalMs: opts.interval, nodes: [], workloads: [], sort: "name", reverse: false };
      const draw = (): void => {
        const lines = view.renderFrame(frame, out.columns || 80, out.rows || 24);
        out.write(`\x1b[H${lines.map((l) => `${l}\x1b[K`).join("\n")}\x1b[J`);
      };

      let leaving = false;
      let wake: () => void = () => undefined;
      const leave = (): void => {
        if (leaving) return;
        leaving = true;
        out.write(LEAVE);
        input.setRawMode(false);
        input.pause();
        wake();
      };
      out.write(ENTER);
      input.setRawMode(true);
      input.resume();
      input.setEncoding("utf8");
      input.on("data", (keys: string) => {
        for (const key of keys) {
          if (key === "q" || key === CTRL_C) return leave();
          const column = view.SORT_KEYS.find(([k]) => k === key)?.[1];
          if (!column) continue;
          frame = { ...frame, reverse: frame.sort === column ? !frame.reverse : false, sort: column };
          draw();
        }
      });
      // Raw mode turns Ctrl-C into a key; these are for a kill or a terminal that goes away.
      for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.once(signal, leave);
      out.on("resize", draw);
      // An exit for any other reason gives the terminal back too.
      process.once("exit", () => {
        if (!leaving) out.write(LEAVE);
      });

      let previous: import("./top-view.js").Sample | undefined;
      try {
        draw();
        while (!leaving) {
          const started = Date.now();
          try {
            const pings = await client.ping();
            const answers = await Promise.allSettled(pings.map((p) => client.info(p.node_id)));
            const sample = {
              at: Date.now(),
              nodes: answers.flatMap((a) => (a.status === "fulfilled" ? [a.value] : [])),
              errors: answers.flatMap((a) => (a.status === "rejected" ? [String((a.reason as Error)?.message ?? a.reason)] : [])),
            };
            frame = { ...frame, ...view.rowsOf(sample, previous), sample, problem: pings.length === 0 ? "no nodes answered" : undefined };
            previous = sample;
          } catch (err) {
            frame = { ...frame, problem: (err as Error).message };
          }
          if (leaving) break;
          draw();
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, Math.max(0, opts.interval - (Date.now() - started)));
            wake = () => {
              clearTimeout(timer);
              resolve();
            };
          });
        }
      } finally {
        leave();
        await nc.close().catch(() => undefined);
      }
    }),
  );
}
