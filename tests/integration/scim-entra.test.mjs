// SCIM 2.0 as Microsoft Entra (and other RFC-minded IdPs) drive it:
// capitalised ops, remove with path "members" + value list, URN-qualified
// enterprise attributes, "False"/"True" strings, value-path PATCHes, the
// full filter grammar, atomic multi-operation PATCH and If-Match.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import {
  startScimGateway, assertScimError, assertListResponse, qFilter, scimEvent, URN,
} from './lib/scim.mjs';

const ENT = URN.ENT;
let gw, c;

before(async () => {
  ({ gw, tenants: { acme: { c } } } = await startScimGateway({ tenants: ['acme'] }));
});

/** An Entra-style user (emails work + home, enterprise extension). */
function entraUser(userName, extra = {}) {
  return {
    schemas: [URN.USER, ENT], userName, externalId: userName.split('@')[0], active: true,
    displayName: userName, name: { givenName: 'Given', familyName: 'Family', formatted: 'Given Family' },
    emails: [{ primary: true, type: 'work', value: userName }, { type: 'home', value: `home.${userName}` }],
    [ENT]: { employeeNumber: '1000', department: 'Ops', manager: { value: 'mgr-0' } },
    ...extra,
  };
}

async function newUser(userName, extra) {
  const r = await c.post('/Users', entraUser(userName, extra));
  assert.equal(r.status, 201, r.body);
  return r.json;
}

test('capitalised ops: Replace / Add / Remove on user attributes', async () => {
  const u = await newUser('cap@entra.test');
  const r = await c.patchOps(`/Users/${u.id}`, [
    { op: 'Replace', path: 'displayName', value: 'Cap Display' },
    { op: 'Add', path: 'title', value: 'Engineer' },
    { op: 'Replace', path: 'name.givenName', value: 'Capital' },
    { op: 'Remove', path: 'name.formatted' },
  ]);
  assert.equal(r.status, 200, r.body);
  const g = await c.fetch(`/Users/${u.id}`);
  assert.equal(g.displayName, 'Cap Display');
  assert.equal(g.title, 'Engineer');
  assert.equal(g.name.givenName, 'Capital');
  assert.equal(g.name.familyName, 'Family', 'sibling sub-attribute kept');
  assert.equal(g.name.formatted, undefined, 'removed');
  for (const op of ['REPLACE', 'rEpLaCe']) {
    const x = await c.patchOps(`/Users/${u.id}`, [{ op, path: 'title', value: op }]);
    assert.equal(x.status, 200, `${op}: ${x.body}`);
    assert.equal((await c.fetch(`/Users/${u.id}`)).title, op);
  }
});

test('Entra deactivate: Replace active "False" (string) stores a boolean; "True" reactivates', async () => {
  const u = await newUser('strbool@entra.test');
  const d0 = await scimEvent(gw.port, 'user_deactivated');
  const r0 = await scimEvent(gw.port, 'user_reactivated');
  const r = await c.patchOps(`/Users/${u.id}`, [{ op: 'Replace', path: 'active', value: 'False' }]);
  assert.equal(r.status, 200, r.body);
  assert.strictEqual(r.json.active, false);
  assert.strictEqual((await c.fetch(`/Users/${u.id}`)).active, false, 'stored as boolean false');
  assert.equal(await scimEvent(gw.port, 'user_deactivated'), d0 + 1);

  const r2 = await c.patchOps(`/Users/${u.id}`, [{ op: 'Replace', value: { active: 'True' } }]);
  assert.equal(r2.status, 200, r2.body);
  assert.strictEqual((await c.fetch(`/Users/${u.id}`)).active, true, 'stored as boolean true');
  assert.equal(await scimEvent(gw.port, 'user_reactivated'), r0 + 1);

  // a "False" string on create and on PUT too
  const p = await c.post('/Users', { schemas: [URN.USER], userName: 'strbool2@entra.test', active: 'False' });
  assert.equal(p.status, 201, p.body);
  assert.strictEqual(p.json.active, false);
  const put = await c.put(`/Users/${p.json.id}`, { schemas: [URN.USER], userName: 'strbool2@entra.test', active: 'True' });
  assert.equal(put.status, 200, put.body);
  assert.strictEqual((await c.fetch(`/Users/${p.json.id}`)).active, true);
  // filter on the boolean
  const l = assertListResponse(await c.get('/Users?' + qFilter('active eq false')));
  assert.ok(!l.Resources.some((x) => x.id === u.id || x.id === p.json.id), 'both active now');
});

