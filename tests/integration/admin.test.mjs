// Admin API: tenant CRUD, strict request parsing, authentication, SCIM
// tokens, tenant-scoped admin tokens.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startGateway, request, rawHttp, waitFor } from './lib/gateway.mjs';
import { scimClient, oktaUser } from './lib/scim.mjs';
import {
  api, adminClient, assertJsonError, assert401, createTenant, recreateAfterPurge, operatorToken,
  SCIM_TOKEN_RE, ADMIN_TOKEN_RE, TOKEN_ID_RE, RFC3339_RE,
} from './lib/admin.mjs';

const PUBLIC_URL = 'https://gw.example.test:8443';
const CAP = 3; // connectors_per_tenant_max here
// the token caps here: scim_tokens_per_tenant_max, admin_tokens_per_tenant_max,
// employee_tokens_per_user_max
const SCIM_CAP = 6, ADMIN_CAP = 3, EMP_CAP = 3;
// nothing listens there: a connector's post-write probe fails, the write stands
const DEAD_URL = 'http://127.0.0.1:9/mcp';
let gw, op, opToken;

before(async () => {
  gw = await startGateway({ args: ['--public-url', PUBLIC_URL, '--connectors-per-tenant-max', String(CAP),
    '--scim-tokens-per-tenant-max', String(SCIM_CAP), '--admin-tokens-per-tenant-max', String(ADMIN_CAP),
    '--employee-tokens-per-user-max', String(EMP_CAP)],
    // every write job runs twice, the first run aborted, as the writer runs
    // the jobs before a failing one of their batch (store/store.h): the
    // admin API's jobs must answer as if they ran once
    env: { MCPGATE_TEST_JOB_RERUN: '1' } });
  opToken = operatorToken(gw.dataDir);
  op = adminClient(gw.port, opToken);
});

const T = '/admin/v1/tenants';

test('operator token file: mode 0600, mga_ token', () => {
  const f = path.join(gw.dataDir, 'admin.token');
  assert.equal(fs.statSync(f).mode & 0o777, 0o600, 'admin.token mode');
  assert.match(opToken, ADMIN_TOKEN_RE);
});

test('tenant create: 201 with id, name, created and the SCIM base URL and token', async () => {
  const r = await op.post(T, { id: 'acme', name: 'Acme Corp' });
  assert.equal(r.status, 201, r.body);
  assert.match(String(r.headers['content-type']), /^application\/json/);
  const j = r.json;
  assert.deepEqual(Object.keys(j).sort(), ['created', 'id', 'name', 'scim']);
  assert.equal(j.id, 'acme');
  assert.equal(j.name, 'Acme Corp');
  assert.match(j.created, RFC3339_RE);
  assert.ok(Math.abs(Date.parse(j.created) - Date.now()) < 120000, `created is now-ish: ${j.created}`);
  assert.deepEqual(Object.keys(j.scim).sort(), ['base_url', 'token', 'token_id']);
  assert.equal(j.scim.base_url, `${PUBLIC_URL}/t/acme/scim/v2`);
  assert.match(j.scim.token, SCIM_TOKEN_RE);
  assert.match(j.scim.token_id, TOKEN_ID_RE);

  // the initial SCIM token is listed by id (never by value)
  const l = await op.get(`${T}/acme/scim-tokens`);
  assert.equal(l.status, 200, l.body);
  assert.deepEqual(l.json.tokens.map((t) => t.id), [j.scim.token_id]);
  assert.ok(!l.body.includes(j.scim.token), 'the SCIM token text is not in the list');
});

test('tenant create without a name; list, show, PATCH rename', async () => {
  const c = await createTenant(gw.port, opToken, 'beta-2');
  assert.equal(typeof c.name, 'string');
  assert.ok(c.name.length > 0, 'a tenant created without a name still has one');

  const l = await op.get(T);
  assert.equal(l.status, 200, l.body);
  assert.ok(Array.isArray(l.json.tenants));
  const ids = l.json.tenants.map((t) => t.id);
  assert.ok(ids.includes('acme') && ids.includes('beta-2'), `list: ${ids}`);
  for (const t of l.json.tenants) {
    assert.equal(t.scim.base_url, `${PUBLIC_URL}/t/${t.id}/scim/v2`);
    assert.equal(t.scim.token, undefined, 'no token in the list');
    assert.match(t.created, RFC3339_RE);
  }
  assert.ok(!/mgs_/.test(l.body), 'no SCIM token text anywhere in the list');

  const s = await op.get(`${T}/acme`);
  assert.equal(s.status, 200, s.body);
  assert.equal(s.json.id, 'acme');
  assert.equal(s.json.name, 'Acme Corp');
  assert.equal(s.json.scim.base_url, `${PUBLIC_URL}/t/acme/scim/v2`);
  assert.equal(s.json.scim.token, undefined, 'show never repeats the token');

  const p = await op.patch(`${T}/beta-2`, { name: 'Beta Two' });
  assert.equal(p.status, 200, p.body);
  assert.equal(p.json.name, 'Beta Two');
  const s2 = await op.get(`${T}/beta-2`);
  assert.equal(s2.json.name, 'Beta Two');
  assert.equal(s2.json.created, c.created, 'rename keeps created');

  // PATCH is strict too
  assertJsonError(await op.patch(`${T}/beta-2`, { name: 'x', id: 'other' }), 400);
  assertJsonError(await op.patch(`${T}/beta-2`, { name: 7 }), 400);
  assertJsonError(await op.patch(`${T}/no-such-tenant`, { name: 'x' }), 404);
  assert.equal((await op.get(`${T}/beta-2`)).json.name, 'Beta Two', 'refused PATCHes changed nothing');
});

