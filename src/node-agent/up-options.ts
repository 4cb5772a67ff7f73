// What `nex node up` takes and gives (up.ts, start-agent.ts), apart from both so that neither imports
// the other for its types.

import type { NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "pino";
import type { BrokerOptions, RunningBroker } from "../broker/index.js";
import type { NatsAuth } from "../runtimes/types.js";
import type { NodeConfig } from "./config.js";
import type { LocalBrokerConnection } from "./broker-credentials.js";
import type { NodeAgent } from "./node.js";
import type { HttpGateway } from "./http-gateway.js";
import type { GatewayOptions } from "./gateway-options.js";
import type { MetricsServer } from "./metrics-server.js";

export interface NodeUpOptions {
  config: NodeConfig;
  /** Existing NATS servers (comma-separated); when absent the bundled broker starts in-process. */
  server?: string;
  /** Credentials: for --server, the node's connection; for the bundled broker, the one user it admits (and the node connects as). */
  auth?: NatsAuth;
  /** Bundled broker: admit anonymous clients (no generated credentials). */
  noAuth?: boolean;
  /** Bundled broker: options from a nats-server config file (listen address, limits, authorization, tls...), under the flags. */
  brokerOptions?: BrokerOptions;
  /** Bundled broker listen options. */
  host?: string;
  port?: number;
  httpPort?: number;
  /** The HTTP gateway (--web-port): off when absent. */
  web?: Partial<GatewayOptions> & { port: number };
  /** GET /metrics for Prometheus (--metrics-port): off when absent. */
  metrics?: { host: string; port: number };
  version: string;
  log: Logger;
  onLameDuckDone?: () => void;
}

export interface RunningNode {
  node: NodeAgent;
  nc: NatsConnection;
  broker?: RunningBroker;
  brokerUrl: string;
  /** Bundled broker with auth: how the local CLI (and other local clients) connect. */
  local?: LocalBrokerConnection;
  /** The HTTP gateway, when --web-port asked for one. */
  gateway?: HttpGateway;
  /** The /metrics listener, when --metrics-port asked for one. */
  metrics?: MetricsServer;
  stop(): Promise<void>;
}
