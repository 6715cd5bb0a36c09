// ci-variants: build-w1
// Every SCIM write of a user or group runs on the store writer that every
// tenant's deactivations share, and costs in proportion to the resource.
// Found by an attack review: nothing bounded a resource, so one tenant's
// SCIM token could POST a user carrying a million JSON values (a 2 MB
// body) and another tenant's deactivation waited ~0.42 s behind it (four at
// once: ~0.83 s; a PATCH adding 3 million: ~1.2 s), and the record made
// every later write of that user as slow. A user or group now holds at most
// 10,000 JSON values and 256 KiB of names and strings, its members aside
// (they live in the membership index): a body past it is 413 before it
// reaches the writer, a PATCH that would grow a resource past it is 413,
// and nothing is written. A change that does not grow a resource — a
// deactivation — is never refused.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { startScimGateway, assertScimError, qFilter, URN } from './lib/scim.mjs';

let acme;
before(async () => {
  ({ tenants: { acme: { c: acme } } } = await startScimGateway({ tenants: ['acme'] }));
});

const nothingNamed = async (userName) => {
  const r = await acme.get(`/Users?${qFilter(`userName eq "${userName}"`)}`);
  assert.equal(r.status, 200, r.body);
  assert.equal(r.json.totalResults, 0, `${userName} was not written`);
};

test('a user past 10,000 JSON values or 256 KiB is refused with 413 and not written', async () => {
  const many = await acme.post('/Users', { schemas: [URN.USER], userName: 'many@size.test', x: Array.from({ length: 20000 }, () => 1) });
  assertScimError(many, 413);
  assert.match(many.json.detail, /at most 10000 JSON values/);
  await nothingNamed('many@size.test');
  const emails = await acme.post('/Users', { schemas: [URN.USER], userName: 'emails@size.test', emails: Array.from({ length: 6000 }, (_, i) => ({ value: `e${i}@size.test` })) });
  assertScimError(emails, 413);
  await nothingNamed('emails@size.test');
  const long = await acme.post('/Users', { schemas: [URN.USER], userName: 'long@size.test', note: 'x'.repeat(300 * 1024) });
  assertScimError(long, 413);
  assert.match(long.json.detail, /256 KiB/);
  await nothingNamed('long@size.test');
  // a PUT too
  const u = await acme.createUser('put@size.test');
  const put = await acme.put(`/Users/${u.id}`, { schemas: [URN.USER], userName: 'put@size.test', x: Array.from({ length: 20000 }, () => 1) });
  assertScimError(put, 413);
  assert.equal((await acme.fetch(`/Users/${u.id}`)).x, undefined, 'unchanged');
});

test('a PATCH that would grow a user past the bound is 413 and changes nothing; its deactivation still passes', async () => {
  const big = await acme.createUser('grow@size.test', { blob: Array.from({ length: 6000 }, (_, i) => i) });
  const before = await acme.fetch(`/Users/${big.id}`);
  const r = await acme.patchOps(`/Users/${big.id}`, [{ op: 'add', path: 'more', value: Array.from({ length: 6000 }, (_, i) => i) }]);
  assertScimError(r, 413);
  assert.deepEqual(await acme.fetch(`/Users/${big.id}`), before, 'nothing applied');
  // a change that does not grow it is served
  const off = await acme.patchOps(`/Users/${big.id}`, [{ op: 'replace', value: { active: false } }]);
  assert.equal(off.status, 200, off.body.slice(0, 300));
  assert.equal(off.json.active, false);
});

