// ci-variants: build-w1 build-asan-w2
// The fetch slots of Client ID Metadata Documents are shared fairly between
// tenants (found by review): the URL of a document is anyone's to choose —
// an unauthenticated authorization request names it — and a server that
// never answers holds a fetch for seconds. Before, the 32 slots were the
// whole process's: a flood of authorization requests at acme naming such a
// server took all of them, and globex's first-time clients were answered
// 503 for as long as it went on. Now one tenant's fetches hold at most 8
// slots (OAUTH_CIMD_TENANT_MAX); acme's flood past them is 503 at once and
// globex's lookup is fetched. Synchronised on the hanging server's count of
// open requests (every flood request is either answered or held there),
// never on time. The per-address rate limit is off here: a real flood
// comes from many addresses, each within auth_rate_per_address.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import https from 'node:https';
import { startGateway, makeTempDir, makeSelfSignedCert, waitFor } from './lib/gateway.mjs';
import { adminClient, createTenant, operatorToken } from './lib/admin.mjs';

const FLOOD = 40; // more than every slot of the process (32)
let gw, op, hangSrv, promptSrv, hangBase, promptBase;
const held = new Set(); // the hanging server's open requests

function listen(srv) {
  return new Promise((r) => srv.listen(0, '127.0.0.1', () => r(`https://127.0.0.1:${srv.address().port}`)));
}

before(async () => {
  const dir = await makeTempDir();
  const cert = makeSelfSignedCert(dir, 'cimd');
  hangSrv = https.createServer({ cert: cert.certPem, key: cert.keyPem }, (q, s) => {
    held.add(s);
    s.on('close', () => held.delete(s));
  });
  promptSrv = https.createServer({ cert: cert.certPem, key: cert.keyPem }, (q, s) => {
    s.writeHead(200, { 'content-type': 'application/json' });
    s.end(JSON.stringify({ client_id: `${promptBase}${q.url}`, client_name: 'Prompt', redirect_uris: ['http://127.0.0.1/cb'] }));
  });
  hangBase = await listen(hangSrv);
  promptBase = await listen(promptSrv);
  gw = await startGateway({
    args: ['--cimd-ca-file', cert.cert, '--auth-rate-per-address', '0'],
    env: { MCPGATE_EGRESS_ALLOW_UNTRUSTED: '127.0.0.0/8' },
  });
  op = adminClient(gw.port, operatorToken(gw.dataDir));
  await createTenant(gw.port, op.token, 'acme');
  await createTenant(gw.port, op.token, 'globex');
});

after(async () => {
  for (const s of held) s.destroy();
  hangSrv?.closeAllConnections?.();
  promptSrv?.closeAllConnections?.();
  await Promise.all([hangSrv, promptSrv].map((s) => new Promise((r) => (s ? s.close(r) : r()))));
  await gw?.stop();
});

/** An unauthenticated authorization request naming client_id: its status once answered. */
function authorize(tenant, clientId) {
  const q = new URLSearchParams({ response_type: 'code', client_id: clientId, redirect_uri: 'http://127.0.0.1/cb' });
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port: gw.port, path: `/t/${tenant}/oauth/authorize?${q}`, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    }).on('error', reject);
  });
}

const resolveClient = (tenant, id) =>
  op.get(`/admin/v1/tenants/${tenant}/oauth-clients/resolve?client_id=${encodeURIComponent(id)}`);

test('fetches held at one tenant by a server that never answers leave slots for another tenant', async () => {
  const answered = [];
  const flood = [];
  for (let i = 0; i < FLOOD; i++) flood.push(authorize('acme', `${hangBase}/c${i}.json`).then((st) => { answered.push(st); return st; }));
  // every flood request is settled one way or the other: answered, or its fetch held open at the server
  await waitFor(() => answered.length + held.size === FLOOD, { timeoutMs: 20000, what: `the flood to settle (${answered.length} answered, ${held.size} held)` });
  const holding = held.size;

  // globex's first-time client is fetched meanwhile
  const r = await resolveClient('globex', `${promptBase}/globex.json`);
  assert.equal(r.status, 200, `globex's lookup while acme's fetches hang (${holding} held): ${r.body}`);
  assert.equal(r.json.source, 'fetched');
  assert.equal(held.size, holding, 'acme\'s fetches were still held when globex fetched');
  assert.equal(holding, 8, 'acme holds its share of the slots (OAUTH_CIMD_TENANT_MAX), no more');
  assert.ok(answered.every((st) => st === 503), `acme's requests past its share are 503: ${answered}`);
  // acme itself is at its share: 503, and it says so
  const busy = await resolveClient('acme', `${promptBase}/acme.json`);
  assert.equal(busy.status, 503, busy.body);
  assert.match(busy.json.message, /for this organisation/);

  // the server lets go: acme's fetches fail, their slots come back
  for (const s of held) s.destroy();
  const late = await Promise.all(flood);
  assert.equal(late.filter((st) => st === 503).length, FLOOD - 8);
  const again = await resolveClient('acme', `${promptBase}/acme.json`);
  assert.equal(again.status, 200, `acme fetches again once its fetches ended: ${again.body}`);
  assert.equal(again.json.source, 'fetched');
});
