/**
 * A small typed event emitter that runs in Node and in browsers (node:events does not exist in a
 * browser bundle). It has the methods of Node's EventEmitter, so code written against IrcClient as
 * an EventEmitter keeps working, `events.once(client, 'close')` included.
 *
 * Contract, as in Node: listeners run synchronously in registration order; a listener that throws
 * stops the emit and the exception reaches the caller of `emit`; adding or removing listeners
 * during an emit does not change which listeners that emit calls. Unlike Node, emitting 'error'
 * without a listener does not throw: callers check `listenerCount('error')` themselves.
 */

type Listener<A extends unknown[]> = (...args: A) => void;

/** A `once` wrapper remembers the listener it wraps, so that `off(event, listener)` finds it. */
interface OnceWrapper<A extends unknown[]> extends Listener<A> {
  listener: Listener<A>;
}

export type EventMap<E> = { [K in keyof E]: unknown[] };

export class Emitter<E extends EventMap<E>> {
  // Arrays are replaced, never mutated (copy on write), so `emit` iterates without copying: the
  // hot path (one 'message' per received line) costs no allocation.
  // Stored untyped: the map cannot tie each key to its own listener type; `on` and `emit` do.
  private readonly table = new Map<keyof E, readonly unknown[]>();

  private maxListeners = 10;

  on<K extends keyof E>(event: K, listener: Listener<E[K]>): this {
    const list = this.table.get(event);
    this.table.set(event, list === undefined ? [listener] : [...list, listener]);
    return this;
  }

  prependListener<K extends keyof E>(event: K, listener: Listener<E[K]>): this {
    const list = this.table.get(event);
    this.table.set(event, list === undefined ? [listener] : [listener, ...list]);
    return this;
  }

  addListener<K extends keyof E>(event: K, listener: Listener<E[K]>): this {
    return this.on(event, listener);
  }

  once<K extends keyof E>(event: K, listener: Listener<E[K]>): this {
    return this.on(event, this.onceWrapper(event, listener));
  }

  prependOnceListener<K extends keyof E>(event: K, listener: Listener<E[K]>): this {
    return this.prependListener(event, this.onceWrapper(event, listener));
  }

  /** Removes the most recently added registration of `listener` (direct or through `once`). */
  off<K extends keyof E>(event: K, listener: Listener<E[K]>): this {
    const list = this.table.get(event);
    if (list === undefined) return this;
    for (let i = list.length - 1; i >= 0; i--) {
      const l = list[i] as Partial<OnceWrapper<E[K]>>;
      if (l === listener || l.listener === listener) {
        if (list.length === 1) this.table.delete(event);
        else this.table.set(event, [...list.slice(0, i), ...list.slice(i + 1)]);
        break;
      }
    }
    return this;
  }

  removeListener<K extends keyof E>(event: K, listener: Listener<E[K]>): this {
    return this.off(event, listener);
  }

  removeAllListeners(event?: keyof E): this {
    if (event === undefined) this.table.clear();
    else this.table.delete(event);
    return this;
  }

  listenerCount(event: keyof E): number {
    return this.table.get(event)?.length ?? 0;
  }

  /** The listeners of `event`, `once` ones unwrapped. */
  listeners<K extends keyof E>(event: K): Listener<E[K]>[] {
    return ((this.table.get(event) ?? []) as Partial<OnceWrapper<E[K]>>[]).map((l) => l.listener ?? (l as Listener<E[K]>));
  }

  /** The listeners of `event` as registered (`once` ones wrapped). */
  rawListeners<K extends keyof E>(event: K): Listener<E[K]>[] {
    return [...((this.table.get(event) ?? []) as Listener<E[K]>[])];
  }

  eventNames(): (keyof E)[] {
    return [...this.table.keys()];
  }

  /** Kept for EventEmitter compatibility; this emitter never warns about listener counts. */
  setMaxListeners(n: number): this {
    this.maxListeners = n;
    return this;
  }

  getMaxListeners(): number {
    return this.maxListeners;
  }

  /** Calls the listeners of `event` with `args`; true when there was at least one. */
  emit<K extends keyof E>(event: K, ...args: E[K]): boolean {
    const list = this.table.get(event) as readonly Listener<E[K]>[] | undefined;
    if (list === undefined) return false;
    for (let i = 0; i < list.length; i++) (list[i] as Listener<E[K]>)(...args);
    return true;
  }

  private onceWrapper<K extends keyof E>(event: K, listener: Listener<E[K]>): OnceWrapper<E[K]> {
    const wrapper = ((...args: E[K]) => {
      this.off(event, wrapper);
      listener(...args);
    }) as OnceWrapper<E[K]>;
    wrapper.listener = listener;
    return wrapper;
  }
}
