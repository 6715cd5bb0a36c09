// The audit query's answer is bounded in bytes, not only in records (found
// by review): a tenant admin could write a thousand policy versions of
// ~64 KiB each (every one recorded with its before and after) and then ask
// for them with limit=1000. The gateway parsed all of them into one JSON
// tree — about 1.5 GB of memory for 64 MB of records, two such queries per
// tenant at once — and serialised the answer on the loop. An answer now
// stops once it holds AUDIT_QUERY_BYTES_MAX of records and says where to go
// on (next_cursor), as it already does after AUDIT_SCAN_MAX examined.
// ci-variants: build-w1
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway } from './lib/gateway.mjs';
import { createTenant, operatorToken, api } from './lib/admin.mjs';

let g, op, admin;
before(async () => {
  g = await startGateway({});
  op = operatorToken(g.dataDir);
  await createTenant(g.port, op, 'acme');
  const r = await api(g.port, op, 'POST', '/admin/v1/tenants/acme/admin-tokens', { name: 'tenant admin' });
  assert.equal(r.status, 201, r.body);
  admin = r.json.token;
});
after(async () => { await g?.stop(); });

/** a policy whose audit record ({"before","after"}) is just under 64 KiB */
const bigPolicy = (k) => ({ version: 1, rules: [{ groups: Array(7900).fill('*'), connector: `c${k}`, allow: ['*'] }] });

test('an audit answer holds at most about a mebibyte of records; the cursor pages through the rest', async () => {
  const N = 40; // ~2.5 MB of records
  for (let i = 0; i < N; i++) {
    const r = await api(g.port, admin, 'PUT', '/admin/v1/tenants/acme/policy', bigPolicy(i % 2));
    assert.equal(r.status, 200, r.body);
  }
  let want;
  for (let i = 0; i < 100; i++) { // the audit writer commits every 50 ms
    const probe = await api(g.port, admin, 'GET', '/admin/v1/tenants/acme/audit?kind=admin&limit=1');
    want = probe.json.records[0]?.seq;
    if (probe.json.records[0]?.path === '/admin/v1/tenants/acme/policy' && want >= N) break;
    await new Promise((res) => setTimeout(res, 50));
  }
  const first = await api(g.port, admin, 'GET', '/admin/v1/tenants/acme/audit?kind=admin&limit=1000');
  assert.equal(first.status, 200, first.body.slice(0, 200));
  assert.ok(first.body.length < 1.5 * 1024 * 1024,
    `one answer carried ${first.body.length} bytes of records (${first.json.records.length} records)`);
  assert.ok(first.json.records.length >= 1, 'an answer always makes progress');
  assert.equal(typeof first.json.next_cursor, 'string', 'a bounded answer says where to go on');
  // every record exactly once, newest first, across the pages
  const seqs = first.json.records.map((r) => r.seq);
  let cursor = first.json.next_cursor;
  for (let i = 0; cursor && i < 100; i++) {
    const p = await api(g.port, admin, 'GET', `/admin/v1/tenants/acme/audit?kind=admin&limit=1000&cursor=${cursor}`);
    assert.equal(p.status, 200, p.body.slice(0, 200));
    assert.ok(p.body.length < 1.5 * 1024 * 1024, `a page of ${p.body.length} bytes`);
    seqs.push(...p.json.records.map((r) => r.seq));
    cursor = p.json.next_cursor;
  }
  assert.equal(cursor, null, 'paging ends');
  const all = await api(g.port, op, 'GET', '/admin/v1/tenants/acme/audit/export');
  const every = all.body.trim().split('\n').map((l) => JSON.parse(l)).filter((r) => r.kind === 'admin').map((r) => r.seq);
  assert.deepEqual(seqs, every.filter((s) => s <= seqs[0]).reverse(), 'the pages hold every admin record once, newest first');
});
