// How workloads' KV buckets and object stores are named. Buckets belong to a namespace: the default one
// is named after the workload (so replicas and redeploys share state) and `kv.bucket(name)` opens another
// of the same namespace. Namespaces contain no '_', so "hs_<ns>_<bucket>" never collides across
// namespaces. The host services and `nex kv` name them the same way from here.

const BUCKET_NAME = /^[A-Za-z0-9_-]{1,64}$/;

/** Why `bucket` cannot name a workload's bucket, or undefined. */
export function bucketNameProblem(bucket: string): string | undefined {
  return BUCKET_NAME.test(bucket) ? undefined : `bucket name ${JSON.stringify(bucket)} must be 1-64 letters, digits, '_' or '-'`;
}

/** The KV bucket of `bucket` (checked with bucketNameProblem) in `namespace`. */
export function kvBucketName(namespace: string, bucket: string): string {
  return `hs_${namespace}_${bucket}`;
}

/** The object store of `bucket` (checked with bucketNameProblem) in `namespace`. */
export function objectBucketName(namespace: string, bucket: string): string {
  return `hso_${namespace}_${bucket}`;
}
