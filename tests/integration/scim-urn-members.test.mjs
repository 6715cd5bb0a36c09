// A PATCH without a path whose value names attributes through the core
// schema's own URN ({"urn:…:core:2.0:Group": {"members": […]}}, RFC 7644
// §3.5.2 allows URN-qualified names anywhere) used to answer 200 and drop
// the members: they were set on the group's JSON, where members never live,
// instead of the membership index. Each sub key now goes where the same
// key alone would (members to the index, "active" read as a boolean).
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { startGateway } from './lib/gateway.mjs';
import { setupTenant } from './lib/mcp.mjs';

const PATCH = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';
const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';
const USER = 'urn:ietf:params:scim:schemas:core:2.0:User';

test('URN-qualified core attributes in a path-less PATCH: members reach the index, active is a boolean', async () => {
  const gw = await startGateway({});
  try {
    const t = await setupTenant(gw, { users: ['alice@acme.com', 'bob@acme.com', 'carol@acme.com'] });
    const [a, b, c] = ['alice', 'bob', 'carol'].map((n) => t.users[`${n}@acme.com`].id);
    const g = await t.scim.createGroup('Eng', [a]);
    let r = await t.scim.patch(`/Groups/${g.id}`, { schemas: [PATCH], Operations: [{ op: 'add', value: { [GROUP]: { members: [{ value: b }] } } }] });
    assert.ok(r.status === 200 || r.status === 204, r.body);
    assert.deepEqual(await t.scim.memberIds(g.id), [a, b].sort(), 'the member added through the URN-qualified name');
    const u = await t.scim.get(`/Users/${b}`);
    assert.deepEqual(u.json.groups.map((x) => x.value), [g.id], 'and the user is in the group');
    r = await t.scim.patch(`/Groups/${g.id}`, { schemas: [PATCH], Operations: [{ op: 'replace', value: { [GROUP]: { members: [{ value: c }], displayName: 'Engineering' } } }] });
    assert.ok(r.status === 200 || r.status === 204, r.body);
    assert.deepEqual(await t.scim.memberIds(g.id), [c], 'replace: exactly the listed members');
    assert.equal((await t.scim.get(`/Groups/${g.id}`)).json.displayName, 'Engineering');
    // an unknown member through the URN name: 400, nothing applied
    r = await t.scim.patch(`/Groups/${g.id}`, { schemas: [PATCH], Operations: [{ op: 'add', value: { [GROUP]: { members: [{ value: 'nope' }] } } }] });
    assert.equal(r.status, 400, r.body);
    assert.deepEqual(await t.scim.memberIds(g.id), [c]);
    // "active" as Okta's string, URN-qualified: the user is inactive (a boolean, not "False")
    r = await t.scim.patch(`/Users/${a}`, { schemas: [PATCH], Operations: [{ op: 'replace', value: { [USER]: { active: 'False' } } }] });
    assert.equal(r.status, 200, r.body);
    assert.equal((await t.scim.get(`/Users/${a}`)).json.active, false);
    r = await t.scim.patch(`/Users/${a}`, { schemas: [PATCH], Operations: [{ op: 'replace', value: { [USER]: { active: 'maybe' } } }] });
    assert.equal(r.status, 400, r.body);
    // POST and PUT alike: members inside the core schema's URN object went
    // nowhere — a POST made an empty group, a PUT emptied one (201/200)
    const g2 = await t.scim.post('/Groups', { schemas: [GROUP], displayName: 'Ops', [GROUP]: { members: [{ value: a }] } });
    assert.equal(g2.status, 201, g2.body);
    assert.deepEqual(await t.scim.memberIds(g2.json.id), [a], 'POST: the member inside the URN object joined');
    r = await t.scim.put(`/Groups/${g2.json.id}`, { schemas: [GROUP], [GROUP]: { displayName: 'Ops', members: [{ value: b }, { value: c }] } });
    assert.equal(r.status, 200, r.body);
    assert.deepEqual(await t.scim.memberIds(g2.json.id), [b, c].sort(), 'PUT: exactly the members inside the URN object');
    // both spellings at once: 400, nothing changed
    r = await t.scim.put(`/Groups/${g2.json.id}`, { schemas: [GROUP], displayName: 'Ops', members: [{ value: a }], [GROUP]: { members: [] } });
    assert.equal(r.status, 400, r.body);
    assert.deepEqual(await t.scim.memberIds(g2.json.id), [b, c].sort());
  } finally {
    await gw.stop();
  }
});

