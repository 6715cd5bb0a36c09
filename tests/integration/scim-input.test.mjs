// ci-variants: build-w1 build-asan-w2 (one loop plain, two loops under ASan; the plain two-loop run only repeated it — CI's 15 minutes)
// SCIM 2.0 bad input and the rest of the surface: malformed JSON, duplicate
// keys, wrong types, unknown member ids, oversized bodies, content types,
// invalid filters (the server stays up and stored data stays intact after
// each), discovery, admin views, metrics and the purge of a deleted tenant.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { rawHttp, request, metricValue, waitFor } from './lib/gateway.mjs';
import { api, adminClient, assertJsonError, createTenant, recreateAfterPurge } from './lib/admin.mjs';
import {
  startScimGateway, scimClient, scimCall, assertScimError, assertListResponse, assertScimContentType,
  assertHealthy, oktaUser, qFilter, scrape, scimEvent, URN, PUBLIC_URL,
} from './lib/scim.mjs';

let gw, opToken, acme, c, op;
let keeper, keeperGroup, snapshot;
// while this file exists the store writer runs no job (a test hook)
const WRITER_PAUSE = path.join(os.tmpdir(), `mcpgate-scim-input-writer-pause-${process.pid}-${Date.now()}`);

before(async () => {
  ({ gw, opToken, tenants: { acme } } = await startScimGateway({ tenants: ['acme'], args: ['--scim-max-body', '4K'], env: { MCPGATE_TEST_WRITER_PAUSE_FILE: WRITER_PAUSE } }));
  c = acme.c;
  op = adminClient(gw.port, opToken);
  keeper = await c.createUser('keeper@input.test', {
    ...oktaUser('keeper@input.test', { externalId: 'ext-keeper' }),
    [URN.ENT]: { employeeNumber: '7', manager: { value: 'boss' } },
    nickName: 'keep',
  });
  keeperGroup = await c.createGroup('Keepers', [keeper.id]);
  snapshot = { user: await c.fetch(`/Users/${keeper.id}`), group: await c.fetch(`/Groups/${keeperGroup.id}`) };
});

/** The server is up and the stored user and group are exactly as before. */
async function assertIntact(what) {
  await assertHealthy(gw.port);
  assert.deepEqual(await c.fetch(`/Users/${keeper.id}`), snapshot.user, `user unchanged after ${what}`);
  assert.deepEqual(await c.fetch(`/Groups/${keeperGroup.id}`), snapshot.group, `group unchanged after ${what}`);
}

/** Number of users and groups in acme. */
async function counts() {
  return {
    users: (await c.fetch('/Users?count=0')).totalResults,
    groups: (await c.fetch('/Groups?count=0')).totalResults,
  };
}

/** Every write target for a body: create user/group, replace, patch the keeper. */
const writeTargets = () => [
  ['POST', '/Users'], ['POST', '/Groups'],
  ['PUT', `/Users/${keeper.id}`], ['PUT', `/Groups/${keeperGroup.id}`],
  ['PATCH', `/Users/${keeper.id}`], ['PATCH', `/Groups/${keeperGroup.id}`],
];

test('invalid JSON → 400 invalidSyntax on every write', async () => {
  const n0 = await counts();
  const bodies = ['{', '{"userName":}', '', '{"userName":"a"} trailing', "{'userName':'a'}", '{"userName":"a",}',
    Buffer.from('{"userName":"\xff\xfe"}', 'latin1'), '{"userName":"a\\u0000b"}', 'nul', '{"a":1}{"b":2}'];
  for (const [m, p] of writeTargets()) {
    for (const b of bodies) {
      const r = await c.call(m, p, b);
      assertScimError(r, 400, { scimType: 'invalidSyntax' });
    }
  }
  assert.deepEqual(await counts(), n0, 'nothing created');
  await assertIntact('invalid JSON');
});

test('duplicate keys (top level and nested) → 400 invalidSyntax', async () => {
  const bodies = [
    '{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"dup1@input.test","userName":"dup2@input.test"}',
    '{"userName":"dup3@input.test","name":{"givenName":"a","givenName":"b"}}',
    '{"userName":"dup4@input.test","active":true,"active":false}',
    '{"displayName":"g","displayName":"h"}',
    `{"schemas":["${URN.PATCH}"],"Operations":[{"op":"replace","op":"remove","path":"nickName","value":"x"}]}`,
    `{"schemas":["${URN.PATCH}"],"Operations":[],"Operations":[{"op":"replace","value":{"active":false}}]}`,
  ];
  const n0 = await counts();
  for (const [m, p] of writeTargets()) {
    for (const b of bodies) assertScimError(await c.call(m, p, b), 400, { scimType: 'invalidSyntax' });
  }
  assert.deepEqual(await counts(), n0, 'nothing created');
  for (const n of ['dup1', 'dup2', 'dup3', 'dup4']) {
    assertListResponse(await c.get('/Users?' + qFilter(`userName eq "${n}@input.test"`)), { total: 0 });
  }
  await assertIntact('duplicate keys');
});

