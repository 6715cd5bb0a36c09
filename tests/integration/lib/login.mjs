// tests/integration/lib/login.mjs — the sign-in fixture for the OIDC-login
// tests (issue 16): a gateway, the Okta stand-in (lib/okta.mjs: the real
// oidc-provider) registered with the gateway's callback for each tenant,
// tenants with SCIM users and OIDC settings pointing at it.
//
//   startLoginFixture({tenants, accounts, gatewayArgs})
//     tenants: {id: {users: [{userName, externalId?, ...scim}], oidc?: {...settings}}}
//     accounts: the provider's accounts {sub: claims}
//     gatewayArgs, gatewayEnv: extra flags and environment of the gateway
//   → {gw, okta, op, t: {id: {scim, users: {userName: scimUser}, admin, setSettings}}, base(id), browser()}
//   me(browser, fx, id)      GET /t/{id}/api/me through the browser's cookies
//   sessionCookie(res)       the Set-Cookie of the gateway's session cookie
import assert from 'node:assert/strict';

import { startGateway } from './gateway.mjs';
import { adminClient, createTenant, operatorToken } from './admin.mjs';
import { scimClient } from './scim.mjs';
import { startOkta, Browser, signIn } from './okta.mjs';

export { Browser, signIn };

export async function startLoginFixture({ tenants, accounts = {}, gatewayArgs = [], gatewayEnv = {}, okta: oktaOpts = {} } = {}) {
  // many sign-ins from one address in a few seconds: the per-address limit
  // is raised here (oidc-ratelimit.test.mjs tests it)
  const gw = await startGateway({ args: ['--auth-rate-per-address', '100000', '--auth-rate-per-tenant', '100000', ...gatewayArgs], env: gatewayEnv });
  const op = adminClient(gw.port, operatorToken(gw.dataDir));
  const ids = Object.keys(tenants);
  const okta = await startOkta({
    redirectUris: ids.map((id) => `${gw.url}/t/${id}/oauth/callback`),
    accounts,
    ...oktaOpts,
  });
  const t = {};
  for (const id of ids) {
    const spec = tenants[id];
    const tn = await createTenant(gw.port, op.token, id);
    const scim = scimClient(gw.port, id, tn.scim.token);
    const users = {};
    for (const u of spec.users ?? []) {
      const { userName, ...extra } = u;
      users[userName] = await scim.createUser(userName, {
        name: { givenName: userName.split('@')[0], familyName: 'Test' },
        emails: [{ value: userName, primary: true }],
        ...extra,
      });
    }
    const admin = (method, p, body, o) => op.call(method, `/admin/v1/tenants/${id}${p}`, body, o);
    const r = await admin('PUT', '/oidc', {
      issuer: okta.issuer, client_id: okta.clientId, client_secret: okta.clientSecret, ...(spec.oidc ?? {}),
    });
    assert.equal(r.status, 201, `PUT oidc for ${id}: ${r.status} ${r.body}`);
    const setSettings = async (settings) => {
      const s = await op.patch(`/admin/v1/tenants/${id}`, { settings });
      assert.equal(s.status, 200, `PATCH settings: ${s.status} ${s.body}`);
    };
    t[id] = { scim, users, admin, setSettings };
  }
  const fx = {
    gw, okta, op, t,
    base: (id) => `${gw.url}/t/${id}`,
    browser: () => new Browser(),
    async stop() {
      await okta.stop().catch(() => {});
      await gw.stop().catch(() => {});
    },
  };
  return fx;
}

/** Registers an OAuth client of tenant id (dynamic registration, a loopback
 * redirect unless metadata says otherwise) and returns its client_id. */
export async function registerClient(fx, id, clientName, redirectUris = ['http://127.0.0.1/callback']) {
  const r = await fetch(`${fx.base(id)}/oauth/register`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ client_name: clientName, redirect_uris: redirectUris }),
  });
  if (r.status !== 201) throw new Error(`register ${clientName}: ${r.status} ${await r.text()}`);
  return (await r.json()).client_id;
}

/** GET /t/{id}/api/me with the browser's cookies: {status, json}. */
export async function me(b, fx, id) {
  const r = await b.get(`${fx.base(id)}/api/me`, { follow: false });
  let json = null;
  try { json = JSON.parse(r.text); } catch { /* not JSON */ }
  return { ...r, json };
}

/** The gateway's Set-Cookie for cookie names starting with `prefix`. */
export function setCookieFor(res, prefix) {
  const all = [...(res.setCookies ?? []), ...(res.history ?? []).flatMap((h) => h.setCookies ?? [])];
  return all.filter((c) => c.startsWith(prefix));
}
