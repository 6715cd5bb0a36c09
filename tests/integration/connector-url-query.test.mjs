// Hosted MCP servers that take their API key in the URL's query
// (https://mcp.example.com/mcp?api_key=…): the gateway treats a connector
// URL's query as secret material. The URL is sealed at rest like the
// connector's other secrets (AES-256-GCM) and shown with every query value
// replaced by "…" (names kept: ?api_key=…) — by GET, the connector list,
// the PUT's answer, the audit log's before → after (and its export), log
// lines — while the upstream receives the exact URL. An admin PUT that
// sends the shown URL back keeps the stored values (only at the same
// scheme, host and path: a kept key never goes to another server), and a
// changed value is a move (the upstream sessions end). A discovering PUT
// (auth.discover) refuses such a URL: the discovered resource indicator
// would copy it into the authorize URL an employee's browser opens.
// Real parts: the gateway binary (debug log level) with its two LMDB
// environments on disk, `mcpgate audit export`, a plain upstream that
// records every request target (lib/ctl-upstream.mjs).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';

import { startGateway, waitFor } from './lib/gateway.mjs';
import { api, cli, assertExit, findSecretsInFiles } from './lib/admin.mjs';
import { setupTenant, rawSession } from './lib/mcp.mjs';
import { startCtlUpstream } from './lib/ctl-upstream.mjs';

const key = (what) => `${what}-${crypto.randomBytes(18).toString('base64url')}`;
const KEY = key('qk1');
const KEY2 = key('qk2');
const KEY3 = key('qk3');
const ALL = [KEY, KEY2, KEY3];

let gw, up, t, admin, token;

before(async () => {
  gw = await startGateway({ args: ['--log-level', 'debug'] });
  up = await startCtlUpstream({ name: 'q' });
  t = await setupTenant(gw, { users: ['alice@acme.com'] });
  const a = await t.admin('POST', '/admin-tokens', { name: 'tenant admin' });
  assert.equal(a.status, 201, a.body);
  admin = (method, p, body) => api(gw.port, a.json.token, method, `/admin/v1/tenants/acme${p}`, body);
  const m = await t.mintToken('alice@acme.com');
  assert.equal(m.status, 201, m.body);
  token = m.token;
});

after(async () => {
  await gw?.stop().catch(() => {});
});

const noKey = (text, what) => {
  for (const k of ALL) assert.ok(!text.includes(k), `${what} shows a key of the URL's query: ${text.slice(0, 2000)}`);
};
const upstreamTargets = (from) => up.requests().slice(from).map((e) => e.url);
const echo = async (s, message) => {
  const r = await s.request('tools/call', { name: 'echo', arguments: { message } });
  return r;
};

test('a discovering PUT refuses a URL with a query, naming no value of it and fetching nothing', async () => {
  const seen = up.requests().length;
  const r = await admin('PUT', '/connectors/disc', { url: `${up.url}?api_key=${KEY}`, auth: { type: 'oauth', discover: true } });
  assert.equal(r.status, 400, r.body);
  assert.equal(r.json.error, 'invalid_request', r.body);
  assert.match(r.json.message, /query/);
  noKey(r.body, 'the refusal');
  assert.equal(up.requests().length, seen, 'nothing was sent to the upstream');
  assert.equal((await admin('GET', '/connectors/disc')).status, 404);
  // a value sent back masked (encoded) too: it would keep a sealed key in a discovered connector
  const m = await admin('PUT', '/connectors/disc', { url: `${up.url}?api_key=%E2%80%A6`, auth: { type: 'oauth', discover: true } });
  assert.equal(m.status, 400, m.body);
  assert.match(m.json.message, /query/);
  assert.equal(up.requests().length, seen, 'nothing was sent to the upstream');
});

test('a masked value ("…") with no stored value to keep is refused', async () => {
  const r = await admin('PUT', '/connectors/fresh', { url: `${up.url}?api_key=…` });
  assert.equal(r.status, 400, r.body);
  assert.match(r.json.message, /…/);
  assert.equal((await admin('GET', '/connectors/fresh')).status, 404);
});

