/** Mask rules (cluster/masks.ts): the same globs the Redis join script uses (checked there by the state contract). */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { globMatch, maskMatches, normalizeMask } from '../../packages/server/src/cluster/masks.js';

describe('masks', () => {
  it('normalizes what users type: nick, nick!user, user@host, extbans; refuses the unusable', () => {
    assert.equal(normalizeMask('bob'), 'bob!*@*');
    assert.equal(normalizeMask('bob!~u'), 'bob!~u@*');
    assert.equal(normalizeMask('~u@10.0.0.1'), '*!~u@10.0.0.1');
    assert.equal(normalizeMask('a***b!*@*'), 'a*b!*@*', 'runs of * collapse');
    assert.equal(normalizeMask('$a:alice'), '$a:alice');
    assert.equal(normalizeMask('$a'), '$a');
    for (const bad of ['', 'a b', 'a,b', '$x:y', '$a:', 'x'.repeat(101)]) assert.equal(normalizeMask(bad), null, bad);
  });

  it('matches globs whole, case-insensitively, with * and ?', () => {
    assert.equal(globMatch('*!*@10.0.*', 'Bob!~u@10.0.3.4'), true);
    assert.equal(globMatch('bob!*@*', 'BOB!x@y'), true);
    assert.equal(globMatch('b?b!*@*', 'bab!x@y'), true);
    assert.equal(globMatch('b?b!*@*', 'bb!x@y'), false);
    assert.equal(globMatch('*!*@10.0.*', 'Bob!~u@110.0.3.4'), false, 'anchored');
    assert.equal(globMatch('*a*a*a*a*a*b', 'a'.repeat(5000)), false, 'no blow-up on a hostile glob');
    assert.equal(globMatch('*', ''), true);
  });

  it('$a: matches the account (glob), $a any account, never a guest', () => {
    assert.equal(maskMatches('$a:spam*', 'x!y@z', 'SpamKing'), true);
    assert.equal(maskMatches('$a:spam*', 'x!y@z', 'ham'), false);
    assert.equal(maskMatches('$a', 'x!y@z', 'anyone'), true);
    assert.equal(maskMatches('$a', 'x!y@z', null), false);
    assert.equal(maskMatches('x!*@*', 'X!y@z', null), true);
  });
});
