// SCIM 2.0 as Okta drives it (shared/okta-scim.md): connection test, user
// lookup-then-create, wizard GET+PUT, deactivate/reactivate, Group Push,
// errors, pagination, tenant isolation — with Okta's exact request shapes.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { createTenant } from './lib/admin.mjs';
import {
  startScimGateway, scimClient, scimCall, assertScimError, assertListResponse, assertScimContentType,
  oktaUser, qFilter, scimEvent, scrape, URN, UUID_RE, WEAK_ETAG_RE, PUBLIC_URL,
} from './lib/scim.mjs';
import { metricValue } from './lib/gateway.mjs';

const RFC3339_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

let gw, opToken, acme, c;

before(async () => {
  ({ gw, opToken, tenants: { acme } } = await startScimGateway({ tenants: ['acme'] }));
  c = acme.c;
});

const OKTA_USER = 'test.user@okta.local';
let testUser; // created by the lookup-then-create test
let pagesTokenValue; // SCIM token of the 'pages' tenant (created by the pagination test)

test('connection test: GET /Users?startIndex=1&count=2 and GET /Groups?startIndex=1&count=100', async () => {
  const u = await c.get('/Users?startIndex=1&count=2');
  const ul = assertListResponse(u, { total: 0, startIndex: 1, itemsPerPage: 0 });
  assert.deepEqual(ul.Resources, []);
  const g = await c.get('/Groups?startIndex=1&count=100');
  assertListResponse(g, { total: 0, startIndex: 1, itemsPerPage: 0 });
  assert.equal(acme.base_url, `${PUBLIC_URL}/t/acme/scim/v2`, 'tenant creation returns the SCIM base URL');
});

test('authentication: Bearer and Basic (token as password, any username) work; otherwise 401 with a SCIM error', async () => {
  const ok = await scimCall(gw.port, 'acme', { basic: ['okta', acme.token] }, 'GET', '/Users?startIndex=1&count=2');
  assertListResponse(ok);
  const ok2 = await scimCall(gw.port, 'acme', { basic: ['', acme.token] }, 'GET', '/Groups');
  assertListResponse(ok2);

  const bad = [
    ['no Authorization', null],
    ['wrong bearer token', 'mgs_' + 'A'.repeat(43)],
    ['garbage bearer', 'nope'],
    ['Basic with a wrong password', { basic: ['okta', 'wrong'] }],
    ['other scheme', { header: `Token ${acme.token}` }],
    ['token as Basic username only', { basic: [acme.token, ''] }],
  ];
  for (const [what, auth] of bad) {
    const r = await scimCall(gw.port, 'acme', auth, 'GET', '/Users?startIndex=1&count=2');
    assertScimError(r, 401);
    assert.ok(r.headers['www-authenticate'], `${what}: WWW-Authenticate present`);
    // writes are refused too, and nothing is created
    const w = await scimCall(gw.port, 'acme', auth, 'POST', '/Users', oktaUser(`nobody-${what.length}@x.test`));
    assertScimError(w, 401);
  }
  // unknown tenant → 401 too (no tenant enumeration)
  const unk = await scimCall(gw.port, 'no-such-tenant', acme.token, 'GET', '/Users');
  assertScimError(unk, 401);
  assert.ok(unk.headers['www-authenticate'], 'WWW-Authenticate on unknown tenant');
  assertListResponse(await c.get('/Users'), { total: 0 });
});

test('user lookup before create, create with Okta body, no password stored or echoed', async () => {
  const lookup = `/Users?filter=userName%20eq%20%22test.user%40okta.local%22&startIndex=1&count=100`;
  assertListResponse(await c.get(lookup), { total: 0, itemsPerPage: 0 });

  const before = await scimEvent(gw.port, 'user_created');
  const body = oktaUser(OKTA_USER, { externalId: '00ujl29u0le5T6Aj10h7' });
  // Okta's own test POSTs with plain application/json
  const r = await c.post('/Users', body, { contentType: 'application/json' });
  assert.equal(r.status, 201, r.body);
  assertScimContentType(r);
  const u = r.json;
  assert.match(u.id, UUID_RE);
  assert.ok(u.schemas.includes(URN.USER), 'schemas include core User');
  assert.equal(u.userName, OKTA_USER);
  assert.deepEqual(u.name, { givenName: 'Test', familyName: 'User' });
  assert.deepEqual(u.emails, [{ primary: true, value: OKTA_USER, type: 'work' }]);
  assert.equal(u.displayName, 'Test User');
  assert.equal(u.locale, 'en-US');
  assert.equal(u.externalId, '00ujl29u0le5T6Aj10h7');
  assert.equal(u.active, true);
  assert.equal(u.password, undefined, 'password never echoed');
  assert.ok(!r.body.includes('1mz050nq'), 'password text nowhere in the reply');
  assert.equal(u.meta.resourceType, 'User');
  assert.match(u.meta.created, RFC3339_RE);
  assert.match(u.meta.lastModified, RFC3339_RE);
  assert.match(u.meta.version, WEAK_ETAG_RE);
  assert.equal(u.meta.location, `${PUBLIC_URL}/t/acme/scim/v2/Users/${u.id}`);
  assert.equal(r.headers.etag, u.meta.version, 'ETag header = meta.version');
  assert.equal(r.headers.location, u.meta.location, 'Location header = meta.location');
  assert.deepEqual(u.groups ?? [], []);

  const g = await c.get(`/Users/${u.id}`);
  assert.equal(g.status, 200, g.body);
  assertScimContentType(g);
  assert.equal(g.json.password, undefined, 'password not stored');
  assert.ok(!g.body.includes('1mz050nq'), 'password text not in GET');
  assert.equal(g.headers.etag, u.meta.version);
  assert.deepEqual(g.json.groups, [], 'read-only groups present (empty)');
  assert.equal(g.json.active, true);
  assert.equal(g.json.externalId, '00ujl29u0le5T6Aj10h7');

  const found = assertListResponse(await c.get(lookup), { total: 1, itemsPerPage: 1, startIndex: 1 });
  assert.equal(found.Resources[0].id, u.id);
  assert.equal(found.Resources[0].password, undefined);
  assert.equal(await scimEvent(gw.port, 'user_created'), before + 1, 'user_created counted once');

  // by externalId (the Okta user id) and by id
  const byExt = assertListResponse(await c.get('/Users?' + qFilter('externalId eq "00ujl29u0le5T6Aj10h7"')), { total: 1 });
  assert.equal(byExt.Resources[0].id, u.id);
  const byId = assertListResponse(await c.get('/Users?' + qFilter(`id eq "${u.id}"`)), { total: 1 });
  assert.equal(byId.Resources[0].userName, OKTA_USER);
  testUser = u;
});

