// Vault 2/2 (issue 21 part 1): discover:true refuses what it cannot trust,
// and stores nothing then.
// Real parts: the gateway; oidc-provider as an AS whose metadata drops PKCE
// S256; the SDK MCP upstream in front of it. The rest is a hostile upstream
// (a node http server on loopback): the admin chose it, but it is
// compromised and writes every byte of its metadata — another resource,
// internal addresses, a huge or trickling body, a redirect, a mismatched
// issuer, a registration endpoint answering garbage or a huge secret.
// After each refusal the connector does not exist and the gateway answers.
// A fetched body's deadline (10 s after its head) is lowered to 3 s by the
// test hook MCPGATE_TEST_FETCH_BODY_MS: the trickling body is refused at
// the deadline (the 10-s idle timeout never fires: a byte every 500 ms),
// and the wait is 3 s, not 10.
// ci-variants: build-w1 build-asan-w2 (two loops are the sanitizer run's; CI's 15 minutes)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import https from 'node:https';

import { findSecretsInFiles } from './lib/admin.mjs';
import { makeTempDir, makeSelfSignedCert, waitFor, fetchMetrics } from './lib/gateway.mjs';
import { startVaultFixture } from './lib/vault.mjs';
import { startOAuthMcpUpstream } from './lib/upstream-oauth.mjs';

let v, evil, evilBase, up2, tlsEvil, tlsBase, certs;
const HUGE_SECRET = 'S'.repeat(5000);
const registrations = [];
let holdProbes = false;
const heldProbes = [];

// per case: how the hostile upstream differs from a well-behaved one
const CASES = {
  good: {},
  good2: {},
  mismatch: { prm: (d) => ({ ...d, resource: `${evilBase}/other/mcp` }) },
  internal: { prm: (d) => ({ ...d, authorization_servers: ['http://10.1.2.3/as'] }) },
  internaltoken: { asm: (d) => ({ ...d, token_endpoint: 'http://169.254.169.254/token' }) },
  hugeprm: { prmRaw: (res) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end(`{"x":"${'a'.repeat(100000)}"}`); } },
  redirect: { prmRaw: (res) => { res.writeHead(302, { location: 'http://10.0.0.1/prm' }); res.end(); } },
  issuer: { asm: (d) => ({ ...d, issuer: 'http://127.0.0.1:1/elsewhere' }) },
  dupkeys: { prmText: (d) => `{"resource":"x",${JSON.stringify(d).slice(1)}` },
  garbage: { reg: (res) => { res.writeHead(201, { 'content-type': 'application/json' }); res.end('<html>no</html>'); } },
  hugesecret: { reg: (res) => { const b = JSON.stringify({ client_id: 'c1', client_secret: HUGE_SECRET }); res.writeHead(201, { 'content-type': 'application/json' }); res.end(b); } },
  otherhost: {
    prm: (d) => ({ ...d, authorization_servers: [`${evilBase.replace('127.0.0.1', 'localhost')}/otherhost/as`] }),
    asm: (d) => ({ ...d, issuer: `${evilBase.replace('127.0.0.1', 'localhost')}/otherhost/as` }),
  },
  // needs no token: answers initialize with a stream that never ends
  stream: {
    mcpRaw: (res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(': open\n\n');
      const t = setInterval(() => res.write(': ping\n\n'), 200);
      res.on('close', () => clearInterval(t));
    },
  },
  noreg: { asm: (d) => { const { registration_endpoint: _r, ...rest } = d; return rest; } },
  // well-behaved, but while holdProbes is set their probe waits in heldProbes
  held1: { hold: true }, held2: { hold: true }, held3: { hold: true }, held4: { hold: true }, held5: { hold: true },
  trickle: {
    prmRaw: (res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{');
      const t = setInterval(() => { if (!res.write(' ')) clearInterval(t); }, 500);
      res.on('close', () => clearInterval(t));
    },
  },
};

