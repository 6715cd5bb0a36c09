// One tenant's slowly resolving upstream names must not starve the others
// (found by review). http:// upstreams resolve their names on libuv's pool,
// 8 threads the heavy reads share, and a lookup that runs cannot be taken
// back: a DNS server that never answers holds its thread until the resolver
// gives up. A dozen calls of one tenant to a connector at such a name took
// every place libuv gives such work (half its pool), and another tenant's
// fresh upstream connection timed out behind them; the review of the first
// fix found two such tenants did the same. Lookups now pass a process-wide
// gate (gateway/out/h1.c): libuv's places (8 of the gateway's 16 threads),
// at most 2 of them for one tenant while fewer than half are taken, else 1:
// three tenants with slow names hold at most 5.
//
// The slow DNS server is tests/tools/slowdns.c, preloaded into the gateway:
// names ending in .slow.test take SLOWDNS_MS and fail, .fast.test names are
// 127.0.0.1 at once, and each slow lookup is logged to SLOWDNS_LOG.
// ci-variants: build-w1 build-asan-w2
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startGateway, gatewayBin, makeTempDir, waitFor } from './lib/gateway.mjs';
import { setupTenant, startEverything, rawSession, mcpPost, initializeBody, toolText } from './lib/mcp.mjs';

test('tenants whose upstream names resolve slowly hold a share of the lookups; another tenant\'s fresh connection goes through', async () => {
  const shim = path.join(path.dirname(gatewayBin()), 'tests', 'slowdns.so');
  assert.ok(fs.existsSync(shim), `${shim} (make unit-bins builds it)`);
  const log = path.join(await makeTempDir(), 'lookups');
  const up = await startEverything();
  const asan = process.env.ASAN_OPTIONS ?? 'detect_leaks=1:abort_on_error=0:exitcode=23';
  const gw = await startGateway({
    env: { LD_PRELOAD: shim, SLOWDNS_MS: '4000', SLOWDNS_LOG: log, ASAN_OPTIONS: `${asan}:verify_asan_link_order=0` },
  });
  try {
    const acme = await setupTenant(gw, { id: 'acme', users: ['alice@acme.com'] });
    const evils = [];
    for (const id of ['evil1', 'evil2', 'evil3']) evils.push(await setupTenant(gw, { id, users: [`mallory@${id}.com`] }));
    const u = new URL(up.url);
    // acme's upstream is at a name too (resolved at once), its connect timeout short
    let r = await acme.putConnector('ev', { url: `http://acme.fast.test:${u.port}${u.pathname}`, auth: { type: 'none' }, timeouts: { connect_ms: 2000 } });
    assert.equal(r.status, 201, r.body);
    const attack = [];
    for (const [i, evil] of evils.entries()) {
      r = await evil.putConnector('bad', { url: `http://x${i}.slow.test/mcp`, auth: { type: 'none' }, timeouts: { connect_ms: 1000 } });
      assert.equal(r.status, 201, r.body);
      const mallory = (await evil.mintToken(`mallory@${evil.id}.com`)).token;
      // each: four calls at once, each a lookup of its slow name
      for (let k = 0; k < 4; k++) attack.push(mcpPost(evil.mcpUrl('bad'), initializeBody(1), { token: mallory }));
    }
    const alice = (await acme.mintToken('alice@acme.com')).token;
    const running = () => (fs.existsSync(log) ? fs.readFileSync(log, 'utf8').split('\n').filter(Boolean).length : 0);
    await waitFor(() => running() >= 4, { what: 'the slow lookups running' });

    // acme's first call opens a fresh upstream connection: a lookup of its own
    const s = await rawSession(acme.mcpUrl('ev'), alice);
    const c = await s.request('tools/call', { name: 'echo', arguments: { message: 'through' } });
    assert.equal(c.status, 200, c.body);
    assert.equal(toolText(c.messages.find((m) => m.result)?.result), 'Echo: through', `acme's call while evil's names resolve slowly: ${c.body.slice(0, 300)}`);

    const a = await Promise.all(attack);
    for (const x of a) assert.match(x.body, /slow\.test|timed out|resolve/i, `the slow tenants' calls fail at their upstreams: ${x.status} ${x.body.slice(0, 200)}`);
    assert.ok(running() <= 5, `at most 2 + 2 + 1 of the slow tenants' lookups ran (each call past them timed out waiting): ${running()}`);
    // the operator's log says why a call past the gate failed
    assert.ok(gw.logs().some((e) => /never got its turn: the gateway's 8 lookups were all taken/.test(e.msg ?? '')),
      'a transfer that waited at the lookup gate says so in the log');
  } finally {
    await gw.stop('SIGTERM', { timeoutMs: 15000 });
    await up.stop();
  }
});
