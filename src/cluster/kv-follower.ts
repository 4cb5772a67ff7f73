// A live copy of a KV bucket (or of the keys under a filter) for the node's registries: a watch of
// updates first, then the entries already there, so nothing that changes in between is missed.
//
// The watch is a JetStream consumer, and consumers die with their server: when the watch ends while it
// is still wanted, it is opened again and the bucket read again (the owner ignores revisions it has).
// Opening is retried while JetStream is briefly unavailable: nats-server 2.9 may place a new consumer on
// a server of the stream that is down, and such a create only times out, so another try usually lands
// on a live one.

import type { KV, KvEntry } from "@nats-io/kv";
import type { Logger } from "pino";
import { retryWhileTransient } from "../host-services/jetstream-retry.js";

const REOPEN_MS = 1000;

export interface FollowOptions {
  /** Keys to follow (a subject filter); all by default. */
  key?: string;
  /** Also read what is there already when opening (and reopening). */
  readExisting: boolean;
  log?: Logger;
}

export class KvFollower {
  private stopWatch?: () => void;
  private stopped = false;

  private constructor(
    private readonly kv: KV,
    private readonly onEntry: (entry: KvEntry) => void,
    private readonly o: FollowOptions,
  ) {}

  /** Resolves once the watch runs and the existing entries were read; rejects when it cannot open. */
  static async follow(kv: KV, onEntry: (entry: KvEntry) => void, o: FollowOptions): Promise<KvFollower> {
    const follower = new KvFollower(kv, onEntry, o);
    await follower.open();
    return follower;
  }

  stop(): void {
    this.stopped = true;
    this.stopWatch?.();
  }

  private async open(): Promise<void> {
    const watch = await retryWhileTransient(() => this.kv.watch({ ...(this.o.key ? { key: this.o.key } : {}), include: "updates" }));
    if (this.stopped) {
      watch.stop();
      return;
    }
    this.stopWatch = () => watch.stop();
    void (async () => {
      for await (const entry of watch) this.onEntry(entry);
    })()
      .catch(() => undefined)
      .finally(() => this.reopenLater());
    if (!this.o.readExisting) return;
    try {
      const keys: string[] = [];
      for await (const key of await retryWhileTransient(() => this.kv.keys(this.o.key))) keys.push(key);
      for (const key of keys) {
        const entry = await retryWhileTransient(() => this.kv.get(key));
        if (entry) this.onEntry(entry);
      }
    } catch (err) {
      this.stop(); // the open fails: no watch stays behind
      throw err;
    }
  }

  private reopenLater(): void {
    if (this.stopped) return;
    this.o.log?.warn({ key: this.o.key ?? ">" }, "a KV watch ended (its consumer's server went away?): opening it again");
    setTimeout(() => {
      if (this.stopped) return;
      this.open().catch((err: Error) => {
        this.o.log?.warn({ err: err.message }, "reopening a KV watch failed; trying again");
        this.reopenLater();
      });
    }, REOPEN_MS).unref();
  }
}
