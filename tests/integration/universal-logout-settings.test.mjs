// Okta Universal Logout (issue 19), the tenant's side of it: which issuer's
// keys verify the logout (the "logout_issuer" OIDC setting; by default the
// sign-in issuer's origin, Okta's org authorization server, even when
// employees sign in through a custom one such as …/oauth2/default), which
// subjects name a user (iss_sub with either issuer, in Okta's "subject" and
// the draft's "sub_id" spelling), a used jti refused after a restart, and
// the rate limits (per address before any check; per tenant only for
// tokens that verified; apart from the sign-in's). Two Okta stand-ins play
// two orgs; the gateway's public URL is fixed so a token's aud outlives a
// restart.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { startGateway, request, scrapeMetrics, metricValue } from './lib/gateway.mjs';
import { adminClient, createTenant, operatorToken } from './lib/admin.mjs';
import { scimClient } from './lib/scim.mjs';
import { startOkta } from './lib/okta.mjs';
import { logoutToken, postLogout, emailSubject, issSubSubject } from './lib/gtr.mjs';

const PUBLIC = 'https://gw.example.test';
const AUD = `${PUBLIC}/t/acme/oauth/global-logout`;
let gw, op, orgA, orgB, scim;
const tokens = {};

async function start(args = [], dataDir) {
  gw = await startGateway({ dataDir, args: ['--public-url', PUBLIC, ...args] });
  op = adminClient(gw.port, operatorToken(gw.dataDir));
}

const alive = async (who) => (await request(gw.port, {
  method: 'POST', path: '/t/acme/mcp',
  body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } } }),
  headers: { authorization: `Bearer ${tokens[who]}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
})).status === 200;

before(async () => {
  orgA = await startOkta({ redirectUris: [`${PUBLIC}/t/acme/oauth/callback`], clientId: '0oa-mcpgate' });
  orgB = await startOkta({ redirectUris: [`${PUBLIC}/t/acme/oauth/callback`], clientId: '0oa-mcpgate' });
  await start();
  const tn = await createTenant(gw.port, op.token, 'acme');
  scim = scimClient(gw.port, 'acme', tn.scim.token);
  for (const who of ['alice', 'carol', 'dave', 'erin']) {
    await scim.createUser(`${who}@acme.com`, { externalId: `00u-${who}` });
    const r = await op.call('POST', '/admin/v1/tenants/acme/tokens', { user: `${who}@acme.com`, name: 'laptop' });
    assert.equal(r.status, 201, r.body);
    tokens[who] = r.json.token;
  }
  // employees sign in through a custom authorization server of org A
  const r = await op.call('PUT', '/admin/v1/tenants/acme/oidc', {
    issuer: `${orgA.issuer}/oauth2/default`, client_id: '0oa-mcpgate', client_secret: 's3cret-s3cret',
  });
  assert.equal(r.status, 201, r.body);
});

after(async () => {
  await gw?.stop().catch(() => {});
  await orgA?.stop().catch(() => {});
  await orgB?.stop().catch(() => {});
});

test('by default the org (the sign-in issuer\'s origin) signs; iss_sub names a user by either issuer', async () => {
  const view = await op.call('GET', '/admin/v1/tenants/acme/oidc');
  assert.equal(view.status, 200, view.body);
  assert.equal(view.json.logout_issuer, orgA.issuer, 'derived from the issuer');
  assert.equal(view.json.issuer, `${orgA.issuer}/oauth2/default`);
  // Okta's guide spells the member "subject"; iss the sign-in issuer
  let r = await postLogout(gw.port, 'acme', logoutToken(orgA, { aud: AUD }), issSubSubject(`${orgA.issuer}/oauth2/default`, '00u-alice', 'subject'));
  assert.equal(r.status, 204, r.body);
  assert.equal(await alive('alice'), false, 'alice is signed out');
  // the draft spells it "sub_id"; iss the org itself (with a trailing slash)
  r = await postLogout(gw.port, 'acme', logoutToken(orgA, { aud: AUD }), issSubSubject(`${orgA.issuer}/`, '00u-carol'));
  assert.equal(r.status, 204, r.body);
  assert.equal(await alive('carol'), false, 'carol is signed out');
  assert.equal(await alive('dave'), true, 'dave is not');
  // a token whose iss is the custom authorization server is not the org's
  r = await postLogout(gw.port, 'acme', logoutToken(orgA, { aud: AUD, iss: `${orgA.issuer}/oauth2/default` }), emailSubject('dave@acme.com'));
  assert.equal(r.status, 401, r.body);
  assert.match(r.json.error_description, /iss/);
  // an ID token's audience is the client, never this endpoint
  r = await postLogout(gw.port, 'acme', logoutToken(orgA, { aud: '0oa-mcpgate' }), emailSubject('dave@acme.com'));
  assert.equal(r.status, 401, r.body);
  assert.equal(await alive('dave'), true);
});

test('logout_issuer set: that org\'s keys, and only them', async () => {
  let r = await op.call('PUT', '/admin/v1/tenants/acme/oidc', {
    issuer: `${orgA.issuer}/oauth2/default`, client_id: '0oa-mcpgate', logout_issuer: `${orgB.issuer}/`,
  });
  assert.equal(r.status, 200, r.body);
  assert.equal(r.json.logout_issuer, orgB.issuer, 'normalised');
  r = await postLogout(gw.port, 'acme', logoutToken(orgA, { aud: AUD }), emailSubject('dave@acme.com'));
  assert.equal(r.status, 401, `org A's token: ${r.body}`);
  r = await postLogout(gw.port, 'acme', logoutToken(orgA, { aud: AUD, iss: orgB.issuer }), emailSubject('dave@acme.com'));
  assert.equal(r.status, 401, `org A's key with org B's name: ${r.body}`);
  assert.equal(await alive('dave'), true);
  r = await postLogout(gw.port, 'acme', logoutToken(orgB, { aud: AUD }), issSubSubject(orgB.issuer, '00u-dave'));
  assert.equal(r.status, 204, r.body);
  assert.equal(await alive('dave'), false);
  // the setting is checked like the issuer
  for (const [bad, re] of [['ftp://okta', /logout_issuer/], ['https://10.1.2.3', /logout_issuer/], [7, /logout_issuer/]]) {
    r = await op.call('PUT', '/admin/v1/tenants/acme/oidc', { issuer: orgA.issuer, client_id: '0oa-mcpgate', logout_issuer: bad });
    assert.equal(r.status, 400, `${bad}: ${r.body}`);
    assert.match(r.json.message, re);
  }
  const view = await op.call('GET', '/admin/v1/tenants/acme/oidc');
  assert.equal(view.json.logout_issuer, orgB.issuer, 'the refused PUTs changed nothing');
});

