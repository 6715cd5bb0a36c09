// A JSON-RPC batch on the aggregated endpoint runs each of its (up to 100)
// messages as its own exchange, each with its own upstream transfer, all at
// once. Before this test's fix the batch took one of the user's
// mcp_concurrent_per_user units, whatever it held: one employee with a
// limit of 3 held 3 x 100 upstream connections with calls of a slow tool,
// the descriptors the limit exists to keep for everyone else. A batch now
// takes one unit per message before anything runs (429 when they do not
// fit, like a GET stream whose feeds do not), and gives them back with its
// answer. And a batch whose client left kept its calls running upstream
// (each element answered into the batch, not to a client): with its units
// back, the client could send the next batch and leave again, without
// bound. Its calls now end with it. Upstream: lib/ctl-upstream.mjs.
import http from 'node:http';
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { startGateway, waitFor, scrapeMetrics, metricValue } from './lib/gateway.mjs';
import { setupTenant, rawSession, mcpHeaders } from './lib/mcp.mjs';
import { startCtlUpstream } from './lib/ctl-upstream.mjs';

const call = (id, name, args = {}) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: args } });

test('a batch counts one of mcp_concurrent_per_user per message; one that does not fit is 429 before anything runs', async () => {
  const gw = await startGateway({ args: ['--mcp-concurrent-per-user', '3'] });
  let release = () => {};
  try {
    const t = await setupTenant(gw, { users: ['alice@acme.com', 'bob@acme.com'] });
    const up = await startCtlUpstream({ name: 'one', capabilities: { tools: {} } });
    assert.equal((await t.putConnector('one', { url: up.url, auth: { type: 'none' } })).status, 201);
    const tok = (await t.mintToken('alice@acme.com')).token;
    const agg = `${gw.url}/t/acme/mcp`;
    const s = await rawSession(agg, tok, { protocolVersion: '2025-03-26' });
    assert.equal((await s.request('tools/call', { name: 'one__echo', arguments: { message: 'hi' } })).status, 200);
    release = up.hold((m) => m.method === 'tools/call' && m.params?.name === 'slow');
    const slow = () => up.rpc('tools/call').filter((e) => e.json.params?.name === 'slow').length;

    // six calls in flight would be six upstream connections on one unit of three
    const bigP = s.post([1, 2, 3, 4, 5, 6].map((i) => call(i, 'one__slow', { ms: 1 })));
    const went = up.waitRequest((e) => e.json?.params?.name === 'slow', 10000).then(() => 'upstream', () => 'none');
    const first = await Promise.race([bigP.then(() => 'answer'), went]);
    if (first === 'upstream') await waitFor(() => slow() === 6, { timeoutMs: 5000, what: 'the batch\'s calls upstream' });
    assert.equal(first, 'answer', `a batch of six with a limit of three sent ${slow()} calls upstream at once`);
    const big = await bigP;
    assert.equal(big.status, 429, `a batch of six with a limit of three: ${big.status} ${big.body}`);
    assert.match(big.headers['retry-after'] ?? '', /^[1-9][0-9]*$/);
    assert.match(big.body, /mcp_concurrent_per_user/);
    assert.equal(slow(), 0, 'nothing of the refused batch went upstream');

    // a batch that fits runs, and holds its units while its calls run
    const pending = s.post([call(7, 'one__slow', { ms: 1 }), call(8, 'one__slow', { ms: 1 })]);
    await waitFor(() => slow() === 2, { timeoutMs: 5000, what: 'both calls of the batch upstream' });
    const third = await s.request('tools/call', { name: 'one__echo', arguments: { message: 'x' } });
    assert.equal(third.status, 200, 'the third unit is left for one call');
    await waitFor(async () => (await s.request('ping', {})).status === 200, { timeoutMs: 5000, what: 'a unit for a ping' });
    const fourth = await s.post([{ jsonrpc: '2.0', id: 9, method: 'ping' }, { jsonrpc: '2.0', id: 10, method: 'ping' }]);
    assert.equal(fourth.status, 429, 'two more do not fit while the batch runs');
    release();
    const r = await pending;
    assert.equal(r.status, 200, r.body);
    assert.equal(r.messages.length, 2);
    // its units came back with its answer
    const again = await s.post([call(11, 'one__echo', { message: 'a' }), call(12, 'one__echo', { message: 'b' }), call(13, 'one__echo', { message: 'c' })]);
    assert.equal(again.status, 200, again.body);
    assert.equal(again.messages.length, 3);
  } finally {
    release();
    await gw.stop();
  }
});

test('a batch whose client leaves ends its calls upstream', async () => {
  const gw = await startGateway({ args: ['--mcp-concurrent-per-user', '3'] });
  let release = () => {};
  try {
    const t = await setupTenant(gw, { users: ['alice@acme.com', 'bob@acme.com'] });
    const up = await startCtlUpstream({ name: 'one', capabilities: { tools: {} } });
    assert.equal((await t.putConnector('one', { url: up.url, auth: { type: 'none' } })).status, 201);
    const tok = (await t.mintToken('alice@acme.com')).token;
    const agg = `${gw.url}/t/acme/mcp`;
    const s = await rawSession(agg, tok, { protocolVersion: '2025-03-26' });
    assert.equal((await s.request('tools/call', { name: 'one__echo', arguments: { message: 'hi' } })).status, 200);
    release = up.hold((m) => m.method === 'tools/call' && m.params?.name === 'slow');
    const slow = () => up.rpc('tools/call').filter((e) => e.json.params?.name === 'slow').length;
    const open = async () => metricValue(await scrapeMetrics(gw), 'mcpgate_upstream_transfers_open');

    const body = JSON.stringify([1, 2, 3].map((i) => call(i, 'one__slow', { ms: 1 })));
    const u = new URL(agg);
    // the echo's unit goes back when its request has ended on the gateway,
    // which may be a moment after the client read its answer: a batch that
    // meets it still held is 429 (the limit at work) and is sent again
    let req, refused = false;
    const send = () => {
      refused = false;
      req = http.request({
        host: u.hostname, port: u.port, method: 'POST', path: u.pathname, agent: false,
        headers: { ...mcpHeaders({ token: tok, sessionId: s.sessionId, protocolVersion: s.protocolVersion }), 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
      }, (res) => { if (res.statusCode === 429) refused = true; res.resume(); });
      req.on('error', () => {});
      req.end(body);
    };
    send();
    await waitFor(() => {
      if (refused) send();
      return slow() === 3;
    }, { timeoutMs: 10000, intervalMs: 50, what: 'the batch\'s calls upstream' });
    assert.equal(await open(), 3);
    req.destroy(); // the client leaves
    await waitFor(async () => (await open()) === 0, { timeoutMs: 5000, what: 'the batch\'s upstream calls ended with its client' });
    // and its units are back
    const again = await s.post([call(4, 'one__echo', { message: 'a' }), call(5, 'one__echo', { message: 'b' }), call(6, 'one__echo', { message: 'c' })]);
    assert.equal(again.status, 200, again.body);
  } finally {
    release();
    await gw.stop();
  }
});
