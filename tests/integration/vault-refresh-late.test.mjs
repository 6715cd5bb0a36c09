// Vault (issue 20): a refresh answered after the user was cut. Bob's token
// is being refreshed (the upstream's AS holds the request:
// lib/upstream-oauth.mjs holdRefresh) when Okta deactivates him: the cut
// deletes the grant and queues its tokens for RFC 7009 revocation. Then the
// AS answers the refresh with fresh tokens. The gateway drops them (the grant
// is gone) and queues them for revocation too (reason late_refresh): the AS
// sees both revoked, and the admin's revocations report lists the job done.
// ci-variants: build-w1 build-asan-w2
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { waitFor } from './lib/gateway.mjs';
import { startVaultFixture, email } from './lib/vault.mjs';

let v;
before(async () => { v = await startVaultFixture({ users: ['bob'] }); });
after(async () => { await v?.stop(); });

const whoami = (c) => c.client.callTool({ name: 'crm__whoami', arguments: {} }, undefined, { timeout: 20000 });
const settle = (p) => p.then((r) => ({ r }), (e) => ({ e }));

test('a refresh answered after the user was cut: the fresh tokens are revoked at the upstream too', async () => {
  await v.connectAs('bob', { ttl: 10 }); // due for refresh (10 s before expiry) at the first call
  const c = await v.client('bob');
  let hold, revHold;
  try {
    hold = v.as.holdRefresh({ trickleMs: 1000 });
    const call = settle(whoami(c));
    await hold.arrived;
    // the cut queues the old tokens' revocation; the AS holds it until it
    // answered the held refresh (else the refresh would be invalid_grant:
    // oidc-provider ends the grant when a token is revoked)
    revHold = v.as.holdRevocations();
    await v.deactivate('bob');
    await waitFor(async () => (await v.admin('GET', `/users/${email('bob')}/connections`)).json?.connections?.length === 0,
      { what: 'the grant cut' });
    hold.release();
    await waitFor(() => hold.entry.answered, { timeoutMs: 10000, what: 'the provider answered the held refresh' });
    revHold.release(); // answered: the revocations go on
    assert.equal(hold.entry.answered, 200, 'the refresh succeeded at the AS');
    const fresh = hold.entry.issued;
    assert.ok(fresh?.refresh && fresh?.access, `the AS issued new tokens: ${JSON.stringify(hold.entry)}`);
    await call; // whatever it answers: bob is cut

    await waitFor(() => v.as.stats().revoked.some((r) => r.hash === fresh.refresh), {
      timeoutMs: 20000, intervalMs: 100, what: 'the fresh refresh token revoked at the AS',
    });
    await waitFor(() => v.as.stats().revoked.some((r) => r.hash === fresh.access), {
      timeoutMs: 20000, intervalMs: 100, what: 'the fresh access token revoked at the AS',
    });
    const reps = (await v.revocations()).filter((r) => r.user === v.user('bob').id);
    assert.deepEqual(reps.map((r) => r.reason).sort(), ['deactivated', 'late_refresh'], JSON.stringify(reps));
    await v.waitRevocation((r) => r.user === v.user('bob').id && r.reason === 'late_refresh' && r.state === 'done',
      'the late_refresh revocation done', 10000);
  } finally {
    revHold?.release();
    hold?.release();
    await c.close();
  }
});
