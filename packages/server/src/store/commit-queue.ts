import type { AppendResult, NewMessage } from './store.js';

/** An append waiting for its batch: the message, when `append` was called, and its promise. */
export interface Pending {
  msg: NewMessage;
  /** Date.now() at the append call: the commit timeout counts from here */
  at: number;
  resolve: (r: AppendResult) => void;
  reject: (e: Error) => void;
}

/**
 * The appends of one shard waiting for a batch, oldest first. Taking a batch is O(batch): the
 * array is consumed from a head index and compacted now and then.
 */
export class CommitQueue {
  private items: Pending[] = [];
  private head = 0;

  constructor(private readonly maxBatch: number) {}

  get length(): number {
    return this.items.length - this.head;
  }

  push(p: Pending): void {
    this.items.push(p);
  }

  /** The next batch: up to maxBatch of the oldest. */
  take(): Pending[] {
    const available = this.length;
    if (this.head === 0 && available <= this.maxBatch) {
      const all = this.items;
      this.items = [];
      return all;
    }
    return this.removeHead(Math.min(this.maxBatch, available));
  }

  /** Removes and returns the leading entries appended before `at`. */
  takeOlderThan(at: number): Pending[] {
    let n = 0;
    while (this.head + n < this.items.length && this.items[this.head + n]!.at < at) n++;
    return n === 0 ? [] : this.removeHead(n);
  }

  /** Removes and returns everything. */
  takeAll(): Pending[] {
    const all = this.items.slice(this.head);
    this.items = [];
    this.head = 0;
    return all;
  }

  private removeHead(n: number): Pending[] {
    const out = this.items.slice(this.head, this.head + n);
    this.head += n;
    if (this.head === this.items.length) {
      this.items = [];
      this.head = 0;
    } else if (this.head >= 16 * this.maxBatch) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return out;
  }
}
