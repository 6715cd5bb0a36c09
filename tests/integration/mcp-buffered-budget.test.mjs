// The budget of buffered upstream replies (mcp_buffered_max; gateway/base/buf.h
// meters, gateway/mcp/mcp_loop.c gw__mcp_meter). Found by review: a JSON
// reply is buffered whole (it is checked before it is relayed), up to 16 MiB,
// and an upstream that stops one byte short of the end holds it for up to
// upstream_event_timeout_ms: a tenant admin's own connector took the
// process's RSS from 12 to 1,614 MiB with one employee's 100 calls. Now a
// reply's bytes past its first 64 KiB count against the tenant's share (a
// quarter of the budget, a sixteenth once half is used) and the process's; a
// reply that would pass them is not kept, and the call is answered at once.
// Upstream: lib/ctl-upstream.mjs (raw {stall}: a reply held one byte short).
// ci-variants: build-w1 build-asan-w2
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { startGateway, waitFor } from './lib/gateway.mjs';
import { setupTenant, rawSession } from './lib/mcp.mjs';
import { startCtlUpstream } from './lib/ctl-upstream.mjs';

const BUDGET = /could not hold: the gateway holds as many large replies as it allows right now/;
// a result of about n bytes: its buffer grows to 1 MiB for 600 KB, ~960 KiB charged
const big = (n, tag) => JSON.stringify({ content: [{ type: 'text', text: tag + 'x'.repeat(n) }] });

async function tenant(gw, id, user, up) {
  const t = await setupTenant(gw, { id, users: [user] });
  assert.equal((await t.putConnector('one', { url: up.url, auth: { type: 'none' } })).status, 201);
  const tok = (await t.mintToken(user)).token;
  return rawSession(`${gw.url}/t/${id}/mcp/one`, tok, { protocolVersion: '2025-03-26' });
}

test('stalled large replies hold only their tenant\'s share of mcp_buffered_max; the next is answered at once; another tenant is served', async () => {
  const gw = await startGateway({ args: ['--mcp-buffered-max', '8M'] }); // a tenant: 2 MiB, 512 KiB once 4 MiB are used
  const up = await startCtlUpstream({ name: 'one', capabilities: { tools: {} } });
  try {
    const acme = await tenant(gw, 'acme', 'alice@acme.com', up);
    const globex = await tenant(gw, 'globex', 'carol@globex.com', up);
    const raw = (s, tag, stall) => s.request('tools/call', { name: 'raw', arguments: { result: big(600000, tag), stall } });

    // two stalled replies of ~600 KB: ~1.9 MiB of acme's 2 MiB
    const a1 = raw(acme, 'a1', true);
    const a2 = raw(acme, 'a2', true);
    await waitFor(() => up.stalledCount() === 2, { timeoutMs: 10000, what: 'two replies stalled' });
    // the gateway holds both (their bytes arrived): a third does not fit
    let third;
    await waitFor(async () => {
      third = await raw(acme, 'a3', false);
      return BUDGET.test(third.messages[0]?.error?.message ?? '');
    }, { timeoutMs: 10000, intervalMs: 200, what: 'a third large reply refused for the budget' });
    assert.equal(third.status, 200, third.body.slice(0, 300));
    assert.equal(third.headers['retry-after'], '1');
    // a small reply is not counted
    const small = await acme.request('tools/call', { name: 'echo', arguments: { message: 'small' } });
    assert.match(JSON.stringify(small.messages[0]?.result), /one:echo small/);
    // another tenant's large reply is held and relayed
    const g = await raw(globex, 'g1', false);
    assert.ok(g.messages[0]?.result?.content?.[0]?.text?.startsWith('g1xxx'), g.body.slice(0, 300));

    // the stalled replies end: relayed whole, and their bytes go back
    up.releaseStalls();
    for (const [p, tag] of [[a1, 'a1'], [a2, 'a2']]) {
      const r = await p;
      assert.equal(r.messages[0]?.result?.content?.[0]?.text?.length, 600002, `${tag}: ${r.body.slice(0, 200)}`);
    }
    const again = await raw(acme, 'a4', false);
    assert.ok(again.messages[0]?.result?.content?.[0]?.text?.startsWith('a4xxx'), again.body.slice(0, 300));
  } finally {
    up.releaseStalls();
    await up.stop();
    await gw.stop();
  }
});