test('URN-qualified enterprise attributes, with a path and without', async () => {
  const u = await newUser('ent@entra.test');
  // with a path
  let r = await c.patchOps(`/Users/${u.id}`, [
    { op: 'Add', path: `${ENT}:employeeNumber`, value: '42' },
    { op: 'Replace', path: `${ENT}:manager`, value: { value: 'mgr-1' } },
    { op: 'Add', path: `${ENT}:costCenter`, value: 'CC-7' },
  ]);
  assert.equal(r.status, 200, r.body);
  let g = await c.fetch(`/Users/${u.id}`);
  assert.equal(g[ENT].employeeNumber, '42');
  assert.deepEqual(g[ENT].manager, { value: 'mgr-1' });
  assert.equal(g[ENT].costCenter, 'CC-7');
  assert.equal(g[ENT].department, 'Ops', 'other extension attributes kept');
  assert.ok(g.schemas.includes(ENT));

  // sub-attribute of a URN-qualified complex attribute (dots after the URN)
  r = await c.patchOps(`/Users/${u.id}`, [{ op: 'Replace', path: `${ENT}:manager.value`, value: 'mgr-2' }]);
  assert.equal(r.status, 200, r.body);
  assert.equal((await c.fetch(`/Users/${u.id}`))[ENT].manager.value, 'mgr-2');

  // URN-qualified core attribute path
  r = await c.patchOps(`/Users/${u.id}`, [{ op: 'Replace', path: `${URN.USER}:name.familyName`, value: 'Urnfam' }]);
  assert.equal(r.status, 200, r.body);
  assert.equal((await c.fetch(`/Users/${u.id}`)).name.familyName, 'Urnfam');

  // without a path: URN-qualified keys in the value object
  r = await c.patchOps(`/Users/${u.id}`, [{ op: 'Replace', value: { [`${ENT}:employeeNumber`]: '43', displayName: 'Ent Person' } }]);
  assert.equal(r.status, 200, r.body);
  g = await c.fetch(`/Users/${u.id}`);
  assert.equal(g[ENT].employeeNumber, '43');
  assert.equal(g.displayName, 'Ent Person');
  assert.equal(g[ENT].costCenter, 'CC-7');

  // without a path: the extension URN holding an object (sub-attributes merge, RFC 7644 §3.5.2.3)
  r = await c.patchOps(`/Users/${u.id}`, [{ op: 'Replace', value: { [ENT]: { department: 'Engineering' } } }]);
  assert.equal(r.status, 200, r.body);
  g = await c.fetch(`/Users/${u.id}`);
  assert.equal(g[ENT].department, 'Engineering');
  assert.equal(g[ENT].employeeNumber, '43', 'unspecified extension sub-attributes are left unchanged');

  // remove with a URN path
  r = await c.patchOps(`/Users/${u.id}`, [{ op: 'Remove', path: `${ENT}:costCenter` }]);
  assert.equal(r.status, 200, r.body);
  assert.equal((await c.fetch(`/Users/${u.id}`))[ENT].costCenter, undefined);

  // filter on a URN-qualified attribute
  const l = assertListResponse(await c.get('/Users?' + qFilter(`${ENT}:employeeNumber eq "43"`)), { total: 1 });
  assert.equal(l.Resources[0].id, u.id);
  const l2 = assertListResponse(await c.get('/Users?' + qFilter(`${ENT}:manager.value eq "mgr-2"`)), { total: 1 });
  assert.equal(l2.Resources[0].id, u.id);
});

