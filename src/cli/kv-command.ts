// `nex kv ls|get|put|del|watch`: look into the key-value buckets workloads use. Bucket names are the
// ones workloads see (a workload's own bucket is its name; kv.bucket("x") is "x"), scoped by
// --namespace; --raw addresses any JetStream KV bucket by its real name.

import { Command } from "commander";
import { Kvm, type KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { bucketNameProblem, kvBucketName } from "../protocol/buckets.js";
import { addConnectionOptions, connectFromOptions } from "./connection.js";
import { type ClientOpts, namespaceOption } from "./node-command.js";
import { CliError, ExitCode, printJson, printJsonLine, printTable, withErrors } from "./output.js";

type KvOpts = ClientOpts & { raw?: boolean };

function realName(bucket: string, opts: KvOpts): string {
  if (opts.raw) return bucket;
  const problem = bucketNameProblem(bucket);
  if (problem) throw new CliError(problem, ExitCode.usage);
  return kvBucketName(opts.namespace, bucket);
}

async function withKv<T>(bucket: string, opts: KvOpts, fn: (kv: KV, nc: NatsConnection) => Promise<T>): Promise<T> {
  const nc = await connectFromOptions(opts, "nex kv");
  try {
    const name = realName(bucket, opts);
    const kvm = new Kvm(nc);
    let exists = false;
    for await (const status of kvm.list()) if (status.bucket === name) exists = true;
    if (!exists) throw new CliError(`no bucket ${bucket} in namespace ${opts.namespace}`, ExitCode.notFound);
    return await fn(await kvm.open(name), nc);
  } finally {
    await nc.close();
  }
}

function kvCommand(name: string, description: string): Command {
  return addConnectionOptions(new Command(name).description(description).addOption(namespaceOption()).option("--raw", "use the bucket name as is (not a workload bucket)"));
}

export function kvCommands(): Command {
  const kv = new Command("kv").description("inspect workload key-value buckets");
  kv.addCommand(
    kvCommand("ls", "list buckets of the namespace, or the keys of one bucket")
      .argument("[bucket]")
      .action(
        withErrors(async (bucket: string | undefined, opts: KvOpts) => {
          if (bucket !== undefined) {
            const keys = await withKv(bucket, opts, async (b) => {
              const out: string[] = [];
              for await (const k of await b.keys()) out.push(k);
              return out.sort();
            });
            if (opts.json) return printJson(keys);
            for (const k of keys) console.log(k);
            return;
          }
          const nc = await connectFromOptions(opts, "nex kv");
          try {
            const prefix = opts.raw ? "" : kvBucketName(opts.namespace, "x").slice(0, -1);
            const rows: { bucket: string; values: number; bytes: number }[] = [];
            for await (const s of new Kvm(nc).list()) {
              if (s.bucket.startsWith(prefix)) rows.push({ bucket: s.bucket.slice(prefix.length), values: s.values, bytes: s.size });
            }
            if (opts.json) return printJson(rows);
            if (rows.length === 0) return console.log(`no buckets in namespace ${opts.namespace}`);
            printTable(rows, ["bucket", { key: "values", align: "right" }, { key: "bytes", align: "right" }]);
          } finally {
            await nc.close();
          }
        }),
      ),
  );
  kv.addCommand(
    kvCommand("get", "print a value").argument("<bucket>").argument("<key>").action(
      withErrors(async (bucket: string, key: string, opts: KvOpts) => {
        const entry = await withKv(bucket, opts, (b) => b.get(key));
        if (entry === null || entry.operation !== "PUT") throw new CliError(`no key ${key} in ${bucket}`, ExitCode.notFound);
        if (opts.json) return printJson({ key, revision: entry.revision, created: entry.created, value: entry.string() });
        process.stdout.write(`${entry.string()}\n`);
      }),
    ),
  );
  kv.addCommand(
    kvCommand("put", "set a value (from the argument, or stdin)").argument("<bucket>").argument("<key>").argument("[value]").action(
      withErrors(async (bucket: string, key: string, value: string | undefined, opts: KvOpts) => {
        const data = value ?? (process.stdin.isTTY ? "" : await readStdin());
        const revision = await withKv(bucket, opts, (b) => b.put(key, data));
        if (opts.json) return printJson({ key, revision });
        console.log(`${key} = revision ${revision}`);
      }),
    ),
  );
  kv.addCommand(
    kvCommand("del", "delete a key").argument("<bucket>").argument("<key>").action(
      withErrors(async (bucket: string, key: string, opts: KvOpts) => {
        await withKv(bucket, opts, (b) => b.delete(key));
        if (!opts.json) console.log(`deleted ${key}`);
      }),
    ),
  );
  kv.addCommand(
    kvCommand("watch", "print changes as they happen")
      .argument("<bucket>")
      .argument("[key]", "key or filter (default: every key)")
      .option("--count <n>", "exit after n updates", (v) => Number(v))
      .action(
        withErrors(async (bucket: string, key: string | undefined, opts: KvOpts & { count?: number }) => {
          await withKv(bucket, opts, async (b) => {
            const watch = await b.watch({ key: key ?? ">" });
            process.stderr.write(`watching ${bucket}${key ? ` ${key}` : ""}\n`);
            let n = 0;
            for await (const e of watch) {
              if (opts.json) printJsonLine({ key: e.key, revision: e.revision, operation: e.operation, value: e.string() });
              else console.log(`[${e.revision}] ${e.operation} ${e.key}${e.operation === "PUT" ? ` = ${e.string()}` : ""}`);
              if (opts.count !== undefined && ++n >= opts.count) break;
            }
          });
        }),
      ),
  );
  return kv;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}
