// @ts-check
// The setup parameters (bootstrap.ts, types in setup.d.ts) copied into constants before any workload
// code runs: the limits and the shared-memory layout come in as values (a copy the workload never
// sees), and the frozen records below are the bootstrap's own.

const G = globalThis;
const applySyncPromise = hostRef.applySyncPromise;
const MAX_LOG_LINES = limits.maxLogLines;
const MAX_LOG_CHARS = limits.maxLogChars;
const MAX_ERROR_CHARS = limits.maxErrorChars;
const MAX_REPLY_BYTES = limits.maxReplyBytes;
const MAX_HOST_VALUE_BYTES = limits.maxHostValueBytes;
const MAX_HOST_NAME_CHARS = limits.maxHostNameChars;
const MAX_HOST_CALLS_OUT = limits.maxHostCallsOut;

// The result channel's layout (../../host/result-channel.ts) and the service protocol's codes.
const HEAD = frozenRecord(layout.HEAD);
const ENTRY = frozenRecord(layout.ENTRY);
const RESULT_KIND = frozenRecord(layout.RESULT_KIND);
const SIGNAL = frozenRecord(layout.SIGNAL);
const TABLE_OFFSET = layout.TABLE_OFFSET;
const MAX_RESULTS = layout.MAX_RESULTS;
const DATA_OFFSET = layout.DATA_OFFSET;
const DATA_BYTES = layout.DATA_BYTES;
const FLUSH_AFTER_MS = layout.FLUSH_AFTER_MS;
const HTTP_SUBJECT_PREFIX = layout.HTTP_SUBJECT_PREFIX;
const SERVICE_EVENT = frozenRecord(layout.SERVICE_EVENT);
const SERVICE_RESULT = frozenRecord(layout.SERVICE_RESULT);

const SYNC_CALL = frozenRecord({ arguments: frozenRecord({ copy: true }) });
const EMPTY = new U8(0);
