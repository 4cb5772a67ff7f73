// The message store behind a JetStream stream: a sequenced log with a per-subject index. Limits,
// de-duplication and expectations are the stream's job (stream.ts); the store only keeps, finds and
// removes messages. Subjects are latin1 strings, as everywhere in the broker.

export interface StoredMessage {
  readonly seq: number;
  readonly subject: string;
  /** Milliseconds since the epoch when the stream accepted it. */
  readonly time: number;
  /** The raw NATS/1.0 header block as published, or null. */
  readonly header: Buffer | null;
  readonly data: Buffer;
}

export interface StoreState {
  messages: number;
  /** Sum of message sizes, computed as nats-server does for the storage type. */
  bytes: number;
  /** First live sequence; lastSeq + 1 when empty (as nats-server reports after a purge). */
  firstSeq: number;
  firstTime: number; // ms, 0 when empty
  lastSeq: number; // highest sequence ever assigned (survives purges and restarts)
  lastTime: number; // ms, 0 when nothing was ever stored
  numSubjects: number;
  /** Sequences between firstSeq and lastSeq that were removed. */
  numDeleted: number;
}

/**
 * Test for subjects; null means every subject. A filter that matches exactly one literal subject may
 * carry it in `literal` (e.g. built with literalFilter() from ./seq-index.js), so stores answer from
 * their per-subject index instead of testing subjects. Filters must be pure (stores memoise them).
 */
export type SubjectFilter = (((subject: string) => boolean) & { readonly literal?: string }) | null;

export interface PurgeRequest {
  /** Only messages whose subject passes this. */
  filter: SubjectFilter;
  /** Only messages with a sequence below this (0 = no bound). */
  beforeSeq: number;
  /** Keep this many of the newest matching messages (0 = keep none). */
  keep: number;
}

export interface MessageStore {
  /** Stores a message under the next sequence and returns that sequence. */
  append(subject: string, header: Buffer | null, data: Buffer, time: number): number;
  get(seq: number): StoredMessage | null;
  /** The subject of a live message, from the index (the message is not loaded); null if it is not there. */
  subjectOf(seq: number): string | null;
  /** The newest message on exactly this subject. */
  lastOnSubject(subject: string): StoredMessage | null;
  /** The first live message with sequence >= from whose subject passes the filter. */
  next(from: number, filter: SubjectFilter): StoredMessage | null;
  /** How many live messages are on exactly this subject. */
  countOnSubject(subject: string): number;
  /** The oldest live sequence on exactly this subject, 0 if none. */
  firstSeqOnSubject(subject: string): number;
  /** Each subject passing the filter with how many live messages it has. */
  subjectCounts(filter: SubjectFilter): [string, number][];
  /** For each subject passing the filter, the sequence of its newest message; ascending. */
  lastSeqsPerSubject(filter: SubjectFilter): number[];
  /** Live messages passing the filter with sequence >= from (for consumer num_pending). */
  countFrom(from: number, filter: SubjectFilter): number;
  /** Sequences of live messages stored at or after `time` (ms), ascending (rebuilds the dedupe window). */
  seqsSince(time: number): number[];
  /** Size in bytes of a message as counted in StoreState.bytes. */
  sizeOf(subject: string, header: Buffer | null, data: Buffer): number;
  remove(seq: number): boolean;
  /** Returns the number of messages removed. */
  purge(request: PurgeRequest): number;
  state(): StoreState;
  /** Hands appends/removals to the OS so they survive a process kill; called before acks are sent. */
  flush(): void;
  /** Flushes and releases file handles. */
  close(): void;
  /** Removes the stored data for good (stream delete). */
  destroy(): void;
}
