// Instant offboarding (issue 18): reactivation revives nothing. IT
// deactivates Alice (Okta's PATCH) and reactivates her (the same PATCH with
// active:true): every credential she held before stays dead — tokens,
// refresh tokens, an authorization code issued before and never exchanged,
// the browser session, her MCP sessions — and a fresh sign-in works.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { offboardFixture, hold, endedBefore, refused, release, freshSignInWorks, mcpInit, ALICE, BOB, works } from './lib/offboard.mjs';

const okta = (active) => ({ schemas: ['urn:ietf:params:scim:api:messages:2.0:PatchOp'], Operations: [{ op: 'replace', value: { active } }] });

test('deactivated then reactivated: nothing she held before works again; a fresh sign-in does', async () => {
  const fx = await offboardFixture({ acme: [ALICE, BOB] });
  const t = fx.t.acme;
  const id = t.users[ALICE.userName].id;
  const alice = await hold(fx, 'acme', ALICE);
  const bob = await hold(fx, 'acme', BOB);
  const off = await t.scim.patch(`/Users/${id}`, okta(false));
  assert.equal(off.status, 200, off.body);
  await endedBefore(fx, alice, off.headers['x-request-id']);
  const on = await t.scim.patch(`/Users/${id}`, okta(true));
  assert.equal(on.status, 200, on.body);
  assert.equal(on.json.active, true);
  await refused(fx, alice);
  const fresh = await freshSignInWorks(fx, 'acme', ALICE);
  // her old MCP session is gone from the store, not merely unauthenticated:
  // with a fresh token it is unknown
  const old = await mcpInit(fx, 'acme', fresh.access, alice.sid);
  assert.equal(old.status, 404, `the old MCP session with a fresh token: ${old.status} ${old.body}`);
  release(alice);
  await works(fx, bob);
  release(bob);
});