// Found by review: SCIM attribute names are case-insensitive, so
// {"active":false,"Active":true} names "active" twice — which the strict
// JSON parse cannot see. The last spelling won: a deactivation body
// carrying both left the user active (200), and which of two values a
// PATCH operation used depended on the reader. Before the fix these
// bodies were taken (200/201), the user staying active.
test('one attribute named twice in two spellings → 400 invalidSyntax, nothing applied', async () => {
  const n0 = await counts();
  const U = `/Users/${keeper.id}`, G = `/Groups/${keeperGroup.id}`;
  const cases = [
    ['POST', '/Users', { schemas: [URN.USER], userName: 'cd1@input.test', active: false, Active: true }],
    ['POST', '/Users', { schemas: [URN.USER], userName: 'cd2@input.test', name: { givenName: 'a', GivenName: 'b' } }],
    ['POST', '/Users', { schemas: [URN.USER], userName: 'cd3@input.test', [URN.ENT]: { employeeNumber: '1', EmployeeNumber: '2' } }],
    ['PUT', U, { schemas: [URN.USER], userName: 'keeper@input.test', active: false, ACTIVE: true }],
    ['PUT', U, { schemas: [URN.USER], userName: 'keeper@input.test', active: false, [URN.USER]: { active: true } }],
    ['PUT', U, { schemas: [URN.USER], userName: 'keeper@input.test', userName2: 'x', USERNAME: 'other@input.test' }],
    ['PATCH', U, { schemas: [URN.PATCH], Operations: [{ op: 'replace', value: { active: false, Active: true } }] }],
    ['PATCH', U, { schemas: [URN.PATCH], Operations: [{ op: 'replace', value: { active: false, [`${URN.USER}:active`]: true } }] }],
    ['PATCH', U, { schemas: [URN.PATCH], Operations: [{ op: 'replace', OP: 'remove', path: 'nickName', value: 'x' }] }],
    ['PATCH', U, { schemas: [URN.PATCH], Operations: [{ op: 'replace', path: 'name', value: { givenName: 'a', GIVENNAME: 'b' } }] }],
    ['PATCH', U, { schemas: [URN.PATCH], operations: [], Operations: [{ op: 'replace', value: { active: false } }] }],
    ['POST', '/Groups', { schemas: [URN.GROUP], displayName: 'cdg', DisplayName: 'cdh' }],
    ['PUT', G, { schemas: [URN.GROUP], displayName: 'Keepers', DISPLAYNAME: 'Other', members: [{ value: keeper.id }] }],
    ['PATCH', G, { schemas: [URN.PATCH], Operations: [{ op: 'replace', value: { displayName: 'x', displayname: 'y' } }] }],
  ];
  for (const [m, p, b] of cases) {
    assertScimError(await c.call(m, p, b), 400, { scimType: 'invalidSyntax', detail: /twice/ });
  }
  assert.deepEqual(await counts(), n0, 'nothing created');
  await assertIntact('attributes named twice');
  // one spelling, whatever its case, is fine
  const ok = await c.post('/Users', { schemas: [URN.USER], USERNAME: 'cd4@input.test', Active: false, Name: { GivenName: 'x' } });
  assert.equal(ok.status, 201, ok.body);
  assert.equal(ok.json.active, false);
  assert.equal((await c.del(`/Users/${ok.json.id}`)).status, 204);
});

// Found by tests/fuzz/fuzz_scim_resource.c: an extension object inside the
// core URN's object was kept beside the core attributes but its URN was left
// out of schemas, so a PUT of what the POST returned answered another
// resource (with the URN in schemas).
test('an extension inside the core URN object is listed in schemas; a PUT of what POST returned changes nothing', async () => {
  const X = 'urn:example:params:scim:schemas:extension:acme:2.0:User';
  const r = await c.post('/Users', {
    schemas: [URN.USER], userName: 'nested-ext@input.test',
    [URN.USER]: { displayName: 'Nested', [X]: { team: 'R&D' } },
  });
  assert.equal(r.status, 201, r.body);
  assert.deepEqual(r.json[X], { team: 'R&D' }, r.body);
  assert.equal(r.json.displayName, 'Nested');
  assert.ok(r.json.schemas.includes(X), `the extension's URN is in schemas: ${r.body}`);
  const put = await c.put(`/Users/${r.json.id}`, r.json);
  assert.equal(put.status, 200, put.body);
  const strip = ({ meta, ...rest }) => rest;
  assert.deepEqual(strip(put.json), strip(r.json), 'PUT of the rendered resource renders the same');
  assert.equal((await c.del(`/Users/${r.json.id}`)).status, 204);
  // the same extension inside and beside the core object: named twice
  const both = await c.post('/Users', {
    schemas: [URN.USER], userName: 'nested-ext2@input.test',
    [URN.USER]: { [X]: { team: 'a' } }, [X.toUpperCase().replace('URN:', 'urn:')]: { team: 'b' },
  });
  assertScimError(both, 400, { scimType: 'invalidSyntax', detail: /twice/ });
});

