// Instant offboarding (issue 18): a deactivation PATCH with path "active"
// and a JSON boolean cuts like Okta's (offboard-okta-patch.test.mjs):
// Alice's streams and calls on both loops end before the 200, every
// credential of hers is refused after, Bob keeps his (lib/offboard.mjs).
import { test } from 'node:test';

import { offboardCase, release } from './lib/offboard.mjs';

test('PATCH {"op":"replace","path":"active","value":false}', async () => {
  const { bob } = await offboardCase((t, id) => t.scim.patchOps(`/Users/${id}`, [{ op: 'replace', path: 'active', value: false }]));
  release(bob);
});