test('a used token stays used after a restart; rate limits', async () => {
  const tok = logoutToken(orgB, { aud: AUD });
  let r = await postLogout(gw.port, 'acme', tok, emailSubject('erin@acme.com'));
  assert.equal(r.status, 204, r.body);
  await gw.stop();
  await start(['--logout-rate-per-address', '6', '--logout-rate-per-tenant', '3', '--auth-rate-per-tenant', '1'], gw.dataDir);
  r = await postLogout(gw.port, 'acme', tok, emailSubject('erin@acme.com'));
  assert.equal(r.status, 401, r.body); // verified: 1 of the tenant's 3
  assert.match(r.json.error_description, /used already/);
  // a flood of sign-ins does not hold a logout off
  assert.equal((await request(gw.port, { path: '/t/acme/login' })).status !== 429, true);
  assert.equal((await request(gw.port, { path: '/t/acme/login' })).status, 429, 'the sign-in is limited');
  r = await postLogout(gw.port, 'acme', logoutToken(orgB, { aud: AUD }), emailSubject('nobody@acme.com'));
  assert.equal(r.status, 404, r.body); // 2 of 3
  // junk never counts against the tenant
  r = await postLogout(gw.port, 'acme', logoutToken(orgA, { aud: AUD }), emailSubject('nobody@acme.com'));
  assert.equal(r.status, 401, r.body);
  r = await postLogout(gw.port, 'acme', logoutToken(orgB, { aud: AUD }), emailSubject('nobody@acme.com'));
  assert.equal(r.status, 404, r.body); // 3 of 3
  r = await postLogout(gw.port, 'acme', logoutToken(orgB, { aud: AUD }), emailSubject('nobody@acme.com'));
  assert.equal(r.status, 429, r.body);
  assert.match(r.headers['retry-after'] ?? '', /^[1-9]\d*$/);
  // the address's 6th request, then its 7th: refused before any check
  r = await postLogout(gw.port, 'acme', logoutToken(orgA, { aud: AUD }), emailSubject('nobody@acme.com'));
  assert.equal(r.status, 401, r.body);
  r = await postLogout(gw.port, 'acme', logoutToken(orgB, { aud: AUD }), emailSubject('nobody@acme.com'));
  assert.equal(r.status, 429, r.body);
  assert.match(r.json.error_description, /this address/);
  const m = await scrapeMetrics(gw);
  assert.equal(metricValue(m, 'mcpgate_universal_logouts_total', { result: 'rate_limited' }), 2);
});
