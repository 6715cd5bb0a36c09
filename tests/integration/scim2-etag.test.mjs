// SCIM 2.0 versions (RFC 7644 §3.14): meta.version is a weak ETag equal to
// the ETag header and changes with every write; If-None-Match on GET of one
// resource (304); If-Match on PUT/PATCH/DELETE (412 on a stale version,
// nothing changed); concurrent writers holding the same version — exactly
// one wins; ServiceProviderConfig (etag yes, sort no; sortBy ignored).
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import {
  startScimGateway, assertScimError, assertListResponse, assertScimContentType, scimEvent, URN, WEAK_ETAG_RE,
} from './lib/scim.mjs';
import { search, listQuery, assertNoPassword } from './lib/scim2.mjs';

let gw, acme, c;

before(async () => {
  ({ gw, tenants: { acme } } = await startScimGateway({ tenants: ['acme'] }));
  c = acme.c;
});

/** The n of W/"n". */
function vnum(tag) {
  const m = /^W\/"(\d+)"$/.exec(tag);
  assert.ok(m, `a weak ETag W/"n": ${tag}`);
  return Number(m[1]);
}

/** Asserts a resource reply whose ETag header equals its meta.version; returns the version. */
function etagOf(r, status = 200) {
  assert.equal(r.status, status, r.body);
  assertScimContentType(r);
  const v = r.json?.meta?.version;
  assert.match(String(v), WEAK_ETAG_RE, `meta.version is a weak ETag: ${r.body.slice(0, 300)}`);
  assert.equal(r.headers.etag, v, 'ETag header = meta.version');
  return v;
}

const userBody = (userName, extra = {}) => ({ schemas: [URN.USER], userName, name: { givenName: 'E', familyName: 'Tag' }, ...extra });
const inm = (tag) => ({ headers: { 'if-none-match': tag } });
const im = (tag) => ({ headers: { 'if-match': tag } });

test('meta.version is a weak ETag equal to the ETag header on every reply of one resource, and in lists', async () => {
  const p = await c.post('/Users', userBody('v1@etag.test', { password: 'pw-Secret-1' }));
  const v1 = etagOf(p, 201);
  assertNoPassword(p);
  assert.equal(etagOf(await c.get(`/Users/${p.json.id}`)), v1, 'GET = POST');
  assert.equal(etagOf(await c.get(`/Users/${p.json.id}?attributes=userName`)), v1, 'with attributes');
  const pa = await c.patchOps(`/Users/${p.json.id}`, [{ op: 'replace', path: 'title', value: 'T1' }]);
  const v2 = etagOf(pa);
  assert.notEqual(v2, v1);
  const pu = await c.put(`/Users/${p.json.id}`, userBody('v1@etag.test', { title: 'T2' }));
  const v3 = etagOf(pu);
  assert.ok(new Set([v1, v2, v3]).size === 3);
  assert.equal(etagOf(await c.get(`/Users/${p.json.id}`)), v3);
  const l = assertListResponse(await c.get('/Users' + listQuery({ filter: `id eq "${p.json.id}"` })), { total: 1 });
  assert.equal(l.Resources[0].meta.version, v3, 'lists carry the same version');
  const s = assertListResponse(await search(c, '/Users', { filter: 'userName eq "v1@etag.test"' }), { total: 1 });
  assert.equal(s.Resources[0].meta.version, v3, '.search too');

  const g = await c.post('/Groups', { schemas: [URN.GROUP], displayName: 'Etag G', members: [{ value: p.json.id }] });
  const gv1 = etagOf(g, 201);
  assert.equal(etagOf(await c.get(`/Groups/${g.json.id}`)), gv1);
  assert.equal(etagOf(await c.get(`/Groups/${g.json.id}?excludedAttributes=members`)), gv1);
  const gp = await c.patchOps(`/Groups/${g.json.id}`, [{ op: 'replace', path: 'displayName', value: 'Etag G2' }]);
  assert.notEqual(etagOf(gp), gv1);
});