test('duplicate tenant → 409', async () => {
  const r = await op.post(T, { id: 'acme', name: 'Other' });
  assertJsonError(r, 409);
  assert.equal((await op.get(`${T}/acme`)).json.name, 'Acme Corp', 'the original is untouched');
});

test('concurrent creates of one id: exactly one 201, the rest 409', async () => {
  const rs = await Promise.all(Array.from({ length: 30 }, (_, i) => op.post(T, { id: 'race', name: `Race ${i}` })));
  const by = {};
  for (const r of rs) by[r.status] = (by[r.status] ?? 0) + 1;
  assert.deepEqual(by, { 201: 1, 409: 29 }, `statuses: ${JSON.stringify(by)}`);
  const winner = rs.find((r) => r.status === 201).json;
  assert.equal((await op.get(`${T}/race`)).json.name, winner.name, 'the stored tenant is the acknowledged one');
  const l = await op.get(`${T}/race/scim-tokens`);
  assert.deepEqual(l.json.tokens.map((t) => t.id), [winner.scim.token_id], 'one initial SCIM token');
});

test('invalid tenant ids → 400 with a JSON error', async () => {
  const bad = [
    { id: 'ACME' }, { id: 'a_b' }, { id: 'a'.repeat(64) }, { id: '' }, {}, { name: 'no id' },
    { id: 42 }, { id: null }, { id: ['acme'] }, { id: 'a b' }, { id: 'a/b' }, { id: 'é' },
  ];
  for (const b of bad) {
    const r = await op.post(T, b);
    assertJsonError(r, 400);
  }
  // 63 characters is the maximum and is accepted
  const ok = await op.post(T, { id: 'a'.repeat(63) });
  assert.equal(ok.status, 201, ok.body);
  const ids = (await op.get(T)).json.tenants.map((t) => t.id);
  for (const b of bad) if (typeof b.id === 'string') assert.ok(!ids.includes(b.id), `${b.id} was not created`);
});

test('strict JSON: unknown field, duplicate key, malformed, array, wrong types → 400', async () => {
  const unk = assertJsonError(await op.post(T, { id: 'unk', name: 'x', colour: 'blue' }), 400);
  assert.match(unk.message, /colour/, 'the unknown field is named');
  assertJsonError(await op.post(T, undefined, { raw: '{"id":"dupk","id":"dupk2"}' }), 400);
  assertJsonError(await op.post(T, undefined, { raw: '{"id":"mal",' }), 400);
  assertJsonError(await op.post(T, undefined, { raw: '{id: "mal"}' }), 400);
  assertJsonError(await op.post(T, undefined, { raw: '[{"id":"arr"}]' }), 400);
  assertJsonError(await op.post(T, undefined, { raw: '"arr"' }), 400);
  assertJsonError(await op.post(T, undefined, { raw: '' }), 400);
  assertJsonError(await op.post(T, undefined, { raw: '{"id":"trail"} x' }), 400);
  assertJsonError(await op.post(T, undefined, { raw: '{"id":"trail"}{"id":"trail2"}' }), 400);
  assertJsonError(await op.post(T, undefined, { raw: '{"id":"nul","name":"a\\u0000b"}' }), 400);
  assertJsonError(await op.post(T, { id: 'types', name: 5 }), 400);
  assertJsonError(await op.post(T, { id: 'types', name: '' }), 400);
  assertJsonError(await op.post(T, { id: 'types', name: 'x'.repeat(5000) }), 400);
  const ids = (await op.get(T)).json.tenants.map((t) => t.id);
  for (const id of ['unk', 'dupk', 'dupk2', 'mal', 'arr', 'types', 'trail', 'trail2', 'nul']) assert.ok(!ids.includes(id), `${id} not created`);
});