test('non-object bodies → 400 invalidSyntax', async () => {
  for (const [m, p] of writeTargets()) {
    for (const b of ['[]', '[{"userName":"arr@input.test"}]', '"x"', '5', 'null', 'true']) {
      const r = await c.call(m, p, b);
      assertScimError(r, 400, { scimType: 'invalidSyntax' });
    }
  }
  assertListResponse(await c.get('/Users?' + qFilter('userName eq "arr@input.test"')), { total: 0 });
  await assertIntact('non-object bodies');
});

test('wrong types and missing required attributes → 400 invalidValue', async () => {
  const n0 = await counts();
  const users = [
    { userName: 'wt@input.test', active: 3 },
    { userName: 'wt@input.test', active: 'maybe' },
    { userName: 5 },
    { userName: ['wt@input.test'] },
    { userName: { v: 'wt@input.test' } },
    { userName: 'wt@input.test', emails: 'x' },
    { userName: 'wt@input.test', emails: ['x'] },
    { userName: 'wt@input.test', name: 'x' },
    {},
    { schemas: [URN.USER], name: { givenName: 'No', familyName: 'Name' } },
    { userName: '' },
    { userName: null },
  ];
  for (const u of users) {
    const r = await c.post('/Users', u);
    assert.equal(r.status, 400, `POST ${JSON.stringify(u)}: ${r.body}`);
    assertScimError(r, 400, { scimType: 'invalidValue' });
    const p = await c.put(`/Users/${keeper.id}`, u);
    assert.equal(p.status, 400, `PUT ${JSON.stringify(u)}: ${p.body}`);
    assertScimError(p, 400, { scimType: 'invalidValue' });
  }
  const groups = [{ displayName: 5 }, {}, { displayName: '' }, { displayName: 'g', members: 'x' },
    { displayName: 'g', members: [5] }, { displayName: 'g', members: [{ value: 5 }] }, { displayName: 'g', members: [{}] }];
  for (const g of groups) {
    assertScimError(await c.post('/Groups', g), 400, { scimType: 'invalidValue' });
    assertScimError(await c.put(`/Groups/${keeperGroup.id}`, g), 400, { scimType: 'invalidValue' });
  }
  // PATCH values of the wrong type
  for (const ops of [[{ op: 'replace', path: 'active', value: 3 }], [{ op: 'replace', value: { active: 'nope' } }],
    [{ op: 'replace', path: 'userName', value: 5 }], [{ op: 'replace', value: { emails: 'x' } }]]) {
    assertScimError(await c.patchOps(`/Users/${keeper.id}`, ops), 400, { scimType: 'invalidValue' });
  }
  assert.deepEqual(await counts(), n0, 'nothing created');
  assertListResponse(await c.get('/Users?' + qFilter('userName eq "wt@input.test"')), { total: 0 });
  await assertIntact('wrong types');
});

test('malformed PATCH requests → 400 and nothing applied', async () => {
  const u = `/Users/${keeper.id}`;
  const bad = [
    { Operations: [{ op: 'replace', value: { nickName: 'x' } }] },                        // no schemas
    { schemas: [URN.USER], Operations: [{ op: 'replace', value: { nickName: 'x' } }] },    // wrong schema
    { schemas: [URN.PATCH] },                                                             // no Operations
    { schemas: [URN.PATCH], Operations: { op: 'replace', value: { nickName: 'x' } } },     // not an array
    { schemas: [URN.PATCH], Operations: [5] },
    { schemas: [URN.PATCH], Operations: [{ path: 'nickName', value: 'x' }] },              // no op
    { schemas: [URN.PATCH], Operations: [{ op: 'move', path: 'nickName', value: 'x' }] },
    { schemas: [URN.PATCH], Operations: [{ op: 'replace', path: 'nickName' }] },           // no value
    { schemas: [URN.PATCH], Operations: [{ op: 'replace', value: 'x' }] },                 // path-less non-object
    { schemas: [URN.PATCH], Operations: [{ op: 'replace', path: 'emails[type eq "work"', value: 'x' }] },
    { schemas: [URN.PATCH], Operations: [{ op: 'remove', path: 'members[value eq' }] },
  ];
  for (const b of bad) {
    const r = await c.patch(u, b);
    assertScimError(r, 400);
    const r2 = await c.patch(`/Groups/${keeperGroup.id}`, b);
    assertScimError(r2, 400);
  }
  await assertIntact('malformed PATCH');
});

