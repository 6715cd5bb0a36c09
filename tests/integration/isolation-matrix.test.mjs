// Tenant isolation matrix (issue 25, item 4): a generated test that calls
// every route of tenant A with every credential kind of tenant B and
// asserts each call is refused and A's data is unchanged.
//
// Two tenants, `ta` (A) and `tb` (B), on one gateway (lib/login.mjs: the
// gateway, the Okta stand-in, OIDC settings per tenant), each with its own
// upstream (lib/ctl-upstream.mjs) behind a connector of the same name.
// A holds one of everything the matrix's routes address: SCIM users and a
// group, a second SCIM token, a tenant admin token, an employee token, an
// OAuth client and grant (alice), an MCP session, OIDC settings, a policy,
// an audit sink. B's credentials, every kind the gateway issues:
//   scim        B's SCIM token as Bearer
//   scim-basic  B's SCIM token as Basic's password
//   admin       B's tenant admin token
//   employee    B's employee access token (mgw_)
//   oauth       B's OAuth access token (from B's authorization server)
//   session     B's MCP session id with B's employee token (the session of
//               the same shape as the route: aggregated or one connector)
//   cookie      B's browser session cookie (+ its CSRF token, same origin)
//   cookie-as-a B's cookie value under A's cookie name (a forged cookie)
// Routes of A: SCIM (/Users, /Groups, one of each, every method), the MCP
// endpoints (/t/ta/mcp, /t/ta/mcp/{c}: initialize, tools/list,
// tools/call, GET stream, DELETE), every /admin/v1/tenants/ta/... route of
// the README's table (GET and the writing methods with a harmless valid
// body), the employee page's API, sign-out, connect, and the OAuth token
// endpoint (B's refresh token / credential at A's). Each cell's expected
// answer is exact (verdict() below): the admin API 403 to B's admin token
// and 401 to every other kind; SCIM, MCP and the page's API 401; a
// sign-out without a session of A 303 to A's page (ending nothing);
// connect 303 to A's sign-in; the token endpoint 400 invalid_grant. Never
// 2xx. Before and after, A's data is read with the operator token and
// compared; A's audit chain may grow only by records of refused requests
// (4xx; and the no-op sign-outs' 303, with no actor); A's upstream
// receives nothing; A's credentials and B's keep working (so each refusal
// was about the tenant, not a dead credential). One summary line gives the
// matrix's size (ISOLATION_DEBUG=1: statuses per route family and kind).
// Not covered: Okta's Universal Logout receiver (signed by the provider,
// not a credential of B). The README's resilience table quotes the
// matrix's size: the summary asserts it still matches.
// ci-variants: build-w1
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';

import { REPO_ROOT, sleep } from './lib/gateway.mjs';
import { startLoginFixture, me } from './lib/login.mjs';
import { grant } from './lib/oauth.mjs';
import { rawSession } from './lib/mcp.mjs';
import { startCtlUpstream } from './lib/ctl-upstream.mjs';
import { URN } from './lib/scim.mjs';

const A = 'ta';
const B = 'tb';
const ALICE = 'alice@a.example';
const ANN = 'ann@a.example';
const BOB = 'bob@b.example';
const C = 'svc'; // the connector name both tenants use
const POLICY = { version: 1, default: 'block', rules: [{ groups: ['*'], connector: '*', allow: ['*'] }] };
const BATCH = 8;

let fx, upA, upB, sink;
const a = {}; // A's ids and credentials
const b = {}; // B's credentials