test('wrong content type → 415', async () => {
  const r = await op.post(T, undefined, { raw: '{"id":"ctype"}', headers: { 'content-type': 'text/plain' } });
  assertJsonError(r, 415);
  const r2 = await op.post(T, undefined, { raw: '{"id":"ctype"}', headers: { 'content-type': 'application/jsonx' } });
  assertJsonError(r2, 415);
  // parameters after the media type are fine
  const ok = await op.post(T, undefined, { raw: '{"id":"ctype"}', headers: { 'content-type': 'application/json; charset=utf-8' } });
  assert.equal(ok.status, 201, ok.body);
});

test('body over max_body_bytes (1 MiB) → 413', async () => {
  const body = JSON.stringify({ id: 'big', name: 'x'.repeat(1024 * 1024 + 100) });
  const head = `POST ${T} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${opToken}\r\n` +
    `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n`;
  const r = await rawHttp(gw.port, [head, body], { timeoutMs: 10000, responses: 1 });
  assert.ok(r.responses.length >= 1, `a response arrived: ${r.data.slice(0, 300)}`);
  const res = r.responses[0];
  assert.equal(res.status, 413, res.raw.slice(0, 300));
  const j = JSON.parse(res.body);
  assert.equal(typeof j.error, 'string');
  assert.equal(typeof j.message, 'string');
  assert.equal((await op.get(`${T}/big`)).status, 404, 'nothing was created');
});

test('unknown admin paths → 404; wrong method → 405 with Allow', async () => {
  assertJsonError(await op.get(`${T}/acme/whatever`), 404);
  assertJsonError(await op.get(`${T}/acme/scim-tokens/0123456789abcdef/extra`), 404);
  assertJsonError(await op.get('/admin/v1/nothing-here'), 404);
  assertJsonError(await op.get(`${T}/no-such-tenant`), 404);

  const put = await api(gw.port, opToken, 'PUT', T, { id: 'put' });
  assertJsonError(put, 405);
  const allow = String(put.headers.allow ?? '');
  assert.match(allow, /\bGET\b/, `Allow: ${allow}`);
  assert.match(allow, /\bPOST\b/, `Allow: ${allow}`);

  const put1 = await api(gw.port, opToken, 'PUT', `${T}/acme`, { name: 'x' });
  assertJsonError(put1, 405);
  const allow1 = String(put1.headers.allow ?? '');
  for (const m of ['GET', 'PATCH', 'DELETE']) assert.match(allow1, new RegExp(`\\b${m}\\b`), `Allow: ${allow1}`);

  const del = await api(gw.port, opToken, 'DELETE', T);
  assertJsonError(del, 405);
  assert.ok(del.headers.allow, 'Allow header present');
  assert.equal((await op.get(`${T}/acme`)).status, 200, 'acme survived the refused DELETE on the collection');
});

test('authentication: missing, wrong, Basic and SCIM tokens → 401 with WWW-Authenticate', async () => {
  const scimToken = (await op.post(`${T}/acme/scim-tokens`, { name: 'auth-test' })).json.token;
  assert.match(scimToken, SCIM_TOKEN_RE);
  const cases = [
    { what: 'no Authorization', headers: {} },
    { what: 'Bearer with no token', headers: { authorization: 'Bearer' } },
    { what: 'Bearer and spaces', headers: { authorization: 'Bearer    ' } },
    { what: 'wrong token', headers: { authorization: 'Bearer mga_' + 'A'.repeat(43) } },
    { what: 'short token', headers: { authorization: 'Bearer abc' } },
    { what: 'operator token with a suffix', headers: { authorization: `Bearer ${opToken}x` } },
    { what: 'operator token truncated', headers: { authorization: `Bearer ${opToken.slice(0, -1)}` } },
    { what: 'Basic scheme', headers: { authorization: `Basic ${Buffer.from(`admin:${opToken}`).toString('base64')}` } },
    { what: 'Basic scheme with the raw token', headers: { authorization: `Basic ${opToken}` } },
    { what: 'bare token, no scheme', headers: { authorization: opToken } },
    { what: 'SCIM token', headers: { authorization: `Bearer ${scimToken}` } },
  ];
  for (const c of cases) {
    for (const [m, p, b] of [['GET', T], ['GET', `${T}/acme`], ['POST', T, { id: 'auth-x' }], ['DELETE', `${T}/acme`]]) {
      const r = await api(gw.port, null, m, p, b, { headers: c.headers });
      try { assert401(r); } catch (e) { e.message = `${c.what}, ${m} ${p}: ${e.message}`; throw e; }
    }
  }
  assert.equal((await op.get(`${T}/acme`)).status, 200, 'acme still exists');
  assert.equal((await op.get(`${T}/auth-x`)).status, 404, 'no tenant was created without auth');
});

