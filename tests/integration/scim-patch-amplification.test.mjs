// ci-variants: build-w1
// One PATCH must not hold the store's writer — which every tenant's writes,
// deactivations included, wait for — for long. Found by review: the PATCH
// engine checks the whole resource after every operation (up to 10,000 of
// them), so a ~100 KB PATCH of 2,500 trivial operations on a user carrying
// a 1 MB attribute kept the writer busy for ~10 s (a user is now at most
// 10,000 JSON values; 2,500 operations on 9,000 are still far too many), and another tenant's
// deactivation waited behind it. Operations × size is now bounded: such a
// PATCH is refused (400) at once and changes nothing.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { startScimGateway, assertScimError, URN } from './lib/scim.mjs';

let acme, other;
before(async () => {
  ({ tenants: { acme: { c: acme }, other: { c: other } } } = await startScimGateway({ tenants: ['acme', 'other'] }));
});

test('a PATCH of many operations on a large user is refused at once and changes nothing; another tenant\'s deactivation goes on', async () => {
  // ~130 KB, 9,000 values (a user may hold 10,000: scim-resource-size.test.mjs)
  const blob = Array.from({ length: 9000 }, (_, i) => `v${String(i).padStart(13, '0')}`);
  const big = await acme.createUser('big@amp.test', { blob });
  const victim = await other.createUser('leaver@amp.test');
  const before = await acme.fetch(`/Users/${big.id}`);
  const ops = Array.from({ length: 2500 }, (_, i) => ({ op: 'replace', path: 'title', value: `t${i}` }));
  const slow = acme.patchOps(`/Users/${big.id}`, ops);
  const off = await other.patchOps(`/Users/${victim.id}`, [{ op: 'replace', value: { active: false } }]);
  assert.equal(off.status, 200, off.body);
  assert.equal(off.json.active, false);
  const r = await slow;
  assert.equal(r.status, 400, 'refused');
  assertScimError(r, 400, { scimType: 'invalidSyntax' });
  assert.match(r.json.detail, /too many operations for a resource this large/);
  // 200 operations × 9,000 values (~50 ms of checks) are past the budget too
  const r2 = await acme.patchOps(`/Users/${big.id}`, ops.slice(0, 200));
  assert.equal(r2.status, 400, r2.body.slice(0, 300));
  assert.deepEqual(await acme.fetch(`/Users/${big.id}`), before, 'nothing applied');
  // a few operations on the same user are still fine
  const ok = await acme.patchOps(`/Users/${big.id}`, ops.slice(0, 20));
  assert.equal(ok.status, 200, ok.body.slice(0, 300));
  assert.equal(ok.json.title, 't19');
  assert.equal(ok.json.schemas[0], URN.USER);
});

test('a group\'s member values do not count toward the budget: many member operations in one PATCH are fine', async () => {
  const u = await acme.createUser('member@amp.test');
  const g = await acme.createGroup('Amp', []);
  // 800 operations: counted with their member values this would pass the budget
  const ops = Array.from({ length: 800 }, () => ({ op: 'add', path: 'members', value: [{ value: u.id, display: 'member@amp.test' }] }));
  const r = await acme.patchOps(`/Groups/${g.id}`, ops);
  assert.ok(r.status === 200 || r.status === 204, r.body.slice(0, 300));
  assert.deepEqual(await acme.memberIds(g.id), [u.id]);
});

// Found by review: a PATCH path's value filter was not capped like a
// query's, a `co` compared at every offset of the value (value x literal),
// and the budget above counts JSON values, not what filters compare: 20
// operations `remove note[value co "aaa…ab"]` (a 100 kB literal) over a
// 200 kB value held the writer 5 s, another tenant's POST waiting behind
// it; 10,000 of them would pass Okta's 60 s. A request's value filters now
// compare at most 64 MB (scim_int.h), paths are capped at 4,096
// characters, and `co` is linear.
test('a PATCH whose value filters compare too much is refused and changes nothing; the same filter once is fine', async () => {
  const u = await acme.createUser('noted@amp.test', { note: [{ value: 'a'.repeat(200 * 1024) }, { value: 'keep' }] });
  const before = await acme.fetch(`/Users/${u.id}`);
  // 200 nodes over 200 kB: ~40 MB compared an operation
  const path = `note[${Array(200).fill('value co "B"').join(' or ')}]`;
  const two = await acme.patchOps(`/Users/${u.id}`, [{ op: 'remove', path }, { op: 'remove', path }]);
  assertScimError(two, 400, { scimType: 'invalidSyntax' });
  assert.match(two.json.detail, /compare too much/);
  assert.deepEqual(await acme.fetch(`/Users/${u.id}`), before, 'nothing applied');
  const one = await acme.patchOps(`/Users/${u.id}`, [{ op: 'remove', path }, { op: 'remove', path: 'note[value eq "keep"]' }]);
  assert.equal(one.status, 200, one.body.slice(0, 300));
  assert.equal(one.json.note.length, 1, 'the value without a "b" stays, "keep" is removed');
  // a path longer than a query's filter may be
  const long = await acme.patchOps(`/Users/${u.id}`, [{ op: 'remove', path: `note[value co "${'x'.repeat(4100)}"]` }]);
  assertScimError(long, 400, { scimType: 'invalidPath' });
  assert.match(long.json.detail, /longer than 4096/);
});

test('a group PATCH whose members filters compare too much is refused and changes nothing', async () => {
  const ids = [];
  for (let i = 0; i < 100; i += 20) {
    const us = await Promise.all(Array.from({ length: 20 }, (_, k) => acme.createUser(`m${i + k}-${'a'.repeat(3900)}@amp.test`)));
    ids.push(...us.map((x) => x.id));
  }
  const g = await acme.createGroup('Long names', ids);
  // 200 nodes over 100 members' 3.9 kB names: ~80 MB compared
  const path = `members[${Array(200).fill('display co "zz"').join(' or ')}]`;
  const r = await acme.patchOps(`/Groups/${g.id}`, [{ op: 'remove', path }]);
  assertScimError(r, 400, { scimType: 'invalidSyntax' });
  assert.match(r.json.detail, /compare too much/);
  assert.deepEqual((await acme.memberIds(g.id)).sort(), ids.slice().sort(), 'nobody removed');
  // the same on a few members is fine
  const small = await acme.createGroup('Few long names', ids.slice(0, 3));
  const ok = await acme.patchOps(`/Groups/${small.id}`, [{ op: 'remove', path }]);
  assert.ok(ok.status === 200 || ok.status === 204, ok.body.slice(0, 300));
  assert.equal((await acme.memberIds(small.id)).length, 3, 'no name contains "zz"');
});
