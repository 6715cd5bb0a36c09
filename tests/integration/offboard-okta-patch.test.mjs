// Instant offboarding (issue 18), the headline trigger: IT deactivates a
// person in Okta, and Okta sends its exact PATCH (no path, the value an
// object — shared/okta-scim.md). Alice holds one of everything on both
// loops (lib/offboard.mjs): before the SCIM 200 leaves, her GET streams
// and her slow calls in flight have ended on the loop that held them;
// after it, every credential of hers is refused. Bob, in the same tenant,
// keeps everything.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { scrapeMetrics, metricValue } from './lib/gateway.mjs';
import { offboardFixture, hold, endedBefore, refused, works, release, ALICE, BOB } from './lib/offboard.mjs';

test('Okta\'s deactivation PATCH: her streams and calls end on both loops before the 200; every credential of hers is refused after; Bob keeps his', async () => {
  const fx = await offboardFixture({ acme: [ALICE, BOB] });
  const t = fx.t.acme;
  const alice = await hold(fx, 'acme', ALICE);
  const bob = await hold(fx, 'acme', BOB);
  const r = await t.scim.patch(`/Users/${t.users[ALICE.userName].id}`, {
    schemas: ['urn:ietf:params:scim:api:messages:2.0:PatchOp'],
    Operations: [{ op: 'replace', value: { active: false } }],
  });
  assert.equal(r.status, 200, r.body);
  assert.equal(r.json.active, false);
  await endedBefore(fx, alice, r.headers['x-request-id']);
  await refused(fx, alice);
  await works(fx, bob);
  const m = await scrapeMetrics(fx.gw);
  assert.equal(metricValue(m, 'mcpgate_revocation_fanout_timeouts_total'), 0, 'every loop acknowledged in time');
  release(bob);
});