test('SCIM tokens: create (shown once), list without the token, several valid, revoke', async () => {
  await createTenant(gw.port, opToken, 'scimco', 'Scim Co');
  const made = [];
  for (const name of ['okta-2', 'okta-3']) {
    const r = await op.post(`${T}/scimco/scim-tokens`, { name });
    assert.equal(r.status, 201, r.body);
    assert.match(r.json.token, SCIM_TOKEN_RE);
    assert.match(r.json.id, TOKEN_ID_RE);
    assert.equal(r.json.name, name);
    assert.match(r.json.created, RFC3339_RE);
    made.push(r.json);
  }
  // no body at all is fine too (name defaults)
  const nb = await api(gw.port, opToken, 'POST', `${T}/scimco/scim-tokens`);
  assert.equal(nb.status, 201, nb.body);
  made.push(nb.json);
  assert.equal(new Set(made.map((m) => m.token)).size, made.length, 'tokens differ');
  assert.equal(new Set(made.map((m) => m.id)).size, made.length, 'token ids differ');
  // strict body
  assertJsonError(await op.post(`${T}/scimco/scim-tokens`, { name: 'x', scope: 'all' }), 400);
  assertJsonError(await op.post(`${T}/scimco/scim-tokens`, undefined, { raw: '{"name":"x"', }), 400);
  assertJsonError(await op.post(`${T}/no-such-tenant/scim-tokens`, { name: 'x' }), 404);

  const l = await op.get(`${T}/scimco/scim-tokens`);
  assert.equal(l.status, 200, l.body);
  assert.equal(l.json.tokens.length, 4, 'initial + 3 tokens, all valid at once');
  for (const t of l.json.tokens) {
    assert.deepEqual(Object.keys(t).sort(), ['created', 'id', 'last_used', 'name']);
    assert.match(t.id, TOKEN_ID_RE);
    assert.match(t.created, RFC3339_RE);
    assert.equal(t.last_used, null, 'a SCIM token never used has last_used null');
  }
  for (const m of made) {
    assert.ok(l.json.tokens.some((t) => t.id === m.id && t.name === m.name), `listed: ${m.id}`);
    assert.ok(!l.body.includes(m.token), 'the token text never appears in the list');
    assert.ok(!l.body.includes(m.token.slice(4)), 'nor its random part');
  }

  const rv = await op.del(`${T}/scimco/scim-tokens/${made[0].id}`);
  assert.equal(rv.status, 204, rv.body);
  assert.equal(rv.body, '', '204 has no body');
  assertJsonError(await op.del(`${T}/scimco/scim-tokens/${made[0].id}`), 404);
  assertJsonError(await op.del(`${T}/scimco/scim-tokens/not-an-id`), 404);
  // a token of one tenant cannot be revoked through another tenant's path
  assertJsonError(await op.del(`${T}/acme/scim-tokens/${made[1].id}`), 404);
  const l2 = await op.get(`${T}/scimco/scim-tokens`);
  const ids2 = l2.json.tokens.map((t) => t.id);
  assert.equal(ids2.length, 3);
  assert.ok(!ids2.includes(made[0].id), 'revoked token gone');
  assert.ok(ids2.includes(made[1].id) && ids2.includes(made[2].id), 'the others remain');
});

