// Vault 2/2 (issue 21): a discovered connector is read again — on a
// schedule (discovery_refresh_s), when the upstream's authorization server
// rejects the gateway's registration (invalid_client at a refresh), and on
// the admin's POST …/connectors/{c}/rediscover — and updated only when what
// the upstream says changed.
// Real parts: the gateway binary (discovery_refresh_s = 2 s here);
// oidc-provider as the upstream's AS with RFC 7591 registration and RFC
// 8707 resource indicators; the SDK MCP upstream that introspects at its AS
// (and can move to a second AS: setAs); the SDK client on the aggregated
// endpoint; the scripted browser of lib/login.mjs for the connect flow.
// The AS forgetting registrations (forgetRegistrations) is what an AS that
// expires or purges dynamic clients does: its endpoints answer
// invalid_client to the stored client from then on.
// ci-variants: build-w1 build-asan-w2 (two loops are the sanitizer run's; CI's 15 minutes)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { waitFor } from './lib/gateway.mjs';
import { toolText } from './lib/mcp.mjs';
import { startVaultFixture } from './lib/vault.mjs';
import { startUpstreamAS } from './lib/upstream-oauth.mjs';

let v, as2;
const SCOPES = ['openid', 'offline_access', 'tools.read'];
const connector = async () => {
  const g = await v.admin('GET', '/connectors/crm');
  assert.equal(g.status, 200, g.body);
  return g.json;
};

before(async () => {
  v = await startVaultFixture({
    asOptions: { registration: true, resourceIndicators: true },
    upOptions: { audience: true },
    connectorBody: null,
    gatewayArgs: ['--discovery-refresh-s', '2'],
  });
  const r = await v.admin('PUT', '/connectors/crm', { url: v.up.url, auth: { type: 'oauth', discover: true, scopes: SCOPES } });
  assert.equal(r.status, 201, r.body);
});
after(async () => {
  await as2?.close();
  await v?.stop();
});

test('a discovered connector is read again on schedule; nothing changed, nothing is written or cut', async () => {
  const c0 = await connector();
  assert.equal(c0.rediscovery.reason, 'scheduled');
  assert.ok(Date.parse(c0.rediscovery.next_check_at) > Date.now() - 1000, c0.rediscovery.next_check_at);
  await v.connectAs('alice');
  await waitFor(async () => (await connector()).rediscovery.last_result === 'unchanged',
    { timeoutMs: 10000, intervalMs: 200, what: 'a scheduled reading' });
  const c1 = await connector();
  assert.equal(c1.auth.client_id, c0.auth.client_id);
  assert.equal(c1.updated, c0.updated, 'the record was not rewritten');
  assert.ok(c1.rediscovery.last_checked_at);
  assert.equal(c1.rediscovery.attempts, 0);
  assert.equal(v.as.stats().registrations, 1, 'the stored registration is reused');
  assert.equal((await v.connections('alice')).length, 1, "Alice's grant stays");
});

