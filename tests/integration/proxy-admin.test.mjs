// Admin side of the MCP proxy: connectors (PUT/GET/DELETE, sealed
// credential, validation, live uses end on delete) and employee tokens
// (mint, list, revoke, tenant binding), and no secret in plaintext in the store.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { startGateway, sleep } from './lib/gateway.mjs';
import { api, assertJsonError, RFC3339_RE, findSecretsInFiles } from './lib/admin.mjs';
import {
  startEverything, startRecorder, setupTenant, connectClient, toolText, rawSession, openStream,
  mcpPost, initializeBody, show, UPSTREAM_SECRET, probesEnded,
} from './lib/mcp.mjs';

const MGW_RE = /^mgw_[A-Za-z0-9_-]{20,}$/;
let gw, up, rec, t;

before(async () => {
  [gw, up] = await Promise.all([startGateway(), startEverything()]);
  rec = await startRecorder(up.url);
  t = await setupTenant(gw, { users: ['alice@acme.com', 'bob@acme.com', 'carol@acme.com'] });
});

const headerAuth = (value = UPSTREAM_SECRET) => ({ type: 'header', name: 'Authorization', value });
const connectorList = (j) => (Array.isArray(j) ? j : j?.connectors);

test('connector PUT creates (201), replaces (200); the credential is sealed and never shown', async () => {
  const body = { url: rec.url, description: 'Everything', auth: headerAuth() };
  let r = await t.putConnector('everything', body);
  assert.equal(r.status, 201, `PUT new connector: ${show(r)}`);
  assert.equal(r.json.url, rec.url);
  assert.equal(r.json.description, 'Everything');
  assert.deepEqual(r.json.auth, { type: 'header', name: 'Authorization', sealed: true }, `auth view: ${r.body}`);
  assert.ok(!r.body.includes('upstream-secret'), `the credential is never shown: ${r.body}`);

  r = await t.putConnector('everything', { ...body, description: 'Everything v2' });
  assert.equal(r.status, 200, `PUT existing connector: ${show(r)}`);
  assert.equal(r.json.description, 'Everything v2');
  assert.ok(!r.body.includes('upstream-secret'), r.body);

  r = await t.admin('GET', '/connectors/everything');
  assert.equal(r.status, 200, show(r));
  assert.equal(r.json.url, rec.url);
  assert.equal(r.json.description, 'Everything v2');
  assert.deepEqual(r.json.auth, { type: 'header', name: 'Authorization', sealed: true }, r.body);
  assert.ok(!r.body.includes('upstream-secret'), r.body);

  r = await t.putConnector('open', { url: rec.url, description: 'no auth', auth: { type: 'none' } });
  assert.equal(r.status, 201, show(r));
  assert.equal(r.json.auth.type, 'none');

  r = await t.putConnector('timed', { url: rec.url, description: 't', auth: { type: 'none' }, timeouts: { connect_ms: 1500, first_byte_ms: 5000, idle_ms: 20000 } });
  assert.equal(r.status, 201, show(r));
  assert.equal(r.json.timeouts?.connect_ms, 1500, `timeouts echoed: ${r.body}`);
  assert.equal(r.json.timeouts?.first_byte_ms, 5000, r.body);
  assert.equal(r.json.timeouts?.idle_ms, 20000, r.body);

  r = await t.admin('GET', '/connectors');
  assert.equal(r.status, 200, show(r));
  const list = connectorList(r.json);
  assert.ok(Array.isArray(list), `GET connectors: an array (or {connectors: []}): ${r.body}`);
  const names = list.map((c) => c.name).sort();
  for (const n of ['everything', 'open', 'timed']) assert.ok(names.includes(n), `${n} listed: ${r.body}`);
  assert.ok(!r.body.includes('upstream-secret'), r.body);

  // the connector works through the gateway with the sealed credential
  const m = await t.mintToken('alice@acme.com');
  assert.equal(m.status, 201, m.body);
  await probesEnded(rec); // the PUTs' probes (those of 'open' and 'timed' carry no credential) are over
  rec.clear();
  const c = await connectClient(t.mcpUrl('everything'), m.token);
  assert.equal(toolText(await c.client.callTool({ name: 'echo', arguments: { message: 'sealed' } })), 'Echo: sealed');
  await c.close();
  assert.ok(rec.requests().length > 0, 'requests reached the upstream');
  for (const e of rec.requests()) assert.equal(e.headers.authorization, UPSTREAM_SECRET, `upstream saw the connector credential on ${e.method} ${e.body.slice(0, 80)}`);
});

