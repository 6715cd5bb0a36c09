// Issue 18, the per-connector cut past the triggering transaction's budget:
// with MCPGATE_TEST_CUT_BUDGET=1 the SCIM PATCH cuts one session record
// itself and a sweep of the tenant, one record a step, does the rest after
// the commit. The live half does not wait for it (the reply still comes
// after every stream and call to a ended); once the sweep is over, nothing
// old comes back with the grant.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { fixture, holdings, assertCut, assertNothingRevived, closeAll } from './lib/offboard-connector.mjs';

test('a cut larger than the transaction\'s budget: the sweep finishes it, in steps, and the grant put back revives nothing', async () => {
  const f = await fixture({ env: { MCPGATE_TEST_CUT_BUDGET: '1' } });
  const h = await holdings(f);
  const from = f.gw.logs().length;
  const r = await f.t.scim.patchOps(`/Groups/${f.g1.id}`, [{ op: 'remove', path: `members[value eq "${f.ids.alice}"]` }]);
  assert.ok(r.status === 200 || r.status === 204, `PATCH: ${r.status} ${r.body}`);
  await assertCut(f, h, r, 'the SCIM PATCH');
  const over = await f.gw.waitForLog((e) => /connector cut: sweep over/.test(e.msg ?? ''), 5000, from);
  const [, cut, steps] = /(\d+) session\(s\).* in (\d+) step/.exec(over.msg).map(Number);
  // she and bob hold 4 session records, the PATCH read one of hers: a step
  // per record left and one finding the end; of her /mcp/a session and her
  // aggregated session's upstream id for a, the PATCH cut at most one
  assert.ok(cut >= 1 && steps >= 4, `the sweep cut ${cut} in ${steps} steps: ${over.msg}`);
  await f.g.add(f.g1.id, f.ids.alice);
  await assertNothingRevived(f, h);
  closeAll(h);
  await f.gw.stop();
});
