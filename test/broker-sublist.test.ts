import { describe, expect, it } from "vitest";
import { Sublist, type Subscription } from "../src/broker/sublist.js";
import { isValidPublishSubject, isValidSubscriptionSubject } from "../src/protocol/subjects.js";

let nextSid = 1;
function sub(subject: string, queue?: string): Subscription {
  const sid = String(nextSid++);
  return { subject, queue, sid, sidBytes: Buffer.from(sid), max: 0, delivered: 0, owner: null };
}

function subjects(result: { plain: Subscription[] }): string[] {
  return result.plain.map((s) => s.subject).sort();
}

describe("subject validation", () => {
  it.each(["foo", "foo.bar", "foo.*", "foo.>", "*", ">", "*.*.>", "foo*.bar", "a.b-c.d_e"])("accepts subscription subject %s", (s) => {
    expect(isValidSubscriptionSubject(s)).toBe(true);
  });
  it.each(["", ".", "foo.", ".foo", "foo..bar", "foo.>.bar", ">.foo", "foo bar", "foo\tbar"])("rejects subscription subject %j", (s) => {
    expect(isValidSubscriptionSubject(s)).toBe(false);
  });
  it("rejects wildcards in publish subjects", () => {
    expect(isValidPublishSubject("foo.bar")).toBe(true);
    expect(isValidPublishSubject("foo.*")).toBe(false);
    expect(isValidPublishSubject("foo.>")).toBe(false);
  });
});

describe("Sublist", () => {
  it("matches literals, * and > as nats-server does", () => {
    const sl = new Sublist();
    for (const s of ["foo.bar", "foo.*", "foo.>", "*.bar", ">", "foo", "foo.bar.baz", "foo.*.baz"]) sl.insert(sub(s));
    expect(subjects(sl.match("foo.bar"))).toEqual(["*.bar", ">", "foo.*", "foo.>", "foo.bar"]);
    expect(subjects(sl.match("foo"))).toEqual([">", "foo"]); // foo.> does not match foo
    expect(subjects(sl.match("foo.bar.baz"))).toEqual([">", "foo.*.baz", "foo.>", "foo.bar.baz"]);
    expect(subjects(sl.match("bar"))).toEqual([">"]);
    expect(sl.match("foo..bar").plain).toEqual([]); // an empty token matches nothing
  });

  it("matches a literal > or * token in a published subject like any token", () => {
    const sl = new Sublist();
    sl.insert(sub("$JS.API.CONSUMER.CREATE.*.>"));
    expect(sl.match("$JS.API.CONSUMER.CREATE.KV_b.oc_1.$KV.b.>").plain).toHaveLength(1);
  });

  it("groups queue subscribers by queue name across matching subjects", () => {
    const sl = new Sublist();
    const a = sub("foo.*", "q");
    const b = sub("foo.>", "q");
    const c = sub("foo.bar", "other");
    for (const s of [a, b, c]) sl.insert(s);
    const groups = sl.match("foo.bar").queues.map((g) => g.map((s) => s.sid).sort());
    expect(groups.sort()).toEqual([[a.sid, b.sid].sort(), [c.sid]].sort());
  });

  it("drops cached results when subscriptions change", () => {
    const sl = new Sublist();
    const s1 = sub("a.b");
    sl.insert(s1);
    const before = sl.generation;
    expect(sl.match("a.b").plain).toEqual([s1]);
    const s2 = sub("a.*");
    sl.insert(s2);
    expect(sl.generation).toBeGreaterThan(before);
    expect(sl.match("a.b").plain).toHaveLength(2);
    expect(sl.remove(s1)).toBe(true);
    expect(sl.match("a.b").plain).toEqual([s2]);
    expect(sl.remove(s1)).toBe(false);
    expect(sl.count).toBe(1);
  });

  it("prunes empty branches so inbox churn does not grow the trie", () => {
    const sl = new Sublist();
    for (let i = 0; i < 1000; i++) {
      const s = sub(`_INBOX.${i}.x`);
      sl.insert(s);
      sl.remove(s);
    }
    expect(sl.count).toBe(0);
    expect(sl.all()).toEqual([]);
    // White-box: the trie's root level is empty again, not 1000 dead branches.
    expect((sl as unknown as { root: { literal: Map<string, unknown> } }).root.literal.size).toBe(0);
    sl.insert(sub("_INBOX.1.x"));
    expect(sl.match("_INBOX.1.x").plain).toHaveLength(1);
  });
});