test('tenant admin tokens: scoped to their tenant, operator-only actions refused', async () => {
  await createTenant(gw.port, opToken, 'tt-one', 'One');
  await createTenant(gw.port, opToken, 'tt-two', 'Two');
  const m = await op.post(`${T}/tt-one/admin-tokens`, { name: 'ci' });
  assert.equal(m.status, 201, m.body);
  assert.match(m.json.token, ADMIN_TOKEN_RE);
  assert.match(m.json.id, TOKEN_ID_RE);
  assert.equal(m.json.name, 'ci');
  const tt = adminClient(gw.port, m.json.token);

  // the fresh token was never used
  let al = await op.get(`${T}/tt-one/admin-tokens`);
  assert.equal(al.status, 200, al.body);
  assert.deepEqual(al.json.tokens.map((t) => t.id), [m.json.id]);
  assert.equal(al.json.tokens[0].last_used, null);
  assert.ok(!al.body.includes(m.json.token), 'admin token text not in the list');

  // its own tenant
  const g = await tt.get(`${T}/tt-one`);
  assert.equal(g.status, 200, g.body);
  assert.equal(g.json.id, 'tt-one');
  const l = await tt.get(T);
  assert.equal(l.status, 200, l.body);
  assert.deepEqual(l.json.tenants.map((t) => t.id), ['tt-one'], 'a tenant token lists only its tenant');

  // other tenants, existing or not: the same 403
  const f1 = assertJsonError(await tt.get(`${T}/tt-two`), 403);
  const f2 = assertJsonError(await tt.get(`${T}/does-not-exist`), 403);
  assert.deepEqual(f1, f2, 'same answer for an existing and a missing tenant');
  assertJsonError(await tt.get(`${T}/acme`), 403);
  assertJsonError(await tt.get(`${T}/NOT_VALID`), 403);
  assertJsonError(await tt.patch(`${T}/tt-two`, { name: 'pwned' }), 403);
  assertJsonError(await tt.patch(`${T}/does-not-exist`, { name: 'pwned' }), 403);
  assertJsonError(await tt.get(`${T}/tt-two/scim-tokens`), 403);
  assertJsonError(await tt.post(`${T}/tt-two/scim-tokens`, { name: 'x' }), 403);
  assert.equal((await op.get(`${T}/tt-two`)).json.name, 'Two', 'tt-two untouched');

  // operator-only actions
  assertJsonError(await tt.post(T, { id: 'tt-three' }), 403);
  assertJsonError(await tt.del(`${T}/tt-one`), 403);
  assertJsonError(await tt.del(`${T}/tt-two`), 403);
  assertJsonError(await tt.post(`${T}/tt-one/admin-tokens`, { name: 'more' }), 403);
  assertJsonError(await tt.post(`${T}/tt-two/admin-tokens`, { name: 'more' }), 403);
  assertJsonError(await tt.del(`${T}/tt-one/admin-tokens/${m.json.id}`), 403);
  assert.equal((await op.get(`${T}/tt-three`)).status, 404, 'no tenant created');
  assert.equal((await op.get(`${T}/tt-one`)).status, 200, 'tt-one not deleted');
  assert.equal((await op.get(`${T}/tt-two`)).status, 200, 'tt-two not deleted');
  assert.equal((await op.get(`${T}/tt-one/admin-tokens`)).json.tokens.length, 1, 'no admin token minted');

  // SCIM tokens of its own tenant
  const sc = await tt.post(`${T}/tt-one/scim-tokens`, { name: 'by-tenant' });
  assert.equal(sc.status, 201, sc.body);
  assert.match(sc.json.token, SCIM_TOKEN_RE);
  const sl = await tt.get(`${T}/tt-one/scim-tokens`);
  assert.equal(sl.status, 200, sl.body);
  assert.ok(sl.json.tokens.some((t) => t.id === sc.json.id));
  const rn = await tt.patch(`${T}/tt-one`, { name: 'One renamed' });
  assert.equal(rn.status, 200, rn.body);

  // last_used becomes non-null once used
  await waitFor(async () => {
    al = await op.get(`${T}/tt-one/admin-tokens`);
    return al.json.tokens[0].last_used !== null;
  }, { timeoutMs: 5000, what: 'last_used of the tenant admin token' });
  assert.match(al.json.tokens[0].last_used, RFC3339_RE);

  // revoked by the operator → 401
  const rv = await op.del(`${T}/tt-one/admin-tokens/${m.json.id}`);
  assert.equal(rv.status, 204, rv.body);
  assert401(await tt.get(`${T}/tt-one`));
  assert401(await tt.get(T));
  assertJsonError(await op.del(`${T}/tt-one/admin-tokens/${m.json.id}`), 404);
  assert.deepEqual((await op.get(`${T}/tt-one/admin-tokens`)).json.tokens, []);
});

test('tenant admin token stops working when its tenant is deleted', async () => {
  await createTenant(gw.port, opToken, 'tt-gone', 'Gone');
  const m = await op.post(`${T}/tt-gone/admin-tokens`, { name: 'ci' });
  assert.equal(m.status, 201, m.body);
  const tt = adminClient(gw.port, m.json.token);
  assert.equal((await tt.get(`${T}/tt-gone`)).status, 200);
  assert.equal((await op.del(`${T}/tt-gone`)).status, 202);
  assert401(await tt.get(`${T}/tt-gone`));
  assert401(await tt.get(T));
  // and it does not come back with a re-created tenant of the same id
  await recreateAfterPurge(gw.port, opToken, 'tt-gone');
  assert401(await tt.get(`${T}/tt-gone`));
  assert.deepEqual((await op.get(`${T}/tt-gone/admin-tokens`)).json.tokens, []);
});