test('every write moves the version on (users: PATCH with and without path, PUT, deactivate; groups: rename, members, PUT)', async () => {
  const u = await c.createUser('moves@etag.test', { title: 'start' });
  const other = await c.createUser('moves2@etag.test');
  let last = vnum(u.meta.version);
  const seen = [u.meta.version];
  const step = async (what, r) => {
    const v = etagOf(r);
    assert.ok(vnum(v) > last, `${what}: version ${v} after ${seen.at(-1)}`);
    last = vnum(v);
    seen.push(v);
    return v;
  };
  const uid = u.id;
  await step('PATCH replace title', await c.patchOps(`/Users/${uid}`, [{ op: 'replace', path: 'title', value: 'two' }]));
  await step('PATCH add emails', await c.patchOps(`/Users/${uid}`, [{ op: 'add', path: 'emails', value: [{ value: 'm@x.test', type: 'work' }] }]));
  await step('PATCH emails[type eq "work"].value', await c.patchOps(`/Users/${uid}`, [{ op: 'replace', path: 'emails[type eq "work"].value', value: 'n@x.test' }]));
  await step('PATCH without path', await c.patchOps(`/Users/${uid}`, [{ op: 'replace', value: { nickName: 'nn' } }]));
  await step('PATCH remove', await c.patchOps(`/Users/${uid}`, [{ op: 'remove', path: 'nickName' }]));
  await step('PATCH enterprise', await c.patchOps(`/Users/${uid}`, [{ op: 'add', path: `${URN.ENT}:employeeNumber`, value: '42' }]));
  await step('PUT', await c.put(`/Users/${uid}`, userBody('moves@etag.test', { title: 'put' })));
  await step('deactivate', await c.patchOps(`/Users/${uid}`, [{ op: 'replace', value: { active: false } }]));
  await step('reactivate', await c.put(`/Users/${uid}`, userBody('moves@etag.test', { title: 'put', active: true })));
  assert.equal(new Set(seen).size, seen.length, 'all versions distinct');
  assert.equal(etagOf(await c.get(`/Users/${uid}`)), seen.at(-1), 'GET shows the last one');

  // a PATCH that changes nothing is no write: same version, same lastModified
  const before = await c.fetch(`/Users/${uid}`);
  const same = await c.patchOps(`/Users/${uid}`, [{ op: 'replace', path: 'title', value: 'put' }]);
  assert.equal(etagOf(same), before.meta.version, 'unchanged resource keeps its version');
  assert.deepEqual(await c.fetch(`/Users/${uid}`), before);

  // groups
  const g = await c.createGroup('Moving Group');
  last = vnum(g.meta.version);
  seen.length = 0;
  seen.push(g.meta.version);
  const gid = g.id;
  await step('rename', await c.patchOps(`/Groups/${gid}`, [{ op: 'replace', path: 'displayName', value: 'Moved Group' }]));
  await step('add member', await c.patchOps(`/Groups/${gid}`, [{ op: 'add', path: 'members', value: [{ value: uid }] }]));
  await step('add another', await c.patchOps(`/Groups/${gid}`, [{ op: 'add', path: 'members', value: [{ value: other.id }] }]));
  await step('remove member', await c.patchOps(`/Groups/${gid}`, [{ op: 'remove', path: `members[value eq "${uid}"]` }]));
  await step('PUT', await c.put(`/Groups/${gid}`, { schemas: [URN.GROUP], displayName: 'Moved Group', members: [{ value: uid }] }));
  assert.equal(etagOf(await c.get(`/Groups/${gid}`)), seen.at(-1));
});