function startEvil(tls) {
  const handler = async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const u = new URL(req.url, 'http://x');
    let m = /^\/([a-z0-9]+)\/(mcp|prm|reg)$/.exec(u.pathname);
    const wk = /^\/\.well-known\/oauth-authorization-server\/([a-z0-9]+)\/as$/.exec(u.pathname);
    const name = m?.[1] ?? wk?.[1];
    const c = CASES[name];
    if (!c) { res.writeHead(404); return res.end(); }
    const base = `${req.socket.encrypted ? tlsBase : evilBase}/${name}`;
    const json = (doc, status = 200) => {
      const b = typeof doc === 'string' ? doc : JSON.stringify(doc);
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(b) });
      res.end(b);
    };
    if (wk) {
      let d = {
        issuer: `${base}/as`, authorization_endpoint: `${base}/authorize`, token_endpoint: `${base}/token`,
        registration_endpoint: `${base}/reg`, code_challenge_methods_supported: ['S256'],
      };
      if (c.asm) d = c.asm(d);
      return json(d);
    }
    if (m[2] === 'mcp') {
      if (c.mcpRaw) return c.mcpRaw(res);
      const answer = () => {
        res.writeHead(401, { 'www-authenticate': `Bearer realm="x", resource_metadata="${base}/prm"`, 'content-type': 'application/json' });
        res.end('{"jsonrpc":"2.0","id":null,"error":{"code":-32001,"message":"authorization required"}}');
      };
      if (c.hold && holdProbes) return heldProbes.push({ name, answer });
      return answer();
    }
    if (m[2] === 'prm') {
      if (c.prmRaw) return c.prmRaw(res);
      let d = { resource: `${base}/mcp`, authorization_servers: [`${base}/as`] };
      if (c.prm) d = c.prm(d);
      return json(c.prmText ? c.prmText(d) : d);
    }
    registrations.push({ name, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) });
    if (c.reg) return c.reg(res);
    return json({ client_id: `client-${name}`, client_secret: `secret-${name}` }, 201);
  };
  const server = tls ? https.createServer({ cert: tls.certPem, key: tls.keyPem }, handler) : http.createServer(handler);
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

before(async () => {
  v = await startVaultFixture({ users: ['alice'], gatewayEnv: { MCPGATE_TEST_FETCH_BODY_MS: '3000' }, asOptions: { registration: true, metadata: (d) => ({ ...d, code_challenge_methods_supported: ['plain'] }) }, connectorBody: null });
  evil = await startEvil();
  evilBase = `http://127.0.0.1:${evil.address().port}`;
  certs = makeSelfSignedCert(await makeTempDir(), 'evil');
  tlsEvil = await startEvil(certs);
  tlsBase = `https://127.0.0.1:${tlsEvil.address().port}`;
  up2 = await startOAuthMcpUpstream({ as: v.as });
});
after(async () => {
  await up2?.close();
  tlsEvil?.closeAllConnections?.();
  await new Promise((r) => (tlsEvil ? tlsEvil.close(() => r()) : r()));
  evil?.closeAllConnections?.();
  await new Promise((r) => (evil ? evil.close(() => r()) : r()));
  await v?.stop();
});

const put = (name, url, auth = {}) =>
  v.admin('PUT', `/connectors/${name}`, { url, auth: { type: 'oauth', discover: true, ...auth } });

async function refused(name, url, status, code, re) {
  const r = await put(name, url);
  assert.equal(r.status, status, `${name}: ${r.body}`);
  assert.equal(r.json.error, code, `${name}: ${r.body}`);
  if (re) assert.match(r.json.message ?? r.json.error_description ?? r.body, re, name);
  const g = await v.admin('GET', `/connectors/${name}`);
  assert.equal(g.status, 404, `${name}: nothing stored`);
  return r;
}

