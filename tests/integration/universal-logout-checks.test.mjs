// Okta Universal Logout (issue 19): every request that is not exactly what
// the tenant's Okta sends is refused with the draft's status and a clear
// message, and nothing is done — bob, whom every request names, keeps his
// credentials. Authentication comes first (a bad token with a bad body is a
// 401); forgeries (another key under Okta's kid, an unknown kid, alg none,
// HS256), wrong aud, iss, sub, typ, dates and jti; the body's shapes and
// caps; an unknown subject (404) and the replay of its token (401); tenants
// that do not exist or have no Okta settings.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';

import { request, scrapeMetrics, metricValue } from './lib/gateway.mjs';
import { startLoginFixture } from './lib/login.mjs';
import { generateSigningJwk, signJwt } from './lib/okta.mjs';
import { logoutToken, postLogout, emailSubject, issSubSubject } from './lib/gtr.mjs';

const BOB = 'bob@acme.com';
let fx, t, aud, bobToken;

before(async () => {
  fx = await startLoginFixture({
    tenants: { acme: { users: [{ userName: BOB, externalId: '00u-bob' }] } },
    accounts: { '00u-bob': { email: BOB } },
  });
  t = fx.t.acme;
  aud = `${fx.gw.url}/t/acme/oauth/global-logout`;
  const r = await t.admin('POST', '/tokens', { user: BOB, name: 'laptop' });
  assert.equal(r.status, 201, r.body);
  bobToken = r.json.token;
  const bare = await fx.op.call('POST', '/admin/v1/tenants', { id: 'bare' });
  assert.equal(bare.status, 201, bare.body);
});

after(async () => { if (fx) await fx.stop(); });