test('the AS forgets the registration: a refresh meets invalid_client, the gateway registers anew, the old grants go', async () => {
  await v.connectAs('bob', { ttl: 12 });
  const oldClient = (await connector()).auth.client_id;
  assert.ok(v.as.forgetRegistrations() >= 1);
  const c = await v.client('bob');
  try {
    await waitFor(async () => (await v.connections('bob'))[0].expires_at - Date.now() / 1000 < 9.5,
      { timeoutMs: 8000, intervalMs: 200, what: "Bob's token is about to expire" });
    // the refresh is refused (invalid_client): this call fails clearly
    const r = await c.client.callTool({ name: 'crm__whoami', arguments: {} }).then((x) => ({ ok: x }), (e) => ({ err: e }));
    const text = r.err ? String(r.err.message) : toolText(r.ok);
    assert.ok(r.err || r.ok.isError, `the call failed: ${text}`);
    assert.equal(v.as.stats().tokenRequests.at(-1).grant_type, 'refresh_token');
    assert.equal(v.as.stats().tokenRequests.at(-1).status, 401);
  } finally {
    await c.close();
  }
  // registered anew at the same AS, without the admin
  await waitFor(async () => (await connector()).auth.client_id !== oldClient,
    { timeoutMs: 10000, intervalMs: 200, what: 'a new registration' });
  const c1 = await connector();
  assert.equal(v.as.stats().registrations, 2);
  assert.equal(c1.auth.discovered.registration, 'dcr');
  assert.equal(c1.rediscovery.last_result, 'changed');
  // the grants of the old client were cut (their refresh tokens are the old client's)
  assert.deepEqual(await v.connections('alice'), []);
  assert.deepEqual(await v.connections('bob'), []);
  const rep = await v.waitRevocation((e) => e.user === v.user('bob').id && e.reason === 'connector_changed', "Bob's cut grant reported");
  assert.equal(rep.connector, 'crm');
  // Bob connects again, with the new client, and his calls work
  await v.connectAs('bob');
  assert.equal(v.as.stats().tokenRequests.at(-1).status, 200);
  const c2 = await v.client('bob');
  try {
    const who = JSON.parse(toolText(await c2.client.callTool({ name: 'crm__whoami', arguments: {} })));
    assert.equal(who.sub, 'bob');
    assert.equal(who.client_id, c1.auth.client_id);
  } finally {
    await c2.close();
  }
});

test('POST …/rediscover: unchanged keeps everything; {"register":"new"} registers anew and cuts grants', async () => {
  await v.connectAs('alice');
  const before = await connector();
  const regs = v.as.stats().registrations;
  let r = await v.admin('POST', '/connectors/crm/rediscover');
  assert.equal(r.status, 200, r.body);
  assert.equal(r.json.rediscovery.result, 'unchanged');
  assert.equal(r.json.auth.client_id, before.auth.client_id);
  assert.equal(v.as.stats().registrations, regs);
  assert.equal((await v.connections('alice')).length, 1);

  r = await v.admin('POST', '/connectors/crm/rediscover', { register: 'new' });
  assert.equal(r.status, 200, r.body);
  assert.equal(r.json.rediscovery.result, 'changed');
  assert.notEqual(r.json.auth.client_id, before.auth.client_id);
  assert.equal(r.json.auth.redirect_uri, `${v.base}/connect/crm/callback`);
  assert.equal(v.as.stats().registrations, regs + 1);
  assert.deepEqual(await v.connections('alice'), []);

  // refusals: a bad body, a method, a connector that is not discovered, an unknown one
  r = await v.admin('POST', '/connectors/crm/rediscover', { register: 'sometimes' });
  assert.equal(r.status, 400, r.body);
  r = await v.admin('POST', '/connectors/crm/rediscover', ['new']);
  assert.equal(r.status, 400, r.body);
  // a body is application/json like every admin body (found by review: a
  // text/plain {"register":"new"} was acted on)
  r = await v.admin('POST', '/connectors/crm/rediscover', undefined, { raw: '{"register":"new"}', headers: { 'content-type': 'text/plain' } });
  assert.equal(r.status, 415, r.body);
  assert.equal(v.as.stats().registrations, regs + 1, 'nothing was registered for it');
  r = await v.admin('GET', '/connectors/crm/rediscover');
  assert.equal(r.status, 405, r.body);
  r = await v.admin('POST', '/connectors/nope/rediscover');
  assert.equal(r.status, 404, r.body);
  r = await v.admin('PUT', '/connectors/plain', { url: v.up.url, auth: { type: 'none' } });
  assert.equal(r.status, 201, r.body);
  assert.equal(r.json.rediscovery, undefined, 'a plain connector has no schedule');
  r = await v.admin('POST', '/connectors/plain/rediscover');
  assert.equal(r.status, 404, r.body);
  assert.match(r.json.message, /discover/);
  r = await v.admin('DELETE', '/connectors/plain');
  assert.equal(r.status, 204, r.body);
});

