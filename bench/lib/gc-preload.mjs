// Preloaded into the benchmark's server processes by bench/idle.ts
// (NODE_OPTIONS="--expose-gc --import <this file>"): SIGUSR2 runs a full garbage collection, so
// that a memory reading does not depend on when V8 last collected. Nothing else changes.
if (typeof globalThis.gc === 'function') {
  process.on('SIGUSR2', () => globalThis.gc());
}
