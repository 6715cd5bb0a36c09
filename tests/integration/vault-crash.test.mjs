// Vault 1/2 (issue 20): the revocation queue survives a crash. The upstream's
// AS holds revocations (holdRevocations); IT deactivates Alice; the gateway is
// SIGKILLed while its revocation request is held (the fixture drops a
// request whose caller hung up, so her tokens stay live); restarted on the
// same data directory, the gateway sends the revocation again and it
// completes: her token is inactive at the AS and the report says done.
// ci-variants: build-w1 (SIGKILL and restart; the queue code runs under ASan in vault-connect and vault-retry)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { startGateway, waitFor } from './lib/gateway.mjs';
import { adminClient, operatorToken } from './lib/admin.mjs';
import { toolText } from './lib/mcp.mjs';
import { startVaultFixture } from './lib/vault.mjs';

let v, gw2;
before(async () => { v = await startVaultFixture({ users: ['alice'] }); });
after(async () => {
  await gw2?.stop().catch(() => {});
  await v?.stop();
});

test('SIGKILL after the commit, before the upstream revocation: after a restart the revocation completes', async () => {
  await v.connectAs('alice');
  const c = await v.client('alice');
  try {
    assert.equal(JSON.parse(toolText(await c.client.callTool({ name: 'crm__whoami', arguments: {} }))).sub, 'alice');
  } finally {
    await c.close();
  }
  const token = v.lastCallToken('alice');
  assert.equal(await v.as.introspect(token), true);

  const revHold = v.as.holdRevocations(); // until the gateway is gone: its hang-up drops the request
  const attempts = v.as.stats().revocationAttempts;
  await v.deactivate('alice');
  const rep = await v.waitRevocation((x) => x.user === v.user('alice').id && x.reason === 'deactivated', 'the revocation is queued');
  // the worker's request is at the AS, held
  await waitFor(() => v.as.stats().revocationAttempts > attempts, { timeoutMs: 5000, intervalMs: 20, what: 'the revocation request reached the AS' });
  const { fx } = v;
  const ex = await fx.gw.kill();
  assert.equal(ex.signal, 'SIGKILL');
  // the held request is dropped unprocessed: the token is still live
  await waitFor(() => v.as.stats().revocationAborted >= 1, { timeoutMs: 8000, intervalMs: 50, what: 'the held request was dropped' });
  revHold.release(); // the restarted gateway's requests are answered
  assert.equal(await v.as.introspect(token), true, 'nothing was revoked before the crash');

  gw2 = await startGateway({ dataDir: fx.gw.dataDir });
  const op = adminClient(gw2.port, operatorToken(fx.gw.dataDir));
  v.admin = (method, p, body) => op.call(method, `/admin/v1/tenants/acme${p}`, body);
  await waitFor(async () => !(await v.as.introspect(token)), { timeoutMs: 8000, intervalMs: 100, what: 'her token is inactive after the restart' });
  const done = await v.waitRevocation((x) => x.id === rep.id && x.state === 'done', 'the revocation is reported done');
  assert.equal(done.reason, 'deactivated');
  assert.ok(done.attempts >= 1, JSON.stringify(done));
  assert.deepEqual(await v.connections('alice'), []);
});
