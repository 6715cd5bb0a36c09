// A call that needs approval, racing the DELETE of its MCP session (found
// by review). The DELETE cancels the approval requests the session holds
// and ends its calls; the call's hold job re-checked the requester's token
// but not the session, so when the DELETE committed between the call's
// start and its hold job, the request was stored anyway — pending, in a
// session that no longer existed — and its approval became a grant for the
// user's next call. The hold job now finds the session gone and stores
// nothing; the call ends with its session.
//
// MCPGATE_TEST_WRITER_PAUSE_FILE makes the race deterministic: while the
// file exists the writer takes no job, so the DELETE's job is queued first
// and the call's hold job after it (mcpgate_store_queue_depth says when),
// and both run in that order once it is removed.
// ci-variants: build-w1 build-asan-w2
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { waitFor, scrapeMetrics, metricValue } from './lib/gateway.mjs';
import { rawSession, openStream, mcpHeaders } from './lib/mcp.mjs';
import { startPolicyFixture, applyPolicy, groups } from './lib/policy.mjs';

const queued = async (gw) => metricValue(await scrapeMetrics(gw), 'mcpgate_store_queue_depth');
let f;
after(async () => { await f?.gw?.stop?.(); await f?.up?.stop?.(); });

test('a held call whose session\'s DELETE committed first: no request is stored, the call ends with its session', async () => {
  const pause = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'mcpgate-pause-')), 'hold');
  f = await startPolicyFixture({ users: ['alice@acme.com', 'bob@acme.com'], env: { MCPGATE_TEST_WRITER_PAUSE_FILE: pause } });
  const g = groups(f.t.scim);
  await g.create('Engineers', [f.users.alice.id, f.users.bob.id]);
  await g.create('DB Admins', [f.users.bob.id]);
  await applyPolicy(f.t, { version: 1, default: 'block',
    rules: [{ groups: ['Engineers'], connector: 'everything', approve: ['get-sum'], approvers: ['DB Admins'], approval_timeout_s: 600 }] });

  for (const [url, name] of [[f.url, 'get-sum'], [`${f.gw.url}/t/acme/mcp`, 'everything__get-sum']]) {
    const s = await rawSession(url, f.tokens.alice);
    const hdr = mcpHeaders({ token: f.tokens.alice, sessionId: s.sessionId, protocolVersion: s.protocolVersion });
    fs.writeFileSync(pause, '');
    const del = s.del();
    await waitFor(async () => (await queued(f.gw)) >= 1, { what: 'the DELETE\'s write queued behind the pause' });
    const call = openStream(url, { method: 'POST', headers: { ...hdr, 'content-type': 'application/json' },
      body: { jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name, arguments: { a: 1, b: 2 } } } });
    await waitFor(async () => (await queued(f.gw)) >= 2, { what: 'the call\'s hold job queued after it' });
    fs.rmSync(pause);
    const d = await del;
    assert.equal(d.status, 204, d.body);
    const c = await call;
    await Promise.race([c.ended, new Promise((r) => setTimeout(r, 5000))]);
    assert.match(c.raw(), /session was ended \(DELETE\)/, `${url}: the call ends with its session: ${c.status} ${c.raw().slice(0, 300)}`);
    c.close();
    const r = await f.t.admin('GET', '/approvals?state=pending');
    assert.equal(r.status, 200, r.body);
    const left = r.json.approvals.filter((a) => a.user === f.users.alice.id);
    assert.deepEqual(left, [], `${url}: no approval request stored for a session its DELETE had ended`);
  }
});
