// The client side of the node control API: discovery (ping, workloads), auction, signed deploy/undeploy/
// lame duck requests, with control error replies turned into CliErrors that carry the right exit code.

import { headers as natsHeaders, type Msg, type NatsConnection } from "@nats-io/transport-node";
import type { KeyPair } from "@nats-io/nkeys";
import { type AuctionBid, ControlSubjects, type DeployResponse, type InfoResponse, type PingResponse, PROTOCOL_VERSION, type WorkloadSummary } from "../protocol/control.js";
import { type DeployRequestInput } from "../protocol/deploy-request.js";
import { nodeXkeyIsSigned, signRequest } from "../protocol/signing.js";
import { CliError, ExitCode } from "./output.js";
import { requestFailureKind } from "../protocol/errors.js";

/** How long scatter/gather requests wait for the first replies, and for more after the last one. */
const GATHER_MAX_MS = 2000;
const GATHER_STALL_MS = 300;

function exitCodeForControl(code: number): number {
  if (code === 404) return ExitCode.notFound;
  if (code >= 400 && code < 500) return ExitCode.refused;
  if (code === 503) return ExitCode.refused;
  return ExitCode.error;
}

/** The JSON body of a control reply, or a CliError for an error reply. */
export function controlReply<T>(msg: Msg): T {
  const error = msg.headers?.get("Nex-Error");
  let body: unknown;
  try {
    body = msg.json();
  } catch {
    throw new CliError(`unexpected reply: ${msg.string().slice(0, 200)}`);
  }
  if (error || (typeof body === "object" && body !== null && "error" in body)) {
    const e = (body as { error?: { code?: number; message?: string } }).error ?? {};
    throw new CliError(e.message ?? error ?? "error", exitCodeForControl(e.code ?? 500));
  }
  return body as T;
}

export class ControlClient {
  constructor(
    private readonly nc: NatsConnection,
    private readonly namespace: string,
    private readonly timeoutMs: number,
  ) {}

  private async gather<T>(subject: string, body: unknown = {}): Promise<T[]> {
    const out: T[] = [];
    const replies = await this.nc.requestMany(subject, JSON.stringify(body), {
      strategy: "stall",
      stall: GATHER_STALL_MS,
      maxWait: Math.min(this.timeoutMs, GATHER_MAX_MS),
    });
    try {
      for await (const msg of replies) {
        if (msg.data.length === 0) continue; // no responders status
        out.push(controlReply<T>(msg));
      }
    } catch (err) {
      if (err instanceof CliError) throw err;
      if (requestFailureKind(err) !== "no_responders") throw err;
    }
    return out;
  }

  ping(): Promise<PingResponse[]> {
    return this.gather<PingResponse>(ControlSubjects.ping(this.namespace));
  }

  async workloads(): Promise<WorkloadSummary[]> {
    const replies = await this.gather<{ node_id: string; workloads: WorkloadSummary[] }>(ControlSubjects.workloads(this.namespace));
    return replies.flatMap((r) => r.workloads);
  }

  /** One node in detail; refused when what answered is not that node holding its own signed xkey. */
  async info(nodeId: string): Promise<InfoResponse> {
    const info = controlReply<InfoResponse>(await this.request(ControlSubjects.info(this.namespace, nodeId), {}, `no node ${nodeId} answers`));
    if (info.node_id !== nodeId || !nodeXkeyIsSigned(info.node_id, info.xkey, info.xkey_sig)) {
      throw new CliError(`the answer for node ${nodeId} does not carry that node's signed xkey (a rogue answered?); nothing was sent to it`, ExitCode.refused);
    }
    return info;
  }

  /**
   * Nodes able to take the workload; the caller picks. Bids whose xkey is not signed by their node id are
   * dropped: a client answering in a node's name cannot get environment values sealed to its own key.
   */
  async auction(type: DeployRequestInput["type"], tags: Record<string, string>, memoryMb?: number): Promise<AuctionBid[]> {
    const bids = await this.gather<AuctionBid>(ControlSubjects.auction(this.namespace), { version: PROTOCOL_VERSION, type, tags, memory_mb: memoryMb });
    return bids.filter((b) => nodeXkeyIsSigned(b.node_id, b.xkey, b.xkey_sig));
  }

  async deploy(issuer: KeyPair, nodeId: string, request: DeployRequestInput): Promise<DeployResponse> {
    const subject = ControlSubjects.deploy(this.namespace, nodeId);
    return controlReply<DeployResponse>(await this.signed(issuer, subject, request, `no node ${nodeId} answers`));
  }

  async undeploy(issuer: KeyPair, workloadId: string): Promise<{ workload_id: string; stopped: boolean }> {
    const subject = ControlSubjects.undeploy(this.namespace, workloadId);
    const body = { version: PROTOCOL_VERSION, workload_id: workloadId, requested_at: new Date().toISOString() };
    return controlReply(await this.signed(issuer, subject, body, `no workload ${workloadId} in namespace ${this.namespace}`));
  }

  async lameDuck(issuer: KeyPair, nodeId: string, move = false): Promise<{ node_id: string; lame_duck: boolean }> {
    const body = { version: PROTOCOL_VERSION, requested_at: new Date().toISOString(), ...(move ? { move: true } : {}) };
    return controlReply(await this.signed(issuer, ControlSubjects.lameDuck(nodeId), body, `no node ${nodeId} answers`));
  }

  private async signed(issuer: KeyPair, subject: string, body: unknown, notFound: string): Promise<Msg> {
    const data = new TextEncoder().encode(JSON.stringify(body));
    const h = natsHeaders();
    for (const [k, v] of Object.entries(signRequest(issuer, subject, data))) h.set(k, v);
    return this.request(subject, data, notFound, h);
  }

  private async request(subject: string, body: unknown, notFound: string, headers?: ReturnType<typeof natsHeaders>): Promise<Msg> {
    const data = body instanceof Uint8Array ? body : JSON.stringify(body);
    try {
      return await this.nc.request(subject, data, { timeout: this.timeoutMs, headers });
    } catch (err) {
      const kind = requestFailureKind(err);
      if (kind === "no_responders") throw new CliError(notFound, ExitCode.notFound);
      if (kind === "timeout") throw new CliError(`no reply on ${subject} within ${this.timeoutMs} ms`, ExitCode.unreachable);
      throw err;
    }
  }
}