test('a group\'s members are not counted: a group of 2,100 members (10,500 values) is created, replaced and patched', async () => {
  const ids = [];
  for (let i = 0; i < 2100; i += 100) {
    const batch = await Promise.all(Array.from({ length: 100 }, (_, k) => acme.createUser(`m${i + k}@size.test`)));
    ids.push(...batch.map((u) => u.id));
  }
  const members = (list) => list.map((value) => ({ value, display: 'Member', type: 'User', $ref: `Users/${value}` }));
  const g = await acme.post('/Groups', { schemas: [URN.GROUP], displayName: 'everyone-size', members: members(ids) });
  assert.equal(g.status, 201, g.body.slice(0, 300));
  const put = await acme.put(`/Groups/${g.json.id}`, { schemas: [URN.GROUP], displayName: 'everyone-size', members: members(ids.slice(0, 2050)) });
  assert.equal(put.status, 200, put.body.slice(0, 300));
  const add = await acme.patchOps(`/Groups/${g.json.id}`, [{ op: 'add', path: 'members', value: members(ids) }]);
  assert.equal(add.status, 200, add.body.slice(0, 300));
  assert.equal((await acme.memberIds(g.json.id)).length, 2100);
  // Found by review: the same members named through the core schema's URN
  // ("urn:…:core:2.0:Group:members", the URN as the path, or its object
  // in a path-less value) were counted as the group's own values: the add
  // the plain path is allowed answered 413. Every spelling counts alike.
  for (const ops of [
    [{ op: 'add', path: `${URN.GROUP}:members`, value: members(ids) }],
    [{ op: 'Add', path: `${URN.GROUP.toUpperCase()}:Members`, value: members(ids) }],
    [{ op: 'add', path: URN.GROUP, value: { members: members(ids) } }],
    [{ op: 'add', value: { [URN.GROUP]: { members: members(ids) } } }],
    [{ op: 'add', value: { [`${URN.GROUP}:members`]: members(ids) } }],
    [{ op: 'replace', path: `${URN.GROUP}:members`, value: members(ids) }],
  ]) {
    const r = await acme.patchOps(`/Groups/${g.json.id}`, ops);
    assert.equal(r.status, 200, `${JSON.stringify(ops).slice(0, 160)}: ${r.body.slice(0, 300)}`);
    assert.equal((await acme.memberIds(g.json.id)).length, 2100);
  }
  // ... and in the bound on checking a PATCH's operations (operations ×
  // what they bring): 250 adds of the same 10 members pass in both spellings
  for (const path of ['members', `${URN.GROUP}:members`]) {
    const few = ids.slice(0, 10).map((value) => ({ value }));
    const r = await acme.patchOps(`/Groups/${g.json.id}`, Array.from({ length: 250 }, () => ({ op: 'add', path, value: few })));
    assert.equal(r.status, 200, `${path}: ${r.body.slice(0, 300)}`);
  }
  // a POST or PUT naming them through the core URN's object alike
  const urnPut = await acme.put(`/Groups/${g.json.id}`, { schemas: [URN.GROUP], displayName: 'everyone-size', [URN.GROUP]: { members: members(ids) } });
  assert.notEqual(urnPut.status, 413, urnPut.body.slice(0, 300));
  // but its own attributes are
  const fat = await acme.post('/Groups', { schemas: [URN.GROUP], displayName: 'fat-size', x: Array.from({ length: 20000 }, () => 1) });
  assertScimError(fat, 413);
});

// Found by review: the spellings above were matched by prefix for a POST's
// or PUT's keys too, so a key that only begins like the skipped attribute
// ("groups.x", "members[…]", or "urn:…:User:groups", which normalize keeps
// as an extension) was not weighed, yet stored whole: 20,000 values were
// written (201) past the bound. A body key is skipped only when it is the
// attribute itself; what is stored is weighed.
test('a body key that only looks like "groups" or "members" is weighed: past the bound it is 413, not stored', async () => {
  const many = () => Array.from({ length: 20000 }, () => 1);
  const users = [
    { 'groups.x': many() },
    { 'Groups[type eq "x"]': many() },
    { [`${URN.USER}:groups`]: { a: many() } },
    { [URN.USER]: { 'groups.x': many() } },
  ];
  for (const [i, extra] of users.entries()) {
    const r = await acme.post('/Users', { schemas: [URN.USER], userName: `look${i}@size.test`, ...extra });
    assertScimError(r, 413);
    await nothingNamed(`look${i}@size.test`);
  }
  const u = await acme.createUser('lookput@size.test');
  const put = await acme.put(`/Users/${u.id}`, { schemas: [URN.USER], userName: 'lookput@size.test', 'groups.x': many() });
  assertScimError(put, 413);
  assert.equal((await acme.fetch(`/Users/${u.id}`))['groups.x'], undefined, 'unchanged');
  for (const extra of [{ 'members.x': many() }, { [`${URN.GROUP}:members`]: { a: many() } }]) {
    const g = await acme.post('/Groups', { schemas: [URN.GROUP], displayName: 'look-size', ...extra });
    assertScimError(g, 413);
  }
});

test('Okta\'s deactivation PUT of a user in thousands of groups is never refused: read-only "groups" does not count', async () => {
  const u = await acme.createUser('member-of-many@size.test');
  // Okta's wizard PUT carries the user's groups (read-only: ignored); 5,000 of them pass any bound
  const groups = Array.from({ length: 5000 }, (_, i) => ({ value: `g-${i}`, display: `Group ${i}`, $ref: `https://x/Groups/g-${i}` }));
  const r = await acme.put(`/Users/${u.id}`, {
    schemas: [URN.USER], id: u.id, userName: 'member-of-many@size.test', active: false, groups,
    name: { givenName: 'M', familyName: 'Many' }, emails: [{ value: 'member-of-many@size.test', primary: true }],
  });
  assert.equal(r.status, 200, r.body.slice(0, 300));
  assert.equal(r.json.active, false, 'deactivated');
  // the same through a PATCH that carries "groups" (ignored)
  const p = await acme.patch(`/Users/${u.id}`, { schemas: [URN.PATCH], Operations: [{ op: 'replace', value: { active: true, groups } }] });
  assert.equal(p.status, 200, p.body.slice(0, 300));
  assert.equal(p.json.active, true);
});