test('unknown member ids → 400 invalidValue and nothing created or changed', async () => {
  const ghost = '00000000-0000-4000-8000-00000000beef';
  const n0 = await counts();
  for (const members of [[{ value: ghost }], [{ value: keeper.id }, { value: ghost }], [{ value: 'not-a-uuid' }],
    [{ value: keeperGroup.id }]]) {
    const r = await c.post('/Groups', { schemas: [URN.GROUP], displayName: 'Bad Members', members });
    assertScimError(r, 400, { scimType: 'invalidValue' });
    const p = await c.put(`/Groups/${keeperGroup.id}`, { schemas: [URN.GROUP], displayName: 'Bad Members', members });
    assertScimError(p, 400, { scimType: 'invalidValue' });
    for (const op of ['add', 'replace']) {
      assertScimError(await c.patchOps(`/Groups/${keeperGroup.id}`, [{ op, path: 'members', value: members }]), 400,
        { scimType: 'invalidValue' });
    }
  }
  assert.deepEqual(await counts(), n0, 'no group created');
  assertListResponse(await c.get('/Groups?' + qFilter('displayName eq "Bad Members"')), { total: 0 });
  assert.deepEqual(await counts(), n0);
  await assertIntact('unknown member ids');
});

test('bodies over --scim-max-body 4K → 413 SCIM error (Content-Length or chunked); a body under it works', async () => {
  const n0 = await counts();
  const big = (n) => ({ schemas: [URN.USER], userName: `big${n}@input.test`, nickName: 'x'.repeat(n) });
  for (const n of [5000, 64 * 1024, 3 * 1024 * 1024]) {
    for (const [m, p] of writeTargets()) {
      const r = await c.call(m, p, big(n));
      assert.equal(r.status, 413, `${m} ${p} with ${n} bytes: ${r.status} ${r.body.slice(0, 200)}`);
      assertScimError(r, 413);
    }
  }
  // chunked, no Content-Length
  const body = JSON.stringify(big(8000));
  const rr = await rawHttp(gw.port, [
    `POST /t/acme/scim/v2/Users HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${acme.token}\r\n` +
    'Content-Type: application/scim+json\r\nTransfer-Encoding: chunked\r\n\r\n',
    `${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`], { responses: 1, timeoutMs: 5000 });
  assert.equal(rr.responses[0]?.status, 413, `chunked: ${rr.data.slice(0, 300)}`);
  let rj;
  try { rj = JSON.parse(rr.responses[0].body); } catch { rj = undefined; }
  assertScimError({ status: 413, headers: rr.responses[0].headers, body: rr.responses[0].body, json: rj }, 413);

  assert.deepEqual(await counts(), n0, 'nothing created');
  await assertIntact('oversized bodies');
  const ok = await c.post('/Users', big(3000));
  assert.equal(ok.status, 201, `3 KB body: ${ok.body.slice(0, 200)}`);
  assert.equal((await c.del(`/Users/${ok.json.id}`)).status, 204);
});

test('content types: scim+json and json (any charset, any case) accepted; others → 415', async () => {
  const accepted = ['application/scim+json', 'application/scim+json; charset=utf-8', 'application/json',
    'application/json; charset=UTF-8', 'application/json;charset=utf-8', 'Application/SCIM+JSON'];
  let i = 0;
  for (const ct of accepted) {
    const r = await c.post('/Users', { schemas: [URN.USER], userName: `ct${i++}@input.test` }, { contentType: ct });
    assert.equal(r.status, 201, `${ct}: ${r.body}`);
    assertScimContentType(r);
    const p = await c.patchOps(`/Users/${r.json.id}`, [{ op: 'replace', path: 'nickName', value: 'n' }], { contentType: ct });
    assert.equal(p.status, 200, `PATCH ${ct}: ${p.body}`);
    assert.equal((await c.del(`/Users/${r.json.id}`)).status, 204);
  }
  const n0 = await counts();
  const refused = ['text/plain', 'application/xml', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x',
    'application/jsonx', 'text/json', 'application/scim', 'application/merge-patch+json'];
  for (const ct of refused) {
    for (const [m, p] of writeTargets()) {
      const body = m === 'PATCH'
        ? { schemas: [URN.PATCH], Operations: [{ op: 'replace', value: { displayName: 'via ' + ct } }] }
        : { schemas: [URN.USER], userName: 'ct-refused@input.test', displayName: 'via ' + ct };
      assertScimError(await c.call(m, p, body, { contentType: ct }), 415);
    }
  }
  // a body without any Content-Type
  for (const [m, p] of writeTargets()) {
    const r = await c.call(m, p, { schemas: [URN.USER], userName: 'ct-none@input.test', displayName: 'x' },
      { headers: { 'content-type': undefined } });
    assertScimError(r, 415);
  }
  assert.deepEqual(await counts(), n0, 'nothing created');
  await assertIntact('unsupported content types');
});