function send(method, path, headers, body) {
  return new Promise((resolve) => {
    const h = { ...headers };
    if (body !== undefined) h['content-length'] = String(Buffer.byteLength(body));
    const req = http.request({ host: '127.0.0.1', port: fx.gw.port, method, path, headers: h, agent: false, timeout: 10000 }, (res) => {
      if (/^text\/event-stream/i.test(String(res.headers['content-type'] ?? ''))) {
        // an accepted stream: the status is all we need
        resolve({ status: res.statusCode, headers: res.headers, body: '(event stream)' });
        res.destroy();
        return;
      }
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', (e) => resolve({ status: 0, headers: {}, body: String(e) }));
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', (e) => resolve({ status: 0, headers: {}, body: String(e) }));
    if (body !== undefined) req.write(body);
    req.end();
  });
}

const op = (method, p, body) => fx.op.call(method, p, body);
const adminA = (method, p, body) => op(method, `/admin/v1/tenants/${A}${p}`, body);

async function ok(r, status, what) {
  r = await r;
  assert.equal(r.status, status, `${what}: ${r.status} ${r.body ?? r.text}`);
  return r.json ?? (r.text ? JSON.parse(r.text) : undefined);
}

before(async () => {
  fx = await startLoginFixture({
    tenants: {
      [A]: { users: [{ userName: ALICE, externalId: '00u-alice' }, { userName: ANN, externalId: '00u-ann' }] },
      [B]: { users: [{ userName: BOB, externalId: '00u-bob' }] },
    },
    accounts: { '00u-alice': { email: ALICE }, '00u-ann': { email: ANN }, '00u-bob': { email: BOB } },
  });
  [upA, upB] = await Promise.all([startCtlUpstream({ name: 'ua' }), startCtlUpstream({ name: 'ub' })]);
  sink = http.createServer((req, res) => { req.resume(); req.on('end', () => { res.writeHead(200); res.end(); }); });
  await new Promise((r) => sink.listen(0, '127.0.0.1', r));

  for (const [t, up] of [[A, upA], [B, upB]]) {
    await ok(fx.t[t].admin('PUT', `/connectors/${C}`, { url: up.url, auth: { type: 'header', name: 'X-Key', value: `key-${t}` } }), 201, `connector of ${t}`);
    await ok(fx.t[t].admin('PUT', '/policy', POLICY), 200, `policy of ${t}`);
    await fx.t[t].setSettings({ self_service_tokens: true });
  }

  // ---- A: one of everything the routes address
  a.alice = fx.t[A].users[ALICE];
  a.ann = fx.t[A].users[ANN];
  a.group = await fx.t[A].scim.createGroup('eng', [a.alice.id]);
  a.scimToken = await ok(adminA('POST', '/scim-tokens', { name: 'second' }), 201, 'A scim token');
  a.adminToken = await ok(adminA('POST', '/admin-tokens', { name: 'a-admin' }), 201, 'A admin token');
  a.empToken = await ok(adminA('POST', '/tokens', { user: ALICE, name: 'laptop', expires_in_days: 30 }), 201, 'A employee token');
  const ab = fx.browser();
  a.oauth = await grant(fx, ab, { tenant: A, login: '00u-alice' });
  a.grants = (await ok(adminA('GET', `/users/${a.alice.id}/grants`), 200, 'A grants')).grants;
  assert.equal(a.grants.length, 1);
  await ok(adminA('PUT', '/audit/sink', { url: `http://127.0.0.1:${sink.address().port}/in`, format: 'ndjson' }), 201, 'A sink');
  a.session = await rawSession(`${fx.gw.url}/t/${A}/mcp`, a.empToken.token);

  // ---- B: every kind of credential
  const tb = await ok(op('GET', `/admin/v1/tenants/${B}/scim-tokens`), 200, 'B scim tokens');
  assert.ok(tb.tokens.length >= 1);
  b.scim = fx.t[B].scim.token;
  b.admin = (await ok(op('POST', `/admin/v1/tenants/${B}/admin-tokens`, { name: 'b-admin' }), 201, 'B admin token')).token;
  b.employee = (await ok(op('POST', `/admin/v1/tenants/${B}/tokens`, { user: BOB, name: 'laptop', expires_in_days: 30 }), 201, 'B employee token')).token;
  const bb = fx.browser();
  b.oauthGrant = await grant(fx, bb, { tenant: B, login: '00u-bob' }); // leaves B's browser session in bb
  b.oauth = b.oauthGrant.access_token;
  b.refresh = b.oauthGrant.refresh_token;
  b.browser = bb;
  const bme = await me(bb, fx, B);
  assert.equal(bme.status, 200, `bob is signed in at B: ${bme.text}`);
  b.csrf = bme.json.csrf;
  b.cookies = [...bb.cookies(fx.gw.url)];
  assert.ok(b.cookies.some(([n]) => n.includes(B)), `B's session cookie: ${JSON.stringify(b.cookies.map(([n]) => n))}`);
  b.sessAgg = await rawSession(`${fx.gw.url}/t/${B}/mcp`, b.employee);
  b.sessOne = await rawSession(`${fx.gw.url}/t/${B}/mcp/${C}`, b.employee);
  // B's credentials do work at B (so a refusal at A is about the tenant)
  assert.equal((await b.sessAgg.request('tools/list')).status, 200);
  assert.equal((await send('GET', `/t/${B}/scim/v2/Users`, { authorization: `Bearer ${b.scim}` })).status, 200);
  assert.equal((await send('GET', `/admin/v1/tenants/${B}/connectors`, { authorization: `Bearer ${b.admin}` })).status, 200);
  assert.equal((await send('POST', `/t/${B}/mcp`, mcpJson(`Bearer ${b.oauth}`), JSON.stringify(initBody()))).status, 200);
});

after(async () => {
  await upA?.stop?.().catch(() => {});
  await upB?.stop?.().catch(() => {});
  sink?.close();
  if (fx) await fx.stop();
});

function initBody(id = 1) {
  return { jsonrpc: '2.0', id, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'iso', version: '1' } } };
}
function mcpJson(authorization) {
  const h = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
  if (authorization) h.authorization = authorization;
  return h;
}

