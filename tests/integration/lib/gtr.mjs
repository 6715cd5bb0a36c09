// tests/integration/lib/gtr.mjs — Okta's Universal Logout as the tests send
// it (issue 19): a logout JWT signed like Okta signs it (lib/okta.mjs: the
// stand-in's own signing key, or any other JWK for the forgeries), and the
// POST to the gateway's Global Token Revocation endpoint.
//
//   logoutToken(okta, {aud, ...overrides})  a compact JWS (see below)
//   postLogout(port, tenant, token, body, {contentType, headers})
//        POST /t/{tenant}/oauth/global-logout → {status, headers, body, json}
//   emailSubject(email, member)        {sub_id|subject: {format: 'email', email}}
//   issSubSubject(iss, sub, member)    {sub_id|subject: {format: 'iss_sub', iss, sub}}
import crypto from 'node:crypto';

import { request } from './gateway.mjs';
import { signJwt } from './okta.mjs';

export const GTR_TYP = 'global-token-revocation+jwt';

/**
 * The JWT Okta sends (its guide, "Build Universal Logout for your app"):
 * header {typ, alg, kid}, claims {jti, iss (the org), sub (the app's
 * client_id), aud (the endpoint), exp (+5 min), nbf (-5 min), iat}.
 * Options override any of them: iss, sub, aud, exp, nbf, iat, jti, typ, alg,
 * kid, key (a private JWK; default the stand-in's current key); claims and
 * header are merged last (a key set to undefined is dropped).
 */
export function logoutToken(okta, opts = {}) {
  const now = Math.floor(Date.now() / 1000);
  const key = opts.key ?? okta.privateJwk();
  const claims = {
    jti: opts.jti ?? crypto.randomUUID(),
    iss: opts.iss ?? okta.issuer,
    sub: opts.sub ?? okta.clientId,
    aud: opts.aud,
    exp: opts.exp ?? now + 300,
    nbf: opts.nbf ?? now - 300,
    iat: opts.iat ?? now,
    ...(opts.claims ?? {}),
  };
  const header = { typ: opts.typ ?? GTR_TYP, alg: opts.alg ?? key.alg ?? 'RS256', kid: opts.kid ?? key.kid, ...(opts.header ?? {}) };
  for (const o of [claims, header]) for (const k of Object.keys(o)) if (o[k] === undefined) delete o[k];
  return signJwt(claims, header, key);
}

export function postLogout(port, tenant, token, body, { contentType = 'application/json', headers = {} } = {}) {
  const h = { ...headers };
  if (token !== null && token !== undefined) h.authorization = `Bearer ${token}`;
  if (contentType) h['content-type'] = contentType;
  return request(port, {
    method: 'POST', path: `/t/${tenant}/oauth/global-logout`, headers: h,
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

export const emailSubject = (email, member = 'sub_id') => ({ [member]: { format: 'email', email } });
export const issSubSubject = (iss, sub, member = 'sub_id') => ({ [member]: { format: 'iss_sub', iss, sub } });
