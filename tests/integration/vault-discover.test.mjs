// Vault 2/2 (issue 21 part 1): connector auth {"type":"oauth","discover":true}
// with dynamic client registration.
// Real parts: the gateway binary; oidc-provider as the upstream's AS with
// RFC 7591 registration and RFC 8707 resource indicators enabled (access
// tokens audience-bound to the MCP upstream's URL); the SDK MCP upstream
// that answers 401 with resource_metadata, and refuses a token whose
// introspected aud is not its own URL; the SDK client on the aggregated
// endpoint; the scripted browser of lib/login.mjs for the connect flow.
//
// The admin gives only the URL: the gateway reads the PRM (from the 401),
// the AS metadata, registers itself, and the stored connector is an
// ordinary oauth connector (connect, refresh, revocation as in Vault 1/2).
// ci-variants: build-w1 build-asan-w2 (two loops are the sanitizer run's; CI's 15 minutes)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { waitFor } from './lib/gateway.mjs';
import { toolText } from './lib/mcp.mjs';
import { startVaultFixture } from './lib/vault.mjs';

let v;
const SCOPES = ['openid', 'offline_access', 'tools.read'];

before(async () => {
  v = await startVaultFixture({
    asOptions: { registration: true, resourceIndicators: true },
    upOptions: { audience: true },
    connectorBody: null,
  });
});
after(async () => { await v?.stop(); });

test('PUT discover:true reads the metadata, registers by DCR, and stores an oauth connector', async () => {
  const r = await v.admin('PUT', '/connectors/crm', {
    url: v.up.url, description: 'CRM, discovered', auth: { type: 'oauth', discover: true, scopes: SCOPES },
  });
  assert.equal(r.status, 201, r.body);
  const a = r.json.auth;
  assert.equal(a.type, 'oauth');
  assert.equal(a.discover, true);
  assert.equal(a.resource, v.up.url);
  assert.equal(a.authorize_url, v.as.authorizeUrl);
  assert.equal(a.token_url, v.as.tokenUrl);
  assert.equal(a.revocation_url, v.as.revocationUrl);
  assert.equal(a.token_auth, 'client_secret_basic');
  assert.equal(a.sealed, true);
  assert.ok(a.client_id && a.client_id !== v.as.clientId, 'a registered client id');
  assert.equal(a.client_secret, undefined);
  assert.equal(a.redirect_uri, `${v.base}/connect/crm/callback`);
  assert.deepEqual(a.scopes, SCOPES);
  assert.deepEqual(a.discovered, {
    resource_metadata_url: v.up.resourceMetadataUrl,
    resource_metadata_via: 'header',
    authorization_server: v.as.issuer,
    issuer: v.as.issuer,
    registration: 'dcr',
    registration_endpoint: v.as.registrationUrl,
    as_host_differs: false,
    scopes_from: 'admin',
  });
  assert.equal(v.as.stats().registrations, 1);
  // the secret is sealed, never shown; the read view says the same
  const g = await v.admin('GET', '/connectors/crm');
  assert.equal(g.status, 200, g.body);
  assert.deepEqual(g.json.auth, a);
  assert.equal(/client_secret"/.test(g.body), false);
});

test('a PUT again re-runs discovery and keeps the registration at the same AS', async () => {
  const before = (await v.admin('GET', '/connectors/crm')).json.auth.client_id;
  const r = await v.admin('PUT', '/connectors/crm', {
    url: v.up.url, description: 'CRM, discovered again', auth: { type: 'oauth', discover: true, scopes: SCOPES },
  });
  assert.equal(r.status, 200, r.body);
  assert.equal(r.json.auth.client_id, before);
  assert.equal(r.json.auth.sealed, true);
  assert.equal(v.as.stats().registrations, 1, 'not registered again');
});

test('Alice connects; her calls carry a token bound to the connector URL; deactivation revokes it at the AS', async () => {
  await v.connectAs('alice');
  // the code exchange named the resource (RFC 8707), authenticated by Basic
  const tr = v.as.stats().tokenRequests.at(-1);
  assert.equal(tr.grant_type, 'authorization_code');
  assert.equal(tr.auth, 'basic');
  assert.equal(tr.status, 200);
  const c = await v.client('alice');
  let token;
  try {
    const names = await v.toolNames(c);
    assert.ok(names.includes('crm__whoami'), names.join(','));
    const who = JSON.parse(toolText(await c.client.callTool({ name: 'crm__whoami', arguments: {} })));
    assert.equal(who.sub, 'alice');
    const seen = v.up.seen().filter((s) => s.method === 'tools/call').at(-1);
    assert.equal(seen.sub, 'alice');
    assert.equal(seen.aud, v.up.url, 'the access token is for the connector URL');
    token = seen.token;
    assert.equal(await v.as.introspect(token), true);
  } finally {
    await c.close();
  }
  await v.deactivate('alice');
  await waitFor(async () => !(await v.as.introspect(token)), { timeoutMs: 8000, intervalMs: 100, what: 'revoked at the AS' });
});

test('an access token about to expire is refreshed with the resource and the call goes on', async () => {
  // Bob: a 12 s token, renewed 10 s before its expiry
  await v.connectAs('bob', { ttl: 12 });
  const c = await v.client('bob');
  try {
    await waitFor(async () => {
      const g = await v.connections('bob');
      return g[0].expires_at - Date.now() / 1000 < 9.5;
    }, { timeoutMs: 8000, intervalMs: 200, what: 'the token is about to expire' });
    const refreshes = v.as.stats().token.refresh_token;
    const who = JSON.parse(toolText(await c.client.callTool({ name: 'crm__whoami', arguments: {} })));
    assert.equal(who.sub, 'bob');
    assert.equal(v.as.stats().token.refresh_token, refreshes + 1);
    const last = v.as.stats().tokenRequests.at(-1);
    assert.equal(last.grant_type, 'refresh_token');
    assert.equal(last.status, 200);
    const seen = v.up.seen().filter((s) => s.method === 'tools/call').at(-1);
    assert.equal(seen.aud, v.up.url, 'the refreshed token is still bound to the connector URL');
  } finally {
    await c.close();
  }
});
