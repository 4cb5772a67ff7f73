// `nex req`, `nex pub`, `nex sub`: the small NATS tools, so a Nex user needs no second CLI to poke at
// subjects. Output follows the `nats` CLI where people already know it (`[#1] Received on "x"`,
// `{{Count}}` in pub bodies); progress notes go to stderr so stdout is only what was received.

import { Command, InvalidArgumentError } from "commander";
import { headers as newHeaders, Match, type Msg, type MsgHdrs, type NatsConnection } from "@nats-io/transport-node";
import { addConnectionOptions, connectFromOptions, durationArg, formatDuration, type ConnectionOptions } from "./connection.js";
import { CliError, ExitCode, printJsonLine, withErrors } from "./output.js";
import { isValidPublishSubject, isValidSubscriptionSubject } from "../protocol/subjects.js";
import { requestFailureKind } from "../protocol/errors.js";

type HeaderPair = [string, string];

/** commander collector for repeatable `--header K:V`. */
function headerArg(value: string, previous: HeaderPair[] = []): HeaderPair[] {
  const colon = value.indexOf(":");
  const key = colon > 0 ? value.slice(0, colon).trim() : "";
  if (!key || /\s/.test(key)) throw new InvalidArgumentError(`expected KEY:VALUE, got ${JSON.stringify(value)}`);
  return [...previous, [key, value.slice(colon + 1).trim()]];
}

function countArg(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError("must be a positive integer");
  return n;
}

/** A subject a client may use, by the server's rules (protocol/subjects.ts): wildcards only when subscribing. */
function checkSubject(subject: string, wildcards: boolean): void {
  const valid = wildcards ? isValidSubscriptionSubject(subject) : isValidPublishSubject(subject);
  if (!valid) throw new CliError(`invalid subject ${JSON.stringify(subject)}`, ExitCode.usage);
}

async function readStdin(): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** The payload: the argument, or stdin when it is `-`, or omitted while stdin is a pipe or file. */
async function readPayload(arg: string | undefined): Promise<Uint8Array> {
  if (arg !== undefined && arg !== "-") return Buffer.from(arg);
  if (arg === "-" || !process.stdin.isTTY) return readStdin();
  return new Uint8Array(0);
}

function buildHeaders(pairs: HeaderPair[], expand: (s: string) => string = (s) => s): MsgHdrs | undefined {
  if (pairs.length === 0) return undefined;
  const h = newHeaders();
  for (const [k, v] of pairs) h.append(k, expand(v));
  return h;
}

/** `{{Count}}` (also `{{.Count}}`, as in the nats CLI's Go templates) becomes the message number. */
const COUNT_TEMPLATE = /\{\{\s*\.?Count\s*\}\}/;

function expandCount(text: string, count: number): string {
  return text.replace(new RegExp(COUNT_TEMPLATE.source, "g"), String(count));
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/** The body for JSON output: text when it is valid UTF-8, otherwise base64 (flagged). */
function dataForJson(data: Uint8Array): { data: string; encoding?: "base64" } {
  try {
    return { data: strictUtf8.decode(data) };
  } catch {
    return { data: Buffer.from(data).toString("base64"), encoding: "base64" };
  }
}

function headersObject(h: MsgHdrs | undefined): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  if (h) for (const [k, v] of h) out[k] = v;
  return out;
}

export function messageJson(msg: Msg): Record<string, unknown> {
  return { subject: msg.subject, reply: msg.reply || null, headers: headersObject(msg.headers), ...dataForJson(msg.data) };
}

/** Header block as the nats CLI prints it: status first (if any), then `Key: value` lines. */
function headerLines(h: MsgHdrs | undefined): string[] {
  if (!h) return [];
  const lines: string[] = [];
  if (h.code > 0) lines.push(`Nats-Status: ${h.code}${h.description ? ` ${h.description}` : ""}`);
  for (const [k, values] of h) for (const v of values) lines.push(`${k}: ${v}`);
  return lines;
}

function withNewline(text: string): string {
  return text.endsWith("\n") ? text : `${text}\n`;
}

