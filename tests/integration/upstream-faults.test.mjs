// Fault injection: a misbehaving upstream (lib/faulty-upstream.mjs) behind
// the real gateway. One connector per fault (its URL selects the fault),
// one healthy connector (`good`), small connector timeouts. Each case calls
// the faulty connector's `fault` tool as alice through the aggregated
// endpoint with the official SDK client and asserts what the gateway
// answers: a JSON-RPC error with the right code whose message names the
// connector and the problem without leaking the connector's credential or
// the upstream's address — while bob's call to the healthy connector
// succeeds during the fault. Times are bounded by the gateway's own
// timeouts (the connectors' connect/first-byte/idle timeouts, and
// upstream_event_timeout_ms — the trickle connector's own timeouts.event_ms
// overriding it); the SDK's request timeout (-32001) would mean the gateway
// never answered. No case asserts a wall-clock duration. The independent
// cases run concurrently; the 50 MB one runs alone (it measures RSS).
// ci-variants: build-w1 build-asan-w2 (one loop and two under ASan: the faults are per transfer)
import { test, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { request, startGateway } from './lib/gateway.mjs';
import {
  setupTenant, connectClient, toolText, rawSession, mcpPost, initializeBody, assertRpcError, show, sleep, waitFor,
} from './lib/mcp.mjs';
import { listAllTools } from './lib/agg.mjs';
import { startFaultyUpstream, BIG_BYTES } from './lib/faulty-upstream.mjs';

const SECRET = 'Bearer faulty-upstream-secret-5ec7e7';
const TIMEOUTS = { connect_ms: 1000, first_byte_ms: 1500, idle_ms: 1500 };
const UPSTREAM_DOWN = -32002;
const UPSTREAM_AUTH = -32006;
const SDK_TIMEOUT = -32001; // the SDK gave up: the gateway never answered

let gw, up, t, aggUrl, tokens;
const CONNECTORS = ['good', 'hang', 'reset', 'trickle', 'big', 'badjson', 'badsse', 'noterm', 'getclose', 'deny', 'surrogate', 'steady', 'bloat'];
// everyone may use every tool, except `hidden` of the surrogate connector
const POLICY = {
  version: 1, default: 'block',
  rules: [{ groups: ['*'], connector: '*', allow: ['*'] }, { groups: ['*'], connector: 'surrogate', block: ['hidden'] }],
};

before(async () => {
  [gw, up] = await Promise.all([startGateway({ args: ['--upstream-event-timeout-ms', '2000'] }), startFaultyUpstream()]);
  t = await setupTenant(gw, { policy: POLICY });
  const refusedUrl = await up.closedPortUrl();
  const puts = [...CONNECTORS.map((m) => [m, up.url(m)]), ['refused', refusedUrl]].map(async ([name, url]) => {
    const timeouts = name === 'trickle' ? { ...TIMEOUTS, event_ms: 1500 } : name === 'steady' ? { ...TIMEOUTS, event_ms: 800 } : TIMEOUTS;
    const r = await t.putConnector(name, { url, description: `faulty ${name}`, auth: { type: 'header', name: 'Authorization', value: SECRET }, timeouts });
    assert.equal(r.status, 201, `PUT connector ${name}: ${r.status} ${r.body}`);
  });
  await Promise.all(puts);
  tokens = {};
  for (const u of ['alice@acme.com', 'bob@acme.com']) {
    const m = await t.mintToken(u);
    assert.equal(m.status, 201, `mint ${u}: ${m.body}`);
    tokens[u.split('@')[0]] = m.token;
  }
  aggUrl = `${gw.url}/t/acme/mcp`;
});

/** Nothing of the connector's credential or the upstream's address in text. */
function assertNoLeak(text, what) {
  const s = String(text);
  assert.ok(!s.includes('faulty-upstream-secret'), `${what} leaks the connector's credential: ${s}`);
  assert.ok(!s.includes(`127.0.0.1:${up.port}`) && !s.includes(`:${up.port}/`), `${what} leaks the upstream's address: ${s}`);
  assert.ok(!/resource_metadata|faulty-upstream"|realm=/i.test(s), `${what} relays the upstream's challenge: ${s}`);
}

/** alice calls <mode>__fault through the aggregated endpoint; resolves the SDK error (fails on a result). */
async function faultCall(mode, { timeout = 10000 } = {}) {
  const c = await connectClient(aggUrl, tokens.alice);
  try {
    const res = await c.client.callTool({ name: `${mode}__fault`, arguments: {} }, undefined, { timeout }).then(
      (r) => ({ result: r }), (e) => ({ error: e }));
    return res;
  } finally {
    await c.close();
  }
}

/** bob's call to the healthy connector succeeds (run while a fault is in progress). */
async function healthyCall(tag) {
  const c = await connectClient(aggUrl, tokens.bob);
  try {
    const r = await c.client.callTool({ name: 'good__echo', arguments: { message: tag } }, undefined, { timeout: 10000 });
    assert.equal(toolText(r), `good:echo ${tag}`, `bob's call to the healthy connector during the ${tag} fault`);
  } finally {
    await c.close();
  }
}

/** The fault call's outcome is a gateway JSON-RPC error: code, connector named, message matching re, no leak. */
function assertGatewayError(out, mode, { code = UPSTREAM_DOWN, message } = {}) {
  assert.ok(!out.result, `${mode}: the call must fail, got a result ${JSON.stringify(out.result)}`);
  const e = out.error;
  assert.notEqual(e.code, SDK_TIMEOUT, `${mode}: the gateway never answered (the SDK's own timeout fired): ${e.message}`);
  assert.equal(e.code, code, `${mode}: JSON-RPC error code: ${e.message}`);
  assert.match(e.message, new RegExp(`"?${mode}"?`), `${mode}: the message names the connector: ${e.message}`);
  if (message) assert.match(e.message, message, `${mode}: the message names the problem: ${e.message}`);
  assertNoLeak(e.message, `${mode}: error message`);
  return e;
}

/** Runs alice's fault call; once the upstream has it (or at once: wait=false), bob's healthy call. */
async function duringFault(mode, { wait = true, ...opts } = {}) {
  const call = faultCall(mode, opts);
  if (wait) await waitFor(() => up.calls(mode) >= 1, { timeoutMs: 8000, what: `the ${mode} upstream to get the call` });
  await healthyCall(mode);
  return call;
}

/** True when the process runs with AddressSanitizer (its quarantine keeps freed memory: RSS says nothing). */
function sanitized(pid) {
  return /libasan|libclang_rt\.asan/.test(fs.readFileSync(`/proc/${pid}/maps`, 'utf8')) || /asan/.test(process.env.MCPGATE_BIN ?? '');
}

/** VmRSS and VmHWM (peak) of a process, in kB. */
function memKb(pid) {
  const st = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return { rss: Number(/VmRSS:\s+(\d+) kB/.exec(st)[1]), hwm: Number(/VmHWM:\s+(\d+) kB/.exec(st)[1]) };
}

async function assertUp() {
  const r = await request(gw.port, { path: '/healthz', timeoutMs: 3000 });
  assert.equal(r.status, 200, `gateway /healthz: ${r.status}`);
}

// Found by review: a reply the scans cannot vouch for is parsed, and a
// parse takes up to ~80 times the text (1.1 GiB for a 16 MiB reply of empty
// objects) on the loop every tenant shares. The parse is refused past
// GW_JSON_TREE_MAX (64 MiB of tree, estimated from the text first).
test('a reply whose parse would take ~300 MB for 4 MB of text: refused, memory stays bounded', async () => {
  const pid = gw.proc.pid;
  const before = memKb(pid);
  const out = await faultCall('bloat', { timeout: 30000 });
  assert.ok(!out.result, `bloat: the call must fail, got a result of ${JSON.stringify(out.result ?? '').length} bytes`);
  assertGatewayError(out, 'bloat', { message: /invalid response|too complex/ });
  if (!sanitized(pid)) {
    const grew = memKb(pid).hwm - before.hwm;
    assert.ok(grew < 150 * 1024, `peak RSS grew ${grew} kB for a 4 MB reply (a jansson tree of it is ~300 MB)`);
  }
  await assertUp();
});

// The 50 MB case runs alone, so the RSS it measures is its own.
test('a 50 MB answer: refused as too large, the gateway\'s memory stays bounded', async (tc) => {
  await healthyCall('warm-up'); // the loop's steady state before measuring
  const before = memKb(gw.proc.pid);
  const out = await duringFault('big');
  assertGatewayError(out, 'big', { message: /larger than the gateway accepts/ });
  await waitFor(() => up.bytesSent('big') !== undefined, { timeoutMs: 5000, what: 'the big writer to stop' });
  assert.ok(up.bytesSent('big') < BIG_BYTES, `the gateway stopped reading before the end (${up.bytesSent('big')} of ${BIG_BYTES} bytes)`);
  let after = memKb(gw.proc.pid);
  if (sanitized(gw.proc.pid)) {
    tc.diagnostic(`sanitizer build: RSS not asserted (before ${before.rss} kB, after ${after.rss} kB, peak ${after.hwm} kB)`);
    await assertUp();
    return;
  }
  // the answer's buffer goes when its transfer is torn down, which can be a
  // loop turn after the error reached the client (a clean-clone CI run
  // sampled 18 MB there once): memory that is given back within a few
  // seconds is not kept
  await waitFor(() => (after = memKb(gw.proc.pid)).rss - before.rss < 16 * 1024,
    { timeoutMs: 5000, what: 'the gateway\'s RSS to come back within 16 MB of before' }).catch(() => {});
  const growthMb = (after.rss - before.rss) / 1024;
  const peakMb = (after.hwm - before.rss) / 1024;
  // what is kept: nothing of the answer; at the peak, at most the 16 MiB reply cap (and a copy while it grows)
  assert.ok(growthMb < 16, `gateway RSS grew by ${growthMb.toFixed(1)} MB over a 50 MB answer (before ${before.rss} kB, after ${after.rss} kB)`);
  assert.ok(peakMb < 36, `gateway peak RSS rose by ${peakMb.toFixed(1)} MB over a 50 MB answer (before ${before.rss} kB, peak ${after.hwm} kB)`);
  await assertUp();
});

describe('faults, concurrently', { concurrency: true }, () => {
  test('connections refused (port closed) → -32002 naming the connector', async () => {
    const out = await duringFault('refused', { wait: false });
    assertGatewayError(out, 'refused', { message: /unavailable/ });
    // the direct endpoint too
    const r = await mcpPost(t.mcpUrl('refused'), initializeBody(), { token: tokens.alice });
    const e = assertRpcError(r, { codes: [UPSTREAM_DOWN], message: /refused/, what: 'direct initialize' });
    assertNoLeak(e.message, 'direct initialize error');
  });

  test('reset mid-response → -32002, the client is not left waiting', async () => {
    const out = await duringFault('reset');
    assertGatewayError(out, 'reset', { message: /reset or closed mid-response/ });
  });

  test('hangs before sending headers → first_byte_ms → -32002', async () => {
    const out = await duringFault('hang');
    assertGatewayError(out, 'hang', { message: /in time|first byte|unavailable/ });
  });

  test('trickles an SSE answer one byte per second → bounded, -32002', async () => {
    const out = await duringFault('trickle');
    assertGatewayError(out, 'trickle', { message: /without a reply: .*(slow|in time)/ });
  });

  // Found by review: the relay marked a message pending once and never
  // again while bytes stayed held, so a stream whose every read ended inside
  // an event died at event_ms though an event ended every ~100 ms.
  test('a steady SSE stream whose reads never end on an event boundary: not "too slow", the answer arrives', async () => {
    const out = await faultCall('steady', { timeout: 30000 });
    assert.ok(out.result, `steady: the call must succeed, got ${out.error?.code} ${out.error?.message}`);
    assert.equal(toolText(out.result), 'steady:fault answered');
  });

  test('invalid JSON → -32002 "invalid response"', async () => {
    const out = await duringFault('badjson');
    assertGatewayError(out, 'badjson', { message: /invalid/ });
  });

  test('an SSE event whose data is not JSON, then the end → -32002', async () => {
    const out = await duringFault('badsse');
    assertGatewayError(out, 'badsse', { message: /invalid response/ });
  });

  test('a tool list in JSON a strict parser refuses: the policy still hides the blocked tool', async () => {
    // direct endpoint: the list is filtered, or refused — never relayed unfiltered
    const s = await rawSession(t.mcpUrl('surrogate'), tokens.alice);
    const r = await s.request('tools/list');
    assert.ok(!r.body.includes('"hidden"'), `direct tools/list relays a tool the policy blocks: ${show(r)}`);
    // aggregated endpoint
    const c = await connectClient(aggUrl, tokens.alice);
    try {
      const names = (await listAllTools(c)).tools.map((x) => x.name);
      assert.ok(!names.includes('surrogate__hidden'), `aggregated tools/list shows a blocked tool: ${names.join(', ')}`);
      assert.ok(names.includes('good__echo'), `the healthy connector's tools are listed: ${names.join(', ')}`);
    } finally {
      await c.close();
    }
  });

  test('an SSE event without its terminator, then the end → -32002', async () => {
    const out = await duringFault('noterm');
    assertGatewayError(out, 'noterm', { message: /without a reply/ });
    // the direct endpoint relays the same stream: its end carries the error too
    const s = await rawSession(t.mcpUrl('noterm'), tokens.alice);
    const r = await s.request('tools/call', { name: 'fault', arguments: {} });
    assert.equal(r.status, 200, show(r));
    const e = assertRpcError(r, { codes: [UPSTREAM_DOWN], message: /noterm.*without a reply/, what: 'direct tools/call' });
    assertNoLeak(e.message, 'direct error');
  });

  test('closes the GET stream again and again: the gateway backs off', async () => {
    const c = await connectClient(aggUrl, tokens.alice);
    try {
      // the call opens the upstream session; the client's GET stream then feeds from its GET
      const r = await c.client.callTool({ name: 'getclose__echo', arguments: { message: 'x' } }, undefined, { timeout: 10000 });
      assert.equal(toolText(r), 'getclose:echo x');
      await waitFor(() => up.gets('getclose') >= 1, { timeoutMs: 5000, what: 'the first upstream GET' });
      const n0 = up.gets('getclose');
      await healthyCall('getclose');
      await sleep(4000);
      const opens = up.gets('getclose') - n0;
      // 4 s of an upstream that ends every GET at once: a fixed 100 ms retry
      // would open ~40; backing off it is a handful
      assert.ok(opens <= 10, `the gateway reopened the upstream GET ${opens} times in 4 s (a reconnect storm)`);
      assert.ok(opens >= 1, `the gateway still reconnects (${opens})`);
    } finally {
      await c.close();
    }
  });

  test('401 with the upstream\'s own WWW-Authenticate → -32006, the challenge is not relayed', async () => {
    const out = await duringFault('deny', { wait: false });
    assertGatewayError(out, 'deny', { code: UPSTREAM_AUTH, message: /credential/ });
    // raw: no HTTP 401, no WWW-Authenticate, on both endpoints
    for (const [what, url] of [['aggregated', aggUrl], ['direct', t.mcpUrl('deny')]]) {
      const s = what === 'direct' ? null : await rawSession(url, tokens.alice);
      const r = s ? await s.request('tools/call', { name: 'deny__fault', arguments: {} })
        : await mcpPost(url, initializeBody(), { token: tokens.alice });
      assert.notEqual(r.status, 401, `${what}: the client must not get the upstream's 401 (it would start OAuth at the gateway): ${show(r)}`);
      assert.equal(r.headers['www-authenticate'], undefined, `${what}: the upstream's WWW-Authenticate is not relayed`);
      const e = assertRpcError(r, { codes: [UPSTREAM_AUTH], message: /deny/, what: `${what} with a 401 upstream` });
      assertNoLeak(e.message + JSON.stringify(r.headers) + r.body, `${what} reply`);
    }
  });
});

test('after every fault the gateway serves a full session', async () => {
  await assertUp();
  await healthyCall('after');
});
