/**
 * The AccountStore contract (accounts/store.ts), run against the memory store in the fast suite
 * and against PostgreSQL shards in the integration suite. `stores` are two views of one cluster's
 * accounts (two instances), or the same store twice where there is only one.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { AccountRecord, AccountStore } from '../../packages/server/src/accounts/store.js';

export interface AccountCluster {
  stores: [AccountStore, ...AccountStore[]];
  close?: () => Promise<void>;
}

let n = 0;
const name = (p: string): string => `${p}${Date.now().toString(36)}${++n}`;

function record(accountName: string): AccountRecord {
  const b = (): string => randomBytes(32).toString('base64');
  return {
    name: accountName, password: `scrypt$16384$8$1$${b()}$${b()}`,
    scram: { salt: b(), iterations: 4096, storedKey: b(), serverKey: b() }, created: 1_700_000_000_123,
  };
}

export function accountContract(label: string, factory: () => Promise<AccountCluster>): void {
  describe(`AccountStore contract: ${label}`, () => {
    const withStores = async (fn: (c: AccountCluster) => Promise<void>): Promise<void> => {
      const c = await factory();
      try {
        for (const s of c.stores) await s.start();
        await fn(c);
      } finally {
        for (const s of new Set(c.stores)) await s.close();
        await c.close?.();
      }
    };

    it('create then get returns the record as created, from any instance, in any case', async () => {
      await withStores(async ({ stores }) => {
        const rec = record(name('Alice'));
        assert.equal(await stores[0].create(rec), true);
        const other = stores[stores.length - 1] ?? stores[0];
        assert.deepEqual(await other.get(rec.name), rec);
        assert.deepEqual(await other.get(rec.name.toUpperCase()), rec);
        assert.equal(await other.get(name('nobody')), null);
      });
    });

    it('a name is taken once, compared in lower case; the loser changes nothing', async () => {
      await withStores(async ({ stores }) => {
        const first = record(name('Bob'));
        assert.equal(await stores[0].create(first), true);
        const clash = record(first.name.toLowerCase());
        assert.equal(await stores[0].create(clash), false);
        assert.deepEqual(await stores[0].get(first.name), first);
      });
    });

    it('of many concurrent creates of one name, on several instances, exactly one wins', async () => {
      await withStores(async ({ stores }) => {
        const base = name('race');
        const tries = Array.from({ length: 8 }, (_, i) => record(i % 2 ? base.toUpperCase() : base));
        const won = await Promise.all(tries.map((r, i) => (stores[i % stores.length] ?? stores[0]).create(r)));
        assert.equal(won.filter(Boolean).length, 1);
        const winner = tries[won.indexOf(true)];
        assert.deepEqual(await stores[0].get(base), winner);
      });
    });

    it('many accounts keep apart', async () => {
      await withStores(async ({ stores }) => {
        const recs = Array.from({ length: 20 }, (_, i) => record(name(`m${i}x`)));
        assert.deepEqual(await Promise.all(recs.map((r) => stores[0].create(r))), recs.map(() => true));
        const back = await Promise.all(recs.map((r) => (stores[stores.length - 1] ?? stores[0]).get(r.name)));
        assert.deepEqual(back, recs);
      });
    });
  });
}