/**
 * The error an error reply carries, or undefined for a normal reply. Micro services set
 * Nats-Service-Error(-Code); the Nex control API sets Nex-Error with {"error":{code,message}} as the
 * body; Nex host services set Nex-Error-Code with the message as the body.
 */
function replyError(msg: Msg): string | undefined {
  const h = msg.headers;
  if (!h) return undefined;
  const get = (k: string): string => h.get(k, Match.IgnoreCase);
  const service = get("Nats-Service-Error");
  const nex = get("Nex-Error");
  const nexCode = get("Nex-Error-Code");
  if (!service && !nex && !nexCode) {
    // A bare status reply (e.g. 408, 409) is an error too; 503 never gets here (the client throws).
    return h.hasError ? `status ${h.code}${h.description ? ` ${h.description}` : ""}` : undefined;
  }
  let body: { error?: { code?: unknown; message?: unknown } } | undefined;
  try {
    body = JSON.parse(msg.string()) as typeof body;
  } catch {
    body = undefined;
  }
  const bodyMessage = typeof body?.error?.message === "string" ? body.error.message : undefined;
  const message = service || bodyMessage || nex || msg.string().trim() || "error";
  const code = get("Nats-Service-Error-Code") || nexCode || (body?.error?.code !== undefined ? String(body.error.code) : "");
  return code && !message.includes(code) ? `${message} (${code})` : message;
}

interface ReqOptions extends ConnectionOptions {
  header?: HeaderPair[];
  raw?: boolean;
}

function reqCommand(): Command {
  const cmd = new Command("req")
    .description("send a request and print the reply (like `nats req`)")
    .argument("<subject>", "subject to send the request to")
    .argument("[payload]", "request body; `-` or omitted reads stdin when it is not a terminal")
    .option("-H, --header <key:value>", "add a header (repeatable)", headerArg)
    .option("--raw", "print only the reply body, byte for byte");
  return addConnectionOptions(cmd).action(
    withErrors(async (subject: string, payloadArg: string | undefined, opts: ReqOptions) => {
      checkSubject(subject, false);
      const payload = await readPayload(payloadArg);
      const nc = await connectFromOptions(opts, "nex req");
      const timeout = opts.timeout ?? 5000;
      let reply: Msg;
      try {
        reply = await nc.request(subject, payload, { timeout, headers: buildHeaders(opts.header ?? []) });
      } catch (err) {
        await nc.close();
        throw requestFailure(err, subject, timeout);
      }
      await nc.close();
      const error = replyError(reply);
      if (opts.json) printJsonLine(messageJson(reply));
      else if (!error && opts.raw) process.stdout.write(reply.data);
      else if (!error) {
        const lines = headerLines(reply.headers);
        if (lines.length) process.stdout.write(`${lines.join("\n")}\n\n`);
        if (reply.data.length) process.stdout.write(withNewline(reply.string()));
      }
      if (error) throw new CliError(`error reply from "${subject}": ${error}`, ExitCode.error);
    }),
  );
}

/** No responders and timeouts get their own exit codes; the client reports them as nested causes. */
function requestFailure(err: unknown, subject: string, timeoutMs: number): Error {
  const kind = requestFailureKind(err);
  if (kind === "no_responders") return new CliError(`no responders on "${subject}"`, ExitCode.notFound, { cause: err });
  if (kind === "timeout") return new CliError(`no reply on "${subject}" within ${formatDuration(timeoutMs)}`, ExitCode.unreachable, { cause: err });
  return err instanceof Error ? err : new Error(String(err));
}

interface PubOptions extends ConnectionOptions {
  header?: HeaderPair[];
  count: number;
  reply?: string;
  sleep?: number;
}

