// `nex workload ls|info|stop|logs`.

import { Command } from "commander";
import { addConnectionOptions, connectFromOptions } from "./connection.js";
import { issuerKey } from "../util/nex-home.js";
import { ControlSubjects } from "../protocol/control.js";
import { type ClientOpts, namespaceOption, withControl } from "./node-command.js";
import { CliError, ExitCode, printJson, printJsonLine, printTable, withErrors } from "./output.js";

export function workloadCommand(): Command {
  const workload = new Command("workload").alias("workloads").description("inspect and stop workloads");
  workload.addCommand(
    addConnectionOptions(new Command("ls").description("list workloads on every node").addOption(namespaceOption())).action(
      withErrors(async (opts: ClientOpts) => {
        const list = await withControl(opts, (c) => c.workloads());
        if (opts.json) return printJson(list);
        if (list.length === 0) return console.log(`no workloads in namespace ${opts.namespace}`);
        printTable(list, [
          "id",
          "name",
          "type",
          "state",
          { key: "trigger_subjects", header: "TRIGGERS", format: (v) => (v as string[]).join(",") },
          { key: "node_id", header: "NODE", format: (v) => String(v).slice(0, 12) + "…" },
          { key: "started_at", header: "STARTED" },
        ]);
      }),
    ),
  );
  workload.addCommand(
    addConnectionOptions(new Command("info").description("one workload").argument("<workload-id>").addOption(namespaceOption())).action(
      withErrors(async (id: string, opts: ClientOpts) => {
        const found = (await withControl(opts, (c) => c.workloads())).find((w) => w.id === id || w.name === id);
        if (!found) throw new CliError(`no workload ${id} in namespace ${opts.namespace}`, ExitCode.notFound);
        if (opts.json) return printJson(found);
        // An oci workload's container fields print as container.<field>, a JavaScript service's as service.<field>.
        // The duration histogram is for machines (--json, /metrics); p50_ms and p99_ms say it here.
        const { container, service, durations: _durations, ...rest } = found;
        const rows = [
          ...Object.entries(rest),
          ...Object.entries(container ?? {}).map(([k, v]) => [`container.${k}`, v] as const),
          ...Object.entries(service ?? {}).map(([k, v]) => [`service.${k}`, v] as const),
        ];
        const width = Math.max(18, ...rows.map(([k]) => k.length + 1));
        for (const [k, v] of rows) console.log(`${k.padEnd(width)} ${Array.isArray(v) ? v.join(", ") : typeof v === "object" && v !== null ? JSON.stringify(v) : String(v)}`);
      }),
    ),
  );
  workload.addCommand(
    addConnectionOptions(new Command("stop").description("stop and remove a workload (same issuer only)").argument("<workload-id>").addOption(namespaceOption())).action(
      withErrors(async (id: string, opts: ClientOpts) => {
        const reply = await withControl(opts, (c) => c.undeploy(issuerKey(), id));
        if (opts.json) return printJson(reply);
        console.log(`stopped ${reply.workload_id}`);
      }),
    ),
  );
  workload.addCommand(
    addConnectionOptions(
      new Command("logs")
        .description("follow a workload's log lines")
        .argument("<workload-id>")
        .option("--count <n>", "exit after n lines", (v) => Number(v))
        .addOption(namespaceOption()),
    ).action(
      withErrors(async (id: string, opts: ClientOpts & { count?: number }) => {
        const nc = await connectFromOptions(opts, "nex logs");
        const sub = nc.subscribe(ControlSubjects.workloadLogs(opts.namespace, id), { max: opts.count });
        process.on("SIGINT", () => void nc.close().then(() => process.exit(0)));
        for await (const msg of sub) {
          const stream = msg.subject.split(".").pop() as string;
          if (opts.json) printJsonLine({ workload_id: id, stream, line: msg.string() });
          else (stream === "stderr" ? process.stderr : process.stdout).write(`${msg.string()}\n`);
        }
        await nc.close();
      }),
    ),
  );
  return workload;
}
