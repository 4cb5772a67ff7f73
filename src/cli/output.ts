// Output helpers shared by every `nex` command: tables for people, JSON for scripts, one-line errors with
// exit codes scripts can branch on (the spinner is in spinner.ts).
//
// Exit codes:
//   0  success
//   1  general error (including an error reply to `nex req`)
//   2  usage error (bad option or argument; see configureUsageErrors)
//   3  not found (no responders on a subject, unknown workload or node)
//   4  refused by the node (validation error, unauthorised issuer, lame duck, over capacity)
//   5  timeout, or the NATS server is unreachable / the connection was lost

import type { Command } from "commander";
import { createRequire } from "node:module";

export const ExitCode = {
  ok: 0,
  error: 1,
  usage: 2,
  notFound: 3,
  refused: 4,
  unreachable: 5,
} as const;

/** An error whose message is already fit for the user and that carries its exit code. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = ExitCode.error,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = "CliError";
  }
}

/** Prints `nex: <message>` as one line on stderr and exits. */
export function fail(message: string, exitCode: number = ExitCode.error): never {
  process.stderr.write(`nex: ${oneLine(message)}\n`);
  process.exit(exitCode);
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, " ").trim();
}

function errorName(err: unknown): string {
  return err instanceof Error ? err.name || err.constructor.name : "";
}

/** Exit code for errors thrown by the NATS client (or anything else) that reached a command's top. */
function exitCodeFor(err: unknown): number {
  if (err instanceof CliError) return err.exitCode;
  // Matched by name: the client's error classes are not worth a runtime import here.
  for (let e: unknown = err; e instanceof Error; e = e.cause) {
    const name = errorName(e);
    if (name === "NoRespondersError") return ExitCode.notFound;
    if (name === "TimeoutError" || name === "ConnectionError" || name === "ClosedConnectionError") return ExitCode.unreachable;
  }
  return ExitCode.error;
}

/** NEX_DEBUG=1: the whole cause chain, since a CliError's own stack only shows where it was rephrased. */
function printStacks(err: unknown): void {
  for (let e: unknown = err, first = true; e !== undefined; e = e instanceof Error ? e.cause : undefined, first = false) {
    const text = e instanceof Error ? (e.stack ?? e.message) : String(e);
    process.stderr.write(`${first ? "" : "Caused by: "}${text}\n`);
  }
}

/**
 * Wraps a command action so that any thrown error becomes one clear line and a meaningful exit code.
 * NEX_DEBUG=1 prints the stack as well, for bug reports.
 */
export function withErrors<A extends unknown[]>(action: (...args: A) => Promise<void> | void): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await action(...args);
    } catch (err) {
      if (process.env.NEX_DEBUG === "1") printStacks(err);
      fail(err instanceof Error ? err.message : String(err), exitCodeFor(err));
    }
  };
}

/**
 * Commander exits with 1 on a bad option or argument; scripts want to tell that apart from a failed
 * operation, so usage errors on this command exit with 2 (help and --version keep exiting 0), and the
 * message starts with `nex:` like every other error. Commands added with addCommand do not inherit
 * this, so each command opts in.
 */
export function configureUsageErrors(cmd: Command): Command {
  cmd.configureOutput({ outputError: (str, write) => write(str.replace(/^error: /, "nex: ")) });
  return cmd.exitOverride((err) => {
    const usage = err.exitCode !== 0 && err.code !== "commander.executeSubCommandAsync";
    process.exit(usage ? ExitCode.usage : err.exitCode);
  });
}

export interface Column<R> {
  /** Property of the row to show. */
  key: keyof R & string;
  /** Column heading; defaults to the key in upper case. */
  header?: string;
  align?: "left" | "right" | "center";
  /** Turns the value into text; default String(value), "" for null/undefined. */
  format?: (value: R[keyof R], row: R) => string;
}

/** A table for people. Colours only on a terminal, so piping the output to a file stays plain. */
export function printTable<R extends object>(rows: R[], columns: Array<Column<R> | (keyof R & string)>): void {
  const cols: Column<R>[] = columns.map((c) => (typeof c === "string" ? { key: c } : c));
  const colour = Boolean(process.stdout.isTTY);
  // Loaded on first use: most commands print no table, and every module costs start-up time.
  const Table = createRequire(import.meta.url)("cli-table3") as typeof import("cli-table3");
  const table = new Table({
    head: cols.map((c) => c.header ?? c.key.toUpperCase()),
    colAligns: cols.map((c) => c.align ?? "left"),
    style: colour ? { head: ["cyan"], compact: true } : { head: [], border: [], compact: true },
  });
  for (const row of rows) {
    table.push(
      cols.map((c) => {
        const value = row[c.key];
        if (c.format) return c.format(value, row);
        return value === undefined || value === null ? "" : String(value);
      }),
    );
  }
  process.stdout.write(`${table.toString()}\n`);
}

/** Pretty JSON for --json output of a single result. */
export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** One compact JSON object per line, for streams (sub, monitor) that scripts read line by line. */
export function printJsonLine(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}
