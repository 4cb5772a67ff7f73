// Which KV bucket and object store a workload reaches. Buckets belong to a namespace: the default one is
// named after the workload (so replicas and redeploys share state) and `kv.bucket(name)` opens another of
// the same namespace. Namespaces contain no '_', so "hs_<ns>_<bucket>" never collides across namespaces.

import { HostError } from "./errors.js";

const BUCKET_NAME = /^[A-Za-z0-9_-]{1,64}$/;

export function kvBucketName(namespace: string, bucket: string): string {
  if (!BUCKET_NAME.test(bucket)) throw new HostError("bad_request", `bucket name ${JSON.stringify(bucket)} must be 1-64 letters, digits, '_' or '-'`);
  return `hs_${namespace}_${bucket}`;
}

export function objectBucketName(namespace: string, bucket: string): string {
  if (!BUCKET_NAME.test(bucket)) throw new HostError("bad_request", `bucket name ${JSON.stringify(bucket)} must be 1-64 letters, digits, '_' or '-'`);
  return `hso_${namespace}_${bucket}`;
}