// ------------------------------------------------------------ credentials of B

/** Each kind: (route) → headers it adds; `secret` stands in where a route takes a credential in its body. */
function credentials() {
  const bearer = (tok) => () => ({ authorization: `Bearer ${tok}` });
  const cookieHeader = (rename) => b.cookies.map(([n, v]) => `${rename ? n.replaceAll(B, A) : n}=${v}`).join('; ');
  const cookie = (rename) => () => ({ cookie: cookieHeader(rename), 'x-csrf-token': b.csrf, origin: fx.gw.url });
  return [
    { kind: 'scim', headers: bearer(b.scim), secret: b.scim },
    { kind: 'scim-basic', headers: () => ({ authorization: 'Basic ' + Buffer.from(`okta:${b.scim}`).toString('base64') }), secret: b.scim },
    { kind: 'admin', headers: bearer(b.admin), secret: b.admin },
    { kind: 'employee', headers: bearer(b.employee), secret: b.employee },
    { kind: 'oauth', headers: bearer(b.oauth), secret: b.refresh },
    {
      kind: 'session', secret: b.employee,
      headers: (r) => {
        const s = r.connector ? b.sessOne : b.sessAgg;
        return { authorization: `Bearer ${b.employee}`, 'mcp-session-id': s.sessionId, 'mcp-protocol-version': s.protocolVersion };
      },
    },
    { kind: 'cookie', headers: cookie(false), secret: b.csrf },
    { kind: 'cookie-as-a', headers: cookie(true), secret: b.csrf },
  ];
}

// ------------------------------------------------------------ routes of A

// an approval request id of A's shape (the refusal comes before the lookup)
const APPROVAL_ID = '0123456789abcdef0123456789abcdef';

