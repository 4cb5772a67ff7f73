// The broker's GET /metrics (Prometheus text format) on the monitoring port: the numbers /varz and
// JetStream's account info give, read at scrape time from the counters the broker keeps anyway, so the
// publish path does no work for metrics.

import type { Broker } from "./server.js";
import type { JetStream } from "./jetstream/jetstream.js";
import { SERVER_VERSION } from "./options.js";
import { Exposition, type Sample } from "../util/prometheus.js";

export function brokerMetrics(broker: Broker, jetstream: JetStream | undefined): string {
  const totals = broker.totals();
  const one = (value: number): Sample[] => [{ value }];
  const out = new Exposition()
    .gauge("nex_broker_info", "The broker: its server id and version (always 1).", [{ labels: { server_id: broker.serverId, server_name: broker.name, version: SERVER_VERSION }, value: 1 }])
    .gauge("nex_broker_start_time_seconds", "When the broker started, in seconds since the epoch.", one(broker.started.getTime() / 1000))
    .gauge("nex_broker_connections", "Client connections open now.", one(broker.clients.size))
    .counter("nex_broker_connections_total", "Client connections accepted since the broker started.", one(broker.totalConnections))
    .gauge("nex_broker_subscriptions", "Subscriptions now.", one(broker.sublist.count))
    .counter("nex_broker_in_messages_total", "Messages received from clients.", one(totals.inMsgs))
    .counter("nex_broker_out_messages_total", "Messages delivered to clients.", one(totals.outMsgs))
    .counter("nex_broker_in_bytes_total", "Payload bytes received from clients.", one(totals.inBytes))
    .counter("nex_broker_out_bytes_total", "Payload bytes delivered to clients.", one(totals.outBytes))
    .counter("nex_broker_slow_consumers_total", "Connections closed or stalled for not reading their messages in time.", one(broker.slowConsumers));
  if (jetstream) {
    let consumers = 0;
    const messages = { memory: 0, file: 0 };
    const bytes = { memory: 0, file: 0 };
    for (const stream of jetstream.streams.values()) {
      const state = stream.store.state();
      const storage = stream.config.storage === "memory" ? "memory" : "file";
      messages[storage] += state.messages;
      bytes[storage] += state.bytes;
      consumers += stream.consumers.size;
    }
    const byStorage = (v: { memory: number; file: number }): Sample[] => [
      { labels: { storage: "memory" }, value: v.memory },
      { labels: { storage: "file" }, value: v.file },
    ];
    out
      .gauge("nex_broker_jetstream_streams", "JetStream streams.", one(jetstream.streams.size))
      .gauge("nex_broker_jetstream_consumers", "JetStream consumers of every stream.", one(consumers))
      .gauge("nex_broker_jetstream_messages", "Messages stored in JetStream streams, by storage type.", byStorage(messages))
      .gauge("nex_broker_jetstream_bytes", "Bytes stored in JetStream streams, by storage type.", byStorage(bytes));
  }
  return out.text();
}
