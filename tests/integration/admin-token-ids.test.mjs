// An employee token's DELETE names one token exactly (found by review):
// DELETE /admin/v1/tenants/{t}/tokens/{tokenId} copied {tokenId} into a
// 17-byte buffer, so "<a real id>anything" was cut to that id and revoked
// a token the path did not name (the SCIM and admin token routes already
// answer 404 for an id of another length).
// ci-variants: build-w1
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway } from './lib/gateway.mjs';
import { createTenant, operatorToken, api } from './lib/admin.mjs';
import { scimClient, oktaUser } from './lib/scim.mjs';

let g, op;
before(async () => {
  g = await startGateway({});
  op = operatorToken(g.dataDir);
  const t = await createTenant(g.port, op, 'acme');
  const r = await scimClient(g.port, 'acme', t.scim.token).post('/Users', oktaUser('alice@acme.com'));
  assert.equal(r.status, 201, r.body);
});
after(async () => { await g?.stop(); });

test('DELETE of an employee token id with anything after it is a 404 and revokes nothing', async () => {
  const m = await api(g.port, op, 'POST', '/admin/v1/tenants/acme/tokens', { user: 'alice@acme.com', name: 'laptop' });
  assert.equal(m.status, 201, m.body);
  const d = await api(g.port, op, 'DELETE', `/admin/v1/tenants/acme/tokens/${m.json.id}x`);
  assert.equal(d.status, 404, `DELETE …/tokens/${m.json.id}x: ${d.status} ${d.body}`);
  const list = await api(g.port, op, 'GET', '/admin/v1/tenants/acme/tokens');
  assert.ok(list.json.tokens.some((t) => t.id === m.json.id), 'the token the path did not name is still there');
  assert.equal((await api(g.port, op, 'DELETE', `/admin/v1/tenants/acme/tokens/${m.json.id}`)).status, 204);
});