test('active defaults to true when omitted', async () => {
  const r = await c.post('/Users', { schemas: [URN.USER], userName: 'no.active@okta.local' });
  assert.equal(r.status, 201, r.body);
  assert.equal(r.json.active, true);
  assert.equal((await c.fetch(`/Users/${r.json.id}`)).active, true);
  assert.equal((await c.del(`/Users/${r.json.id}`)).status, 204);
});

test('duplicate userName (any case) → 409 uniqueness; case-insensitive lookup', async () => {
  for (const name of [OKTA_USER, 'TEST.USER@OKTA.LOCAL', 'Test.User@okta.local']) {
    const r = await c.post('/Users', oktaUser(name));
    assertScimError(r, 409, { scimType: 'uniqueness' });
  }
  assertListResponse(await c.get('/Users?' + qFilter(`userName eq "${OKTA_USER}"`)), { total: 1 });

  for (const f of ['USERNAME EQ "TEST.USER@okta.local"', 'username eq "Test.User@OKTA.local"',
    'userName Eq "test.user@okta.local"']) {
    const l = assertListResponse(await c.get('/Users?' + qFilter(f) + '&startIndex=1&count=100'), { total: 1 });
    assert.equal(l.Resources[0].id, testUser.id, f);
  }
  // an absent user: 200 with zero results, never 404
  assertListResponse(await c.get('/Users?' + qFilter('userName eq "absent@okta.local"') + '&startIndex=1&count=100'),
    { total: 0, itemsPerPage: 0 });
});

// Found by review: the case folding of userName was ASCII's only, so
// "ÉMILE@…" and "émile@…" were two users (the second POST 201) and Okta's
// lookup before a create missed a user whose name differed in a non-ASCII
// letter's case. Unicode's simple case folding now (store/text.h): the
// index, the filter's eq/sw/co/ew, renames, and group displayNames alike.
test('userName and displayName compare by Unicode case folding: 409 for ÉMILE after émile, lookups in any case', async () => {
  const r = await c.post('/Users', oktaUser('émile.zoë@okta.local'));
  assert.equal(r.status, 201, r.body);
  for (const name of ['ÉMILE.ZOË@OKTA.LOCAL', 'Émile.Zoë@okta.local', 'émile.zoË@okta.local']) {
    assertScimError(await c.post('/Users', oktaUser(name)), 409, { scimType: 'uniqueness' });
    const l = assertListResponse(await c.get('/Users?' + qFilter(`userName eq "${name}"`)), { total: 1 });
    assert.equal(l.Resources[0].id, r.json.id, name);
  }
  for (const f of ['userName sw "ÉMILE."', 'userName co "ZOË@"', 'userName ew "ZOË@OKTA.LOCAL"']) {
    const l = assertListResponse(await c.get('/Users?' + qFilter(f)), { total: 1 });
    assert.equal(l.Resources[0].id, r.json.id, f);
  }
  // the Kelvin sign folds to k, the Greek capital sigma to σ (simple foldings), ß stays ß
  const k = await c.post('/Users', oktaUser('\u212Aelvin@okta.local'));
  assert.equal(k.status, 201, k.body);
  assertScimError(await c.post('/Users', oktaUser('kelvin@okta.local')), 409, { scimType: 'uniqueness' });
  const ss = await c.post('/Users', oktaUser('straße@okta.local'));
  assert.equal(ss.status, 201, ss.body);
  const sse = await c.post('/Users', oktaUser('strasse@okta.local'));
  assert.equal(sse.status, 201, 'full folding (ß → ss) is not applied');
  // a rename to another case of its own name is allowed; to another user's is not
  const own = await c.patchOps(`/Users/${r.json.id}`, [{ op: 'replace', path: 'userName', value: 'ÉMILE.ZOË@okta.local' }]);
  assert.equal(own.status, 200, own.body);
  assertScimError(await c.patchOps(`/Users/${k.json.id}`, [{ op: 'replace', path: 'userName', value: 'émile.zoë@OKTA.local' }]),
    409, { scimType: 'uniqueness' });
  // group displayNames
  const g = await c.post('/Groups', { schemas: [URN.GROUP], displayName: 'Équipe Données', members: [] });
  assert.equal(g.status, 201, g.body);
  const gl = assertListResponse(await c.get('/Groups?' + qFilter('displayName eq "ÉQUIPE DONNÉES"')), { total: 1 });
  assert.equal(gl.Resources[0].id, g.json.id);
  for (const id of [r.json.id, k.json.id, ss.json.id, sse.json.id]) assert.equal((await c.del(`/Users/${id}`)).status, 204);
  assert.equal((await c.del(`/Groups/${g.json.id}`)).status, 204);
});