function routes() {
  const out = [];
  const json = (v) => ({ ct: 'application/json', body: JSON.stringify(v) });
  const scimBody = (v) => ({ ct: 'application/scim+json; charset=utf-8', body: JSON.stringify(v) });

  // SCIM
  const S = `/t/${A}/scim/v2`;
  const newUser = { schemas: [URN.USER], userName: 'mallory@a.example', active: true };
  const userPut = { schemas: [URN.USER], userName: ALICE, externalId: '00u-alice', active: false };
  const deact = { schemas: [URN.PATCH], Operations: [{ op: 'replace', value: { active: false } }] };
  const grpPatch = { schemas: [URN.PATCH], Operations: [{ op: 'add', path: 'members', value: [{ value: a.ann.id }] }] };
  out.push(
    { family: 'scim', method: 'GET', path: `${S}/Users` },
    { family: 'scim', method: 'GET', path: `${S}/Users?filter=${encodeURIComponent(`userName eq "${ALICE}"`)}` },
    { family: 'scim', method: 'POST', path: `${S}/Users`, ...scimBody(newUser) },
    { family: 'scim', method: 'GET', path: `${S}/Users/${a.alice.id}` },
    { family: 'scim', method: 'PUT', path: `${S}/Users/${a.alice.id}`, ...scimBody(userPut) },
    { family: 'scim', method: 'PATCH', path: `${S}/Users/${a.alice.id}`, ...scimBody(deact) },
    { family: 'scim', method: 'DELETE', path: `${S}/Users/${a.ann.id}` },
    { family: 'scim', method: 'GET', path: `${S}/Groups` },
    { family: 'scim', method: 'POST', path: `${S}/Groups`, ...scimBody({ schemas: [URN.GROUP], displayName: 'mallory' }) },
    { family: 'scim', method: 'GET', path: `${S}/Groups/${a.group.id}` },
    { family: 'scim', method: 'PUT', path: `${S}/Groups/${a.group.id}`, ...scimBody({ schemas: [URN.GROUP], displayName: 'eng', members: [] }) },
    { family: 'scim', method: 'PATCH', path: `${S}/Groups/${a.group.id}`, ...scimBody(grpPatch) },
    { family: 'scim', method: 'DELETE', path: `${S}/Groups/${a.group.id}` },
    { family: 'scim', method: 'POST', path: `${S}/Bulk`, ...scimBody({ schemas: ['urn:ietf:params:scim:api:messages:2.0:BulkRequest'], Operations: [] }) },
  );

  // MCP, aggregated and one connector
  for (const [p, connector] of [[`/t/${A}/mcp`, false], [`/t/${A}/mcp/${C}`, true]]) {
    const call = { jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: connector ? 'echo' : `${C}__echo`, arguments: { message: 'x' } } };
    out.push(
      { family: 'mcp', connector, method: 'POST', path: p, ...json(initBody()), accept: true },
      { family: 'mcp', connector, method: 'POST', path: p, ...json({ jsonrpc: '2.0', id: 2, method: 'tools/list' }), accept: true },
      { family: 'mcp', connector, method: 'POST', path: p, ...json(call), accept: true },
      { family: 'mcp', connector, method: 'GET', path: p, accept: true },
      { family: 'mcp', connector, method: 'DELETE', path: p, accept: true },
    );
  }

  // the admin API of tenant A (README "Admin API")
  const T = `/admin/v1/tenants/${A}`;
  const ad = (method, p, body) => ({ family: 'admin', method, path: T + p, ...(body === undefined ? {} : json(body)) });
  const cid = encodeURIComponent(a.oauth.client_id);
  const pinned = 'https://client.a.example/meta.json';
  out.push(
    ad('GET', ''), ad('PATCH', '', { settings: { self_service_tokens: false } }), ad('PATCH', '', { name: 'Mallory' }), ad('DELETE', ''),
    ad('GET', '/scim-tokens'), ad('POST', '/scim-tokens', { name: 'mallory' }), ad('DELETE', `/scim-tokens/${a.scimToken.token_id ?? a.scimToken.id}`),
    ad('GET', '/admin-tokens'), ad('POST', '/admin-tokens', { name: 'mallory' }), ad('DELETE', `/admin-tokens/${a.adminToken.id}`),
    ad('GET', '/tokens'), ad('POST', '/tokens', { user: ALICE, name: 'mallory', expires_in_days: 1 }), ad('DELETE', `/tokens/${a.empToken.id}`),
    ad('GET', '/connectors'), ad('GET', `/connectors/${C}`),
    ad('PUT', `/connectors/${C}`, { url: upB.url, auth: { type: 'none' } }), ad('PUT', '/connectors/mallory', { url: upB.url, auth: { type: 'none' } }),
    ad('DELETE', `/connectors/${C}`), ad('POST', `/connectors/${C}/rediscover`, {}),
    ad('GET', '/policy'), ad('PUT', '/policy', { version: 1, default: 'allow', rules: [] }),
    ad('GET', '/oidc'), ad('PUT', '/oidc', { issuer: fx.okta.issuer, client_id: 'mallory', client_secret: 'mallory-secret' }), ad('DELETE', '/oidc'),
    ad('GET', '/revocations'),
    ad('GET', `/explain?user=${encodeURIComponent(ALICE)}&connector=${C}&tool=echo`),
    ad('GET', '/audit'), ad('GET', '/audit?limit=1000'), ad('GET', '/audit/export'),
    ad('GET', '/audit/sink'), ad('PUT', '/audit/sink', { url: `http://127.0.0.1:${sink.address().port}/mallory` }), ad('DELETE', '/audit/sink'),
    ad('GET', '/users'), ad('GET', `/users?filter=${encodeURIComponent(`userName eq "${ALICE}"`)}`), ad('GET', `/users/${a.alice.id}`),
    ad('POST', `/users/${a.alice.id}/revoke`, { reason: 'mallory' }), ad('POST', `/users/${encodeURIComponent(ALICE)}/revoke`, {}),
    ad('POST', `/users/${a.alice.id}/restore`, {}),
    ad('GET', `/users/${a.alice.id}/grants`), ad('DELETE', `/users/${a.alice.id}/grants/${a.grants[0].id}`), ad('DELETE', `/users/${a.alice.id}/grants`),
    ad('GET', `/users/${a.alice.id}/connections`), ad('DELETE', `/users/${a.alice.id}/connections/${C}`), ad('DELETE', `/users/${a.alice.id}/connections`),
    ad('GET', '/groups'), ad('GET', `/groups/${a.group.id}`),
    ad('GET', '/oauth-clients'), ad('GET', `/oauth-clients/${cid}`), ad('DELETE', `/oauth-clients/${cid}`),
    ad('GET', `/oauth-clients/resolve?client_id=${cid}`),
    ad('PUT', `/oauth-clients/${encodeURIComponent(pinned)}/block`), ad('DELETE', `/oauth-clients/${encodeURIComponent(pinned)}/block`),
    ad('GET', '/approvals'), ad('GET', `/approvals?state=pending`), ad('GET', `/approvals/${APPROVAL_ID}`),
    ad('POST', `/approvals/${APPROVAL_ID}/cancel`, {}),
    ad('PUT', '/oauth-clients', { client_id: pinned, document: { client_id: pinned, client_name: 'Mallory', redirect_uris: ['http://127.0.0.1/callback'] } }),
  );

  // the employee page (a session of A first), sign-out, connect
  const pg = (method, p, body, extra = {}) => ({ family: 'page', method, path: `/t/${A}${p}`, ...(body === undefined ? {} : json(body)), ...extra });
  out.push(
    pg('GET', '/api/me'),
    pg('POST', '/api/tokens', { name: 'mallory', expires_days: 1 }),
    pg('DELETE', `/api/tokens/${a.empToken.id}`),
    pg('DELETE', `/api/grants/${a.grants[0].id}`),
    pg('PUT', `/api/connections/${C}`, { key: 'mallory' }),
    pg('DELETE', `/api/connections/${C}`),
    // nothing to end without a session of A: 303 back to A's page
    pg('POST', '/logout', undefined, { redirectTo: new RegExp(`^(${fx.gw.url})?/t/${A}/$`) }),
    pg('POST', '/signout-everywhere', undefined, { redirectTo: new RegExp(`^(${fx.gw.url})?/t/${A}/$`) }),
    // a reviewer's view and decisions are done with A's own employee token
    // or A's browser session; the page and its list need A's session
    pg('GET', '/api/approvals'),
    pg('GET', '/approvals', undefined, { redirectTo: new RegExp(`^(${fx.gw.url})?/t/${A}/login\\b`) }),
    pg('GET', `/approvals/${APPROVAL_ID}`),
    pg('POST', `/approvals/${APPROVAL_ID}/approve`, { reason: 'mallory' }),
    pg('POST', `/approvals/${APPROVAL_ID}/deny`, {}),
    // connecting needs A's sign-in first
    pg('GET', `/connect/${C}`, undefined, { redirectTo: new RegExp(`^(${fx.gw.url})?/t/${A}/login\\b`) }),
  );

  // A's OAuth token endpoint with B's credential as the refresh token
  out.push({
    family: 'oauth', method: 'POST', path: `/t/${A}/oauth/token`, ct: 'application/x-www-form-urlencoded',
    form: (cred) => new URLSearchParams({ grant_type: 'refresh_token', refresh_token: cred.secret, client_id: b.oauthGrant.client_id }).toString(),
  });
  return out;
}