test('invalid filters → 400 invalidFilter with the position; the server stays up', async () => {
  const bad = [
    'userName eq', 'userName xx "a"', '(userName eq "a"', 'userName eq "a")', 'userName eq "unterminated',
    'emails[type eq "work"', 'emails[type eq "work"]]', 'userName eq "a" and', 'and userName eq "a"',
    'not userName eq "a"', 'userName eq a', 'userName pr "x"', 'userName eq "a" or or userName eq "b"',
    '"a" eq userName', 'userName eq "a" userName eq "b"', 'user Name eq "a"',
    'emails[type eq "work"].', 'userName eq "\\q"', '[type eq "x"]', '()', 'userName eq 1.2.3', 'userName eq tru',
    'members[value eq "x"].value.more eq "y"', `${'('.repeat(2000)}userName eq "a"${')'.repeat(2000)}`,
    // RFC 7644 §3.4.2.2: gt/ge/lt/le on booleans (and null) fail with 400, and co/sw/ew take a
    // string; found by review: these answered 200 with nothing selected (a wrong result, no error)
    'active gt true', 'active le false', 'meta.lastModified lt null', 'emails[type eq "work"].primary ge false',
    'userName co 5', 'title sw true', 'displayName ew null',
  ];
  for (const f of bad) {
    for (const res of ['Users', 'Groups']) {
      const r = await c.get(`/${res}?${qFilter(f)}&startIndex=1&count=100`);
      assert.equal(r.status, 400, `${res} filter ${JSON.stringify(f).slice(0, 80)}: ${r.body.slice(0, 200)}`);
      assertScimError(r, 400, { scimType: 'invalidFilter', detail: /position \d+/i });
    }
  }
  await assertIntact('invalid filters');
});

test('unknown endpoints and methods → SCIM errors', async () => {
  assertScimError(await c.get('/Foo'), 404);
  assertScimError(await c.get('/Users/x/y'), 404);
  assertScimError(await c.del('/Users'), 405);
  assertScimError(await c.put('/Groups', { displayName: 'x' }), 405);
  assertScimError(await c.post(`/Users/${keeper.id}`, { userName: 'x@input.test' }), 405);
  assertScimError(await c.post('/Bulk', { schemas: ['urn:ietf:params:scim:api:messages:2.0:BulkRequest'], Operations: [] }), 404);
  assertScimError(await c.get('/Users?startIndex=abc'), 400);
  await assertIntact('unknown endpoints');
});

// Found by review: OPTIONS on /Users (or DELETE on /Users, or any method an
// endpoint does not take) was queued as a job on the store writer every
// tenant's deactivations share, only to be answered 405 there — and without
// the Allow header a 405 must carry (RFC 9110 §15.5.6). They are answered
// on the loop now: with the writer held, they still come back at once.
test('a method an endpoint does not take → 405 with Allow, answered without the store writer', async () => {
  fs.writeFileSync(WRITER_PAUSE, '');
  let write;
  try {
    const o = { done: false };
    write = c.post('/Users', { schemas: [URN.USER], userName: 'behind-the-pause@input.test' }).then((r) => { o.done = true; return r; });
    const cases = [
      ['OPTIONS', '/Users', 'GET, HEAD, POST'],
      ['OPTIONS', `/Users/${keeper.id}`, 'GET, HEAD, PUT, PATCH, DELETE'],
      ['DELETE', '/Users', 'GET, HEAD, POST'],
      ['PUT', '/Groups', 'GET, HEAD, POST', { displayName: 'x' }],
      ['POST', `/Users/${keeper.id}`, 'GET, HEAD, PUT, PATCH, DELETE', { userName: 'x@input.test' }],
      ['GET', '/Users/.search', 'POST'],
      ['PATCH', '/.search', 'POST', { schemas: [URN.PATCH], Operations: [] }],
      ['POST', '/ServiceProviderConfig', 'GET, HEAD', {}],
      ['DELETE', '/Schemas', 'GET, HEAD'],
    ];
    // an unknown endpoint is 404 without the writer too, whatever the method
    cases.push(['DELETE', '/Foo', null], ['OPTIONS', '/Users/x/y', null]);
    const replies = cases.map(([m, p, , body]) => {
      const x = { r: null };
      x.p = c.call(m, p, body).then((r) => { x.r = r; });
      return x;
    });
    // with the writer held, a reply that needed it never comes (before the
    // fix they all waited behind the POST)
    await waitFor(() => replies.every((x) => x.r), { timeoutMs: 20000, what: 'the 405s and 404s while the writer is held' });
    cases.forEach(([m, p, allow], i) => {
      const r = replies[i].r;
      if (!allow) return assertScimError(r, 404);
      assertScimError(r, 405);
      assert.equal(r.headers.allow, allow, `${m} ${p}`);
      assert.match(r.json.detail, new RegExp(`${m} is not supported`));
    });
    // an unauthenticated one is 401 first
    assertScimError(await scimCall(gw.port, 'acme', null, 'OPTIONS', '/Users'), 401);
    assert.equal(o.done, false, 'the writer is held: the POST queued before them still waits');
  } finally {
    fs.rmSync(WRITER_PAUSE, { force: true });
  }
  const w = await write;
  assert.equal(w.status, 201, w.body);
  assert.equal((await c.del(`/Users/${w.json.id}`)).status, 204);
  await assertIntact('methods refused');
});