// externalId is the Okta user id — the `sub` a sign-in links by, which
// fails closed when two users match. Found by review: SCIM accepted a
// second user of the tenant with an externalId another user had (POST,
// PUT, PATCH), and that person could no longer sign in. Now 409
// uniqueness, case-exact (RFC 7643 caseExact), checked in the write's
// own transaction: of racing creates one wins.
test('duplicate externalId (the Okta user id) → 409 uniqueness on POST, PUT and PATCH; case-exact; racing creates: one wins', async () => {
  const EXT = '00ujl29u0le5T6Aj10h7'; // testUser's
  assertScimError(await c.post('/Users', oktaUser('twin@okta.local', { externalId: EXT })), 409, { scimType: 'uniqueness' });
  assertListResponse(await c.get('/Users?' + qFilter('userName eq "twin@okta.local"')), { total: 0 });
  const twin = await c.post('/Users', oktaUser('twin@okta.local', { externalId: EXT.toUpperCase() }));
  assert.equal(twin.status, 201, `externalId is case-exact: another value: ${twin.body}`);
  const id = twin.json.id;
  assertScimError(await c.put(`/Users/${id}`, oktaUser('twin@okta.local', { externalId: EXT })), 409, { scimType: 'uniqueness' });
  assertScimError(await c.patchOps(`/Users/${id}`, [{ op: 'replace', path: 'externalId', value: EXT }]), 409, { scimType: 'uniqueness' });
  assertScimError(await c.patchOps(`/Users/${id}`, [{ op: 'replace', value: { externalId: EXT, active: false } }]), 409, { scimType: 'uniqueness' });
  assertScimError(await c.patchOps(`/Users/${id}`, [{ op: 'add', value: { [`${URN.USER}:externalId`]: EXT } }]), 409, { scimType: 'uniqueness' });
  const byExt = assertListResponse(await c.get('/Users?' + qFilter(`externalId eq "${EXT}"`)), { total: 1 });
  assert.equal(byExt.Resources[0].id, testUser.id, 'the Okta user id still names one user');
  assert.equal((await c.fetch(`/Users/${id}`)).active, true, 'the refused PATCH changed nothing');
  // the owner's own writes carry it back unchanged
  const own = await c.patchOps(`/Users/${testUser.id}`, [{ op: 'replace', value: { externalId: EXT, displayName: 'Test User' } }]);
  assert.equal(own.status, 200, own.body);
  // racing creates of one new externalId: exactly one lands
  const tries = await Promise.all(Array.from({ length: 10 }, (_, i) =>
    c.post('/Users', oktaUser(`ext-race${i}@okta.local`, { externalId: '00u-ext-race' }))));
  const statuses = tries.map((r) => r.status).sort();
  assert.deepEqual(statuses, [201, ...Array(9).fill(409)], `one winner: ${statuses}`);
  assertListResponse(await c.get('/Users?' + qFilter('externalId eq "00u-ext-race"')), { total: 1 });
  for (const r of tries) if (r.status === 201) assert.equal((await c.del(`/Users/${r.json.id}`)).status, 204);
  assert.equal((await c.del(`/Users/${id}`)).status, 204);
});

test('wizard profile update: GET then PUT the whole object (id, meta, groups included)', async () => {
  const grp = await c.createGroup('wizard-readonly', [testUser.id]);
  const cur = await c.get(`/Users/${testUser.id}`);
  assert.equal(cur.status, 200);
  const obj = cur.json;
  assert.equal(obj.groups.length, 1, 'the user is in one group');
  assert.deepEqual(Object.keys(obj.groups[0]).sort(), ['$ref', 'display', 'type', 'value']);
  assert.equal(obj.groups[0].value, grp.id);
  assert.equal(obj.groups[0].display, 'wizard-readonly');
  assert.equal(obj.groups[0].$ref, `${PUBLIC_URL}/t/acme/scim/v2/Groups/${grp.id}`);

  const put = structuredClone(obj);
  put.name.givenName = 'Tessa';
  put.displayName = 'Tessa User';
  put.emails = [{ primary: true, value: 'tessa@okta.local', type: 'work' }];
  put.groups = [];                       // read-only: ignored
  put.meta = { ...put.meta, version: 'W/"999"', created: '2000-01-01T00:00:00Z' }; // read-only: ignored
  put.password = 'newpass1';
  const r = await c.put(`/Users/${obj.id}`, put);
  assert.equal(r.status, 200, r.body);
  assertScimContentType(r);
  assert.equal(r.json.id, obj.id);
  assert.equal(r.json.name.givenName, 'Tessa');
  assert.equal(r.json.displayName, 'Tessa User');
  assert.deepEqual(r.json.emails, [{ primary: true, value: 'tessa@okta.local', type: 'work' }]);
  assert.equal(r.json.password, undefined, 'password not echoed by PUT');
  assert.equal(r.json.meta.created, obj.meta.created, 'meta.created kept');
  assert.notEqual(r.json.meta.version, obj.meta.version, 'version changes');
  assert.notEqual(r.json.meta.version, 'W/"999"', 'client meta ignored');
  assert.equal(r.headers.etag, r.json.meta.version);

  const g = await c.fetch(`/Users/${obj.id}`);
  assert.equal(g.name.givenName, 'Tessa');
  assert.equal(g.password, undefined);
  assert.deepEqual(g.groups.map((x) => x.value), [grp.id], 'groups unchanged by PUT (read-only)');
  assert.deepEqual(await c.memberIds(grp.id), [obj.id]);
  assert.equal((await c.del(`/Groups/${grp.id}`)).status, 204);
});