// ------------------------------------------------------------ A's data

async function snapshot() {
  await sleep(300); // the audit thread's group commit (audit_batch_ms 50)
  const get = async (p) => {
      const r = await adminA('GET', p);
    return { status: r.status, json: r.json };
  };
  const s = {};
  for (const p of ['', '/scim-tokens', '/admin-tokens', '/tokens', '/connectors', `/connectors/${C}`, '/policy', '/oidc',
    '/revocations', '/users', `/users/${a.alice.id}`, `/users/${a.ann.id}`, `/users/${a.alice.id}/grants`,
    `/users/${a.alice.id}/connections`, '/groups', `/groups/${a.group.id}`, '/oauth-clients', '/approvals',
    `/explain?user=${encodeURIComponent(ALICE)}&connector=${C}&tool=echo`]) {
    s[p] = await get(p);
  }
  const sinkGet = await get('/audit/sink');
  delete sinkGet.json?.delivery; // moves as records are delivered
  s['/audit/sink'] = sinkGet;
  // SCIM's own view (A's own token), with versions
  for (const p of ['/Users', '/Groups']) {
    const r = await fx.t[A].scim.get(p);
    s[`scim ${p}`] = { status: r.status, json: r.json };
  }
  const ex = await fetch(`${fx.gw.url}/admin/v1/tenants/${A}/audit/export`, { headers: { authorization: `Bearer ${fx.op.token}` } });
  const text = await ex.text();
  assert.equal(ex.status, 200, text);
  const audit = text.split('\n').filter(Boolean).map((l) => JSON.parse(l));
  return { s, audit };
}

