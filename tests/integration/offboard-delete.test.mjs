// Instant offboarding (issue 18): SCIM DELETE of a user (Okta never sends
// it; other IdPs do) cuts like a deactivation — her streams and calls end
// on both loops before the 204, every credential is refused after, Bob
// keeps his. Provisioned again (same userName and externalId, a new id),
// she can sign in afresh; nothing she held before works.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { offboardFixture, hold, endedBefore, refused, works, release, freshSignInWorks, mcpInit, ALICE, BOB } from './lib/offboard.mjs';

test('SCIM DELETE: streams and calls end before the 204, every credential refused after; provisioned again, only a fresh sign-in works', async () => {
  const fx = await offboardFixture({ acme: [ALICE, BOB] });
  const t = fx.t.acme;
  const alice = await hold(fx, 'acme', ALICE);
  const bob = await hold(fx, 'acme', BOB);
  const r = await t.scim.del(`/Users/${t.users[ALICE.userName].id}`);
  assert.equal(r.status, 204, r.body);
  await endedBefore(fx, alice, r.headers['x-request-id']);
  await refused(fx, alice);
  await works(fx, bob);
  // back in the directory (a new id), the old credentials stay dead
  const again = await t.scim.createUser(ALICE.userName, { externalId: ALICE.sub, emails: [{ value: ALICE.userName, primary: true }] });
  assert.notEqual(again.id, t.users[ALICE.userName].id);
  await refused(fx, alice);
  const fresh = await freshSignInWorks(fx, 'acme', ALICE);
  const old = await mcpInit(fx, 'acme', fresh.access, alice.sid);
  assert.equal(old.status, 404, `the old MCP session with a fresh token: ${old.status} ${old.body}`);
  release(alice);
  release(bob);
});
