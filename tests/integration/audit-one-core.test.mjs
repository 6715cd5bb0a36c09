// Audit on a gateway with one CPU that its loop keeps busy (a container
// limited to one core, or every core serving): the audit writer must keep
// up. It runs as a background thread and used to step off the CPU after
// every 32 KiB of a commit (so that, with a second core, the loop gets its
// core back at once); on one busy core each pause cost it a whole slice of
// the loop's, the writer managed ~13k records/s against ~45k calls/s, its
// queue grew to the cap and calls were refused for audit
// (audit_on_failure = deny) though nothing was wrong with it. Now a commit
// pauses only in its first half batch interval.
// Real parts: the gateway binary pinned to one CPU with its audit
// environment on disk, wrk (on the other CPU) calling a tool the policy
// blocks (answered by the gateway itself and recorded: no upstream in the
// way of the load), /metrics.
// ci-variants: build-w1 build-asan-w2 (one plain and one sanitizer run: 8 s of load each)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import os from 'node:os';
import { spawnSync } from 'node:child_process';

import { waitFor } from './lib/gateway.mjs';
import { startProxyFixture, rawSession, mcpHeaders } from './lib/mcp.mjs';
import { wrkPost } from '../bench/lib.mjs';

let fx;
before(async () => {
  // a queue cap of 10,000 records: 0.2 s of this load, where a writer that
  // keeps up holds ~2 batches (~5,000 at most); a falling-behind one
  // trips it within a second
  fx = await startProxyFixture({ gatewayArgs: ['--audit-queue-max', '10000'] });
  await fx.t.setPolicy({ version: 1, default: 'block', rules: [{ groups: ['*'], connector: 'everything', allow: ['*'], block: ['get-sum'] }] });
});
after(async () => { await fx?.gw.stop(); await fx?.up.stop?.(); });

const metric = async (name) => {
  const r = await fetch(`${fx.gw.url}/metrics`, { headers: { authorization: `Bearer ${fx.t.opToken}` } });
  const m = new RegExp(`^${name} (\\d+)`, 'm').exec(await r.text());
  assert.ok(m, `${name} in /metrics`);
  return Number(m[1]);
};

test('a busy gateway on one CPU records every call and refuses none for audit', { timeout: 60000 }, async () => {
  const s = await rawSession(fx.url, fx.tokens.alice);
  const call = { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'get-sum', arguments: { a: 1, b: 2 } } };
  const probe = await s.post(call);
  assert.equal(probe.status, 200, probe.body);
  assert.match(probe.body, /"error"/, `the policy blocks get-sum: ${probe.body}`);
  const written0 = await metric('mcpgate_audit_records_written_total');

  // every thread of the gateway (new ones inherit it) on CPU 0; wrk on the other
  const pin = spawnSync('taskset', ['-a', '-p', '-c', '0', String(fx.gw.proc.pid)], { encoding: 'utf8' });
  assert.equal(pin.status, 0, `taskset: ${pin.stderr}`);
  const ncpu = os.cpus().length;
  const headers = mcpHeaders({ token: fx.tokens.alice, sessionId: s.sessionId, protocolVersion: s.protocolVersion });
  const w = await wrkPost(fx.url, {
    headers, bodyLua: JSON.stringify(JSON.stringify(call)), conns: 16, secs: 8, cpus: ncpu > 1 ? `1-${ncpu - 1}` : undefined,
  });
  assert.ok(w.requests > 1000, `wrk made calls (${w.requests})`);
  assert.equal(w.errors, 0, `no call failed or was refused (${w.errors} of ${w.requests})`);

  // everything queued is committed, and nothing was dropped
  await waitFor(async () => (await metric('mcpgate_audit_queue_records')) === 0, { timeoutMs: 30000, what: 'the audit queue drained' });
  assert.equal(await metric('mcpgate_audit_records_dropped_total'), 0, 'no record dropped');
  assert.equal(await metric('mcpgate_audit_failing'), 0, 'audit never stopped recording');
  const written = (await metric('mcpgate_audit_records_written_total')) - written0;
  assert.ok(written >= w.requests, `every call of the load is recorded (${written} records, ${w.requests} calls)`);
});
