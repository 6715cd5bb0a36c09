// Instant offboarding (issue 18): a deactivation by PUT, the way apps made
// with Okta's wizard send it — GET the user, PUT the whole object back
// (id, meta, groups included) with "active": false — cuts like Okta's
// PATCH: Alice's streams and calls on both loops end before the 200, every
// credential of hers is refused after, Bob keeps his (lib/offboard.mjs).
import { test } from 'node:test';

import { offboardCase, release } from './lib/offboard.mjs';

test('PUT the whole user with "active": false (Okta wizard apps)', async () => {
  const { bob } = await offboardCase(async (t, id) => t.scim.put(`/Users/${id}`, { ...(await t.scim.fetch(`/Users/${id}`)), active: false }));
  release(bob);
});