test('the well-behaved hostile server works (the control case); its DCR request is what the gateway promised', async () => {
  const r = await put('good', `${evilBase}/good/mcp`);
  assert.equal(r.status, 201, r.body);
  assert.equal(r.json.auth.client_id, 'client-good');
  assert.equal(r.json.auth.discovered.registration, 'dcr');
  assert.equal(r.json.auth.discovered.as_host_differs, false);
  const reg = registrations.find((x) => x.name === 'good').body;
  assert.deepEqual(reg.redirect_uris, [`${v.base}/connect/good/callback`]);
  assert.equal(reg.token_endpoint_auth_method, 'client_secret_basic');
  assert.deepEqual(reg.grant_types, ['authorization_code', 'refresh_token']);
  assert.equal(reg.client_name, 'mcpgate for acme');
  assert.equal(r.body.includes('secret-good'), false);
});

test('an authorization server on another host than the connector is shown to the admin', async () => {
  // the upstream alone names it: its metadata is fetched at the untrusted
  // egress level, which refuses loopback (vault-discover-egress.test.mjs)
  const refusedHere = await refused('otherhost', `${evilBase}/otherhost/mcp`, 400, 'egress_refused',
    /auth\.authorization_server/);
  assert.match(refusedHere.json.message, /egress_allow_untrusted/);
  // the admin names it
  const issuer = `${evilBase.replace('127.0.0.1', 'localhost')}/otherhost/as`;
  const r = await put('otherhost', `${evilBase}/otherhost/mcp`, { authorization_server: issuer });
  assert.equal(r.status, 201, r.body);
  assert.equal(r.json.auth.authorization_server, issuer);
  assert.equal(r.json.auth.discovered.as_host_differs, true);
  assert.match(r.json.auth.discovered.authorization_server, /^http:\/\/localhost:/);
  assert.ok(r.json.warnings.some((w) => /authorization server http:\/\/localhost:.* is on another host than the connector/.test(w)), r.body);
  assert.equal((await v.admin('DELETE', '/connectors/otherhost')).status, 204);
});

test('a connector that needs no token (an endless stream to initialize): only the head is read, then 400 at once', async () => {
  // refused on the head: the body deadline (3 s here) would have answered
  // "sent its reply too slowly" instead, so the message says which it was
  await refused('stream', `${evilBase}/stream/mcp`, 400, 'discovery_refused', /does the connector do its own OAuth/);
});

test('a PUT again reuses the registration at the same AS and registers again at another', async () => {
  const n = registrations.length;
  let r = await put('good', `${evilBase}/good/mcp`);
  assert.equal(r.status, 200, r.body);
  assert.equal(r.json.auth.client_id, 'client-good');
  assert.equal(registrations.length, n, 'reused');
  // the connector moves to a server whose metadata names another AS
  r = await put('good', `${evilBase}/good2/mcp`);
  assert.equal(r.status, 200, r.body);
  assert.equal(r.json.auth.client_id, 'client-good2');
  assert.equal(r.json.auth.discovered.issuer, `${evilBase}/good2/as`);
  assert.equal(registrations.length, n + 1);
  r = await put('good', `${evilBase}/good/mcp`);
  assert.equal(r.status, 200, r.body);
  assert.equal(r.json.auth.client_id, 'client-good');
  assert.equal(registrations.length, n + 2);
});

test('an https upstream under a private CA: discovered with the connector\'s ca_file, refused without', async () => {
  await refused('tlsnoca', `${tlsBase}/good2/mcp`, 502, 'discovery_failed', /probing the connector URL/);
  const r = await v.admin('PUT', '/connectors/tlsca', { url: `${tlsBase}/good2/mcp`, ca_file: certs.cert, auth: { type: 'oauth', discover: true } });
  assert.equal(r.status, 201, r.body);
  assert.equal(r.json.auth.token_url, `${tlsBase}/good2/token`);
  assert.equal(r.json.auth.discovered.issuer, `${tlsBase}/good2/as`);
  assert.equal((await v.admin('DELETE', '/connectors/tlsca')).status, 204);
});

