// JetStream for the bundled broker: the registry of streams, their persistence under the data directory,
// and the glue to the broker (flush stores before acks leave; wake push consumers on new interest).
//
// Layout on disk: <storeDir>/<stream>/meta.json (config, created), <storeDir>/<stream>/msgs/ (FileStore;
// memory streams keep only their config), <storeDir>/<stream>/consumers/<name>.json (durable consumers;
// a name too long for a file name is stored under its SHA-256 instead, see consumerFileName).

import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import type { Logger } from "pino";
import type { Broker } from "../server.js";
import { JetStreamApi } from "./api.js";
import { type ConsumerConfig, normalizeStreamConfig, type StreamConfig, withDurableName } from "./config.js";
import { Consumer, type ConsumerState } from "./consumer.js";
import { FileStore } from "./store/file-store.js";
import { MemoryStore } from "./store/memory-store.js";
import type { MessageStore } from "./store/types.js";
import { Stream, type StreamHost } from "./stream.js";

interface StreamMeta {
  config: StreamConfig;
  created: number;
}

interface ConsumerFile {
  config: ConsumerConfig;
  created: number;
  state: ConsumerState;
}

/** Durable consumer state is written at most this often (and on close). */
const CONSUMER_SAVE_DELAY_MS = 50;

export class JetStream implements StreamHost {
  readonly streams = new Map<string, Stream>();
  private readonly dirtyStores = new Set<Stream>();
  private readonly awaitingInterest = new Set<Consumer>();
  private readonly dirtyConsumers = new Map<Consumer, Stream>();
  private consumerSaveTimer: NodeJS.Timeout | null = null;
  private readonly api: JetStreamApi;
  private readonly onSubscribe: (sub: { subject: string; queue: string | undefined }) => void;
  private readonly flushHook: () => void;

  constructor(
    readonly broker: Broker,
    readonly storeDir: string,
    private readonly log: Logger,
  ) {
    fs.mkdirSync(storeDir, { recursive: true });
    this.api = new JetStreamApi(this);
    this.flushHook = () => this.flushStores();
    broker.beforeFlushHooks.push(this.flushHook);
    // A push consumer waits for a subscription on exactly its deliver subject; wake it when one arrives.
    this.onSubscribe = (sub) => {
      if (this.awaitingInterest.size === 0) return;
      for (const consumer of this.awaitingInterest) {
        if (sub.subject === consumer.config.deliver_subject && sub.queue === consumer.config.deliver_group) {
          this.awaitingInterest.delete(consumer);
          consumer.kick();
        }
      }
    };
    broker.subscribeListeners.add(this.onSubscribe);
  }

  /** Reopens every stream and durable consumer found in the store directory. */
  recover(): void {
    for (const entry of fs.readdirSync(this.storeDir, { withFileTypes: true })) {
      if (!entry.isDirectory()) continue;
      const dir = path.join(this.storeDir, entry.name);
      try {
        const meta = JSON.parse(fs.readFileSync(path.join(dir, "meta.json"), "utf8")) as StreamMeta;
        const config = normalizeStreamConfig(meta.config, meta.config.name);
        const stream = new Stream(config, this.openStore(config), meta.created, this);
        this.streams.set(config.name, stream);
        this.recoverConsumers(stream, dir);
        stream.start();
        this.log.info({ stream: config.name, state: stream.stateJson() }, "stream recovered");
      } catch (err) {
        this.log.error({ err, dir }, "could not recover stream; leaving its files alone");
      }
    }
    this.api.start();
  }

  private recoverConsumers(stream: Stream, dir: string): void {
    const consumersDir = path.join(dir, "consumers");
    if (!fs.existsSync(consumersDir)) return;
    for (const file of fs.readdirSync(consumersDir)) {
      if (!file.endsWith(".json")) continue;
      try {
        const saved = JSON.parse(fs.readFileSync(path.join(consumersDir, file), "utf8")) as ConsumerFile;
        const name = saved.config.durable_name ?? file.slice(0, -".json".length);
        stream.consumers.set(name, new Consumer(name, withDurableName(saved.config), saved.created, stream, saved.state));
      } catch (err) {
        this.log.error({ err, file }, "could not recover consumer");
      }
    }
  }

  private streamDir(name: string): string {
    return path.join(this.storeDir, name);
  }

  openStore(config: StreamConfig): MessageStore {
    if (config.storage === "memory") return new MemoryStore();
    return new FileStore(path.join(this.streamDir(config.name), "msgs"));
  }

  createStream(config: StreamConfig): Stream {
    fs.mkdirSync(this.streamDir(config.name), { recursive: true });
    const stream = new Stream(config, this.openStore(config), Date.now(), this);
    this.streams.set(config.name, stream);
    this.saveStreamMeta(stream);
    stream.start();
    return stream;
  }

