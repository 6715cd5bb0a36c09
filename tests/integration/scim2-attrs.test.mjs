// SCIM 2.0 attribute selection (RFC 7644 §3.4.2.5, §3.9): `attributes` and
// `excludedAttributes` on GET of one resource, on lists, on .search (Users,
// Groups, root), with sub-attributes and URN-qualified names; id and schemas
// always come back; filters see the whole resource whatever is selected;
// group members can be left out; and `password` is never returned anywhere.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { adminGet, assertListResponse, startScimGateway, URN } from './lib/scim.mjs';
import {
  XURN, search, listQuery, seedDirectory, reloadDirectory, assertNoPassword, expectIds, idsOf, valuesOf, ciEq,
  seedIndex,
} from './lib/scim2.mjs';

const E = URN.ENT;
let gw, opToken, acme, c, d, U, G;

before(async () => {
  ({ gw, opToken, tenants: { acme } } = await startScimGateway({ tenants: ['acme'] }));
  c = acme.c;
  d = await seedDirectory(c, { n: 14 });
  U = d.users;
  G = d.groups;
});

const sortedKeys = (o) => Object.keys(o).sort();
const without = (o, ...ks) => Object.fromEntries(Object.entries(o).filter(([k]) => !ks.includes(k)));
const ALWAYS = ['id', 'meta', 'schemas'];

/**
 * Every way to get a selection: GET one, GET list and POST .search (same
 * resources, in the same order). Resolves {one: [...], list: [...], search: [...]}
 * for the resources of `res`; `sel` is {attributes} or {excludedAttributes} (arrays).
 */
async function selectAll(res, sel) {
  const full = res === 'Users' ? U : G;
  const one = [];
  for (const r of full) {
    const g = await c.get(`/${res}/${r.id}` + listQuery(sel));
    assert.equal(g.status, 200, g.body);
    assertNoPassword(g);
    one.push(g.json);
  }
  const l = await c.get(`/${res}` + listQuery({ ...sel, count: 1000 }));
  assertNoPassword(l);
  const list = assertListResponse(l, { total: full.length }).Resources;
  const s = await search(c, `/${res}`, { ...sel, count: 1000 });
  assertNoPassword(s);
  const srch = assertListResponse(s, { total: full.length }).Resources;
  return { one, list, search: srch };
}

/** Runs check(selected, full, how) on every resource of every way to select. */
async function forEachSelected(res, sel, check) {
  const full = res === 'Users' ? U : G;
  const got = await selectAll(res, sel);
  for (const [how, arr] of Object.entries(got)) {
    assert.deepEqual(idsOf(arr), idsOf(full), `${how}: the same resources`);
    arr.forEach((r, i) => check(r, full[i], `${how} ${JSON.stringify(sel)} ${r.id}`));
  }
}

test('attributes=userName,name.givenName: id, schemas, meta, userName and name with only givenName', async () => {
  await forEachSelected('Users', { attributes: ['userName', 'name.givenName'] }, (r, f, how) => {
    assert.deepEqual(sortedKeys(r), [...ALWAYS, 'name', 'userName'].sort(), how);
    assert.deepEqual(r.name, { givenName: f.name.givenName }, how);
    assert.equal(r.userName, f.userName);
    assert.equal(r.id, f.id);
    assert.deepEqual(r.schemas, f.schemas, 'schemas unchanged');
    assert.deepEqual(r.meta, f.meta, 'meta unchanged');
  });
  // attribute names are case-insensitive; the reply keeps the stored spelling
  await forEachSelected('Users', { attributes: ['USERNAME', 'Name.GivenName'] }, (r, f, how) => {
    assert.deepEqual(sortedKeys(r), [...ALWAYS, 'name', 'userName'].sort(), how);
    assert.deepEqual(r.name, { givenName: f.name.givenName }, how);
  });
  // several sub-attributes of one attribute; a whole attribute wins over its sub-attribute
  await forEachSelected('Users', { attributes: ['name.givenName', 'name.familyName', 'title'] }, (r, f, how) => {
    assert.deepEqual(r.name, { givenName: f.name.givenName, familyName: f.name.familyName }, how);
    assert.equal(r.title, f.title, how);
    assert.deepEqual(sortedKeys(r), [...ALWAYS, 'name', ...(f.title !== undefined ? ['title'] : [])].sort(), how);
  });
  await forEachSelected('Users', { attributes: ['name', 'name.givenName'] }, (r, f, how) => {
    assert.deepEqual(r.name, f.name, how);
  });
});

