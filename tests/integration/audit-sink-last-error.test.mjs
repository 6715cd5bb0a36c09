// A tenant admin reads their sink's delivery state (GET …/audit/sink,
// "last_error"). Before this test's fix a failed transfer's last_error
// carried libcurl's own words — "Failed to connect to <host> port <port>
// after 0 ms: Couldn't connect to server", "Could not resolve host: …" —
// which tell a tenant admin which internal names resolve and which
// addresses and ports answer, through a sink URL they choose. Only the
// egress refusal kept its address out (found by an earlier review). A
// tenant sink's last_error is now the failure's category and a fixed
// sentence; the operator's log keeps the detail.
// Real parts: the gateway binary (loopback allowed by its egress policy,
// as every test gateway's), a port nothing listens on.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { startGateway, waitFor, refusedPort } from './lib/gateway.mjs';
import { api, createTenant, operatorToken } from './lib/admin.mjs';

test('a tenant sink\'s last_error keeps the category and a fixed sentence; the transfer\'s detail is in the operator\'s log only', async () => {
  const port = await refusedPort();
  const gw = await startGateway({});
  try {
    const op = operatorToken(gw.dataDir);
    await createTenant(gw.port, op, 'acme');
    const a = await api(gw.port, op, 'POST', '/admin/v1/tenants/acme/admin-tokens', { name: 'tenant admin' });
    assert.equal(a.status, 201, a.body);
    const base = '/admin/v1/tenants/acme/audit/sink';
    let r = await api(gw.port, a.json.token, 'PUT', base, { url: `http://localhost:${port}/in` });
    assert.equal(r.status, 201, r.body);
    await waitFor(async () => {
      r = await api(gw.port, a.json.token, 'GET', base);
      return r.json?.delivery?.last_error;
    }, { timeoutMs: 10000, what: 'the failed delivery in the tenant admin\'s GET' });
    const shown = r.json.delivery.last_error;
    assert.equal(r.json.delivery.state, 'failing', r.body);
    assert.equal(shown, 'could not connect to upstream: the gateway\'s operator has the details in its log', r.body);
    // the operator's log has what curl said: the host and the port it tried
    const line = await gw.waitForLog((e) => /audit sink tenant:acme: delivering .* failed/.test(e.msg ?? ''));
    assert.ok(line.msg.includes(String(port)) && /connect/i.test(line.msg), line.msg);
    assert.ok(!shown.includes(String(port)), shown);
  } finally {
    await gw.stop();
  }
});
