// The aggregated endpoint opens a client session's upstream session lazily
// (initialize, notifications/initialized), then a writer job stores its id
// (agg_up.c job_usess). That job refuses the id when the connector's binding
// changed meanwhile — an admin's rekey committed while the session was
// being opened (agg-usess-move.test.mjs) — so the id is never used with the
// new key. But the session was open at the upstream all the same: refused,
// it was forgotten there, open for ever. Now it is ended as a client should
// (MCP Streamable HTTP): a DELETE carrying its id, with the credential it was
// opened with, to the URL that credential was given for — as ac3213d ends
// the losers of concurrent first requests (agg-usess-concurrent.test.mjs).
//
// A connector moved to another origin meanwhile is the exception: nothing
// more goes to the server the admin moved it away from, not even a DELETE
// (and the new one never hears the old id).
//
// MCPGATE_TEST_WRITER_PAUSE_FILE makes the race deterministic: while the
// file exists the writer takes no job, so the rekey's write is queued
// first and the job storing the session after it (mcpgate_store_queue_depth
// says when each is in), and both run in that order once it is removed.
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

/* A call opens cc's upstream session at ua with the old key, and the
 * admin's PUT `to` (made of ua, ub) commits before the write storing it. */
async function race(to) {
  const pause = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'mcpgate-pause-')), 'hold');
  const gw = await startGateway({ env: { MCPGATE_TEST_WRITER_PAUSE_FILE: pause } });
  const ua = await startCtlUpstream({ name: 'ua' });
  const ub = await startCtlUpstream({ name: 'ub' });
  const t = await setupTenant(gw, { users: ['alice@acme.com'] });
  let r = await t.putConnector('cc', { url: ua.url, auth: { type: 'header', name: 'X-Key', value: 'old-key' } });
  assert.equal(r.status, 201, r.body);
  const m = await t.mintToken('alice@acme.com');
  assert.equal(m.status, 201, m.body);
  const s = await rawSession(`${gw.url}/t/acme/mcp`, m.token);

  // the session is open at the upstream (its notifications/initialized
  // held there), not yet stored
  const release = ua.hold((j) => j.method === 'notifications/initialized');
  const first = s.request('tools/call', { name: 'cc__echo', arguments: { message: 'first' } });
  const note = await ua.waitRequest((e) => e.json?.method === 'notifications/initialized');
  const fresh = note.headers['mcp-session-id'];
  assert.ok(fresh && note.headers['x-key'] === 'old-key', 'an upstream session opened with the old key');

  // the PUT's write is queued, then the one storing the session
  fs.writeFileSync(pause, '');
  const put = t.putConnector('cc', to(ua, ub));
  await waitFor(async () => (await queued(gw)) >= 1, { what: 'the PUT queued behind the pause' });
  release();
  await waitFor(async () => (await queued(gw)) >= 2, { what: 'the session\'s write queued after it' });
  fs.rmSync(pause);
  r = await put;
  assert.equal(r.status, 200, r.body);
  const fr = await first; // however it ends (the PUT ends the call in flight)

  // the client session goes on, on a session the new connector opens
  const later = await s.request('tools/call', { name: 'cc__echo', arguments: { message: 'later' } });
  assert.equal(later.status, 200, later.body);
  return { gw, ua, ub, fresh, fr, later };
}

test('an upstream session the store refuses (rekeyed meanwhile) is ended with the key that opened it', async () => {
  const { gw, ua, fresh, fr, later } = await race((ua) => ({ url: ua.url, auth: { type: 'header', name: 'X-Key', value: 'new-key' } }));
  const del = await ua.waitRequest((e) => e.method === 'DELETE' && e.headers['mcp-session-id'] === fresh, 10000)
    .catch(() => assert.fail(`the refused upstream session ${fresh} was never ended (first call: ${fr.status} ${fr.body}; ` +
      `requests: ${ua.requests().map((e) => `${e.method} ${e.json?.method ?? ''} ${e.headers['mcp-session-id'] ?? ''}`).join(', ')})`));
  assert.equal(del.headers['x-key'], 'old-key', 'the DELETE carries the credential that opened the session');
  assert.equal(del.url, '/mcp');
  await waitFor(async () => metricValue(await scrapeMetrics(gw), 'mcpgate_upstream_session_deletes_total', { result: 'ended' }) >= 1,
    { what: 'the DELETE counted as ended' });
  assert.match(later.body, /ua:echo later/);
  const used = ua.rpc('tools/call').at(-1);
  assert.equal(used.headers['x-key'], 'new-key');
  assert.notEqual(used.headers['mcp-session-id'], fresh, 'the refused session is not used');
  assert.deepEqual(ua.requests().filter((e) => e.headers['mcp-session-id'] === fresh && e.method !== 'DELETE' &&
    e.json?.method !== 'notifications/initialized').map((e) => e.json?.method ?? e.method), [], 'nothing else went on it');
  await gw.stop();
});

test('one the store refuses because the connector moved to another origin is not ended there: nothing more goes there', async () => {
  const { gw, ua, ub, fresh, later } = await race((ua, ub) => ({ url: ub.url, auth: { type: 'header', name: 'X-Key', value: 'new-key' } }));
  assert.match(later.body, /ub:echo later/);
  // (the capability probe of the first PUT ends its own session there: not the client's)
  const probes = new Set(ua.requests().filter((e) => e.json?.method === 'initialize' && e.json.params?.clientInfo?.name === 'mcpgate').map((e) => e.issued));
  assert.deepEqual(ua.requests().filter((e) => !probes.has(e.headers['mcp-session-id']) &&
    (e.method === 'DELETE' || (e.headers['mcp-session-id'] && e.headers['mcp-session-id'] !== fresh)))
    .map((e) => `${e.method} ${e.headers['mcp-session-id']}`), [], 'nothing more reached the old server');
  assert.deepEqual(ub.requests().filter((e) => e.headers['mcp-session-id'] === fresh).map((e) => e.method), [], 'the old id never reached the new one');
  await gw.stop();
});