test('deactivate with path-less PATCH {"active":false}, reactivate with {"active":true}', async () => {
  const u = await c.createUser('deact@okta.local');
  const d0 = await scimEvent(gw.port, 'user_deactivated');
  const r0 = await scimEvent(gw.port, 'user_reactivated');

  const deact = { schemas: [URN.PATCH], Operations: [{ op: 'replace', value: { active: false } }] };
  const r = await c.patch(`/Users/${u.id}`, deact);
  assert.ok(r.status === 200 || r.status === 204, `deactivate: ${r.status} ${r.body}`);
  if (r.status === 200) {
    assertScimContentType(r);
    assert.equal(r.json.active, false);
    assert.equal(r.json.id, u.id);
    assert.equal(r.headers.etag, r.json.meta.version);
  }
  const g = await c.fetch(`/Users/${u.id}`);
  assert.equal(g.active, false);
  assert.equal(g.userName, 'deact@okta.local', 'other attributes kept');
  assert.equal(await scimEvent(gw.port, 'user_deactivated'), d0 + 1, 'user_deactivated +1');

  // deactivating again is not a second deactivation
  assert.equal((await c.patch(`/Users/${u.id}`, deact)).status, 200);
  assert.equal(await scimEvent(gw.port, 'user_deactivated'), d0 + 1, 'repeat deactivate does not count');

  const re = await c.patch(`/Users/${u.id}`, { schemas: [URN.PATCH], Operations: [{ op: 'replace', value: { active: true } }] });
  assert.equal(re.status, 200, re.body);
  assert.equal(re.json.active, true);
  assert.equal((await c.fetch(`/Users/${u.id}`)).active, true);
  assert.equal(await scimEvent(gw.port, 'user_reactivated'), r0 + 1, 'user_reactivated +1');
});

test('wizard deactivate: PUT with "active":false; a PUT omitting active leaves it; PUT active:true reactivates', async () => {
  const u = await c.createUser('putdeact@okta.local', { name: { givenName: 'P', familyName: 'D' } });
  const d0 = await scimEvent(gw.port, 'user_deactivated');
  const cur = await c.fetch(`/Users/${u.id}`);
  const r = await c.put(`/Users/${u.id}`, { ...cur, active: false });
  assert.equal(r.status, 200, r.body);
  assert.equal(r.json.active, false);
  assert.equal((await c.fetch(`/Users/${u.id}`)).active, false);
  assert.equal(await scimEvent(gw.port, 'user_deactivated'), d0 + 1);

  const { active, ...noActive } = await c.fetch(`/Users/${u.id}`);
  noActive.name = { givenName: 'Pat', familyName: 'D' };
  const r2 = await c.put(`/Users/${u.id}`, noActive);
  assert.equal(r2.status, 200, r2.body);
  assert.equal(r2.json.active, false, 'PUT without active keeps active=false');
  assert.equal(r2.json.name.givenName, 'Pat');
  assert.equal((await c.fetch(`/Users/${u.id}`)).active, false);

  const r3 = await c.put(`/Users/${u.id}`, { schemas: [URN.USER], userName: 'putdeact@okta.local', active: true });
  assert.equal(r3.status, 200, r3.body);
  assert.equal(r3.json.active, true);
  assert.equal(r3.json.name, undefined, 'PUT is a full replace: name dropped');
});

