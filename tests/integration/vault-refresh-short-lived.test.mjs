// Vault: an authorization server whose access tokens live less than the
// gateway's renewal margin (10 s before expiry). A refresh that succeeds
// but brings back a token that is "expiring" already must not send the
// call round the gate again — it refreshed again, and again, for as long
// as the client waited (a token request and two store writes each time,
// on every loop, for every such call). One refresh per call: the call is
// answered ("try again shortly") and the grant keeps the fresh token.
// Real parts: the gateway, oidc-provider as Okta and as the upstream's AS
// (issuing 5-second access tokens), the SDK upstream and client.
// ci-variants: build-w1 build-asan-w2
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { startVaultFixture } from './lib/vault.mjs';

let v;
before(async () => { v = await startVaultFixture({ users: ['bob'] }); });
after(async () => { await v?.stop(); });

const settle = (p) => p.then((r) => ({ r }), (e) => ({ e }));

test('a refresh that brings back a token expiring within the margin is not repeated within the call', async () => {
  await v.connectAs('bob', { ttl: 5 }); // due for refresh at once
  v.as.setAccessTokenTTL(5); // and so is every refreshed one
  const c = await v.client('bob');
  try {
    const before = v.as.stats().token.refresh_token;
    const out = await settle(c.client.callTool({ name: 'crm__whoami', arguments: {} }, undefined, { timeout: 8000 }));
    const refreshes = v.as.stats().token.refresh_token - before;
    assert.ok(refreshes >= 1, 'the grant was refreshed');
    assert.ok(refreshes <= 2, `one refresh per call, not a loop: ${refreshes} refreshes`);
    // the call is answered, not held until the client gives up
    assert.ok(!/timed out|timeout/i.test(String(out.e?.message ?? '')), `answered: ${out.e?.message}`);
    const text = JSON.stringify(out.r ?? out.e?.message);
    assert.match(text, /try again|expire/i, text);
    // the grant is still there (a transient failure, not invalid_grant)
    assert.deepEqual((await v.connections('bob')).map((x) => x.connector), ['crm']);
  } finally {
    v.as.setAccessTokenTTL(60);
    await c.close();
  }
});
