// A connector's "ca_file" names a file on the gateway's host, which the TLS
// library reads for the connector's transfers, its discovery, refresh and
// revocation. A TENANT admin could name any file there: learn whether it
// exists and whether it parses as PEM (the PUT's answer, discovery errors,
// last_error), make the gateway open other tenants' or the operator's files.
// The host's files are the operator's: with tenant_ca_dir set, a tenant
// admin may name only a file in <tenant_ca_dir>/<tenant>/ (resolved inside
// it, when set and at every use) or send the stored value back unchanged;
// anything else is 403 with one message whatever the file. The operator
// token still names any file. A discovery error reads the same whether the
// file could not be used or the CA did not verify.
// (Without tenant_ca_dir: connector-ca-file.test.mjs.)
// Real parts: the gateway binary, a TLS MCP upstream (lib/ctl-upstream.mjs)
// and a TLS server that answers discovery, both under a self-signed
// certificate, a tenant-scoped admin token.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { spawnSync } from 'node:child_process';

import { startGateway, makeTempDir, makeSelfSignedCert, waitFor, scrapeMetrics, metricValue } from './lib/gateway.mjs';
import { api } from './lib/admin.mjs';
import { setupTenant, rawSession, mcpPost, initializeBody, isProbe } from './lib/mcp.mjs';
import { startCtlUpstream } from './lib/ctl-upstream.mjs';

let gw, up, t, tenantAdmin, dir, caDir, outside, certs, other, aliceToken, disc, discBase;
const discHits = [];