test('Group Push: create, find, rename (id inside value), add/remove/replace members, PUT, DELETE', async () => {
  const [u1, u2, u3] = [await c.createUser('gp1@okta.local'), await c.createUser('gp2@okta.local'),
    await c.createUser('gp3@okta.local')];
  const created0 = await scimEvent(gw.port, 'group_created');
  const renamed0 = await scimEvent(gw.port, 'group_renamed');
  const mem0 = await scimEvent(gw.port, 'membership_changed');

  // create exactly as Okta does
  const cr = await c.post('/Groups', { schemas: [URN.GROUP], displayName: 'Test SCIMv2', members: [] });
  assert.equal(cr.status, 201, cr.body);
  assertScimContentType(cr);
  const gid = cr.json.id;
  assert.match(gid, UUID_RE);
  assert.equal(cr.json.displayName, 'Test SCIMv2');
  assert.equal(cr.json.meta.resourceType, 'Group');
  assert.equal(cr.json.meta.location, `${PUBLIC_URL}/t/acme/scim/v2/Groups/${gid}`);
  assert.equal(cr.headers.location, cr.json.meta.location);
  assert.equal(cr.headers.etag, cr.json.meta.version);
  assert.match(cr.json.meta.version, WEAK_ETAG_RE);
  assert.deepEqual(cr.json.members ?? [], []);
  assert.equal(await scimEvent(gw.port, 'group_created'), created0 + 1);

  // find
  const all = assertListResponse(await c.get('/Groups?startIndex=1&count=100'));
  assert.ok(all.Resources.some((g) => g.id === gid), 'listed');
  const f = assertListResponse(await c.get('/Groups?filter=displayName%20eq%20%22Test%20SCIMv2%22&startIndex=1&count=100'),
    { total: 1 });
  assert.equal(f.Resources[0].id, gid);
  assert.equal((await c.fetch(`/Groups/${gid}`)).displayName, 'Test SCIMv2');

  // displayName is not unique
  const twin = await c.createGroup('Test SCIMv2');
  assertListResponse(await c.get('/Groups?' + qFilter('displayName eq "Test SCIMv2"')), { total: 2 });
  assert.equal((await c.del(`/Groups/${twin.id}`)).status, 204);

  // rename, with the read-only id inside value
  const rn = await c.patchOps(`/Groups/${gid}`, [{ op: 'replace', value: { id: gid, displayName: 'Test SCIMv2 renamed' } }]);
  assert.ok(rn.status === 200 || rn.status === 204, `rename: ${rn.status} ${rn.body}`);
  assert.equal(rn.status, 200, 'PATCH replies 200 with the group');
  assert.equal(rn.json.id, gid);
  assert.equal(rn.json.displayName, 'Test SCIMv2 renamed');
  assert.equal(rn.json.members, undefined, 'members omitted from PATCH replies');
  assert.equal(rn.headers.etag, rn.json.meta.version);
  assert.equal((await c.fetch(`/Groups/${gid}`)).displayName, 'Test SCIMv2 renamed');
  assert.equal(await scimEvent(gw.port, 'group_renamed'), renamed0 + 1);

  // Okta's membership update: remove one (absent) by filter + add one
  const m1 = await c.patchOps(`/Groups/${gid}`, [
    { op: 'remove', path: `members[value eq "${u3.id}"]` },
    { op: 'add', path: 'members', value: [{ value: u1.id, display: 'gp1@okta.local' }] },
  ]);
  assert.equal(m1.status, 200, m1.body);
  assert.deepEqual(await c.memberIds(gid), [u1.id]);
  assert.ok(await scimEvent(gw.port, 'membership_changed') > mem0, 'membership_changed counted');

  // add merges and de-duplicates
  const m2 = await c.patchOps(`/Groups/${gid}`, [
    { op: 'add', path: 'members', value: [{ value: u1.id }, { value: u2.id }, { value: u3.id }, { value: u2.id }] },
  ]);
  assert.equal(m2.status, 200, m2.body);
  assert.deepEqual(await c.memberIds(gid), [u1.id, u2.id, u3.id].sort());
  const full = await c.fetch(`/Groups/${gid}`);
  for (const m of full.members) {
    const u = [u1, u2, u3].find((x) => x.id === m.value);
    assert.deepEqual(m, { value: u.id, display: u.userName, $ref: `${PUBLIC_URL}/t/acme/scim/v2/Users/${u.id}`, type: 'User' });
  }
  // excludedAttributes=members
  const ex = await c.fetch(`/Groups/${gid}?excludedAttributes=members`);
  assert.equal(ex.members, undefined);
  assert.equal(ex.displayName, 'Test SCIMv2 renamed');

  // groups containing a user
  for (const flt of [`members[value eq "${u2.id}"]`, `members.value eq "${u2.id}"`]) {
    const l = assertListResponse(await c.get('/Groups?' + qFilter(flt)), { total: 1 });
    assert.equal(l.Resources[0].id, gid, flt);
  }
  // the user sees its group
  const ug = await c.fetch(`/Users/${u2.id}`);
  assert.equal(ug.groups.length, 1, JSON.stringify(ug.groups));
  const { type: gtype, ...gref } = ug.groups[0];
  assert.deepEqual(gref, { value: gid, display: 'Test SCIMv2 renamed', $ref: `${PUBLIC_URL}/t/acme/scim/v2/Groups/${gid}` });
  assert.ok(typeof gtype === 'string' && gtype.length > 0, 'groups[].type set');

  // remove by value filter removes only that member
  const m3 = await c.patchOps(`/Groups/${gid}`, [{ op: 'remove', path: `members[value eq "${u2.id}"]` }]);
  assert.equal(m3.status, 200, m3.body);
  assert.deepEqual(await c.memberIds(gid), [u1.id, u3.id].sort(), 'other members stay');
  assert.deepEqual((await c.fetch(`/Users/${u2.id}`)).groups, [], 'u2 no longer lists the group');

  // full push: replace with a list
  const m4 = await c.patchOps(`/Groups/${gid}`, [{ op: 'replace', path: 'members', value: [{ value: u2.id }, { value: u3.id }] }]);
  assert.equal(m4.status, 200, m4.body);
  assert.deepEqual(await c.memberIds(gid), [u2.id, u3.id].sort());

  // replace with []
  const m5 = await c.patchOps(`/Groups/${gid}`, [{ op: 'replace', path: 'members', value: [] }]);
  assert.equal(m5.status, 200, m5.body);
  assert.deepEqual(await c.memberIds(gid), []);
  assert.equal((await c.fetch(`/Groups/${gid}`)).displayName, 'Test SCIMv2 renamed', 'name untouched');

  // path-less replace with members [] plus id and displayName
  await c.patchOps(`/Groups/${gid}`, [{ op: 'add', path: 'members', value: [{ value: u1.id }, { value: u2.id }] }]);
  assert.deepEqual(await c.memberIds(gid), [u1.id, u2.id].sort());
  const m6 = await c.patchOps(`/Groups/${gid}`, [{ op: 'replace', value: { members: [], id: gid, displayName: 'Test SCIMv2' } }]);
  assert.equal(m6.status, 200, m6.body);
  const after6 = await c.fetch(`/Groups/${gid}`);
  assert.deepEqual(after6.members ?? [], []);
  assert.equal(after6.displayName, 'Test SCIMv2');
  assert.equal(after6.id, gid, 'the id inside value is ignored');

  // wizard apps: PUT displayName + members
  const put = await c.put(`/Groups/${gid}`, { schemas: [URN.GROUP], id: gid, displayName: 'Wizard Group',
    members: [{ value: u3.id }, { value: u1.id }] });
  assert.equal(put.status, 200, put.body);
  assert.equal(put.json.displayName, 'Wizard Group');
  assert.deepEqual(await c.memberIds(gid), [u1.id, u3.id].sort());
  const put2 = await c.put(`/Groups/${gid}`, { schemas: [URN.GROUP], displayName: 'Wizard Group', members: [{ value: u2.id }] });
  assert.equal(put2.status, 200, put2.body);
  assert.deepEqual(await c.memberIds(gid), [u2.id], 'PUT replaces the whole member list');

  // unlink: DELETE → 204, then 404; users no longer list it
  const gd0 = await scimEvent(gw.port, 'group_deleted');
  const del = await c.del(`/Groups/${gid}`);
  assert.equal(del.status, 204, del.body);
  assert.equal(del.body, '');
  assertScimError(await c.get(`/Groups/${gid}`), 404);
  assert.deepEqual((await c.fetch(`/Users/${u2.id}`)).groups, []);
  assert.equal(await scimEvent(gw.port, 'group_deleted'), gd0 + 1);
  assertListResponse(await c.get('/Groups?' + qFilter(`members[value eq "${u2.id}"]`)), { total: 0 });
});

