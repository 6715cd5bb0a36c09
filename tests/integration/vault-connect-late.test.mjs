// Vault: a connect whose code exchange is answered after the grant may no
// longer be stored. The upstream's AS holds the code exchange
// (lib/upstream-oauth.mjs holdCode) while (1) Okta deactivates Bob, or (2)
// an admin moves the connector to another authorization server. The grant
// is refused (403 / 409 page), as before — and the tokens the AS issued,
// which nobody holds, are revoked at the AS that issued them (reason
// late_connect), as a refresh answered after a cut is (late_refresh):
// otherwise a person cut while connecting kept a live grant at the upstream.
// Real parts: the gateway, oidc-provider as Okta and as both upstream ASes,
// the SDK upstream, the gateway's pages through a cookie-keeping client.
// ci-variants: build-w1 build-asan-w2
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { waitFor } from './lib/gateway.mjs';
import { signIn } from './lib/login.mjs';
import { startUpstreamAS } from './lib/upstream-oauth.mjs';
import { startVaultFixture, oauthConnector } from './lib/vault.mjs';

let v, as2;
before(async () => {
  v = await startVaultFixture({ users: ['alice', 'bob'] });
  as2 = await startUpstreamAS({ redirectUris: [`${v.base}/connect/crm/callback`] });
});
after(async () => {
  await as2?.close().catch(() => {});
  await v?.stop();
});

const settle = (p) => p.then((r) => ({ r }), (e) => ({ e }));

/** who starts connecting crm; the AS holds the code exchange. → {page (settled promise), hold} */
async function connectHeld(who) {
  const b = v.fx.browser();
  const s = await signIn(b, `${v.base}/login`, { login: `00u-${who}` });
  assert.equal(s.status, 200);
  const hold = v.as.holdCode({ trickleMs: 500 });
  v.as.loginAs(who);
  const page = settle(b.get(`${v.base}/connect/crm`));
  try {
    await hold.arrived;
  } finally {
    v.as.loginAs(null);
  }
  return { page, hold };
}

async function issuedThenRevoked(hold, what) {
  await waitFor(() => hold.entry.answered, { timeoutMs: 10000, what: 'the AS answered the held code exchange' });
  assert.equal(hold.entry.answered, 200, 'the code exchange succeeded at the AS');
  const issued = hold.entry.issued;
  assert.ok(issued?.access, `the AS issued tokens: ${JSON.stringify(hold.entry)}`);
  await waitFor(() => v.as.stats().revoked.some((r) => r.hash === (issued.refresh ?? issued.access)), {
    timeoutMs: 10000, intervalMs: 100, what,
  });
  return issued;
}

test('deactivated during the code exchange: no grant, and the issued tokens are revoked at the AS', async () => {
  const { page, hold } = await connectHeld('bob');
  await v.deactivate('bob');
  hold.release();
  const { r } = await page;
  assert.equal(r?.status, 403, r?.text?.slice(0, 300));
  assert.deepEqual(await v.connections('bob'), []);
  await issuedThenRevoked(hold, "the tokens of Bob's refused connect revoked at the AS");
  await v.waitRevocation((x) => x.user === v.user('bob').id && x.reason === 'late_connect' && x.state === 'done',
    'reported late_connect, done');
});

test('the connector moved during the code exchange: the tokens go back to the old AS, none to the new one', async () => {
  const { page, hold } = await connectHeld('alice');
  const put = await v.admin('PUT', '/connectors/crm', oauthConnector(as2, v.up));
  assert.equal(put.status, 200, put.body);
  hold.release();
  const { r } = await page;
  assert.equal(r?.status, 409, r?.text?.slice(0, 300));
  assert.deepEqual(await v.connections('alice'), []);
  const issued = await issuedThenRevoked(hold, "the tokens of Alice's refused connect revoked at the old AS");
  await v.waitRevocation((x) => x.user === v.user('alice').id && x.reason === 'late_connect' && x.state === 'done',
    'reported late_connect, done');
  assert.deepEqual(as2.stats().revoked.filter((x) => x.hash === issued.refresh || x.hash === issued.access), [],
    'the new AS was sent none of them');
});