test('attributes=emails.value: only the value of each email (none for users without emails)', async () => {
  await forEachSelected('Users', { attributes: ['emails.value'] }, (r, f, how) => {
    if (!f.emails) {
      assert.deepEqual(sortedKeys(r), ALWAYS, `${how}: no emails, nothing else`);
      return;
    }
    assert.deepEqual(sortedKeys(r), [...ALWAYS, 'emails'].sort(), how);
    assert.deepEqual(r.emails, f.emails.map((e) => ({ value: e.value })), how);
  });
  await forEachSelected('Users', { attributes: ['emails.value', 'emails.type'] }, (r, f, how) => {
    if (f.emails) assert.deepEqual(r.emails, f.emails.map((e) => ({ value: e.value, type: e.type })), how);
  });
  await forEachSelected('Users', { attributes: ['emails', 'emails.type'] }, (r, f, how) => {
    if (f.emails) assert.deepEqual(r.emails, f.emails, how);
  });
  // read-only groups: the sub-attribute of a computed attribute
  await forEachSelected('Users', { attributes: ['groups.display'] }, (r, f, how) => {
    assert.deepEqual(r.groups, f.groups.map((g) => ({ display: g.display })), how);
  });
});

test('excludedAttributes=emails,groups removes them, never id or schemas', async () => {
  await forEachSelected('Users', { excludedAttributes: ['emails', 'groups'] }, (r, f, how) => {
    assert.deepEqual(r, without(f, 'emails', 'groups'), how);
  });
  await forEachSelected('Users', { excludedAttributes: ['id', 'schemas', 'userName'] }, (r, f, how) => {
    assert.equal(r.id, f.id, `${how}: id stays`);
    assert.deepEqual(r.schemas, f.schemas, `${how}: schemas stay`);
    assert.deepEqual(r, without(f, 'userName'), how);
  });
  await forEachSelected('Users', { excludedAttributes: ['name.givenName', 'emails.type', 'EMAILS.PRIMARY'] }, (r, f, how) => {
    const { givenName, ...name } = f.name;
    assert.deepEqual(r.name, name, how);
    if (f.emails) assert.deepEqual(r.emails, f.emails.map((e) => ({ value: e.value })), how);
    assert.deepEqual(without(r, 'name', 'emails'), without(f, 'name', 'emails'), how);
  });
  // core attributes may be URN-qualified
  await forEachSelected('Users', { excludedAttributes: [`${URN.USER}:groups`, `${URN.USER}:name`] }, (r, f, how) => {
    assert.deepEqual(r, without(f, 'groups', 'name'), how);
  });
  // names that match nothing change nothing
  await forEachSelected('Users', { excludedAttributes: ['nosuch', 'name.nosuch', `${E}:nosuch`] }, (r, f, how) => {
    assert.deepEqual(r, f, how);
  });
});

test('URN-qualified selection: one enterprise attribute, the whole extension, a sub-attribute; exclusion too', async () => {
  await forEachSelected('Users', { attributes: [`${E}:employeeNumber`] }, (r, f, how) => {
    assert.deepEqual(sortedKeys(r), [...ALWAYS, E].sort(), how);
    assert.deepEqual(r[E], { employeeNumber: f[E].employeeNumber }, how);
    assert.deepEqual(r.schemas, f.schemas, how);
  });
  await forEachSelected('Users', { attributes: [E.toUpperCase() + ':EMPLOYEENUMBER'] }, (r, f, how) => {
    assert.deepEqual(r[E], { employeeNumber: f[E].employeeNumber }, `${how}: URN and name in any case`);
  });
  await forEachSelected('Users', { attributes: [E, 'userName'] }, (r, f, how) => {
    assert.deepEqual(sortedKeys(r), [...ALWAYS, E, 'userName'].sort(), how);
    assert.deepEqual(r[E], f[E], how);
  });
  await forEachSelected('Users', { attributes: [`${E}:manager.value`, `${E}:department`] }, (r, f, how) => {
    const want = {};
    if (f[E].department !== undefined) want.department = f[E].department;
    if (f[E].manager) want.manager = { value: f[E].manager.value };
    assert.deepEqual(r[E] ?? {}, want, how);
  });
  await forEachSelected('Users', { attributes: [`${URN.USER}:userName`, `${URN.USER}:name.familyName`, `${XURN}:level`] }, (r, f, how) => {
    assert.equal(r.userName, f.userName, how);
    assert.deepEqual(r.name, { familyName: f.name.familyName }, how);
    const lvl = f[XURN].level;
    assert.deepEqual(r[XURN] ?? {}, lvl === undefined ? {} : { level: lvl }, how);
    assert.equal(r[E], undefined, `${how}: not the enterprise extension`);
  });
  await forEachSelected('Users', { excludedAttributes: [`${E}:department`, `${E}:manager.displayName`] }, (r, f, how) => {
    const { department, ...rest } = f[E];
    if (rest.manager) rest.manager = { value: rest.manager.value };
    assert.deepEqual(r[E], rest, how);
    assert.deepEqual(without(r, E), without(f, E), how);
  });
  await forEachSelected('Users', { excludedAttributes: [E] }, (r, f, how) => {
    assert.deepEqual(r, without(f, E), how);
  });
});

