// The connector endpoint's DELETE tells the upstream its session ended,
// with the upstream session id the gateway session held. Suspected (last
// session's notes): when a connector PUT to a new URL commits between the
// DELETE's checks (its session read) and its own write, the session is
// already gone with the move, and the DELETE could still go out with the
// OLD server's session id — to the NEW server. It does not: the DELETE's
// answer waits for every loop to have applied the move (the fan-out gate),
// which ends the exchange first (403). This test keeps it so.
//
// MCPGATE_TEST_WRITER_PAUSE_FILE lines the writes up: while the file
// exists the writer takes no job, so the PUT's job is queued before the
// DELETE's (mcpgate_store_queue_depth says when), and both run in order
// once it is removed. The DELETE runs on the other loop than the PUT, which
// MCPGATE_TEST_FANOUT_DELAY_MS makes apply the move's revocations late (a
// loop busy with other work): only the gate stands between the two.
// ci-variants: build-w1 build-asan-w2 (it starts its own two loops)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { startGateway, waitFor, scrapeMetrics, metricValue } from './lib/gateway.mjs';
import { setupTenant, rawSession, mcpHeaders } from './lib/mcp.mjs';
import { operatorToken } from './lib/admin.mjs';
import { startCtlUpstream } from './lib/ctl-upstream.mjs';
import { connOnLoop } from './lib/workers.mjs';

async function rawReq(c, seen, method, p, headers, body) {
  const b = body === undefined ? '' : JSON.stringify(body);
  const h = { host: '127.0.0.1', 'content-length': String(Buffer.byteLength(b)), ...headers };
  await c.write(`${method} ${p} HTTP/1.1\r\n${Object.entries(h).map(([k, v]) => `${k}: ${v}`).join('\r\n')}\r\n\r\n${b}`);
  const rs = await c.responses(seen + 1, 15000);
  return rs[seen];
}

const queued = async (gw) => metricValue(await scrapeMetrics(gw), 'mcpgate_store_queue_depth');

test('a DELETE whose session a connector move deleted first never sends the old id to the new server', async () => {
  const pause = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'mcpgate-pause-')), 'hold');
  const gw = await startGateway({ args: ['--workers', '2', '--revocation-fanout-timeout-ms', '20000'],
    env: { MCPGATE_TEST_WRITER_PAUSE_FILE: pause, MCPGATE_TEST_FANOUT_DELAY_MS: '1500' } });
  const ua = await startCtlUpstream({ name: 'ua' });
  const ub = await startCtlUpstream({ name: 'ub' });
  const t = await setupTenant(gw, { users: ['alice@acme.com'] });
  assert.equal((await t.putConnector('cc', { url: ua.url, auth: { type: 'none' } })).status, 201);
  const m = await t.mintToken('alice@acme.com');

  // the unraced case first: the upstream hears of the session's end
  const s0 = await rawSession(t.mcpUrl('cc'), m.token);
  const up0 = ua.rpc('initialize').at(-1);
  assert.ok(up0);
  assert.equal((await s0.del()).status, 204);
  await waitFor(() => ua.requests().some((e) => e.method === 'DELETE'), { what: 'the upstream DELETE' });

  const s = await rawSession(t.mcpUrl('cc'), m.token);
  const sids = new Set(ua.requests().map((e) => e.headers['mcp-session-id']).filter(Boolean));
  const mc = await connOnLoop(gw, 1);
  const ac = await connOnLoop(gw, 0);
  fs.writeFileSync(pause, '');
  const moving = rawReq(ac, 1, 'PUT', '/admin/v1/tenants/acme/connectors/cc', {
    authorization: `Bearer ${operatorToken(gw.dataDir)}`, 'content-type': 'application/json',
  }, { url: ub.url, auth: { type: 'none' } });
  await waitFor(async () => (await queued(gw)) >= 1, { what: 'the PUT queued behind the pause' });
  const deleting = rawReq(mc, 1, 'DELETE', '/t/acme/mcp/cc', mcpHeaders({ token: m.token, sessionId: s.sessionId, protocolVersion: s.protocolVersion }));
  await waitFor(async () => (await queued(gw)) >= 2, { what: 'the DELETE queued after it' });
  fs.rmSync(pause);
  assert.equal((await moving).status, 200);
  const d = await deleting;
  assert.ok([204, 403, 404].includes(d.status), `the DELETE: ${d.status} ${d.body}`);
  // a request after both shows the writes are done; nothing carried an old id to ub
  assert.equal((await rawSession(t.mcpUrl('cc'), m.token)).sessionId ? 1 : 0, 1);
  const leaked = ub.requests().filter((e) => sids.has(e.headers['mcp-session-id']));
  assert.deepEqual(leaked.map((e) => `${e.method} ${e.headers['mcp-session-id']}`), [], 'no id of the old server reached the new one');
  mc.destroy();
  ac.destroy();
  await gw.stop();
});
