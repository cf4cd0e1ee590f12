export * from './message.js';
export * from './numerics.js';
export * from './msgid.js';
export * from './time.js';
export * from './caps.js';