// ------------------------------------------------------------ the matrix

function cellHeaders(r, cred) {
  const h = {};
  if (r.ct) h['content-type'] = r.ct;
  if (r.accept) h.accept = 'application/json, text/event-stream';
  if (r.family === 'scim') h.accept = 'application/scim+json';
  return { ...h, ...cred.headers(r) };
}

/**
 * What the route must answer to a credential that is not A's: the admin
 * API 403 to a tenant admin token of another tenant ("token of another
 * tenant") and 401 to anything that is no admin token; SCIM, MCP and the
 * page's API 401; a sign-out without a session of A 303 to A's page;
 * connect 303 to A's sign-in; the token endpoint 400 invalid_grant.
 * Null when the answer is that, else what was wrong.
 */
function verdict(r, c, res) {
  const loc = String(res.headers.location ?? '');
  const got = `${res.status} ${loc ? `→ ${loc} ` : ''}${String(res.body).slice(0, 200)}`;
  if (res.status >= 200 && res.status < 300) return `ACCEPTED: ${got}`;
  if (r.redirectTo) return res.status === 303 && r.redirectTo.test(loc) ? null : `expected 303 to ${r.redirectTo}, got ${got}`;
  if (r.family === 'oauth') {
    let e;
    try { e = JSON.parse(res.body).error; } catch { /* not JSON */ }
    return res.status === 400 && e === 'invalid_grant' ? null : `expected 400 invalid_grant, got ${got}`;
  }
  const want = r.family === 'admin' && c.kind === 'admin' ? 403 : 401;
  return res.status === want ? null : `expected ${want}, got ${got}`;
}

