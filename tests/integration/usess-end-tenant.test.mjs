// A deleted tenant's MCP sessions go with its purge (bounded steps, each its
// own write), and took their upstream sessions with them, forgotten: left
// open at each upstream until its own expiry. They are now ended there (a
// DELETE carrying the id, with the credential that opened it, to the URL
// it was given for) after each purge step that deleted them — the sessions'
// purge runs before the connectors' and credentials' own, so what opened
// them can still be read. Another tenant's on the same upstream go on.
//
// Real parts: the gateway binary on a real LMDB, the admin API, the
// controllable upstream (lib/ctl-upstream.mjs) recording each request.
// ci-variants: build-w1 build-asan-w2
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { startGateway, waitFor } from './lib/gateway.mjs';
import { setupTenant, rawSession } from './lib/mcp.mjs';
import { startCtlUpstream } from './lib/ctl-upstream.mjs';
import { adminClient, operatorToken } from './lib/admin.mjs';

const sidOf = (up, msg) => up.rpc('tools/call').find((e) => e.json.params?.arguments?.message === msg)?.headers['mcp-session-id'];
const deletesOf = (up, sids) => up.requests().filter((e) => e.method === 'DELETE' && sids.has(e.headers['mcp-session-id']));

test('a deleted tenant\'s upstream sessions are ended there by its purge; a neighbour\'s go on', async () => {
  const gw = await startGateway();
  const up = await startCtlUpstream({ name: 'ua' });
  const op = adminClient(gw.port, operatorToken(gw.dataDir));
  const held = {};
  for (const id of ['doomed', 'doomed-2']) {
    const t = await setupTenant(gw, { id, users: ['alice@acme.com', 'bob@acme.com'] });
    const r = await t.putConnector('cc', { url: up.url, auth: { type: 'header', name: 'X-Key', value: `key-${id}` } });
    assert.equal(r.status, 201, r.body);
    const sids = new Set();
    const sessions = [];
    for (const u of ['alice', 'bob']) {
      const m = await t.mintToken(`${u}@acme.com`);
      assert.equal(m.status, 201, m.body);
      const d = await rawSession(`${gw.url}/t/${id}/mcp/cc`, m.token);
      let x = await d.request('tools/call', { name: 'echo', arguments: { message: `${id} ${u} direct` } });
      assert.equal(x.status, 200, x.body);
      const agg = await rawSession(`${gw.url}/t/${id}/mcp`, m.token);
      x = await agg.request('tools/call', { name: 'cc__echo', arguments: { message: `${id} ${u} agg` } });
      assert.equal(x.status, 200, x.body);
      sids.add(sidOf(up, `${id} ${u} direct`)).add(sidOf(up, `${id} ${u} agg`));
      sessions.push(d);
    }
    assert.equal(sids.size, 4);
    held[id] = { sids, sessions };
  }

  const del = await op.del('/admin/v1/tenants/doomed');
  assert.equal(del.status, 202, del.body);
  const gone = held.doomed.sids;
  await waitFor(() => new Set(deletesOf(up, gone).map((e) => e.headers['mcp-session-id'])).size === gone.size, {
    what: `a DELETE of each of the deleted tenant's ${gone.size} upstream sessions (seen: ${JSON.stringify(deletesOf(up, gone).map((e) => e.headers['mcp-session-id']))})`,
    timeoutMs: 10000,
  });
  const ends = deletesOf(up, gone);
  assert.equal(ends.length, gone.size, 'one DELETE per upstream session');
  assert.deepEqual(ends.filter((e) => e.headers['x-key'] !== 'key-doomed' || e.url !== '/mcp').map((e) => `${e.url} ${e.headers['x-key']}`), [],
    'each DELETE carries the credential that opened the session, to the URL it was given for');

  // the neighbour's (a tenant id that shares the prefix) go on
  assert.deepEqual(deletesOf(up, held['doomed-2'].sids).map((e) => e.headers['mcp-session-id']), [], 'the neighbour\'s were not ended');
  const x = await held['doomed-2'].sessions[0].request('tools/call', { name: 'echo', arguments: { message: 'still' } });
  assert.equal(x.status, 200, x.body);
  assert.ok(held['doomed-2'].sids.has(sidOf(up, 'still')));
  await gw.stop();
});
