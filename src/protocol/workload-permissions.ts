// The NATS permissions a workload's own connection gets (a container connects with them): its trigger
// subjects, its own host-service subjects, its own default KV bucket and object store, replies to the
// requests it receives, and an inbox of its own. Nothing else: no control plane, no feeds, no other
// workload's host services or buckets, no `>`. The node mints a user with these on the bundled broker;
// on nats-server the same block goes into the user's `permissions` (README, Trust).

import { HOST_PREFIX } from "./host-services.js";

export interface WorkloadIdentity {
  id: string;
  namespace: string;
  name: string;
  triggerSubjects: string[];
}

/** nats-server's `permissions` block (allow lists; allow_responses for answering triggers). */
export interface WorkloadPermissions {
  publish: { allow: string[] };
  subscribe: { allow: string[] };
  allow_responses: boolean;
}

/** The inbox prefix a workload's client must use (nats.js `inboxPrefix`): it may subscribe only there. */
export function workloadInboxPrefix(workloadId: string): string {
  return `_INBOX.${workloadId}`;
}

export function workloadPermissions(w: WorkloadIdentity): WorkloadPermissions {
  const kvStream = `KV_hs_${w.namespace}_${w.name}`;
  const objStream = `OBJ_hso_${w.namespace}_${w.name}`;
  // The JetStream API calls the KV and object-store clients make on one bucket (no create, no delete).
  const bucketApi = (stream: string): string[] => [
    `$JS.API.STREAM.INFO.${stream}`,
    `$JS.API.STREAM.MSG.GET.${stream}`,
    `$JS.API.DIRECT.GET.${stream}`,
    `$JS.API.DIRECT.GET.${stream}.>`,
    `$JS.API.CONSUMER.CREATE.${stream}`,
    `$JS.API.CONSUMER.CREATE.${stream}.>`,
    `$JS.API.CONSUMER.INFO.${stream}.>`,
    `$JS.API.CONSUMER.DELETE.${stream}.>`,
    `$JS.API.CONSUMER.MSG.NEXT.${stream}.>`,
    `$JS.ACK.${stream}.>`,
  ];
  return {
    publish: {
      allow: [
        `${HOST_PREFIX}.${w.namespace}.${w.id}.>`,
        `$KV.hs_${w.namespace}_${w.name}.>`,
        `$O.hso_${w.namespace}_${w.name}.>`,
        ...bucketApi(kvStream),
        ...bucketApi(objStream),
      ],
    },
    subscribe: { allow: [...w.triggerSubjects, `${workloadInboxPrefix(w.id)}.>`] },
    allow_responses: true,
  };
}
