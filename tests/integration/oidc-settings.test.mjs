// Tenant OIDC settings (issue 16, step 1): PUT/GET/DELETE
// /admin/v1/tenants/{t}/oidc, validation naming the field, the client secret
// never in a reply, a log line or the store file in plaintext, tenant
// isolation, and the settings purged with their tenant.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { startGateway, waitFor } from './lib/gateway.mjs';
import {
  adminClient, assertJsonError, createTenant, cli, assertExit, operatorToken, recreateAfterPurge, findSecretsInFiles, RFC3339_RE,
} from './lib/admin.mjs';

const T = '/admin/v1/tenants';
const SECRET = 'oidc-client-secret-7f3a9c1e5b2d';
const SECRET2 = 'second-oidc-secret-0d4e8b6a2c9f';
const JSON_ERR_SECRET = 'jsonerr-secret-5c1d2e3f4a6b';
const ALL_SECRETS = [SECRET, SECRET2, JSON_ERR_SECRET];
let gw, op;

const good = (over = {}) => ({
  issuer: 'https://acme.okta.com/', client_id: '0oa1b2c3d4', client_secret: SECRET,
  scopes: ['openid', 'profile', 'email'], subject_claim: 'sub', link_claim: 'sub', link_attribute: 'externalId',
  ...over,
});

function assertNoSecret(r) {
  for (const s of ALL_SECRETS) assert.ok(!r.body.includes(s), `the client secret is not in the reply: ${r.body}`);
}

before(async () => {
  gw = await startGateway();
  op = adminClient(gw.port, operatorToken(gw.dataDir));
  await createTenant(gw.port, op.token, 'oidc-a');
  await createTenant(gw.port, op.token, 'oidc-b');
});

after(async () => { if (gw) await gw.stop().catch(() => {}); });

test('no settings: GET answers 404; unknown tenant: 404 on GET, PUT and DELETE', async () => {
  assertJsonError(await op.get(`${T}/oidc-a/oidc`), 404);
  assertJsonError(await op.get(`${T}/no-such/oidc`), 404, { message: /tenant/ });
  assertJsonError(await op.call('PUT', `${T}/no-such/oidc`, good()), 404, { message: /tenant/ });
  assertJsonError(await op.del(`${T}/no-such/oidc`), 404);
  assertJsonError(await op.del(`${T}/oidc-a/oidc`), 404);
  const r = await op.post(`${T}/oidc-a/oidc`, good());
  assertJsonError(r, 405);
  assert.equal(r.headers.allow, 'GET, PUT, DELETE');
});

