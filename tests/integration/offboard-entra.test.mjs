// Instant offboarding (issue 18): Entra's deactivation PATCH — op
// "Replace" capitalised, path "active", the value the string "False" —
// cuts like Okta's: Alice's streams and calls on both loops end before the
// 200, every credential of hers is refused after, Bob keeps his
// (lib/offboard.mjs).
import { test } from 'node:test';

import { offboardCase, release } from './lib/offboard.mjs';

test('PATCH {"op":"Replace","path":"active","value":"False"} (Entra)', async () => {
  const { bob } = await offboardCase((t, id) => t.scim.patchOps(`/Users/${id}`, [{ op: 'Replace', path: 'active', value: 'False' }]));
  release(bob);
});
