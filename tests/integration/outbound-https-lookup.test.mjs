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
// logged to SLOWDNS_LOG, so the test counts the lookups that ran. Names
// ending in .late.test take as long and then resolve to 127.0.0.1.
//
// The connect timeout (a connector's timeouts.connect_ms) covers the
// lookup and the connect together: curl, which connects once the gateway
// has the addresses, gets what the lookup left of it. Found by review:
// curl's own clock started again after the lookup, so a name that resolved
// slowly followed by a connect that hung took the lookup's time plus the
// whole connect timeout (1.8 s of a 1 s timeout in a probe).
// ci-variants: build-w1 build-asan-w2
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
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

// A loopback port whose connects hang: a listener (in a child process, so
// nothing here accepts for it) whose loop never runs after listen(), with a
// backlog of 1. The kernel completes handshakes into the accept queue until
// it is full, then drops every further SYN (net.ipv4.tcp_abort_on_overflow
// 0, the default): the test fills the queue itself, and checks that a
// further connect really hangs — the premise of the test that uses it.
async function hangingPort() {
  const child = spawn(process.execPath, ['-e', `
    const s = require('net').createServer().listen({ port: 0, host: '127.0.0.1', backlog: 1 }, () => {
      process.stdout.write(s.address().port + '\\n');
      // the loop never runs again: nothing is accepted (2 min at most, should
      // the test's process die without killing it)
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 120000);
      process.exit(0);
    });`], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise((resolve, reject) => {
    child.stdout.once('data', (d) => resolve(Number(String(d).trim())));
    child.once('exit', (code, sig) => reject(new Error(`the listener exited (${code ?? sig})`)));
  });
  const held = [];
  const connect = (ms) => new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    held.push(s);
    const t = setTimeout(() => resolve(false), ms);
    s.once('connect', () => { clearTimeout(t); resolve(true); });
    s.once('error', () => { clearTimeout(t); resolve(false); });
  });
  // the accept queue's places (backlog + 1 on Linux), taken and kept
  let filled = 0;
  while (filled < 16 && await connect(1000)) filled++;
  const stop = () => { for (const s of held) s.destroy(); child.kill('SIGKILL'); };
  if (filled === 0 || filled === 16 || await connect(1500)) {
    stop();
    assert.fail(`premise: a connect to a listener whose accept queue is full hangs (${filled} connects completed)`);
  }
  return { port, stop };
}

test('an https connector at a slowly resolving name whose connect hangs fails within its connect timeout, not the lookup\'s time plus it', async (t) => {
  const shim = path.join(path.dirname(gatewayBin()), 'tests', 'slowdns.so');
  assert.ok(fs.existsSync(shim), `${shim} (make unit-bins builds it)`);
  const LOOKUP_MS = 3000;
  const CONNECT_MS = 3500;
  const dir = await makeTempDir();
  const log = path.join(dir, 'lookups');
  const hang = await hangingPort();
  const asan = process.env.ASAN_OPTIONS ?? 'detect_leaks=1:abort_on_error=0:exitcode=23';
  let gw;
  try {
    gw = await startGateway({
      args: ['--workers', '1'],
      env: { LD_PRELOAD: shim, SLOWDNS_MS: String(LOOKUP_MS), SLOWDNS_LOG: log, ASAN_OPTIONS: `${asan}:verify_asan_link_order=0` },
    });
    const acme = await setupTenant(gw, { id: 'acme', users: ['alice@acme.com'] });
    const url = `https://x.late.test:${hang.port}/mcp`;
    // (the PUT's capability probe looks the name up and connects too; the
    // call below measures its own time from its own start, which the probe
    // cannot lengthen: the engine shares a finished lookup's addresses)
    const alice = (await acme.mintToken('alice@acme.com')).token;
    const r = await acme.putConnector('late', { url, auth: { type: 'none' }, timeouts: { connect_ms: CONNECT_MS } });
    assert.equal(r.status, 201, r.body);
    const from = gw.logs().length;
    const t0 = Date.now();
    const res = await mcpPost(acme.mcpUrl('late'), initializeBody(1), { token: alice, timeoutMs: 30000 });
    const took = Date.now() - t0;
    t.diagnostic(`the call failed after ${took} ms: ${res.body.slice(0, 200)}`);
    const err = res.messages?.find((m) => m.id === 1)?.error;
    assert.ok(err || res.status >= 500, `the call fails at its upstream: ${res.status} ${res.body.slice(0, 300)}`);
    // "timed out": the call's own connect ran out of time (the PUT's
    // capability probe made the same slow lookup and hanging connect a
    // moment earlier: its timed-out socket no longer fails the call's at
    // once — the next test)
    assert.match(err?.message ?? res.body, /timed out/i, `a connect timeout: ${res.body.slice(0, 300)}`);
    // the name was looked up (slowly) and resolved, so what timed out is
    // the connect: the log does not blame the lookup
    assert.ok(fs.readFileSync(log, 'utf8').split('\n').filter(Boolean).length >= 1, 'the late name was looked up');
    const logs = gw.logs().slice(from);
    assert.ok(!logs.some((e) => /name lookup of x\.late\.test/.test(e.msg ?? '')), 'the lookup finished in time');
    // The bound: the lookup takes LOOKUP_MS (3 s), then the connect hangs
    // until the connect timeout, 3.5 s from the call's start, ends it.
    // Before the fix curl's clock started again after the lookup: 3 + 3.5
    // = 6.5 s. The bound is halfway between the two (5 s), so 1.5 s of
    // delay (a loaded CI machine, ASan) either way still tells them apart.
    const bound = CONNECT_MS + LOOKUP_MS / 2;
    assert.ok(took < bound,
      `failed in ${took} ms: within the connect timeout (${CONNECT_MS} ms), not lookup + connect timeout ` +
      `(${LOOKUP_MS + CONNECT_MS} ms); bound ${bound} ms`);
    // and it did wait for the slow lookup (the probe's, begun a moment
    // earlier, may have ended it a little sooner)
    assert.ok(took >= LOOKUP_MS - 500, `failed in ${took} ms, after the lookup's ${LOOKUP_MS} ms`);
  } finally {
    await gw?.stop('SIGTERM', { timeoutMs: 30000 });
    hang.stop();
  }
});

