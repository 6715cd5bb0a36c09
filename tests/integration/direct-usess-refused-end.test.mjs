// The connector endpoint's equivalent of agg-usess-refused-end.test.mjs. Its
// initialize is forwarded to the upstream, which opens an upstream session,
// and a writer job then stores the gateway session holding its id. An
// admin's rekey committed in between (direct-session-move.test.mjs: a move)
// deleted the connector's sessions before this one existed; the client never
// got the session (the PUT's revocation ends its exchange first), but the
// store kept it, with an upstream id of the old key, and the upstream kept
// the session open for ever. Now the job refuses a session whose
// connector's binding changed since its initialize (as job_usess does for
// the aggregated endpoint), and the upstream session that initialize opened
// is ended there, as a client should (MCP Streamable HTTP): a DELETE carrying
// its id, with the credential it was opened with, to the URL that
// credential was given for. A connector moved to another origin meanwhile
// is the exception: nothing more goes to the server the admin moved it away
// from, and the new one never hears the old id.
//
// MCPGATE_TEST_WRITER_PAUSE_FILE makes the race deterministic: while the
// file exists the writer takes no job, so the PUT's write is queued first
// and the job storing the session after it (mcpgate_store_queue_depth says
// when each is in), and both run in that order once it is removed.
// ci-variants: build-w1 build-asan-w2
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { startGateway, waitFor, scrapeMetrics, metricValue } from './lib/gateway.mjs';
import { setupTenant, mcpPost, initializeBody, rawSession } from './lib/mcp.mjs';
import { startCtlUpstream } from './lib/ctl-upstream.mjs';

const queued = async (gw) => metricValue(await scrapeMetrics(gw), 'mcpgate_store_queue_depth');
const isClients = (e) => e.json?.method === 'initialize' && e.json.params?.clientInfo?.name === 'raw-test';

/* A client's initialize at the connector endpoint opens an upstream session
 * at ua with the old key; the admin's PUT `to` (made of ua, ub) commits
 * before the write storing the gateway session. */
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

  // the client's initialize is at the upstream, its answer held there
  const release = ua.hold((j) => j.method === 'initialize' && j.params?.clientInfo?.name === 'raw-test');
  const init = mcpPost(`${gw.url}/t/acme/mcp/cc`, initializeBody(1), { token: m.token });
  const opening = await ua.waitRequest(isClients, 10000);
  assert.equal(opening.headers['x-key'], 'old-key');

  // the PUT's write is queued, then the one storing the session
  fs.writeFileSync(pause, '');
  const put = t.putConnector('cc', to(ua, ub));
  await waitFor(async () => (await queued(gw)) >= 1, { what: 'the PUT queued behind the pause' });
  release();
  await waitFor(async () => (await queued(gw)) >= 2, { what: 'the session\'s write queued after it' });
  fs.rmSync(pause);
  r = await put;
  assert.equal(r.status, 200, r.body);
  const answered = await init; // however it ends: no session of the old key
  const fresh = opening.issued;
  assert.ok(fresh, 'the upstream opened a session');
  assert.ok(answered.status !== 200 || !answered.headers['mcp-session-id'], `no session came back: ${answered.status} ${answered.body}`);

  // the client initializes again, with the new connector
  const again = await rawSession(`${gw.url}/t/acme/mcp/cc`, m.token);
  const later = await again.request('tools/call', { name: 'echo', arguments: { message: 'later' } });
  assert.equal(later.status, 200, later.body);
  return { gw, ua, ub, fresh, later };
}

test('an upstream session the store refuses (rekeyed meanwhile) is ended with the key that opened it', async () => {
  const { gw, ua, fresh, later } = await race((ua) => ({ url: ua.url, auth: { type: 'header', name: 'X-Key', value: 'new-key' } }));
  const del = await ua.waitRequest((e) => e.method === 'DELETE' && e.headers['mcp-session-id'] === fresh, 10000)
    .catch(() => assert.fail(`the refused upstream session ${fresh} was never ended (requests: ${ua.requests().map((e) =>
      `${e.method} ${e.json?.method ?? ''} ${e.headers['mcp-session-id'] ?? ''}`).join(', ')})`));
  assert.equal(del.headers['x-key'], 'old-key', 'the DELETE carries the credential that opened the session');
  assert.equal(del.url, '/mcp');
  await waitFor(async () => metricValue(await scrapeMetrics(gw), 'mcpgate_upstream_session_deletes_total', { result: 'ended' }) >= 1,
    { what: 'the DELETE counted as ended' });
  assert.match(later.body, /ua:echo later/);
  const used = ua.rpc('tools/call').at(-1);
  assert.equal(used.headers['x-key'], 'new-key');
  assert.notEqual(used.headers['mcp-session-id'], fresh, 'the refused session is not used');
  assert.deepEqual(ua.requests().filter((e) => e.headers['mcp-session-id'] === fresh && e.method !== 'DELETE').map((e) => e.json?.method ?? e.method),
    [], 'nothing else went on it');
  await gw.stop();
});

test('one the store refuses because the connector moved to another origin is not ended there: nothing more goes there', async () => {
  const { gw, ua, ub, fresh, later } = await race((ua, ub) => ({ url: ub.url, auth: { type: 'header', name: 'X-Key', value: 'new-key' } }));
  assert.match(later.body, /ub:echo later/);
  const stray = ua.requests().filter((e) => e.method === 'DELETE' && e.headers['mcp-session-id'] === fresh);
  assert.deepEqual(stray.map((e) => `${e.method} ${e.headers['mcp-session-id']}`), [], 'nothing more reached the old server for it');
  assert.deepEqual(ub.requests().filter((e) => e.headers['mcp-session-id'] === fresh).map((e) => e.method), [], 'the old id never reached the new one');
  await gw.stop();
});