test('connector names and bodies are validated (400), nothing is created', async () => {
  const ok = { url: rec.url, description: 'x', auth: { type: 'none' } };
  for (const name of ['Bad', 'has_underscore', 'a'.repeat(33), 'dot.name', 'sp%20ace']) {
    const r = await t.putConnector(name, ok);
    assert.equal(r.status, 400, `PUT connector name ${JSON.stringify(name)}: expected 400, got ${show(r)}`);
  }
  const r32 = await t.putConnector('a'.repeat(32), ok);
  assert.equal(r32.status, 201, `a 32-character name is valid: ${show(r32)}`);

  const bad = [
    ['bad JSON', { raw: '{"url":' }],
    // jansson's error text quotes the input near the error: here the secret
    ['bad JSON inside the secret', { raw: `{"url":"${rec.url}","auth":{"type":"header","name":"Authorization","value":"upstream-secret-\x01xyz"}}` }],
    ['JSON cut inside the secret', { raw: `{"url":"${rec.url}","auth":{"type":"header","name":"Authorization","value":"upstream-secret-xyz` }],
    ['not an object', { raw: '[1,2]' }],
    ['unknown field', { body: { ...ok, bogus: 1 } }],
    ['unknown auth field', { body: { ...ok, auth: { type: 'none', extra: true } } }],
    ['duplicate key', { raw: `{"url":"${rec.url}","url":"${rec.url}","auth":{"type":"none"}}` }],
    ['missing url', { body: { description: 'x', auth: { type: 'none' } } }],
    ['url not a URL', { body: { ...ok, url: 'not a url' } }],
    ['url ftp', { body: { ...ok, url: 'ftp://127.0.0.1/mcp' } }],
    ['url empty', { body: { ...ok, url: '' } }],
    ['url number', { body: { ...ok, url: 42 } }],
    ['auth type unknown', { body: { ...ok, auth: { type: 'magic' } } }],
    ['header auth without value', { body: { ...ok, auth: { type: 'header', name: 'Authorization' } } }],
  ];
  for (const [what, { raw, body }] of bad) {
    const r = await api(gw.port, t.opToken, 'PUT', `/admin/v1/tenants/${t.id}/connectors/badbody`, body, raw !== undefined ? { raw } : {});
    assertJsonError(r, 400);
    assert.ok(!r.body.includes('upstream-secret'), r.body);
    void what;
  }
  const g = await t.admin('GET', '/connectors/badbody');
  assert.equal(g.status, 404, `no connector was created by refused PUTs: ${show(g)}`);

  const noAuth = await api(gw.port, null, 'PUT', `/admin/v1/tenants/${t.id}/connectors/x`, ok);
  assert.equal(noAuth.status, 401, `PUT without operator token: ${show(noAuth)}`);
  const unknownTenant = await api(gw.port, t.opToken, 'PUT', '/admin/v1/tenants/nosuch/connectors/x', ok);
  assert.equal(unknownTenant.status, 404, `PUT connector of unknown tenant: ${show(unknownTenant)}`);
});

test('DELETE connector → 204; its live session and stream end at once; then 404', async () => {
  let r = await t.putConnector('doomed', { url: rec.url, description: 'd', auth: headerAuth() });
  assert.equal(r.status, 201, show(r));
  const m = await t.mintToken('bob@acme.com');
  assert.equal(m.status, 201, m.body);
  const url = t.mcpUrl('doomed');
  const s = await rawSession(url, m.token);
  const stream = await openStream(url, { headers: { accept: 'text/event-stream', authorization: `Bearer ${m.token}`, 'mcp-session-id': s.sessionId, 'mcp-protocol-version': s.protocolVersion } });
  assert.equal(stream.status, 200, `GET stream through the gateway: ${stream.status} ${stream.raw()}`);
  await sleep(100);
  assert.equal(stream.isEnded, false, 'stream open before the delete');

  r = await t.admin('DELETE', '/connectors/doomed');
  assert.equal(r.status, 204, `DELETE connector: ${show(r)}`);
  const t0 = Date.now();
  const ended = await Promise.race([stream.ended.then(() => true), sleep(1500).then(() => false)]);
  assert.ok(ended, 'the open GET stream of the deleted connector ended within 1.5 s of the 204');
  assert.ok(Date.now() - t0 < 1500);

  r = await s.request('tools/list');
  assert.equal(r.status, 404, `request on a session of a deleted connector: expected 404, got ${show(r)}`);
  r = await mcpPost(url, initializeBody(), { token: m.token });
  assert.equal(r.status, 404, `initialize on a deleted connector: expected 404, got ${show(r)}`);
  r = await t.admin('GET', '/connectors/doomed');
  assert.equal(r.status, 404, show(r));
  r = await t.admin('DELETE', '/connectors/doomed');
  assert.equal(r.status, 404, `second DELETE: ${show(r)}`);
});

