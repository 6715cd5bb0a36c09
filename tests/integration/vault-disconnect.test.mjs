// Vault 1/2 (issue 20): an admin disconnects Alice's grant
// (DELETE /admin/v1/tenants/{t}/users/{user}/connections/crm). The grant
// leaves the live tables, the revocation worker revokes it at the upstream's
// AS (RFC 7009), the revocations report says done (admin_disconnect), and
// Alice's open MCP stream hears tools/list_changed: the connect tool is back.
// ci-variants: build-w1 build-asan-w2 (two loops are the sanitizer run's; CI's 15 minutes)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { waitFor } from './lib/gateway.mjs';
import { rawSession, openStream, mcpHeaders, toolText } from './lib/mcp.mjs';
import { startVaultFixture } from './lib/vault.mjs';

let v;
before(async () => { v = await startVaultFixture(); });
after(async () => { await v?.stop(); });

test('an admin disconnects Alice: revoked at the AS, reported done, her stream hears list_changed, the connect tool is back', async () => {
  await v.connectAs('alice');
  const s = await rawSession(v.mcpUrl, v.tokens.alice);
  const call = await s.request('tools/call', { name: 'crm__whoami', arguments: {} });
  assert.equal(call.status, 200, call.body);
  assert.equal(JSON.parse(toolText(call.messages.find((m) => m.result).result)).sub, 'alice');
  const token = v.lastCallToken('alice');
  assert.ok(token, 'the upstream saw her token');
  assert.equal(await v.as.introspect(token), true);
  assert.deepEqual((await v.connections('alice')).map((c) => c.connector), ['crm']);

  const st = await openStream(v.mcpUrl, {
    headers: { ...mcpHeaders({ token: v.tokens.alice, sessionId: s.sessionId, protocolVersion: s.protocolVersion }), accept: 'text/event-stream' },
  });
  assert.equal(st.status, 200, 'her GET stream is open');
  try {
    const revokedBefore = v.as.stats().revoked.length;
    const d = await v.admin('DELETE', '/users/alice@acme.com/connections/crm');
    assert.ok(d.status === 200 || d.status === 204, `DELETE: ${d.status} ${d.body}`);
    // the grant is gone at once
    assert.deepEqual(await v.connections('alice'), []);
    // the stream hears it
    await st.waitFor((m) => m.method === 'notifications/tools/list_changed', 5000);
    // the revocation reaches the AS
    await waitFor(async () => !(await v.as.introspect(token)), { timeoutMs: 8000, intervalMs: 100, what: 'her access token is inactive at the AS' });
    const kinds = v.as.stats().revoked.slice(revokedBefore).map((r) => r.kind);
    assert.ok(kinds.includes('refresh_token'), `her refresh token was sent for revocation: ${JSON.stringify(kinds)}`);
    const rep = await v.waitRevocation((x) => x.user === v.user('alice').id && x.reason === 'admin_disconnect' && x.state === 'done',
      'the revocation is reported done');
    assert.equal(rep.connector, 'crm');
    assert.equal(/access_token|refresh_token/.test(JSON.stringify(await v.revocations())), false, 'no token in the report');
    // the same session's next tools/list shows the connect tool again
    const l = await s.request('tools/list', {});
    assert.equal(l.status, 200, l.body);
    const names = l.messages.find((m) => m.result).result.tools.map((t) => t.name).sort();
    assert.deepEqual(names, ['crm__connect']);
    // and a call answers with the link
    const again = await s.request('tools/call', { name: 'crm__whoami', arguments: {} });
    const err = again.messages.find((m) => m.error)?.error;
    assert.equal(err?.code, -32007, again.body);
    assert.match(err.message, /\/t\/acme\/connect\/crm/);
  } finally {
    st.close();
  }
});

// Found by review: a refusal of the refresh token's revocation (a 4xx: an
// authorization server that does not revoke refresh tokens answers 400
// unsupported_token_type, RFC 7009 §2.2.1) ended the job, and the access
// token was never sent: it stayed valid upstream until it expired.
test('an AS that does not revoke refresh tokens: the access token is revoked all the same, the report says failed', async () => {
  await v.connectAs('alice');
  const s = await rawSession(v.mcpUrl, v.tokens.alice);
  const call = await s.request('tools/call', { name: 'crm__whoami', arguments: {} });
  assert.equal(call.status, 200, call.body);
  const token = v.lastCallToken('alice');
  assert.equal(await v.as.introspect(token), true);
  v.as.setRefreshRevocationUnsupported(true);
  try {
    const before = (await v.revocations()).length;
    const d = await v.admin('DELETE', '/users/alice@acme.com/connections/crm');
    assert.ok(d.status === 200 || d.status === 204, `DELETE: ${d.status} ${d.body}`);
    const rep = await v.waitRevocation((x) => x.user === v.user('alice').id && x.reason === 'admin_disconnect' && x.state !== 'pending' &&
      x.state !== 'done', 'the revocation is reported finished, not done');
    assert.equal(rep.state, 'failed', JSON.stringify(rep));
    assert.match(rep.last_error, /400 unsupported_token_type for the refresh token/, JSON.stringify(rep));
    assert.ok((await v.revocations()).length > before);
    assert.equal(await v.as.introspect(token), false, 'her access token was revoked at the AS all the same');
  } finally {
    v.as.setRefreshRevocationUnsupported(false);
  }
});

test('disconnecting a connection that does not exist answers 404', async () => {
  const d = await v.admin('DELETE', '/users/bob@acme.com/connections/crm');
  assert.equal(d.status, 404, `${d.status} ${d.body}`);
});

test('Bob connects while his stream is open: it hears list_changed, and the connect tool gives way to the tools', async () => {
  const s = await rawSession(v.mcpUrl, v.tokens.bob);
  const l0 = await s.request('tools/list', {});
  assert.deepEqual(l0.messages.find((m) => m.result).result.tools.map((t) => t.name), ['crm__connect']);
  const st = await openStream(v.mcpUrl, {
    headers: { ...mcpHeaders({ token: v.tokens.bob, sessionId: s.sessionId, protocolVersion: s.protocolVersion }), accept: 'text/event-stream' },
  });
  assert.equal(st.status, 200);
  try {
    await v.connectAs('bob');
    await st.waitFor((m) => m.method === 'notifications/tools/list_changed', 5000);
    const l = await s.request('tools/list', {});
    const names = l.messages.find((m) => m.result).result.tools.map((t) => t.name).sort();
    assert.ok(names.includes('crm__whoami') && !names.includes('crm__connect'), names.join(','));
  } finally {
    st.close();
  }
});
