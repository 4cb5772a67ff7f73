// messaging.publish/request/requestMany for workloads, outside the system subjects (a workload must not
// reach the control plane, JetStream's API or other workloads' host services).

import { isValidPublishSubject, MAX_SUBJECT_LENGTH, reservedPrefixOf } from "../protocol/subjects.js";
import { HostHeaders } from "../protocol/host-services.js";
import { requestFailureKind } from "../protocol/errors.js";
import { HostError } from "./errors.js";
import type { HostCallContext, HostMethod } from "./server.js";

const MAX_REQUEST_MANY = 1000;

function subject(ctx: HostCallContext): string {
  const s = ctx.required(HostHeaders.subject);
  if (s.length > MAX_SUBJECT_LENGTH || !isValidPublishSubject(s)) throw new HostError("bad_request", `invalid subject ${JSON.stringify(s)}: literal tokens only`);
  const reserved = reservedPrefixOf(s);
  if (reserved) throw new HostError("forbidden", `workloads may not use ${reserved}.> subjects`);
  return s;
}

function requestError(err: unknown, target: string): HostError {
  const kind = requestFailureKind(err);
  if (kind === "no_responders") return new HostError("no_responders", `no responders on ${target}`);
  if (kind === "timeout") return new HostError("timeout", `request to ${target} timed out`);
  return new HostError("internal", err instanceof Error ? err.message : String(err));
}

export const messagingMethods: Record<string, HostMethod> = {
  async publish(ctx) {
    ctx.nc.publish(subject(ctx), ctx.body);
    return {};
  },

  async request(ctx) {
    const s = subject(ctx);
    try {
      const reply = await ctx.nc.request(s, ctx.body, { timeout: ctx.timeoutMs() });
      return { body: reply.data };
    } catch (err) {
      throw requestError(err, s);
    }
  },

  /** Scatter/gather: replies until Nex-Max-Messages arrived or the timeout; a JSON array of base64. */
  async requestMany(ctx) {
    const s = subject(ctx);
    const max = Number(ctx.header(HostHeaders.maxMessages) ?? MAX_REQUEST_MANY);
    if (!Number.isInteger(max) || max < 1) throw new HostError("bad_request", `${HostHeaders.maxMessages} must be a positive whole number`);
    const out: string[] = [];
    try {
      const replies = await ctx.nc.requestMany(s, ctx.body, { maxWait: ctx.timeoutMs(), maxMessages: Math.min(max, MAX_REQUEST_MANY), strategy: "count" });
      for await (const m of replies) {
        if (m.data.length === 0 && m.headers?.code === 503) break;
        out.push(Buffer.from(m.data).toString("base64"));
      }
    } catch (err) {
      const e = requestError(err, s);
      if (e.code !== "timeout" && e.code !== "no_responders") throw e;
    }
    return { body: JSON.stringify(out) };
  },
};
