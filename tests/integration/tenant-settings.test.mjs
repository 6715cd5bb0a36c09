// ci-variants: build-w1 build-asan-w2 (one loop plain, two loops under ASan; the plain two-loop run only repeated it — CI's 15 minutes)
// Tenant settings (issue 13 move 9): one validated settings document per
// tenant, in GET/PATCH /admin/v1/tenants/{id}.
//   1. GET shows every registered key with its effective value (the
//      defaults on a new tenant);
//   2. PATCH refuses unknown keys, wrong types and out-of-bounds values with
//      400 naming the key (and the bounds), leaving the stored document and
//      the name untouched; null puts a key back to its default;
//   3. sessions_per_user_max and session_idle_timeout_ms only tighten the
//      operator's values: a tenant at 1 session per user evicts the older
//      session while another tenant keeps two, a tenant asking for more than
//      the operator allows still gets the operator's cap, and a short tenant
//      idle timeout expires that tenant's sessions only;
//   4. a tenant admin token PATCHes its own tenant's settings, not another's;
//   5. settings survive a restart.
// Upstream: lib/ctl-upstream.mjs (one connector "ca" per tenant).
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { startGateway, sleep } from './lib/gateway.mjs';
import { setupTenant, rawSession } from './lib/mcp.mjs';
import { startCtlUpstream } from './lib/ctl-upstream.mjs';
import { adminClient, assertJsonError, createTenant, operatorToken } from './lib/admin.mjs';

const T = '/admin/v1/tenants';
const DEFAULTS = { approval_webhook_url: '', approver_groups: '', audit_redact: '', session_idle_timeout_ms: 0, sessions_per_user_max: 0, self_service_tokens: false, signin_max_age_ms: 604800000 };
const ALICE = 'alice@acme.com';

test('1. GET shows every registered setting with its effective value', async () => {
  const gw = await startGateway();
  const op = adminClient(gw.port, operatorToken(gw.dataDir));
  await createTenant(gw.port, op.token, 'acme');
  const g = await op.get(`${T}/acme`);
  assert.equal(g.status, 200, g.body);
  assert.deepEqual(g.json.settings, DEFAULTS, 'a new tenant shows the defaults');
  assert.equal(g.json.name, 'acme');
  await gw.stop();
});

test('2. PATCH validates the whole document: unknown key, wrong type, out of bounds → 400, nothing applied', async () => {
  const gw = await startGateway();
  const op = adminClient(gw.port, operatorToken(gw.dataDir));
  await createTenant(gw.port, op.token, 'acme', 'Acme');
  const ok = await op.patch(`${T}/acme`, { settings: { sessions_per_user_max: 5 } });
  assert.equal(ok.status, 200, ok.body);
  assert.deepEqual(ok.json.settings, { ...DEFAULTS, sessions_per_user_max: 5 }, 'the reply shows the settings in force');
  assert.equal(ok.json.name, 'Acme', 'a settings-only PATCH keeps the name');
  const stored = { ...DEFAULTS, sessions_per_user_max: 5 };

  const unknown = assertJsonError(await op.patch(`${T}/acme`, { settings: { sessions_per_user_max: 2, nope_ms: 1 } }), 400);
  assert.match(unknown.message, /unknown setting.*"nope_ms"/, unknown.message);
  assert.match(unknown.message, /session_idle_timeout_ms/, 'the message lists the known keys');
  const type = assertJsonError(await op.patch(`${T}/acme`, { settings: { session_idle_timeout_ms: '10s' } }), 400);
  assert.match(type.message, /"session_idle_timeout_ms" must be an integer/, type.message);
  assertJsonError(await op.patch(`${T}/acme`, { settings: { sessions_per_user_max: 1.5 } }), 400);
  assertJsonError(await op.patch(`${T}/acme`, { settings: { sessions_per_user_max: true } }), 400);
  const bounds = assertJsonError(await op.patch(`${T}/acme`, { settings: { sessions_per_user_max: 100001 } }), 400);
  assert.match(bounds.message, /"sessions_per_user_max".*out of bounds.*from 0 to 100000/, bounds.message);
  // below the operator's own floor (100 ms): refused like the config key would be
  const tiny = assertJsonError(await op.patch(`${T}/acme`, { settings: { session_idle_timeout_ms: 5 } }), 400);
  assert.match(tiny.message, /"session_idle_timeout_ms".*below 100/, tiny.message);
  const neg = assertJsonError(await op.patch(`${T}/acme`, { settings: { session_idle_timeout_ms: -1 } }), 400);
  assert.match(neg.message, /from 0 to \d+/, neg.message);
  assertJsonError(await op.patch(`${T}/acme`, { settings: [1] }), 400);
  assertJsonError(await op.patch(`${T}/acme`, { settings: null }), 400);
  // a valid name with an invalid setting: the name does not change either
  assertJsonError(await op.patch(`${T}/acme`, { name: 'Renamed', settings: { sessions_per_user_max: -3 } }), 400);
  let g = await op.get(`${T}/acme`);
  assert.deepEqual(g.json.settings, stored, 'every refused PATCH left the stored document as it was');
  assert.equal(g.json.name, 'Acme', 'and the name');

  // name and settings together; null goes back to the default
  const both = await op.patch(`${T}/acme`, { name: 'Acme Two', settings: { session_idle_timeout_ms: 60000 } });
  assert.equal(both.status, 200, both.body);
  assert.deepEqual(both.json.settings, { ...DEFAULTS, session_idle_timeout_ms: 60000, sessions_per_user_max: 5 });
  const reset = await op.patch(`${T}/acme`, { settings: { sessions_per_user_max: null } });
  assert.equal(reset.status, 200, reset.body);
  g = await op.get(`${T}/acme`);
  assert.deepEqual(g.json.settings, { ...DEFAULTS, session_idle_timeout_ms: 60000, sessions_per_user_max: 0 });
  assert.equal(g.json.name, 'Acme Two');
  assertJsonError(await op.patch(`${T}/no-such`, { settings: { sessions_per_user_max: 1 } }), 404);
  await gw.stop();
});

