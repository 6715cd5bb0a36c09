// Issue 18, the per-connector cut, group DELETE: Okta unlinks G1 with
// "delete the group in the target app" (DELETE /Groups/{id}); alice, whose
// only way to connector a was G1, loses what she holds on a before the 204;
// bob keeps a through G3. Giving her a again (G3) revives nothing old.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { fixture, holdings, assertCut, assertNothingRevived, closeAll, POLICY_G3 } from './lib/offboard-connector.mjs';

test('SCIM DELETE of the group that showed a: alice\'s sessions and streams to a end before the 204; the rest stays', async () => {
  const f = await fixture({ policy: POLICY_G3 });
  const h = await holdings(f);
  const r = await f.t.scim.del(`/Groups/${f.g1.id}`);
  assert.equal(r.status, 204, `DELETE: ${r.status} ${r.body}`);
  await assertCut(f, h, r, 'the SCIM DELETE');
  await f.g.add(f.g3.id, f.ids.alice);
  await assertNothingRevived(f, h);
  closeAll(h);
  await f.gw.stop();
});