test('discovery: ServiceProviderConfig, ResourceTypes, Schemas; read-only (405)', async () => {
  const spc = await c.fetch('/ServiceProviderConfig');
  assert.ok(spc.schemas.includes('urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig'));
  assert.equal(spc.patch.supported, true);
  assert.equal(spc.bulk.supported, false);
  assert.equal(spc.filter.supported, true);
  assert.ok(Number.isInteger(spc.filter.maxResults) && spc.filter.maxResults > 0);
  assert.equal(spc.etag.supported, true);
  assert.equal(spc.sort.supported, false);
  assert.equal(spc.changePassword.supported, false);
  assert.ok(Array.isArray(spc.authenticationSchemes) && spc.authenticationSchemes.length > 0);
  for (const s of spc.authenticationSchemes) {
    assert.equal(typeof s.type, 'string');
    assert.equal(typeof s.name, 'string');
    assert.equal(typeof s.description, 'string');
  }

  const rt = assertListResponse(await c.get('/ResourceTypes'), { total: 2 });
  const byId = Object.fromEntries(rt.Resources.map((r) => [r.id, r]));
  assert.deepEqual(Object.keys(byId).sort(), ['Group', 'User']);
  assert.equal(byId.User.endpoint, '/Users');
  assert.equal(byId.User.schema, URN.USER);
  assert.ok(byId.User.schemaExtensions.some((e) => e.schema === URN.ENT && e.required === false));
  assert.equal(byId.Group.endpoint, '/Groups');
  assert.equal(byId.Group.schema, URN.GROUP);
  const rtu = await c.fetch('/ResourceTypes/User');
  assert.equal(rtu.id, 'User');
  assert.equal(rtu.meta.location, `${PUBLIC_URL}/t/acme/scim/v2/ResourceTypes/User`);
  assert.equal((await c.fetch('/ResourceTypes/Group')).id, 'Group');
  assertScimError(await c.get('/ResourceTypes/Nope'), 404);

  const sc = assertListResponse(await c.get('/Schemas'), { total: 3 });
  assert.deepEqual(sc.Resources.map((s) => s.id).sort(), [URN.ENT, URN.GROUP, URN.USER].sort());
  const su = await c.fetch(`/Schemas/${URN.USER}`);
  assert.equal(su.id, URN.USER);
  const un = su.attributes.find((a) => a.name === 'userName');
  assert.equal(un.required, true);
  assert.equal(un.uniqueness, 'server');
  assert.equal(un.caseExact, false);
  const pw = su.attributes.find((a) => a.name === 'password');
  if (pw) assert.equal(pw.returned, 'never', 'password is never returned');
  assert.ok(su.attributes.some((a) => a.name === 'groups' && a.mutability === 'readOnly'));
  const sg = await c.fetch(`/Schemas/${URN.GROUP}`);
  assert.ok(sg.attributes.some((a) => a.name === 'members'));
  const se = await c.fetch(`/Schemas/${URN.ENT}`);
  assert.ok(se.attributes.some((a) => a.name === 'employeeNumber'));
  assertScimError(await c.get('/Schemas/urn:nope'), 404);

  for (const p of ['/ServiceProviderConfig', '/ResourceTypes', '/ResourceTypes/User', '/Schemas', `/Schemas/${URN.USER}`]) {
    for (const m of ['POST', 'PUT', 'PATCH', 'DELETE']) {
      const r = await c.call(m, p, m === 'DELETE' ? undefined : { schemas: [URN.USER] });
      assertScimError(r, 405);
    }
  }
  // discovery needs the token as well
  assertScimError(await scimCall(gw.port, 'acme', null, 'GET', '/ServiceProviderConfig'), 401);
  assert.deepEqual(await c.fetch('/ServiceProviderConfig'), spc, 'unchanged');
});

