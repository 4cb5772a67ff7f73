// The subscription index: a token trie with a bounded match cache in front of it, as nats-server's
// sublist. A match result is split into plain subscribers and one member list per queue group, so the
// publish path needs no further lookups. Every insert/remove bumps `generation` and drops the cache,
// which lets connections keep their own last-subject cache valid with one integer compare.

import type { PubFrame } from "./parser.js";

export interface Subscription {
  readonly subject: string; // latin1
  readonly queue: string | undefined;
  readonly sid: string;
  /** The sid as bytes, copied into every MSG line for this subscription. */
  readonly sidBytes: Buffer;
  /** Deliveries after which the subscription is removed (UNSUB with max); 0 = unlimited. */
  max: number;
  delivered: number;
  /** The owning connection (null for the server's own subscriptions); typed by the server, opaque here. */
  readonly owner: unknown;
  /** Set on the server's own subscriptions (JetStream): called inline instead of writing a MSG. */
  readonly handler?: (frame: PubFrame, publisher: unknown) => void;
}

export interface MatchResult {
  readonly plain: Subscription[];
  readonly queues: Subscription[][];
}

const EMPTY_RESULT: MatchResult = Object.freeze({ plain: [], queues: [] }) as MatchResult;
const CACHE_MAX = 1024;

interface Level {
  literal: Map<string, TrieNode>;
  star: TrieNode | null;
  tail: TrieNode | null; // `>`
}

interface TrieNode {
  next: Level | null;
  plain: Set<Subscription>;
  queues: Map<string, Set<Subscription>>;
}

function newLevel(): Level {
  return { literal: new Map(), star: null, tail: null };
}

function newNode(): TrieNode {
  return { next: null, plain: new Set(), queues: new Map() };
}

function isEmptyNode(node: TrieNode): boolean {
  return node.plain.size === 0 && node.queues.size === 0 && (node.next === null || isEmptyLevel(node.next));
}

function isEmptyLevel(level: Level): boolean {
  return level.literal.size === 0 && level.star === null && level.tail === null;
}

export class Sublist {
  generation = 0;
  count = 0;
  inserts = 0;
  removes = 0;
  matches = 0;
  cacheHits = 0;
  private readonly root: Level = newLevel();
  private readonly cache = new Map<string, MatchResult>();

  insert(sub: Subscription): void {
    const tokens = sub.subject.split(".");
    let level = this.root;
    let node: TrieNode | null = null;
    for (const token of tokens) {
      node = this.childFor(level, token);
      if (node.next === null) node.next = newLevel();
      level = node.next;
    }
    // tokens is never empty (validated subject), so node is set
    const leaf = node as TrieNode;
    if (sub.queue === undefined) {
      leaf.plain.add(sub);
    } else {
      let members = leaf.queues.get(sub.queue);
      if (members === undefined) leaf.queues.set(sub.queue, (members = new Set()));
      members.add(sub);
    }
    this.count++;
    this.inserts++;
    this.changed();
  }

  remove(sub: Subscription): boolean {
    const removed = this.removeFrom(this.root, sub.subject.split("."), 0, sub);
    if (removed) {
      this.count--;
      this.removes++;
      this.changed();
    }
    return removed;
  }

  match(subject: string): MatchResult {
    this.matches++;
    const cached = this.cache.get(subject);
    if (cached !== undefined) {
      this.cacheHits++;
      return cached;
    }
    const tokens = subject.split(".");
    for (const token of tokens) if (token.length === 0) return EMPTY_RESULT; // an empty token matches nothing
    const plain: Subscription[] = [];
    const queues = new Map<string, Subscription[]>();
    collect(this.root, tokens, 0, plain, queues);
    const result: MatchResult =
      plain.length === 0 && queues.size === 0 ? EMPTY_RESULT : { plain, queues: [...queues.values()] };
    if (this.cache.size >= CACHE_MAX) this.cache.clear();
    this.cache.set(subject, result);
    return result;
  }

  cacheSize(): number {
    return this.cache.size;
  }

  /** Every subscription, for monitoring. */
  all(): Subscription[] {
    const out: Subscription[] = [];
    const walk = (level: Level): void => {
      const visit = (node: TrieNode): void => {
        out.push(...node.plain);
        for (const members of node.queues.values()) out.push(...members);
        if (node.next) walk(node.next);
      };
      for (const node of level.literal.values()) visit(node);
      if (level.star) visit(level.star);
      if (level.tail) visit(level.tail);
    };
    walk(this.root);
    return out;
  }

  private changed(): void {
    this.generation++;
    this.cache.clear();
  }

  private childFor(level: Level, token: string): TrieNode {
    if (token === "*") return (level.star ??= newNode());
    if (token === ">") return (level.tail ??= newNode());
    let node = level.literal.get(token);
    if (node === undefined) level.literal.set(token, (node = newNode()));
    return node;
  }

  private removeFrom(level: Level, tokens: string[], i: number, sub: Subscription): boolean {
    const token = tokens[i];
    const node = token === "*" ? level.star : token === ">" ? level.tail : level.literal.get(token);
    if (!node) return false;
    let removed: boolean;
    if (i === tokens.length - 1) {
      if (sub.queue === undefined) {
        removed = node.plain.delete(sub);
      } else {
        const members = node.queues.get(sub.queue);
        removed = members !== undefined && members.delete(sub);
        if (members !== undefined && members.size === 0) node.queues.delete(sub.queue);
      }
    } else {
      removed = node.next !== null && this.removeFrom(node.next, tokens, i + 1, sub);
    }
    // Prune empty branches so short-lived inbox subscriptions do not leave the trie growing.
    if (removed && isEmptyNode(node)) {
      if (token === "*") level.star = null;
      else if (token === ">") level.tail = null;
      else level.literal.delete(token);
    }
    return removed;
  }
}

function collect(
  level: Level,
  tokens: string[],
  i: number,
  plain: Subscription[],
  queues: Map<string, Subscription[]>,
): void {
  const last = i === tokens.length - 1;
  if (level.tail) addNode(level.tail, plain, queues); // `>` matches one or more remaining tokens
  const literal = level.literal.get(tokens[i]);
  if (literal) {
    if (last) addNode(literal, plain, queues);
    else if (literal.next) collect(literal.next, tokens, i + 1, plain, queues);
  }
  if (level.star) {
    if (last) addNode(level.star, plain, queues);
    else if (level.star.next) collect(level.star.next, tokens, i + 1, plain, queues);
  }
}

function addNode(node: TrieNode, plain: Subscription[], queues: Map<string, Subscription[]>): void {
  for (const sub of node.plain) plain.push(sub);
  for (const [name, members] of node.queues) {
    let group = queues.get(name);
    if (group === undefined) queues.set(name, (group = []));
    for (const sub of members) group.push(sub);
  }
}
