// Vault (issue 20), the refresh of a per-user grant against a slow
// authorization server. The refresh is single-flight through a claim in the
// store that lapses after 20 s (a claimant that died); a token request that
// outlived its claim would let the next call send the same rotating refresh
// token again — invalid_grant, the grant lost. The AS here holds the first
// refresh (lib/upstream-oauth.mjs holdRefresh): it answers the response head
// at once and trickles a space a second, so no per-phase timeout (connect,
// first byte, idle) ever fires; only the refresh's own deadline, shorter than
// the claim, ends it. Then the call that triggered it fails ("try again
// shortly"), the claim is released, the waiting call refreshes, and the AS
// never has two requests with one refresh token open at once.
//
// Real time: the test waits out the refresh deadline, 15 s lowered to 3 s
// by the test hook MCPGATE_TEST_REFRESH_DEADLINE_MS (still well short of
// the 20-s claim, and the AS's trickle of a space a second still keeps the
// 10-s idle timeout from firing first): what is tested is that it ends,
// not how long it waits. Nothing asserts a duration.
// ci-variants: build-w1 build-asan-w2
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { toolText } from './lib/mcp.mjs';
import { startVaultFixture } from './lib/vault.mjs';

let v;
before(async () => { v = await startVaultFixture({ users: ['alice'], gatewayEnv: { MCPGATE_TEST_REFRESH_DEADLINE_MS: '3000' } }); });
after(async () => { await v?.stop(); });

const CALL_TIMEOUT = { timeout: 60000 };
const whoami = (c) => c.client.callTool({ name: 'crm__whoami', arguments: {} }, undefined, CALL_TIMEOUT);
const settle = (p) => p.then((r) => ({ r }), (e) => ({ e }));

/** who connected with a 10-s access token: due for refresh (10 s before expiry) at the first call. */
async function dueForRefresh(who) {
  await v.connectAs(who, { ttl: 10 });
  const [g] = await v.connections(who);
  assert.ok(g.expires_at - Date.now() / 1000 <= 10, `the grant expires in 10 s: ${JSON.stringify(g)}`);
  return g;
}

test('a refresh the AS trickles past the claim ends at the deadline: one request per refresh token at a time, the grant survives', async () => {
  const g = await dueForRefresh('alice');
  const c1 = await v.client('alice');
  const c2 = await v.client('alice');
  let hold;
  try {
    hold = v.as.holdRefresh({ trickleMs: 1000 });
    const first = settle(whoami(c1));
    const held = await hold.arrived;
    // a second call meanwhile: it finds the claim held and waits for it
    const second = settle(whoami(c2));
    const s = await second;
    assert.ok(s.r, `the second call succeeded: ${s.e?.message}`);
    assert.equal(JSON.parse(toolText(s.r)).sub, 'alice');

    const same = v.as.stats().tokenRequests.filter((t) => t.refresh === held.refresh);
    assert.deepEqual(same.map((t) => t.overlapped), [false, false],
      `the refresh token went out twice, the second while the first was still open: ${JSON.stringify(same)}`);
    assert.equal(hold.entry.aborted, true, 'the gateway hung up on the held refresh; the AS never processed it');
    assert.equal(same[1].status, 200, 'the second refresh succeeded');

    const f = await first;
    assert.ok(f.e, `the call whose refresh ran out of time failed: ${JSON.stringify(f.r)}`);
    assert.match(f.e.message, /could not be renewed right now/);

    const [g2] = await v.connections('alice');
    assert.equal(g2?.connector, 'crm', 'the grant is intact');
    assert.equal(g2.refreshes, 1);
    assert.ok(g2.expires_at > g.expires_at, `renewed: ${JSON.stringify(g2)}`);
    assert.equal(JSON.parse(toolText(await whoami(c1))).sub, 'alice', 'the first client works again');
    const newToken = v.lastCallToken('alice');
    assert.equal(await v.as.introspect(newToken), true);
    assert.deepEqual((await v.revocations()).filter((r) => r.user === v.user('alice').id), [], 'nothing was revoked');
  } finally {
    hold?.release();
    await c1.close();
    await c2.close();
  }
});
