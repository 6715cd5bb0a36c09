// Vault 1/2 (issue 20): the upstream's AS ends Alice's grant behind the
// gateway's back (revoked there directly). When her access token is about to
// expire the gateway refreshes, gets invalid_grant, deletes the grant and
// asks her to reconnect: the call answers -32007 with the connect link, the
// admin list is empty, and tools/list shows crm__connect again.
// ci-variants: build-w1 build-asan-w2 (two loops are the sanitizer run's; CI's 15 minutes)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { waitFor } from './lib/gateway.mjs';
import { toolText } from './lib/mcp.mjs';
import { startVaultFixture, revokeAtAs } from './lib/vault.mjs';

let v;
before(async () => { v = await startVaultFixture({ users: ['alice'] }); });
after(async () => { await v?.stop(); });

test('invalid_grant at the refresh: -32007 with the link, the grant deleted, the connect tool back', async () => {
  await v.connectAs('alice', { ttl: 12 });
  const [g] = await v.connections('alice');
  const exp = g.expires_at;
  assert.ok(exp - Date.now() / 1000 <= 13, `the grant expires in 12 s: ${JSON.stringify(g)}`);
  const c = await v.client('alice');
  try {
    const who = JSON.parse(toolText(await c.client.callTool({ name: 'crm__whoami', arguments: {} })));
    assert.equal(who.sub, 'alice');
    const token = v.lastCallToken('alice');
    // the AS ends the whole grant (refresh token included): oidc-provider
    // revokes every token of a grant when one of them is revoked
    const r = await revokeAtAs(v.as, token, 'access_token');
    assert.equal(r.status, 200, r.text);
    assert.equal(await v.as.introspect(token), false, 'revoked at the AS');

    await waitFor(() => Date.now() / 1000 > exp - 9, { timeoutMs: 8000, what: 'the token is about to expire' });
    const refreshes = v.as.stats().token.refresh_token;
    const upstreamCalls = v.up.seen().filter((s) => s.method === 'tools/call').length;
    await assert.rejects(c.client.callTool({ name: 'crm__whoami', arguments: {} }), (e) => {
      assert.equal(e.code, -32007, `code ${e.code}: ${e.message}`);
      assert.match(e.message, new RegExp(`${v.base}/connect/crm`));
      return true;
    });
    assert.equal(v.as.stats().token.refresh_token, refreshes + 1, 'the gateway tried one refresh');
    const last = v.as.stats().tokenRequests.at(-1);
    assert.equal(last.grant_type, 'refresh_token');
    assert.equal(last.status, 400, `the AS refused it: ${JSON.stringify(last)}`);
    assert.equal(v.up.seen().filter((s) => s.method === 'tools/call').length, upstreamCalls, 'the call did not reach the upstream');
    assert.deepEqual(await v.connections('alice'), [], 'the grant is deleted');
    assert.deepEqual(await v.toolNames(c), ['crm__connect']);
  } finally {
    await c.close();
  }
});
