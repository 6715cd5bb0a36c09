// Approvals (issue 23): pending requests survive a restart; held streams do
// not — the client is told which request stays pending, and a later approval
// is the grant its retry takes (once).
// ci-variants: build-w1 (stops and starts the gateway; the held flow runs under ASan in approvals.test.mjs)
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { connectClient, toolText } from './lib/mcp.mjs';
import { startPolicyFixture, applyPolicy, forwardedCalls, groups, waitFor, ownTokens } from './lib/policy.mjs';
import { startGateway, request } from './lib/gateway.mjs';
import { api } from './lib/admin.mjs';

test('a pending request survives a restart; the held client is told; the approval after it lets the retry through once', async () => {
  const f = await startPolicyFixture({ users: ['alice@acme.com', 'bob@acme.com'], gatewayArgs: ['--approval-progress-interval-ms', '200'] });
  await ownTokens(f, ['bob']); // decisions need bob's own token (f.tokens are admin-minted)
  const g = groups(f.t.scim);
  await g.create('Engineers', [f.users.alice.id, f.users.bob.id]);
  await g.create('DB Admins', [f.users.bob.id]);
  await applyPolicy(f.t, { version: 1, default: 'block', rules: [{ groups: ['Engineers'], connector: 'everything', approve: ['get-sum'], approvers: ['DB Admins'] }] });
  const c = await connectClient(f.url, f.tokens.alice);
  const args = { a: 4, b: 5 };
  const call = c.client.callTool({ name: 'get-sum', arguments: args }, undefined, { timeout: 20000, resetTimeoutOnProgress: true, onprogress: () => {} })
    .then((result) => ({ result }), (error) => ({ error }));
  let req;
  await waitFor(async () => {
    const r = await f.t.admin('GET', '/approvals?state=pending');
    req = r.json?.approvals?.[0];
    return !!req;
  }, { timeoutMs: 8000, what: 'the pending request' });
  const dataDir = f.gw.dataDir;
  await f.gw.stop(); // SIGTERM: the held stream is answered before the process exits
  const out = await call;
  assert.ok(out.error, 'the held call ended with an error');
  assert.equal(out.error.code, -32005);
  assert.ok(String(out.error.message).includes(req.id), `the error names the request: ${out.error.message}`);
  assert.match(String(out.error.message), /restarting/);
  await c.client.close().catch(() => {});

  const gw2 = await startGateway({ dataDir });
  try {
    const op = f.t.opToken;
    let r = await api(gw2.port, op, 'GET', `/admin/v1/tenants/acme/approvals/${req.id}`);
    assert.equal(r.status, 200, r.body);
    assert.equal(r.json.state, 'pending', 'the request survived the restart');
    r = await request(gw2.port, { method: 'POST', path: `/t/acme/approvals/${req.id}/approve`, headers: { Authorization: `Bearer ${f.own.bob}` } });
    assert.equal(r.status, 200, r.body);
    const c2 = await connectClient(`${gw2.url}/t/acme/mcp/everything`, f.tokens.alice);
    const ok = await c2.client.callTool({ name: 'get-sum', arguments: args }, undefined, { timeout: 10000 });
    assert.match(toolText(ok), /9/);
    assert.equal(forwardedCalls(f.rec, 'get-sum').length, 1, 'one call upstream');
    await c2.client.close().catch(() => {});
  } finally {
    await gw2.stop();
  }
});
