// Secrets at rest and in logs (issue 25, item 5).
// ci-variants: build-w1 (one long scenario: one run is enough)
// One scenario gives the gateway a recognisable value of every kind of
// secret it holds, uses each of them at least once, overwrites or deletes
// some (so an old value would sit in LMDB's freed pages if it had ever been
// written in clear), stops the gateway gracefully, and then searches as raw
// bytes:
//   - every file under the data directory except admin.token (the operator
//     token's own file) and master.key: store/data.mdb, store/lock.mdb,
//     audit/data.mdb, audit/lock.mdb, whatever else is there;
//   - the gateway's whole stderr (its JSON-lines log) and stdout;
//   - every audit record (GET …/audit, every page), the NDJSON export
//     (GET …/audit/export) and the bodies the tenant's SIEM sink received;
//   - the /metrics text.
// Freed pages: LMDB copies a page on write and soon reuses the freed one,
// so the overwrites whose old values should still sit in freed pages come
// last, after the SIEM sink (whose cursor writes would reuse them) is
// deleted: the connector's credential rotated while an MCP session is
// already open, the sink (and its token) deleted. Against a build whose
// sealing stores plaintext, the old credential was found in a freed page of
// store/data.mdb in most runs; which pages LMDB reuses is not deterministic,
// so this is a best effort, not an assertion.
// No marker may appear anywhere: tokens are stored only as hashes, secrets
// sealed with AES-256-GCM. Each needle is the whole secret and, for a
// prefixed token (mgs_…, mgw_…), also its random part alone.
// Secrets: the operator token; the tenant's first SCIM token and two more
// (one used, then deleted); a tenant admin token; two employee access tokens
// (mgw_); the gateway OAuth AS's access and refresh tokens of an MCP client,
// before and after one refresh (the first refresh token is then rotated
// out); a shared header credential `X-Api-Key` of a connector, rotated to a
// second value after use; a tenant SIEM sink token (used, then the sink
// deleted); the tenant's OIDC client secret (PUT …/oidc); the client secret
// of an oauth connector; an employee's upstream OAuth grant (the upstream
// AS's access and refresh tokens, captured from the AS as it saves them).
// Real parts: the gateway binary (graceful SIGTERM stop, exit 0) with its two
// LMDB environments on disk; the real oidc-provider as Okta (sign-in) and as
// the upstream's authorization server; the official MCP SDK as client and as
// the OAuth-protected upstream; a small controllable MCP upstream that
// records the header credential it receives; a node http server as the SIEM.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';

import { fetchMetrics, waitFor } from './lib/gateway.mjs';
import { listFiles } from './lib/admin.mjs';
import { scimClient } from './lib/scim.mjs';
import { connectClient, toolText } from './lib/mcp.mjs';
import { startVaultFixture } from './lib/vault.mjs';
import { startCtlUpstream } from './lib/ctl-upstream.mjs';
import { startSinkReceiver } from './lib/sink.mjs';
import { grant, tokenRequest } from './lib/oauth.mjs';

const T = '/admin/v1/tenants/acme';
const marker = (what) => `${what}-${crypto.randomBytes(24).toString('base64url')}`;

let v, ctl, sink;
after(async () => {
  await ctl?.stop().catch(() => {});
  await sink?.close().catch(() => {});
  await v?.stop().catch(() => {});
});

/** Needles for one secret: the whole value and, for a prefixed token, its random part. */
function needles(name, value) {
  assert.equal(typeof value, 'string', `${name} is a string`);
  assert.ok(value.length >= 20, `${name} is long enough to be recognisable: ${value}`);
  const out = [{ name, bytes: Buffer.from(value, 'utf8') }];
  const m = /^mg[a-z]_(.{20,})$/.exec(value);
  if (m) out.push({ name: `${name} (random part)`, bytes: Buffer.from(m[1], 'utf8') });
  return out;
}

