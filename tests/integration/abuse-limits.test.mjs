// Abuse limits (issue 25 item 3): failed authentications per client address
// (SCIM, admin API, MCP endpoints, reviewers' decisions) are answered 429 with
// an integer Retry-After past auth_failures_per_address — while valid
// credentials from the same address keep being served (Okta behind a proxy
// is never locked out by someone else's failures); MCP requests per user and
// per tenant past mcp_rate_per_user / mcp_rate_per_tenant get 429 and a
// Retry-After, other users unaffected; the metrics count them.
// ci-variants: build-w1 build-asan-w2 (the limits are process-wide; two loops under ASan)
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { startGateway, request, scrapeMetrics, metricValue, waitFor } from './lib/gateway.mjs';
import { setupTenant, mcpPost, initializeBody, rawSession, openStream, mcpHeaders } from './lib/mcp.mjs';
import { api } from './lib/admin.mjs';

const scimGet = (gw, tenant, token) => request(gw.port, { path: `/t/${tenant}/scim/v2/Users`, headers: { Authorization: `Bearer ${token}` } });

test('failed authentications past the per-address budget get 429 with Retry-After; valid credentials still pass', async () => {
  const gw = await startGateway({ args: ['--auth-failures-per-address', '5'] });
  try {
    const t = await setupTenant(gw, { users: ['alice@acme.com'], policy: null });
    const scimTok = t.tenant.scim.token;
    const statuses = [];
    for (let i = 0; i < 8; i++) statuses.push((await scimGet(gw, 'acme', `mgs_${'x'.repeat(43)}`)).status);
    assert.deepEqual(statuses.slice(0, 5), [401, 401, 401, 401, 401], statuses.join(','));
    assert.deepEqual(statuses.slice(5), [429, 429, 429], statuses.join(','));
    const r = await scimGet(gw, 'acme', `mgs_${'y'.repeat(43)}`);
    assert.equal(r.status, 429);
    assert.match(r.headers['retry-after'] ?? '', /^[1-9][0-9]*$/, 'an integer Retry-After');
    assert.match(r.body, /urn:ietf:params:scim:api:messages:2.0:Error/, 'SCIM error schema');
    // Okta's valid token from the same address is served
    const ok = await scimGet(gw, 'acme', scimTok);
    assert.equal(ok.status, 200, ok.body);
    // the admin API and the MCP endpoint share the budget
    const ad = await api(gw.port, 'mga_bogus_token_value_xxxxxxxxxxxxxxxxxxxxxxxx', 'GET', '/admin/v1/tenants/acme');
    assert.equal(ad.status, 429, ad.body);
    const op = await api(gw.port, t.opToken, 'GET', '/admin/v1/tenants/acme');
    assert.equal(op.status, 200, 'the operator token still works');
    const mcp = await mcpPost(`${gw.url}/t/acme/mcp`, initializeBody(1), { token: `mgw_${'z'.repeat(43)}` });
    assert.equal(mcp.status, 429, mcp.body);
    const m = await scrapeMetrics(gw);
    assert.ok(metricValue(m, 'mcpgate_auth_failures_limited_total') >= 6);
  } finally {
    await gw.stop();
  }
});

test('MCP requests past mcp_rate_per_user get 429 with Retry-After; another user is not affected; the tenant limit holds for all', async () => {
  const gw = await startGateway({ args: ['--mcp-rate-per-user', '4', '--mcp-rate-per-tenant', '7'] });
  try {
    const t = await setupTenant(gw, { users: ['alice@acme.com', 'bob@acme.com'] });
    const alice = (await t.mintToken('alice@acme.com')).token, bob = (await t.mintToken('bob@acme.com')).token;
    const url = `${gw.url}/t/acme/mcp`;
    const a = [];
    for (let i = 0; i < 5; i++) a.push(await mcpPost(url, initializeBody(1), { token: alice }));
    assert.deepEqual(a.map((x) => x.status), [200, 200, 200, 200, 429]);
    assert.match(a[4].headers['retry-after'] ?? '', /^[1-9][0-9]*$/);
    assert.match(a[4].body, /rate_limited/);
    const b = [];
    for (let i = 0; i < 4; i++) b.push((await mcpPost(url, initializeBody(1), { token: bob })).status);
    // bob has his own budget, but the tenant's (7) runs out on his fourth
    assert.deepEqual(b, [200, 200, 200, 429]);
    const m = await scrapeMetrics(gw);
    assert.equal(metricValue(m, 'mcpgate_mcp_rate_limited_total', { limit: 'user' }), 1);
    assert.equal(metricValue(m, 'mcpgate_mcp_rate_limited_total', { limit: 'tenant' }), 1);
  } finally {
    await gw.stop();
  }
});

