// @ts-check
// crypto.getRandomValues and crypto.randomUUID over makeRandom (make-random.js), seeded by the setup's
// `seed`; defined as the global `crypto` after the other globals (host-services.js).

const fillRandom = makeRandom(seed, U8, Uint32Array);
const RANDOM_QUOTA = 65536;
const INTEGER_ARRAYS = ObjectFreeze(ObjectAssign(ObjectCreate(null), {
  Int8Array: true, Uint8Array: true, Uint8ClampedArray: true, Int16Array: true, Uint16Array: true,
  Int32Array: true, Uint32Array: true, BigInt64Array: true, BigUint64Array: true,
}));
/**
 * @template T
 * @param {T} array
 * @returns {T}
 */
function getRandomValues(array) {
  const tag = isTypedArray(array) ? TypedArrayTag(array) : undefined;
  if (tag === undefined || INTEGER_ARRAYS[tag] !== true) {
    const e = new TypeErrorCtor("crypto.getRandomValues: the argument must be an integer-typed array (Uint8Array, Int32Array, ...)");
    ObjectDefineProperty(e, "name", { value: "TypeMismatchError" });
    throw e;
  }
  const n = TypedArrayByteLength(array);
  if (n > RANDOM_QUOTA) {
    const e = new ErrorCtor("crypto.getRandomValues: " + n + " bytes asked, at most " + RANDOM_QUOTA + " per call");
    ObjectDefineProperty(e, "name", { value: "QuotaExceededError" });
    throw e;
  }
  fillRandom(new U8(TypedArrayBuffer(array), TypedArrayByteOffset(array), n), n);
  return array;
}
const HEX = "0123456789abcdef";
function randomUUID() {
  const b = new U8(16);
  fillRandom(b, 16);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  let s = "";
  for (let i = 0; i < 16; i++) {
    if (i === 4 || i === 6 || i === 8 || i === 10) s += "-";
    s += HEX[b[i] >>> 4] + HEX[b[i] & 15];
  }
  return s;
}
define("crypto", ObjectFreeze({ getRandomValues, randomUUID }));
