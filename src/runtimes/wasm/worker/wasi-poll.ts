// WASI preview1 poll_oneoff for a guest worker, in JavaScript.
//
// Why not node:wasi's: it sleeps in native code, which worker.terminate() cannot interrupt, so a guest
// asking for an hour's sleep kept its thread, heap and linear memory long after its trigger's deadline
// (and kept the runtime host from exiting). Here a clock wait is an Atomics.wait, which terminate()
// ends at once. The guest has only stdio, so a descriptor subscription is answered ready at once.

const WASI_ESUCCESS = 0;
const WASI_EINVAL = 28;
const SUBSCRIPTION_BYTES = 48;
const EVENT_BYTES = 32;
const EVENTTYPE_CLOCK = 0;
/** fd_read and fd_write: the other two subscription types. */
const EVENTTYPE_LAST = 2;
/** realtime, monotonic, and the two CPU-time clocks (read as monotonic here). */
const CLOCK_LAST = 3;
const SUBCLOCKFLAG_ABSTIME = 1;
const CLOCK_REALTIME = 0;

const sleepCell = new Int32Array(new SharedArrayBuffer(4));

function nowNs(clockId: number): bigint {
  return clockId === CLOCK_REALTIME ? BigInt(Date.now()) * 1_000_000n : process.hrtime.bigint();
}

/**
 * poll_oneoff(in, out, nsubscriptions, nevents_ptr) over the guest's memory. Descriptor subscriptions
 * (stdin readable, stdout writable) are ready at once; otherwise it waits for the earliest clock.
 */
export function pollOneoff(memory: () => ArrayBuffer): (inPtr: number, outPtr: number, nsubs: number, neventsPtr: number) => number {
  return (inPtr, outPtr, nsubs, neventsPtr) => {
    // Wasm passes i32s, which arrive signed: pointers and the count are unsigned.
    inPtr >>>= 0;
    outPtr >>>= 0;
    nsubs >>>= 0;
    neventsPtr >>>= 0;
    if (nsubs === 0) return WASI_EINVAL;
    const dv = new DataView(memory());
    const clocks: { index: number; waitNs: bigint }[] = [];
    const descriptors: number[] = [];
    for (let i = 0; i < nsubs; i++) {
      const at = inPtr + i * SUBSCRIPTION_BYTES;
      const type = dv.getUint8(at + 8);
      if (type > EVENTTYPE_LAST) return WASI_EINVAL;
      if (type !== EVENTTYPE_CLOCK) {
        descriptors.push(i);
        continue;
      }
      const clockId = dv.getUint32(at + 16, true);
      if (clockId > CLOCK_LAST) return WASI_EINVAL;
      const timeout = dv.getBigUint64(at + 24, true);
      const absolute = (dv.getUint16(at + 40, true) & SUBCLOCKFLAG_ABSTIME) !== 0;
      const waitNs = absolute ? timeout - nowNs(clockId) : timeout;
      clocks.push({ index: i, waitNs: waitNs > 0n ? waitNs : 0n });
    }
    let fired: number[];
    if (descriptors.length > 0) fired = descriptors;
    else {
      const earliest = clocks.reduce((min, c) => (c.waitNs < min ? c.waitNs : min), clocks[0].waitNs);
      // Whole milliseconds are enough for a guest's sleep; the trigger's deadline ends longer ones.
      if (earliest > 0n) Atomics.wait(sleepCell, 0, 0, Number(earliest / 1_000_000n) + (earliest % 1_000_000n > 0n ? 1 : 0));
      fired = clocks.filter((c) => c.waitNs <= earliest).map((c) => c.index);
    }
    fired.forEach((index, n) => {
      const sub = inPtr + index * SUBSCRIPTION_BYTES;
      const ev = outPtr + n * EVENT_BYTES;
      dv.setBigUint64(ev, dv.getBigUint64(sub, true), true); // userdata
      dv.setUint16(ev + 8, WASI_ESUCCESS, true); // error
      dv.setUint8(ev + 10, dv.getUint8(sub + 8)); // type
      dv.setBigUint64(ev + 16, 0n, true); // fd_readwrite.nbytes
      dv.setUint16(ev + 24, 0, true); // fd_readwrite.flags
    });
    dv.setUint32(neventsPtr, fired.length, true);
    return WASI_ESUCCESS;
  };
}
