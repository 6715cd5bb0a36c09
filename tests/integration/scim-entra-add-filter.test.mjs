// ci-variants: build-w1
// Entra sets a multi-valued attribute the user does not have yet with an
// "Add" through a value filter: {"op":"Add","path":"emails[type eq
// \"work\"].value","value":"…"} (also addresses[type eq "work"].formatted,
// phoneNumbers[type eq "mobile"].value). Microsoft's answer on what a
// server must do: create the element (the filter's type, the value) when
// none matches (learn.microsoft.com Q&A 120490; other servers fixed the
// same, e.g. wire-server #5419). Found by review: the gateway answered
// 400 noTarget, so Entra's update failed and the address never arrived.
// A filter that is not equalities still selects nothing: 400 noTarget and
// nothing applied; replace keeps RFC 7644's noTarget.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { startScimGateway, assertScimError, URN } from './lib/scim.mjs';

let c;
before(async () => {
  ({ tenants: { acme: { c } } } = await startScimGateway({ tenants: ['acme'] }));
});

/** Entra's create body, for a user whose source has no mail yet. */
async function entraUserWithoutMail(userName) {
  const r = await c.post('/Users', {
    schemas: [URN.USER, URN.ENT], externalId: userName.split('@')[0], userName, active: true,
    meta: { resourceType: 'User' }, name: { formatted: 'Given Family', familyName: 'Family', givenName: 'Given' }, roles: [],
  });
  assert.equal(r.status, 201, r.body);
  return r.json;
}

test('Add emails[type eq "work"].value to a user without emails creates the work address', async () => {
  const u = await entraUserWithoutMail('nomail@entra-add.test');
  const r = await c.patchOps(`/Users/${u.id}`, [
    { op: 'Add', path: 'emails[type eq "work"].value', value: 'nomail@mail.entra-add.test' },
    { op: 'Add', path: 'emails[type eq "work"].primary', value: true },
  ]);
  assert.equal(r.status, 200, r.body);
  const g = await c.fetch(`/Users/${u.id}`);
  assert.deepEqual(g.emails, [{ type: 'work', value: 'nomail@mail.entra-add.test', primary: true }]);
  assert.equal(g.name.familyName, 'Family', 'the rest of the user is untouched');
});

test('Add through a filter appends next to elements of another type, and updates a matching one', async () => {
  const u = await entraUserWithoutMail('phones@entra-add.test');
  let r = await c.patchOps(`/Users/${u.id}`, [
    { op: 'Add', path: 'phoneNumbers', value: [{ type: 'work', value: '+1 555 0100' }] },
    { op: 'Add', path: 'phoneNumbers[type eq "mobile"].value', value: '+1 555 0199' },
    { op: 'Add', path: 'addresses[type eq "work"].formatted', value: 'Columbus' },
  ]);
  assert.equal(r.status, 200, r.body);
  let g = await c.fetch(`/Users/${u.id}`);
  assert.deepEqual(g.phoneNumbers, [{ type: 'work', value: '+1 555 0100' }, { type: 'mobile', value: '+1 555 0199' }]);
  assert.deepEqual(g.addresses, [{ type: 'work', formatted: 'Columbus' }]);
  // the element exists now: Add updates it, no second mobile number
  r = await c.patchOps(`/Users/${u.id}`, [{ op: 'Add', path: 'phoneNumbers[type eq "mobile"].value', value: '+1 555 0142' }]);
  assert.equal(r.status, 200, r.body);
  g = await c.fetch(`/Users/${u.id}`);
  assert.deepEqual(g.phoneNumbers, [{ type: 'work', value: '+1 555 0100' }, { type: 'mobile', value: '+1 555 0142' }]);
});

test('a filter that does not say what to create, or a replace, still selects nothing: 400 noTarget, nothing applied', async () => {
  const u = await entraUserWithoutMail('notarget@entra-add.test');
  const before = await c.fetch(`/Users/${u.id}`);
  for (const op of [
    { op: 'Add', path: 'emails[value co "x"].value', value: 'x@entra-add.test' },
    { op: 'Add', path: 'emails[type eq "work" or type eq "home"].value', value: 'x@entra-add.test' },
    { op: 'Replace', path: 'emails[type eq "work"].value', value: 'x@entra-add.test' },
  ]) {
    const r = await c.patchOps(`/Users/${u.id}`, [{ op: 'Replace', path: 'title', value: 'T' }, op]);
    assertScimError(r, 400, { scimType: 'noTarget' });
    assert.deepEqual(await c.fetch(`/Users/${u.id}`), before, `nothing applied after ${JSON.stringify(op)}`);
  }
});