test('the upstream moves to another authorization server: the next reading follows it, old grants are cut', async () => {
  await v.connectAs('alice');
  as2 = await startUpstreamAS({ redirectUris: [`${v.base}/connect/crm/callback`], registration: true, resourceIndicators: true });
  as2.setResource(v.up.url);
  v.up.setAs(as2);
  await waitFor(async () => (await connector()).auth.discovered.issuer === as2.issuer,
    { timeoutMs: 10000, intervalMs: 200, what: 'the connector follows the new AS' });
  const c = await connector();
  assert.equal(c.auth.authorize_url, as2.authorizeUrl);
  assert.equal(c.auth.token_url, as2.tokenUrl);
  assert.equal(c.auth.revocation_url, as2.revocationUrl);
  assert.equal(as2.stats().registrations, 1, 'registered at the new AS');
  assert.deepEqual(await v.connections('alice'), [], "Alice's grant at the old AS is cut");
  // connecting again goes to the new AS, and calls carry its token
  const b = v.fx.browser();
  const { signIn } = await import('./lib/login.mjs');
  const s = await signIn(b, `${v.base}/login`, { login: '00u-alice' });
  assert.equal(s.status, 200);
  as2.loginAs('alice');
  const res = await b.get(`${v.base}/connect/crm`);
  as2.loginAs(null);
  assert.equal(res.status, 200, res.text.slice(0, 300));
  const cl = await v.client('alice');
  try {
    const who = JSON.parse(toolText(await cl.client.callTool({ name: 'crm__whoami', arguments: {} })));
    assert.equal(who.sub, 'alice');
  } finally {
    await cl.close();
  }
  assert.equal(v.up.seen().filter((x) => x.method === 'tools/call').at(-1).aud, v.up.url);
});

test('an authorization server on another host is followed only when the admin accepts it', async () => {
  const as3 = await startUpstreamAS({ redirectUris: [`${v.base}/connect/crm/callback`], registration: true,
    resourceIndicators: true, host: '127.0.0.2' });
  try {
    as3.setResource(v.up.url);
    v.up.setAs(as3);
    await waitFor(async () => (await connector()).rediscovery.last_result === 'failed',
      { timeoutMs: 10000, intervalMs: 200, what: 'the scheduled reading refuses the move' });
    const c = await connector();
    assert.equal(c.auth.discovered.issuer, as2.issuer, 'still the previous AS');
    assert.match(c.rediscovery.last_error, /another host \(127\.0\.0\.2, was 127\.0\.0\.1\)/);
    assert.equal(as3.stats().registrations, 0, 'nothing registered there');
    // the admin accepts it: not by POST …/rediscover alone — the upstream
    // alone names that server, so it is read at the untrusted egress
    // level, which refuses this loopback (internal) address — but by naming
    // it in auth.authorization_server
    const r0 = await v.admin('POST', '/connectors/crm/rediscover');
    assert.equal(r0.status, 400, r0.body);
    assert.equal(r0.json.error, 'egress_refused', r0.body);
    assert.match(r0.json.message, /auth\.authorization_server/);
    assert.equal(as3.stats().registrations, 0, 'nothing registered there');
    const r = await v.admin('PUT', '/connectors/crm',
      { url: v.up.url, auth: { type: 'oauth', discover: true, scopes: SCOPES, authorization_server: as3.issuer } });
    assert.equal(r.status, 200, r.body);
    assert.equal(r.json.auth.authorization_server, as3.issuer);
    assert.equal(r.json.auth.discovered.issuer, as3.issuer);
    assert.equal(r.json.auth.discovered.as_host_differs, true);
    assert.ok(r.json.warnings.some((w) => /another host/.test(w)), JSON.stringify(r.json.warnings));
    assert.equal(as3.stats().registrations, 1);
  } finally {
    v.up.setAs(as2);
    await as3.close();
  }
});

test('deleting the connector ends its schedule; the store checks clean', async () => {
  const r = await v.admin('DELETE', '/connectors/crm');
  assert.equal(r.status, 204, r.body);
  const g = await v.admin('GET', '/connectors/crm');
  assert.equal(g.status, 404);
  // nothing is read again for a connector that is gone (a reading would log it)
  const mark = v.fx.gw.mark();
  await new Promise((res) => setTimeout(res, 2500));
  assert.equal(v.fx.gw.logs().slice(mark).filter((e) => /reading its authorization again/.test(e.msg ?? '')).length, 0);
});
