// The logger of the long-running commands (`nex node up`, `nex broker`): JSON lines for machines, or
// pino-pretty's lines for a person, on stderr.
//
// Which format: --log-format (or NEX_LOG_FORMAT) when given; else pretty when stderr is a terminal, JSON
// otherwise. stderr, not stdout, decides because the lines go there: `nex node up 2>node.log` gets JSON
// in the file, `nex node up >banner.txt` still gets readable lines on the terminal.
//
// The banner and the log lines must not interleave. The start-up's log lines are held (in memory, in
// order) until the command has written its banner in one write, then written out: release() ends the
// hold, and every later line is written at once. A failed start-up releases them before its error. The
// hold lasts HOLD_MS at most: a start-up that waits longer (a cluster electing its JetStream leaders)
// shows what it waits for as it goes; its banner, one write, still comes out whole after those lines.
//
// pino-pretty runs in this thread (its prettyFactory, a plain function), not as a worker-thread transport:
// no worker to start, and every line is written synchronously, so nothing is lost when the process exits.
// It is loaded only when the pretty format is chosen, so a JSON start-up pays nothing for it.

import { type Command, Option } from "commander";
import pino, { type Logger } from "pino";

const LOG_FORMATS = ["json", "pretty"] as const;
type LogFormat = (typeof LOG_FORMATS)[number];
const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "fatal", "silent"] as const;
const HOLD_MS = 5000;

export interface LogFlags {
  logFormat?: LogFormat;
  logLevel: string;
}

/** --log-format and --log-level; a value outside their choices is a usage error (configureUsageErrors: exit 2). */
export function addLogOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option("--log-format <format>", "log lines as JSON or pretty (default: pretty when stderr is a terminal, else JSON)").choices(LOG_FORMATS).env("NEX_LOG_FORMAT"))
    .addOption(new Option("--log-level <level>", "least severe level logged").choices(LOG_LEVELS).default("info").env("NEX_LOG_LEVEL"));
}

export interface CommandLog {
  log: Logger;
  /** Writes the lines held since start-up; from now on every line is written at once. Idempotent. */
  release(): void;
}

export async function commandLogger(flags: LogFlags): Promise<CommandLog> {
  // Synchronous (pino.destination's default): a line is on stderr before the next statement runs.
  const stderr = pino.destination({ dest: 2, sync: true });
  let format: (line: string) => string = (line) => line;
  if ((flags.logFormat ?? (process.stderr.isTTY ? "pretty" : "json")) === "pretty") {
    const { prettyFactory } = await import("pino-pretty");
    // One line per entry (fields appended as JSON): a node's lines stay readable when they scroll by.
    // Colours on a terminal only (and not with NO_COLOR): `--log-format pretty 2>file` stays plain text.
    format = prettyFactory({ colorize: Boolean(process.stderr.isTTY) && process.env.NO_COLOR === undefined, ignore: "pid,hostname", translateTime: "SYS:HH:MM:ss.l", singleLine: true });
  }
  let held: string[] | null = [];
  const destination = {
    write(line: string): void {
      if (held) held.push(line);
      else stderr.write(format(line));
    },
  };
  const release = (): void => {
    clearTimeout(timer);
    const lines = held ?? [];
    held = null;
    for (const line of lines) stderr.write(format(line));
  };
  const timer = setTimeout(release, HOLD_MS).unref();
  return { log: pino({ level: flags.logLevel }, destination), release };
}
