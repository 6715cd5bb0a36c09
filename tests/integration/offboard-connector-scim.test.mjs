// Issue 18, the per-connector cut, SCIM trigger: Okta's Group Push PATCH
// removes alice from G1 (the one group that shows her connector a): before
// the SCIM reply, what she holds on a ends — her /mcp/a stream and session,
// her slow calls to a (direct and aggregated) — while her aggregated stream
// stays (told list_changed), b stays hers and bob keeps a. Adding her back
// revives nothing old.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { fixture, holdings, assertCut, assertNothingRevived, closeAll, echo } from './lib/offboard-connector.mjs';
import { toolText } from './lib/mcp.mjs';

test('Okta Group Push PATCH remove: alice\'s sessions and streams to a end before the reply; b, her aggregated stream and bob stay', async () => {
  const f = await fixture();
  const h = await holdings(f);
  // a write that rolls back ends nothing: the same removal with an operation the PATCH refuses
  const bad = await f.t.scim.patchOps(`/Groups/${f.g1.id}`, [
    { op: 'remove', path: `members[value eq "${f.ids.alice}"]` }, { op: 'frobnicate', path: 'members' }]);
  assert.equal(bad.status, 400, `a PATCH with a bad operation: ${bad.status} ${bad.body}`);
  assert.deepEqual(await f.t.scim.memberIds(f.g1.id).then((m) => m.includes(f.ids.alice)), true, 'she is still in G1');
  assert.equal([h.aStream, h.slowA, h.slowAgg, h.aggStream].some((st) => st.isEnded), false, 'nothing of hers ended');
  assert.equal(toolText((await echo(h.a, 'echo', 'kept')).result), 'Echo: kept');
  const r = await f.t.scim.patchOps(`/Groups/${f.g1.id}`, [{ op: 'remove', path: `members[value eq "${f.ids.alice}"]` }]);
  assert.ok(r.status === 200 || r.status === 204, `PATCH: ${r.status} ${r.body}`);
  await assertCut(f, h, r, 'the SCIM PATCH');
  // Okta pushes her back (PATCH add): a works again, nothing old does
  await f.g.add(f.g1.id, f.ids.alice);
  await assertNothingRevived(f, h);
  closeAll(h);
  await f.gw.stop();
});