// A gateway, tenant acme (alice) and connector "hang" at an https port
// whose connects hang (hangingPort) with connect_ms; run(f) gets
// call() → the error message of one initialize through it.
async function withHangingConnector(connectMs, run) {
  const hang = await hangingPort();
  let gw;
  try {
    gw = await startGateway({ args: ['--workers', '1'] });
    const acme = await setupTenant(gw, { id: 'acme', users: ['alice@acme.com'] });
    const alice = (await acme.mintToken('alice@acme.com')).token;
    const r = await acme.putConnector('hang', { url: `https://127.0.0.1:${hang.port}/mcp`, auth: { type: 'none' }, timeouts: { connect_ms: connectMs } });
    assert.equal(r.status, 201, r.body);
    await run(async () => {
      const res = await mcpPost(acme.mcpUrl('hang'), initializeBody(1), { token: alice, timeoutMs: 60000 });
      return res.messages?.find((m) => m.id === 1)?.error?.message ?? `${res.status} ${res.body.slice(0, 200)}`;
    });
  } finally {
    await gw?.stop('SIGTERM', { timeoutMs: 30000 });
    hang.stop();
  }
}

// curl 7.88 closes a socket whose connect timed out without calling
// CURLOPT_CLOSESOCKETFUNCTION: the engine's socket table kept the closed fd
// as its own, and the next socket() given that number (the lowest free one:
// usually the very next upstream socket, of any tenant) was refused — that
// transfer failed at once, "could not connect ... after 0 ms", and again for
// as long as the stale entry stayed. Found by review (writing the test
// above). Now the stale entry goes and the new socket is used.
test('after a connect timeout, the next connects are made (each times out on its own), not refused at once', async () => {
  await withHangingConnector(500, async (call) => {
    const messages = [];
    for (let i = 0; i < 3; i++) messages.push(await call());
    for (const m of messages) assert.match(m, /timed out/i, `every call's connect timed out on its own: ${JSON.stringify(messages)}`);
  });
});

// A burst of calls to one https upstream waits for the first connection
// (CURLOPT_PIPEWAIT: HTTP/2 multiplexes them on it) — and curl runs no
// connect timeout while a transfer waits so: behind a connect that hangs
// the waiters took turns, the n-th failing after n connect timeouts (six
// calls at 1 s each failed at 1, 2, ... 6 s; a hundred employees' calls at
// an unreachable upstream, the last after 100 connect timeouts). Found by
// review. The engine's connect timer now bounds the whole wait.
test('calls at once to an https upstream whose connects hang each fail within one connect timeout, not in turns', async () => {
  const CONNECT_MS = 2000;
  await withHangingConnector(CONNECT_MS, async (call) => {
    const t0 = Date.now();
    const ends = await Promise.all(Array.from({ length: 6 }, async () => {
      const msg = await call();
      assert.match(msg, /timed out/i, `each call's connect timed out: ${msg}`);
      return Date.now() - t0;
    }));
    ends.sort((a, b) => a - b);
    // in turns, the answers came a connect timeout apart (2, 4, ... 12 s);
    // now together: the spread between the first and the last is under one
    // connect timeout, however slow the machine
    assert.ok(ends[ends.length - 1] - ends[0] < CONNECT_MS,
      `the six calls failed together, not one connect timeout after another: ${ends.join(', ')} ms`);
  });
});
