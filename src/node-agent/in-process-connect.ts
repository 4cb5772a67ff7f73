// nats.js connections that reach a broker of this process in memory (src/broker/in-process.ts).
//
// nats.js makes a transport for each dial from one process-wide factory. The factory set here makes a
// transport that looks the dialled host:port up among this process's brokers: found, the bytes go in
// memory; not found (an external server, or the broker gone), it is nats.js's own socket transport. So a
// connection that comes through this factory is right wherever it dials, and one that transport-node's
// connect() set its own factory for meanwhile just goes over TCP, as it would anyway.

import { NodeTransport, nodeResolveHost } from "@nats-io/transport-node/lib/node_transport.js";
import { deferred, NatsConnectionImpl, setTransportFactory, type ConnectionOptions, type Deferred, type NatsConnection, type Server, type Transport } from "@nats-io/transport-node";
import { dialInProcess, type InProcessTransport } from "../broker/in-process.js";

/** Connects like transport-node's connect(), in memory to a broker of this process when it is the one dialled. */
export function connectLocalFirst(options: ConnectionOptions): Promise<NatsConnection> {
  setTransportFactory({ factory: () => new LocalFirstTransport(), dnsResolveFn: nodeResolveHost });
  return NatsConnectionImpl.connect(options);
}

/** Dials in memory when a broker of this process listens at the address, else over a socket. */
class LocalFirstTransport implements Transport {
  readonly lang = "nex-in-process";
  readonly version = "1";
  private inner?: Transport;
  // nats.js asks for closed() before it connects, so it is ours, following the inner transport's.
  private readonly closedNotification: Deferred<void | Error> = deferred();

  get isClosed(): boolean {
    return this.inner?.isClosed ?? false;
  }

  get closeError(): Error | undefined {
    return this.inner?.closeError;
  }

  async connect(server: Server, options: ConnectionOptions): Promise<void> {
    const memory = options.tls ? null : new InMemoryTransport();
    const inner: Transport = memory?.dial(server) ? memory : new NodeTransport();
    this.inner = inner;
    void inner.closed().then((r) => this.closedNotification.resolve(r));
    if (inner !== memory) await inner.connect(server, options);
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<Uint8Array> {
    return (this.inner as Transport)[Symbol.asyncIterator]();
  }

  isEncrypted(): boolean {
    return this.inner?.isEncrypted() ?? false;
  }

  send(frame: Uint8Array): void {
    this.inner?.send(frame);
  }

  close(err?: Error): Promise<void> {
    return this.inner?.close(err) ?? Promise.resolve();
  }

  disconnect(): void {
    this.inner?.disconnect();
  }

  closed(): Promise<void | Error> {
    return this.closedNotification;
  }

  discard(): void {
    this.inner?.discard();
  }
}

/** The client's end of an in-process connection, as a nats.js transport. */
class InMemoryTransport implements Transport {
  readonly lang = "nex-in-process";
  readonly version = "1";
  closeError?: Error;
  private broker?: InProcessTransport;
  private yields: Buffer[] = [];
  private outbound: Uint8Array[] = [];
  private signal: Deferred<void> = deferred();
  private readonly closedNotification: Deferred<void | Error> = deferred();
  private done = false;

  /** Opens the connection when a broker of this process is at the address; the broker's INFO is then waiting. */
  dial(server: Server): boolean {
    this.broker =
      dialInProcess(server.hostname, server.port, {
        receive: (data) => {
          this.yields.push(data);
          this.signal.resolve();
        },
        ended: () => this.finish(undefined),
      }) ?? undefined;
    return this.broker !== undefined;
  }

  async connect(): Promise<void> {
    // Connected by dial().
  }

  get isClosed(): boolean {
    return this.done;
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<Uint8Array> {
    return this.iterate();
  }

  private async *iterate(): AsyncGenerator<Uint8Array> {
    while (true) {
      if (this.yields.length === 0) {
        if (this.done) return;
        await this.signal;
        this.signal = deferred();
      }
      const chunks = this.yields;
      this.yields = [];
      for (const chunk of chunks) {
        this.broker?.taken(chunk.length);
        yield chunk;
      }
    }
  }

  isEncrypted(): boolean {
    return false;
  }

  /**
   * Frames go to the broker once per event-loop turn, together: the web requests of one turn (each its
   * own socket read, each flushed by nats.js on its own) then reach the broker as one read, and it
   * writes them to the runtime host in one write instead of one each.
   */
  send(frame: Uint8Array): void {
    if (this.done || frame.length === 0) return;
    this.outbound.push(frame);
    if (this.outbound.length === 1) setImmediate(this.flushOutbound);
  }

  private readonly flushOutbound = (): void => {
    const frames = this.outbound;
    this.outbound = [];
    if (this.done || frames.length === 0) return;
    this.broker?.fromClient(frames.length === 1 ? Buffer.from(frames[0].buffer, frames[0].byteOffset, frames[0].byteLength) : Buffer.concat(frames));
  };

  async close(err?: Error): Promise<void> {
    this.flushOutbound(); // what was published before the close still goes
    this.broker?.clientClosed();
    this.finish(err);
  }

  disconnect(): void {
    this.broker?.clientClosed();
    this.finish(undefined);
  }

  closed(): Promise<void | Error> {
    return this.closedNotification;
  }

  discard(): void {
    this.broker?.clientClosed();
    this.finish(undefined);
  }

  private finish(err: Error | undefined): void {
    if (this.done) return;
    this.done = true;
    this.closeError = err;
    this.signal.resolve();
    this.closedNotification.resolve(err);
  }
}
