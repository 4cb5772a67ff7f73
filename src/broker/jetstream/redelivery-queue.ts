// The stream sequences a consumer owes a redelivery, in the order they are to go out.
//
// Why not a bare array: the ack-wait check asks "already queued?" for every pending message on every
// tick, and an array's includes() made that quadratic (20,000 unacked messages with a 1 ns ack_wait
// held the broker's event loop at 100%). A Set answers it; the array keeps the order, read from a head
// index so taking the first is O(1) too.

export class RedeliveryQueue {
  private items: number[] = [];
  private head = 0;
  private readonly members = new Set<number>();

  get length(): number {
    return this.items.length - this.head;
  }

  has(seq: number): boolean {
    return this.members.has(seq);
  }

  /** Queues `seq` last; a sequence already queued keeps its place. */
  push(seq: number): void {
    if (this.members.has(seq)) return;
    this.members.add(seq);
    this.items.push(seq);
  }

  /** Queues `seq` first (a message taken and put back); a sequence already queued keeps its place. */
  unshift(seq: number): void {
    if (this.members.has(seq)) return;
    this.members.add(seq);
    if (this.head > 0) this.items[--this.head] = seq;
    else this.items.unshift(seq);
  }

  /** The first sequence, taken off the queue; undefined when it is empty. */
  shift(): number | undefined {
    if (this.head >= this.items.length) return undefined;
    const seq = this.items[this.head++];
    this.members.delete(seq);
    // Drop the consumed front now and then, so the array does not keep every sequence ever queued.
    if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return seq;
  }
}
