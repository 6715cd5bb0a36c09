// tests/integration/lib/vault.mjs — the setup of the Vault tests (issue 20),
// factored from vault-connect.test.mjs's before(): the sign-in fixture
// (lib/login.mjs: gateway + the Okta stand-in) with tenant acme and its
// users, the upstream's authorization server and its SDK MCP server
// (lib/upstream-oauth.mjs), an allow-all policy (unless told otherwise), an
// oauth connector "crm" and an MCP token per user.
//
//   startVaultFixture({users, gatewayArgs, gatewayEnv, policy, accessTokenTTL, asOptions,
//                      upOptions, connectorBody})
//     asOptions / upOptions: more options of startUpstreamAS /
//            startOAuthMcpUpstream (with asOptions.resourceIndicators the
//            upstream's URL is the AS's resource); connectorBody(as, up):
//            the connector PUT body (default oauthConnector; null: no
//            connector is put — the test puts its own)
//     users: short names ('alice' → alice@acme.com, Okta sub 00u-alice,
//            upstream account 'alice'); default alice and bob
//   → v = {fx, as, up, tokens, base, mcpUrl, admin, user(who),
//          putCrm(name?), client(who), toolNames(c), connectAs(who, {ttl}),
//          connections(who), revocations(), waitRevocation(pred, what),
//          lastCallToken(sub), deactivate(who), stop()}
import assert from 'node:assert/strict';

import { waitFor } from './gateway.mjs';
import { startLoginFixture, signIn } from './login.mjs';
import { connectClient, ALLOW_ALL_POLICY } from './mcp.mjs';
import { startUpstreamAS, startOAuthMcpUpstream } from './upstream-oauth.mjs';

export const email = (who) => `${who}@acme.com`;

/** The body of PUT /connectors/{name} for an oauth connector of this AS and upstream. */
export function oauthConnector(as, up, extra = {}) {
  return {
    url: up.url,
    description: 'CRM (each employee connects their own account)',
    auth: {
      type: 'oauth', authorize_url: as.authorizeUrl, token_url: as.tokenUrl, revocation_url: as.revocationUrl,
      client_id: as.clientId, client_secret: as.clientSecret, scopes: ['openid', 'offline_access', 'tools.read'],
    },
    ...extra,
  };
}

export async function startVaultFixture({
  users = ['alice', 'bob'], gatewayArgs = [], gatewayEnv = {}, policy = ALLOW_ALL_POLICY, accessTokenTTL = 60,
  connectors = ['crm'], asOptions = {}, upOptions = {}, connectorBody = oauthConnector,
} = {}) {
  const fx = await startLoginFixture({
    tenants: { acme: { users: users.map((u) => ({ userName: email(u), externalId: `00u-${u}` })) } },
    accounts: Object.fromEntries(users.map((u) => [`00u-${u}`, { email: email(u), email_verified: true }])),
    gatewayArgs,
    gatewayEnv,
  });
  const base = fx.base('acme');
  const as = await startUpstreamAS({
    redirectUris: connectors.map((c) => `${base}/connect/${c}/callback`), accessTokenTTL, ...asOptions,
  });
  const up = await startOAuthMcpUpstream({ as, ...upOptions });
  if (asOptions.resourceIndicators) as.setResource(up.url);
  const { admin } = fx.t.acme;
  let r = await admin('PUT', '/policy', policy);
  assert.equal(r.status, 200, r.body);
  for (const c of connectorBody ? connectors : []) {
    r = await admin('PUT', `/connectors/${c}`, connectorBody(as, up));
    assert.equal(r.status, 201, r.body);
  }
  const tokens = {};
  for (const u of users) {
    const m = await admin('POST', '/tokens', { user: email(u), name: 'laptop', expires_in_days: 30 });
    assert.equal(m.status, 201, m.body);
    tokens[u] = m.json.token;
  }
  const v = {
    fx, as, up, tokens, base, mcpUrl: `${base}/mcp`,
    // the admin API of the gateway now serving (a test that restarts the
    // gateway replaces it)
    admin: (...a) => admin(...a),
    user: (who) => fx.t.acme.users[email(who)],
    client: (who) => connectClient(`${base}/mcp`, tokens[who]),
    async toolNames(c) {
      return (await c.client.listTools()).tools.map((t) => t.name).sort();
    },
    /** who's browser: signed in at the gateway, then the connect link (the AS signs in as who). */
    async connectAs(who, { ttl, connector = 'crm' } = {}) {
      const b = fx.browser();
      const s = await signIn(b, `${base}/login`, { login: `00u-${who}` });
      assert.equal(s.status, 200, `signed in: ${s.status} ${s.url}`);
      if (ttl) as.setAccessTokenTTL(ttl);
      as.loginAs(who);
      let res;
      try {
        res = await b.get(`${base}/connect/${connector}`);
      } finally {
        as.loginAs(null);
        if (ttl) as.setAccessTokenTTL(accessTokenTTL);
      }
      assert.equal(res.status, 200, `success page: ${res.status} ${res.url} ${res.text.slice(0, 300)}`);
      assert.match(res.text, new RegExp(`${connector} is connected`));
      return { b, res };
    },
    async connections(who) {
      const g = await v.admin('GET', `/users/${email(who)}/connections`);
      assert.equal(g.status, 200, g.body);
      return g.json.connections;
    },
    async revocations() {
      const g = await v.admin('GET', '/revocations');
      assert.equal(g.status, 200, g.body);
      return g.json.revocations;
    },
    /** Waits until some report entry matches pred; resolves it. */
    async waitRevocation(pred, what, timeoutMs = 8000) {
      let hit;
      await waitFor(async () => { hit = (await v.revocations()).find(pred); return !!hit; }, { timeoutMs, intervalMs: 100, what });
      return hit;
    },
    /** The bearer token of the newest tools/call the upstream saw for sub. */
    lastCallToken(sub) {
      return up.seen().filter((s) => s.method === 'tools/call' && s.sub === sub).at(-1)?.token;
    },
    async deactivate(who) {
      const d = await fx.t.acme.scim.patch(`/Users/${v.user(who).id}`, {
        schemas: ['urn:ietf:params:scim:api:messages:2.0:PatchOp'], Operations: [{ op: 'replace', value: { active: false } }],
      });
      assert.equal(d.status, 200, d.body);
    },
    async stop() {
      await up.close().catch(() => {});
      await as.close().catch(() => {});
      await fx.stop();
    },
  };
  return v;
}

/** RFC 7009 revocation at the AS with the gateway's client credentials (as the AS's client would). */
export async function revokeAtAs(as, token, hint) {
  const headers = { 'content-type': 'application/x-www-form-urlencoded' };
  const body = new URLSearchParams({ token, ...(hint ? { token_type_hint: hint } : {}) });
  if (as.tokenEndpointAuthMethod === 'client_secret_post') {
    body.set('client_id', as.clientId);
    body.set('client_secret', as.clientSecret);
  } else {
    headers.authorization = `Basic ${Buffer.from(`${encodeURIComponent(as.clientId)}:${encodeURIComponent(as.clientSecret)}`).toString('base64')}`;
  }
  const r = await fetch(as.revocationUrl, { method: 'POST', headers, body });
  return { status: r.status, text: await r.text() };
}