test('tokens: mint by userName or id, list never shows them, revoke → 401', async () => {
  const alice = t.users['alice@acme.com'];
  const bob = t.users['bob@acme.com'];
  const before = Date.now();
  const a = await t.mintToken('alice@acme.com');
  assert.equal(a.status, 201, `mint by userName: ${a.body}`);
  assert.match(a.token, MGW_RE, `token format: ${a.body}`);
  assert.equal(typeof a.id, 'string');
  assert.ok(a.id.length > 0);
  assert.equal(a.json.user?.id, alice.id, a.body);
  assert.equal(a.json.user?.userName, 'alice@acme.com', a.body);
  assert.match(a.json.expires, RFC3339_RE, a.body);
  const days = (Date.parse(a.json.expires) - before) / 86400000;
  assert.ok(days > 29.9 && days < 30.1, `expires ~30 days ahead (got ${days.toFixed(3)} days)`);

  const b = await t.mintToken(bob.id);
  assert.equal(b.status, 201, `mint by user id: ${b.body}`);
  assert.equal(b.json.user?.userName, 'bob@acme.com', b.body);
  assert.notEqual(a.token, b.token);

  const unknown = await t.mintToken('nobody@acme.com');
  assert.equal(unknown.status, 404, `unknown user: ${unknown.body}`);
  const carol = t.users['carol@acme.com'];
  await t.deactivate(carol.id);
  const inactive = await t.mintToken('carol@acme.com');
  assert.equal(inactive.status, 409, `inactive user: ${inactive.body}`);
  const badBody = await t.admin('POST', '/tokens', { user: 'alice@acme.com', name: 'x', expires_in_days: 30, bogus: true });
  assertJsonError(badBody, 400);

  const l = await t.admin('GET', '/tokens');
  assert.equal(l.status, 200, show(l));
  const list = Array.isArray(l.json) ? l.json : l.json?.tokens;
  assert.ok(Array.isArray(list), `GET tokens: an array or {tokens: []}: ${l.body}`);
  assert.ok(list.some((x) => x.id === a.id) && list.some((x) => x.id === b.id), `both tokens listed: ${l.body}`);
  for (const tok of [a.token, b.token]) {
    assert.ok(!l.body.includes(tok) && !l.body.includes(tok.slice(4)), 'the list never contains a token');
  }

  // the token works, then revoking it cuts it off
  let r = await mcpPost(t.mcpUrl('everything'), initializeBody(), { token: a.token });
  assert.equal(r.status, 200, `initialize with a fresh token: ${show(r)}`);
  const del = await t.admin('DELETE', `/tokens/${a.id}`);
  assert.equal(del.status, 204, show(del));
  r = await mcpPost(t.mcpUrl('everything'), initializeBody(), { token: a.token });
  assert.equal(r.status, 401, `initialize with a revoked token: ${show(r)}`);
  const del2 = await t.admin('DELETE', `/tokens/${a.id}`);
  assert.equal(del2.status, 404, `second revoke: ${show(del2)}`);
});

test('an employee token works only on its own tenant; admin and SCIM tokens are not employee tokens', async () => {
  const g = await setupTenant(gw, { id: 'globex', users: ['alice@globex.com'] });
  let r = await g.putConnector('everything', { url: rec.url, description: 'g', auth: { type: 'none' } });
  assert.equal(r.status, 201, show(r));
  const acme = await t.mintToken('bob@acme.com');
  const glob = await g.mintToken('alice@globex.com');
  assert.equal(glob.status, 201, glob.body);

  r = await mcpPost(g.mcpUrl('everything'), initializeBody(), { token: glob.token });
  assert.equal(r.status, 200, `globex token on globex: ${show(r)}`);
  r = await mcpPost(g.mcpUrl('everything'), initializeBody(), { token: acme.token });
  assert.equal(r.status, 401, `acme token on globex: expected 401, got ${show(r)}`);
  r = await mcpPost(t.mcpUrl('everything'), initializeBody(), { token: glob.token });
  assert.equal(r.status, 401, `globex token on acme: expected 401, got ${show(r)}`);
  r = await mcpPost(t.mcpUrl('everything'), initializeBody(), { token: t.opToken });
  assert.equal(r.status, 401, `operator token on the MCP endpoint: expected 401, got ${show(r)}`);
  r = await mcpPost(t.mcpUrl('everything'), initializeBody(), { token: t.tenant.scim.token });
  assert.equal(r.status, 401, `SCIM token on the MCP endpoint: expected 401, got ${show(r)}`);
});

test('no connector secret and no employee token in plaintext in the store', async () => {
  const secret = 'Bearer upstream-secret-scan-7f3a9c';
  const r = await t.putConnector('scan', { url: rec.url, description: 's', auth: headerAuth(secret) });
  assert.equal(r.status, 201, show(r));
  const m = await t.mintToken('bob@acme.com');
  assert.equal(m.status, 201, m.body);
  const dataMdb = path.join(gw.dataDir, 'store', 'data.mdb');
  const bytes = await fsp.readFile(dataMdb);
  assert.ok(bytes.length > 0, 'data.mdb is not empty');
  assert.equal(bytes.indexOf('upstream-secret'), -1, `"upstream-secret" found in plaintext in ${dataMdb} at offset ${bytes.indexOf('upstream-secret')}`);
  const { hits, scanned } = await findSecretsInFiles([path.join(gw.dataDir, 'store')], [m.token, secret]);
  assert.ok(scanned > 0);
  assert.deepEqual(hits, [], `plaintext secrets in the store: ${JSON.stringify(hits)}`);
});