function pubCommand(): Command {
  const cmd = new Command("pub")
    .description("publish a message (like `nats pub`); {{Count}} in the body or headers is the message number")
    .argument("<subject>", "subject to publish to")
    .argument("[payload]", "message body; `-` or omitted reads stdin when it is not a terminal")
    .option("-H, --header <key:value>", "add a header (repeatable)", headerArg)
    .option("--count <n>", "publish this many messages", countArg, 1)
    .option("--reply <subject>", "reply subject to send with the message")
    .option("--sleep <duration>", "pause between messages, e.g. 100ms", durationArg);
  return addConnectionOptions(cmd).action(
    withErrors(async (subject: string, payloadArg: string | undefined, opts: PubOptions) => {
      checkSubject(subject, false);
      if (opts.reply !== undefined) checkSubject(opts.reply, false);
      // Bytes are sent as given; only a body that uses {{Count}} is treated as text and expanded.
      const payload = await readPayload(payloadArg);
      const template = Buffer.from(payload).toString("utf8");
      const templated = COUNT_TEMPLATE.test(template);
      const nc = await connectFromOptions(opts, "nex pub");
      let bytes = 0;
      for (let n = 1; n <= opts.count; n++) {
        const body = templated ? Buffer.from(expandCount(template, n)) : payload;
        nc.publish(subject, body, { headers: buildHeaders(opts.header ?? [], (v) => expandCount(v, n)), reply: opts.reply });
        bytes += body.length;
        if (opts.sleep && n < opts.count) await new Promise((r) => setTimeout(r, opts.sleep));
      }
      // flush() returns once the server has processed everything we sent, so nothing is lost on exit.
      await nc.flush();
      await nc.close();
      if (opts.json) printJsonLine({ subject, count: opts.count, bytes });
      else process.stderr.write(`Published ${opts.count === 1 ? `${bytes} bytes` : `${opts.count} messages`} to "${subject}"\n`);
    }),
  );
}

export interface ConsumeOptions {
  queue?: string;
  /** Stop after this many messages. */
  max?: number;
  /** Printed on stderr once the server has the subscription, so callers know it is safe to publish. */
  notice: string;
}

/**
 * Subscribes, waits until the server has registered the subscription, and hands every message to
 * onMessage until `max` is reached. A connection lost before that is an error (exit 5), not a silent
 * success that a script would mistake for "all messages received".
 */
export async function consume(nc: NatsConnection, subject: string, options: ConsumeOptions, onMessage: (msg: Msg, n: number) => void): Promise<void> {
  const sub = nc.subscribe(subject, { queue: options.queue, max: options.max });
  await nc.flush();
  process.stderr.write(`${options.notice}\n`);
  let received = 0;
  for await (const msg of sub) {
    received++;
    onMessage(msg, received);
  }
  if (options.max !== undefined && received >= options.max) return;
  const reason = nc.isClosed() ? await nc.closed() : undefined;
  throw new CliError(`connection to the server was lost${reason ? `: ${reason.message}` : ""}`, ExitCode.unreachable);
}

interface SubOptions extends ConnectionOptions {
  queue?: string;
  count?: number;
  raw?: boolean;
}

function subCommand(): Command {
  const cmd = new Command("sub")
    .description("subscribe and print messages (like `nats sub`); wildcards * and > allowed")
    .argument("<subject>", "subject to subscribe to")
    .option("--queue <group>", "join this queue group (each message goes to one member)")
    .option("--count <n>", "exit after receiving this many messages", countArg)
    .option("--raw", "print only message bodies, one per line");
  return addConnectionOptions(cmd).action(
    withErrors(async (subject: string, opts: SubOptions) => {
      checkSubject(subject, true);
      if (opts.queue !== undefined && !/^[^\s*>]+$/.test(opts.queue)) throw new CliError(`invalid queue group ${JSON.stringify(opts.queue)}`, ExitCode.usage);
      const nc = await connectFromOptions(opts, "nex sub");
      const notice = `Subscribing on "${subject}"${opts.queue ? ` in queue group "${opts.queue}"` : ""}`;
      await consume(nc, subject, { queue: opts.queue, max: opts.count, notice }, (msg, n) => {
        if (opts.json) return printJsonLine(messageJson(msg));
        if (opts.raw) return void process.stdout.write(withNewline(msg.string()));
        const reply = msg.reply ? ` with reply "${msg.reply}"` : "";
        const lines = headerLines(msg.headers);
        const head = `[#${n}] Received on "${msg.subject}"${reply}\n${lines.length ? `${lines.join("\n")}\n\n` : ""}`;
        process.stdout.write(`${head}${withNewline(msg.string())}\n`);
      });
      await nc.close();
    }),
  );
}

export function natsToolCommands(): Command[] {
  return [reqCommand(), pubCommand(), subCommand()];
}
