// ci-variants: build-w1
// PATCH "replace" of a complex attribute with some of its sub-attributes
// ({"op":"replace","path":"name","value":{"givenName":"…"}}, or the same
// without a path: {"op":"replace","value":{"name":{…}}}) changes those and
// leaves the others: RFC 7644 §3.5.2.3, "Sub-attributes that are not
// specified in the value parameter are left unchanged" — the rule the
// gateway already applied to extension objects. Found by review: the
// reply was 200 and the stored name had lost familyName, formatted and
// the rest. A multi-valued attribute without a filter is still replaced
// whole (same section).
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { startScimGateway, oktaUser } from './lib/scim.mjs';

let c;
before(async () => {
  ({ tenants: { acme: { c } } } = await startScimGateway({ tenants: ['acme'] }));
});

test('replace of name with one sub-attribute keeps the others (with a path and without)', async () => {
  const u = await c.post('/Users', { ...oktaUser('complex@rc.test'), name: { givenName: 'Test', familyName: 'User', formatted: 'Test User' } });
  assert.equal(u.status, 201, u.body);
  const id = u.json.id;
  let r = await c.patchOps(`/Users/${id}`, [{ op: 'replace', path: 'name', value: { givenName: 'Another' } }]);
  assert.equal(r.status, 200, r.body);
  assert.deepEqual((await c.fetch(`/Users/${id}`)).name, { givenName: 'Another', familyName: 'User', formatted: 'Test User' });
  r = await c.patchOps(`/Users/${id}`, [{ op: 'Replace', value: { name: { familyName: 'Person' }, displayName: 'Another Person' } }]);
  assert.equal(r.status, 200, r.body);
  const g = await c.fetch(`/Users/${id}`);
  assert.deepEqual(g.name, { givenName: 'Another', familyName: 'Person', formatted: 'Test User' });
  assert.equal(g.displayName, 'Another Person');
  // a multi-valued attribute without a filter: all values replaced
  r = await c.patchOps(`/Users/${id}`, [{ op: 'replace', path: 'emails', value: [{ type: 'home', value: 'h@rc.test' }] }]);
  assert.equal(r.status, 200, r.body);
  assert.deepEqual((await c.fetch(`/Users/${id}`)).emails, [{ type: 'home', value: 'h@rc.test' }]);
});