// An unassigned "active" reads as active, so a PATCH removing it used to
// reactivate a deactivated user (200) by a side door; it is refused now.
test('a PATCH removing "active" is 400 and leaves a deactivated user deactivated', async () => {
  const gw = await startGateway({});
  try {
    const t = await setupTenant(gw, { users: ['alice@acme.com'] });
    const a = t.users['alice@acme.com'].id;
    await t.deactivate(a);
    for (const ops of [[{ op: 'remove', path: 'active' }], [{ op: 'Remove', path: `${USER}:active` }]]) {
      const r = await t.scim.patch(`/Users/${a}`, { schemas: [PATCH], Operations: ops });
      assert.equal(r.status, 400, `${JSON.stringify(ops)}: ${r.body}`);
      assert.equal(r.json.scimType, 'invalidValue');
      assert.equal((await t.scim.get(`/Users/${a}`)).json.active, false, 'still deactivated');
    }
    const m = await t.mintToken('alice@acme.com');
    assert.notEqual(m.status, 201, `no token for a deactivated user: ${m.body}`);
  } finally {
    await gw.stop();
  }
});

// The same object with the core schema's URN as the PATCH's path
// ({"op":"replace","path":"urn:…:core:2.0:Group","value":{"members":[]}})
// answered 200 and changed no member: the path's branch set the members on
// the group's JSON, where they never live. The IdP believed the members
// gone; they kept the group, and the tools their policy gave them.
test('a PATCH whose path is the core schema\'s URN: members reach the index, as without the path', async () => {
  const gw = await startGateway({});
  try {
    const t = await setupTenant(gw, { users: ['alice@acme.com', 'bob@acme.com', 'carol@acme.com'] });
    const [a, b, c] = ['alice', 'bob', 'carol'].map((n) => t.users[`${n}@acme.com`].id);
    const g = await t.scim.createGroup('Eng', [a, b]);
    let r = await t.scim.patch(`/Groups/${g.id}`, { schemas: [PATCH], Operations: [{ op: 'replace', path: GROUP, value: { members: [] } }] });
    assert.ok(r.status === 200 || r.status === 204, r.body);
    assert.deepEqual(await t.scim.memberIds(g.id), [], 'replace with []: the group is empty');
    assert.deepEqual((await t.scim.get(`/Users/${a}`)).json.groups, [], 'alice left the group');
    r = await t.scim.patch(`/Groups/${g.id}`, { schemas: [PATCH], Operations: [{ op: 'Add', path: GROUP, value: { members: [{ value: c }], displayName: 'Engineering' } }] });
    assert.ok(r.status === 200 || r.status === 204, r.body);
    assert.deepEqual(await t.scim.memberIds(g.id), [c], 'add: the member joined');
    assert.equal((await t.scim.get(`/Groups/${g.id}`)).json.displayName, 'Engineering');
    r = await t.scim.patch(`/Groups/${g.id}`, { schemas: [PATCH], Operations: [{ op: 'add', path: GROUP, value: { members: [{ value: 'nope' }] } }] });
    assert.equal(r.status, 400, `an unknown member: ${r.body}`);
    assert.deepEqual(await t.scim.memberIds(g.id), [c], 'nothing applied');
    // the user's own URN as the path: active read as a boolean
    r = await t.scim.patch(`/Users/${b}`, { schemas: [PATCH], Operations: [{ op: 'replace', path: USER, value: { active: 'False' } }] });
    assert.equal(r.status, 200, r.body);
    assert.equal((await t.scim.get(`/Users/${b}`)).json.active, false);
  } finally {
    await gw.stop();
  }
});
