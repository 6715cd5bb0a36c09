// Instant offboarding (issue 18): a PUT whose "active" is the string
// "False" (IdPs that send string booleans) is stored as false and cuts like
// Okta's PATCH: Alice's streams and calls on both loops end before the 200,
// every credential of hers is refused after, Bob keeps his
// (lib/offboard.mjs).
import { test } from 'node:test';

import { offboardCase, release } from './lib/offboard.mjs';

test('PUT the whole user with "active": "False"', async () => {
  const { bob } = await offboardCase(async (t, id) => t.scim.put(`/Users/${id}`, { ...(await t.scim.fetch(`/Users/${id}`)), active: 'False' }));
  release(bob);
});