test('404 with a SCIM error body for unknown ids; DELETE of a user (other IdPs) → 204 then 404', async () => {
  const ghost = '00000000-0000-4000-8000-000000000000';
  assertScimError(await c.get(`/Users/${ghost}`), 404);
  assertScimError(await c.get(`/Groups/${ghost}`), 404);
  assertScimError(await c.put(`/Users/${ghost}`, oktaUser('ghost@okta.local')), 404);
  assertScimError(await c.patchOps(`/Users/${ghost}`, [{ op: 'replace', value: { active: false } }]), 404);
  assertScimError(await c.del(`/Users/${ghost}`), 404);
  assertScimError(await c.del(`/Groups/${ghost}`), 404);
  assertListResponse(await c.get('/Users?' + qFilter('userName eq "ghost@okta.local"')), { total: 0 });

  const u = await c.createUser('tobedeleted@okta.local');
  const grp = await c.createGroup('del-grp', [u.id, testUser.id]);
  const dl0 = await scimEvent(gw.port, 'user_deleted');
  const dd0 = await scimEvent(gw.port, 'user_deactivated');
  const r = await c.del(`/Users/${u.id}`);
  assert.equal(r.status, 204, r.body);
  assertScimError(await c.get(`/Users/${u.id}`), 404);
  assertScimError(await c.del(`/Users/${u.id}`), 404);
  assert.deepEqual(await c.memberIds(grp.id), [testUser.id], 'a deleted user leaves its groups');
  assert.equal(await scimEvent(gw.port, 'user_deleted'), dl0 + 1);
  assert.equal(await scimEvent(gw.port, 'user_deactivated'), dd0 + 1, 'DELETE of an active user revokes like a deactivation');
  // the userName is free again
  const again = await c.createUser('tobedeleted@okta.local');
  assert.notEqual(again.id, u.id);
  assert.equal((await c.del(`/Groups/${grp.id}`)).status, 204);
});

test('pagination over 250 users: pages of 100, integer totals, stable order, no duplicates, no gaps', async () => {
  const t = await createTenant(gw.port, opToken, 'pages');
  pagesTokenValue = t.scim.token;
  const p = scimClient(gw.port, 'pages', t.scim.token);
  const ids = new Set();
  const names = Array.from({ length: 250 }, (_, i) => `page.user.${String(i).padStart(3, '0')}@okta.local`);
  let next = 0;
  await Promise.all(Array.from({ length: 16 }, async () => {
    while (next < names.length) {
      const n = names[next++];
      const r = await p.post('/Users', oktaUser(n));
      assert.equal(r.status, 201, `${n}: ${r.body}`);
      assert.ok(!ids.has(r.json.id), 'fresh id');
      ids.add(r.json.id);
    }
  }));
  assert.equal(ids.size, 250);

  const steps = async () => {
    const m = await scrape(gw.port);
    return { steps: metricValue(m, 'mcpgate_scim_list_steps_total'),
      hit: metricValue(m, 'mcpgate_scim_list_checkpoints_total', { result: 'hit' }),
      miss: metricValue(m, 'mcpgate_scim_list_checkpoints_total', { result: 'miss' }) };
  };
  const before = await steps();
  const seen = [];
  let start = 1;
  const sizes = [];
  while (start <= 250) {
    const l = assertListResponse(await p.get(`/Users?startIndex=${start}&count=100`), { total: 250, startIndex: start });
    sizes.push(l.itemsPerPage);
    for (const r of l.Resources) {
      seen.push(r.id);
      assert.equal(r.password, undefined);
    }
    start += 100;
  }
  assert.deepEqual(sizes, [100, 100, 50]);
  assert.equal(seen.length, 250);
  assert.equal(new Set(seen).size, 250, 'no duplicates across pages');
  for (const id of ids) assert.ok(seen.includes(id), `id ${id} seen`);
  assert.deepEqual(seen, [...seen].sort(), 'ordered by id across pages');
  // each page began where the last one ended (a list checkpoint): ~250
  // resources walked for the import, not 100 + 200 + 250
  const after = await steps();
  assert.equal(after.hit - before.hit, 2, 'pages 101 and 201 began at checkpoints');
  assert.equal(after.miss - before.miss, 0);
  assert.ok(after.steps - before.steps <= 250 + 2, `resources walked: ${after.steps - before.steps}`);

  // the same walk again yields the same order
  const again = [];
  for (const s of [1, 101, 201]) again.push(...(await p.fetch(`/Users?startIndex=${s}&count=100`)).Resources.map((r) => r.id));
  assert.deepEqual(again, seen, 'stable order');

  // count defaults to 100; odd page boundaries; past the end
  assertListResponse(await p.get('/Users'), { total: 250, itemsPerPage: 100, startIndex: 1 });
  const odd = assertListResponse(await p.get('/Users?startIndex=37&count=7'), { total: 250, itemsPerPage: 7, startIndex: 37 });
  assert.deepEqual(odd.Resources.map((r) => r.id), seen.slice(36, 43));
  assertListResponse(await p.get('/Users?startIndex=251&count=100'), { total: 250, itemsPerPage: 0 });
  assertListResponse(await p.get('/Users?startIndex=1&count=0'), { total: 250, itemsPerPage: 0 });
  // filtered lists page too
  const fl = assertListResponse(await p.get('/Users?' + qFilter('userName sw "page.user.1"') + '&startIndex=1&count=30'),
    { total: 100, itemsPerPage: 30 });
  assert.ok(fl.Resources.every((r) => r.userName.startsWith('page.user.1')));

  // a user created between two pages of an import: the next page is the new
  // snapshot's (never the old checkpoint's), and paging on lists every user
  // of it exactly once from there; deleting it again, likewise
  for (const write of ['create', 'delete']) {
    const first = (await p.fetch('/Users?startIndex=1&count=100')).Resources.map((r) => r.id);
    let extra;
    if (write === 'create') {
      const r = await p.post('/Users', oktaUser('page.between@okta.local'));
      assert.equal(r.status, 201, r.body);
      extra = r.json.id;
    } else {
      extra = (await p.fetch('/Users?' + qFilter('userName eq "page.between@okta.local"'))).Resources[0].id;
      assert.equal((await p.del(`/Users/${extra}`)).status, 204);
    }
    const fresh = (await p.fetch('/Users?startIndex=1&count=1000')).Resources.map((r) => r.id);
    assert.equal(fresh.length, write === 'create' ? 251 : 250);
    assert.equal(fresh.includes(extra), write === 'create');
    const m0 = await steps();
    const rest = [];
    for (let s2 = 101; s2 <= fresh.length; s2 += 100) {
      const l = assertListResponse(await p.get(`/Users?startIndex=${s2}&count=100`), { total: fresh.length, startIndex: s2 });
      rest.push(...l.Resources.map((r) => r.id));
    }
    assert.deepEqual(rest, fresh.slice(100), `${write}: the pages after the write are the new snapshot's`);
    const m1 = await steps();
    assert.equal(m1.miss - m0.miss, 1, `${write}: the old checkpoint was not used`);
    assert.equal(m1.hit - m0.hit, rest.length > 100 ? 1 : 0, `${write}: paging on finds its checkpoints again`);
    assert.equal(first.length, 100);
  }
  assertListResponse(await p.get('/Users'), { total: 250 });
});

