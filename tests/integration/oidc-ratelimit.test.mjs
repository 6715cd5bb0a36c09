// The sign-in's rate limits (auth_rate_per_address, auth_rate_per_tenant):
// past the burst, /t/{t}/login and its callback answer 429 with Retry-After
// and nothing else happens; another client address still gets through; the
// per-tenant bucket holds all addresses together; /metrics counts refusals.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';

import { startGateway, scrapeMetrics, metricValue } from './lib/gateway.mjs';
import { adminClient, createTenant, operatorToken } from './lib/admin.mjs';

let gw;

function get(p, localAddress = '127.0.0.1') {
  return new Promise((resolve, reject) => {
    const r = http.request({ host: '127.0.0.1', port: gw.port, path: p, localAddress }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
    });
    r.on('error', reject);
    r.end();
  });
}

before(async () => {
  gw = await startGateway({ args: ['--auth-rate-per-address', '3', '--auth-rate-per-tenant', '5'] });
  const op = adminClient(gw.port, operatorToken(gw.dataDir));
  await createTenant(gw.port, op.token, 'acme');
  await createTenant(gw.port, op.token, 'beta');
});

after(async () => { if (gw) await gw.stop(); });

test('per address: the 4th sign-in request in a burst of 3 gets 429 with Retry-After; another address does not', async () => {
  for (let i = 0; i < 3; i++) {
    const r = await get('/t/acme/login');
    assert.equal(r.status, 404, 'within the burst: answered (this tenant has no OIDC settings)');
  }
  const r = await get('/t/acme/oauth/callback?code=x&state=y');
  assert.equal(r.status, 429, 'the callback shares the bucket');
  assert.match(r.headers['retry-after'], /^[1-9][0-9]*$/);
  assert.ok(Number(r.headers['retry-after']) <= 60);
  assert.match(r.body, /Too many sign-in attempts/);
  const other = await get('/t/acme/login', '127.0.0.2');
  assert.equal(other.status, 404, 'another client address has its own bucket');
});

test('per tenant: all addresses together; another tenant is not affected', async () => {
  // acme has used 4 of its 5 (3 + the one from 127.0.0.2); one more from a fresh address
  assert.equal((await get('/t/acme/login', '127.0.0.3')).status, 404);
  const r = await get('/t/acme/login', '127.0.0.4');
  assert.equal(r.status, 429, 'the tenant bucket is empty');
  assert.equal((await get('/t/beta/login', '127.0.0.5')).status, 404, 'beta has its own');
  const s = await scrapeMetrics(gw);
  assert.equal(metricValue(s, 'mcpgate_auth_rate_limited_total'), 2);
  // the page itself and the API are not rate limited
  assert.equal((await get('/t/acme/')).status, 200);
});