test('the admin\'s own fields are checked before anything is fetched or registered', async () => {
  const n = registrations.length;
  let r = await v.admin('PUT', '/connectors/badfields', { url: `${evilBase}/good/mcp`, timeouts: { connect_ms: 1 }, auth: { type: 'oauth', discover: true } });
  assert.equal(r.status, 400, r.body);
  assert.equal(r.json.error, 'invalid_request');
  assert.match(r.body, /timeouts\.connect_ms/);
  r = await v.admin('PUT', '/connectors/badfields', { url: `${evilBase}/good/mcp`, auth: { type: 'oauth', discover: true, client_id: 'x' } });
  assert.equal(r.status, 400, r.body);
  assert.match(r.body, /auth\.client_id/);
  r = await v.admin('PUT', '/connectors/badfields', { url: 'ftp://x/mcp', auth: { type: 'oauth', discover: true } });
  assert.equal(r.status, 400, r.body);
  assert.equal(registrations.length, n, 'nothing registered');
  assert.equal((await v.admin('GET', '/connectors/badfields')).status, 404);
});

test('metadata that says something unusable: 400, nothing stored', async () => {
  await refused('mismatch', `${evilBase}/mismatch/mcp`, 400, 'discovery_refused', /another resource/);
  await refused('noreg', `${evilBase}/noreg/mcp`, 400, 'discovery_refused', /client_id and client_secret without "discover"/);
  // a real AS (oidc-provider) whose metadata lists no S256
  await refused('nos256', up2.url, 400, 'discovery_refused', /S256/);
});

test('URLs the metadata names at addresses the egress policy refuses: 400 egress_refused, never fetched', async () => {
  await refused('internal', `${evilBase}/internal/mcp`, 400, 'egress_refused', /10\.1\.2\.3/);
  await refused('internaltoken', `${evilBase}/internaltoken/mcp`, 400, 'egress_refused', /token endpoint/);
});

test('malformed or hostile replies: 502 discovery_failed naming the step and URL, no secret echoed', async () => {
  await refused('hugeprm', `${evilBase}/hugeprm/mcp`, 502, 'discovery_failed', /protected-resource metadata: .*hugeprm\/prm answered more than 64 KiB/);
  await refused('redirect', `${evilBase}/redirect/mcp`, 502, 'discovery_failed', /HTTP 302/);
  await refused('issuer', `${evilBase}/issuer/mcp`, 502, 'discovery_failed', /"issuer" is not/);
  await refused('dupkeys', `${evilBase}/dupkeys/mcp`, 502, 'discovery_failed', /duplicate/);
  await refused('garbage', `${evilBase}/garbage/mcp`, 502, 'discovery_failed', /registering .*not one JSON object/);
  const r = await refused('hugesecret', `${evilBase}/hugesecret/mcp`, 502, 'discovery_failed', /client_secret/);
  assert.equal(r.body.includes('SSSSSSSS'), false);
});

test('an unreachable connector: 502; a trickling metadata body: 502 within the body deadline', async () => {
  const s = http.createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const dead = `http://127.0.0.1:${s.address().port}/mcp`;
  await new Promise((r) => s.close(r));
  await refused('dead', dead, 502, 'discovery_failed', /probing the connector URL/);
  await refused('trickle', `${evilBase}/trickle/mcp`, 502, 'discovery_failed', /too slowly/);
  // the gateway is still serving, and the control connector is intact
  const g = await v.admin('GET', '/connectors/good');
  assert.equal(g.status, 200, g.body);
  assert.equal((await v.admin('GET', '/connectors')).json.connectors.length, 1);
});

test('no registration secret in the log or in the store files in clear', async () => {
  const log = v.fx.gw.stderrText();
  assert.match(log, /discovery refused/);
  assert.equal(log.includes('SSSSSSSS'), false, 'the huge secret is not logged');
  assert.equal(log.includes('secret-good'), false, 'the registered secret is not logged');
  const { hits, scanned } = await findSecretsInFiles([v.fx.gw.dataDir], ['secret-good']);
  assert.ok(scanned > 0);
  assert.deepEqual(hits, [], 'the stored secret is sealed');
});

