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