test('PUT creates (201), GET returns the settings without the secret, a second PUT updates (200)', async () => {
  const p = await op.call('PUT', `${T}/oidc-a/oidc`, good());
  assert.equal(p.status, 201, p.body);
  assertNoSecret(p);
  assert.equal(p.json.issuer, 'https://acme.okta.com', 'trailing slash normalised away');
  assert.equal(p.json.client_secret_set, true);
  assert.equal(p.json.client_secret, undefined);
  const g = await op.get(`${T}/oidc-a/oidc`);
  assert.equal(g.status, 200, g.body);
  assertNoSecret(g);
  assert.deepEqual(Object.keys(g.json).sort(), ['client_id', 'client_secret_set', 'created', 'issuer', 'link_attribute',
    'link_claim', 'logout_issuer', 'scopes', 'subject_claim', 'updated']);
  assert.equal(g.json.logout_issuer, 'https://acme.okta.com', 'derived: the issuer\'s origin');
  assert.equal(g.json.client_id, '0oa1b2c3d4');
  assert.deepEqual(g.json.scopes, ['openid', 'profile', 'email']);
  assert.equal(g.json.subject_claim, 'sub');
  assert.equal(g.json.link_claim, 'sub');
  assert.equal(g.json.link_attribute, 'externalId');
  assert.match(g.json.created, RFC3339_RE);

  // the secret kept when a PUT omits it, while the issuer stays on its origin
  const same = await op.call('PUT', `${T}/oidc-a/oidc`, { issuer: 'https://ACME.okta.com:443/oauth2/default', client_id: '0oa1b2c3d4' });
  assert.equal(same.status, 200, same.body);
  assert.equal(same.json.client_secret_set, true, 'the same origin keeps the stored secret');
  // ... never to another origin: the secret would be sent to that issuer's token endpoint
  const entra = {
    issuer: 'https://login.microsoftonline.com/tid/v2.0', client_id: 'entra-app', subject_claim: 'oid', link_claim: 'oid',
  };
  for (const issuer of [entra.issuer, 'https://acme.okta.com:8443/oauth2/default', 'https://acme.okta.com.evil.example/oauth2/default']) {
    const moved = await op.call('PUT', `${T}/oidc-a/oidc`, { ...entra, issuer });
    assert.equal(moved.status, 400, `${issuer}: ${moved.body}`);
    assert.match(moved.json.message, /"client_secret" is required: "issuer" moves to another origin/);
    assertNoSecret(moved);
  }
  const kept = await op.get(`${T}/oidc-a/oidc`);
  assert.equal(kept.json.issuer, 'https://acme.okta.com:443/oauth2/default', 'a refused PUT changes nothing');
  // defaults and Entra-style linking, the secret given again for the new issuer
  const u = await op.call('PUT', `${T}/oidc-a/oidc`, { ...entra, client_secret: SECRET });
  assert.equal(u.status, 200, u.body);
  assert.equal(u.json.client_secret_set, true);
  assert.deepEqual(u.json.scopes, ['openid', 'profile', 'email'], 'default scopes');
  assert.equal(u.json.subject_claim, 'oid');
  assert.equal(u.json.link_attribute, 'externalId', 'default link attribute');
  assert.equal(u.json.created, g.json.created, 'created is kept');
  const g2 = await op.get(`${T}/oidc-a/oidc`);
  assert.equal(g2.json.client_secret_set, true);
  assert.equal(g2.json.issuer, 'https://login.microsoftonline.com/tid/v2.0');

  // a new secret replaces the old; loopback http issuer allowed by the egress policy of the tests
  const s = await op.call('PUT', `${T}/oidc-a/oidc`, good({ issuer: 'http://127.0.0.1:9999/oidc/', client_secret: SECRET2 }));
  assert.equal(s.status, 200, s.body);
  assert.equal(s.json.issuer, 'http://127.0.0.1:9999/oidc');
  assertNoSecret(s);
});