test('PATCH emails[type eq "work"].value replaces only the work address', async () => {
  const u = await newUser('mail@entra.test');
  const r = await c.patchOps(`/Users/${u.id}`, [{ op: 'Replace', path: 'emails[type eq "work"].value', value: 'new.mail@entra.test' }]);
  assert.equal(r.status, 200, r.body);
  const g = await c.fetch(`/Users/${u.id}`);
  const work = g.emails.filter((e) => e.type === 'work');
  const home = g.emails.filter((e) => e.type === 'home');
  assert.equal(work.length, 1);
  assert.equal(work[0].value, 'new.mail@entra.test');
  assert.equal(work[0].primary, true, 'other sub-attributes of the matched element kept');
  assert.deepEqual(home, [{ type: 'home', value: 'home.mail@entra.test' }], 'non-matching element untouched');

  const l = assertListResponse(await c.get('/Users?' + qFilter('emails[type eq "work"].value eq "new.mail@entra.test"')), { total: 1 });
  assert.equal(l.Resources[0].id, u.id);
  assertListResponse(await c.get('/Users?' + qFilter('emails[type eq "home"].value eq "new.mail@entra.test"')), { total: 0 });

  // remove the home address by filter
  const r2 = await c.patchOps(`/Users/${u.id}`, [{ op: 'Remove', path: 'emails[type eq "home"]' }]);
  assert.equal(r2.status, 200, r2.body);
  assert.deepEqual((await c.fetch(`/Users/${u.id}`)).emails.map((e) => e.type), ['work']);
});

test('groups: Entra Add members, Remove with path "members" + value list removes only those, Replace displayName', async () => {
  const us = [];
  for (let i = 0; i < 4; i++) us.push(await newUser(`gm${i}@entra.test`));
  const grp = await c.createGroup('Entra Group', [us[0].id]);
  let r = await c.patchOps(`/Groups/${grp.id}`, [
    { op: 'Add', path: 'members', value: [{ value: us[1].id }, { value: us[2].id }, { value: us[3].id }] },
  ]);
  assert.equal(r.status, 200, r.body);
  assert.deepEqual(await c.memberIds(grp.id), us.map((u) => u.id).sort());

  r = await c.patchOps(`/Groups/${grp.id}`, [{ op: 'Remove', path: 'members', value: [{ value: us[1].id }, { value: us[3].id }] }]);
  assert.equal(r.status, 200, r.body);
  assert.deepEqual(await c.memberIds(grp.id), [us[0].id, us[2].id].sort(), 'only the listed members removed');

  r = await c.patchOps(`/Groups/${grp.id}`, [{ op: 'Replace', path: 'displayName', value: 'Entra Group 2' }]);
  assert.equal(r.status, 200, r.body);
  const g = await c.fetch(`/Groups/${grp.id}`);
  assert.equal(g.displayName, 'Entra Group 2');
  assert.equal(g.members.length, 2, 'rename keeps members');

  // Entra's group lookup
  const l = assertListResponse(await c.get('/Groups?excludedAttributes=members&' + qFilter('displayName eq "Entra Group 2"')), { total: 1 });
  assert.equal(l.Resources[0].id, grp.id);
  assert.equal(l.Resources[0].members, undefined, 'excludedAttributes=members in lists');
  // attributes=displayName
  const a = assertListResponse(await c.get('/Groups?attributes=displayName&' + qFilter(`id eq "${grp.id}"`)), { total: 1 });
  assert.equal(a.Resources[0].displayName, 'Entra Group 2');
  assert.equal(a.Resources[0].members, undefined);

  // Remove with no value and path members empties the group
  r = await c.patchOps(`/Groups/${grp.id}`, [{ op: 'Remove', path: 'members' }]);
  assert.equal(r.status, 200, r.body);
  assert.deepEqual(await c.memberIds(grp.id), []);
});

