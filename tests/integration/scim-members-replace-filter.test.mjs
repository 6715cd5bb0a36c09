// ci-variants: build-w1
// PATCH "replace" whose path selects members by a value filter
// (`members[value eq "…"]`) replaces only the members the filter matches
// (RFC 7644 §3.5.2.3); a filter that matches no member is 400 noTarget
// and changes nothing. Found by review: the filter was ignored and the
// operation replaced the whole member list, so one member's swap dropped
// every other member from the group (and with them the tools their
// policy gave them).
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { startScimGateway, assertScimError } from './lib/scim.mjs';

let c;
before(async () => {
  ({ tenants: { acme: { c } } } = await startScimGateway({ tenants: ['acme'] }));
});

test('replace members[value eq "a"] swaps a for c and keeps b', async () => {
  const a = await c.createUser('a@rf.test'), b = await c.createUser('b@rf.test'), x = await c.createUser('c@rf.test');
  const g = await c.createGroup('Swap', [a.id, b.id]);
  const r = await c.patchOps(`/Groups/${g.id}`, [{ op: 'replace', path: `members[value eq "${a.id}"]`, value: { value: x.id } }]);
  assert.ok(r.status === 200 || r.status === 204, r.body);
  assert.deepEqual(await c.memberIds(g.id), [b.id, x.id].sort(), 'b kept, a replaced by c');
  assert.deepEqual((await c.fetch(`/Users/${b.id}`)).groups.map((e) => e.value), [g.id], 'b still in the group');
  assert.deepEqual((await c.fetch(`/Users/${a.id}`)).groups, [], 'a left the group');
});

test('replace with a filter matching no member → 400 noTarget, nothing changed', async () => {
  const a = await c.createUser('d@rf.test'), b = await c.createUser('e@rf.test'), x = await c.createUser('f@rf.test');
  const g = await c.createGroup('NoTarget', [a.id, b.id]);
  const before = await c.fetch(`/Groups/${g.id}`);
  const r = await c.patchOps(`/Groups/${g.id}`, [{ op: 'replace', path: `members[value eq "${x.id}"]`, value: [{ value: x.id }] }]);
  assertScimError(r, 400, { scimType: 'noTarget' });
  assert.deepEqual(await c.fetch(`/Groups/${g.id}`), before, 'group unchanged');
});

// Found by review: a member filter was tested against {value, type} only,
// not the member as the gateway itself shows it ({value, $ref, display,
// type}), so `remove members[display eq "<userName>"]` matched nobody and
// answered 200: the IdP was told the member left while they kept the
// group (and its tools). Before the fix the member stayed after the 200.
test('remove/replace members selected by display (the userName shown) or $ref', async () => {
  const a = await c.createUser('Disp.A@rf.test'), b = await c.createUser('disp.b@rf.test'), x = await c.createUser('disp.x@rf.test');
  const g = await c.createGroup('ByDisplay', [a.id, b.id]);
  const shown = (await c.fetch(`/Groups/${g.id}`)).members.find((m) => m.value === a.id);
  assert.equal(shown.display, 'Disp.A@rf.test');
  const r = await c.patchOps(`/Groups/${g.id}`, [{ op: 'remove', path: 'members[display eq "disp.a@RF.test"]' }]);
  assert.ok(r.status === 200 || r.status === 204, r.body);
  assert.deepEqual(await c.memberIds(g.id), [b.id], 'a removed by display (caseExact false), b kept');
  const r2 = await c.patchOps(`/Groups/${g.id}`, [{ op: 'replace', path: 'members[display sw "disp.b"]', value: [{ value: x.id }] }]);
  assert.ok(r2.status === 200 || r2.status === 204, r2.body);
  assert.deepEqual(await c.memberIds(g.id), [x.id], 'b replaced by x through a display filter');
  const ref = (await c.fetch(`/Groups/${g.id}`)).members[0].$ref;
  const r3 = await c.patchOps(`/Groups/${g.id}`, [{ op: 'remove', path: `members[$ref eq "${ref}"]` }]);
  assert.ok(r3.status === 200 || r3.status === 204, r3.body);
  assert.deepEqual(await c.memberIds(g.id), [], 'x removed by $ref');
});
