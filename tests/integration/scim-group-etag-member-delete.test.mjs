// ci-variants: build-w1
// A group's members are part of the group: when a member leaves because
// the user is deleted, the group's meta.version (its ETag) moves, like for
// any other membership change. Found by review: DELETE /Users/{id} removed
// the user from every group without touching the groups' versions, so a
// client holding the old ETag got 304 Not Modified for a group whose
// member list had changed, and an If-Match with the old version was still
// taken for current.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { startScimGateway, assertScimError, URN } from './lib/scim.mjs';

let c;
before(async () => {
  ({ tenants: { acme: { c } } } = await startScimGateway({ tenants: ['acme'] }));
});

test('deleting a member moves the group\'s ETag: If-None-Match is not 304, an old If-Match is 412', async () => {
  const a = await c.createUser('a@gdel.test'), b = await c.createUser('b@gdel.test');
  const g = await c.createGroup('Del', [a.id, b.id]);
  const r0 = await c.get(`/Groups/${g.id}`);
  assert.equal(r0.status, 200);
  const etag = r0.headers.etag;
  assert.equal(r0.json.members.length, 2);
  assert.equal((await c.del(`/Users/${a.id}`)).status, 204);
  const r1 = await c.get(`/Groups/${g.id}`);
  assert.deepEqual(r1.json.members.map((m) => m.value), [b.id]);
  assert.notEqual(r1.headers.etag, etag, 'the group changed: a new ETag');
  assert.notEqual(r1.json.meta.version, r0.json.meta.version);
  const r2 = await c.get(`/Groups/${g.id}`, { headers: { 'if-none-match': etag } });
  assert.equal(r2.status, 200, 'not 304: the members changed');
  const put = await c.put(`/Groups/${g.id}`, { schemas: [URN.GROUP], displayName: 'Del', members: [{ value: b.id }] },
    { headers: { 'if-match': etag } });
  assertScimError(put, 412);
  const ok = await c.put(`/Groups/${g.id}`, { schemas: [URN.GROUP], displayName: 'Del', members: [{ value: b.id }] },
    { headers: { 'if-match': r1.headers.etag } });
  assert.equal(ok.status, 200, ok.body);
});
