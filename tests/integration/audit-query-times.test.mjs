// since/until of the audit query and export are RFC 3339 UTC times or
// milliseconds, and anything else is a 400 (README, Admin API). Found by
// review: sscanf's %2d took a sign or a space in any field and the fields
// were only bounded above, so "2026-01-01T-1:00:00Z" was read as 23:00 the
// day before, and "2026-02-31" as March 3rd: a malformed window answered
// 200 with records of another window than the one asked for.
// ci-variants: build-w1
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway, waitFor } from './lib/gateway.mjs';
import { createTenant, operatorToken, api } from './lib/admin.mjs';

let g, op;
before(async () => {
  g = await startGateway({});
  op = operatorToken(g.dataDir);
  await createTenant(g.port, op, 'acme');
});
after(async () => { await g?.stop(); });

test('a malformed since or until is a 400 on the query and the export', async () => {
  const bad = ['2026-01-01T-1:00:00Z', '2026-01-01T 1:00:00Z', '2026-+1-01T00:00:00Z', '2026-01-01T00:-5:00Z',
    '2026-01-01T00:00:-1Z', '2026-02-31T00:00:00Z', '2026-04-31T10:00:00Z', '2026-01-01T00:00:00.Z'];
  for (const v of bad)
    for (const p of ['audit', 'audit/export'])
      for (const name of ['since', 'until']) {
        const r = await api(g.port, op, 'GET', `/admin/v1/tenants/acme/${p}?${name}=${encodeURIComponent(v)}`);
        assert.equal(r.status, 400, `${p}?${name}=${v}: ${r.status} ${r.body.slice(0, 120)}`);
      }
  for (const v of ['2026-01-01T00:00:00Z', '2028-02-29T23:59:59.5Z', '1796514880788'])
    for (const p of ['audit', 'audit/export']) {
      const r = await api(g.port, op, 'GET', `/admin/v1/tenants/acme/${p}?since=${encodeURIComponent(v)}`);
      assert.equal(r.status, 200, `${p}?since=${v}: ${r.body.slice(0, 120)}`);
    }
});

// until is exclusive, and "no bound" inside the log is 0: an until at the
// epoch itself (0, or 1970-01-01T00:00:00Z) was read as no bound, and the
// query and export answered every record instead of none.
test('until at the epoch selects nothing, on the query and the export', async () => {
  const w = await api(g.port, op, 'POST', '/admin/v1/tenants/acme/admin-tokens', { name: 'rec' });
  assert.equal(w.status, 201, w.body); // a write: a record in the tenant's chain
  let all;
  await waitFor(async () => {
    all = await api(g.port, op, 'GET', '/admin/v1/tenants/acme/audit');
    return all.status === 200 && all.json.records.length >= 1;
  }, { what: 'a record of the tenant' });
  for (const v of ['0', '1970-01-01T00:00:00Z', '00']) {
    const q = await api(g.port, op, 'GET', `/admin/v1/tenants/acme/audit?until=${encodeURIComponent(v)}`);
    assert.equal(q.status, 200, q.body);
    assert.deepEqual(q.json, { records: [], next_cursor: null }, `query until=${v}`);
    const x = await api(g.port, op, 'GET', `/admin/v1/tenants/acme/audit/export?until=${encodeURIComponent(v)}`);
    assert.equal(x.status, 200, x.body);
    assert.equal(x.body, '', `export until=${v}`);
  }
  // the lower bound at the epoch is every record, as before
  const s0 = await api(g.port, op, 'GET', '/admin/v1/tenants/acme/audit?since=0');
  assert.ok(s0.json.records.length >= all.json.records.length, s0.body);
  // and the tenant is still checked first
  const nope = await api(g.port, op, 'GET', '/admin/v1/tenants/nope/audit?until=0');
  assert.equal(nope.status, 404, nope.body);
});
