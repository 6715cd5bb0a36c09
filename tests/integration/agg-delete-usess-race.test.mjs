// A client's DELETE of an aggregated session ends the upstream sessions
// the session held (usess_end.c: the gateway ends the upstream sessions it
// stops using). Which ones: those its delete job deleted from the store.
// The DELETE read them before its job ran, so an upstream session id
// stored in between — a call that opened it, its write queued first — was
// deleted with the session but never ended at the upstream: open there for
// ever.
//
// MCPGATE_TEST_WRITER_PAUSE_FILE makes the race deterministic: while the
// file exists the writer takes no job, so the write storing the upstream
// session is queued first and the DELETE's after it
// (mcpgate_store_queue_depth says when each is in), and both run in that
// order once it is removed.
// ci-variants: build-w1 build-asan-w2
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { startGateway, waitFor, scrapeMetrics, metricValue } from './lib/gateway.mjs';
import { setupTenant, rawSession } from './lib/mcp.mjs';
import { startCtlUpstream } from './lib/ctl-upstream.mjs';

const queued = async (gw) => metricValue(await scrapeMetrics(gw), 'mcpgate_store_queue_depth');

test('an upstream session stored while the client\'s DELETE waited for its write is ended at the upstream too', async () => {
  const pause = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'mcpgate-pause-')), 'hold');
  const gw = await startGateway({ env: { MCPGATE_TEST_WRITER_PAUSE_FILE: pause } });
  const ua = await startCtlUpstream({ name: 'ua' });
  const t = await setupTenant(gw, { users: ['alice@acme.com'] });
  let r = await t.putConnector('cc', { url: ua.url, auth: { type: 'header', name: 'X-Key', value: 'the-key' } });
  assert.equal(r.status, 201, r.body);
  const m = await t.mintToken('alice@acme.com');
  assert.equal(m.status, 201, m.body);
  const s = await rawSession(`${gw.url}/t/acme/mcp`, m.token);

  // a call opens the session's upstream session (its
  // notifications/initialized held there): not yet stored
  const release = ua.hold((j) => j.method === 'notifications/initialized');
  const first = s.request('tools/call', { name: 'cc__echo', arguments: { message: 'first' } });
  const note = await ua.waitRequest((e) => e.json?.method === 'notifications/initialized');
  const fresh = note.headers['mcp-session-id'];
  assert.ok(fresh, 'an upstream session was opened');

  // the write storing it is queued, then the client's DELETE's
  fs.writeFileSync(pause, '');
  release();
  await waitFor(async () => (await queued(gw)) >= 1, { what: 'the upstream session\'s write queued behind the pause' });
  const del = s.del();
  await waitFor(async () => (await queued(gw)) >= 2, { what: 'the DELETE\'s write queued after it' });
  fs.rmSync(pause);
  r = await del;
  assert.equal(r.status, 204, r.body);
  await first; // however it ends (its session was deleted)

  const ended = await ua.waitRequest((e) => e.method === 'DELETE' && e.headers['mcp-session-id'] === fresh, 10000)
    .catch(() => assert.fail(`the upstream session ${fresh}, deleted from the store with the client's session, was never ` +
      `ended (requests: ${ua.requests().map((e) => `${e.method} ${e.json?.method ?? ''} ${e.headers['mcp-session-id'] ?? ''}`).join(', ')})`));
  assert.equal(ended.headers['x-key'], 'the-key', 'the DELETE carries the credential that opened it');
  await gw.stop();
});