test('validation: every problem is a 400 naming its field, and nothing is written', async () => {
  await createTenant(gw.port, op.token, 'oidc-v');
  const put = (body, o) => op.call('PUT', `${T}/oidc-v/oidc`, body, o);
  const cases = [
    [{ ...good(), extra: 1 }, /unknown field "extra"/],
    [good({ issuer: 42 }), /"issuer"/],
    [(() => { const b = good(); delete b.issuer; return b; })(), /"issuer" is required/],
    [good({ issuer: 'ftp://acme.okta.com' }), /"issuer"/],
    [good({ issuer: 'acme.okta.com' }), /"issuer"/],
    [good({ issuer: 'http://acme.okta.com' }), /"issuer".*https/],
    [good({ issuer: 'http://10.0.0.1' }), /"issuer".*loopback/],
    [good({ issuer: 'https://acme.okta.com/?x=1' }), /"issuer".*query/],
    [good({ issuer: 'https://acme.okta.com/#f' }), /"issuer".*fragment/],
    [good({ issuer: 'https://user@acme.okta.com' }), /"issuer"/],
    [good({ issuer: 'https://acme okta.com' }), /"issuer"/],
    [good({ client_id: '' }), /"client_id"/],
    [good({ client_id: 7 }), /"client_id"/],
    [good({ client_id: 'x'.repeat(256) }), /"client_id"/],
    [(() => { const b = good(); delete b.client_id; return b; })(), /"client_id" is required/],
    [good({ client_secret: '' }), /"client_secret"/],
    [good({ client_secret: 12345 }), /"client_secret"/],
    [good({ client_secret: 's'.repeat(1025) }), /"client_secret"/],
    [good({ scopes: 'openid' }), /"scopes"/],
    [good({ scopes: [] }), /"scopes"/],
    [good({ scopes: ['profile', 'email'] }), /"scopes" must include "openid"/],
    [good({ scopes: ['openid', 3] }), /"scopes"/],
    [good({ scopes: ['openid', 'two words'] }), /"scopes"/],
    [good({ subject_claim: '' }), /"subject_claim"/],
    [good({ subject_claim: 'a-b' }), /"subject_claim"/],
    [good({ subject_claim: 'x'.repeat(65) }), /"subject_claim"/],
    [good({ link_claim: 5 }), /"link_claim"/],
    [good({ link_claim: 'em ail' }), /"link_claim"/],
    [good({ link_attribute: 'email' }), /"link_attribute"/],
    [good({ link_attribute: null }), /"link_attribute"/],
  ];
  for (const [body, re] of cases) {
    const r = await put(body);
    assertJsonError(r, 400, { message: re });
    assertNoSecret(r);
  }
  // several problems at once are all named
  const many = await put(good({ client_id: '', scopes: ['email'], bogus: true }));
  assertJsonError(many, 400, { message: /"client_id".*"scopes".*|unknown field "bogus"/ });
  assert.match(many.json.message, /unknown field "bogus"/);
  assert.match(many.json.message, /"client_id"/);
  assert.match(many.json.message, /"scopes"/);
  // not JSON / not an object / duplicate key; the error never quotes the body (it may hold the secret)
  const bad = await put(undefined, { raw: `{"issuer":"https://a.example","client_secret":"${JSON_ERR_SECRET}` });
  assertJsonError(bad, 400, { error: 'invalid_json' });
  assertNoSecret(bad);
  const bad2 = await put(undefined, { raw: `{"client_secret":${JSON_ERR_SECRET}}` });
  assertJsonError(bad2, 400, { error: 'invalid_json' });
  assertNoSecret(bad2);
  assertJsonError(await put(['openid']), 400, { error: 'invalid_json', message: /object/ });
  assertJsonError(await put(undefined, { raw: '{"client_id":"a","client_id":"b"}' }), 400, { error: 'invalid_json' });
  assertJsonError(await put(good(), { headers: { 'content-type': 'text/plain' } }), 415);
  // the first PUT needs the secret
  const ns = await put((() => { const b = good(); delete b.client_secret; return b; })());
  assertJsonError(ns, 400, { message: /"client_secret" is required/ });
  assertJsonError(await op.get(`${T}/oidc-v/oidc`), 404, { message: /no OIDC settings/ });
  // oversize body: the router's cap
  const big = await put(good({ client_id: 'x'.repeat(2 * 1024 * 1024) }));
  assert.equal(big.status, 413, big.body);
});

test('an http issuer on loopback is refused when the egress policy does not allow loopback', async () => {
  const g2 = await startGateway({ egressAllow: '' });
  try {
    const op2 = adminClient(g2.port, operatorToken(g2.dataDir));
    await createTenant(g2.port, op2.token, 'eg');
    const r = await op2.call('PUT', `${T}/eg/oidc`, good({ issuer: 'http://127.0.0.1:8080' }));
    assertJsonError(r, 400, { error: 'egress_refused', message: /"issuer".*egress_allow/ });
    const r6 = await op2.call('PUT', `${T}/eg/oidc`, good({ issuer: 'https://10.1.2.3' }));
    assertJsonError(r6, 400, { error: 'egress_refused', message: /"issuer"/ });
    const ok = await op2.call('PUT', `${T}/eg/oidc`, good());
    assert.equal(ok.status, 201, ok.body);
  } finally {
    await g2.stop();
  }
});

