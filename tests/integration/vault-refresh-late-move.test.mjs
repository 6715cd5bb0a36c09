// Vault: a refresh answered after an admin moved the connector to another
// authorization server. Bob's token is being refreshed at AS 1 (which holds
// the request: lib/upstream-oauth.mjs holdRefresh) when the admin's PUT
// names AS 2 (its endpoints and client): the PUT cuts Bob's grant and
// queues its revocation at AS 1. Then AS 1 answers the refresh with fresh
// tokens. Nobody holds them: they are revoked (late_refresh) — at AS 1,
// which issued them, with the client they were refreshed with; AS 2 is sent
// nothing of AS 1's tokens (nor AS 2's client credentials beside them).
// Real parts: the gateway, oidc-provider as Okta and as both upstream ASes,
// the SDK upstream.
// ci-variants: build-w1 build-asan-w2
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { waitFor } from './lib/gateway.mjs';
import { startUpstreamAS } from './lib/upstream-oauth.mjs';
import { startVaultFixture, oauthConnector, email } from './lib/vault.mjs';

let v, as2;
before(async () => {
  v = await startVaultFixture({ users: ['bob'] });
  as2 = await startUpstreamAS({ redirectUris: [`${v.base}/connect/crm/callback`] });
});
after(async () => {
  await as2?.close().catch(() => {});
  await v?.stop();
});

const whoami = (c) => c.client.callTool({ name: 'crm__whoami', arguments: {} }, undefined, { timeout: 20000 });
const settle = (p) => p.then((r) => ({ r }), (e) => ({ e }));

test('a refresh answered after the connector moved to another AS: its tokens are revoked where they were issued', async () => {
  await v.connectAs('bob', { ttl: 10 }); // due for refresh at the first call
  const c = await v.client('bob');
  let hold, revHold;
  try {
    hold = v.as.holdRefresh({ trickleMs: 1000 });
    const call = settle(whoami(c));
    await hold.arrived;
    // AS 1 holds the cut grant's revocation until it answered the held
    // refresh (else the refresh would be invalid_grant)
    revHold = v.as.holdRevocations();
    const put = await v.admin('PUT', '/connectors/crm', oauthConnector(as2, v.up));
    assert.equal(put.status, 200, put.body);
    await waitFor(async () => (await v.admin('GET', `/users/${email('bob')}/connections`)).json?.connections?.length === 0,
      { what: 'the grant cut by the move' });
    hold.release();
    await waitFor(() => hold.entry.answered, { timeoutMs: 10000, what: 'AS 1 answered the held refresh' });
    revHold.release(); // answered: the revocations go on
    assert.equal(hold.entry.answered, 200, 'the refresh succeeded at AS 1');
    const fresh = hold.entry.issued;
    assert.ok(fresh?.refresh && fresh?.access, `AS 1 issued new tokens: ${JSON.stringify(hold.entry)}`);
    await call; // whatever it answers: the grant is gone

    await v.waitRevocation((r) => r.user === v.user('bob').id && r.reason === 'late_refresh' && r.state !== 'pending',
      'the late_refresh revocation finished', 20000);
    const sentToAs2 = as2.stats().revoked.filter((r) => r.hash === fresh.refresh || r.hash === fresh.access);
    assert.deepEqual(sentToAs2, [], "AS 2 was sent none of AS 1's tokens");
    await waitFor(() => v.as.stats().revoked.some((r) => r.hash === fresh.refresh), {
      timeoutMs: 20000, intervalMs: 100, what: 'the fresh refresh token revoked at AS 1',
    });
    const rep = (await v.revocations()).find((r) => r.user === v.user('bob').id && r.reason === 'late_refresh');
    assert.equal(rep.state, 'done', JSON.stringify(rep));
  } finally {
    revHold?.release();
    hold?.release();
    await c.close();
  }
});
