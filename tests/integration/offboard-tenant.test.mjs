// Instant offboarding (issue 18): deleting a tenant cuts everyone in it.
// Alice (tenant acme) holds one of everything on both loops
// (lib/offboard.mjs); DELETE /admin/v1/tenants/acme ends her streams and
// calls before the 202, and nothing of hers is accepted after — neither
// while the purge runs nor once a new tenant with the same id (and Alice
// provisioned again, same userName and externalId) exists, where only a
// fresh sign-in works. Bob, in tenant beta, keeps everything.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { recreateAfterPurge } from './lib/admin.mjs';
import { scimClient } from './lib/scim.mjs';
import {
  offboardFixture, setUpTenant, hold, endedBefore, refused, works, release, freshSignInWorks, mcpInit,
  refresh, exchange, again, initBody, ALICE, BOB,
} from './lib/offboard.mjs';
import { me } from './lib/login.mjs';

test('tenant deletion: her streams and calls end before the 202; nothing of hers works during the purge or in the tenant made again; beta\'s Bob untouched', async () => {
  const fx = await offboardFixture({ acme: [ALICE], beta: [BOB] });
  const alice = await hold(fx, 'acme', ALICE);
  const bob = await hold(fx, 'beta', BOB);
  const r = await fx.op.del('/admin/v1/tenants/acme');
  assert.equal(r.status, 202, r.body);
  await endedBefore(fx, alice, r.headers['x-request-id']);
  // the tenant is going: every credential of it is refused, whatever the status says
  const no = (x) => x !== null && x.status >= 400 && x.status < 500;
  for (const tok of [alice.oauth.access, alice.mgw]) {
    const x = await mcpInit(fx, 'acme', tok);
    assert.ok(no(x), `a token of the deleted tenant: ${x.status} ${x.body}`);
  }
  const body = JSON.stringify(initBody);
  for (const c of alice.idle) {
    const x = await again(c, `POST /t/acme/mcp HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${c.token}\r\n` +
      `Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
    assert.ok(x === null || no(x), `her idle connection on loop ${c.loop}: ${x?.status} ${x?.body}`);
  }
  const rt = await refresh(fx, 'acme', alice.oauth.refresh);
  assert.ok(no(rt), `her refresh token: ${rt.status} ${rt.text}`);
  const code = await exchange(fx, 'acme', alice.code.code, alice.code.verifier);
  assert.ok(no(code), `her code: ${code.status} ${code.text}`);
  const m = await me(alice.browser, fx, 'acme');
  assert.ok(no(m), `her browser session: ${m.status} ${m.text}`);
  await works(fx, bob);

  // acme again: the same id, Alice provisioned again with her Okta id
  const made = await recreateAfterPurge(fx.gw.port, fx.op.token, 'acme');
  const scim = scimClient(fx.gw.port, 'acme', made.scim.token);
  await scim.createUser(ALICE.userName, { externalId: ALICE.sub, emails: [{ value: ALICE.userName, primary: true }] });
  const oidc = await fx.t.acme.admin('PUT', '/oidc', { issuer: fx.okta.issuer, client_id: fx.okta.clientId, client_secret: fx.okta.clientSecret });
  assert.equal(oidc.status, 201, oidc.body);
  await setUpTenant(fx, 'acme');
  alice.idle = []; // their connections answered above
  await refused(fx, alice);
  const fresh = await freshSignInWorks(fx, 'acme', ALICE);
  const old = await mcpInit(fx, 'acme', fresh.access, alice.sid);
  assert.equal(old.status, 404, `her old MCP session with a fresh token: ${old.status} ${old.body}`);
  release(alice);
  await works(fx, bob);
  release(bob);
});
