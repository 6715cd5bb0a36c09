// A tenant admin's ordinary mistake: a credential pasted into a
// connector's URL (https://user:password@host/mcp). curl would send it as
// Basic auth, but the URL is no sealed secret: it is stored in clear, shown
// by GET, written into the audit log's before → after of the change (which
// the tenant's SIEM receives) and named in log lines. Such a URL is refused
// with a message that says where the credential goes (auth, sealed) and
// does not repeat it — as the audit sink URL and the OIDC issuer already
// are. Real parts: the gateway binary with its audit log, a tenant admin
// token, a plain upstream (lib/ctl-upstream.mjs).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { startGateway, waitFor } from './lib/gateway.mjs';
import { api } from './lib/admin.mjs';
import { setupTenant } from './lib/mcp.mjs';
import { startCtlUpstream } from './lib/ctl-upstream.mjs';

const PW = 'pw-in-url-0f3c9a';
let gw, up, t, tenantAdmin, host;

before(async () => {
  gw = await startGateway({ args: ['--public-url', 'https://gw.example.test'] });
  up = await startCtlUpstream({ name: 'plain' });
  host = new URL(up.url).host;
  t = await setupTenant(gw, { users: ['alice@acme.com'] });
  const a = await t.admin('POST', '/admin-tokens', { name: 'tenant admin' });
  assert.equal(a.status, 201, a.body);
  tenantAdmin = (method, p, body) => api(gw.port, a.json.token, method, `/admin/v1/tenants/acme${p}`, body);
});

after(async () => {
  await gw?.stop().catch(() => {});
});

test('a connector URL with user info is refused, the password named nowhere; the stored connector is unchanged', async () => {
  let r = await tenantAdmin('PUT', '/connectors/crm', { url: `http://alice:${PW}@${host}/mcp` });
  assert.equal(r.status, 400, r.body);
  assert.equal(r.json.error, 'invalid_request');
  assert.match(r.json.message, /must not carry user information/);
  assert.ok(!r.body.includes(PW), 'the answer does not repeat the password');
  assert.equal((await tenantAdmin('GET', '/connectors/crm')).status, 404, 'nothing stored');

  // a good connector, then a PUT that would move it to a URL with user info
  r = await tenantAdmin('PUT', '/connectors/crm', { url: up.url, auth: { type: 'header', name: 'X-Key', value: 'sealed-key' } });
  assert.equal(r.status, 201, r.body);
  r = await tenantAdmin('PUT', '/connectors/crm', { url: `http://${PW}@${host}/mcp`, auth: { type: 'header', name: 'X-Key', value: 'sealed-key' } });
  assert.equal(r.status, 400, r.body);
  const g = await tenantAdmin('GET', '/connectors/crm');
  assert.equal(g.status, 200, g.body);
  assert.equal(g.json.url, up.url, 'the stored URL is unchanged');

  // the oauth endpoints too
  r = await tenantAdmin('PUT', '/connectors/crm2', {
    url: up.url,
    auth: { type: 'oauth', authorize_url: 'https://as.example.com/authorize', token_url: `https://client:${PW}@as.example.com/token`, client_id: 'c', token_auth: 'none' },
  });
  assert.equal(r.status, 400, r.body);
  assert.match(r.json.message, /auth\.token_url/);
  assert.ok(!r.body.includes(PW));

  // a discovering PUT is refused before anything is fetched
  const seen = up.requests().length;
  r = await tenantAdmin('PUT', '/connectors/crm3', { url: `http://alice:${PW}@${host}/mcp`, auth: { type: 'oauth', discover: true } });
  assert.equal(r.status, 400, r.body);
  assert.ok(!r.body.includes(PW));
  assert.equal(up.requests().length, seen, 'nothing was sent to the upstream');

  // nowhere in the tenant's audit log, nor in the gateway's log
  let au;
  await waitFor(async () => {
    au = await tenantAdmin('GET', '/audit?kind=admin&limit=100');
    assert.equal(au.status, 200, au.body);
    return au.json.records.some((x) => x.path.endsWith('/connectors/crm2'));
  }, { what: 'the refused writes in the audit log' });
  assert.ok(!au.body.includes(PW), 'the password is in no audit record');
  await gw.settle();
  assert.ok(!gw.stderrText().includes(PW), 'the password is in no log line');
});

test('user info a ? or a / hides is refused in every URL an admin sets; the answer, log and audit name none of it', async () => {
  // curl and browsers read host "alice" and a query or path here, but the
  // admin meant the password "pw?…": an origin cut at the '?' or '/' showed
  // "http://alice:pw" in the webhook's log lines and audit records
  const sneaky = [`http://alice:pw?${PW}@${host}/x`, `http://alice:pw/${PW}@${host}/x`];
  for (const u of sneaky) {
    const refused = (r, what) => {
      assert.equal(r.status, 400, `${what} ${u}: ${r.status} ${r.body}`);
      assert.ok(!r.body.includes(PW) && !r.body.includes('alice'), `${what}: the answer does not repeat it`);
    };
    let r = await t.admin('PATCH', '', { settings: { approval_webhook_url: u } });
    refused(r, 'approval_webhook_url');
    assert.match(r.json.message, /approval_webhook_url/);
    assert.match(r.json.message, /user information|host\[:port\]/);
    refused(await tenantAdmin('PUT', '/connectors/crm4', { url: u, auth: { type: 'header', name: 'X-Key', value: 'k' } }), 'connector url');
    refused(await tenantAdmin('PUT', '/connectors/crm4', {
      url: up.url,
      auth: { type: 'oauth', authorize_url: 'https://as.example.com/authorize', token_url: u, client_id: 'c', token_auth: 'none' },
    }), 'auth.token_url');
    refused(await tenantAdmin('PUT', '/connectors/crm4', { url: u, auth: { type: 'oauth', discover: true } }), 'discovering connector');
    refused(await tenantAdmin('PUT', '/audit/sink', { url: u }), 'audit sink');
    refused(await t.admin('PUT', '/oidc', { issuer: u.replace(/\/x$/, ''), client_id: 'c', client_secret: 's' }), 'oidc issuer');
  }
  assert.equal((await tenantAdmin('GET', '/connectors/crm4')).status, 404, 'nothing stored');
  // an '@' after the first '/' is a path or a query: kept
  const r = await t.admin('PATCH', '', { settings: { approval_webhook_url: `http://${host}/hook?by=a@b` } });
  assert.equal(r.status, 200, r.body);
  await gw.settle();
  assert.ok(!gw.stderrText().includes(PW), 'the password is in no log line');
});
