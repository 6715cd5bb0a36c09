// Audit (issue 22): when the audit log cannot record — here its environment
// is full (a 64 KiB map, --audit-map-size) — audit_on_failure decides:
// deny (the default) refuses tools/call with a clear error and says so in
// /metrics and the log, while SCIM deactivation still goes through; serve
// lets calls go on unrecorded. Nothing recorded before is lost or corrupt.
// Real parts: the gateway binary with its audit environment on disk,
// server-everything behind it, the SDK client, SCIM with Okta's PATCH.
// ci-variants: build-w1 build-asan-w2 (one plain and one sanitizer run: CI's 15 minutes)
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';

import { gatewayBin, waitFor, request } from './lib/gateway.mjs';
import { startProxyFixture, connectClient, rawSession } from './lib/mcp.mjs';

const fixtures = [];
after(async () => { for (const f of fixtures) { await f.gw.stop(); await f.up.stop?.(); } });

const big = 'x'.repeat(6000);

/** Calls echo until a call is refused (or `max` calls); returns {served, refused: error or null}. */
async function fill(c, max = 200) {
  let served = 0;
  for (let i = 0; i < max; i++) {
    try {
      await c.client.callTool({ name: 'echo', arguments: { message: `${i}`, pad: big } });
      served++;
    } catch (e) {
      return { served, refused: e };
    }
    if (i % 5 === 4) await new Promise((r) => setTimeout(r, 60)); // a batch commit in between
  }
  return { served, refused: null };
}

const metric = async (fx, name) => {
  const r = await fetch(`${fx.gw.url}/metrics`, { headers: { authorization: `Bearer ${fx.t.opToken}` } });
  const m = new RegExp(`^${name} (\\d+)`, 'm').exec(await r.text());
  return m ? Number(m[1]) : undefined;
};

test('deny (default): a full audit environment refuses calls clearly; deactivation still works', async () => {
  const fx = await startProxyFixture({ gatewayArgs: ['--audit-map-size', '65536'] });
  fixtures.push(fx);
  const c = await connectClient(fx.url, fx.tokens.alice);
  let res;
  try {
    res = await fill(c);
    assert.ok(res.refused, `a call is refused once the audit log is full (served ${res.served})`);
    assert.match(String(res.refused.message), /audit log/);
    assert.ok(res.served >= 1, 'calls were served while it could record');
    // the next call too
    await assert.rejects(c.client.callTool({ name: 'echo', arguments: { message: 'again' } }), /audit log/);
  } finally { await c.close(); }
  assert.equal(await metric(fx, 'mcpgate_audit_failing'), 1);
  await fx.gw.waitForLog((e) => /the audit log cannot record/.test(e.msg ?? ''), 5000); // logged
  // not ready while every call is refused (found by review: /readyz said ready)
  const ready = await request(fx.gw.port, { path: '/readyz' });
  assert.equal(ready.status, 503, ready.body);
  assert.match(ready.body, /audit log cannot record/);
  // a deactivation is never refused for it
  const d = await fx.t.scim.patchOps(`/Users/${fx.users.bob.id}`, [{ op: 'replace', value: { active: false } }]);
  assert.equal(d.status, 200, d.body);
  const cb = await connectClient(fx.url, fx.tokens.bob).catch((e) => e);
  assert.ok(cb instanceof Error, 'bob is out');
  // what was recorded before is intact
  await fx.gw.stop();
  const v = spawnSync(gatewayBin(), ['audit', 'verify', '--data', fx.gw.dataDir], { encoding: 'utf8' });
  assert.equal(v.status, 0, v.stdout + v.stderr);
});

test('serve: calls go on unrecorded while the audit log cannot record', async () => {
  const fx = await startProxyFixture({ gatewayArgs: ['--audit-map-size', '65536', '--audit-on-failure', 'serve'] });
  fixtures.push(fx);
  const c = await connectClient(fx.url, fx.tokens.alice);
  try {
    const res = await fill(c, 60);
    assert.equal(res.refused, null, `no call refused: ${res.refused}`);
  } finally { await c.close(); }
  assert.equal(await metric(fx, 'mcpgate_audit_failing'), 1);
  assert.ok((await metric(fx, 'mcpgate_audit_records_written_total')) >= 1);
  assert.equal((await request(fx.gw.port, { path: '/readyz' })).status, 200, 'serve: calls go on, so ready');
});