test('Group Push of a big group: 250 members in one PATCH, listed in full, removable one by one', async () => {
  assert.ok(pagesTokenValue, 'the pagination test ran first');
  const p = scimClient(gw.port, 'pages', pagesTokenValue);
  const users = [];
  for (const s of [1, 101, 201]) users.push(...(await p.fetch(`/Users?startIndex=${s}&count=100`)).Resources);
  assert.equal(users.length, 250);
  const grp = await p.createGroup('Everyone');
  const r = await p.patchOps(`/Groups/${grp.id}`, [{ op: 'add', path: 'members',
    value: users.map((u) => ({ value: u.id, display: u.userName })) }]);
  assert.equal(r.status, 200, r.body.slice(0, 300));
  const g = await p.fetch(`/Groups/${grp.id}`);
  assert.equal(g.members.length, 250);
  assert.deepEqual(g.members.map((m) => m.value).sort(), users.map((u) => u.id).sort());
  for (const m of g.members) assert.equal(m.display, users.find((u) => u.id === m.value).userName);
  const victim = users[123];
  assert.equal((await p.patchOps(`/Groups/${grp.id}`, [{ op: 'remove', path: `members[value eq "${victim.id}"]` }])).status, 200);
  const ids = await p.memberIds(grp.id);
  assert.equal(ids.length, 249);
  assert.ok(!ids.includes(victim.id));
  assertListResponse(await p.get('/Groups?' + qFilter(`members[value eq "${users[0].id}"]`)), { total: 1 });
  assertListResponse(await p.get('/Groups?' + qFilter(`members[value eq "${victim.id}"]`)), { total: 0 });
});

test('profile changes keep lookups right: userName and externalId changes, group renames, quotes, long names', async () => {
  const u = await c.createUser('rename.me@okta.local', { externalId: 'ext-old' });
  let r = await c.patchOps(`/Users/${u.id}`, [{ op: 'replace', path: 'userName', value: 'Renamed.Me@okta.local' }]);
  assert.equal(r.status, 200, r.body);
  assertListResponse(await c.get('/Users?' + qFilter('userName eq "rename.me@okta.local"')), { total: 0 });
  assert.equal((await c.fetch('/Users?' + qFilter('userName eq "renamed.me@okta.local"'))).Resources[0].id, u.id);
  assertScimError(await c.post('/Users', oktaUser('RENAMED.ME@okta.local')), 409, { scimType: 'uniqueness' });
  const freed = await c.createUser('rename.me@okta.local');            // the old name is free again
  // renaming onto a taken name (any case) → 409, nothing changed
  r = await c.patchOps(`/Users/${freed.id}`, [{ op: 'replace', value: { userName: 'renamed.ME@okta.local', title: 'x' } }]);
  assertScimError(r, 409, { scimType: 'uniqueness' });
  assert.equal((await c.fetch(`/Users/${freed.id}`)).title, undefined);
  const putDup = await c.put(`/Users/${freed.id}`, { schemas: [URN.USER], userName: 'Renamed.Me@OKTA.local' });
  assertScimError(putDup, 409, { scimType: 'uniqueness' });
  // a case-only change of one's own userName is fine
  r = await c.put(`/Users/${u.id}`, { schemas: [URN.USER], userName: 'RENAMED.ME@okta.local', externalId: 'ext-new' });
  assert.equal(r.status, 200, r.body);
  assert.equal(r.json.userName, 'RENAMED.ME@okta.local');
  assertListResponse(await c.get('/Users?' + qFilter('externalId eq "ext-old"')), { total: 0 });
  assert.equal((await c.fetch('/Users?' + qFilter('externalId eq "ext-new"'))).Resources[0].id, u.id);

  const grp = await c.createGroup('Old Name');
  assert.equal((await c.patchOps(`/Groups/${grp.id}`, [{ op: 'replace', value: { id: grp.id, displayName: 'New Name' } }])).status, 200);
  assertListResponse(await c.get('/Groups?' + qFilter('displayName eq "Old Name"')), { total: 0 });
  assertListResponse(await c.get('/Groups?' + qFilter('displayName eq "new name"')), { total: 1 });

  // quotes and backslashes in values, escaped in filters
  const q = await c.createUser('o\'brien"q\\x@okta.local');
  const fq = assertListResponse(await c.get('/Users?' + qFilter('userName eq "o\'brien\\"q\\\\x@okta.local"')), { total: 1 });
  assert.equal(fq.Resources[0].id, q.id);

  // very long userNames (past the index key limit) stay unique case-insensitively
  const long = 'Long.' + 'x'.repeat(900) + '@okta.local';
  const lu = await c.createUser(long);
  assertScimError(await c.post('/Users', oktaUser(long.toUpperCase())), 409, { scimType: 'uniqueness' });
  assert.equal((await c.fetch('/Users?' + qFilter(`userName eq "${long.toLowerCase()}"`))).Resources[0].id, lu.id);
  const long2 = long.replace('Long.', 'Lonh.');
  assertListResponse(await c.get('/Users?' + qFilter(`userName eq "${long2}"`)), { total: 0 });
  await c.createUser(long2);
  for (const x of [u, freed, q, lu]) assert.equal((await c.del(`/Users/${x.id}`)).status, 204);
  assert.equal((await c.del(`/Groups/${grp.id}`)).status, 204);
});