test('every route of tenant A refuses every credential of tenant B; A is unchanged', async () => {
  const creds = credentials();
  const rs = routes();
  const before = await snapshot();
  const upABefore = upA.requests().length;
  const t0 = Date.now();

  const cells = [];
  for (const r of rs) for (const c of creds) cells.push({ r, c });
  const results = [];
  for (let i = 0; i < cells.length; i += BATCH) {
    const batch = cells.slice(i, i + BATCH);
    results.push(...await Promise.all(batch.map(async ({ r, c }) => {
      const body = r.form ? r.form(c) : r.body;
      const res = await send(r.method, r.path, cellHeaders(r, c), body);
      return { r, c, res };
    })));
  }
  const ms = Date.now() - t0;

  const failures = [];
  const byStatus = {};
  for (const { r, c, res } of results) {
    byStatus[res.status] = (byStatus[res.status] ?? 0) + 1;
    const v = verdict(r, c, res);
    if (v) failures.push(`${r.method} ${r.path} with B's ${c.kind}: ${v}`);
  }
  const after = await snapshot();
  console.log(`# isolation matrix: ${rs.length} routes of tenant ${A} × ${creds.length} credential kinds of tenant ${B} = ` +
    `${cells.length} requests in ${ms} ms; statuses ${JSON.stringify(byStatus)}; not refused: ${failures.length}`);
  assert.deepEqual(failures, [], `routes of A that did not refuse B's credential:\n${failures.join('\n')}`);
  // the README's resilience table says how large the matrix is
  const quoted = /every route of tenant A \((\d+)\) × every credential kind of tenant B \((\d+)\)/
    .exec(fs.readFileSync(`${REPO_ROOT}/README.md`, 'utf8'));
  assert.ok(quoted, 'the README quotes the matrix');
  assert.deepEqual([Number(quoted[1]), Number(quoted[2])], [rs.length, creds.length], 'README: routes × credential kinds');

  // A's data is unchanged
  for (const k of Object.keys(before.s)) assert.deepEqual(after.s[k], before.s[k], `A's ${k || 'tenant'} is unchanged`);
  // A's audit chain: the old records as they were; new ones only of refused requests
  assert.deepEqual(after.audit.slice(0, before.audit.length), before.audit, "A's earlier audit records are unchanged");
  const added = after.audit.slice(before.audit.length);
  // (a sign-out without a session of A ends nothing and answers 303 to A's
  // page: recorded as such, with no actor)
  const noopSignOut = (x) => x.status === 303 && !x.actor && x.method === 'POST' &&
    (x.path === `/t/${A}/logout` || x.path === `/t/${A}/signout-everywhere`);
  if (process.env.ISOLATION_DEBUG) {
    const k = {};
    for (const x of added) { const key = `${x.kind} ${x.status} ${String(x.actor).replace(/:.*/, ':…')}`; k[key] = (k[key] ?? 0) + 1; }
    console.log('# added audit records', JSON.stringify(k));
    const m = {};
    for (const { r, c, res } of results) { const key = `${r.family}/${c.kind}`; (m[key] ??= {})[res.status] = (m[key][res.status] ?? 0) + 1; }
    console.log('# statuses by family/kind', JSON.stringify(m));
  }
  const bad = added.filter((x) => !(Number.isInteger(x.status) && x.status >= 400 && x.status < 500) && !noopSignOut(x));
  assert.deepEqual(bad, [], "A's audit chain grew only by records of refused (4xx) requests");
  // nothing reached A's upstream
  assert.equal(upA.requests().length, upABefore, "A's upstream received no request during the matrix");

  // A's own credentials still work
  const l = await a.session.request('tools/list');
  assert.equal(l.status, 200, `A's MCP session still serves: ${l.status} ${l.body}`);
  assert.ok(l.messages.some((m) => m.result?.tools?.some((t) => t.name === `${C}__echo`)), l.body);
  const init = await send('POST', `/t/${A}/mcp`, mcpJson(`Bearer ${a.oauth.access_token}`), JSON.stringify(initBody()));
  assert.equal(init.status, 200, `A's OAuth access token still works: ${init.body}`);
  const ad = await send('GET', `/admin/v1/tenants/${A}/connectors`, { authorization: `Bearer ${a.adminToken.token}` });
  assert.equal(ad.status, 200, `A's admin token still works: ${ad.body}`);
  const sc = await send('GET', `/t/${A}/scim/v2/Users`, { authorization: `Bearer ${a.scimToken.token}`, accept: 'application/scim+json' });
  assert.equal(sc.status, 200, `A's second SCIM token still works: ${sc.body}`);

  // and B's were live all along (so every refusal above was about the
  // tenant, not a dead credential): A's DELETE and sign-out ended nothing of B's
  for (const s of [b.sessAgg, b.sessOne]) assert.equal((await s.request('tools/list')).status, 200, "B's MCP session still serves");
  assert.equal((await me(b.browser, fx, B)).status, 200, "B's browser session is still signed in at B");
  assert.equal((await send('GET', `/admin/v1/tenants/${B}/policy`, { authorization: `Bearer ${b.admin}` })).status, 200);
  assert.equal((await send('GET', `/t/${B}/scim/v2/Groups`, { authorization: `Bearer ${b.scim}` })).status, 200);
});