  deleteStream(stream: Stream): void {
    stream.stop();
    this.streams.delete(stream.name);
    this.dirtyStores.delete(stream);
    for (const [consumer, owner] of this.dirtyConsumers) if (owner === stream) this.dirtyConsumers.delete(consumer);
    stream.store.destroy();
    fs.rmSync(this.streamDir(stream.name), { recursive: true, force: true });
  }

  // ---- StreamHost ------------------------------------------------------------------------------------

  awaitInterest(consumer: Consumer): void {
    this.awaitingInterest.add(consumer);
  }

  forgetConsumer(consumer: Consumer): void {
    this.awaitingInterest.delete(consumer);
  }

  markDirty(stream: Stream): void {
    this.dirtyStores.add(stream);
  }

  saveStreamMeta(stream: Stream): void {
    const meta: StreamMeta = { config: stream.config, created: stream.created };
    writeFileAtomic(path.join(this.streamDir(stream.name), "meta.json"), JSON.stringify(meta));
  }

  saveConsumerState(stream: Stream, consumer: Consumer): void {
    if (!consumer.isDurable) return;
    this.dirtyConsumers.set(consumer, stream);
    if (this.consumerSaveTimer === null) {
      this.consumerSaveTimer = setTimeout(() => this.flushConsumers(), CONSUMER_SAVE_DELAY_MS);
      this.consumerSaveTimer.unref();
    }
  }

  removeConsumerState(stream: Stream, consumer: Consumer): void {
    this.dirtyConsumers.delete(consumer);
    fs.rmSync(path.join(this.streamDir(stream.name), "consumers", consumerFileName(consumer.name)), { force: true });
  }

  private flushConsumers(): void {
    this.consumerSaveTimer = null;
    for (const [consumer, stream] of this.dirtyConsumers) {
      const dir = path.join(this.streamDir(stream.name), "consumers");
      fs.mkdirSync(dir, { recursive: true });
      const file: ConsumerFile = { config: consumer.config, created: consumer.created, state: consumer.snapshot() };
      writeFileAtomic(path.join(dir, consumerFileName(consumer.name)), JSON.stringify(file));
    }
    this.dirtyConsumers.clear();
  }

  /** Hands stored messages to the OS before any ack for them can leave the broker. */
  flushStores(): void {
    if (this.dirtyStores.size === 0) return;
    for (const stream of this.dirtyStores) stream.store.flush();
    this.dirtyStores.clear();
  }

  accountInfo(apiTotal: number, apiErrors: number): Record<string, unknown> {
    let memory = 0;
    let storage = 0;
    let consumers = 0;
    for (const stream of this.streams.values()) {
      const bytes = stream.store.state().bytes;
      if (stream.config.storage === "memory") memory += bytes;
      else storage += bytes;
      consumers += stream.consumers.size;
    }
    return {
      memory,
      storage,
      streams: this.streams.size,
      consumers,
      limits: {
        max_memory: -1,
        max_storage: -1,
        max_streams: -1,
        max_consumers: -1,
        max_ack_pending: -1,
        memory_max_stream_bytes: -1,
        storage_max_stream_bytes: -1,
        max_bytes_required: false,
      },
      api: { total: apiTotal, errors: apiErrors },
    };
  }

  close(): void {
    this.api.stop();
    this.broker.subscribeListeners.delete(this.onSubscribe);
    const at = this.broker.beforeFlushHooks.indexOf(this.flushHook);
    if (at >= 0) this.broker.beforeFlushHooks.splice(at, 1);
    if (this.consumerSaveTimer) clearTimeout(this.consumerSaveTimer);
    this.flushConsumers();
    for (const stream of this.streams.values()) {
      stream.stop();
      stream.store.close();
    }
    this.streams.clear();
  }
}

/** The longest name whose "<name>.json.tmp" still fits a file name (255 bytes). */
const MAX_PLAIN_CONSUMER_FILE_NAME = 255 - ".json.tmp".length;

/** A durable's state file: its name, or for names up to nats-server's 255 bytes that do not fit, a digest. */
function consumerFileName(name: string): string {
  const base = Buffer.byteLength(name) <= MAX_PLAIN_CONSUMER_FILE_NAME ? name : createHash("sha256").update(name).digest("hex");
  return `${base}.json`;
}

/** Write-then-rename, so a crash leaves the old file or the new one, never half of one. */
function writeFileAtomic(file: string, content: string): void {
  const tmp = `${file}.tmp`;
  fs.writeFileSync(tmp, content);
  fs.renameSync(tmp, file);
}
