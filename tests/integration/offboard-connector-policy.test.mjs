// Issue 18, the per-connector cut, admin policy PUT: a document that no
// longer gives G1 connector a (bob keeps it through G3) ends what alice
// holds on a before the PUT's 200; a PUT that hides nothing from anyone
// ends nothing. Putting the grant back revives nothing old.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { fixture, holdings, assertCut, assertNothingRevived, closeAll, echo, POLICY } from './lib/offboard-connector.mjs';
import { toolText } from './lib/mcp.mjs';

const WITHOUT_G1 = {
  version: 1, default: 'block',
  rules: [
    { groups: ['G3'], connector: 'a', allow: ['*'] },
    { groups: ['G2'], connector: 'b', allow: ['*'] },
  ],
};

test('policy PUT taking a from G1: alice\'s sessions and streams to a end before the 200; a widening PUT ends nothing', async () => {
  const f = await fixture({ policy: { ...POLICY, rules: [...POLICY.rules, { groups: ['G3'], connector: 'a', allow: ['echo'] }] } });
  const h = await holdings(f);
  // a PUT that only changes tools (and widens): nothing of hers ends
  const wide = await f.t.admin('PUT', '/policy', { ...WITHOUT_G1, rules: [...WITHOUT_G1.rules, { groups: ['G1'], connector: '*', allow: ['*'] }] });
  assert.equal(wide.status, 200, wide.body);
  await h.aggStream.waitFor((m) => m.method === 'notifications/tools/list_changed', 5000);
  assert.equal(h.aStream.isEnded || h.slowA.isEnded || h.slowAgg.isEnded, false, 'nothing hidden, nothing ended');
  assert.equal(toolText((await echo(h.a, 'echo', 'kept')).result), 'Echo: kept');
  h.aggStream.messages.length = 0; // the next list_changed is the cut's
  h.aStream.messages.length = 0;
  const r = await f.t.admin('PUT', '/policy', WITHOUT_G1);
  assert.equal(r.status, 200, `PUT policy: ${r.status} ${r.body}`);
  await assertCut(f, h, r, 'the policy PUT');
  const back = await f.t.admin('PUT', '/policy', POLICY);
  assert.equal(back.status, 200, back.body);
  await assertNothingRevived(f, h);
  closeAll(h);
  await f.gw.stop();
});
