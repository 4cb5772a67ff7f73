// A client in the broker's own process, without a socket: the node agent beside its bundled broker.
//
// Every web request and host-service call crosses the node's own connection twice (request in, reply
// out). Over loopback TCP each crossing is a socket write, a read and their stream machinery on both
// ends, all on the one event loop; here the bytes are handed over in memory instead. The client still
// speaks the whole protocol (INFO, CONNECT with its credentials, PING/PONG, permissions), so the broker
// treats it like any other connection; only the transport under it differs.

import type { Broker } from "./server.js";
import type { ClientTransport, TransportEvents } from "./transport.js";

/** The client's end of an in-process connection: what the broker sends, and the end of the connection. */
export interface InProcessPeer {
  /** Bytes of the protocol from the broker (kept as they are: the broker never changes them afterwards). */
  receive(data: Buffer): void;
  /** The broker closed the connection. */
  ended(): void;
}

/** The broker's end: a ClientTransport whose peer is a callback object instead of a socket. */
export class InProcessTransport implements ClientTransport {
  readonly kind = "in-process";
  readonly remoteAddress = "127.0.0.1";
  readonly remotePort = 0;
  /** Bytes handed to the client that its reader has not taken yet. */
  backlog = 0;
  sent = 0;
  private events?: TransportEvents;
  private paused = false;
  private inbound: Buffer[] = [];
  private done = false;
  private readonly closedPromise: Promise<void>;
  private resolveClosed!: () => void;

  constructor(private readonly peer: InProcessPeer) {
    this.closedPromise = new Promise((resolve) => (this.resolveClosed = resolve));
  }

  start(events: TransportEvents): void {
    this.events = events;
  }

  write(data: Buffer): void {
    if (this.done) return;
    this.backlog += data.length;
    this.peer.receive(data);
  }

  /** The client's reader took `n` bytes. */
  taken(n: number): void {
    this.backlog -= n;
    this.sent += n;
    if (this.backlog === 0) this.events?.drain();
  }

  /** Bytes from the client; held while the broker has paused this producer. */
  fromClient(data: Buffer): void {
    if (this.done) return;
    if (this.paused || this.inbound.length > 0) this.inbound.push(data);
    else this.events?.data(data);
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    while (!this.paused && !this.done && this.inbound.length > 0) this.events?.data(this.inbound.shift() as Buffer);
  }

  end(last: Buffer | null): void {
    if (last !== null) this.write(last);
    this.finish();
  }

  destroy(): void {
    this.finish();
  }

  /** The client closed its end. */
  clientClosed(): void {
    this.finish();
  }

  closed(): Promise<void> {
    return this.closedPromise;
  }

  /** Memory does not break: every end is an orderly close. */
  private finish(): void {
    if (this.done) return;
    this.done = true;
    this.inbound = [];
    // Told after the current call stack, as a socket's close event would be.
    queueMicrotask(() => {
      this.peer.ended();
      this.events?.close(false);
      this.resolveClosed();
    });
  }
}

/** Brokers of this process that take in-process clients, by the host:port clients dial. */
const brokers = new Map<string, Broker>();

/** Lets clients of this process that dial `host:port` reach `broker` in memory (until unregistered). */
export function registerInProcess(broker: Broker, host: string, port: number): () => void {
  const keys = [host, ...(host === "0.0.0.0" || host === "::" ? ["127.0.0.1", "localhost", "::1"] : host === "127.0.0.1" ? ["localhost"] : [])].map((h) => `${h}:${port}`);
  for (const k of keys) brokers.set(k, broker);
  return () => {
    for (const k of keys) if (brokers.get(k) === broker) brokers.delete(k);
  };
}

/** Opens an in-process connection to the broker registered for `host:port`, or returns null. */
export function dialInProcess(host: string, port: number, peer: InProcessPeer): InProcessTransport | null {
  const broker = brokers.get(`${host.replace(/^\[|\]$/g, "")}:${port}`);
  if (!broker) return null;
  const transport = new InProcessTransport(peer);
  broker.acceptTransport(transport);
  return transport;
}
