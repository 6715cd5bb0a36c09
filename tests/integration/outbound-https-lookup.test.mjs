// An https upstream's name is looked up by the gateway, through the same
// lookup gate as an http:// one (gateway/out/outbound.c, "https names"),
// never by curl's threaded resolver. Found by review: curl 7.88 runs a
// thread per lookup outside the gate and, when a transfer still resolving
// was removed (its connect timeout, an abort), *joined* that thread — the
// loop stood still for as long as the DNS server took. One tenant admin's
// connector at a slowly resolving https name froze the gateway for every
// tenant for the DNS server's time on each call (7.5 s a call here), and
// each call left a thread behind.
//
// The slow DNS server is tests/tools/slowdns.c, preloaded into the gateway:
// names ending in .slow.test take SLOWDNS_MS and fail; each such lookup is
// logged to SLOWDNS_LOG, so the test counts the lookups that ran.
// ci-variants: build-w1 build-asan-w2
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startGateway, gatewayBin, makeTempDir, makeSelfSignedCert } from './lib/gateway.mjs';
import { setupTenant, rawSession, mcpPost, initializeBody } from './lib/mcp.mjs';
import { startCtlUpstream } from './lib/ctl-upstream.mjs';

test('a tenant\'s https connector at a slowly resolving name holds its share of the lookup gate; another tenant\'s https upstream at a name still answers', async () => {
  const shim = path.join(path.dirname(gatewayBin()), 'tests', 'slowdns.so');
  assert.ok(fs.existsSync(shim), `${shim} (make unit-bins builds it)`);
  const dir = await makeTempDir();
  const log = path.join(dir, 'lookups');
  const certs = makeSelfSignedCert(dir, 'up');
  const up = await startCtlUpstream({ name: 'tlsup', tls: certs });
  const asan = process.env.ASAN_OPTIONS ?? 'detect_leaks=1:abort_on_error=0:exitcode=23';
  const gw = await startGateway({
    args: ['--workers', '1'],
    env: { LD_PRELOAD: shim, SLOWDNS_MS: '6000', SLOWDNS_LOG: log, ASAN_OPTIONS: `${asan}:verify_asan_link_order=0` },
  });
  try {
    const acme = await setupTenant(gw, { id: 'acme', users: ['alice@acme.com'] });
    const evil = await setupTenant(gw, { id: 'evil', users: ['mallory@evil.com'] });
    // acme's upstream at a name (localhost: the certificate's), not an address
    const port = new URL(up.url).port;
    let r = await acme.admin('PUT', '/connectors/good', { url: `https://localhost:${port}/mcp`, ca_file: certs.cert });
    assert.equal(r.status, 201, r.body);
    r = await evil.putConnector('bad', { url: 'https://x.slow.test/mcp', auth: { type: 'none' }, timeouts: { connect_ms: 500 } });
    assert.equal(r.status, 201, r.body);
    const alice = (await acme.mintToken('alice@acme.com')).token;
    const mallory = (await evil.mintToken('mallory@evil.com')).token;
    const lookups = () => (fs.existsSync(log) ? fs.readFileSync(log, 'utf8').split('\n').filter(Boolean).length : 0);

    for (let round = 0; round < 3; round++) {
      const attack = [];
      for (let k = 0; k < 8; k++) attack.push(mcpPost(evil.mcpUrl('bad'), initializeBody(1), { token: mallory, timeoutMs: 30000 }));
      // meanwhile acme's calls go through its https upstream, found by name
      const s = await rawSession(acme.mcpUrl('good'), alice);
      const l = await s.request('tools/list');
      assert.equal(l.status, 200, l.body);
      assert.match(l.body, /"echo"/, `round ${round}: acme's tools/list through an https upstream at a name`);
      for (const x of await Promise.all(attack)) {
        const err = x.messages?.find((m) => m.id === 1)?.error;
        assert.ok(err, `evil's call fails at its upstream: ${x.status} ${x.body.slice(0, 200)}`);
        assert.match(err.message, /timed out|resolve/i);
      }
    }
    // a name that spells an address (nip.io, sslip.io style) resolves like
    // any other — found by review: an address found in the name was taken
    // for a repeat and dropped, and the call failed "no usable address"
    r = await acme.admin('PUT', '/connectors/spelled', { url: `https://127.0.0.1.fast.test:${port}/mcp`, ca_file: certs.cert });
    assert.equal(r.status, 201, r.body);
    const sp = await mcpPost(acme.mcpUrl('spelled'), initializeBody(1), { token: alice });
    const spErr = sp.messages?.find((m) => m.id === 1)?.error;
    // it connects (the certificate names localhost, not this name: TLS refuses it)
    assert.match(spErr?.message ?? sp.body, /TLS|certificate/, `a name spelling its own address connects: ${sp.body.slice(0, 300)}`);
    assert.ok(!gw.logs().some((e) => /no usable address/.test(e.msg ?? '')), 'no address was dropped');
    // an internationalised name is refused at the PUT, saying how to write
    // it — found by review: curl's own lookup converted it (IDNA), the
    // gateway's does not, and its calls failed with no detail; its punycode
    // form (what DNS knows) works
    r = await acme.admin('PUT', '/connectors/idn', { url: `https://b\u00fccher.fast.test:${port}/mcp`, ca_file: certs.cert });
    assert.equal(r.status, 400, r.body);
    assert.match(r.body, /punycode/);
    r = await acme.admin('PUT', '/connectors/idn', { url: `https://xn--bcher-kva.fast.test:${port}/mcp`, ca_file: certs.cert });
    assert.equal(r.status, 201, r.body);
    const idn = await mcpPost(acme.mcpUrl('idn'), initializeBody(1), { token: alice });
    assert.match(idn.messages?.find((m) => m.id === 1)?.error?.message ?? idn.body, /TLS|certificate/,
      `a punycode name connects: ${idn.body.slice(0, 300)}`);

    // 24 calls, each of whose lookups would have taken 6 s: at most the
    // tenant's 2 places of the gate ran one (curl's resolver ran one a call)
    assert.ok(lookups() >= 1 && lookups() <= 2, `evil's slow lookups that ran: ${lookups()} (at most 2)`);
    // the operator's log says what the calls waited for
    assert.ok(gw.logs().some((e) => /name lookup of x\.slow\.test (did not finish in time|never got its turn)/.test(e.msg ?? '')),
      'the log says the lookup is what did not finish');
  } finally {
    await gw.stop('SIGTERM', { timeoutMs: 30000 });
    await up.stop();
  }
});