test('groups: excludedAttributes=members omits members (GET, list, .search, root .search); attributes select as for users', async () => {
  assert.ok(G.some((g) => g.members.length > 3), 'some groups have members');
  await forEachSelected('Groups', { excludedAttributes: ['members'] }, (r, f, how) => {
    assert.deepEqual(r, without(f, 'members'), how);
  });
  await forEachSelected('Groups', { attributes: ['displayName'] }, (r, f, how) => {
    assert.deepEqual(r, { schemas: f.schemas, id: f.id, displayName: f.displayName, meta: f.meta }, how);
  });
  await forEachSelected('Groups', { attributes: ['members.value', 'externalId'] }, (r, f, how) => {
    assert.deepEqual(r.members, f.members.map((m) => ({ value: m.value })), how);
    assert.equal(r.externalId, f.externalId, how);
    assert.equal(r.displayName, undefined, how);
  });
  await forEachSelected('Groups', { excludedAttributes: ['members.$ref', 'members.display', 'members.type'] }, (r, f, how) => {
    assert.deepEqual(r.members, f.members.map((m) => ({ value: m.value })), how);
  });
  // root search: users then groups, members left out, users intact
  const root = assertListResponse(await search(c, '', { excludedAttributes: ['members'], count: 1000 }), { total: U.length + G.length });
  assert.deepEqual(root.Resources, [...U, ...G.map((g) => without(g, 'members'))]);
  // a filter on members still works when members are not returned
  const uid = U[0].id;
  for (const f of [`members[value eq "${uid}"]`, `members[value eq "${uid}"] or displayName eq "no such"`]) {
    const l = assertListResponse(await c.get('/Groups' + listQuery({ filter: f, excludedAttributes: ['members'] })));
    assert.deepEqual(idsOf(l.Resources), expectIds(G, (g) => valuesOf(g, 'members', 'value').includes(uid)), f);
    assert.ok(l.Resources.every((g) => g.members === undefined), `${f}: no members returned`);
  }
});

test('filters see the whole resource whatever the selection returns', async () => {
  const mgr = (u) => ciEq(u.title, 'Manager');
  for (const sel of [{ attributes: ['userName'] }, { excludedAttributes: ['title'] }]) {
    const l = assertListResponse(await c.get('/Users' + listQuery({ filter: 'title eq "Manager"', ...sel })));
    assert.deepEqual(idsOf(l.Resources), expectIds(U, mgr), JSON.stringify(sel));
    assert.ok(l.Resources.every((r) => r.title === undefined), 'title not returned');
  }
  const gid = G.find((g) => g.displayName === 'Sales Team').id;
  for (const f of [`groups.value eq "${gid}"`, `groups[value eq "${gid}"] and userName pr`]) {
    const l = assertListResponse(await search(c, '/Users', { filter: f, excludedAttributes: ['groups'] }));
    assert.deepEqual(idsOf(l.Resources), expectIds(U, (u) => valuesOf(u, 'groups', 'value').includes(gid)), f);
    assert.ok(l.Resources.length > 0 && l.Resources.every((r) => r.groups === undefined), `${f}: groups not returned`);
  }
  const l = assertListResponse(await c.get('/Users' + listQuery({ filter: `${E}:department eq "Sales"`, attributes: [`${E}:employeeNumber`] })));
  assert.deepEqual(idsOf(l.Resources), expectIds(U, (u) => u[E].department === 'Sales'));
  assert.ok(l.Resources.every((r) => sortedKeys(r[E]).join() === 'employeeNumber'));
});