test('If-None-Match on GET of one resource: current → 304 without a body; stale → 200; weak comparison', async () => {
  const u = await c.createUser('inm@etag.test');
  let v = u.meta.version;
  const p = `/Users/${u.id}`;
  const r304 = await c.get(p, inm(v));
  assert.equal(r304.status, 304, r304.body);
  assert.equal(r304.body, '', 'no body');
  assert.equal(r304.headers.etag, v, '304 carries the ETag');
  assert.equal((await c.get(p, inm('*'))).status, 304, '* matches an existing resource');
  assert.equal((await c.get(p, inm(`W/"999", ${v}`))).status, 304, 'a list containing the current tag');
  assert.equal((await c.get(p, inm(v.slice(2)))).status, 304, 'weak comparison: "n" matches W/"n"');
  assert.equal((await c.get(p + '?attributes=userName', inm(v))).status, 304);

  // after a write the old tag is stale: 200 with the new representation
  const w = await c.patchOps(p, [{ op: 'replace', path: 'title', value: 'changed' }]);
  const v2 = etagOf(w);
  const r200 = await c.get(p, inm(v));
  assert.equal(etagOf(r200), v2);
  assert.equal(r200.json.title, 'changed');
  assert.equal((await c.get(p, inm(v2))).status, 304);

  // tags that share digits with the current one do not match it
  for (let i = 0; i < 9; i++) {
    const r = await c.patchOps(p, [{ op: 'replace', path: 'title', value: `t${i}` }]);
    v = etagOf(r);
  }
  assert.equal(v, 'W/"11"');
  for (const stale of ['W/"1"', 'W/"111"', 'W/"1", W/"2"', '"1"', 'W/"11 "', 'W/"011"']) {
    const r = await c.get(p, inm(stale));
    assert.equal(r.status, 200, `If-None-Match ${stale} at ${v}: ${r.status}`);
    assert.equal(r.headers.etag, v);
  }
  for (const cur of ['W/"11"', '"11"', 'W/"1", W/"11"']) assert.equal((await c.get(p, inm(cur))).status, 304, `If-None-Match ${cur}`);

  // groups too; lists ignore If-None-Match; unknown ids stay 404
  const g = await c.createGroup('INM Group', [u.id]);
  const gr = await c.get(`/Groups/${g.id}`, inm(g.meta.version));
  assert.equal(gr.status, 304);
  assert.equal(gr.body, '');
  assertListResponse(await c.get('/Users', inm(v)));
  assertScimError(await c.get('/Users/00000000-0000-4000-8000-000000000000', inm('*')), 404);
});

test("a membership change changes the user's representation (groups): its earlier ETag no longer answers 304", async () => {
  const u = await c.createUser('member-etag@etag.test');
  const before = await c.get(`/Users/${u.id}`);
  const v = etagOf(before);
  assert.deepEqual(before.json.groups, []);
  const g = await c.createGroup('Member Etag Group');
  assert.equal((await c.patchOps(`/Groups/${g.id}`, [{ op: 'add', path: 'members', value: [{ value: u.id }] }])).status, 200);
  const now = await c.get(`/Users/${u.id}`);
  assert.deepEqual(now.json.groups.map((x) => x.value), [g.id], 'GET shows the new group');
  // RFC 7232: a (weak) validator that matches promises a semantically equivalent representation
  const r = await c.get(`/Users/${u.id}`, inm(v));
  assert.equal(r.status, 200, `If-None-Match ${v} after the user joined a group: got ${r.status} ` +
    `(the cached copy would still say groups: []); ETag now ${now.headers.etag}`);
});