test('filter grammar: and / or / not, precedence, co / sw / ew / pr / gt, attributes=userName', async () => {
  const mk = async (n, title, dept) => (await newUser(`${n}@grammar.test`, { title, [ENT]: { department: dept } })).id;
  const alice = await mk('alice', 'Engineer', 'R&D');
  const bob = await mk('bob', 'Manager', 'R&D');
  const carol = await mk('carol', 'Engineer', 'Sales');
  const dave = (await c.post('/Users', { schemas: [URN.USER], userName: 'dave@grammar.test' })).json.id;
  const ids = async (f) => (await c.fetch('/Users?count=1000&' + qFilter(f))).Resources.map((r) => r.id).sort();
  const set = (...x) => x.sort();

  assert.deepEqual(await ids('userName ew "@grammar.test" and title eq "Engineer"'), set(alice, carol), 'userName ew "@grammar.test" and title eq "Engineer"');
  assert.deepEqual(await ids('userName sw "alice" or userName sw "bob"'), set(alice, bob), 'userName sw "alice" or userName sw "bob"');
  assert.deepEqual(await ids('userName co "grammar" and not (title eq "Engineer")'), set(bob, dave), 'userName co "grammar" and not (title eq "Engineer")');
  // not > and > or: a or b and c == a or (b and c)
  assert.deepEqual(await ids('userName eq "dave@grammar.test" or title eq "Engineer" and ' +
    `${ENT}:department eq "Sales"`), set(carol, dave), 'userName eq "dave@grammar.test" or title eq "Engineer" and ' +
    `${ENT}:department eq "Sales"`);
  assert.deepEqual(await ids('(userName eq "dave@grammar.test" or title eq "Engineer") and userName co "grammar"'), set(alice, carol, dave), '(userName eq "dave@grammar.test" or title eq "Engineer") and userName co "grammar"');
  assert.deepEqual(await ids('userName co "grammar" and title pr'), set(alice, bob, carol), 'userName co "grammar" and title pr');
  assert.deepEqual(await ids('userName co "grammar" and not(title pr)'), set(dave), 'userName co "grammar" and not(title pr)');
  assert.deepEqual(await ids('userName co "GRAMMAR" and TITLE EQ "engineer"'), set(alice, carol),
    'attribute names and operators case-insensitive; caseExact=false values');
  assert.deepEqual(await ids('userName co "grammar" and userName gt "c" and userName lt "d"'), set(carol), 'gt / lt');
  assert.deepEqual(await ids(`userName co "grammar" and ${ENT}:department eq "R&D"`), set(alice, bob), `userName co "grammar" and ${ENT}:department eq "R&D"`);
  assert.deepEqual(await ids('emails[type eq "work" and value co "carol"]'), set(carol), 'emails[type eq "work" and value co "carol"]');
  assert.deepEqual(await ids('userName co "grammar" and meta.resourceType eq "User" and externalId pr'), set(alice, bob, carol), 'userName co "grammar" and meta.resourceType eq "User" and externalId pr');

  const a = assertListResponse(await c.get('/Users?attributes=userName&' + qFilter('userName eq "alice@grammar.test"')), { total: 1 });
  const keys = Object.keys(a.Resources[0]).sort();
  assert.deepEqual(keys, ['id', 'meta', 'schemas', 'userName'], `attributes=userName returns only those: ${keys}`);
});

