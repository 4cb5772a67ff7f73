// The runtime host's side of the result channel reads what an isolate wrote: whatever that is, it must
// never throw there.

import { describe, expect, it } from "vitest";
import { DATA_BYTES, ENTRY, MAX_RESULTS, RESULT_KIND, ResultChannel, TABLE_OFFSET } from "../src/runtimes/js/result-channel.js";

describe("ResultChannel.read", () => {
  it("turns an entry that points outside the shared area into an error for that trigger alone", () => {
    const channel = new ResultChannel();
    const table = new Int32Array(channel.shared, TABLE_OFFSET, MAX_RESULTS * ENTRY.size);
    const bad: [number, number][] = [
      [0x7fff0000, 10],
      [-8, 4],
      [0, DATA_BYTES + 1],
      [DATA_BYTES - 2, 4],
      [0, -1],
    ];
    for (const [k, [offset, length]] of bad.entries()) {
      table[k * ENTRY.size + ENTRY.offset] = offset;
      table[k * ENTRY.size + ENTRY.length] = length;
      table[k * ENTRY.size + ENTRY.kind] = k % 2 === 0 ? RESULT_KIND.ok : RESULT_KIND.error;
    }
    table[bad.length * ENTRY.size + ENTRY.kind] = 99;
    for (let k = 0; k <= bad.length; k++) {
      const outcome = channel.read(k, 1000);
      expect(outcome, `entry ${k}`).toMatchObject({ ok: false, code: 500 });
    }
  });
});