// Found by review: an admin's discoveries were unbounded — a tenant admin's
// script could start hundreds of POST …/rediscover {"register":"new"} (or
// discovering PUTs) at once, each registering a new client at the upstream
// and holding an outbound transfer. Before the fix the second reading of
// held1 and the fifth of the tenant were started (held here too), not 429.
test('discoveries: one per connector and 4 per tenant at once, 429 with Retry-After past it; other tenants unaffected', async () => {
  const tok = await v.fx.op.post('/admin/v1/tenants/acme/admin-tokens', { name: 'script' });
  assert.equal(tok.status, 201, tok.body);
  const ta = (m, p, b) => v.fx.op.call(m, `/admin/v1/tenants/acme${p}`, b, { headers: { authorization: `Bearer ${tok.json.token}` } });
  const body = (name) => ({ url: `${evilBase}/${name}/mcp`, auth: { type: 'oauth', discover: true } });
  for (let i = 1; i <= 5; i++) assert.equal((await ta('PUT', `/connectors/held${i}`, body(`held${i}`))).status, 201);
  const n = registrations.length;
  holdProbes = true;
  const open = [];
  const waitHeld = (k) => waitFor(async () => heldProbes.length === k, { timeoutMs: 8000, what: `${k} probes held` });
  try {
    open.push(ta('POST', '/connectors/held1/rediscover', { register: 'new' }));
    await waitHeld(1);
    for (const again of [() => ta('POST', '/connectors/held1/rediscover', { register: 'new' }), () => ta('PUT', '/connectors/held1', body('held1'))]) {
      const r = await again();
      assert.equal(r.status, 429, r.body);
      assert.equal(r.json.error, 'discovery_in_progress');
      assert.equal(r.headers['retry-after'], '5');
      assert.match(r.json.message, /held1.*one at a time per connector/);
    }
    for (let i = 2; i <= 4; i++) open.push(ta('POST', `/connectors/held${i}/rediscover`, { register: 'new' }));
    await waitHeld(4);
    for (const more of [() => ta('POST', '/connectors/held5/rediscover', { register: 'new' }), () => ta('PUT', '/connectors/fresh', body('held5'))]) {
      const r = await more();
      assert.equal(r.status, 429, r.body);
      assert.equal(r.json.error, 'too_many_discoveries');
      assert.equal(r.headers['retry-after'], '5');
      assert.match(r.json.message, /4 connector discoveries/);
    }
    assert.equal((await ta('GET', '/connectors/fresh')).status, 404, 'nothing stored');
    // another tenant's discovery is not counted with acme's: it starts (and is held too)
    assert.equal((await v.fx.op.post('/admin/v1/tenants', { id: 'other' })).status, 201);
    open.push(v.fx.op.call('PUT', '/admin/v1/tenants/other/connectors/held5', body('held5')));
    await waitHeld(5);
    assert.equal(registrations.length, n, 'nothing registered while held');
  } finally {
    holdProbes = false;
    for (const h of heldProbes.splice(0)) h.answer();
  }
  const done = await Promise.all(open);
  for (const r of done.slice(0, 4)) {
    assert.equal(r.status, 200, r.body);
    assert.equal(r.json.rediscovery.result, 'changed', 'registered anew');
  }
  assert.equal(done[4].status, 201, done[4].body);
  assert.equal(registrations.length, n + 5);
  // the slots are back: the refused ones may run now
  const r = await ta('POST', '/connectors/held5/rediscover');
  assert.equal(r.status, 200, r.body);
  const m = (await fetchMetrics(v.fx.gw)).body;
  assert.match(m, /mcpgate_discoveries_limited_total\{limit="connector"\} 2\n/);
  assert.match(m, /mcpgate_discoveries_limited_total\{limit="tenant"\} 2\n/);
  for (let i = 1; i <= 5; i++) assert.equal((await ta('DELETE', `/connectors/held${i}`)).status, 204);
});
