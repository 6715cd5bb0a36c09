// Vault 1/2 (issue 20): the revocation worker retries a 5xx with backoff.
// The AS answers 503 to every revocation; IT deactivates Bob → the report
// shows his revocation pending with an attempt and the 503 as its last error;
// once the AS answers again it becomes done (backoff 1 s, doubling).
// ci-variants: build-w1 build-asan-w2 (two loops are the sanitizer run's; CI's 15 minutes)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { waitFor } from './lib/gateway.mjs';
import { toolText } from './lib/mcp.mjs';
import { startVaultFixture } from './lib/vault.mjs';

let v;
before(async () => { v = await startVaultFixture(); });
after(async () => { await v?.stop(); });

test('a 503 from the revocation endpoint is retried: pending with the error, then done', async () => {
  await v.connectAs('bob');
  const c = await v.client('bob');
  try {
    assert.equal(JSON.parse(toolText(await c.client.callTool({ name: 'crm__whoami', arguments: {} }))).sub, 'bob');
  } finally {
    await c.close();
  }
  const token = v.lastCallToken('bob');
  v.as.setRevocationStatus(503);
  const attempts0 = v.as.stats().revocationAttempts;
  await v.deactivate('bob');
  const bob = v.user('bob').id;
  const pending = await v.waitRevocation((x) => x.user === bob && x.reason === 'deactivated' && x.attempts >= 1,
    'the first attempt is reported');
  assert.equal(pending.state, 'pending', JSON.stringify(pending));
  assert.match(pending.last_error ?? '', /503/, JSON.stringify(pending));
  assert.ok(v.as.stats().revocationAttempts > attempts0, 'the AS was asked');
  assert.equal(await v.as.introspect(token), true, 'nothing revoked while the AS fails');

  v.as.setRevocationStatus(null);
  const done = await v.waitRevocation((x) => x.id === pending.id && x.state === 'done', 'the revocation is done', 9000);
  assert.ok(done.attempts >= 2, JSON.stringify(done));
  assert.equal(done.last_error, undefined, `no error left once done: ${JSON.stringify(done)}`);
  assert.equal(await v.as.introspect(token), false, 'revoked at the AS');
});
