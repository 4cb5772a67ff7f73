// `nex broker`: the bundled broker as a standalone server, until SIGINT/SIGTERM.

import { Command, InvalidArgumentError } from "commander";
import pino from "pino";

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError("must be a port number 0-65535");
  return n;
}

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError("must be a positive integer");
  return n;
}

export function brokerCommand(): Command {
  return new Command("broker")
    .description("run the bundled NATS broker (nats-server compatible core protocol)")
    .option("--host <host>", "interface to listen on", "127.0.0.1")
    .option("-p, --port <port>", "client port (0 = any free port)", port, 4222)
    .option("--http-port <port>", "monitoring port for /varz /connz /subsz /healthz (0 = any free port)", port)
    .option("--data-dir <dir>", "directory for JetStream data (default: a temporary directory, removed on exit)")
    .option("--no-jetstream", "serve only the core protocol (no streams, KV or object store)")
    .option("--max-payload <bytes>", "largest message a client may publish", positiveInt)
    .option("--max-pending <bytes>", "outbound backlog before a connection is closed as a slow consumer", positiveInt)
    .option("--write-deadline <ms>", "close a connection as a slow consumer when its output makes no progress this long", positiveInt)
    .option("--log-level <level>", "trace, debug, info, warn, error", "info")
    .action(async (opts) => {
      const log = pino({ level: opts.logLevel }, pino.destination(2));
      // Loaded here, so client commands (req, run, ...) do not pay for the broker's modules at start-up.
      const { startBroker } = await import("../broker/index.js");
      const broker = await startBroker(
        {
          host: opts.host,
          port: opts.port,
          httpPort: opts.httpPort,
          dataDir: opts.dataDir,
          jetstream: opts.jetstream,
          maxPayload: opts.maxPayload,
          maxPending: opts.maxPending,
          writeDeadlineMs: opts.writeDeadline,
        },
        log,
      );
      console.log(`Listening for client connections on ${broker.url}`);
      if (broker.httpUrl) console.log(`Monitoring on ${broker.httpUrl}`);
      let stopping = false;
      const stop = async (signal: string): Promise<void> => {
        if (stopping) return;
        stopping = true;
        log.info({ signal }, "shutting down");
        await broker.close();
        process.exit(0);
      };
      process.on("SIGINT", () => void stop("SIGINT"));
      process.on("SIGTERM", () => void stop("SIGTERM"));
    });
}
