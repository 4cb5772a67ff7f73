// The HTTP gateway's options and their defaults, apart from the gateway itself so that the CLI can show
// the defaults without loading the gateway (and the NATS client) before the node's broker starts.

export interface GatewayOptions {
  host: string;
  /** 0: any free port. */
  port: number;
  /** Requests in flight at most; past it 503. */
  maxInFlight: number;
  /** Time to receive a request's headers (slowloris), ms. */
  headersTimeoutMs: number;
  /** Time to receive a whole request, ms. */
  requestTimeoutMs: number;
  /** Time to wait for the workload's reply, ms. */
  replyTimeoutMs: number;
  /** Bytes of a request's headers at most (Node answers 431 past it). */
  maxHeaderBytes: number;
}

export const DEFAULT_GATEWAY: Omit<GatewayOptions, "host" | "port"> = {
  maxInFlight: 1024,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 60_000,
  replyTimeoutMs: 30_000,
  maxHeaderBytes: 16 * 1024,
};