test('tenant isolation: another tenant\'s admin token can neither read nor write the settings', async () => {
  const m = await op.post(`${T}/oidc-b/admin-tokens`, { name: 'b-admin' });
  assert.equal(m.status, 201, m.body);
  const tb = adminClient(gw.port, m.json.token);
  assertJsonError(await tb.get(`${T}/oidc-a/oidc`), 403);
  assertJsonError(await tb.call('PUT', `${T}/oidc-a/oidc`, good({ client_id: 'hijack' })), 403);
  assertJsonError(await tb.del(`${T}/oidc-a/oidc`), 403);
  const g = await op.get(`${T}/oidc-a/oidc`);
  assert.equal(g.status, 200, g.body);
  assert.notEqual(g.json.client_id, 'hijack');
  // its own tenant works with its own token
  const own = await tb.call('PUT', `${T}/oidc-b/oidc`, good({ client_id: 'b-client' }));
  assert.equal(own.status, 201, own.body);
  assert.equal((await tb.get(`${T}/oidc-b/oidc`)).json.client_id, 'b-client');
});

test('DELETE removes the settings (204, then 404); a new PUT needs a secret again', async () => {
  await createTenant(gw.port, op.token, 'oidc-d');
  assert.equal((await op.call('PUT', `${T}/oidc-d/oidc`, good())).status, 201);
  const d = await op.del(`${T}/oidc-d/oidc`);
  assert.equal(d.status, 204, d.body);
  assertJsonError(await op.get(`${T}/oidc-d/oidc`), 404);
  const b = good();
  delete b.client_secret;
  assertJsonError(await op.call('PUT', `${T}/oidc-d/oidc`, b), 400, { message: /"client_secret"/ });
});

test('deleting the tenant purges its settings: a re-created tenant has none', async () => {
  await createTenant(gw.port, op.token, 'oidc-p');
  assert.equal((await op.call('PUT', `${T}/oidc-p/oidc`, good())).status, 201);
  assert.equal((await op.del(`${T}/oidc-p`)).status, 202);
  await recreateAfterPurge(gw.port, op.token, 'oidc-p');
  assertJsonError(await op.get(`${T}/oidc-p/oidc`), 404);
  const b = good();
  delete b.client_secret;
  assertJsonError(await op.call('PUT', `${T}/oidc-p/oidc`, b), 400, { message: /"client_secret" is required/ });
});

test('the client secret is in no log line, not in plaintext in the store file, and the store checks clean', async () => {
  await waitFor(() => /OIDC settings/.test(gw.stderrText()), { what: 'an OIDC settings log line' });
  await gw.stop();
  const logs = gw.stderrText();
  for (const s of ALL_SECRETS) assert.ok(!logs.includes(s), `secret ${s} in the gateway's log`);
  const dataMdb = path.join(gw.dataDir, 'store', 'data.mdb');
  const bytes = await fsp.readFile(dataMdb);
  assert.ok(bytes.length > 0);
  assert.ok(bytes.includes(Buffer.from('0oa1b2c3d4')), 'the settings themselves are in the file (the scan works)');
  const { hits, scanned } = await findSecretsInFiles([gw.dataDir], ALL_SECRETS);
  assert.ok(scanned > 0);
  assert.deepEqual(hits, [], `plaintext OIDC secrets in the data directory: ${JSON.stringify(hits)}`);
  // offline: the sealed secrets unseal with the AAD they are bound to
  const chk = await cli(['store', 'check', '--data', gw.dataDir], { timeoutMs: 30000 });
  assertExit(chk, 0, `store check: ${chk.stdout} ${chk.stderr}`);
  for (const s of ALL_SECRETS) assert.ok(!(chk.stdout + chk.stderr).includes(s), 'secret in store check output');
  gw = null;
});
