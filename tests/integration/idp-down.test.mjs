// Fault injection (issue 25 item 2): the identity provider goes down. What
// the gateway already issued keeps working without it — a browser session,
// a token made on the page, MCP calls with it — and a new sign-in fails
// fast with a clear page naming the provider, not a hang or a 500.
// ci-variants: build-w1 (restarts the gateway)
import { test, after } from 'node:test';
import assert from 'node:assert/strict';

import { startLoginFixture, signIn, me } from './lib/login.mjs';
import { startGateway, request } from './lib/gateway.mjs';
import { startEverything, connectClient, toolText } from './lib/mcp.mjs';

let fx, up;
after(async () => {
  if (fx) await fx.stop();
  if (up) await up.stop?.();
});

test('IdP down: issued sessions and tokens keep working (also after a restart); a new sign-in fails clearly', async () => {
  fx = await startLoginFixture({
    tenants: { acme: { users: [{ userName: 'alice@acme.com', externalId: '00u-alice' }] } },
    accounts: { '00u-alice': { email: 'alice@acme.com', email_verified: true } },
  });
  up = await startEverything();
  const a = fx.t.acme;
  await a.scim.createGroup('eng', [a.users['alice@acme.com'].id]);
  let r = await a.admin('PUT', '/connectors/everything', { url: up.url, auth: { type: 'header', name: 'X-Key', value: 'k' } });
  assert.equal(r.status, 201, r.body);
  r = await a.admin('PUT', '/policy', { version: 1, default: 'block', rules: [{ groups: ['eng'], connector: 'everything', allow: ['echo'] }] });
  assert.equal(r.status, 200, r.body);
  await a.setSettings({ self_service_tokens: true });

  const b = fx.browser();
  await signIn(b, `${fx.base('acme')}/login`, { login: '00u-alice' });
  const { json: mj } = await me(b, fx, 'acme');
  const made = await b.post(`${fx.base('acme')}/api/tokens`, JSON.stringify({ name: 'laptop', expires_days: 1 }), {
    follow: false, headers: { 'content-type': 'application/json', 'x-csrf-token': mj.csrf },
  });
  assert.equal(made.status, 201, made.text);
  const token = JSON.parse(made.text).token;

  await fx.okta.stop(); // the provider is gone (its port refuses)

  // what the gateway issued does not need it
  const m = await me(b, fx, 'acme');
  assert.equal(m.status, 200, 'the browser session still works');
  const c = await connectClient(`${fx.base('acme')}/mcp/everything`, token);
  const res = await c.client.callTool({ name: 'echo', arguments: { message: 'still here' } });
  assert.match(toolText(res), /still here/);
  await c.client.close();

  // a new sign-in: the gateway sends the browser to the provider's authorize
  // endpoint it knows (the browser then finds the provider down: Okta's
  // host, not the gateway, is named) ...
  const b2 = fx.browser();
  const lr = await b2.get(`${fx.base('acme')}/login`, { follow: false });
  assert.equal(lr.status, 302, lr.text);
  assert.ok(String(lr.headers.get('location') ?? '').startsWith(fx.okta.issuer), `to the provider: ${lr.headers.get('location')}`);
  // ... and a gateway that must read the provider's metadata (restarted:
  // nothing cached) fails fast with a page that names the provider
  const dataDir = fx.gw.dataDir;
  await fx.gw.stop();
  fx.gw = await startGateway({ dataDir, args: ['--auth-rate-per-address', '100000'] });
  const t0 = Date.now();
  const lr2 = await request(fx.gw.port, { path: '/t/acme/login', timeoutMs: 20000 });
  assert.ok([502, 503].includes(lr2.status), `sign-in with the provider down: ${lr2.status} ${lr2.body.slice(0, 300)}`);
  assert.match(lr2.body, /identity provider|Okta|sign-in provider|provider/i, 'the page says the provider is the problem');
  assert.doesNotMatch(lr2.body, /client_secret|clientSecret/);
  assert.ok(Date.now() - t0 < 20000);
  // the token made before still works on the restarted gateway
  const c2 = await connectClient(`${fx.gw.url}/t/acme/mcp/everything`, token);
  assert.match(toolText(await c2.client.callTool({ name: 'echo', arguments: { message: 'after restart' } })), /after restart/);
  await c2.client.close();
});