test('tenant delete: 202, then 404, tokens 404, re-create after the purge', async () => {
  const c = await createTenant(gw.port, opToken, 'doomed', 'Doomed');
  // neighbours whose ids share the prefix must not be touched by the purge
  const nb1 = await createTenant(gw.port, opToken, 'doomedx');
  const nb2 = await createTenant(gw.port, opToken, 'doomed-2');
  const nbAdmin = await op.post(`${T}/doomedx/admin-tokens`, { name: 'n' });
  assert.equal(nbAdmin.status, 201);
  for (let i = 0; i < 5; i++) assert.equal((await op.post(`${T}/doomed/scim-tokens`, { name: `t${i}` })).status, 201);
  assert.equal((await op.post(`${T}/doomed/admin-tokens`, { name: 'a' })).status, 201);

  const d = await op.del(`${T}/doomed`);
  assert.equal(d.status, 202, d.body);
  assertJsonError(await op.get(`${T}/doomed`), 404);
  assertJsonError(await op.get(`${T}/doomed/scim-tokens`), 404);
  assertJsonError(await op.get(`${T}/doomed/admin-tokens`), 404);
  assertJsonError(await op.post(`${T}/doomed/scim-tokens`, { name: 'late' }), 404);
  assertJsonError(await op.patch(`${T}/doomed`, { name: 'late' }), 404);
  const second = await op.del(`${T}/doomed`);
  assertJsonError(second, 404);
  assert.ok(!(await op.get(T)).json.tenants.some((t) => t.id === 'doomed'), 'not listed');

  // other tenants were not touched by the delete (nor, below, by its purge)
  for (const nb of [nb1, nb2]) {
    assert.equal((await op.get(`${T}/${nb.id}`)).status, 200, `${nb.id} survives`);
    assert.deepEqual((await op.get(`${T}/${nb.id}/scim-tokens`)).json.tokens.map((t) => t.id), [nb.scim.token_id],
      `${nb.id} keeps its SCIM token`);
  }
  assert.equal((await api(gw.port, nbAdmin.json.token, 'GET', `${T}/doomedx`)).status, 200, 'doomedx admin token works');

  const again = await recreateAfterPurge(gw.port, opToken, 'doomed');
  assert.equal(again.id, 'doomed');
  assert.notEqual(again.scim.token, c.scim.token);
  assert.notEqual(again.scim.token_id, c.scim.token_id);
  const l = await op.get(`${T}/doomed/scim-tokens`);
  assert.deepEqual(l.json.tokens.map((t) => t.id), [again.scim.token_id], 'only the new initial token');
  assert.deepEqual((await op.get(`${T}/doomed/admin-tokens`)).json.tokens, [], 'old admin tokens purged');
  assert.equal((await op.get(`${T}/doomed`)).json.name, 'doomed', 'fresh record, not the old name');
  for (const nb of [nb1, nb2]) {
    assert.deepEqual((await op.get(`${T}/${nb.id}/scim-tokens`)).json.tokens.map((t) => t.id), [nb.scim.token_id],
      `${nb.id} keeps its SCIM token after the purge`);
  }
  assert.equal((await op.get(`${T}/doomedx/admin-tokens`)).json.tokens.length, 1, 'doomedx keeps its admin token');
  assert.equal((await op.get(`${T}/acme`)).status, 200);
  assert.ok((await op.get(`${T}/acme/scim-tokens`)).json.tokens.length >= 1);
});

