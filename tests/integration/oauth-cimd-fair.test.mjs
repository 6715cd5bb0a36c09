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
// comes from many addresses, each within auth_rate_per_address; the test
// plays those addresses with X-Forwarded-For from a trusted proxy.
//
// A second review found the shares not enough: four tenants' eight each
// took all the 32 slots there were, from four addresses. Now there are 64,
// one client address holds at most 2 fetches (OAUTH_CIMD_ADDRESS_MAX), and a
// tenant at most 2 once half the slots are taken (OAUTH_CIMD_TENANT_LATE).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import https from 'node:https';
import { startGateway, makeTempDir, makeSelfSignedCert, waitFor } from './lib/gateway.mjs';
import { adminClient, createTenant, operatorToken } from './lib/admin.mjs';

const FLOOD = 40; // more than a tenant's share (8)
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
    args: ['--cimd-ca-file', cert.cert, '--auth-rate-per-address', '0', '--trusted-proxies', '127.0.0.1'],
    env: { MCPGATE_EGRESS_ALLOW_UNTRUSTED: '127.0.0.0/8' },
  });
  op = adminClient(gw.port, operatorToken(gw.dataDir));
  await createTenant(gw.port, op.token, 'acme');
  await createTenant(gw.port, op.token, 'globex');
  for (const t of ['t1', 't2', 't3', 't4', 't5', 't6']) await createTenant(gw.port, op.token, t);
});

after(async () => {
  for (const s of held) s.destroy();
  hangSrv?.closeAllConnections?.();
  promptSrv?.closeAllConnections?.();
  await Promise.all([hangSrv, promptSrv].map((s) => new Promise((r) => (s ? s.close(r) : r()))));
  await gw?.stop();
});

/** An unauthenticated authorization request naming client_id, from address
 * `from` (X-Forwarded-For; none: the test's own): its status once answered. */
function authorize(tenant, clientId, from) {
  const q = new URLSearchParams({ response_type: 'code', client_id: clientId, redirect_uri: 'http://127.0.0.1/cb' });
  const headers = from ? { 'x-forwarded-for': from } : {};
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port: gw.port, path: `/t/${tenant}/oauth/authorize?${q}`, headers, agent: false }, (res) => {
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
  for (let i = 0; i < FLOOD; i++) flood.push(authorize('acme', `${hangBase}/c${i}.json`, `10.0.${i}.1`).then((st) => { answered.push(st); return st; }));
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

/** Floods tenant with n requests naming the hanging server, from the
 * addresses addr(i); resolves once each is answered or held there, with
 * {answered (statuses), all (the requests' promises)}. */
async function flood(tenant, n, addr, tag) {
  const answered = [];
  const base = held.size;
  const all = [];
  for (let i = 0; i < n; i++) all.push(authorize(tenant, `${hangBase}/${tag}${i}.json`, addr(i)).then((st) => { answered.push(st); return st; }));
  await waitFor(() => answered.length + held.size - base === n, { timeoutMs: 20000, what: `${tenant}'s flood to settle` });
  return { answered, all, holding: held.size - base };
}

async function letGo(...floods) {
  for (const s of held) s.destroy();
  await Promise.all(floods.flatMap((f) => f.all));
  await waitFor(() => held.size === 0, { timeoutMs: 5000, what: 'the hanging server\'s requests gone' });
}

test('one client address holds at most two fetches, whatever the tenants', async () => {
  const f = await flood('globex', 6, () => '10.9.9.9', 'addr');
  assert.equal(f.holding, 2, 'one address holds two fetches');
  assert.ok(f.answered.every((st) => st === 503), `the rest are 503: ${f.answered}`);
  const g = await flood('t1', 3, () => '10.9.9.9', 'addr-t1');
  assert.equal(g.holding, 0, 'the same address at another tenant: nothing more');
  // the test's own address (the admin's resolve) is another address: fetched
  const r = await resolveClient('globex', `${promptBase}/globex-2.json`);
  assert.equal(r.status, 200, r.body);
  // and at its share, the admin's own address is told why
  const own = await flood('t2', 2, () => undefined, 'own');
  assert.equal(own.holding, 2);
  const busy = await resolveClient('t3', `${promptBase}/t3.json`);
  assert.equal(busy.status, 503, busy.body);
  assert.match(busy.json.message, /from your address/);
  await letGo(f, g, own);
});

test('once half the slots are taken a tenant gets two; four flooded tenants leave the rest their fetches', async () => {
  // four tenants from many addresses: eight each, half the process's slots
  const floods = [];
  for (const [k, t] of ['t1', 't2', 't3', 't4'].entries()) floods.push(await flood(t, 12, (i) => `10.${k + 1}.${i}.1`, `late-${t}-`));
  for (const f of floods) assert.equal(f.holding, 8, 'each of four tenants holds its share of eight');
  assert.equal(held.size, 32);
  // a fifth tenant, flooded from many addresses too: two, no more
  const f5 = await flood('t5', 6, (i) => `10.5.${i}.1`, 'late-t5-');
  assert.equal(f5.holding, 2, 'past half, a tenant holds two');
  // and a sixth tenant's first-time client is fetched
  const r = await resolveClient('t6', `${promptBase}/t6.json`);
  assert.equal(r.status, 200, `t6's lookup with ${held.size} fetches held: ${r.body}`);
  assert.equal(r.json.source, 'fetched');
  await letGo(...floods, f5);
});
