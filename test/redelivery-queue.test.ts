// The queue of sequences a JetStream consumer owes a redelivery (src/broker/jetstream/redelivery-queue.ts).
import { describe, expect, it } from "vitest";
import { RedeliveryQueue } from "../src/broker/jetstream/redelivery-queue.js";

const drain = (q: RedeliveryQueue) => {
  const out: number[] = [];
  for (let s = q.shift(); s !== undefined; s = q.shift()) out.push(s);
  return out;
};

describe("RedeliveryQueue", () => {
  it("keeps order, puts a returned sequence first, and queues a sequence once", () => {
    const q = new RedeliveryQueue();
    q.push(5);
    q.push(3);
    q.push(5); // a nak of a message already queued: redelivered once, not twice
    expect(q.length).toBe(2);
    expect(q.shift()).toBe(5);
    q.unshift(5); // taken and put back (pull max_bytes)
    q.unshift(9);
    expect([q.has(5), q.has(3), q.has(9), q.has(4)]).toEqual([true, true, true, false]);
    expect(drain(q)).toEqual([9, 5, 3]);
    expect(q.length).toBe(0);
    expect(q.shift()).toBeUndefined();
    expect(q.has(5)).toBe(false);
  });

  it("stays in order across the compaction of its consumed front", () => {
    const q = new RedeliveryQueue();
    for (let i = 1; i <= 5000; i++) q.push(i);
    const taken: number[] = [];
    for (let i = 0; i < 3000; i++) taken.push(q.shift()!);
    q.unshift(3000);
    for (let i = 5001; i <= 5003; i++) q.push(i);
    expect(taken[0]).toBe(1);
    expect(taken[2999]).toBe(3000);
    const rest = drain(q);
    expect(rest.slice(0, 3)).toEqual([3000, 3001, 3002]);
    expect(rest.slice(-3)).toEqual([5001, 5002, 5003]);
    expect(rest.length).toBe(2000 + 1 + 3);
  });
});
