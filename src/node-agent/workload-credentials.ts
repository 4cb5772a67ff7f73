// A broker user per workload that connects to NATS itself (a container), minted at deploy and dropped at
// undeploy, with the permissions of protocol/workload-permissions.ts; containers get these, never the
// node's credentials. Only the bundled broker can mint users; on nats-server the operator configures them.
//
// The password is derived from a node secret and the workload id, so a node that restarts mints the same
// one: a container it adopts keeps connecting, and its spec (and so its spec hash) does not change.

import { createHmac } from "node:crypto";
import type { RunningBroker } from "../broker/index.js";
import { type WorkloadIdentity, workloadPermissions } from "../protocol/workload-permissions.js";
import type { NatsAuth } from "../runtimes/types.js";

export interface WorkloadCredentials {
  /** The workload's user (created, or replaced with the same password and fresh permissions). */
  grant(workload: WorkloadIdentity): NatsAuth;
  /** Drops the workload's user; its connections are closed. */
  revoke(workloadId: string): void;
}

export class BrokerWorkloadUsers implements WorkloadCredentials {
  constructor(
    private readonly users: RunningBroker["users"],
    private readonly secret: string,
  ) {}

  grant(workload: WorkloadIdentity): NatsAuth {
    const user = userOf(workload.id);
    const pass = createHmac("sha256", this.secret).update(workload.id).digest("base64url");
    this.users.remove(user);
    this.users.add({ user, password: pass, permissions: workloadPermissions(workload) });
    return { user, pass };
  }

  revoke(workloadId: string): void {
    this.users.remove(userOf(workloadId));
  }
}

function userOf(workloadId: string): string {
  return `wl-${workloadId}`;
}