test('admin views: users (with groups), groups, paging, filters; other tenant admin → 403', async () => {
  const base = '/admin/v1/tenants/acme';
  const l = await op.get(`${base}/users`);
  assert.equal(l.status, 200, l.body);
  assert.deepEqual(l.json.schemas, [URN.LIST]);
  const total = l.json.totalResults;
  assert.ok(Number.isInteger(total) && total >= 1);
  assert.ok(l.json.Resources.some((u) => u.id === keeper.id));
  assert.ok(!l.body.includes('1mz050nq'), 'no password');

  const one = await op.get(`${base}/users/${keeper.id}`);
  assert.equal(one.status, 200, one.body);
  assert.equal(one.json.userName, 'keeper@input.test');
  assert.deepEqual(one.json.groups.map((g) => g.value), [keeperGroup.id]);
  assert.equal(one.json.groups[0].display, 'Keepers');

  const gl = await op.get(`${base}/groups`);
  assert.equal(gl.status, 200, gl.body);
  assert.ok(gl.json.Resources.some((g) => g.id === keeperGroup.id));
  const g1 = await op.get(`${base}/groups/${keeperGroup.id}`);
  assert.equal(g1.status, 200, g1.body);
  assert.equal(g1.json.displayName, 'Keepers');
  assert.deepEqual(g1.json.members.map((m) => m.value), [keeper.id]);
  assert.equal(g1.json.members[0].display, 'keeper@input.test');

  // paging
  for (let i = 0; i < 5; i++) await c.createUser(`adminpage${i}@input.test`);
  const all = (await op.get(`${base}/users?count=1000`)).json;
  assert.equal(all.totalResults, total + 5);
  const p1 = await op.get(`${base}/users?startIndex=2&count=3`);
  assert.equal(p1.status, 200, p1.body);
  assert.equal(p1.json.startIndex, 2);
  assert.equal(p1.json.itemsPerPage, 3);
  assert.equal(p1.json.totalResults, total + 5);
  assert.deepEqual(p1.json.Resources.map((u) => u.id), all.Resources.slice(1, 4).map((u) => u.id));

  // filters (URL-encoded SCIM filter)
  const f = await op.get(`${base}/users?${qFilter('userName sw "adminpage"')}&count=2`);
  assert.equal(f.status, 200, f.body);
  assert.equal(f.json.totalResults, 5);
  assert.equal(f.json.itemsPerPage, 2);
  const fk = await op.get(`${base}/users?${qFilter('USERNAME eq "KEEPER@input.test"')}`);
  assert.equal(fk.json.totalResults, 1);
  assert.equal(fk.json.Resources[0].id, keeper.id);
  const fg = await op.get(`${base}/groups?${qFilter(`members[value eq "${keeper.id}"]`)}`);
  assert.equal(fg.json.totalResults, 1);
  assert.equal(fg.json.Resources[0].id, keeperGroup.id);
  assert.equal((await op.get(`${base}/users?${qFilter('userName eq')}`)).status, 400, 'bad filter → 400');
  assert.equal((await op.get(`${base}/users/00000000-0000-4000-8000-000000000000`)).status, 404);
  assert.equal((await op.get('/admin/v1/tenants/nope/users')).status, 404);

  // tenant admin tokens: own tenant yes, another tenant 403; no token 401; SCIM token is not an admin token
  await createTenant(gw.port, opToken, 'other');
  const mintA = await op.post(`${base}/admin-tokens`, { name: 'acme-admin' });
  assert.equal(mintA.status, 201, mintA.body);
  const mintO = await op.post('/admin/v1/tenants/other/admin-tokens', { name: 'other-admin' });
  assert.equal(mintO.status, 201, mintO.body);
  const own = adminClient(gw.port, mintA.json.token);
  assert.equal((await own.get(`${base}/users/${keeper.id}`)).status, 200);
  const foreign = adminClient(gw.port, mintO.json.token);
  for (const p of ['/users', `/users/${keeper.id}`, '/groups', `/groups/${keeperGroup.id}`]) {
    assertJsonError(await foreign.get(base + p), 403);
  }
  assert.equal((await api(gw.port, null, 'GET', `${base}/users`)).status, 401);
  assert.equal((await api(gw.port, acme.token, 'GET', `${base}/users`)).status, 401, 'a SCIM token is not an admin token');
  // read-only
  assert.equal((await op.post(`${base}/users`, { userName: 'x' })).status, 405);
  await assertIntact('admin views');
});

