// The node's control endpoints over NATS request/reply, also registered as a NATS micro service
// ("nex-node") so `$SRV.PING/INFO/STATS` discovery and standard tooling list them. Each endpoint handler
// returns a JSON-able value, throws ControlError for a clear error reply, or returns NO_REPLY to stay
// silent (auction losers, UNDEPLOY for a workload this node does not run).

import type { Msg, NatsConnection, Subscription } from "@nats-io/transport-node";
import { ControlError } from "./errors.js";
import { errorReply } from "../protocol/errors.js";

export const NO_REPLY = Symbol("no reply");
export type Handler = (msg: Msg, tokens: string[]) => Promise<unknown>;

interface EndpointStats {
  name: string;
  subject: string;
  num_requests: number;
  num_errors: number;
  last_error: string;
  processing_time: number; // ns
}

export interface ServiceIdentity {
  name: string;
  id: string;
  version: string;
  description: string;
  metadata: Record<string, string>;
}

export class ControlApi {
  private readonly subs: Subscription[] = [];
  private readonly stats = new Map<string, EndpointStats>();
  private readonly started = new Date().toISOString();

  constructor(
    private readonly nc: NatsConnection,
    private readonly service: ServiceIdentity,
    private readonly onError: (err: unknown, subject: string) => void,
  ) {
    this.registerDiscovery();
  }

  /** Serves one endpoint; `name` is how it shows in $SRV.INFO/STATS. */
  endpoint(name: string, subject: string, handler: Handler): Subscription {
    let stats = this.stats.get(name);
    if (!stats) {
      stats = { name, subject, num_requests: 0, num_errors: 0, last_error: "", processing_time: 0 };
      this.stats.set(name, stats);
    }
    const s = stats;
    const sub = this.nc.subscribe(subject, {
      callback: (err, msg) => {
        if (err) return;
        void this.handle(s, msg, handler);
      },
    });
    this.subs.push(sub);
    return sub;
  }

  private async handle(stats: EndpointStats, msg: Msg, handler: Handler): Promise<void> {
    const started = process.hrtime.bigint();
    stats.num_requests++;
    let result: unknown;
    try {
      result = await handler(msg, msg.subject.split("."));
    } catch (err) {
      const error = err instanceof ControlError ? err : new ControlError(500, err instanceof Error ? err.message : String(err));
      if (!(err instanceof ControlError)) this.onError(err, msg.subject);
      stats.num_errors++;
      stats.last_error = error.message;
      this.replyError(msg, error);
      return;
    } finally {
      stats.processing_time += Number(process.hrtime.bigint() - started);
    }
    if (result !== NO_REPLY && msg.reply) msg.respond(JSON.stringify(result));
  }

  private replyError(msg: Msg, error: ControlError): void {
    if (!msg.reply) return;
    const { body, headers } = errorReply(error.code, error.message);
    msg.respond(body, { headers });
  }

  /** ADR-32 discovery: plain subscriptions on $SRV.<verb>, $SRV.<verb>.<name>, $SRV.<verb>.<name>.<id>. */
  private registerDiscovery(): void {
    const { name, id } = this.service;
    const base = { name, id, version: this.service.version, metadata: this.service.metadata };
    const answers: Record<string, () => object> = {
      PING: () => ({ type: "io.nats.micro.v1.ping_response", ...base }),
      INFO: () => ({
        type: "io.nats.micro.v1.info_response",
        ...base,
        description: this.service.description,
        endpoints: [...this.stats.values()].map((e) => ({ name: e.name, subject: e.subject, metadata: null })),
      }),
      STATS: () => ({
        type: "io.nats.micro.v1.stats_response",
        ...base,
        started: this.started,
        endpoints: [...this.stats.values()].map((e) => ({
          name: e.name,
          subject: e.subject,
          num_requests: e.num_requests,
          num_errors: e.num_errors,
          last_error: e.last_error,
          processing_time: e.processing_time,
          average_processing_time: e.num_requests > 0 ? Math.round(e.processing_time / e.num_requests) : 0,
        })),
      }),
    };
    for (const [verb, answer] of Object.entries(answers)) {
      for (const subject of [`$SRV.${verb}`, `$SRV.${verb}.${name}`, `$SRV.${verb}.${name}.${id}`]) {
        this.subs.push(
          this.nc.subscribe(subject, {
            callback: (err, msg) => {
              if (!err) msg.respond(JSON.stringify(answer()));
            },
          }),
        );
      }
    }
  }

  close(): void {
    for (const sub of this.subs) sub.unsubscribe();
    this.subs.length = 0;
  }
}
