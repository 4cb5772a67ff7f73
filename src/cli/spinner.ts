// The progress spinner of long client commands (uploads, deploys), in its own module so that only the
// commands that show one load ora.

import ora from "ora";

export interface Spinner {
  /** Changes the text while it spins, shown at once (not at the next frame: a quick step would never show). */
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
  // A terminal of no width (a pty nobody sized, as `script` makes in CI) would make ora clear lines without end.
  const silent = options.json === true || !process.stdout.isTTY || (process.stderr.isTTY && !process.stderr.columns);
  // discardStdin would put stdin in raw mode; a command may still be reading its payload from it.
  const s = ora({ text, isSilent: silent, discardStdin: false }).start();
  return {
    update: (t) => {
      s.text = t;
      s.render();
    },
    succeed: (t) => void s.succeed(t),
    fail: (t) => void s.fail(t),
    stop: () => void s.stop(),
  };
}
