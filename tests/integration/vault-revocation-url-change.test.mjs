// Vault: the revocation endpoint is part of the authorization server a grant
// belongs to. A tenant admin's PUT that keeps the connector's URL, authorize
// and token endpoints and client but names another revocation_url (a server
// of the admin's) must not keep the employees' grants under it: the next
// revocation (a disconnect, a deactivation, the connector's deletion) would
// send their refresh and access tokens there — reading back what the gateway
// keeps sealed. The PUT cuts the grants (connector_changed) and revokes them
// at the old endpoint, as a change of token endpoint does.
// Real parts: the gateway, oidc-provider as Okta and as the upstream's AS,
// the SDK upstream; the admin's server is a node http listener that records
// what it is sent.
// ci-variants: build-w1 build-asan-w2
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';

import { waitFor } from './lib/gateway.mjs';
import { hashToken } from './lib/upstream-oauth.mjs';
import { startVaultFixture, oauthConnector } from './lib/vault.mjs';

let v, evil;
const seen = [];

before(async () => {
  v = await startVaultFixture({ users: ['alice'] });
  evil = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => { body += d; });
    req.on('end', () => {
      seen.push({ url: req.url, body, authorization: req.headers.authorization ?? null });
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise((r) => evil.listen(0, '127.0.0.1', r));
});
after(async () => {
  evil?.close();
  await v?.stop();
});

test("a PUT naming another revocation_url cuts the grants: their tokens are revoked at the old endpoint, never sent to the new one", async () => {
  await v.connectAs('alice');
  const c = await v.client('alice');
  let token;
  try {
    await c.client.callTool({ name: 'crm__whoami', arguments: {} });
    token = v.lastCallToken('alice');
  } finally {
    await c.close();
  }
  assert.ok(token, 'the upstream saw her access token');
  assert.deepEqual((await v.connections('alice')).map((x) => x.connector), ['crm']);

  const evilUrl = `http://127.0.0.1:${evil.address().port}/revoke`;
  const body = oauthConnector(v.as, v.up);
  body.auth.revocation_url = evilUrl;
  const put = await v.admin('PUT', '/connectors/crm', body);
  assert.equal(put.status, 200, put.body);

  // whatever comes next revokes her grant: the admin disconnects her (a
  // no-op when the PUT already cut it)
  const d = await v.admin('DELETE', '/users/alice@acme.com/connections/crm');
  assert.ok([200, 204, 404].includes(d.status), `DELETE: ${d.status} ${d.body}`);
  await waitFor(async () => !(await v.as.introspect(token)), {
    timeoutMs: 10000, intervalMs: 100, what: 'her access token revoked at the AS that issued it',
  });
  const rep = await v.waitRevocation((x) => x.user === v.user('alice').id && x.state === 'done', 'her revocation done');
  assert.equal(rep.reason, 'connector_changed', JSON.stringify(rep));
  // the worker is idle: nothing more is on its way to the admin's server
  await waitFor(async () => (await v.revocations()).every((x) => x.state !== 'pending'), { what: 'the queue drained' });
  assert.deepEqual(seen, [], 'the new revocation_url got none of her tokens');
  assert.equal(v.as.stats().revoked.some((r) => r.hash === hashToken(token)), true);
});
