// The progress spinner of long client commands (uploads, deploys), in its own module so that only the
// commands that show one load ora.

import ora from "ora";

export interface Spinner {
  /** Changes the text while it spins. */
  update(text: string): void;
  succeed(text?: string): void;
  fail(text?: string): void;
  stop(): void;
}

/**
 * A progress spinner (on stderr) that is silent when stdout is not a terminal or --json was given,
 * so it never interleaves with output another program reads.
 */
export function spinner(text: string, options: { json?: boolean } = {}): Spinner {
  const silent = options.json === true || !process.stdout.isTTY;
  // discardStdin would put stdin in raw mode; a command may still be reading its payload from it.
  const s = ora({ text, isSilent: silent, discardStdin: false }).start();
  return {
    update: (t) => {
      s.text = t;
    },
    succeed: (t) => void s.succeed(t),
    fail: (t) => void s.fail(t),
    stop: () => void s.stop(),
  };
}