// An environment that fails and then recovers (a disk full, then freed): the
// gateway's files may not grow past RLIMIT_FSIZE, set on the running process
// with prlimit (the wrapper ignores SIGXFSZ, as the gateway inherits it, so a
// write past the limit fails with EFBIG instead of killing it), then lifted.
// While broken, records stay queued and are written once a commit succeeds:
// a call refused meanwhile must not come out of the queue as "allow" — a
// call that reads as made, with no upstream part.
const hasPrlimit = spawnSync('prlimit', ['--version']).status === 0;
test('deny: a call refused while the log cannot record is recorded as "unaudited" once it recovers, never as "allow"',
  { skip: !hasPrlimit && 'no prlimit (util-linux)' }, async () => {
    const fx = await startProxyFixture({ gatewayWrap: ['sh', '-c', 'trap "" XFSZ; exec "$@"', 'sh'] });
    fixtures.push(fx);
    const pid = String(fx.gw.proc.pid);
    const size = (f) => fs.statSync(path.join(fx.gw.dataDir, f)).size;
    const prlimit = (v) => {
      const r = spawnSync('prlimit', ['--pid', pid, `--fsize=${v}:`], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
    };
    const records = async () => {
      const r = await fx.t.admin('GET', '/audit?kind=call&limit=1000');
      assert.equal(r.status, 200, r.body);
      return r.json.records;
    };
    const c = await connectClient(fx.url, fx.tokens.alice);
    const a = await connectClient(`${fx.gw.url}/t/acme/mcp`, fx.tokens.alice);
    const s = await rawSession(fx.url, fx.tokens.alice, { protocolVersion: '2025-03-26' }); // batches
    try {
      // the audit file well past the main store's, whose writes must keep
      // working under the limit
      await waitFor(async () => {
        await c.client.callTool({ name: 'echo', arguments: { message: 'grow', pad: big } });
        return size('audit/data.mdb') > size('store/data.mdb') + 65536;
      }, { timeoutMs: 30000, intervalMs: 1, what: 'the audit file to grow' });
      await waitFor(async () => (await metric(fx, 'mcpgate_audit_queue_records')) === 0, { what: 'the queue written' });
      prlimit(size('audit/data.mdb'));
      const res = await fill(c);
      assert.ok(res.refused, `a call is refused once commits fail (served ${res.served})`);
      assert.match(String(res.refused.message), /audit log/);
      await assert.rejects(c.client.callTool({ name: 'echo', arguments: { message: 'refused-direct' } }), /audit log/);
      await assert.rejects(a.client.callTool({ name: 'everything__echo', arguments: { message: 'refused-agg' } }),
        /audit log/);
      const b = await s.post([1, 2].map((id) => ({ jsonrpc: '2.0', id, method: 'tools/call',
        params: { name: 'echo', arguments: { message: `refused-batch-${id}` } } })));
      assert.equal(b.messages.length, 2, b.body);
      for (const m of b.messages) assert.match(m.error?.message ?? '', /audit log/, b.body);
      assert.equal(await metric(fx, 'mcpgate_audit_failing'), 1);
      // the disk has room again: the queued records are written
      prlimit('unlimited');
      await waitFor(async () => (await metric(fx, 'mcpgate_audit_failing')) === 0,
        { timeoutMs: 10000, intervalMs: 50, what: 'audit commits to succeed again' });
      const ok = await c.client.callTool({ name: 'echo', arguments: { message: 'served-again' } });
      assert.ok(ok, 'calls go through again');
      let recs;
      await waitFor(async () => {
        recs = await records();
        return recs.some((r) => r.arguments?.message === 'served-again');
      }, { timeoutMs: 10000, intervalMs: 50, what: 'the records written' });
      for (const m of ['refused-direct', 'refused-agg', 'refused-batch-1', 'refused-batch-2']) {
        const r = recs.find((x) => x.arguments?.message === m);
        assert.ok(r, `the refused call ${m} is recorded`);
        assert.equal(r.decision, 'unaudited', `${m}: refused because it could not be recorded: ${JSON.stringify(r)}`);
        assert.equal(r.upstream_status, undefined, `${m}: never sent upstream`);
      }
      const allowNoAnswer = recs.filter((r) => r.decision === 'allow' && r.upstream_status === undefined);
      assert.deepEqual(allowNoAnswer, [], 'no record says "allow" for a call that never went upstream');
      assert.ok(recs.find((r) => r.arguments?.message === 'served-again').decision === 'allow');
      assert.ok(fx.rec.requests().every((e) => !e.body.includes('refused-')), 'no refused call reached the upstream');
    } finally { await c.close(); await a.close(); }
    await fx.gw.stop();
    const v = spawnSync(gatewayBin(), ['audit', 'verify', '--data', fx.gw.dataDir], { encoding: 'utf8' });
    assert.equal(v.status, 0, v.stdout + v.stderr);
  });
