// A bystander: a function that keeps being asked while a hostile workload does its worst, counting
// every request that did not get the expected answer. Hostile-workload tests assert it failed none.

import type { NatsConnection } from "@nats-io/transport-node";

export class Bystander {
  answered = 0;
  readonly failures: string[] = [];
  private running = true;
  private readonly loop: Promise<void>;

  /** Asks `subject` with `payload` one request at a time (each may take up to timeoutMs) until stop(). */
  constructor(nc: NatsConnection, subject: string, payload = "bystander", timeoutMs = 5000) {
    this.loop = (async () => {
      while (this.running) {
        try {
          const reply = await nc.request(subject, payload, { timeout: timeoutMs });
          const error = reply.headers?.get("Nex-Error");
          if (error) this.failures.push(error);
          else if (reply.string() !== payload) this.failures.push(`unexpected reply ${JSON.stringify(reply.string().slice(0, 100))}`);
          else this.answered++;
        } catch (err) {
          this.failures.push((err as Error).message);
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
  }

  /** Stops asking; resolves once the request in flight has ended. */
  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }
}