// Found by review: a tenant's connectors were unbounded — a tenant admin
// script could PUT connectors until the store filled, and GET …/connectors
// (built on the loop every tenant shares) and a policy PUT (on the writer)
// read every one of them. Before the fix the fourth PUT here was 201.
test('connectors_per_tenant_max: a new connector past it is 409; changes, deletes and other tenants are not counted', async () => {
  await createTenant(gw.port, opToken, 'capa', 'Cap A');
  await createTenant(gw.port, opToken, 'capb', 'Cap B');
  const m = await op.post(`${T}/capa/admin-tokens`, { name: 'script' });
  assert.equal(m.status, 201, m.body);
  const ta = adminClient(gw.port, m.json.token);
  const conn = (desc = 'x') => ({ url: DEAD_URL, description: desc, auth: { type: 'none' } });
  for (let i = 1; i <= CAP; i++) {
    const r = await ta.call('PUT', `${T}/capa/connectors/c${i}`, conn());
    assert.equal(r.status, 201, r.body);
  }
  // the tenant admin, then the operator: the same refusal, naming the limit
  for (const who of [ta, op]) {
    const e = assertJsonError(await who.call('PUT', `${T}/capa/connectors/c${CAP + 1}`, conn()), 409);
    assert.equal(e.error, 'too_many_connectors');
    assert.match(e.message, new RegExp(`connectors_per_tenant_max: ${CAP}\\)`));
  }
  assert.equal((await ta.get(`${T}/capa/connectors/c${CAP + 1}`)).status, 404, 'nothing stored');
  // a discovering PUT past the cap is refused before anything is fetched or
  // registered (nothing listens at its URL: a fetch would have been 502)
  const d = assertJsonError(await ta.call('PUT', `${T}/capa/connectors/disc`,
    { url: DEAD_URL, auth: { type: 'oauth', discover: true } }), 409);
  assert.equal(d.error, 'too_many_connectors');
  // an existing connector may still be changed
  assert.equal((await ta.call('PUT', `${T}/capa/connectors/c1`, conn('changed'))).status, 200);
  // another tenant's connectors neither count nor show
  for (let i = 1; i <= CAP; i++) assert.equal((await op.call('PUT', `${T}/capb/connectors/b${i}`, conn())).status, 201);
  const l = await ta.get(`${T}/capa/connectors`);
  assert.equal(l.status, 200, l.body);
  assert.deepEqual(l.json.connectors.map((c) => c.name), ['c1', 'c2', 'c3']);
  assert.equal(l.json.truncated, undefined);
  assertJsonError(await ta.get(`${T}/capb/connectors`), 403);
  // a delete makes room
  assert.equal((await ta.del(`${T}/capa/connectors/c3`)).status, 204);
  assert.equal((await ta.call('PUT', `${T}/capa/connectors/c4`, conn())).status, 201);
});

// Found by review: a tenant's SCIM tokens, its admin tokens and the employee
// tokens its admins mint had no cap (the employee page's own tokens have
// one): a tenant admin script could fill the store every tenant shares, and
// then every tenant's writes — SCIM deactivations among them — got 507.
// Before the fix the token past each cap here was 201 (seen: 12 SCIM tokens
// and 12 employee tokens of one person, all 201).
let tokcapScim; // tokcap's SCIM tokens (the lowered-cap case uses them)
test('token caps: SCIM and admin tokens per tenant, employee tokens per person; 409 past them', async () => {
  const t = await createTenant(gw.port, opToken, 'tokcap', 'Token Cap');
  await createTenant(gw.port, opToken, 'tokcap-b', 'Token Cap B');
  // admin tokens: the operator mints them (the tenant's count is its own)
  const admins = [];
  for (let i = 0; i < ADMIN_CAP; i++) {
    const r = await op.post(`${T}/tokcap/admin-tokens`, { name: `a${i}` });
    assert.equal(r.status, 201, r.body);
    admins.push(r.json);
  }
  let e = assertJsonError(await op.post(`${T}/tokcap/admin-tokens`, { name: 'one-more' }), 409);
  assert.equal(e.error, 'too_many_tokens');
  assert.match(e.message, new RegExp(`admin_tokens_per_tenant_max: ${ADMIN_CAP}\\)`));
  assert.equal((await op.get(`${T}/tokcap/admin-tokens`)).json.tokens.length, ADMIN_CAP, 'nothing stored');
  assert.equal((await op.post(`${T}/tokcap-b/admin-tokens`, { name: 'b' })).status, 201, 'another tenant is not counted');
  const ta = adminClient(gw.port, admins[0].token);

  // SCIM tokens: the tenant's initial one counts; the tenant admin and the
  // operator get the same refusal
  const scimMade = [{ id: t.scim.token_id, token: t.scim.token }];
  for (let i = 1; i < SCIM_CAP; i++) {
    const r = await ta.post(`${T}/tokcap/scim-tokens`, { name: `s${i}` });
    assert.equal(r.status, 201, r.body);
    scimMade.push(r.json);
  }
  for (const who of [ta, op]) {
    e = assertJsonError(await who.post(`${T}/tokcap/scim-tokens`, { name: 'one-more' }), 409);
    assert.equal(e.error, 'too_many_tokens');
    assert.match(e.message, new RegExp(`scim_tokens_per_tenant_max: ${SCIM_CAP}\\)`));
    assert.ok(!/mg[asw]_/.test(e.message), 'no token in the message');
  }
  const sl = await ta.get(`${T}/tokcap/scim-tokens`);
  assert.equal(sl.json.tokens.length, SCIM_CAP, 'nothing stored');
  // every one of them works; a revoke makes room
  const scim = scimClient(gw.port, 'tokcap', scimMade[SCIM_CAP - 1].token);
  assert.equal((await scim.post('/Users', oktaUser('alice@tokcap.example'))).status, 201);
  assert.equal((await scim.post('/Users', oktaUser('bob@tokcap.example'))).status, 201);
  assert.equal((await ta.del(`${T}/tokcap/scim-tokens/${scimMade[1].id}`)).status, 204);
  const again = await ta.post(`${T}/tokcap/scim-tokens`, { name: 'rotated' });
  assert.equal(again.status, 201, again.body);
  tokcapScim = [...scimMade.filter((_, i) => i !== 1).map((m) => m.token), again.json.token];

  // employee tokens an admin mints: per person, whoever mints them
  const made = [];
  for (let i = 0; i < EMP_CAP; i++) {
    const r = await (i % 2 ? op : ta).post(`${T}/tokcap/tokens`, { user: 'alice@tokcap.example', name: `l${i}`, expires_in_days: 1 });
    assert.equal(r.status, 201, r.body);
    made.push(r.json);
  }
  for (const who of [ta, op]) {
    e = assertJsonError(await who.post(`${T}/tokcap/tokens`, { user: 'alice@tokcap.example', name: 'one-more' }), 409);
    assert.equal(e.error, 'too_many_tokens');
    assert.match(e.message, new RegExp(`employee_tokens_per_user_max: ${EMP_CAP}\\)`));
    assert.match(e.message, /alice@tokcap\.example/);
  }
  // another person of the tenant has their own count
  assert.equal((await ta.post(`${T}/tokcap/tokens`, { user: 'bob@tokcap.example', name: 'bob' })).status, 201);
  const el = await op.get(`${T}/tokcap/tokens`);
  assert.equal(el.json.tokens.filter((x) => x.name.startsWith('l') || x.name === 'one-more').length, EMP_CAP, 'nothing stored');
  // a revoke makes room
  assert.equal((await ta.del(`${T}/tokcap/tokens/${made[0].id}`)).status, 204);
  assert.equal((await ta.post(`${T}/tokcap/tokens`, { user: 'alice@tokcap.example', name: 'next' })).status, 201);
});

