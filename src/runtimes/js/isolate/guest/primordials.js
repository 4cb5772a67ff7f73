// @ts-check
// The built-ins the bootstrap (bootstrap.ts) uses, captured in each new context before workload code
// runs, as a source fragment the bootstrap starts with.
//
// Why: a workload may replace any prototype method, global or getter of its context (it is its own
// realm). The bootstrap handles the runtime host's shared result area and the workload's results, so
// none of its operations may look a method up where the workload can redirect it: a method called
// through the prototype (`data.set(...)`) hands its receiver, the shared memory, to whoever replaced
// the method. Every method is therefore called uncurried, as the original function bound here
// (`TypedArraySet(data, bytes, 0)`), and values a workload hands over are read through the original
// getters (internal slots), never through their own, possibly forged, properties.

const ReflectApply = Reflect.apply;
const ReflectGetOwnPropertyDescriptor = Reflect.getOwnPropertyDescriptor;
const ObjectGetPrototypeOf = Object.getPrototypeOf;
// uncurryThis(f)(self, ...args) calls the original f with this = self, through the originals of
// Function.prototype.bind and call only (bound now): nothing a workload replaces later is consulted.
/** @type {<T, A extends unknown[], R>(f: (this: T, ...args: A) => R) => (self: T, ...args: A) => R} */
const uncurryThis = ReflectApply(Function.prototype.bind, Function.prototype.bind, [Function.prototype.call]);
/** @type {(proto: object, name: PropertyKey) => (self: unknown) => any} */
const getterOf = (proto, name) => uncurryThis(/** @type {{ get: () => any }} */ (ReflectGetOwnPropertyDescriptor(proto, name)).get);

const ObjectFreeze = Object.freeze;
const ObjectCreate = Object.create;
const ObjectAssign = Object.assign;
const ObjectDefineProperty = Object.defineProperty;
const ObjectSetPrototypeOf = Object.setPrototypeOf;
const ObjectKeys = Object.keys;
const ArrayIsArray = Array.isArray;
const ArrayPush = uncurryThis(Array.prototype.push);
const ArrayJoin = uncurryThis(Array.prototype.join);
const JSONStringify = JSON.stringify;
const JSONParse = JSON.parse;
const StringCtor = String;
const StringFromCharCode = String.fromCharCode;
const StringCharCodeAt = uncurryThis(String.prototype.charCodeAt);
const StringSlice = uncurryThis(String.prototype.slice);
const StringIndexOf = uncurryThis(String.prototype.indexOf);
const StringTrim = uncurryThis(String.prototype.trim);
const StringToLowerCase = uncurryThis(String.prototype.toLowerCase);
const StringValueOf = uncurryThis(String.prototype.valueOf);
const ObjectHasOwn = Object.hasOwn;
const NumberCtor = Number;
const ParseInt = parseInt;
const ParseFloat = parseFloat;
const ErrorCtor = Error;
const TypeErrorCtor = TypeError;
const RangeErrorCtor = RangeError;
const U8 = Uint8Array;
const I32 = Int32Array;
const TypedArrayPrototype = ObjectGetPrototypeOf(U8.prototype);
const TypedArraySet = uncurryThis(TypedArrayPrototype.set);
const TypedArrayTag = getterOf(TypedArrayPrototype, Symbol.toStringTag);
const TypedArrayBuffer = getterOf(TypedArrayPrototype, "buffer");
const TypedArrayByteOffset = getterOf(TypedArrayPrototype, "byteOffset");
const TypedArrayByteLength = getterOf(TypedArrayPrototype, "byteLength");
const TypedArrayLength = getterOf(TypedArrayPrototype, "length");
const ArrayBufferByteLength = getterOf(ArrayBuffer.prototype, "byteLength");
// The runtime host runs with resizable buffers off (js-runtime.ts), so there is no such getter then.
const ArrayBufferResizable = ReflectGetOwnPropertyDescriptor(ArrayBuffer.prototype, "resizable") ? getterOf(ArrayBuffer.prototype, "resizable") : () => false;
const ArrayBufferIsView = ArrayBuffer.isView;
const DataViewBuffer = getterOf(DataView.prototype, "buffer");
const DataViewByteOffset = getterOf(DataView.prototype, "byteOffset");
const DataViewByteLength = getterOf(DataView.prototype, "byteLength");
const PromiseCtor = Promise;
const PromiseThen = uncurryThis(Promise.prototype.then);
const PromiseReject = Promise.reject;
const MapCtor = Map;
const MapGet = uncurryThis(Map.prototype.get);
const MapSet = uncurryThis(Map.prototype.set);
const MapDelete = uncurryThis(Map.prototype.delete);
const MapSize = getterOf(Map.prototype, "size");
const WeakSetCtor = WeakSet;
const WeakSetAdd = uncurryThis(WeakSet.prototype.add);
const WeakSetHas = uncurryThis(WeakSet.prototype.has);
const DateNow = Date.now;
const AtomicsStore = Atomics.store;
const AtomicsCompareExchange = Atomics.compareExchange;

/**
 * @template T
 * @param {T} o
 * @returns {Readonly<T>}
 */
function frozenRecord(o) {
  return ObjectFreeze(ObjectAssign(ObjectCreate(null), o));
}

// A promise of ours whose then() derives plain promises: its own "constructor" has no Symbol.species,
// so a workload's Promise.prototype.constructor or Promise[Symbol.species] is never asked (then() on a
// promise constructs the derived promise through them, and runs whatever they return).
const NO_SPECIES = frozenRecord({ value: ObjectFreeze(ObjectCreate(null)) });
/**
 * @template T
 * @param {Promise<T>} p
 * @returns {Promise<T>}
 */
function ownPromise(p) {
  ObjectDefineProperty(p, "constructor", NO_SPECIES);
  return p;
}

// Whether v is a typed array (by its internal slot: neither instanceof nor Symbol.toStringTag of v).
/**
 * @param {unknown} v
 * @returns {boolean}
 */
function isTypedArray(v) {
  return ArrayBufferIsView(v) && TypedArrayTag(v) !== undefined;
}

// Whether the object v is a boxed string (new String(...)), which JSON writes as the string it turns
// into. By its internal slot; only an object with an own "length" is asked, as every boxed string has
// one, so that the throw of a plain object's answer is rare.
/**
 * @param {object} v
 * @returns {boolean}
 */
function isStringObject(v) {
  if (!ObjectHasOwn(v, "length") || ArrayIsArray(v)) return false;
  try {
    StringValueOf(v);
    return true;
  } catch (e) {
    return false;
  }
}

// The bytes v holds as a Uint8Array over them (no copy), or undefined when v is not bytes: a typed
// array or DataView (its view), an ArrayBuffer (all of it). Read through the original getters only (a
// Uint8Array is returned as it is: the callers read it through them too, never through its own properties).
/**
 * @param {unknown} v
 * @returns {Uint8Array | undefined}
 */
function bytesOf(v) {
  if (v === null || typeof v !== "object") return undefined;
  if (ArrayBufferIsView(v)) {
    const tag = TypedArrayTag(v);
    if (tag === "Uint8Array") return /** @type {Uint8Array} */ (v);
    if (tag !== undefined) return new U8(TypedArrayBuffer(v), TypedArrayByteOffset(v), TypedArrayByteLength(v));
    return new U8(DataViewBuffer(v), DataViewByteOffset(v), DataViewByteLength(v));
  }
  let size;
  try { size = ArrayBufferByteLength(v); } catch (e) { return undefined; }
  return new U8(/** @type {ArrayBuffer} */ (v), 0, size);
}
