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
import { spawnSync } from 'node:child_process';

import { gatewayBin } from './lib/gateway.mjs';
import { startProxyFixture, connectClient } from './lib/mcp.mjs';

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
  assert.ok(fx.gw.logs().some((e) => /the audit log cannot record/.test(e.msg ?? '')), 'logged');
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
});