test('PATCH is atomic: a failing later operation leaves nothing applied and names the operation', async () => {
  const u = await newUser('atomic@entra.test');
  const before = await c.fetch(`/Users/${u.id}`);
  const bad = [
    [{ op: 'Replace', path: 'name.givenName', value: 'Changed' }, { op: 'Replace', path: 'emails[type eq', value: 'x' }],
    [{ op: 'Replace', path: 'name.givenName', value: 'Changed' }, { op: 'frobnicate', path: 'title', value: 'x' }],
    [{ op: 'Replace', value: { active: false } }, { op: 'Replace', path: 'active', value: 7 }],
    [{ op: 'Replace', path: 'name.givenName', value: 'Changed' }, { op: 'Remove', path: 'emails[type eq "work"' }],
    [{ op: 'Replace', path: 'name.givenName', value: 'Changed' }, { op: 'Add', path: 'nosuch..attr', value: 'x' }],
    [{ op: 'Replace', path: 'name.givenName', value: 'Changed' }, { op: 'Remove' }],
  ];
  for (const ops of bad) {
    const r = await c.patchOps(`/Users/${u.id}`, ops);
    assertScimError(r, 400, { detail: /operation 2/i });
    const now = await c.fetch(`/Users/${u.id}`);
    assert.deepEqual(now, before, `nothing applied after ${JSON.stringify(ops)}`);
  }

  // groups: add a member, then add an unknown member id → nothing added
  const m1 = await newUser('atomic1@entra.test');
  const m2 = await newUser('atomic2@entra.test');
  const grp = await c.createGroup('Atomic', [m1.id]);
  const ev0 = await scimEvent(gw.port, 'membership_changed');
  const r = await c.patchOps(`/Groups/${grp.id}`, [
    { op: 'Add', path: 'members', value: [{ value: m2.id }] },
    { op: 'Add', path: 'members', value: [{ value: '00000000-0000-4000-8000-00000000dead' }] },
  ]);
  assertScimError(r, 400, { scimType: 'invalidValue' });
  assert.deepEqual(await c.memberIds(grp.id), [m1.id], 'first add not applied');
  assert.deepEqual((await c.fetch(`/Users/${m2.id}`)).groups, []);
  assert.equal((await c.fetch(`/Groups/${grp.id}`)).meta.version, grp.meta.version, 'version unchanged');
  const r2 = await c.patchOps(`/Groups/${grp.id}`, [
    { op: 'Replace', value: { displayName: 'Renamed?' } },
    { op: 'Remove', path: 'members[value eq' },
  ]);
  assertScimError(r2, 400, { detail: /operation 2/i });
  const g = await c.fetch(`/Groups/${grp.id}`);
  assert.equal(g.displayName, 'Atomic', 'rename not applied');
  assert.equal(g.meta.version, grp.meta.version, 'version unchanged');
  assert.equal(await scimEvent(gw.port, 'membership_changed'), ev0, 'no event from an aborted request');
  // the unknown-member error names the operation that failed
  assert.match(r.json.detail, /operation 2/i, `detail names the operation: ${r.body}`);
});

test('a wrongly typed value in a later operation is refused, names the operation and applies nothing', async () => {
  const u = await newUser('typed@entra.test');
  const before = await c.fetch(`/Users/${u.id}`);
  for (const op2 of [{ op: 'Replace', path: 'userName', value: 5 }, { op: 'Replace', value: { userName: 5 } },
    { op: 'Replace', path: 'emails', value: 'x' }, { op: 'Replace', path: 'userName', value: '' }]) {
    const r = await c.patchOps(`/Users/${u.id}`, [{ op: 'Replace', path: 'title', value: 'T' }, op2]);
    assert.equal(r.status, 400, `${JSON.stringify(op2)}: ${r.body}`);
    assert.deepEqual(await c.fetch(`/Users/${u.id}`), before, `nothing applied after ${JSON.stringify(op2)}`);
    assertScimError(r, 400, { scimType: 'invalidValue' });
    assert.match(r.json.detail, /operation 2/i, `detail names the operation for ${JSON.stringify(op2)}: ${r.body}`);
  }
  const grp = await c.createGroup('Typed Group');
  for (const op2 of [{ op: 'Replace', path: 'displayName', value: 5 }, { op: 'Replace', path: 'displayName', value: '' },
    { op: 'Replace', value: { displayName: '' } }, { op: 'Add', path: 'members', value: 'x' }]) {
    const r = await c.patchOps(`/Groups/${grp.id}`, [{ op: 'Replace', path: 'displayName', value: 'Changed' }, op2]);
    assert.equal(r.status, 400, `${JSON.stringify(op2)}: ${r.body}`);
    assert.deepEqual(await c.fetch(`/Groups/${grp.id}`), grp, `nothing applied after ${JSON.stringify(op2)}`);
    assertScimError(r, 400, { scimType: 'invalidValue' });
    assert.match(r.json.detail, /operation 2/i, `detail names the operation for ${JSON.stringify(op2)}: ${r.body}`);
  }
});