/** A TLS server that answers an MCP authorization discovery (probe 401, PRM, AS metadata, DCR). */
function startDiscovery(tls) {
  const server = https.createServer({ cert: tls.certPem, key: tls.keyPem }, async (req, res) => {
    for await (const _c of req);
    discHits.push(req.url);
    const base = discBase;
    const json = (doc, status = 200) => {
      const b = JSON.stringify(doc);
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(b) });
      res.end(b);
    };
    if (req.url === '/mcp') {
      res.writeHead(401, { 'www-authenticate': `Bearer resource_metadata="${base}/prm"`, 'content-type': 'application/json' });
      return res.end('{"jsonrpc":"2.0","id":null,"error":{"code":-32001,"message":"authorization required"}}');
    }
    if (req.url === '/prm') return json({ resource: `${base}/mcp`, authorization_servers: [`${base}/as`] });
    if (req.url === '/.well-known/oauth-authorization-server/as')
      return json({ issuer: `${base}/as`, authorization_endpoint: `${base}/authorize`, token_endpoint: `${base}/token`,
        registration_endpoint: `${base}/reg`, code_challenge_methods_supported: ['S256'] });
    if (req.url === '/reg') return json({ client_id: 'client-1', client_secret: 'secret-1' }, 201);
    res.writeHead(404);
    res.end();
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

before(async () => {
  dir = await makeTempDir();
  certs = makeSelfSignedCert(dir, 'up');
  other = makeSelfSignedCert(dir, 'other'); // a PEM CA that does not sign the upstreams
  caDir = path.join(dir, 'tenant-ca');
  outside = path.join(dir, 'outside');
  for (const d of [caDir, `${caDir}/acme`, `${caDir}/beta`, outside]) fs.mkdirSync(d, { recursive: true });
  fs.copyFileSync(certs.cert, `${caDir}/acme/up.pem`);
  fs.copyFileSync(certs.cert, `${caDir}/beta/up.pem`);
  fs.copyFileSync(certs.cert, `${outside}/up.pem`);
  fs.symlinkSync(`${outside}/up.pem`, `${caDir}/acme/escape.pem`); // leads out of the folder
  fs.symlinkSync(`${caDir}/acme/up.pem`, `${caDir}/acme/inside.pem`); // stays in it
  assert.equal(spawnSync('mkfifo', [`${caDir}/acme/ca.fifo`]).status, 0);
  gw = await startGateway({ args: ['--workers', '1', '--tenant-ca-dir', caDir] });
  up = await startCtlUpstream({ name: 'tlsup', tls: certs });
  disc = await startDiscovery(certs);
  discBase = `https://127.0.0.1:${disc.address().port}`;
  t = await setupTenant(gw, { users: ['alice@acme.com'] });
  const a = await t.admin('POST', '/admin-tokens', { name: 'tenant admin' });
  assert.equal(a.status, 201, a.body);
  tenantAdmin = (method, p, body) => api(gw.port, a.json.token, method, `/admin/v1/tenants/acme${p}`, body);
  aliceToken = (await t.mintToken('alice@acme.com')).token;
});

after(async () => {
  await gw?.stop().catch(() => {});
  disc?.closeAllConnections?.();
  await new Promise((r) => (disc ? disc.close(() => r()) : r()));
});

/** tools/list through the connector's own endpoint works (its TLS verified with the ca_file). */
async function assertWorks(name) {
  const s = await rawSession(`${gw.url}/t/acme/mcp/${name}`, aliceToken);
  const l = await s.request('tools/list');
  assert.equal(l.status, 200, `${name}: ${l.body}`);
  assert.match(l.body, /"echo"/);
}

/** initialize through the connector is refused: the upstream is not reached with that trust. */
async function assertRefusedUpstream(name) {
  const r = await mcpPost(`${gw.url}/t/acme/mcp/${name}`, initializeBody(1), { token: aliceToken, timeoutMs: 10000 });
  const err = r.messages?.find((m) => m.id === 1)?.error;
  assert.ok(err, `initialize through ${name} is refused: ${r.status} ${r.body}`);
  assert.match(err.message, /could not be reached|unavailable/);
}

test('a tenant admin names a CA file in its folder of tenant_ca_dir: stored, and the upstream\'s TLS verifies with it', async () => {
  let r = await tenantAdmin('PUT', '/connectors/mine', { url: up.url, ca_file: `${caDir}/acme/up.pem` });
  assert.equal(r.status, 201, r.body);
  assert.equal(r.json.ca_file, `${caDir}/acme/up.pem`);
  await assertWorks('mine');
  // a link that stays inside the folder is a file in it
  r = await tenantAdmin('PUT', '/connectors/mylink', { url: up.url, ca_file: `${caDir}/acme/inside.pem` });
  assert.equal(r.status, 201, r.body);
  await assertWorks('mylink');
});

test('a tenant admin\'s ca_file anywhere else is 403, one message whether the file exists, is PEM, or not', async () => {
  const cases = [
    `${outside}/up.pem`,             // a PEM file outside the folder
    '/etc/passwd',                   // a file that is not PEM
    `${dir}/no-such-file.pem`,       // no file
    `${caDir}/beta/up.pem`,          // another tenant's folder
    `${caDir}/acme/../beta/up.pem`,  // .. out of the folder
    `${caDir}/acme/./up.pem`,        // not spelled plainly
    `${caDir}/acme//up.pem`,
    `${caDir}/acme/escape.pem`,      // a link leading out of it
    `${caDir}/acme/missing.pem`,     // in the folder, no such file
    `${caDir}/acme/ca.fifo`,         // in the folder, not a regular file
    `${caDir}/acme`,                 // the folder itself
    `${caDir}/acme/`,
    `${caDir}/up.pem`,               // the directory above the tenants' folders
  ];
  let first;
  for (const ca of cases) {
    const r = await tenantAdmin('PUT', '/connectors/refused', { url: up.url, ca_file: ca });
    assert.equal(r.status, 403, `${ca}: ${r.body}`);
    assert.equal(r.json.error, 'forbidden', `${ca}: ${r.body}`);
    first ??= r.json.message;
    assert.equal(r.json.message, first, `${ca}: the same message whatever the file`);
    assert.equal((await tenantAdmin('GET', '/connectors/refused')).status, 404, `${ca}: nothing stored`);
  }
  // it says where a tenant admin's CA files go, and never what is on the host
  assert.ok(first.includes(`${caDir}/acme/`), first);
  assert.match(first, /tenant_ca_dir/);
  assert.doesNotMatch(first, /exist|no such|passwd|fifo|escape|up\.pem/i);
});

test('with discover:true the refusal comes before anything is fetched with the file', async () => {
  const n = discHits.length;
  const r = await tenantAdmin('PUT', '/connectors/discrefused', { url: `${discBase}/mcp`, ca_file: `${outside}/up.pem`, auth: { type: 'oauth', discover: true } });
  assert.equal(r.status, 403, r.body);
  assert.equal(r.json.error, 'forbidden');
  assert.equal(discHits.length, n, 'the upstream saw no request');
  assert.equal((await tenantAdmin('GET', '/connectors/discrefused')).status, 404);
  // in the folder, discovery runs with it
  const ok = await tenantAdmin('PUT', '/connectors/discok', { url: `${discBase}/mcp`, ca_file: `${caDir}/acme/up.pem`, auth: { type: 'oauth', discover: true } });
  assert.equal(ok.status, 201, ok.body);
  assert.equal(ok.json.auth.client_id, 'client-1');
});

test('the operator names any file; a tenant admin\'s GET then PUT sends it back unchanged and is accepted, another value is not', async () => {
  let r = await t.admin('PUT', '/connectors/opset', { url: up.url, description: 'set by the operator', ca_file: `${outside}/up.pem` });
  assert.equal(r.status, 201, r.body);
  await assertWorks('opset');
  // the tenant admin reads the whole object and writes it back with a new description
  const g = await tenantAdmin('GET', '/connectors/opset');
  assert.equal(g.status, 200, g.body);
  const { url, auth, ca_file, timeouts } = g.json;
  r = await tenantAdmin('PUT', '/connectors/opset', { url, auth: { type: auth.type }, ca_file, timeouts, description: 'renamed by the tenant' });
  assert.equal(r.status, 200, r.body);
  assert.equal(r.json.ca_file, `${outside}/up.pem`);
  assert.equal(r.json.description, 'renamed by the tenant');
  await assertWorks('opset');
  // the stored value of another connector is not this one's
  r = await tenantAdmin('PUT', '/connectors/copy', { url, ca_file });
  assert.equal(r.status, 403, r.body);
  // another value outside the folder is refused, and the stored one stays
  r = await tenantAdmin('PUT', '/connectors/opset', { url, ca_file: `${outside}/other.pem` });
  assert.equal(r.status, 403, r.body);
  r = await tenantAdmin('PUT', '/connectors/opset', { url, ca_file: '/etc/passwd' });
  assert.equal(r.status, 403, r.body);
  assert.equal((await tenantAdmin('GET', '/connectors/opset')).json.ca_file, `${outside}/up.pem`);
  // leaving ca_file out (the system's CAs) is the tenant admin's to choose
  r = await tenantAdmin('PUT', '/connectors/opset', { url });
  assert.equal(r.status, 200, r.body);
  assert.equal(r.json.ca_file, undefined);
  // the operator may name a file that is not PEM too: its TLS fails, as before
  r = await t.admin('PUT', '/connectors/oppasswd', { url: up.url, ca_file: '/etc/passwd' });
  assert.equal(r.status, 201, r.body);
  await assertRefusedUpstream('oppasswd');
});

test('a link made in the folder after the PUT leads nowhere else: the connector\'s calls fail, the operator\'s log says why', async () => {
  fs.copyFileSync(certs.cert, `${caDir}/acme/late.pem`);
  const r = await tenantAdmin('PUT', '/connectors/late', { url: up.url, ca_file: `${caDir}/acme/late.pem` });
  assert.equal(r.status, 201, r.body);
  await assertWorks('late');
  // the file becomes a link to a file outside the folder (the same certificate)
  fs.rmSync(`${caDir}/acme/late.pem`);
  fs.symlinkSync(`${outside}/up.pem`, `${caDir}/acme/late.pem`);
  const from = gw.mark();
  await assertRefusedUpstream('late');
  await gw.waitForLog((e) => /ca_file .*late\.pem is not a regular file .* inside .*tenant-ca\/acme/.test(e.msg ?? ''), 5000, from);
  // back to a file: works again
  fs.rmSync(`${caDir}/acme/late.pem`);
  fs.copyFileSync(certs.cert, `${caDir}/acme/late.pem`);
  await assertWorks('late');
});

// The DELETE that ends a retired upstream session (usess_end.c) is a
// transfer with the connector's ca_file like any other: held to the
// tenant's folder at its start too, so a link made there after the PUT does
// not carry it (and the session's id) to a server trusted through a file
// outside the folder.
test('the DELETE of a retired upstream session is held to the folder as the calls are', async () => {
  fs.copyFileSync(certs.cert, `${caDir}/acme/ending.pem`);
  const mark = up.requests().length;
  let r = await tenantAdmin('PUT', '/connectors/ending', { url: up.url, ca_file: `${caDir}/acme/ending.pem` });
  assert.equal(r.status, 201, r.body);
  await assertWorks('ending'); // a session, and its upstream session, opened under the folder's file
  // the PUT's capability probe ends its own upstream session (its DELETE):
  // what the rekey retires is the client's
  const since = () => up.requests().slice(mark);
  await waitFor(() => since().filter(isProbe).length >= 1 && since().filter((e) => e.method === 'DELETE').length >= since().filter(isProbe).length,
    { timeoutMs: 10000, what: "the probe's upstream session ended" });
  const gone = new Set(since().filter((e) => e.method === 'DELETE').map((e) => e.headers['mcp-session-id']));
  const sids = new Set(since().map((e) => e.headers['mcp-session-id']).filter((sid) => sid && !gone.has(sid)));
  assert.ok(sids.size >= 1, 'an upstream session was opened');
  fs.rmSync(`${caDir}/acme/ending.pem`);
  fs.symlinkSync(`${outside}/up.pem`, `${caDir}/acme/ending.pem`);
  // a rekey retires it: its DELETE is refused at its start, as a call would be
  const deletes = async (result) => metricValue(await scrapeMetrics(gw), 'mcpgate_upstream_session_deletes_total', { result });
  const before = { ended: await deletes('ended'), failed: await deletes('failed') };
  const from = gw.mark();
  r = await tenantAdmin('PUT', '/connectors/ending', { url: up.url, ca_file: `${caDir}/acme/ending.pem`, auth: { type: 'header', name: 'X-Key', value: 'k2' } });
  assert.equal(r.status, 200, r.body);
  await waitFor(async () => (await deletes('ended')) + (await deletes('failed')) >= before.ended + before.failed + sids.size,
    { timeoutMs: 10000, what: 'the DELETE of each retired upstream session, sent or refused' });
  assert.equal(await deletes('ended'), before.ended, 'no DELETE ended a session through the link');
  await gw.waitForLog((e) => /ca_file .*ending\.pem is not a regular file .* inside .*tenant-ca\/acme/.test(e.msg ?? ''), 5000, from);
  const ends = up.requests().slice(mark).filter((e) => e.method === 'DELETE' && sids.has(e.headers['mcp-session-id']));
  assert.deepEqual(ends, [], 'no DELETE reached the upstream through the link out of the folder');
});

test('discovery with a ca_file the gateway cannot use reads as a TLS failure, the same as a CA that does not verify', async () => {
  const put = (name, ca) => t.admin('PUT', `/connectors/${name}`, { url: `${discBase}/mcp`, ca_file: ca, auth: { type: 'oauth', discover: true } });
  // the operator's PUTs: a PEM CA that does not sign the server, and no file
  let r = await put('wrongca', other.cert);
  assert.equal(r.status, 502, r.body);
  assert.equal(r.json.error, 'discovery_failed');
  const tlsFailed = r.json.message;
  assert.match(tlsFailed, /TLS/);
  r = await put('nofile', `${outside}/no-such-file.pem`);
  assert.equal(r.status, 502, r.body);
  assert.equal(r.json.message, tlsFailed, 'a missing file reads as a CA that does not verify');
  // a discovered connector whose file went away: what its tenant admin reads
  fs.copyFileSync(certs.cert, `${outside}/gone.pem`);
  r = await put('gone', `${outside}/gone.pem`);
  assert.equal(r.status, 201, r.body);
  fs.rmSync(`${outside}/gone.pem`);
  r = await tenantAdmin('POST', '/connectors/gone/rediscover');
  assert.equal(r.status, 502, r.body);
  assert.equal(r.json.error, 'discovery_failed');
  assert.equal(r.json.message, tlsFailed);
  // the failure is recorded after the answer (its backoff): poll for it
  let g;
  for (let i = 0; i < 100; i++) {
    g = await tenantAdmin('GET', '/connectors/gone');
    if (g.json.rediscovery.last_error) break;
    await new Promise((res) => setTimeout(res, 50));
  }
  assert.equal(g.json.rediscovery.last_error, tlsFailed, g.body);
});
