// Vault 1/2 (issue 20): deleting an oauth connector revokes every user's
// grant of it at the upstream: Alice and Bob both connected, the admin
// deletes the connector → both grants revoked at the AS, two report entries
// (connector_deleted, done) — the worker needs nothing of the deleted
// connector but its queued job.
// ci-variants: build-w1 build-asan-w2 (two loops are the sanitizer run's; CI's 15 minutes)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { waitFor } from './lib/gateway.mjs';
import { toolText } from './lib/mcp.mjs';
import { startVaultFixture } from './lib/vault.mjs';

let v;
before(async () => { v = await startVaultFixture(); });
after(async () => { await v?.stop(); });

test('deleting the connector revokes Alice\'s and Bob\'s grants at the AS; two entries, connector_deleted, done', async () => {
  const tokens = {};
  for (const who of ['alice', 'bob']) {
    await v.connectAs(who);
    const c = await v.client(who);
    try {
      assert.equal(JSON.parse(toolText(await c.client.callTool({ name: 'crm__whoami', arguments: {} }))).sub, who);
    } finally {
      await c.close();
    }
    tokens[who] = v.lastCallToken(who);
    assert.equal(await v.as.introspect(tokens[who]), true);
  }
  const d = await v.admin('DELETE', '/connectors/crm');
  assert.ok(d.status === 200 || d.status === 204, `DELETE connector: ${d.status} ${d.body}`);
  for (const who of ['alice', 'bob']) assert.deepEqual(await v.connections(who), [], `${who}'s grant left the live tables`);

  await waitFor(async () => !(await v.as.introspect(tokens.alice)) && !(await v.as.introspect(tokens.bob)),
    { timeoutMs: 8000, intervalMs: 100, what: 'both tokens are inactive at the AS' });
  const ids = { alice: v.user('alice').id, bob: v.user('bob').id };
  await waitFor(async () => {
    const mine = (await v.revocations()).filter((x) => x.reason === 'connector_deleted');
    return mine.length === 2 && mine.every((x) => x.state === 'done');
  }, { timeoutMs: 8000, intervalMs: 100, what: 'two connector_deleted entries, done' });
  const mine = (await v.revocations()).filter((x) => x.reason === 'connector_deleted');
  assert.deepEqual(mine.map((x) => x.user).sort(), [ids.alice, ids.bob].sort());
  assert.ok(mine.every((x) => x.connector === 'crm'));
  assert.equal((await v.revocations()).length, 2, 'nothing else was revoked');
});
