// After an admin's connector PUT the gateway probes the upstream (an
// initialize, to learn its capabilities: probe.c). That initialize opens an
// upstream session the gateway uses for nothing more, and it was left to
// expire there — a DELETE racing a second PUT could have gone out with the
// replaced connector's credential. The probe now keeps what its initialize
// went with (the credential, the URL) and ends the session as soon as it
// has the answer, as a client should (MCP Streamable HTTP): a DELETE
// carrying its id, with that credential, to that URL.
//
// Real parts: the gateway binary on a real LMDB, the admin API, the
// controllable upstream (lib/ctl-upstream.mjs) recording each request and
// the session id each initialize's answer gave.
// ci-variants: build-w1 build-asan-w2
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { startGateway, waitFor } from './lib/gateway.mjs';
import { setupTenant } from './lib/mcp.mjs';
import { startCtlUpstream } from './lib/ctl-upstream.mjs';

const isProbe = (e) => e.json?.method === 'initialize' && e.json.params?.clientInfo?.name === 'mcpgate';

test('the capability probe ends the upstream session it opened, with the key it opened it with', async () => {
  const gw = await startGateway();
  const up = await startCtlUpstream({ name: 'ua' });
  const t = await setupTenant(gw, { users: ['alice@acme.com'] });
  for (const key of ['Key one-61a', 'Key two-0c4']) {
    const mark = up.requests().length;
    const r = await t.putConnector('cc', { url: up.url, description: key, auth: { type: 'header', name: 'X-Key', value: key } });
    assert.ok(r.status === 201 || r.status === 200, r.body);
    const probe = await up.waitRequest((e) => isProbe(e) && e.headers['x-key'] === key, 10000);
    await waitFor(() => probe.issued, { what: 'the probe answered' });
    const del = await up.waitRequest((e) => e.method === 'DELETE' && e.headers['mcp-session-id'] === probe.issued, 10000)
      .catch(() => assert.fail(`the probe's upstream session ${probe.issued} was never ended (requests since the PUT: ${
        up.requests().slice(mark).map((e) => `${e.method} ${e.json?.method ?? ''} ${e.headers['mcp-session-id'] ?? ''}`).join(', ')})`));
    assert.equal(del.headers['x-key'], key, 'the DELETE carries the credential the probe opened the session with');
    assert.equal(del.url, '/mcp');
    assert.equal(del.headers['mcp-protocol-version'], probe.json.params.protocolVersion, 'with the version it agreed');
    assert.deepEqual(up.requests().filter((e) => e.headers['mcp-session-id'] === probe.issued).map((e) => e.method), ['DELETE'],
      'nothing else went on it');
  }
  await gw.stop();
});