const use = (s) => s.request('tools/list', {});
function alive(res, what) {
  assert.equal(res.status, 200, `${what}: expected 200, got ${res.status} ${res.body}`);
}
function gone(res, what) {
  assert.equal(res.status, 404, `${what}: expected 404, got ${res.status} ${res.body}`);
  assert.equal(res.json?.error?.code, -32001, `${what}: ${res.body}`);
}

test('3. session limits per tenant only tighten the operator\'s', async () => {
  const gw = await startGateway({ args: ['--sessions-per-user-max', '2'] });
  const up = await startCtlUpstream({ name: 'ca' });
  const tenants = {};
  for (const id of ['acme', 'beta', 'gamma', 'delta']) {
    const t = await setupTenant(gw, { id, users: [ALICE] });
    const r = await t.putConnector('ca', { url: up.url, auth: { type: 'header', name: 'X-Key', value: 'k' } });
    assert.equal(r.status, 201, r.body);
    const m = await t.mintToken(ALICE);
    assert.equal(m.status, 201, m.body);
    tenants[id] = { t, token: m.token, url: `${gw.url}/t/${id}/mcp/ca` };
  }
  const op = adminClient(gw.port, operatorToken(gw.dataDir));
  for (const [id, settings] of [['acme', { sessions_per_user_max: 1 }], ['gamma', { sessions_per_user_max: 100 }],
    ['delta', { session_idle_timeout_ms: 500 }]]) {
    const p = await op.patch(`${T}/${id}`, { settings });
    assert.equal(p.status, 200, p.body);
  }
  const open = (id) => rawSession(tenants[id].url, tenants[id].token);
  const a1 = await open('acme'), b1 = await open('beta'), g1 = await open('gamma'), d1 = await open('delta');
  await sleep(1100);
  const a2 = await open('acme'), b2 = await open('beta'), g2 = await open('gamma');
  gone(await use(a1), 'acme (1 per user): the older session, evicted by the second');
  alive(await use(a2), 'acme: the newer session');
  alive(await use(b1), 'beta (operator cap 2): first session');
  alive(await use(b2), 'beta: second session');
  alive(await use(g1), 'gamma (asks 100, operator allows 2): first session');
  alive(await use(g2), 'gamma: second session');
  await sleep(1100);
  const g3 = await open('gamma');
  gone(await use(g1), 'gamma: a third session evicts the oldest, the operator\'s cap holds');
  alive(await use(g3), 'gamma: the newest');
  // delta's idle timeout (500 ms) is the tenant's; beta keeps the operator's (24 h)
  gone(await use(d1), 'delta: idle past its tenant\'s 500 ms');
  alive(await use(b1), 'beta: idle just as long, alive under the operator\'s timeout');
  // a delta session kept in use lives on
  const d2 = await open('delta');
  for (let i = 0; i < 6; i++) {
    await sleep(150);
    alive(await use(d2), `delta: a session in use (${i})`);
  }
  await gw.stop();
});

test('4. a tenant admin token PATCHes its own tenant\'s settings only', async () => {
  const gw = await startGateway();
  const op = adminClient(gw.port, operatorToken(gw.dataDir));
  await createTenant(gw.port, op.token, 'acme');
  await createTenant(gw.port, op.token, 'beta');
  const m = await op.post(`${T}/acme/admin-tokens`, { name: 'ci' });
  assert.equal(m.status, 201, m.body);
  const ta = adminClient(gw.port, m.json.token);
  const own = await ta.patch(`${T}/acme`, { settings: { sessions_per_user_max: 3 } });
  assert.equal(own.status, 200, own.body);
  assert.equal((await ta.get(`${T}/acme`)).json.settings.sessions_per_user_max, 3);
  assertJsonError(await ta.patch(`${T}/beta`, { settings: { sessions_per_user_max: 3 } }), 403);
  assertJsonError(await ta.get(`${T}/beta`), 403);
  assert.deepEqual((await op.get(`${T}/beta`)).json.settings, DEFAULTS, 'beta untouched');
  await gw.stop();
});

test('5. settings survive a restart', async () => {
  const gw = await startGateway();
  const op = adminClient(gw.port, operatorToken(gw.dataDir));
  await createTenant(gw.port, op.token, 'acme');
  const want = { session_idle_timeout_ms: 120000, sessions_per_user_max: 7 };
  assert.equal((await op.patch(`${T}/acme`, { settings: want })).status, 200);
  await gw.stop();
  const gw2 = await startGateway({ dataDir: gw.dataDir });
  const op2 = adminClient(gw2.port, operatorToken(gw2.dataDir));
  const g = await op2.get(`${T}/acme`);
  assert.equal(g.status, 200, g.body);
  assert.deepEqual(g.json.settings, { ...DEFAULTS, ...want });
  await gw2.stop();
});
