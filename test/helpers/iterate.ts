// Reading from the async iterators the NATS clients return, without hanging a test forever.

/** How long to wait for something the server should send soon. */
export const WAIT_MS = 10_000;

/** The next `n` items of an iterator, waiting at most `waitMs` for each; throws saying how far it got. */
export async function take<T>(it: AsyncIterator<T>, n: number, what: string, waitMs = WAIT_MS): Promise<T[]> {
  const out: T[] = [];
  while (out.length < n) {
    let timer: NodeJS.Timeout | undefined;
    const r = await Promise.race([
      it.next(),
      new Promise<"timeout">((resolve) => {
        timer = setTimeout(() => resolve("timeout"), waitMs);
      }),
    ]);
    clearTimeout(timer);
    if (r === "timeout") throw new Error(`${what}: got ${out.length} of ${n} items, then nothing for ${waitMs} ms`);
    if (r.done) throw new Error(`${what}: iterator ended after ${out.length} of ${n} items`);
    out.push(r.value);
  }
  return out;
}