const bobAlive = async () => (await request(fx.gw.port, {
  method: 'POST', path: '/t/acme/mcp',
  body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } } }),
  headers: { authorization: `Bearer ${bobToken}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
})).status === 200;

const now = () => Math.floor(Date.now() / 1000);
const bob = emailSubject(BOB);

test('bad, forged or misdirected tokens: 401, nothing done', async () => {
  const foreign = generateSigningJwk(fx.okta.alg);
  const m0 = await scrapeMetrics(fx.gw);
  const cases = [
    ['no Authorization', null, /Bearer token .* is required/, 'invalid_request'],
    ['a token of another scheme', 'basic', /Bearer token .* is required/, 'invalid_request'],
    ['not a JWT', 'not-a-jwt', /Bearer token .* is required/, 'invalid_request'],
    ['another key under Okta\'s kid', logoutToken(fx.okta, { aud, key: { ...foreign, kid: fx.okta.kid } }), /bad signature/],
    ['an unknown kid', logoutToken(fx.okta, { aud, key: foreign }), /no key/],
    ['alg none', logoutToken(fx.okta, { aud, alg: 'none' }), /alg/],
    ['HS256', signJwt({ iss: fx.okta.issuer, aud, sub: fx.okta.clientId, exp: now() + 300, iat: now(), jti: 'h' },
      { alg: 'HS256', typ: 'global-token-revocation+jwt', kid: fx.okta.kid }, { kty: 'oct', k: crypto.randomBytes(32).toString('base64url') }), /alg/],
    ['another tenant\'s endpoint (aud)', logoutToken(fx.okta, { aud: `${fx.gw.url}/t/bare/oauth/global-logout` }), /aud/],
    ['an ID token\'s aud (the client)', logoutToken(fx.okta, { aud: fx.okta.clientId }), /aud/],
    ['another issuer', logoutToken(fx.okta, { aud, iss: 'https://evil.okta.com' }), /iss/],
    ['another app (sub)', logoutToken(fx.okta, { aud, sub: '0oa-other-app' }), /sub/],
    ['no typ (an ID token\'s header)', logoutToken(fx.okta, { aud, header: { typ: undefined } }), /typ/],
    ['typ JWT', logoutToken(fx.okta, { aud, typ: 'JWT' }), /typ/],
    ['expired', logoutToken(fx.okta, { aud, iat: now() - 900, nbf: now() - 1200, exp: now() - 600 }), /exp/],
    ['issued in the future', logoutToken(fx.okta, { aud, iat: now() + 600, nbf: now() - 10, exp: now() + 700 }), /iat/],
    ['no iat', logoutToken(fx.okta, { aud, claims: { iat: undefined } }), /iat/],
    ['not valid yet', logoutToken(fx.okta, { aud, nbf: now() + 600 }), /nbf/],
    ['exp a day ahead', logoutToken(fx.okta, { aud, exp: now() + 86400 }), /too far ahead/],
    ['no jti', logoutToken(fx.okta, { aud, claims: { jti: undefined } }), /jti/],
  ];
  for (const [what, tok, re, code = 'invalid_token'] of cases) {
    const headers = tok === 'basic' ? { authorization: 'Basic Ym9iOng=' } : {};
    const r = await postLogout(fx.gw.port, 'acme', tok === 'basic' ? null : tok, bob, { headers });
    assert.equal(r.status, 401, `${what}: ${r.status} ${r.body}`);
    assert.equal(r.json?.error, code, `${what}: ${r.body}`);
    assert.match(r.json.error_description, re, what);
    assert.match(r.json.error_description, /nothing was done/, what);
    assert.match(r.headers['www-authenticate'] ?? '', /^Bearer/, `${what}: WWW-Authenticate`);
  }
  // authentication first: a bad body with a bad token is a 401, not a 400
  const both = await postLogout(fx.gw.port, 'acme', logoutToken(fx.okta, { aud, iss: 'https://evil' }), '{"nope"', { contentType: 'text/plain' });
  assert.equal(both.status, 401, both.body);
  assert.ok(await bobAlive(), 'bob keeps his token');
  const m1 = await scrapeMetrics(fx.gw);
  assert.equal(metricValue(m1, 'mcpgate_universal_logouts_total', { result: 'unauthorized' }) -
    metricValue(m0, 'mcpgate_universal_logouts_total', { result: 'unauthorized' }), cases.length + 1);
  assert.equal(metricValue(m1, 'mcpgate_universal_logouts_total', { result: 'done' }), 0);
  // an unknown kid made the gateway look for rotated keys, once
  const jwksFetches = fx.okta.requests.filter((q) => q.path === '/oauth2/v1/keys').length;
  assert.ok(jwksFetches >= 2 && jwksFetches <= 3, `JWKS fetched ${jwksFetches} times`);
  const logs = fx.gw.stderrText();
  for (const [, tok] of cases) if (tok && tok.split('.').length === 3) assert.ok(!logs.includes(tok.split('.')[1]), 'no token in the log');
});

test('malformed bodies: 400, 413, 415, nothing done', async () => {
  const cases = [
    ['not JSON', '{"sub_id":', 400, /not valid JSON/],
    ['an array', '[]', 400, /JSON object/],
    ['no subject', {}, 400, /lacks "sub_id"/],
    ['both names', { ...bob, subject: bob.sub_id }, 400, /twice/],
    ['another member', { ...bob, reason: 'x' }, 400, /besides/],
    ['an unsupported format', { sub_id: { format: 'opaque', id: 'bob' } }, 400, /format not supported/],
    ['a repeated key', `{"sub_id":{"format":"email","email":"${BOB}","email":"alice@acme.com"}}`, 400, /repeats a key/],
    ['iss_sub without sub', { sub_id: { format: 'iss_sub', iss: fx.okta.issuer } }, 400, /lacks "sub"/],
    ['an e-mail that is none', emailSubject('bob'), 400, /e-mail address/],
    ['text/plain', bob, 415, /application\/json/, 'text/plain'],
    ['no content type', bob, 415, /application\/json/, null],
    ['larger than 4 KiB', { sub_id: { format: 'email', email: `${'b'.repeat(5000)}@acme.com` } }, 413, /too large/],
  ];
  for (const [what, body, status, re, contentType = 'application/json'] of cases) {
    const r = await postLogout(fx.gw.port, 'acme', logoutToken(fx.okta, { aud }), body, { contentType });
    assert.equal(r.status, status, `${what}: ${r.status} ${r.body}`);
    assert.match(r.json?.error_description ?? '', re, `${what}: ${r.body}`);
    assert.ok(!r.body.includes('alice@acme.com'), `${what}: no value quoted`);
  }
  assert.ok(await bobAlive(), 'bob keeps his token');
});

test('unknown subjects: 404 and the token is spent; unknown tenants and tenants without Okta', async () => {
  const tok = logoutToken(fx.okta, { aud });
  const r = await postLogout(fx.gw.port, 'acme', tok, emailSubject('nobody@acme.com'));
  assert.equal(r.status, 404, r.body);
  assert.equal(r.json.error, 'user_not_found');
  const replay = await postLogout(fx.gw.port, 'acme', tok, bob);
  assert.equal(replay.status, 401, replay.body);
  assert.match(replay.json.error_description, /used already/);
  const other = await postLogout(fx.gw.port, 'acme', logoutToken(fx.okta, { aud }), issSubSubject('https://evil.okta.com', '00u-bob'));
  assert.equal(other.status, 404, other.body);
  assert.match(other.json.error_description, /not this tenant's Okta/);
  const unknownSub = await postLogout(fx.gw.port, 'acme', logoutToken(fx.okta, { aud }), issSubSubject(fx.okta.issuer, '00u-nobody'));
  assert.equal(unknownSub.status, 404, unknownSub.body);
  assert.ok(await bobAlive(), 'bob keeps his token');

  const none = await postLogout(fx.gw.port, 'nope', logoutToken(fx.okta, { aud: `${fx.gw.url}/t/nope/oauth/global-logout` }), bob);
  assert.equal(none.status, 404, none.body);
  const bare = await postLogout(fx.gw.port, 'bare', logoutToken(fx.okta, { aud: `${fx.gw.url}/t/bare/oauth/global-logout` }), bob);
  assert.equal(bare.status, 401, bare.body);
  assert.match(bare.json.error_description, /no Okta \(OIDC\) settings/);
  const m = await scrapeMetrics(fx.gw);
  assert.ok(metricValue(m, 'mcpgate_universal_logouts_total', { result: 'unknown_subject' }) >= 3);
  assert.ok(metricValue(m, 'mcpgate_universal_logouts_total', { result: 'malformed' }) >= 12);
  // and a valid one for bob does what the others did not
  const ok = await postLogout(fx.gw.port, 'acme', logoutToken(fx.okta, { aud }), issSubSubject(fx.okta.issuer, '00u-bob', 'subject'));
  assert.equal(ok.status, 204, ok.body);
  assert.equal(await bobAlive(), false, 'now bob is signed out');
});
