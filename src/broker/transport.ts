// The byte pipe under a client connection. ClientConnection speaks NATS over this interface and never
// touches a socket, so the same protocol code serves TCP (plain or TLS) and WebSocket clients.

import type { Socket } from "node:net";

export type TransportKind = "tcp" | "websocket" | "in-process";

/** What a transport reports to the connection on top of it. */
export interface TransportEvents {
  /** Bytes of the NATS protocol from the client (for WebSocket: a message's payload). */
  data(chunk: Buffer): void;
  /** The backlog emptied: stalled producers may go on. */
  drain(): void;
  /** The connection ended, from either side; `error` when it broke. */
  close(error: boolean): void;
}

export interface ClientTransport {
  readonly kind: TransportKind;
  readonly remoteAddress: string;
  readonly remotePort: number;
  /** Bytes handed to write() that the peer has not taken yet. */
  readonly backlog: number;
  /**
   * Bytes the peer has taken over the connection's life, as the socket counts them (framing and the
   * transport's own frames included): the socket's bytes written less those still waiting in it. It
   * grows only while the peer reads, which is what the write deadline watches.
   */
  readonly sent: number;
  /** Starts delivering events (once, after the connection is set up). */
  start(events: TransportEvents): void;
  /** Sends protocol bytes. The buffer must not change afterwards (the kernel may still read it). */
  write(data: Buffer): void;
  /** Stops reading (backpressure on a producer), and starts again. */
  pause(): void;
  resume(): void;
  /** Sends `last` (if any) and closes in order; `reason` is the NATS close reason, for close codes. */
  end(last: Buffer | null, reason: string): void;
  /** Closes at once, dropping what is unsent. */
  destroy(): void;
  /** Resolves once the connection is fully closed. */
  closed(): Promise<void>;
}

/** A TCP (or TLS) socket as a transport: every call is the socket's own. */
export class SocketTransport implements ClientTransport {
  readonly kind = "tcp";
  readonly remoteAddress: string;
  readonly remotePort: number;

  constructor(private readonly socket: Socket) {
    this.remoteAddress = socket.remoteAddress ?? "";
    this.remotePort = socket.remotePort ?? 0;
    socket.setNoDelay(true);
  }

  get backlog(): number {
    return this.socket.writableLength;
  }

  get sent(): number {
    return socketSent(this.socket);
  }

  start(events: TransportEvents): void {
    const socket = this.socket;
    socket.on("data", events.data);
    socket.on("drain", events.drain);
    socket.on("error", () => events.close(true));
    socket.on("close", () => events.close(false));
  }

  write(data: Buffer): void {
    this.socket.write(data);
  }

  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  end(last: Buffer | null): void {
    const socket = this.socket;
    if (last !== null && !socket.destroyed) socket.write(last);
    socket.end();
    // A peer that never reads would keep the socket half-open; do not wait for it forever.
    setTimeout(() => socket.destroy(), 2000).unref();
  }

  destroy(): void {
    this.socket.destroy();
  }

  closed(): Promise<void> {
    const socket = this.socket;
    return socket.closed ? Promise.resolve() : new Promise((resolve) => socket.once("close", () => resolve()));
  }
}

/** What the peer has taken from a socket: bytes written, less those still waiting in it. */
export function socketSent(socket: Socket): number {
  return (socket.bytesWritten ?? 0) - socket.writableLength;
}
