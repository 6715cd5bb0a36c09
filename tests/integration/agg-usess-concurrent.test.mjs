// The aggregated endpoint opens a client session's upstream session for a
// connector lazily, on the first request that needs it. A client's first
// requests often arrive together (Claude Code lists tools, prompts and
// resources at once when it starts): each opened its own upstream session,
// the last one stored won, and the others stayed open at the upstream for
// ever — never used, never DELETEd (an upstream with a per-user session
// cap refuses that user after a few restarts). Now the first stored wins,
// and an exchange that opened another adopts it and ends its own.
// ci-variants: build-w1 build-asan-w2
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { startGateway, waitFor } from './lib/gateway.mjs';
import { setupTenant, rawSession } from './lib/mcp.mjs';
import { startCtlUpstream } from './lib/ctl-upstream.mjs';

test('concurrent first requests to a connector leave one upstream session open, the others ended', async () => {
  const gw = await startGateway();
  const ua = await startCtlUpstream({ name: 'ua' });
  const t = await setupTenant(gw, { users: ['alice@acme.com'] });
  assert.equal((await t.putConnector('cc', { url: ua.url, auth: { type: 'none' } })).status, 201);
  const m = await t.mintToken('alice@acme.com');
  const s = await rawSession(`${gw.url}/t/acme/mcp`, m.token);

  // the client's upstream initializes (not the gateway's capability probe)
  // wait until three are open at once
  const mine = (j) => j?.method === 'initialize' && j.params?.clientInfo?.name === 'raw-test';
  const inits = () => ua.requests().filter((e) => mine(e.json));
  const release = ua.hold(mine);
  const calls = [1, 2, 3].map((i) => s.request('tools/call', { name: 'cc__echo', arguments: { message: `m${i}` } }));
  await waitFor(() => inits().length === 3, { what: 'three upstream sessions being opened at once' }).catch((e) => { throw new Error(`${e.message}: ${ua.requests().map((x) => x.method + ' ' + (x.json?.method ?? '')).join(', ')}`); });
  release();
  const rs = await Promise.all(calls);
  for (const [i, r] of rs.entries()) {
    assert.equal(r.status, 200, r.body);
    assert.match(r.body, new RegExp(`ua:echo m${i + 1}`), r.body);
  }
  // (the probe sends no notifications/initialized: these are the client's)
  const opened = ua.rpc('notifications/initialized').map((e) => e.headers['mcp-session-id']);
  assert.equal(new Set(opened).size, 3, `three upstream sessions were opened: ${opened}`);
  const used = new Set(ua.rpc('tools/call').map((e) => e.headers['mcp-session-id']));
  assert.equal(used.size, 1, `every call went on the one session kept: ${[...used]}`);
  const [kept] = used;
  // the two others are ended at the upstream (the probe's own session is
  // ended too: not one of these)
  const ends = () => ua.requests().filter((e) => e.method === 'DELETE' && opened.includes(e.headers['mcp-session-id']));
  await waitFor(() => ends().length >= 2, { what: 'two upstream DELETEs' });
  const ended = ends().map((e) => e.headers['mcp-session-id']);
  assert.deepEqual(ended.sort(), opened.filter((x) => x !== kept).sort(), 'the sessions not kept are the ones ended');

  // a later call goes on the kept session, without a new initialize
  const r4 = await s.request('tools/call', { name: 'cc__echo', arguments: { message: 'later' } });
  assert.equal(r4.status, 200, r4.body);
  assert.equal(inits().length, 3);
  assert.equal(ua.rpc('tools/call').at(-1).headers['mcp-session-id'], kept);
  await gw.stop();
});
