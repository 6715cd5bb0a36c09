// The Okta stand-in (lib/okta.mjs) proved against a relying party written
// here (no gateway): discovery, sign-in through the devInteractions pages
// with the scripted Browser, the code exchange (client_secret_basic + PKCE),
// the id_token checked with node:crypto against the published JWKS, the
// tamper hooks, key rotation behind a stable issuer, accounts changed at
// runtime, and the request log.
// ci-variants: build-w1 (the Okta stand-in alone: no gateway, nothing to vary)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import crypto from 'node:crypto';
import { startOkta, Browser, signIn, parseForms, generateSigningJwk } from './lib/okta.mjs';

const ALICE = {
  email: 'alice@acme.test', email_verified: true, name: 'Alice Liddell',
  given_name: 'Alice', family_name: 'Liddell', oid: '00000000-0000-0000-0000-00000000a11c',
};

let okta, rp, rpUrl, redirectUri, disco;
const callbacks = []; // query objects the RP's callback received

before(async () => {
  rp = http.createServer((req, res) => {
    const u = new URL(req.url, 'http://rp');
    if (u.pathname === '/cb') {
      callbacks.push(Object.fromEntries(u.searchParams));
      res.writeHead(200, { 'content-type': 'text/plain' }).end('rp callback');
    } else if (u.pathname === '/app/set') {
      res.setHeader('set-cookie', ['a=1; Path=/', 'b=2; Path=/app', 'c=3', 'gone=x; Path=/']);
      res.writeHead(302, { location: '/app/unset' }).end();
    } else if (u.pathname === '/app/unset') {
      res.setHeader('set-cookie', ['gone=; Path=/; Max-Age=0']);
      res.writeHead(200).end(req.headers.cookie || '');
    } else if (u.pathname === '/bye') {
      res.writeHead(200).end(`bye ${u.searchParams.get('state')}`);
    } else if (u.pathname === '/echo') {
      res.writeHead(200).end(req.headers.cookie || '');
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise((resolve) => rp.listen(0, '127.0.0.1', resolve));
  rpUrl = `http://127.0.0.1:${rp.address().port}`;
  redirectUri = `${rpUrl}/cb`;
  okta = await startOkta({ redirectUris: [redirectUri], postLogoutRedirectUris: [`${rpUrl}/bye`], accounts: { alice: ALICE } });
  disco = await getJson(`${okta.issuer}/.well-known/openid-configuration`);
});

after(async () => {
  if (okta) await okta.stop();
  if (rp) { rp.closeAllConnections(); await new Promise((resolve) => rp.close(resolve)); }
});

async function getJson(url) {
  const r = await fetch(url);
  assert.equal(r.status, 200, `GET ${url}`);
  return r.json();
}

/** A fresh authorization request: {url, state, nonce, verifier}. */
function authorizeRequest(o = okta, extra = {}) {
  const verifier = crypto.randomBytes(32).toString('base64url');
  const state = crypto.randomBytes(8).toString('hex');
  const nonce = crypto.randomBytes(8).toString('hex');
  const u = new URL(`${o.issuer}/oauth2/v1/authorize`);
  u.search = new URLSearchParams({
    response_type: 'code', client_id: o.clientId, redirect_uri: redirectUri,
    scope: 'openid email profile', state, nonce,
    code_challenge: crypto.createHash('sha256').update(verifier).digest('base64url'),
    code_challenge_method: 'S256', ...extra,
  });
  return { url: u.href, state, nonce, verifier };
}

async function exchange(o, code, verifier, { secret = o.clientSecret } = {}) {
  const r = await fetch(`${o.issuer}/oauth2/v1/token`, {
    method: 'POST',
    headers: {
      authorization: `Basic ${Buffer.from(`${o.clientId}:${secret}`).toString('base64')}`,
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: redirectUri, code_verifier: verifier }),
  });
  return { status: r.status, json: await r.json() };
}

/** Verifies a compact JWS against a JWKS with node:crypto (written here, independent of the harness). */
function verifyJws(token, jwks) {
  const [h, p, s] = token.split('.');
  const header = JSON.parse(Buffer.from(h, 'base64url'));
  const claims = JSON.parse(Buffer.from(p, 'base64url'));
  const jwk = jwks.keys.find((k) => k.kid === header.kid);
  if (!jwk) return { ok: false, header, claims, why: 'unknown kid' };
  const key = crypto.createPublicKey({ key: jwk, format: 'jwk' });
  const data = Buffer.from(`${h}.${p}`);
  const sig = Buffer.from(s, 'base64url');
  let ok = false;
  if (header.alg === 'RS256' && jwk.kty === 'RSA') ok = crypto.verify('sha256', data, key, sig);
  if (header.alg === 'ES256' && jwk.kty === 'EC') ok = crypto.verify('sha256', data, { key, dsaEncoding: 'ieee-p1363' }, sig);
  return { ok, header, claims, why: ok ? null : 'bad signature' };
}

/** Signs in with a browser and exchanges the code; resolves {req, res, token}. */
async function loginAndExchange(b, login, o = okta) {
  const req = authorizeRequest(o);
  const n = callbacks.length;
  const res = await signIn(b, req.url, { login });
  assert.equal(res.status, 200, `sign-in ends at the RP callback: ${res.url}\n${res.text.slice(0, 500)}`);
  assert.equal(callbacks.length, n + 1, 'the RP callback was hit once');
  const cb = callbacks.at(-1);
  assert.equal(cb.state, req.state);
  assert.ok(cb.code, `code in callback: ${JSON.stringify(cb)}`);
  const token = await exchange(o, cb.code, req.verifier);
  assert.equal(token.status, 200, JSON.stringify(token.json));
  return { req, res, token: token.json };
}

test('discovery: issuer is the front server, endpoints at Okta paths, S256 only, requests logged', async () => {
  assert.match(okta.issuer, /^http:\/\/127\.0\.0\.1:\d+$/);
  assert.equal(disco.issuer, okta.issuer);
  assert.equal(disco.authorization_endpoint, `${okta.issuer}/oauth2/v1/authorize`);
  assert.equal(disco.token_endpoint, `${okta.issuer}/oauth2/v1/token`);
  assert.equal(disco.jwks_uri, `${okta.issuer}/oauth2/v1/keys`);
  assert.deepEqual(disco.code_challenge_methods_supported, ['S256']);
  assert.deepEqual(disco.id_token_signing_alg_values_supported, ['RS256']);
  assert.ok(disco.scopes_supported.includes('email') && disco.scopes_supported.includes('profile'));
  assert.ok(okta.requests.some((r) => r.method === 'GET' && r.path === '/.well-known/openid-configuration'));
});

test('sign-in through the login page, code exchange with client_secret_basic + PKCE, id_token verified', async () => {
  okta.clearRequests();
  const b = new Browser();
  const { req, res, token } = await loginAndExchange(b, 'alice');
  assert.ok(res.history.some((h) => h.form === 'login'), 'the login form was submitted');
  assert.ok(!res.history.some((h) => h.form === 'consent'), 'consent is auto-granted by default');
  assert.ok(b.cookies(okta.issuer).has('_session'), 'the provider session cookie is in the jar of its origin');
  assert.ok(!b.cookies(rpUrl).has('_session'), 'cookies stay with their origin');

  const jwks = await getJson(disco.jwks_uri);
  assert.deepEqual(jwks.keys.map((k) => k.kid), [okta.kid]);
  assert.equal(jwks.keys[0].d, undefined, 'the JWKS is public');
  const v = verifyJws(token.id_token, jwks);
  assert.ok(v.ok, v.why);
  assert.equal(v.header.alg, 'RS256');
  assert.equal(v.header.kid, okta.kid);
  assert.equal(v.claims.iss, okta.issuer);
  assert.equal(v.claims.aud, okta.clientId);
  assert.equal(v.claims.nonce, req.nonce);
  assert.equal(v.claims.sub, 'alice');
  assert.equal(v.claims.email, ALICE.email);
  assert.equal(v.claims.email_verified, true);
  assert.equal(v.claims.name, ALICE.name);
  assert.equal(v.claims.given_name, 'Alice');
  assert.equal(v.claims.oid, ALICE.oid);
  assert.ok(v.claims.exp > Date.now() / 1000);

  // the key the tests can sign with is the one published
  const priv = okta.privateJwk();
  assert.equal(priv.kid, okta.kid);
  assert.ok(priv.d, 'privateJwk() has the private part');

  const seen = okta.requests.map((r) => `${r.method} ${r.path}`);
  assert.ok(seen.includes('POST /oauth2/v1/token'), seen.join('\n'));
  assert.equal(seen.filter((s) => s === 'GET /oauth2/v1/keys').length, 1, 'one JWKS GET logged');
  const tokenReq = okta.requests.find((r) => r.path === '/oauth2/v1/token');
  assert.match(tokenReq.headers.authorization, /^Basic /);
  assert.equal(new URLSearchParams(tokenReq.body).get('code_verifier'), req.verifier, 'the request body is logged');
});

test('PKCE is required, the code is bound to the verifier, and client auth is enforced', async () => {
  const b = new Browser();
  // no code_challenge: the provider refuses at the authorization endpoint
  const noPkce = new URL(authorizeRequest().url);
  noPkce.searchParams.delete('code_challenge');
  noPkce.searchParams.delete('code_challenge_method');
  const n = callbacks.length;
  const r = await b.get(noPkce.href);
  assert.equal(r.status, 200);
  assert.equal(callbacks.length, n + 1);
  assert.equal(callbacks.at(-1).error, 'invalid_request', JSON.stringify(callbacks.at(-1)));
  assert.match(callbacks.at(-1).error_description, /PKCE/);

  const req = authorizeRequest();
  await signIn(b, req.url, { login: 'alice' });
  const { code } = callbacks.at(-1);
  const wrongSecret = await exchange(okta, code, req.verifier, { secret: 'not-the-secret' });
  assert.equal(wrongSecret.status, 401);
  assert.equal(wrongSecret.json.error, 'invalid_client');
  const wrongVerifier = await exchange(okta, code, crypto.randomBytes(32).toString('base64url'));
  assert.equal(wrongVerifier.status, 400);
  assert.equal(wrongVerifier.json.error, 'invalid_grant');
});

test('tamper.idToken: re-signed with the current key (wrong aud verifies), or with a foreign key under the known kid', async () => {
  const jwks = await getJson(disco.jwks_uri);
  const b = new Browser();
  okta.tamper.idToken = (claims, header) => ({ claims: { ...claims, aud: 'someone-else' }, header });
  try {
    const { token } = await loginAndExchange(b, 'alice');
    const v = verifyJws(token.id_token, jwks);
    assert.ok(v.ok, `re-signed token verifies: ${v.why}`);
    assert.equal(v.header.kid, okta.kid);
    assert.equal(v.claims.aud, 'someone-else');
    assert.equal(v.claims.sub, 'alice', 'other claims kept');
    assert.equal(typeof token.access_token, 'string', 'the rest of the token reply is kept');

    const foreign = { ...generateSigningJwk('RS256'), kid: okta.kid };
    okta.tamper.idToken = (claims, header) => ({ claims, header, key: foreign });
    const { token: t2 } = await loginAndExchange(b, 'alice');
    const v2 = verifyJws(t2.id_token, jwks);
    assert.equal(v2.header.kid, okta.kid, 'the known kid');
    assert.equal(v2.ok, false, 'but the signature is not the published key\'s');
  } finally {
    okta.tamper.idToken = null;
  }
  const { token: t3 } = await loginAndExchange(b, 'alice');
  assert.ok(verifyJws(t3.id_token, jwks).ok, 'hook cleared: the provider\'s own token');
});

test('tamper.discovery and tamper.jwks rewrite their replies; null restores them', async () => {
  okta.tamper.discovery = (doc) => ({ ...doc, issuer: 'https://evil.example' });
  okta.tamper.jwks = () => ({ keys: [] });
  try {
    assert.equal((await getJson(`${okta.issuer}/.well-known/openid-configuration`)).issuer, 'https://evil.example');
    assert.deepEqual(await getJson(disco.jwks_uri), { keys: [] });
  } finally {
    okta.tamper.discovery = null;
    okta.tamper.jwks = null;
  }
  assert.equal((await getJson(`${okta.issuer}/.well-known/openid-configuration`)).issuer, okta.issuer);
  assert.deepEqual((await getJson(disco.jwks_uri)).keys.map((k) => k.kid), [okta.kid]);
});

test('consent form when autoConsent is off: signIn submits it', async () => {
  okta.autoConsent = false;
  try {
    const b = new Browser();
    const { res, token } = await loginAndExchange(b, 'alice');
    assert.deepEqual(res.history.filter((h) => h.form).map((h) => h.form), ['login', 'consent']);
    assert.equal(verifyJws(token.id_token, await getJson(disco.jwks_uri)).claims.email, ALICE.email);
  } finally {
    okta.autoConsent = true;
  }
});

test('accounts at runtime: a new account with a new claim, and a deleted one cannot sign in', async () => {
  okta.setAccount('bob', { email: 'bob@acme.test', email_verified: false, oid: 'oid-bob', department: 'R&D' });
  const { token } = await loginAndExchange(new Browser(), 'bob');
  const v = verifyJws(token.id_token, await getJson(disco.jwks_uri));
  assert.ok(v.ok, v.why);
  assert.equal(v.claims.sub, 'bob');
  assert.equal(v.claims.email_verified, false);
  assert.equal(v.claims.department, 'R&D', 'a claim name new at runtime is in the ID token');

  okta.deleteAccount('bob');
  const n = callbacks.length;
  const r = await signIn(new Browser(), authorizeRequest().url, { login: 'bob' });
  assert.equal(callbacks.length, n, 'no code for a deleted account');
  const forms = parseForms(r.text, r.url);
  assert.ok(forms.some((f) => f.fields.some(([k, val]) => k === 'prompt' && val === 'login')), 'the login page again');
});

test('rotateKeys: same issuer, JWKS has only the new kid, new tokens use it, sessions survive', async () => {
  const b = new Browser();
  await loginAndExchange(b, 'alice');
  const oldKid = okta.kid;
  const issuer = okta.issuer;
  okta.clearRequests();

  const newKid = okta.rotateKeys();
  assert.notEqual(newKid, oldKid);
  assert.equal(okta.kid, newKid);
  assert.equal(okta.privateJwk().kid, newKid);
  assert.equal(okta.issuer, issuer);
  const d = await getJson(`${okta.issuer}/.well-known/openid-configuration`);
  assert.equal(d.issuer, issuer);
  const jwks = await getJson(d.jwks_uri);
  assert.deepEqual(jwks.keys.map((k) => k.kid), [newKid]);

  // the provider session of b survives the rebuild: no login page this time
  const { res, token } = await loginAndExchange(b, 'alice');
  assert.ok(!res.history.some((h) => h.form), 'signed in by the existing session');
  const v = verifyJws(token.id_token, jwks);
  assert.ok(v.ok, v.why);
  assert.equal(v.header.kid, newKid);
  await getJson(d.jwks_uri);

  const keyGets = okta.requests.filter((r) => r.method === 'GET' && r.path === '/oauth2/v1/keys');
  assert.equal(keyGets.length, 2, 'both JWKS fetches logged');
  okta.clearRequests();
  assert.equal(okta.requests.length, 0);
});

test('RP-initiated logout: the confirm form with logout=yes ends the provider session', async () => {
  const b = new Browser();
  const { token } = await loginAndExchange(b, 'alice');
  const u = new URL(disco.end_session_endpoint);
  u.search = new URLSearchParams({ id_token_hint: token.id_token, post_logout_redirect_uri: `${rpUrl}/bye`, state: 'st1' });
  const page = await b.get(u.href);
  assert.equal(page.status, 200);
  const done = await b.submitForm(page, { fields: { logout: 'yes' } });
  assert.equal(done.url, `${rpUrl}/bye?state=st1`);
  assert.equal(done.text, 'bye st1');
  const again = await loginAndExchange(b, 'alice');
  assert.ok(again.res.history.some((h) => h.form === 'login'), 'signed out: the login page again');
});

test('ES256: P-256 key, JOSE r||s signatures from the provider and from tamper re-signing', async () => {
  const es = await startOkta({ redirectUris: [redirectUri], alg: 'ES256', accounts: { carol: { email: 'c@acme.test', oid: 'oid-c' } } });
  try {
    const d = await getJson(`${es.issuer}/.well-known/openid-configuration`);
    const jwks = await getJson(d.jwks_uri);
    assert.equal(jwks.keys[0].kty, 'EC');
    assert.equal(jwks.keys[0].crv, 'P-256');
    const b = new Browser();
    const { token } = await loginAndExchange(b, 'carol', es);
    const v = verifyJws(token.id_token, jwks);
    assert.ok(v.ok, v.why);
    assert.equal(v.header.alg, 'ES256');
    assert.equal(v.claims.oid, 'oid-c');
    es.tamper.idToken = (claims, header) => ({ claims: { ...claims, exp: 1 }, header });
    const { token: t2 } = await loginAndExchange(b, 'carol', es);
    const v2 = verifyJws(t2.id_token, jwks);
    assert.ok(v2.ok, v2.why);
    assert.equal(v2.claims.exp, 1);
  } finally {
    await es.stop();
  }
});

test('Browser: cookie Path and Max-Age deletion, redirects, stopAt', async () => {
  const b = new Browser();
  const r = await b.get(`${rpUrl}/app/set`);
  assert.equal(r.url, `${rpUrl}/app/unset`);
  assert.deepEqual(r.history.map((h) => [h.status, h.location]), [[302, '/app/unset']]);
  assert.equal(r.history[0].setCookies.length, 4, 'raw Set-Cookie headers kept per hop');
  assert.deepEqual(r.setCookies, ['gone=; Path=/; Max-Age=0']);
  const sent = new Set(r.text.split('; '));
  assert.deepEqual(sent, new Set(['b=2', 'a=1', 'c=3', 'gone=x']), 'the second hop sent every cookie');
  assert.deepEqual(Object.fromEntries(b.cookies(rpUrl)), { a: '1', b: '2', c: '3' }, 'gone was deleted by Max-Age=0');
  assert.equal((await b.get(`${rpUrl}/echo`)).text, 'a=1', 'Path=/app and default path /app stay under /app');
  b.setCookie(rpUrl, 'x', 'y');
  assert.equal((await b.get(`${rpUrl}/echo`)).text, 'a=1; x=y');
  const s = await b.get(`${rpUrl}/app/set`, { stopAt: (u) => u.endsWith('/app/unset') });
  assert.deepEqual(s, { stopped: true, url: `${rpUrl}/app/unset`, history: s.history });
  assert.equal(s.history.length, 1);
  const nf = await b.get(`${rpUrl}/app/set`, { follow: false });
  assert.equal(nf.status, 302);
  assert.equal(nf.headers.get('location'), '/app/unset');
  b.clearCookies();
  assert.equal(b.cookies(rpUrl).size, 0);
});
