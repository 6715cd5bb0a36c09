// ci-variants: build-w1 build-asan-w2 (one loop plain, two loops under ASan; the plain two-loop run only repeated it — CI's 15 minutes)
// A tenant's identity provider that trickles its replies (a malicious or
// broken one: a byte every second, never done) cannot hold sign-ins open:
// each reply must be complete 10 s after its head, so the callback fails
// with the 502 page instead of keeping the employee's connection, the
// outbound transfer and the flow's memory for as long as the provider likes
// (the idle timeout alone never fires while bytes keep coming).
// The deadline is lowered to 2 s by the test hook MCPGATE_TEST_FETCH_BODY_MS
// (the first-byte and idle timeouts stay 10 s, the trickle a byte a
// second): what is tested is that the deadline ends the reply, and the log
// line naming it says it did, not how long it waits.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';

import { startGateway, request, waitFor } from './lib/gateway.mjs';
import { adminClient, createTenant, operatorToken } from './lib/admin.mjs';
import { generateSigningJwk, publicJwk } from './lib/okta.mjs';

let gw, idp, issuer;
const seen = [];
const trickling = new Set();

before(async () => {
  const key = publicJwk(generateSigningJwk('RS256'));
  idp = http.createServer((req, res) => {
    const path = req.url.split('?')[0];
    seen.push(`${req.method} ${path}`);
    req.resume();
    if (path === '/.well-known/openid-configuration') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({
        issuer, authorization_endpoint: `${issuer}/authorize`, token_endpoint: `${issuer}/token`,
        jwks_uri: `${issuer}/keys`, response_types_supported: ['code'],
        id_token_signing_alg_values_supported: ['RS256'], code_challenge_methods_supported: ['S256'],
      }));
    } else if (path === '/keys') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ keys: [key] }));
    } else if (path === '/token') {
      // the head at once, then one byte a second, forever
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{');
      const t = setInterval(() => res.write(' '), 1000);
      trickling.add(t);
      res.on('close', () => { clearInterval(t); trickling.delete(t); });
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise((r) => idp.listen(0, '127.0.0.1', r));
  issuer = `http://127.0.0.1:${idp.address().port}`;
  gw = await startGateway({
    args: ['--auth-rate-per-address', '100000', '--auth-rate-per-tenant', '100000'],
    env: { MCPGATE_TEST_FETCH_BODY_MS: '2000' },
  });
  const op = adminClient(gw.port, operatorToken(gw.dataDir));
  await createTenant(gw.port, op.token, 'slow');
  const r = await op.call('PUT', '/admin/v1/tenants/slow/oidc', { issuer, client_id: 'c', client_secret: 's' });
  assert.equal(r.status, 201, r.body);
});

after(async () => {
  for (const t of trickling) clearInterval(t);
  idp?.closeAllConnections();
  await new Promise((r) => (idp ? idp.close(r) : r()));
  if (gw) await gw.stop();
});

test('a token endpoint that trickles its reply: the callback gives up at the deadline after the head', async () => {
  const start = await request(gw.port, { path: '/t/slow/login' });
  assert.equal(start.status, 302, start.body);
  const state = new URL(start.headers.location).searchParams.get('state');
  const cookie = start.headers['set-cookie'].map((c) => c.split(';')[0]).join('; ');
  const r = await request(gw.port, {
    path: `/t/slow/oauth/callback?code=abc&state=${state}`, headers: { cookie }, timeoutMs: 18000,
  });
  assert.ok(seen.includes('POST /token'), 'the code was exchanged');
  assert.equal(r.status, 502, r.body);
  assert.match(r.body, /did not complete the sign-in|cannot reach/);
  // the body's deadline ended it (not the idle or first-byte timeout: a
  // byte a second, 10 s each)
  await waitFor(() => gw.logs().some((e) => /not complete 2 s after its head/.test(e.msg ?? '')), { what: 'the reason logged' });
});
