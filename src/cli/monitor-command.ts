// `nex monitor events|logs`: follow a namespace's lifecycle events and workload log lines as the nodes
// publish them on $NEX.FEED.<ns>.events.<type> and $NEX.FEED.<ns>.logs.<workload>.<stream>.
// Plain core subscriptions: the feeds are fire-and-forget, so monitoring shows what happens from now on.

import { Command, InvalidArgumentError } from "commander";
import { ControlSubjects, DEFAULT_NAMESPACE } from "../protocol/control.js";
import { addConnectionOptions, connectFromOptions, type ConnectionOptions } from "./connection.js";
import { consume } from "./nats-tools.js";
import { configureUsageErrors, printJsonLine, withErrors } from "./output.js";

/** Event types travel as `io.nats.nex.v1.<type>` in the CloudEvent but as `<type>` in the subject. */
const EVENT_TYPE_PREFIX = "io.nats.nex.v1.";

/** Each of these becomes one subject token, so dots, spaces and wildcards would change what we match. */
function tokenArg(what: string): (value: string) => string {
  return (value) => {
    if (!/^[^\s.*>]+$/.test(value)) throw new InvalidArgumentError(`${what} must be one subject token (no spaces, '.', '*' or '>')`);
    return value;
  };
}

function countArg(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError("must be a positive integer");
  return n;
}

interface FeedOptions extends ConnectionOptions {
  namespace: string;
  count?: number;
}

function feedCommand(name: string, description: string): Command {
  const cmd = new Command(name)
    .description(description)
    .option("-n, --namespace <ns>", "namespace to watch (env NEX_NAMESPACE)", tokenArg("namespace"), process.env.NEX_NAMESPACE || DEFAULT_NAMESPACE)
    .option("--count <n>", "exit after this many messages", countArg);
  return addConnectionOptions(cmd);
}

interface CloudEventLike {
  time?: unknown;
  type?: unknown;
  source?: unknown;
  data?: Record<string, unknown> | null;
}

function text(value: unknown): string | undefined {
  return typeof value === "string" && value.length > 0 ? value : undefined;
}

/** `time  type  source  workload=<id> name=<name>`; data fields vary by event, so only what is there. */
function eventLine(subject: string, body: string): string {
  let event: CloudEventLike;
  try {
    event = JSON.parse(body) as CloudEventLike;
  } catch {
    return `${subject} ${body}`; // not a CloudEvent; show it rather than drop it
  }
  const data = event.data && typeof event.data === "object" ? event.data : {};
  const id = text(data.workload_id) ?? text(data.id);
  const name = text(data.workload_name) ?? text(data.name);
  const type = text(event.type)?.replace(EVENT_TYPE_PREFIX, "") ?? subject.split(".").pop();
  const parts = [text(event.time) ?? new Date().toISOString(), type, text(event.source) ?? "-"];
  if (id) parts.push(`workload=${id}`);
  if (name) parts.push(`name=${name}`);
  const reason = text(data.error) ?? text(data.reason);
  if (reason) parts.push(`error=${JSON.stringify(reason)}`);
  // Container exits and restarts (oci workloads).
  if (typeof data.exit_code === "number") parts.push(`exit_code=${data.exit_code}`);
  if (typeof data.restarts === "number") parts.push(`restarts=${data.restarts}`);
  if (data.restart_in_ms === null) parts.push("stays down");
  else if (typeof data.restart_in_ms === "number") parts.push(`restart_in=${data.restart_in_ms}ms`);
  return parts.join("  ");
}

function eventsCommand(): Command {
  return feedCommand("events", "follow lifecycle events (CloudEvents) of a namespace")
    .option("-t, --type <type>", "only this event type, e.g. workload_started", (v: string) => tokenArg("type")(v.replace(EVENT_TYPE_PREFIX, "")))
    .action(
      withErrors(async (opts: FeedOptions & { type?: string }) => {
        const subject = ControlSubjects.events(opts.namespace, opts.type ?? "*");
        const nc = await connectFromOptions(opts, "nex monitor events");
        await consume(nc, subject, { max: opts.count, notice: `Listening for events on "${subject}"` }, (msg) => {
          // --json passes the CloudEvent through untouched, one per line, for jq.
          if (opts.json) process.stdout.write(`${msg.string().trim()}\n`);
          else process.stdout.write(`${eventLine(msg.subject, msg.string())}\n`);
        });
        await nc.close();
      }),
    );
}

function logsCommand(): Command {
  return feedCommand("logs", "follow workload log lines (stdout/stderr) of a namespace")
    .option("-w, --workload <id>", "only this workload", tokenArg("workload"))
    .option("--stream <stream>", "only stdout or stderr", (v: string) => {
      if (v !== "stdout" && v !== "stderr") throw new InvalidArgumentError("must be stdout or stderr");
      return v;
    })
    .action(
      withErrors(async (opts: FeedOptions & { workload?: string; stream?: "stdout" | "stderr" }) => {
        const subject = ControlSubjects.logs(opts.namespace, opts.workload ?? "*", opts.stream ?? ("*" as "stdout")); // "*": either stream
        const nc = await connectFromOptions(opts, "nex monitor logs");
        await consume(nc, subject, { max: opts.count, notice: `Listening for logs on "${subject}"` }, (msg) => {
          // $NEX.FEED.<ns>.logs.<workload>.<stream>: the last two tokens say whose line it is.
          const tokens = msg.subject.split(".");
          const stream = tokens[tokens.length - 1];
          const workload = tokens[tokens.length - 2];
          const line = msg.string().replace(/\r?\n$/, "");
          if (opts.json) printJsonLine({ namespace: opts.namespace, workload, stream, line });
          // A multi-line message keeps its prefix on every line, so grep by workload still works.
          else process.stdout.write(line.split("\n").map((l) => `${workload} ${stream}| ${l}\n`).join(""));
        });
        await nc.close();
      }),
    );
}

export function monitorCommand(): Command {
  const monitor = new Command("monitor")
    .description("follow what the nodes of a namespace report: lifecycle events and workload logs")
    .addCommand(eventsCommand())
    .addCommand(logsCommand());
  return configureUsageErrors(monitor);
}