test('a key in the URL query is sealed and shown as "…"; the upstream gets the exact URL; a PUT of the shown URL keeps it', async () => {
  const real = `${up.url}?api_key=${KEY}&region=eu`;
  const shown = `${up.url}?api_key=…&region=…`;
  const target = `/mcp?api_key=${KEY}&region=eu`;
  let r = await admin('PUT', '/connectors/crm', { url: real, description: 'query key' });
  assert.equal(r.status, 201, r.body);
  noKey(r.body, 'the PUT answer');
  assert.equal(r.json.url, shown, r.body);
  assert.equal(r.json.url_sealed, true, r.body);
  r = await admin('GET', '/connectors/crm');
  assert.equal(r.status, 200, r.body);
  noKey(r.body, 'GET connector');
  assert.equal(r.json.url, shown, r.body);
  r = await admin('GET', '/connectors');
  assert.equal(r.status, 200, r.body);
  noKey(r.body, 'the connector list');
  assert.equal(r.json.connectors.find((c) => c.name === 'crm')?.url, shown, r.body);

  // the upstream receives the exact URL, the key included
  let from = up.requests().length;
  const s = await rawSession(t.mcpUrl('crm'), token);
  r = await echo(s, 'one');
  assert.match(r.body, /q:echo one/, r.body);
  assert.ok(upstreamTargets(from).length >= 2, 'initialize and the call reached the upstream');
  assert.deepEqual([...new Set(upstreamTargets(from))], [target]);

  // the admin sends back what GET showed (another description): the key is
  // kept, and it is no move — the session goes on
  const mark = gw.mark();
  r = await admin('PUT', '/connectors/crm', { url: shown, description: 'edited' });
  assert.equal(r.status, 200, r.body);
  assert.equal(r.json.url, shown, r.body);
  assert.equal(r.json.description, 'edited', r.body);
  from = up.requests().length;
  r = await echo(s, 'two');
  assert.match(r.body, /q:echo two/, r.body);
  assert.deepEqual([...new Set(upstreamTargets(from))], [target]);
  // one value changed, the other kept
  r = await admin('PUT', '/connectors/crm', { url: `${up.url}?api_key=…&region=us` });
  assert.equal(r.status, 200, r.body);
  assert.equal(r.json.url, shown, r.body);
  // a move within the origin ends the old upstream session there, at the
  // old URL (usess_end.c rule 2), after the commit: waited for, so that it
  // is not taken for a call that went to the old URL
  await waitFor(() => up.requests().some((e) => e.method === 'DELETE' && e.url === target),
    { what: 'the old upstream session ended at the old URL' });
  from = up.requests().length;
  const s2 = await rawSession(t.mcpUrl('crm'), token);
  r = await echo(s2, 'three');
  assert.match(r.body, /q:echo three/, r.body);
  // (with several loops another loop may end the old upstream session too:
  // a DELETE at the old URL is that; anything else there would be a call)
  const after = up.requests().slice(from);
  assert.deepEqual([...new Set(after.filter((e) => e.method !== 'DELETE' || e.url !== target).map((e) => e.url))],
    [`/mcp?api_key=${KEY}&region=us`], after.map((e) => `${e.method} ${e.url}`).join(', '));
  assert.ok(gw.logs().slice(mark).some((l) => /connector crm has a new URL/.test(l.msg ?? '')), 'a changed value is a move');

  // a kept value goes nowhere else: another path, host or scheme is refused, the stored URL unchanged
  const u = new URL(up.url);
  for (const other of [`${u.origin}/other?api_key=…&region=us`, `http://localhost:${u.port}/mcp?api_key=…&region=us`]) {
    r = await admin('PUT', '/connectors/crm', { url: other });
    assert.equal(r.status, 400, `${other}: ${r.body}`);
    assert.match(r.json.message, /…/, r.body);
  }
  from = up.requests().length;
  r = await echo(s2, 'four');
  assert.match(r.body, /q:echo four/, r.body);
  assert.deepEqual([...new Set(upstreamTargets(from))], [`/mcp?api_key=${KEY}&region=us`]);

  // a new key: a move; the open session ends (its upstream id belongs to the old URL)
  r = await admin('PUT', '/connectors/crm', { url: `${up.url}?api_key=${KEY2}&region=us` });
  assert.equal(r.status, 200, r.body);
  noKey(r.body, 'the PUT answer');
  r = await echo(s2, 'five');
  assert.equal(r.status, 404, `the session moved with its connector: ${r.status} ${r.body}`);
  from = up.requests().length;
  const s3 = await rawSession(t.mcpUrl('crm'), token);
  r = await echo(s3, 'six');
  assert.match(r.body, /q:echo six/, r.body);
  assert.deepEqual([...new Set(upstreamTargets(from))], [`/mcp?api_key=${KEY2}&region=us`]);

  // an upstream that cannot be reached: its errors are logged (debug level), the key not
  r = await admin('PUT', '/connectors/down', { url: `http://127.0.0.1:1/mcp?token=${KEY3}` });
  assert.equal(r.status, 201, r.body);
  noKey(r.body, 'the PUT answer');
  const init = await fetch(t.mcpUrl('down'), {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } } }),
  });
  const ib = await init.text();
  noKey(ib, 'the MCP client\'s error');
  r = await admin('DELETE', '/connectors/down');
  assert.equal(r.status, 204, r.body);

  // the audit log: every before → after masked
  let au;
  await waitFor(async () => {
    au = await admin('GET', '/audit?kind=admin&limit=200');
    return au.status === 200 && au.json.records.filter((x) => /\/connectors\/(crm|down)$/.test(x.path)).length >= 7;
  }, { what: 'the connector writes in the audit log' });
  noKey(au.body, 'the audit log');
  assert.ok(au.body.includes('api_key=…'), `the audit log shows the masked URL: ${au.body.slice(0, 1500)}`);
  const exp = await admin('GET', '/audit/export');
  noKey(exp.body, 'the audit export');
  const mx = await fetch(`${gw.url}/metrics`, { headers: { authorization: `Bearer ${t.opToken}` } }).then((x) => x.text());
  noKey(mx, '/metrics');

  // logs, the store files and the CLI's export, once stopped
  await gw.settle();
  await gw.stop();
  noKey(gw.stderrText() + gw.stdoutText(), 'the log');
  const found = await findSecretsInFiles([gw.dataDir], ALL, { exclude: ['admin.token', 'master.key'] });
  assert.ok(found.scanned > 0);
  assert.deepEqual(found.hits, [], 'no key of a URL query in clear in the data directory');
  const ex = await cli(['audit', 'export', 'acme', '--data', gw.dataDir], { timeoutMs: 30000 });
  assertExit(ex, 0, 'mcpgate audit export');
  assert.ok(ex.stdout.includes('/connectors/crm'), ex.stdout.slice(0, 500));
  noKey(ex.stdout + ex.stderr, 'mcpgate audit export');
});
