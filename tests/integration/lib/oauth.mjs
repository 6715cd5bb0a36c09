// tests/integration/lib/oauth.mjs — an MCP client of the gateway's OAuth
// authorization server (issue 17), as the tests that need a grant walk it:
// DCR, authorize (Okta sign-in at the real oidc-provider, the consent
// page), the code at the token endpoint. fx is a lib/login.mjs fixture.
//
//   pkce()                                  {verifier, challenge} (S256)
//   register(fx, tenant, meta)              POST /t/{t}/oauth/register → {status, text, json}
//   tokenRequest(fx, tenant, form)          POST /t/{t}/oauth/token → {status, text, json, headers}
//   grant(fx, browser, {tenant, client, login, redirect, resource})
//        the whole flow → {access_token, refresh_token, ...} (asserts each step)
import assert from 'node:assert/strict';
import crypto from 'node:crypto';

import { signIn } from './okta.mjs';

const b64u = (b) => Buffer.from(b).toString('base64url');

export function pkce() {
  const verifier = b64u(crypto.randomBytes(32));
  return { verifier, challenge: b64u(crypto.createHash('sha256').update(verifier).digest()) };
}

async function jsonFetch(url, init) {
  const r = await fetch(url, init);
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: r.status, text, json, headers: r.headers };
}

export function register(fx, tenant, meta) {
  return jsonFetch(`${fx.base(tenant)}/oauth/register`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(meta),
  });
}

export function tokenRequest(fx, tenant, form) {
  return jsonFetch(`${fx.base(tenant)}/oauth/token`, {
    method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(form).toString(),
  });
}

/** Registers a client (unless given), signs `login` in, allows at the consent page, exchanges the code. */
export async function grant(fx, browser, { tenant = 'acme', client, login, redirect = 'http://127.0.0.1:45123/callback', resource } = {}) {
  if (!client) {
    const reg = await register(fx, tenant, { client_name: 'Test MCP client', redirect_uris: ['http://127.0.0.1/callback'] });
    assert.equal(reg.status, 201, reg.text);
    client = reg.json.client_id;
  }
  const { verifier, challenge } = pkce();
  const q = new URLSearchParams({
    response_type: 'code', client_id: client, redirect_uri: redirect, state: 'st-1',
    code_challenge: challenge, code_challenge_method: 'S256', resource: resource ?? `${fx.gw.url}/t/${tenant}/mcp`,
  });
  const isCb = (u) => u.startsWith(redirect.replace(/\/callback$/, '/'));
  let res = await signIn(browser, `${fx.base(tenant)}/oauth/authorize?${q}`, { login, stopAtCallback: isCb });
  if (!res.stopped && res.status === 200 && /oauth\/consent/.test(res.text))
    res = await browser.submitForm(res, { fields: { decision: 'allow' }, stopAt: isCb });
  assert.equal(res.stopped, true, `authorize ended at the client's redirect: ${res.status} ${res.url} ${res.text?.slice(0, 300)}`);
  const code = new URL(res.url).searchParams.get('code');
  const t = await tokenRequest(fx, tenant, { grant_type: 'authorization_code', code, redirect_uri: redirect, client_id: client, code_verifier: verifier });
  assert.equal(t.status, 200, t.text);
  return { ...t.json, client_id: client };
}
