// Vault 1/2 (issue 20): `mcpgate backup` and `mcpgate key rotate` cover the
// per-user upstream grants and the revocation queue: after a rotation the
// gateway still presents Alice's own token upstream, a queued revocation
// made before the rotation still completes after it, and neither the store
// nor its backup holds a token in clear. Real parts: the gateway binary on a
// real LMDB (stopped and restarted on the same data directory), the CLI,
// oidc-provider as Okta and as the upstream's AS, the SDK.
// ci-variants: build-w1 (CLI backup and key rotation; the sealing code runs under ASan elsewhere)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';

import { startGateway, waitFor, makeTempDir } from './lib/gateway.mjs';
import { startLoginFixture, signIn } from './lib/login.mjs';
import { connectClient, toolText, ALLOW_ALL_POLICY } from './lib/mcp.mjs';
import { cli, assertExit, findSecretsInFiles } from './lib/admin.mjs';
import { startUpstreamAS, startOAuthMcpUpstream } from './lib/upstream-oauth.mjs';

let fx, as, up, gw2;
const tokens = {};

before(async () => {
  fx = await startLoginFixture({
    tenants: { acme: { users: [{ userName: 'alice@acme.com', externalId: '00u-alice' }, { userName: 'bob@acme.com', externalId: '00u-bob' }] } },
    accounts: { '00u-alice': { email: 'alice@acme.com', email_verified: true }, '00u-bob': { email: 'bob@acme.com', email_verified: true } },
  });
  as = await startUpstreamAS({ redirectUris: [`${fx.base('acme')}/connect/crm/callback`] });
  up = await startOAuthMcpUpstream({ as });
  const { admin } = fx.t.acme;
  assert.equal((await admin('PUT', '/policy', ALLOW_ALL_POLICY)).status, 200);
  const r = await admin('PUT', '/connectors/crm', {
    url: up.url,
    auth: { type: 'oauth', authorize_url: as.authorizeUrl, token_url: as.tokenUrl, revocation_url: as.revocationUrl, client_id: as.clientId, client_secret: as.clientSecret, scopes: ['openid', 'offline_access'] },
  });
  assert.equal(r.status, 201, r.body);
  for (const u of ['alice', 'bob']) {
    const m = await admin('POST', '/tokens', { user: `${u}@acme.com`, name: 'laptop', expires_in_days: 30 });
    assert.equal(m.status, 201, m.body);
    tokens[u] = m.json.token;
  }
});

after(async () => {
  await gw2?.stop().catch(() => {});
  await up?.close().catch(() => {});
  await as?.close().catch(() => {});
  await fx?.stop();
});

async function connect(account, login) {
  const b = fx.browser();
  assert.equal((await signIn(b, `${fx.base('acme')}/login`, { login: account })).status, 200);
  as.loginAs(login);
  const res = await b.get(`${fx.base('acme')}/connect/crm`);
  as.loginAs(null);
  assert.equal(res.status, 200, res.text.slice(0, 200));
}

async function callWhoami(url, token) {
  const c = await connectClient(url, token);
  try {
    const from = up.seen().length;
    const who = JSON.parse(toolText(await c.client.callTool({ name: 'crm__whoami', arguments: {} })));
    return { who, token: up.seen().slice(from).find((s) => s.method === 'tools/call').token };
  } finally {
    await c.close();
  }
}

test('backup, then key rotate with a grant and a queued revocation: both still work, nothing in clear', async () => {
  await connect('00u-alice', 'alice');
  await connect('00u-bob', 'bob');
  const alice = await callWhoami(`${fx.base('acme')}/mcp`, tokens.alice);
  const bob = await callWhoami(`${fx.base('acme')}/mcp`, tokens.bob);
  assert.equal(alice.who.sub, 'alice');
  assert.equal(bob.who.sub, 'bob');

  // a revocation queued but not sent yet: the AS refuses for now
  as.setRevocationStatus(503);
  const bobId = fx.t.acme.users['bob@acme.com'].id;
  const d = await fx.t.acme.admin('DELETE', `/users/${bobId}/connections/crm`);
  assert.equal(d.status, 204, d.body);
  await waitFor(async () => {
    const rv = await fx.t.acme.admin('GET', '/revocations');
    return rv.json.revocations.some((x) => x.user === bobId && x.attempts >= 1 && x.state === 'pending');
  }, { timeoutMs: 8000, what: 'the revocation was tried once' });

  // a hot backup holds the grant and the queue, sealed
  const dest = path.join(await makeTempDir('mcpgate-backup-'), 'b');
  const bk = await cli(['backup', dest, '--data', fx.gw.dataDir], { timeoutMs: 30000 });
  assertExit(bk, 0, 'backup');
  const inBackup = await findSecretsInFiles([dest], [alice.token, bob.token, as.clientSecret]);
  assert.ok(inBackup.scanned > 0);
  assert.deepEqual(inBackup.hits, [], 'no token or client secret in clear in the backup');

  // rotation needs the server stopped
  const dataDir = fx.gw.dataDir;
  assert.equal((await fx.gw.stop()).code, 0);
  const rot = await cli(['key', 'rotate', '--data', dataDir], { timeoutMs: 30000 });
  assertExit(rot, 0, 'key rotate');
  const chk = await cli(['store', 'check', '--data', dataDir], { timeoutMs: 30000 });
  assertExit(chk, 0, 'store check after rotation');
  const onDisk = await findSecretsInFiles([dataDir], [alice.token, bob.token, as.clientSecret]);
  assert.deepEqual(onDisk.hits, []);

  // the same data, a new process: Alice's grant unseals under the new key,
  // and Bob's queued revocation completes once the AS answers again
  as.setRevocationStatus(null);
  gw2 = await startGateway({ dataDir, args: ['--auth-rate-per-address', '100000'] });
  const again = await callWhoami(`${gw2.url}/t/acme/mcp`, tokens.alice);
  assert.equal(again.who.sub, 'alice');
  assert.equal(again.token, alice.token, 'the same grant, unsealed under the rotated key');
  await waitFor(async () => !(await as.introspect(bob.token)), { timeoutMs: 15000, what: "Bob's token revoked after the restart" });
});
