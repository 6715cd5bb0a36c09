// A revocation's last_error (GET …/revocations, which a tenant admin reads)
// said "the request could not start: …" when the connector's ca_file was
// a file the gateway cannot use (missing, not a regular file) and only the
// TLS failure when the file was there but its CA did not verify: whether a
// file exists on the gateway's host showed through. Both now read as the
// TLS failure; the operator's log names the file.
// Real parts: the gateway, oidc-provider as the upstream's authorization
// server, the SDK MCP upstream, a real sign-in and connect; the revocation
// endpoint is an https server on loopback under a self-signed certificate.
// ci-variants: build-w1 build-asan-w2
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';

import { makeTempDir, makeSelfSignedCert } from './lib/gateway.mjs';
import { startVaultFixture, oauthConnector } from './lib/vault.mjs';

let v, rv, rvUrl, dir, other;

before(async () => {
  v = await startVaultFixture();
  dir = await makeTempDir();
  const certs = makeSelfSignedCert(dir, 'rv');
  other = makeSelfSignedCert(dir, 'other'); // a PEM CA that does not sign rv's certificate
  rv = https.createServer({ cert: certs.certPem, key: certs.keyPem }, (req, res) => { res.writeHead(200); res.end(); });
  await new Promise((r) => rv.listen(0, '127.0.0.1', r));
  rvUrl = `https://127.0.0.1:${rv.address().port}/revoke`;
});

after(async () => {
  rv?.closeAllConnections?.();
  await new Promise((r) => (rv ? rv.close(() => r()) : r()));
  await v?.stop();
});

/** The operator points crm's revocation at rv with this ca_file. The
 * first call names rv before anyone connects: a PUT that names another
 * revocation_url cuts the grants (it is where their tokens go); the later
 * ones change the ca_file only, and the grants stay. */
async function revokeWith(caFile) {
  const body = oauthConnector(v.as, v.up, { ca_file: caFile });
  body.auth.revocation_url = rvUrl;
  const r = await v.admin('PUT', '/connectors/crm', body);
  assert.equal(r.status, 200, r.body);
}

test('a revocation whose ca_file cannot be used reports the TLS failure, as one whose CA does not verify', async () => {
  await revokeWith(`${dir}/no-such-file.pem`);
  await v.connectAs('alice');
  await v.connectAs('bob');
  await v.deactivate('alice');
  const alice = v.user('alice').id;
  const a = await v.waitRevocation((x) => x.user === alice && x.attempts >= 1 && x.last_error, 'alice\'s first attempt');
  await revokeWith(other.cert);
  await v.deactivate('bob');
  const bob = v.user('bob').id;
  const b = await v.waitRevocation((x) => x.user === bob && x.attempts >= 1 && x.last_error, 'bob\'s first attempt');
  assert.equal(a.state, 'pending', JSON.stringify(a));
  assert.match(b.last_error, /TLS/, JSON.stringify(b));
  assert.equal(a.last_error, b.last_error, 'a missing file reads as a CA that does not verify');
});
