// Waiting in tests: polls until a condition holds (or fails naming what it waited for), and the error
// an operation fails with. Deadlines here only bound a wait; they never decide what a test asserts.

export async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 10_000, everyMs = 20): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/**
 * What `attempt` resolves to first, trying again while it fails (a workload still coming back, say);
 * fails naming `what` and the last error.
 */
export async function eventually<T>(what: string, attempt: () => Promise<T>, timeoutMs = 30_000): Promise<T> {
  let value: T | undefined;
  let last: unknown;
  const tried = async (): Promise<boolean> => {
    try {
      value = await attempt();
      return true;
    } catch (e) {
      last = e;
      return false;
    }
  };
  await waitFor(what, tried, timeoutMs, 100).catch((e: Error) => {
    throw new Error(`${e.message}: ${(last as Error)?.message ?? String(last)}`);
  });
  return value as T;
}

/** The error a promise rejects with; fails the test if it resolves. */
export async function errorOf(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error("expected the operation to fail, but it succeeded");
}

/**
 * Resolves once `cond` holds, checked now and each time the owner calls the registered waiter (on
 * every data or close event); fails after timeoutMs naming `what()`.
 */
export function untilSignalled(waiters: Set<() => void>, cond: () => boolean, timeoutMs: number, what: () => string): Promise<void> {
  if (cond()) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const check = () => {
      if (cond()) {
        cleanup();
        resolve();
      }
    };
    const t = setTimeout(() => {
      cleanup();
      reject(new Error(`timed out after ${timeoutMs}ms waiting for ${what()}`));
    }, timeoutMs);
    const cleanup = () => {
      clearTimeout(t);
      waiters.delete(check);
    };
    waiters.add(check);
  });
}