test("B's tenant admin token lists only B's tenant", async () => {
  const r = await send('GET', '/admin/v1/tenants', { authorization: `Bearer ${b.admin}` });
  assert.equal(r.status, 200, r.body);
  const ids = JSON.parse(r.body).tenants.map((t) => t.id);
  assert.deepEqual(ids, [B]);
});

test('no credential at all is refused everywhere too (the matrix is not vacuous about authentication)', async () => {
  // the same routes without any credential: every one refused; and A's
  // own credential of the route's kind is accepted on a few (sanity)
  const rs = routes();
  const none = { kind: 'none', headers: () => ({}), secret: 'x' };
  const res = await Promise.all(rs.map(async (r) => ({ r, res: await send(r.method, r.path, cellHeaders(r, none), r.form ? r.form(none) : r.body) })));
  const failures = res.map(({ r, res: x }) => [r, verdict(r, none, x)]).filter(([, v]) => v).map(([r, v]) => `${r.method} ${r.path}: ${v}`);
  assert.deepEqual(failures, []);
  // A's own credentials get through on reads of each family
  assert.equal((await send('GET', `/t/${A}/scim/v2/Users/${a.alice.id}`, { authorization: `Bearer ${a.scimToken.token}`, accept: 'application/scim+json' })).status, 200);
  assert.equal((await send('GET', `/admin/v1/tenants/${A}/policy`, { authorization: `Bearer ${a.adminToken.token}` })).status, 200);
  assert.equal((await send('POST', `/t/${A}/mcp/${C}`, mcpJson(`Bearer ${a.empToken.token}`), JSON.stringify(initBody()))).status, 200);
});
