// How much log output one trigger may produce, the same for every function runtime (a JavaScript
// isolate's console, a wasm guest's stderr and log imports): lines beyond maxLogLines are dropped,
// and a line longer than maxLogChars is cut. A flooding guest then costs the log feed a bounded amount
// per trigger, and the runtime host's event loop stays free to enforce deadlines.
export const TRIGGER_LOG_LIMITS = { maxLogLines: 1000, maxLogChars: 16 * 1024 } as const;