test('If-Match: stale W/"n" → 412; * and the current ETag apply', async () => {
  const u = await newUser('etag@entra.test');
  const v1 = u.meta.version;
  const p1 = await c.patchOps(`/Users/${u.id}`, [{ op: 'Replace', path: 'title', value: 'one' }], { headers: { 'if-match': v1 } });
  assert.equal(p1.status, 200, p1.body);
  const v2 = p1.headers.etag;
  assert.notEqual(v2, v1);
  assert.equal(p1.json.meta.version, v2);

  // stale version on PATCH, PUT and DELETE
  assertScimError(await c.patchOps(`/Users/${u.id}`, [{ op: 'Replace', path: 'title', value: 'stale' }], { headers: { 'if-match': v1 } }), 412);
  assertScimError(await c.put(`/Users/${u.id}`, entraUser('etag@entra.test', { title: 'stale' }), { headers: { 'if-match': v1 } }), 412);
  assertScimError(await c.del(`/Users/${u.id}`, { headers: { 'if-match': v1 } }), 412);
  assertScimError(await c.patchOps(`/Users/${u.id}`, [{ op: 'Replace', path: 'title', value: 'stale' }], { headers: { 'if-match': 'W/"999"' } }), 412);
  const g = await c.fetch(`/Users/${u.id}`);
  assert.equal(g.title, 'one', 'no stale write applied');
  assert.equal(g.meta.version, v2);

  // GET returns the ETag; the current one applies, so does *
  assert.equal((await c.get(`/Users/${u.id}`)).headers.etag, v2);
  const p2 = await c.patchOps(`/Users/${u.id}`, [{ op: 'Replace', path: 'title', value: 'two' }], { headers: { 'if-match': v2 } });
  assert.equal(p2.status, 200, p2.body);
  const p3 = await c.patchOps(`/Users/${u.id}`, [{ op: 'Replace', path: 'title', value: 'three' }], { headers: { 'if-match': '*' } });
  assert.equal(p3.status, 200, p3.body);
  const p4 = await c.put(`/Users/${u.id}`, entraUser('etag@entra.test', { title: 'four' }), { headers: { 'if-match': p3.headers.etag } });
  assert.equal(p4.status, 200, p4.body);
  assert.equal((await c.fetch(`/Users/${u.id}`)).title, 'four');

  // groups too
  const grp = await c.createGroup('Etag Group');
  const gp = await c.patchOps(`/Groups/${grp.id}`, [{ op: 'Replace', path: 'displayName', value: 'E2' }], { headers: { 'if-match': grp.meta.version } });
  assert.equal(gp.status, 200, gp.body);
  assertScimError(await c.patchOps(`/Groups/${grp.id}`, [{ op: 'Replace', path: 'displayName', value: 'E3' }], { headers: { 'if-match': grp.meta.version } }), 412);
  assert.equal((await c.fetch(`/Groups/${grp.id}`)).displayName, 'E2');

  // delete with the current ETag works
  const d = await c.del(`/Users/${u.id}`, { headers: { 'if-match': p4.headers.etag } });
  assert.equal(d.status, 204, d.body);
});