test('no secret in clear in the store files (freed pages included), the logs, the audit records or /metrics', async () => {
  const secrets = {};
  // ------------------------------------------------------------ setup
  // gateway + Okta (oidc-provider; the tenant's OIDC client secret PUT
  // …/oidc) + the upstream AS and its SDK MCP server, connector crm (oauth,
  // the AS's client secret), alice and bob with an employee token each
  v = await startVaultFixture({ users: ['alice', 'bob'] });
  const { fx, as } = v;
  const gw = fx.gw;
  const op = fx.op;
  secrets.operator = op.token;
  secrets.scimFirst = fx.t.acme.scim.token;
  secrets.oidcClientSecret = fx.okta.clientSecret;
  secrets.crmClientSecret = as.clientSecret;
  secrets.employeeAlice = v.tokens.alice;
  secrets.employeeBob = v.tokens.bob;

  // the upstream AS's tokens, as oidc-provider saves them (opaque: the value is the jti)
  const upstreamTokens = [];
  const onSaved = (kind) => (tok) => upstreamTokens.push({ kind, value: tok.jti });
  as.provider.on('access_token.saved', onSaved('access'));
  as.provider.on('refresh_token.saved', onSaved('refresh'));

  // ------------------------------------------------------------ SCIM tokens
  const s2 = await op.post(`${T}/scim-tokens`, { name: 'rotation' });
  assert.equal(s2.status, 201, s2.body);
  const s3 = await op.post(`${T}/scim-tokens`, { name: 'deleted-later' });
  assert.equal(s3.status, 201, s3.body);
  secrets.scimSecond = s2.json.token;
  secrets.scimDeleted = s3.json.token;
  for (const tok of [secrets.scimFirst, secrets.scimSecond, secrets.scimDeleted]) {
    const r = await scimClient(gw.port, 'acme', tok).get('/Users?count=5');
    assert.equal(r.status, 200, `SCIM call: ${r.status} ${r.body}`);
  }
  const del = await op.del(`${T}/scim-tokens/${s3.json.id}`);
  assert.equal(del.status, 204, del.body);
  const gone = await scimClient(gw.port, 'acme', secrets.scimDeleted).get('/Users?count=1');
  assert.equal(gone.status, 401, 'the deleted SCIM token is refused');

  // ------------------------------------------------------------ tenant admin token
  const at = await op.post(`${T}/admin-tokens`, { name: 'tenant-admin' });
  assert.equal(at.status, 201, at.body);
  secrets.tenantAdmin = at.json.token;
  const ar = await fetch(`${gw.url}${T}/connectors`, { headers: { authorization: `Bearer ${secrets.tenantAdmin}` } });
  assert.equal(ar.status, 200, await ar.text());

  // ------------------------------------------------------------ shared header credential, rotated
  ctl = await startCtlUpstream({ name: 'kv' });
  secrets.apiKeyOld = marker('apikey-old');
  secrets.apiKeyNew = marker('apikey-new');
  const putKv = async (value, status) => {
    const body = { url: ctl.url, description: 'KV', auth: { type: 'header', name: 'X-Api-Key', value } };
    const r = await fetch(`${gw.url}${T}/connectors/kv`, {
      method: 'PUT', headers: { authorization: `Bearer ${secrets.tenantAdmin}`, 'content-type': 'application/json' }, body: JSON.stringify(body),
    });
    assert.equal(r.status, status, await r.text());
  };
  const echoKv = async (who, key, open) => {
    const c = open ?? await connectClient(v.mcpUrl, v.tokens[who]);
    try {
      const res = await c.client.callTool({ name: 'kv__echo', arguments: { message: `hi ${who}` } });
      assert.equal(toolText(res), `kv:echo hi ${who}`);
    } finally { await c.close(); }
    const calls = ctl.rpc('tools/call');
    assert.equal(calls.at(-1).headers['x-api-key'], key, 'the upstream got the header credential');
  };
  await putKv(secrets.apiKeyOld, 201);
  await echoKv('alice', secrets.apiKeyOld);

  // ------------------------------------------------------------ tenant SIEM sink
  sink = await startSinkReceiver();
  secrets.sinkToken = marker('siem');
  const sk = await op.call('PUT', `${T}/audit/sink`, { url: sink.url, token: secrets.sinkToken });
  assert.ok(sk.status === 201 || sk.status === 200, sk.body);
  assert.equal(sk.body.includes(secrets.sinkToken), false, 'the sink settings never show the token');

  // ------------------------------------------------------------ an employee's upstream OAuth grant
  await v.connectAs('alice');
  {
    const c = await v.client('alice');
    try {
      const who = JSON.parse(toolText(await c.client.callTool({ name: 'crm__whoami', arguments: {} })));
      assert.equal(who.sub, 'alice');
    } finally { await c.close(); }
  }
  const upAccess = upstreamTokens.filter((t) => t.kind === 'access');
  const upRefresh = upstreamTokens.filter((t) => t.kind === 'refresh');
  assert.ok(upAccess.length >= 1 && upRefresh.length >= 1, `the AS issued an access and a refresh token: ${JSON.stringify(upstreamTokens.map((t) => t.kind))}`);
  assert.ok(upAccess.some((t) => t.value === v.lastCallToken('alice')), 'the captured access token is the one the gateway sent upstream');
  assert.equal(await as.introspect(upRefresh.at(-1).value), true, 'the captured refresh token is live at the AS');
  upAccess.forEach((t, i) => { secrets[`upstreamAccess${i}`] = t.value; });
  upRefresh.forEach((t, i) => { secrets[`upstreamRefresh${i}`] = t.value; });

  // ------------------------------------------------------------ the gateway's own OAuth tokens (an MCP client's grant), refreshed once
  const g1 = await grant(fx, fx.browser(), { login: '00u-bob' });
  secrets.oauthAccess1 = g1.access_token;
  secrets.oauthRefresh1 = g1.refresh_token;
  const g2 = await tokenRequest(fx, 'acme', { grant_type: 'refresh_token', refresh_token: g1.refresh_token, client_id: g1.client_id });
  assert.equal(g2.status, 200, g2.text);
  secrets.oauthAccess2 = g2.json.access_token;
  secrets.oauthRefresh2 = g2.json.refresh_token;
  {
    const c = await connectClient(v.mcpUrl, secrets.oauthAccess2);
    try {
      const res = await c.client.callTool({ name: 'kv__echo', arguments: { message: 'via oauth' } });
      assert.equal(toolText(res), 'kv:echo via oauth');
    } finally { await c.close(); }
  }

  // ------------------------------------------------------------ late overwrites: the old values' pages are freed, not yet reused
  // (LMDB copies a page on write and reuses freed pages in later
  // transactions; rotated or deleted early, an old value's page is soon
  // overwritten, so these come last)
  // the sink has used its token; deleting it now also stops the sink's
  // cursor writes, which would reuse the freed pages below
  await waitFor(() => sink.accepted().length > 0, { timeoutMs: 8000, what: 'the SIEM sink got records' });
  const sd = await op.del(`${T}/audit/sink`);
  assert.equal(sd.status, 204, sd.body);
  const bobSession = await connectClient(v.mcpUrl, v.tokens.bob);
  await putKv(secrets.apiKeyNew, 200);
  await echoKv('bob', secrets.apiKeyNew, bobSession);

  const values = Object.values(secrets);
  assert.equal(new Set(values).size, values.length, 'every secret is distinct');

  // ------------------------------------------------------------ everything the gateway shows: audit, export, SIEM, metrics
  assert.ok(sink.accepted().every((p) => p.headers.authorization === `Bearer ${secrets.sinkToken}`), 'the sink token was used');
  const audit = [];
  for (let cursor = null, pages = 0; ; pages++) {
    assert.ok(pages < 100, 'audit pages end');
    const r = await op.get(`${T}/audit?limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    assert.equal(r.status, 200, r.body);
    audit.push(r.body);
    cursor = r.json.next_cursor;
    if (!cursor) break;
  }
  // fetch (keep-alive): with `Connection: close` the export currently ends
  // without its last chunk (reported separately)
  const exp = await fetch(`${gw.url}${T}/audit/export`, { headers: { authorization: `Bearer ${op.token}` } });
  const expBody = await exp.text();
  assert.equal(exp.status, 200, expBody.slice(0, 300));
  const auditText = audit.join('\n') + '\n' + expBody;
  for (const kind of ['scim', 'admin', 'call']) assert.match(auditText, new RegExp(`"kind":"${kind}"`), `audit has ${kind} records`);
  const metrics = await fetchMetrics(gw);
  assert.equal(metrics.status, 200);

  // ------------------------------------------------------------ graceful stop, then search
  const dataDir = gw.dataDir;
  assert.equal((await gw.stop()).code, 0, 'graceful stop');

  const sources = [];
  for (const f of await listFiles(dataDir)) {
    const base = path.basename(f);
    if (base === 'admin.token' || base === 'master.key') continue;
    sources.push({ where: path.relative(dataDir, f), bytes: await fsp.readFile(f) });
  }
  const names = sources.map((s) => s.where);
  assert.ok(names.includes(path.join('store', 'data.mdb')) && names.includes(path.join('audit', 'data.mdb')), `scanned both environments: ${names}`);
  sources.push({ where: 'gateway stderr', bytes: Buffer.from(gw.stderrText(), 'utf8') });
  sources.push({ where: 'gateway stdout', bytes: Buffer.from(gw.stdoutText(), 'utf8') });
  sources.push({ where: 'audit records and export', bytes: Buffer.from(auditText, 'utf8') });
  sources.push({ where: 'SIEM sink bodies', bytes: Buffer.from(sink.requests.map((r) => r.body).join('\n'), 'utf8') });
  sources.push({ where: '/metrics', bytes: Buffer.from(metrics.body, 'utf8') });

  // the scan sees what is there: non-secret values of the same records are found
  const store = sources.find((s) => s.where === path.join('store', 'data.mdb')).bytes;
  assert.ok(store.includes(Buffer.from(ctl.url)) && store.includes(Buffer.from('X-Api-Key')), 'the kv connector record is in data.mdb');
  assert.ok(store.includes(Buffer.from(fx.okta.clientId)), 'the OIDC settings are in data.mdb');
  assert.ok(gw.stderrText().includes('"msg":"listening"'), 'the log was captured');

  const hits = [];
  for (const [name, value] of Object.entries(secrets)) {
    for (const n of needles(name, value)) {
      for (const s of sources) {
        const at = s.bytes.indexOf(n.bytes);
        if (at >= 0) hits.push(`${n.name} in ${s.where} at offset ${at}`);
      }
    }
  }
  assert.deepEqual(hits, [], `secrets found in clear (${Object.keys(secrets).length} secrets, ${sources.length} sources)`);
});
