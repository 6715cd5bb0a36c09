// Approvals × audit_on_failure = deny: a call held for approval is checked
// against the audit log when it is let through, not only when it was held.
// Before this test's fix, a call approved after the audit log stopped
// recording (here: its environment full, --audit-map-size 256K) went
// upstream unrecorded, while every other call was refused. Now it is
// refused like them, and the approval it took is given back (explain shows
// the grant live again), so the agent's retry passes once audit recovers.
// ci-variants: build-w1 build-asan-w2
import { test, after } from 'node:test';
import assert from 'node:assert/strict';

import { connectClient } from './lib/mcp.mjs';
import { startPolicyFixture, applyPolicy, forwardedCalls, groups, waitFor, ownTokens } from './lib/policy.mjs';
import { request } from './lib/gateway.mjs';

const SUM = 'get-sum';
let f;
after(async () => { await f?.gw.stop(); });

test('a held call approved after the audit log stopped recording is refused, not sent unrecorded; its approval is given back', async () => {
  f = await startPolicyFixture({ users: ['alice@acme.com', 'bob@acme.com'], gatewayArgs: ['--audit-map-size', '262144'] });
  const g = groups(f.t.scim);
  await g.create('Engineers', [f.users.alice.id, f.users.bob.id]);
  await g.create('DB Admins', [f.users.bob.id]);
  await applyPolicy(f.t, {
    version: 1,
    default: 'block',
    rules: [{ groups: ['Engineers'], connector: 'everything', allow: ['echo'], approve: [SUM], approvers: ['DB Admins'],
      approval_timeout_s: 120, grant_minutes: 10 }],
  });
  await ownTokens(f, ['bob']);
  const held = await connectClient(f.url, f.tokens.alice);
  const filler = await connectClient(f.url, f.tokens.alice);
  try {
    const args = { a: 20, b: 22 };
    const call = held.client.callTool({ name: SUM, arguments: args }, undefined, { timeout: 60000, resetTimeoutOnProgress: true })
      .then((result) => ({ result }), (error) => ({ error }));
    let req;
    await waitFor(async () => {
      const r = await f.t.admin('GET', '/approvals?state=pending');
      req = r.json?.approvals?.find((a) => a.tool === SUM);
      return !!req;
    }, { timeoutMs: 8000, what: 'the pending approval request' });

    // the audit environment fills up while the call waits
    const pad = 'x'.repeat(6000);
    let refused = null;
    for (let i = 0; i < 1000 && !refused; i++) {
      try {
        await filler.client.callTool({ name: 'echo', arguments: { message: `${i}`, pad } });
      } catch (e) { refused = e; }
      if (i % 5 === 4) await new Promise((r) => setTimeout(r, 60));
    }
    assert.ok(refused, 'the audit log stopped recording');
    assert.match(String(refused.message), /audit log/);

    const r = await request(f.gw.port, {
      method: 'POST', path: `/t/acme/approvals/${req.id}/approve`,
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${f.own.bob}` },
      body: JSON.stringify({ reason: 'ok' }),
    });
    assert.equal(r.status, 200, r.body);
    const out = await call;
    assert.ok(out.error || out.result?.isError, `the approved call is refused while audit cannot record: ${JSON.stringify(out.result)}`);
    assert.match(String(out.error?.message ?? JSON.stringify(out.result)), /audit log/);
    assert.equal(forwardedCalls(f.rec, SUM).length, 0, 'nothing reached the upstream unrecorded');

    // the approval was given back: the grant is live again for these arguments
    await waitFor(async () => {
      const e = await f.t.admin('GET', `/explain?user=${encodeURIComponent('alice@acme.com')}&connector=everything&tool=${SUM}`);
      return e.status === 200 && e.json?.grant?.count >= 1;
    }, { timeoutMs: 5000, what: 'the approval given back' });
  } finally {
    await held.close();
    await filler.close();
  }
});