test('the server is healthy at the end and stops with exit 0', async () => {
  const h = await request(gw.port, { path: '/healthz' });
  assert.equal(h.status, 200);
  assert.deepEqual(JSON.parse(h.body), { status: 'ok' });
  const ex = await gw.stop('SIGTERM');
  assert.equal(ex.code, 0, `exit ${JSON.stringify(ex)}`);
  assert.equal(ex.signal, null);
  // no token ever appears in the logs
  const logs = gw.stderrText();
  assert.ok(!logs.includes(opToken.slice(4)), 'operator token not logged');
  assert.ok(!/mg[asw]_[A-Za-z0-9_-]{43}/.test(logs), 'no token-shaped string in the logs');
});

test('a cap lowered at restart: the tenant over it keeps every connector (and SCIM token), lists the first ones, cannot add', async () => {
  const g2 = await startGateway({ dataDir: gw.dataDir, args: ['--public-url', PUBLIC_URL, '--connectors-per-tenant-max', '2',
    '--scim-tokens-per-tenant-max', '2'] });
  try {
    const o2 = adminClient(g2.port, opToken);
    const l = await o2.get(`${T}/capa/connectors`);
    assert.equal(l.status, 200, l.body);
    assert.deepEqual(l.json.connectors.map((c) => c.name), ['c1', 'c2']);
    assert.equal(l.json.truncated, true);
    assert.equal(l.json.limit, 2);
    const g = await o2.get(`${T}/capa/connectors/c4`);
    assert.equal(g.status, 200, 'kept, readable by name');
    assert.equal((await o2.call('PUT', `${T}/capa/connectors/c4`, { url: DEAD_URL, description: 'still mine', auth: { type: 'none' } })).status, 200);
    const e = assertJsonError(await o2.call('PUT', `${T}/capa/connectors/c5`, { url: DEAD_URL, auth: { type: 'none' } }), 409);
    assert.match(e.message, /connectors_per_tenant_max: 2\)/);
    assert.equal((await o2.del(`${T}/capa/connectors/c4`)).status, 204);
    // tokcap holds more SCIM tokens than the lowered cap: each still works,
    // and none can be added until it is under the cap
    assert.equal(tokcapScim.length, SCIM_CAP);
    for (const tok of tokcapScim) {
      const r = await scimClient(g2.port, 'tokcap', tok).get('/Users?count=1');
      assert.equal(r.status, 200, r.body);
    }
    const s = assertJsonError(await o2.post(`${T}/tokcap/scim-tokens`, { name: 'x' }), 409);
    assert.match(s.message, /scim_tokens_per_tenant_max: 2\)/);
  } finally {
    const ex = await g2.stop('SIGTERM');
    assert.equal(ex.code, 0, `exit ${JSON.stringify(ex)}`);
  }
});
