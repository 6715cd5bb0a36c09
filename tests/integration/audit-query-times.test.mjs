// since/until of the audit query and export are RFC 3339 UTC times or
// milliseconds, and anything else is a 400 (README, Admin API). Found by
// review: sscanf's %2d took a sign or a space in any field and the fields
// were only bounded above, so "2026-01-01T-1:00:00Z" was read as 23:00 the
// day before, and "2026-02-31" as March 3rd: a malformed window answered
// 200 with records of another window than the one asked for.
// ci-variants: build-w1
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway } from './lib/gateway.mjs';
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
