// Vault 1/2 (issue 20): a user who loses the last group that shows them an
// oauth connector keeps their upstream grant for revocation_grace_ms (a
// transient bad Group Push or policy typo must not mass-revoke), is refused
// the connector at once meanwhile, and the grant is revoked at the upstream
// only once the grace period passed with the connector still hidden. Real
// parts: the gateway on a real LMDB, oidc-provider as Okta and as the
// upstream's AS (introspection tells whether a token still lives), the SDK.
// ci-variants: build-w1 build-asan-w2 (two loops are the sanitizer run's; CI's 15 minutes)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { waitFor, sleep } from './lib/gateway.mjs';
import { startLoginFixture, signIn } from './lib/login.mjs';
import { connectClient, toolText } from './lib/mcp.mjs';
import { startUpstreamAS, startOAuthMcpUpstream } from './lib/upstream-oauth.mjs';

const GRACE_MS = 2500;
let fx, as, up, group;
const tokens = {};

before(async () => {
  fx = await startLoginFixture({
    tenants: { acme: { users: [{ userName: 'alice@acme.com', externalId: '00u-alice' }] } },
    accounts: { '00u-alice': { email: 'alice@acme.com', email_verified: true } },
    gatewayArgs: ['--revocation-grace-ms', String(GRACE_MS)],
  });
  const base = fx.base('acme');
  as = await startUpstreamAS({ redirectUris: [`${base}/connect/crm/callback`] });
  up = await startOAuthMcpUpstream({ as });
  const { admin, scim, users } = fx.t.acme;
  group = await scim.createGroup('crm-users', [users['alice@acme.com'].id]);
  let r = await admin('PUT', '/policy', { version: 1, default: 'block', rules: [{ groups: ['crm-users'], connector: 'crm', allow: ['*'] }] });
  assert.equal(r.status, 200, r.body);
  r = await admin('PUT', '/connectors/crm', {
    url: up.url,
    auth: { type: 'oauth', authorize_url: as.authorizeUrl, token_url: as.tokenUrl, revocation_url: as.revocationUrl, client_id: as.clientId, client_secret: as.clientSecret, scopes: ['openid', 'offline_access'] },
  });
  assert.equal(r.status, 201, r.body);
  const m = await admin('POST', '/tokens', { user: 'alice@acme.com', name: 'laptop', expires_in_days: 30 });
  assert.equal(m.status, 201, m.body);
  tokens.alice = m.json.token;
});

after(async () => {
  await up?.close().catch(() => {});
  await as?.close().catch(() => {});
  await fx?.stop();
});

async function connectAlice() {
  const b = fx.browser();
  const s = await signIn(b, `${fx.base('acme')}/login`, { login: '00u-alice' });
  assert.equal(s.status, 200);
  as.loginAs('alice');
  const res = await b.get(`${fx.base('acme')}/connect/crm`);
  as.loginAs(null);
  assert.equal(res.status, 200, `connected: ${res.status} ${res.text.slice(0, 200)}`);
}

async function aliceToken() {
  const c = await connectClient(`${fx.base('acme')}/mcp`, tokens.alice);
  try {
    const from = up.seen().length;
    const who = JSON.parse(toolText(await c.client.callTool({ name: 'crm__whoami', arguments: {} })));
    assert.equal(who.sub, 'alice');
    return up.seen().slice(from).find((s) => s.method === 'tools/call').token;
  } finally {
    await c.close();
  }
}

const setMembers = (ids) => fx.t.acme.scim.patch(`/Groups/${group.id}`, {
  schemas: ['urn:ietf:params:scim:api:messages:2.0:PatchOp'],
  Operations: [{ op: 'replace', path: 'members', value: ids.map((value) => ({ value })) }],
});

const connections = async () => (await fx.t.acme.admin('GET', '/users/alice@acme.com/connections')).json.connections;

test('removed and re-added within the grace period: the grant survives', async () => {
  await connectAlice();
  const token = await aliceToken();
  const alice = fx.t.acme.users['alice@acme.com'].id;
  let r = await setMembers([]);
  assert.equal(r.status, 200, r.body);
  // hidden now: the connector is refused to her at once
  const c = await connectClient(`${fx.base('acme')}/mcp`, tokens.alice);
  try {
    const names = (await c.client.listTools()).tools.map((t) => t.name);
    assert.deepEqual(names, []);
  } finally {
    await c.close();
  }
  await sleep(GRACE_MS / 3);
  r = await setMembers([alice]);
  assert.equal(r.status, 200, r.body);
  await sleep(GRACE_MS + 1000); // past the grace period, visible again: nothing to revoke
  assert.equal((await connections()).length, 1);
  assert.equal(await as.introspect(token), true, 'the upstream token still lives');
  assert.equal(await aliceToken() !== undefined, true);
});

test('still hidden after the grace period: revoked at the upstream (reason lost_access), not before', async () => {
  const token = await aliceToken();
  const t0 = Date.now();
  const r = await setMembers([]);
  assert.equal(r.status, 200, r.body);
  await sleep(GRACE_MS / 2);
  assert.equal((await connections()).length, 1, 'not revoked before the grace period');
  assert.equal(await as.introspect(token), true);
  await waitFor(async () => (await connections()).length === 0, { timeoutMs: GRACE_MS + 15000, what: 'the grant is dropped' });
  assert.ok(Date.now() - t0 >= GRACE_MS, 'not before the grace period');
  await waitFor(async () => !(await as.introspect(token)), { timeoutMs: 8000, what: 'revoked at the AS' });
  const rv = await fx.t.acme.admin('GET', '/revocations');
  assert.ok(rv.json.revocations.some((x) => x.reason === 'lost_access' && x.connector === 'crm'), rv.body);
});