// Found by review: a 2 MB body of small values ("[0,0,…]", a tree of ~50
// MiB) costs the loop ~200 ms to parse whatever it then says of it (a batch
// the protocol version refuses, a ping); an employee sending such bodies
// back to back kept a loop busy for every tenant. Each body's tree is now
// estimated before any parse and its whole MiBs charged to the user's and
// the tenant's buckets. (The buckets refill as the test runs, a MiB every
// 0.6 s at 100 a minute: every refusal below is tens of MiB short.)
test('MCP bodies whose JSON trees take MiBs are charged to mcp_json_mib_per_user and _per_tenant: 429 past them', async () => {
  const gw = await startGateway({ args: ['--mcp-json-mib-per-user', '100', '--mcp-json-mib-per-tenant', '150'] });
  try {
    const t = await setupTenant(gw, { users: ['alice@acme.com', 'bob@acme.com'] });
    const url = `${gw.url}/t/acme/mcp`;
    const heavy = `{"jsonrpc":"2.0","id":7,"method":"ping","params":{"_meta":{},"a":[${'0,'.repeat(1000000)}0]}}`; // ~47 MiB of tree
    const tooComplex = `{"jsonrpc":"2.0","id":8,"method":"ping","params":{"a":[${'{},'.repeat(300000)}{}]}}`; // past 64 MiB: never parsed; under a MiB of bytes
    const session = async (user) => rawSession(url, (await t.mintToken(user)).token);
    const alice = await session('alice@acme.com');
    for (let i = 0; i < 3; i++) {
      const r = await alice.post(tooComplex);
      assert.equal(r.status, 400, r.body);
      assert.match(r.body, /too complex/);
    }
    // two heavy bodies (47 each) leave 6 of 100: the third is refused
    const a = [];
    for (let i = 0; i < 3; i++) a.push(await alice.post(heavy));
    assert.deepEqual(a.map((x) => x.status), [200, 200, 429], a.map((x) => x.body.slice(0, 200)).join(' | '));
    assert.match(a[2].headers['retry-after'] ?? '', /^[1-9][0-9]*$/);
    assert.match(a[2].body, /mcp_json_mib_per_user/);
    assert.equal((await alice.request('ping')).status, 200, 'a small body costs nothing');
    // bob has his own budget; the tenant's (150) ran out with alice's two and his first
    const bob = await session('bob@acme.com');
    const b = [await bob.post(heavy), await bob.post(heavy)];
    assert.deepEqual(b.map((x) => x.status), [200, 429]);
    const m = await scrapeMetrics(gw);
    assert.equal(metricValue(m, 'mcpgate_mcp_rate_limited_total', { limit: 'json_user' }), 1);
    assert.equal(metricValue(m, 'mcpgate_mcp_rate_limited_total', { limit: 'json_tenant' }), 1);
  } finally {
    await gw.stop();
  }
});

// Found writing the session's note: a body past the 64 MiB estimate is
// refused by the estimate's scans alone, which were free — an employee could
// repeat 4 MiB of them for ever. Such a body now costs its bytes' MiBs.
test('MCP bodies refused unparsed (too complex) cost their bytes\' MiBs of mcp_json_mib_per_user', async () => {
  const gw = await startGateway({ args: ['--mcp-json-mib-per-user', '20', '--mcp-json-mib-per-tenant', '0'] });
  try {
    const t = await setupTenant(gw, { users: ['alice@acme.com'] });
    const alice = await rawSession(`${gw.url}/t/acme/mcp`, (await t.mintToken('alice@acme.com')).token);
    const tooComplex = `{"jsonrpc":"2.0","id":8,"method":"ping","params":{"a":[${'{},'.repeat(1300000)}{}]}}`; // 3.9 MB: 3 MiB
    const statuses = [];
    for (let i = 0; i < 14 && !statuses.includes(429); i++) statuses.push((await alice.post(tooComplex)).status);
    // 20 a minute, 3 a body: the seventh or so (the bucket refills a MiB every 3 s) is refused
    assert.ok(statuses.includes(429), `a too-complex body past the budget is 429: ${statuses.join(',')}`);
    assert.ok(statuses.slice(0, 6).every((s) => s === 400), `the first ones are refused as too complex: ${statuses.join(',')}`);
  } finally {
    await gw.stop();
  }
});

test('one user\'s open MCP requests past mcp_concurrent_per_user get 429; a slot comes back when a stream ends; other users unaffected', async () => {
  const gw = await startGateway({ args: ['--mcp-concurrent-per-user', '2', '--workers', '2'] });
  try {
    const t = await setupTenant(gw, { users: ['alice@acme.com', 'bob@acme.com'] });
    const alice = (await t.mintToken('alice@acme.com')).token, bob = (await t.mintToken('bob@acme.com')).token;
    const url = `${gw.url}/t/acme/mcp`;
    const s = await rawSession(url, alice);
    const hdr = mcpHeaders({ token: alice, sessionId: s.sessionId, protocolVersion: s.protocolVersion, accept: 'text/event-stream' });
    const a = await openStream(url, { headers: hdr });
    const b = await openStream(url, { headers: hdr });
    assert.equal(a.status, 200);
    assert.equal(b.status, 200);
    const third = await s.request('tools/list', {});
    assert.equal(third.status, 429, third.body);
    assert.match(third.headers['retry-after'] ?? '', /^[1-9][0-9]*$/);
    // bob has his own slots
    const sb = await rawSession(url, bob);
    assert.equal((await sb.request('tools/list', {})).status, 200);
    a.close();
    await waitFor(async () => (await s.request('tools/list', {})).status === 200, { timeoutMs: 5000, what: 'a slot back after a stream closed' });
    b.close();
    const m = await scrapeMetrics(gw);
    assert.ok(metricValue(m, 'mcpgate_mcp_rate_limited_total', { limit: 'concurrent' }) >= 1);
  } finally {
    await gw.stop();
  }
});
