// Vault 2/2 (issue 21 part 1): discover:true toward an authorization server
// that takes Client ID Metadata Documents.
// Real parts: the gateway; oidc-provider as the upstream's AS (RFC 8707
// resource indicators on) behind lib/upstream-oauth.mjs's CIMD front — the
// one part that stands in for what cannot run here: oidc-provider 9.13's
// own CIMD support takes only https client ids and the test gateway is
// plain http on loopback, so the front FETCHES the client_id URL at
// /authorize, /token and /token/revocation, checks the document and the
// redirect_uri against it, and hands the client to the provider; the SDK
// MCP upstream (here with a bare `Bearer` challenge, so the gateway must
// find the PRM at the well-known URL) that checks the token's audience.
// ci-variants: build-w1 build-asan-w2 (two loops are the sanitizer run's; CI's 15 minutes)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { waitFor } from './lib/gateway.mjs';
import { toolText } from './lib/mcp.mjs';
import { startVaultFixture } from './lib/vault.mjs';

let v;

before(async () => {
  v = await startVaultFixture({
    users: ['alice'],
    asOptions: { cimd: true, resourceIndicators: true },
    upOptions: { audience: true, challenge: false },
    connectorBody: null,
  });
});
after(async () => { await v?.stop(); });

test('PUT discover:true: the AS takes CIMD, the gateway is a public client with its own document', async () => {
  // no scopes from the admin: the PRM's scopes_supported
  const r = await v.admin('PUT', '/connectors/crm', { url: v.up.url, auth: { type: 'oauth', discover: true } });
  assert.equal(r.status, 201, r.body);
  const a = r.json.auth;
  const docUrl = `${v.base}/oauth/upstream-client/crm.json`;
  assert.equal(a.client_id, docUrl);
  assert.equal(a.token_auth, 'none');
  assert.equal(a.sealed, undefined, 'nothing sealed for a public client');
  assert.equal(a.discovered.registration, 'cimd');
  assert.equal(a.discovered.resource_metadata_via, 'well-known');
  assert.equal(a.discovered.resource_metadata_url, v.up.resourceMetadataUrl);
  assert.equal(a.resource, v.up.url);
  assert.deepEqual(a.scopes, v.as.scopes);
  assert.equal(a.discovered.scopes_from, 'resource_metadata');
  assert.equal(v.as.stats().registrations, 0);

  const d = await fetch(docUrl);
  assert.equal(d.status, 200);
  assert.match(d.headers.get('content-type'), /application\/json/);
  const doc = await d.json();
  assert.deepEqual(doc, {
    client_id: docUrl,
    client_name: 'mcpgate for acme',
    redirect_uris: [`${v.base}/connect/crm/callback`],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'none',
  });
  // no document for a connector that is not a CIMD one, or a malformed name
  for (const p of ['nope.json', 'crm', 'crm.txt', 'CRM.json']) {
    const n = await fetch(`${v.base}/oauth/upstream-client/${p}`);
    assert.equal(n.status, 404, p);
  }
  const post = await fetch(docUrl, { method: 'POST' });
  assert.equal(post.status, 405);
});

test('Alice connects: the AS fetched the gateway\'s document; her calls carry an audience-bound token; deactivation revokes it', async () => {
  const docUrl = `${v.base}/oauth/upstream-client/crm.json`;
  await v.connectAs('alice');
  assert.ok(v.as.stats().cimdFetches.includes(docUrl), 'the AS read the client metadata document');
  const tr = v.as.stats().tokenRequests.at(-1);
  assert.equal(tr.grant_type, 'authorization_code');
  assert.equal(tr.auth, 'none', 'a public client');
  const c = await v.client('alice');
  let token;
  try {
    const who = JSON.parse(toolText(await c.client.callTool({ name: 'crm__whoami', arguments: {} })));
    assert.equal(who.sub, 'alice');
    assert.equal(who.client_id, docUrl);
    const seen = v.up.seen().filter((s) => s.method === 'tools/call').at(-1);
    assert.equal(seen.aud, v.up.url);
    token = seen.token;
  } finally {
    await c.close();
  }
  await v.deactivate('alice');
  await waitFor(async () => !(await v.as.introspect(token)), { timeoutMs: 8000, intervalMs: 100, what: 'revoked at the AS' });
});
