// Vault: a connect's code exchange, or a refresh, answered after its tenant
// was deleted and created again with the same id. The AS holds the request
// (lib/upstream-oauth.mjs holdCode / holdRefresh) while the operator deletes
// tenant acme, its purge finishes and acme is created again: another tenant,
// which must never see the old one's people. The tokens the AS then issues
// are live there and held by nobody, so they are revoked at the AS as
// always (late_connect / late_refresh) — but before, their report landed in
// the NEW acme's GET …/revocations, naming a person of the old one. Now
// nothing is written under the id; the operator's log alone says so.
// Real parts: the gateway, oidc-provider as Okta and as the upstream's AS,
// the SDK upstream, the gateway's pages through a cookie-keeping client.
// ci-variants: build-w1 build-asan-w2
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { waitFor } from './lib/gateway.mjs';
import { recreateAfterPurge } from './lib/admin.mjs';
import { signIn } from './lib/login.mjs';
import { startVaultFixture } from './lib/vault.mjs';

const settle = (p) => p.then((r) => ({ r }), (e) => ({ e }));

/** Deletes tenant acme and, once its purge is done, creates it again. */
async function recreateAcme(v) {
  const d = await v.fx.op.del('/admin/v1/tenants/acme');
  assert.ok([200, 202, 204].includes(d.status), `${d.status} ${d.body}`);
  await recreateAfterPurge(v.fx.gw.port, v.fx.op.token, 'acme');
}

/** Waits for the AS to have revoked every token of issued ({refresh, access} hashes). */
async function revokedAtAs(v, issued, what) {
  for (const h of [issued.refresh, issued.access].filter(Boolean))
    await waitFor(() => v.as.stats().revoked.some((r) => r.hash === h), { timeoutMs: 20000, intervalMs: 100, what });
}

function operatorLine(v, re) {
  return v.fx.gw.logs().find((e) => e.tenant === 'acme' && re.test(e.msg ?? ''));
}

test("a connect answered after its tenant was made again: revoked at the AS, nothing in the new tenant's report", async () => {
  const v = await startVaultFixture({ users: ['alice'] });
  try {
    const b = v.fx.browser();
    const s = await signIn(b, `${v.base}/login`, { login: '00u-alice' });
    assert.equal(s.status, 200);
    const hold = v.as.holdCode({ trickleMs: 500 });
    v.as.loginAs('alice');
    const page = settle(b.get(`${v.base}/connect/crm`));
    try {
      await hold.arrived;
    } finally {
      v.as.loginAs(null);
    }
    await recreateAcme(v);
    hold.release();
    const { r } = await page;
    assert.equal(r?.status, 403, r?.text?.slice(0, 300));
    await waitFor(() => hold.entry.answered, { timeoutMs: 10000, what: 'the AS answered the held code exchange' });
    assert.equal(hold.entry.answered, 200, 'the code exchange succeeded at the AS');
    await revokedAtAs(v, hold.entry.issued, "the tokens of the old acme's connect revoked at the AS");
    assert.deepEqual(await v.revocations(), [], "the new acme's report names nobody of the old one");
    const line = operatorLine(v, /code exchange.*queued for revocation.*reported here only/);
    assert.ok(line, 'the operator log says where they went');
    assert.equal(line.level, 'warn');
  } finally {
    await v.stop();
  }
});

test("a refresh answered after its tenant was made again: revoked at the AS, nothing in the new tenant's report", async () => {
  const v = await startVaultFixture({ users: ['bob'] });
  let hold, revHold, c;
  try {
    await v.connectAs('bob', { ttl: 10 }); // due for refresh (10 s before expiry) at the first call
    c = await v.client('bob');
    hold = v.as.holdRefresh({ trickleMs: 1000 });
    const call = settle(c.client.callTool({ name: 'crm__whoami', arguments: {} }, undefined, { timeout: 20000 }));
    await hold.arrived;
    // the purge revokes the grant's own tokens; the AS holds them until it
    // answered the held refresh (else invalid_grant: oidc-provider ends the
    // grant when one of its tokens is revoked)
    revHold = v.as.holdRevocations();
    await recreateAcme(v);
    hold.release();
    await waitFor(() => hold.entry.answered, { timeoutMs: 10000, what: 'the AS answered the held refresh' });
    revHold.release(); // answered: the revocations go on
    assert.equal(hold.entry.answered, 200, 'the refresh succeeded at the AS');
    assert.ok(hold.entry.issued?.refresh, JSON.stringify(hold.entry));
    await call; // whatever it answers: its tenant is gone
    await revokedAtAs(v, hold.entry.issued, "the old acme's fresh tokens revoked at the AS");
    assert.deepEqual(await v.revocations(), [], "the new acme's report names nobody of the old one");
    assert.ok(operatorLine(v, /refresh was answered after the tenant was deleted.*reported here only/),
      'the operator log says where they went');
  } finally {
    revHold?.release();
    hold?.release();
    await c?.close().catch(() => {});
    await v.stop();
  }
});