test('metrics: SCIM lifecycle event counters grow with the matching writes; last request age per tenant', async () => {
  const EVENTS = ['user_created', 'user_changed', 'user_deactivated', 'user_reactivated', 'user_deleted',
    'membership_changed', 'group_created', 'group_renamed', 'group_deleted'];
  const s0 = await scrape(gw.port);
  assert.equal(s0.types.mcpgate_scim_events_total, 'counter');
  const v0 = {};
  for (const e of EVENTS) {
    assert.ok(s0.some((s) => s.name === 'mcpgate_scim_events_total' && s.labels.event === e), `series for ${e}`);
    v0[e] = metricValue(s0, 'mcpgate_scim_events_total', { event: e });
  }
  const delta = async () => {
    const s = await scrape(gw.port);
    return Object.fromEntries(EVENTS.map((e) => [e, metricValue(s, 'mcpgate_scim_events_total', { event: e }) - v0[e]]));
  };

  const u = await c.createUser('metrics@input.test');
  assert.equal((await c.patchOps(`/Users/${u.id}`, [{ op: 'replace', path: 'nickName', value: 'm' }])).status, 200);
  assert.equal((await c.patchOps(`/Users/${u.id}`, [{ op: 'replace', value: { active: false } }])).status, 200);
  assert.equal((await c.patchOps(`/Users/${u.id}`, [{ op: 'replace', value: { active: true } }])).status, 200);
  const g = await c.createGroup('Metrics');
  assert.equal((await c.patchOps(`/Groups/${g.id}`, [{ op: 'add', path: 'members', value: [{ value: u.id }] }])).status, 200);
  assert.equal((await c.patchOps(`/Groups/${g.id}`, [{ op: 'replace', value: { id: g.id, displayName: 'Metrics 2' } }])).status, 200);
  // failed writes count nothing
  await c.post('/Users', { userName: 'metrics@input.test' });
  await c.patchOps(`/Groups/${g.id}`, [{ op: 'add', path: 'members', value: [{ value: 'nope' }] }]);
  await c.post('/Users', '{bad');
  assert.equal((await c.del(`/Groups/${g.id}`)).status, 204);
  assert.equal((await c.del(`/Users/${u.id}`)).status, 204);

  const d = await delta();
  assert.equal(d.user_created, 1, JSON.stringify(d));
  assert.ok(d.user_changed >= 1, `user_changed: ${JSON.stringify(d)}`);
  assert.equal(d.user_deactivated, 2, `PATCH deactivation + DELETE of an active user: ${JSON.stringify(d)}`);
  assert.equal(d.user_reactivated, 1, JSON.stringify(d));
  assert.equal(d.user_deleted, 1, JSON.stringify(d));
  assert.ok(d.membership_changed >= 1, `membership_changed: ${JSON.stringify(d)}`);
  assert.equal(d.group_created, 1, JSON.stringify(d));
  assert.equal(d.group_renamed, 1, JSON.stringify(d));
  assert.equal(d.group_deleted, 1, JSON.stringify(d));

  const s1 = await scrape(gw.port);
  assert.equal(s1.types.mcpgate_scim_last_request_age_seconds, 'gauge');
  const age = s1.find((s) => s.name === 'mcpgate_scim_last_request_age_seconds' && s.labels.tenant === 'acme');
  assert.ok(age, 'age series for acme');
  assert.ok(age.value >= 0 && age.value < 30, `age ${age.value}`);
  // a tenant that never had a SCIM request has no series; unauthenticated calls don't make one
  await createTenant(gw.port, opToken, 'quiet');
  await scimCall(gw.port, 'quiet', 'wrong', 'GET', '/Users');
  const s2 = await scrape(gw.port);
  assert.ok(!s2.some((s) => s.name === 'mcpgate_scim_last_request_age_seconds' && s.labels.tenant === 'quiet'),
    'no series for a tenant without authenticated SCIM requests');
});

test('tenant deletion purges its SCIM data; a re-created tenant starts empty', async () => {
  const t = await createTenant(gw.port, opToken, 'doomed');
  const d = scimClient(gw.port, 'doomed', t.scim.token);
  const ids = [];
  for (let i = 0; i < 30; i++) ids.push((await d.createUser(`doomed${i}@input.test`, { externalId: `dx${i}` })).id);
  const grp = await d.createGroup('Doomed Group', ids.slice(0, 10));
  assertListResponse(await d.get('/Users?count=1'), { total: 30 });

  const del = await op.del('/admin/v1/tenants/doomed');
  assert.equal(del.status, 202, del.body);
  assertScimError(await d.get('/Users'), 401);
  const re = await recreateAfterPurge(gw.port, opToken, 'doomed');
  const d2 = scimClient(gw.port, 'doomed', re.scim.token);
  assertListResponse(await d2.get('/Users?startIndex=1&count=100'), { total: 0 });
  assertListResponse(await d2.get('/Groups?startIndex=1&count=100'), { total: 0 });
  assertListResponse(await d2.get('/Users?' + qFilter('userName eq "doomed0@input.test"')), { total: 0 });
  assertListResponse(await d2.get('/Users?' + qFilter('externalId eq "dx1"')), { total: 0 });
  assertListResponse(await d2.get('/Groups?' + qFilter('displayName eq "Doomed Group"')), { total: 0 });
  assertScimError(await d2.get(`/Users/${ids[0]}`), 404);
  assertScimError(await d2.get(`/Groups/${grp.id}`), 404);
  assertScimError(await scimCall(gw.port, 'doomed', t.scim.token, 'GET', '/Users'), 401, undefined);
  // the uniqueness index was purged too
  const again = await d2.createUser('doomed0@input.test');
  assert.ok(!ids.includes(again.id));
  assertListResponse(await d2.get('/Users'), { total: 1 });
  assert.equal((await op.get('/admin/v1/tenants/doomed/users')).json.totalResults, 1);
  // other tenants untouched
  await assertIntact('purge of another tenant');
});

test('the server is healthy and sanitizer-clean at the end', async () => {
  await assertHealthy(gw.port);
  const r = await request(gw.port, { path: '/readyz' });
  assert.equal(r.status, 200, r.body);
  await gw.stop();
});