test('If-Match on PUT / PATCH / DELETE: current and * apply; stale → 412 SCIM error and nothing changes', async () => {
  const u = await c.createUser('im@etag.test', { title: 'orig', emails: [{ value: 'im@x.test', type: 'work' }] });
  const p = `/Users/${u.id}`;
  const g = await c.createGroup('IM Group', [u.id]);
  const gp = `/Groups/${g.id}`;
  const stale = etagOf(await c.get(p)); // (joining the group may have moved it on)
  let cur = etagOf(await c.patchOps(p, [{ op: 'replace', path: 'title', value: 'one' }], im(stale)));
  assert.notEqual(cur, stale);

  const snapU = await c.fetch(p);
  const ev0 = await scimEvent(gw.port, 'user_changed');
  const staleOps = [
    ['PATCH', () => c.patchOps(p, [{ op: 'replace', path: 'title', value: 'stale' }], im(stale))],
    ['PATCH path-less deactivate', () => c.patchOps(p, [{ op: 'replace', value: { active: false } }], im(stale))],
    ['PUT', () => c.put(p, userBody('im@etag.test', { title: 'stale' }), im(stale))],
    ['DELETE', () => c.del(p, im(stale))],
    ['PATCH, unknown version', () => c.patchOps(p, [{ op: 'replace', path: 'title', value: 'stale' }], im('W/"987654"'))],
    ['PATCH, list of stale tags', () => c.patchOps(p, [{ op: 'replace', path: 'title', value: 'stale' }], im(`${stale}, W/"0"`))],
    ['PATCH, a tag sharing digits', () => c.patchOps(p, [{ op: 'replace', path: 'title', value: 'stale' }], im(cur.replace(/"$/, '0"')))],
  ];
  for (const [what, fn] of staleOps) {
    const r = await fn();
    assertScimError(r, 412);
    assert.deepEqual(await c.fetch(p), snapU, `${what} with a stale If-Match changed nothing`);
  }
  assert.equal(await scimEvent(gw.port, 'user_changed'), ev0, 'no event from a refused write');

  // current, a list containing the current one, "*"
  cur = etagOf(await c.put(p, userBody('im@etag.test', { title: 'put' }), im(cur)));
  cur = etagOf(await c.patchOps(p, [{ op: 'replace', path: 'title', value: 'listed' }], im(`W/"0", ${cur}`)));
  cur = etagOf(await c.patchOps(p, [{ op: 'replace', path: 'title', value: 'star' }], im('*')));
  assert.equal((await c.fetch(p)).title, 'star');

  // groups: stale PATCH / PUT / DELETE change nothing, members included
  const other = await c.createUser('im2@etag.test');
  const gstale = g.meta.version;
  let gcur = etagOf(await c.patchOps(gp, [{ op: 'replace', path: 'displayName', value: 'IM Group 2' }], im(gstale)));
  const snapG = await c.fetch(gp);
  const ev1 = await scimEvent(gw.port, 'membership_changed');
  assertScimError(await c.patchOps(gp, [{ op: 'add', path: 'members', value: [{ value: other.id }] }], im(gstale)), 412);
  assertScimError(await c.patchOps(gp, [{ op: 'remove', path: 'members' }], im(gstale)), 412);
  assertScimError(await c.put(gp, { schemas: [URN.GROUP], displayName: 'Nope', members: [] }, im(gstale)), 412);
  assertScimError(await c.del(gp, im(gstale)), 412);
  assert.deepEqual(await c.fetch(gp), snapG, 'group unchanged after stale writes');
  assert.deepEqual((await c.fetch(`/Users/${u.id}`)).groups.map((x) => x.value), [g.id], "the user's groups unchanged");
  assert.equal(await scimEvent(gw.port, 'membership_changed'), ev1);
  gcur = etagOf(await c.patchOps(gp, [{ op: 'add', path: 'members', value: [{ value: other.id }] }], im(gcur)));
  assert.deepEqual(await c.memberIds(g.id), [u.id, other.id].sort());

  // DELETE with the current version / with *
  assert.equal((await c.del(gp, im(gcur))).status, 204);
  assertScimError(await c.get(gp), 404);
  assert.equal((await c.del(`/Users/${other.id}`, im('*'))).status, 204);
  assertScimError(await c.del(p, im(stale)), 412);
  cur = etagOf(await c.get(p)); // (leaving the deleted group may have moved it on)
  assert.equal((await c.del(p, im(cur))).status, 204);
  assertScimError(await c.get(p), 404);
  // a write to a resource that is gone is 404, whatever If-Match says
  assertScimError(await c.patchOps(p, [{ op: 'replace', path: 'title', value: 'x' }], im(cur)), 404);
});

test('race: two clients PATCH the version they both read — exactly one 200 and one 412, every time', async () => {
  const u = await c.createUser('race@etag.test', { title: 'none' });
  const p = `/Users/${u.id}`;
  const ev0 = await scimEvent(gw.port, 'user_changed');
  let wins = 0;
  const winners = { A: 0, B: 0 };
  for (let k = 0; k < 20; k++) {
    const v = etagOf(await c.get(p));
    const patch = (who) => c.patchOps(p, [
      { op: 'replace', path: 'title', value: `${who}-${k}` },
      { op: 'replace', path: 'nickName', value: `${who}-nick-${k}` },
      { op: 'add', path: `${URN.ENT}:department`, value: `${who}-dept-${k}` },
    ], im(v));
    // alternate who goes first on the wire; both are in flight together
    const order = k % 2 ? ['A', 'B'] : ['B', 'A'];
    const rs = await Promise.all(order.map(patch));
    const [a, b] = [rs[order.indexOf('A')], rs[order.indexOf('B')]];
    const st = [a.status, b.status].sort();
    assert.deepEqual(st, [200, 412], `round ${k}: one winner (A ${a.status} ${a.body.slice(0, 120)}, B ${b.status})`);
    const [win, lose, who] = a.status === 200 ? [a, b, 'A'] : [b, a, 'B'];
    winners[who]++;
    assertScimError(lose, 412);
    const now = await c.fetch(p);
    assert.equal(now.title, `${who}-${k}`, `round ${k}: the winner's title`);
    assert.equal(now.nickName, `${who}-nick-${k}`, `round ${k}: the winner's nickName`);
    assert.equal(now[URN.ENT].department, `${who}-dept-${k}`, `round ${k}: the winner's department`);
    assert.equal(now.meta.version, win.json.meta.version, 'the version the winner got');
    assert.equal(vnum(now.meta.version), vnum(v) + 1, 'exactly one write');
    wins++;
  }
  assert.equal(wins, 20);
  assert.equal(await scimEvent(gw.port, 'user_changed'), ev0 + 20, 'one user_changed per round');

  // eight writers at once: one wins
  for (let k = 0; k < 3; k++) {
    const v = etagOf(await c.get(p));
    const rs = await Promise.all(Array.from({ length: 8 }, (_, i) =>
      c.patchOps(p, [{ op: 'replace', path: 'title', value: `eight-${k}-${i}` }], im(v))));
    const ok = rs.filter((r) => r.status === 200);
    assert.equal(ok.length, 1, `one of 8 wins: ${rs.map((r) => r.status)}`);
    for (const r of rs) if (r.status !== 200) assertScimError(r, 412);
    assert.equal((await c.fetch(p)).title, ok[0].json.title);
  }

  // PUT against PATCH, and group membership writers
  const g = await c.createGroup('Race Group');
  const m = await Promise.all(Array.from({ length: 20 }, (_, i) => c.createUser(`racer${i}@etag.test`)));
  for (let k = 0; k < 10; k++) {
    const v = etagOf(await c.get(p));
    const [put, pat] = await Promise.all([
      c.put(p, userBody('race@etag.test', { title: `put-${k}` }), im(v)),
      c.patchOps(p, [{ op: 'replace', path: 'title', value: `patch-${k}` }], im(v)),
    ]);
    assert.deepEqual([put.status, pat.status].sort(), [200, 412], `PUT ${put.status} / PATCH ${pat.status}`);
    assert.equal((await c.fetch(p)).title, put.status === 200 ? `put-${k}` : `patch-${k}`);

    const gv = etagOf(await c.get(`/Groups/${g.id}`));
    const [x, y] = [m[2 * k], m[2 * k + 1]];
    const rs = await Promise.all([x, y].map((mu) =>
      c.patchOps(`/Groups/${g.id}`, [{ op: 'add', path: 'members', value: [{ value: mu.id }] }], im(gv))));
    assert.deepEqual(rs.map((r) => r.status).sort(), [200, 412], `group round ${k}`);
    const winner = rs[0].status === 200 ? x : y;
    const loser = winner === x ? y : x;
    const members = await c.memberIds(g.id);
    assert.ok(members.includes(winner.id) && !members.includes(loser.id), `group round ${k}: only the winner's member`);
    assert.equal(members.length, k + 1);
    assert.deepEqual((await c.fetch(`/Users/${loser.id}`)).groups, [], "the loser's user has no group");
  }
  assert.ok(winners.A + winners.B === 20);
});

test('ServiceProviderConfig: etag supported, sort not; sortBy / sortOrder are ignored without error', async () => {
  const spc = await c.fetch('/ServiceProviderConfig');
  assert.equal(spc.etag.supported, true);
  assert.equal(spc.sort.supported, false);
  for (let i = 0; i < 6; i++) await c.createUser(`sort${i}-${'zyxwvu'[i]}@sort.test`, { title: `s${5 - i}` });
  const f = 'userName ew "@sort.test"';
  const plain = await c.get('/Users' + listQuery({ filter: f, count: 4 }));
  assertListResponse(plain, { total: 6, itemsPerPage: 4 });
  for (const extra of ['sortBy=userName', 'sortBy=title&sortOrder=descending', 'sortOrder=ascending', 'sortBy=nosuch&sortOrder=bogus']) {
    const r = await c.get('/Users' + listQuery({ filter: f, count: 4 }) + '&' + extra);
    assert.equal(r.status, 200, `${extra}: ${r.body}`);
    assert.deepEqual(r.json, plain.json, `${extra} is ignored (results in id order)`);
  }
  const s = await search(c, '/Users', { filter: f, count: 4, sortBy: 'title', sortOrder: 'descending' });
  assert.deepEqual(s.json, plain.json, '.search ignores sortBy / sortOrder too');
  const gs = await c.get('/Groups?sortBy=displayName&sortOrder=descending');
  assertListResponse(gs);
});
