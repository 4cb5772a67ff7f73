// A RuntimeObserver that keeps everything a runtime reports, for runtime tests to assert on.

import type { LogStream, RuntimeObserver, WorkloadEvent } from "../../src/runtimes/types.js";

export class RuntimeRecorder implements RuntimeObserver {
  readonly logs: { id: string; stream: LogStream; line: string }[] = [];
  readonly failures: { id: string; subject: string; error: string }[] = [];
  readonly restarts: { reason: string; ids: string[] }[] = [];
  readonly events: { id: string; event: WorkloadEvent; at: number }[] = [];

  log(id: string, stream: LogStream, line: string): void {
    this.logs.push({ id, stream, line });
  }
  triggerFailed(id: string, subject: string, error: string): void {
    this.failures.push({ id, subject, error });
  }
  restarted(reason: string, ids: string[]): void {
    this.restarts.push({ reason, ids });
  }
  workloadEvent(id: string, event: WorkloadEvent): void {
    this.events.push({ id, event, at: Date.now() });
  }

  linesOf(id: string, stream: LogStream = "stdout"): string[] {
    return this.logs.filter((l) => l.id === id && l.stream === stream).map((l) => l.line);
  }
  eventsOf(id: string): { event: WorkloadEvent; at: number }[] {
    return this.events.filter((e) => e.id === id);
  }
}
