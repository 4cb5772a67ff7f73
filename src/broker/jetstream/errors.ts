// JetStream API errors with nats-server's HTTP-like codes, err_codes and descriptions (clients compare
// both the numbers and some of the texts, e.g. "stream not found").

export class ApiError extends Error {
  constructor(
    readonly code: number,
    readonly errCode: number,
    readonly description: string,
  ) {
    super(description);
  }

  toJSON(): { code: number; err_code: number; description: string } {
    return { code: this.code, err_code: this.errCode, description: this.description };
  }
}

export const Errors = {
  streamNotFound: () => new ApiError(404, 10059, "stream not found"),
  consumerNotFound: () => new ApiError(404, 10014, "consumer not found"),
  noMessageFound: () => new ApiError(404, 10037, "no message found"),
  badRequest: () => new ApiError(400, 10003, "bad request"),
  invalidJson: () => new ApiError(400, 10025, "invalid JSON"),
  streamNameInUse: () => new ApiError(400, 10058, "stream name already in use with a different configuration"),
  streamMismatch: () => new ApiError(400, 10056, "stream name in subject does not match request"),
  subjectOverlap: () => new ApiError(400, 10065, "subjects overlap with an existing stream"),
  streamConfig: (detail: string) => new ApiError(500, 10052, detail),
  streamNameInvalid: () => new ApiError(400, 10128, "Stream name can not contain path separators"),
  replicasNotSupported: () => new ApiError(500, 10074, "replicas > 1 not supported in non-clustered mode"),
  replicasNegative: () => new ApiError(400, 10133, "replicas count cannot be negative"),
  wrongLastSequence: (seq: number) => new ApiError(400, 10071, `wrong last sequence: ${seq}`),
  wrongLastMsgId: (id: string) => new ApiError(400, 10070, `wrong last msg ID: ${id}`),
  expectedStreamMismatch: () => new ApiError(400, 10060, "expected stream does not match"),
  messageTooLarge: () => new ApiError(400, 10054, "message size exceeds maximum allowed"),
  storeFailed: (detail: string) => new ApiError(503, 10077, detail),
  rollupNotPermitted: () => new ApiError(500, 10111, "rollup not permitted"),
  rollupInvalid: (value: string) => new ApiError(500, 10111, `rollup value invalid: ${value}`),
  sequenceNotFound: (seq: number) => new ApiError(400, 10043, `sequence ${seq} not found`),
  messageDeleteFailed: (detail: string) => new ApiError(500, 10057, detail),
  consumerNameExists: () => new ApiError(400, 10013, "consumer name already in use"),
  consumerConfigRequired: () => new ApiError(400, 10078, "consumer config required"),
  consumerDeliverToWildcards: () => new ApiError(400, 10079, "consumer deliver subject has wildcards"),
  consumerInvalidDeliverSubject: () => new ApiError(400, 10112, "invalid push consumer deliver subject"),
  consumerSmallHeartbeat: () => new ApiError(400, 10083, "consumer idle heartbeat needs to be >= 100ms"),
  consumerFlowControlNeedsHeartbeat: () => new ApiError(400, 10108, "consumer with flow control also needs heartbeats"),
  consumerFilterNotSubset: () => new ApiError(400, 10093, "consumer filter subject is not a valid subset of the interest subjects"),
  consumerFilterMismatch: () =>
    new ApiError(400, 10131, "Consumer create request did not match filtered subject from create subject"),
  consumerDurableNameMismatch: () => new ApiError(400, 10017, "consumer name in subject does not match durable name in request"),
  consumerBadDurableName: () => new ApiError(400, 10103, "durable name can not contain '.', '*', '>'"),
  consumerInvalidPolicy: (detail: string) => new ApiError(400, 10094, detail),
  consumerPushMaxWaiting: () => new ApiError(400, 10080, "consumer in push mode can not set max waiting"),
  consumerExistingActive: () => new ApiError(400, 10105, "consumer already exists and is still active"),
  consumerNameTooLong: (max: number) => new ApiError(400, 10102, `consumer name is too long, maximum allowed is ${max}`),
  consumerDescriptionTooLong: (max: number) => new ApiError(400, 10107, `consumer description is too long, maximum allowed is ${max}`),
  consumerMaxDeliverBackoff: () => new ApiError(400, 10116, "max deliver is required to be > length of backoff values"),
  consumerMaxWaitingNegative: () => new ApiError(400, 10087, "consumer max waiting needs to be positive"),
  consumerMaxRequestBatchNegative: () => new ApiError(400, 10114, "consumer max request batch needs to be > 0"),
  consumerMaxRequestExpiresTooSmall: () => new ApiError(400, 10115, "consumer max request expires needs to be >= 1ms"),
  consumerPullRateLimit: () => new ApiError(400, 10086, "consumer in pull mode can not have rate limit set"),
  consumerInvalidSampling: (detail: string) => new ApiError(400, 10095, `failed to parse consumer sampling configuration: ${detail}`),
  consumerDeliverCycle: () => new ApiError(400, 10081, "consumer deliver subject forms a cycle"),
  consumerCreate: (detail: string) => new ApiError(500, 10012, detail),
  notEmptyRequest: () => new ApiError(400, 10038, "expected an empty request payload"),
  workqueueRequiresExplicitAck: () => new ApiError(400, 10098, "workqueue stream requires explicit ack"),
  workqueueMultipleUnfiltered: () => new ApiError(400, 10099, "multiple non-filtered consumers not allowed on workqueue stream"),
  workqueueFilterNotUnique: () => new ApiError(400, 10100, "filtered consumer not unique on workqueue stream"),
  workqueueNotDeliverAll: () => new ApiError(400, 10101, "consumer must be deliver all on workqueue stream"),
  maximumMessagesExceeded: () => new ApiError(503, 10077, "maximum messages exceeded"),
  maximumBytesExceeded: () => new ApiError(503, 10077, "maximum bytes exceeded"),
  maximumMessagesPerSubjectExceeded: () => new ApiError(503, 10077, "maximum messages per subject exceeded"),
  unknownApi: () => new ApiError(400, 10003, "bad request"),
};