test('selection edge cases: unknown names, empty lists, both parameters, write replies', async () => {
  const u = U[0];
  const only = await c.fetch(`/Users/${u.id}?attributes=nosuch`);
  assert.deepEqual(sortedKeys(only), ALWAYS, 'an unknown attribute selects nothing but id, schemas, meta');
  assert.deepEqual(await c.fetch(`/Users/${u.id}?attributes=`), u, 'an empty attributes list selects everything');
  assert.deepEqual(await c.fetch(`/Users/${u.id}?excludedAttributes=`), u);
  assert.deepEqual(await c.fetch(`/Users/${u.id}?attributes=${encodeURIComponent(' userName , title ')}`),
    Object.fromEntries(Object.entries(u).filter(([k]) => [...ALWAYS, 'userName', 'title'].includes(k))), 'spaces around names');
  // writes accept the parameters; whatever they return holds what was asked and no password
  const p = await c.post('/Users?attributes=userName', { schemas: [URN.USER], userName: 'w@attrs.test', password: 'Pw-123456', title: 't' });
  assert.equal(p.status, 201, p.body);
  assertNoPassword(p);
  for (const k of [...ALWAYS, 'userName']) assert.ok(k in p.json, `POST reply has ${k}`);
  const pa = await c.patchOps(`/Users/${p.json.id}?excludedAttributes=emails`, [{ op: 'replace', path: 'title', value: 'u' }]);
  assert.equal(pa.status, 200, pa.body);
  assertNoPassword(pa);
  assert.equal(pa.json.title, 'u');
  assert.equal((await c.del(`/Users/${p.json.id}`)).status, 204);
});

test('password is never returned: create, replace, patch, read, list, search, select, filter, admin views', async () => {
  const pw = 'Sup3r-Secret-Passw0rd';
  const replies = [];
  const keep = (what, r) => { replies.push([what, r]); return r; };
  const p = keep('POST', await c.post('/Users', { schemas: [URN.USER], userName: 'pw@attrs.test', password: pw, title: 'pw' }));
  assert.equal(p.status, 201, p.body);
  const id = p.json.id;
  keep('PUT', await c.put(`/Users/${id}`, { schemas: [URN.USER], userName: 'pw@attrs.test', password: pw + '2', title: 'pw2' }));
  keep('PATCH path password', await c.patchOps(`/Users/${id}`, [{ op: 'replace', path: 'password', value: pw + '3' }]));
  keep('PATCH path-less password', await c.patchOps(`/Users/${id}`, [{ op: 'replace', value: { password: pw + '4', title: 'pw4' } }]));
  keep('PATCH add password', await c.patchOps(`/Users/${id}`, [{ op: 'add', path: 'password', value: pw + '5' }]));
  keep('PATCH URN password', await c.patchOps(`/Users/${id}`, [{ op: 'replace', path: `${URN.USER}:password`, value: pw + '6' }]));
  for (const [what, r] of replies) assert.ok(r.status < 500, `${what}: ${r.status} ${r.body}`);
  keep('GET', await c.get(`/Users/${id}`));
  keep('GET attributes=password', await c.get(`/Users/${id}?attributes=password,userName`));
  keep('GET attributes=URN:password', await c.get(`/Users/${id}?attributes=${encodeURIComponent(`${URN.USER}:password`)}`));
  keep('GET list', await c.get('/Users?count=1000'));
  keep('GET list attributes=password', await c.get('/Users?attributes=password'));
  keep('.search', await search(c, '/Users', { attributes: ['password', 'userName'] }));
  keep('root .search', await search(c, '', { count: 1000 }));
  keep('admin users', await adminGet(gw.port, opToken, '/admin/v1/tenants/acme/users?count=1000'));
  keep('admin user', await adminGet(gw.port, opToken, `/admin/v1/tenants/acme/users/${id}`));
  keep('admin groups', await adminGet(gw.port, opToken, '/admin/v1/tenants/acme/groups'));
  for (const [what, r] of replies) {
    if (/^(GET|admin|\.search|root)/.test(what)) assert.equal(r.status, 200, `${what}: ${r.body.slice(0, 200)}`);
    assertNoPassword(r, what);
    assert.ok(!r.body.includes(pw), `${what}: the password text itself never appears`);
  }
  const got = await c.fetch(`/Users/${id}?attributes=password`);
  assert.deepEqual(sortedKeys(got), ALWAYS, 'attributes=password selects nothing');
  // filters cannot probe it either
  for (let i = 0; i <= 6; i++) {
    for (const f of [`password eq "${pw}${i || ''}"`, 'password pr', `password sw "${pw.slice(0, 3)}"`]) {
      const l = assertListResponse(await c.get('/Users' + listQuery({ filter: f })));
      assert.equal(l.totalResults, 0, `${f}: nothing`);
    }
  }
  // the seeded users were created with passwords too
  assert.ok(U.every((x) => x.password === undefined && seedIndex(x) >= 0));
  const dir = await reloadDirectory(c);
  assert.ok(JSON.stringify(dir).toLowerCase().indexOf('password') < 0);
});