test('concurrent writes: racing creates of one userName yield one 201; parallel member adds all land', async () => {
  const tries = await Promise.all(Array.from({ length: 20 }, (_, i) =>
    c.post('/Users', oktaUser(i % 2 ? 'RACE@okta.local' : 'race@okta.local'))));
  const statuses = tries.map((r) => r.status).sort();
  assert.equal(statuses.filter((s) => s === 201).length, 1, `one winner: ${statuses}`);
  assert.equal(statuses.filter((s) => s === 409).length, 19, `the rest 409: ${statuses}`);
  for (const r of tries) if (r.status === 409) assertScimError(r, 409, { scimType: 'uniqueness' });
  assertListResponse(await c.get('/Users?' + qFilter('userName eq "race@okta.local"')), { total: 1 });

  const us = await Promise.all(Array.from({ length: 20 }, (_, i) => c.createUser(`par${i}@okta.local`)));
  const grp = await c.createGroup('Parallel');
  const adds = await Promise.all(us.map((u) =>
    c.patchOps(`/Groups/${grp.id}`, [{ op: 'add', path: 'members', value: [{ value: u.id }] }])));
  for (const r of adds) assert.equal(r.status, 200, r.body);
  assert.deepEqual(await c.memberIds(grp.id), us.map((u) => u.id).sort(), 'no lost update');
  const versions = new Set(adds.map((r) => r.headers.etag));
  assert.equal(versions.size, 20, 'each write got its own version');
  // parallel removes of half of them
  await Promise.all(us.slice(0, 10).map((u) =>
    c.patchOps(`/Groups/${grp.id}`, [{ op: 'remove', path: `members[value eq "${u.id}"]` }])));
  assert.deepEqual(await c.memberIds(grp.id), us.slice(10).map((u) => u.id).sort());
});

test('two tenants are isolated: same userName allowed; ids of one are 404 from the other; tokens not interchangeable', async () => {
  const t = await createTenant(gw.port, opToken, 'beta');
  const b = scimClient(gw.port, 'beta', t.scim.token);

  const ub = await b.post('/Users', oktaUser(OKTA_USER));
  assert.equal(ub.status, 201, `same userName in another tenant: ${ub.body}`);
  assert.notEqual(ub.json.id, testUser.id);
  assert.equal(ub.json.meta.location, `${PUBLIC_URL}/t/beta/scim/v2/Users/${ub.json.id}`);

  const ga = await c.createGroup('acme-only', [testUser.id]);
  // taken after the group: joining it is a change of the user (groups, meta.version)
  const aBefore = await c.fetch(`/Users/${testUser.id}`);

  assertScimError(await b.get(`/Users/${testUser.id}`), 404);
  assertScimError(await b.patchOps(`/Users/${testUser.id}`, [{ op: 'replace', value: { active: false } }]), 404);
  assertScimError(await b.put(`/Users/${testUser.id}`, oktaUser('hijack@okta.local')), 404);
  assertScimError(await b.del(`/Users/${testUser.id}`), 404);
  assertScimError(await b.get(`/Groups/${ga.id}`), 404);
  assertScimError(await b.patchOps(`/Groups/${ga.id}`, [{ op: 'replace', path: 'members', value: [] }]), 404);
  assertScimError(await b.del(`/Groups/${ga.id}`), 404);
  // a beta group cannot reference an acme user
  assertScimError(await b.post('/Groups', { schemas: [URN.GROUP], displayName: 'x', members: [{ value: testUser.id }] }),
    400, { scimType: 'invalidValue' });

  const bl = assertListResponse(await b.get('/Users?startIndex=1&count=100'), { total: 1 });
  assert.equal(bl.Resources[0].id, ub.json.id);
  assertListResponse(await b.get('/Groups'), { total: 0 });
  assertListResponse(await b.get('/Users?' + qFilter(`id eq "${testUser.id}"`)), { total: 0 });
  assertListResponse(await b.get('/Groups?' + qFilter(`members[value eq "${testUser.id}"]`)), { total: 0 });

  // tokens are per tenant
  assertScimError(await scimCall(gw.port, 'beta', acme.token, 'GET', '/Users'), 401);
  assertScimError(await scimCall(gw.port, 'acme', t.scim.token, 'GET', `/Users/${testUser.id}`), 401);
  assertScimError(await scimCall(gw.port, 'beta', acme.token, 'DELETE', `/Users/${ub.json.id}`), 401);
  assert.equal((await b.get(`/Users/${ub.json.id}`)).status, 200, 'beta user survives');

  const aAfter = await c.fetch(`/Users/${testUser.id}`);
  assert.deepEqual(aAfter, aBefore, 'acme user untouched (groups and meta.version included)');
  assert.deepEqual(await c.memberIds(ga.id), [testUser.id]);
  // externalIds are unique per tenant: beta may hold acme's
  const ext = await b.post('/Users', oktaUser('ext.twin@okta.local', { externalId: aAfter.externalId }));
  assert.equal(ext.status, 201, `acme's externalId in beta: ${ext.body}`);
});
