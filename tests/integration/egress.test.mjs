// ci-variants: build-w1 build-asan-w2 (one loop plain, two loops under ASan; the plain two-loop run only repeated it — CI's 15 minutes)
// Egress policy against SSRF (issue 12, item 2): connector URLs set by a
// tenant admin reach only public addresses unless the operator lists more in
// egress_allow. These gateways start WITHOUT the harness's loopback
// egress_allow (egressAllow: null), except where a test says otherwise.
//
//   - literal non-public addresses are refused at connector PUT (400 naming
//     egress_allow), nothing stored, nothing contacted;
//   - a host name that resolves to loopback (localhost) passes the PUT and is
//     refused at connect time: a JSON-RPC error naming the connector, and
//     the upstream never sees a connection;
//   - an upstream's 3xx is neither followed nor relayed (no Location, no body);
//   - a connector PUT that changes the URL (or a DELETE and re-create) ends
//     the connector's live exchanges and sessions: no upstream session id
//     issued by the old server ever reaches the new one;
//   - the config keys: bad entries refuse the start, naming the key.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { startGateway, runGateway, request, parsePrometheus, metricValue, waitFor, sleep } from './lib/gateway.mjs';
import { operatorToken } from './lib/admin.mjs';
import {
  startEverything, startRecorder, setupTenant, rawSession, openStream, mcpHeaders, initializeBody, mcpPost,
  assertRpcError, show, toolText, connectClient,
} from './lib/mcp.mjs';

const closers = [];
after(async () => { for (const c of closers.reverse()) await c(); });

/** A TCP server on 127.0.0.1 that counts connections and bytes and answers nothing useful. */
async function startTrap() {
  const st = { connections: 0, bytes: 0 };
  const socks = new Set();
  const srv = net.createServer((s) => {
    st.connections++;
    socks.add(s);
    s.on('data', (d) => { st.bytes += d.length; s.end('HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 24\r\n\r\n{"internal":"SECRET-42"}'); });
    s.on('error', () => {});
    s.on('close', () => socks.delete(s));
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  st.port = srv.address().port;
  const close = () => new Promise((r) => { for (const s of socks) s.destroy(); srv.close(() => r()); });
  closers.push(close);
  return st;
}

async function scrape(gw) {
  const r = await request(gw.port, { path: '/metrics', headers: { authorization: `Bearer ${operatorToken(gw.dataDir)}` } });
  assert.equal(r.status, 200, `GET /metrics: ${r.status} ${r.body}`);
  return parsePrometheus(r.body);
}

test('connector PUT with a literal non-public address → 400 naming egress_allow; nothing stored or contacted', async () => {
  const trap = await startTrap();
  const gw = await startGateway({ egressAllow: null });
  const t = await setupTenant(gw, { users: ['alice@acme.com'] });
  const urls = [
    `http://127.0.0.1:${trap.port}/mcp`,
    `http://127.1:${trap.port}/mcp`,
    'http://10.20.30.40/mcp',
    'http://192.168.1.10:8080/mcp',
    'http://169.254.169.254/latest/meta-data/',
    `http://[::ffff:127.0.0.1]:${trap.port}/mcp`,
    `http://[::1]:${trap.port}/mcp`,
    'http://[fd00:ec2::254]/latest/meta-data/',
    'http://0.0.0.0:80/mcp',
  ];
  for (const [i, url] of urls.entries()) {
    const r = await t.putConnector(`ssrf${i}`, { url, description: 'internal', auth: { type: 'none' } });
    assert.equal(r.status, 400, `PUT ${url}: expected 400, got ${show(r)}`);
    assert.equal(r.json?.error, 'egress_refused', `PUT ${url}: error code: ${r.body}`);
    assert.match(r.json.message, /egress_allow/, `PUT ${url}: the message names the key to set: ${r.body}`);
    const g = await t.admin('GET', `/connectors/ssrf${i}`);
    assert.equal(g.status, 404, `PUT ${url} stored nothing: ${show(g)}`);
  }
  await sleep(200);
  assert.equal(trap.connections, 0, 'the internal server never saw a connection');
  await gw.stop();
});

test('oauth connector PUT: a literal non-public token or revocation URL is refused (the gateway fetches them)', async () => {
  const gw = await startGateway({ egressAllow: null });
  const t = await setupTenant(gw, { users: ['alice@acme.com'] });
  const base = { type: 'oauth', authorize_url: 'https://auth.example.com/authorize', token_url: 'https://auth.example.com/token', client_id: 'c', client_secret: 's' };
  for (const [field, auth] of [
    ['auth.token_url', { ...base, token_url: 'http://169.254.169.254/latest/meta-data/' }],
    ['auth.revocation_url', { ...base, revocation_url: 'http://10.1.2.3/revoke' }],
  ]) {
    const r = await t.putConnector('crm', { url: 'https://crm.example.com/mcp', auth });
    assert.equal(r.status, 400, `${field}: ${show(r)}`);
    assert.equal(r.json?.error, 'egress_refused', r.body);
    assert.match(r.json.message, new RegExp(`"${field.replace('.', '\\.')}".*egress_allow`), r.body);
    assert.equal((await t.admin('GET', '/connectors/crm')).status, 404, 'nothing stored');
  }
  // the authorize URL is only the browser's: a private one is the admin's business
  const ok = await t.putConnector('crm', { url: 'https://crm.example.com/mcp', auth: { ...base, authorize_url: 'https://10.0.0.5/authorize' } });
  assert.equal(ok.status, 201, show(ok));
  await gw.stop();
});

test('egress_allow lets the operator list internal addresses; tenants cannot widen it', async () => {
  const trap = await startTrap();
  const gw = await startGateway({ egressAllow: null, args: ['--egress-allow', '127.0.0.0/8'] });
  const t = await setupTenant(gw, { users: ['alice@acme.com'] });
  let r = await t.putConnector('listed', { url: `http://127.0.0.1:${trap.port}/mcp`, description: 'x', auth: { type: 'none' } });
  assert.equal(r.status, 201, `a listed address is accepted: ${show(r)}`);
  r = await t.putConnector('unlisted', { url: 'http://10.0.0.1/mcp', description: 'x', auth: { type: 'none' } });
  assert.equal(r.status, 400, `an address outside the list is still refused: ${show(r)}`);
  assert.match(r.json.message, /egress_allow/, r.body);
  // nothing in the connector body can change the policy
  r = await t.putConnector('sneaky', { url: 'http://10.0.0.1/mcp', description: 'x', auth: { type: 'none' }, egress_allow: '0.0.0.0/0' });
  assert.equal(r.status, 400, show(r));
  assert.doesNotMatch(r.body, /"created"/, r.body);
  await gw.stop();
});

test('a host name resolving to loopback (localhost): refused at connect time, the upstream receives nothing', async () => {
  const trap = await startTrap();
  const gw = await startGateway({ egressAllow: null });
  const t = await setupTenant(gw, { users: ['alice@acme.com'] });
  const r = await t.putConnector('local', { url: `http://localhost:${trap.port}/mcp`, description: 'x', auth: { type: 'none' } });
  assert.equal(r.status, 201, `a host name passes the PUT (judged at connect time): ${show(r)}`);
  const tok = (await t.mintToken('alice@acme.com')).token;

  // single-connector endpoint: initialize goes upstream and is refused
  const init = await mcpPost(t.mcpUrl('local'), initializeBody(1), { token: tok });
  const e = assertRpcError(init, { id: 1, codes: [-32002], message: /connector "local"/, what: 'initialize via localhost' });
  assert.match(e.message, /egress/, `the error says why: ${JSON.stringify(e)}`);
  assert.doesNotMatch(init.body, /SECRET-42|internal/, 'nothing of the internal server reaches the client');

  // aggregated endpoint: tools/call routed to the connector
  const agg = `${gw.url}/t/${t.id}/mcp`;
  const s = await rawSession(agg, tok);
  const call = await s.request('tools/call', { name: 'local__echo', arguments: { message: 'x' } });
  assertRpcError(call, { codes: [-32002], message: /connector "local"/, what: 'aggregated tools/call via localhost' });
  assert.doesNotMatch(call.body, /SECRET-42/, call.body);

  await sleep(200);
  assert.equal(trap.connections, 0, `the loopback server never saw a connection (got ${trap.connections})`);
  const m = await scrape(gw);
  assert.ok(metricValue(m, 'mcpgate_upstream_transfer_errors_total', { kind: 'egress' }) >= 2,
    'refusals are counted under their own kind');
  const line = gw.logs().find((l) => /connector local/.test(l.msg ?? '') && /egress|not public/.test(JSON.stringify(l)));
  assert.ok(line, 'the refusal is logged with the connector and the reason');
  await gw.stop();
});

test('a literal address stored while allowed is refused at call time once the operator narrows egress_allow', async () => {
  const trap = await startTrap();
  const g1 = await startGateway(); // loopback allowed
  const t = await setupTenant(g1, { users: ['alice@acme.com'] });
  const r = await t.putConnector('was-ok', { url: `http://127.0.0.1:${trap.port}/mcp`, description: 'x', auth: { type: 'none' } });
  assert.equal(r.status, 201, show(r));
  const tok = (await t.mintToken('alice@acme.com')).token;
  await g1.stop();
  await sleep(100);
  const before = trap.connections; // the capability probe after the PUT may have connected
  const g2 = await startGateway({ dataDir: g1.dataDir, egressAllow: null });
  const init = await mcpPost(`${g2.url}/t/${t.id}/mcp/was-ok`, initializeBody(1), { token: tok });
  const e = assertRpcError(init, { id: 1, codes: [-32002], message: /connector "was-ok"/, what: 'initialize to 127.0.0.1' });
  assert.match(e.message, /egress/, JSON.stringify(e));
  assert.doesNotMatch(init.body, /SECRET-42/, init.body);
  await sleep(200);
  assert.equal(trap.connections, before, 'no new connection reached the internal server');
  await g2.stop();
});

test('a connector whose upstream redirects: the 3xx is not followed and its Location never reaches the client', async () => {
  const target = await startTrap(); // where the Location points: must never be contacted
  const location = `http://127.0.0.1:${target.port}/latest/meta-data/iam`;
  let hits = 0;
  // A minimal upstream: initialize works (so a session exists), everything else is a 302.
  const up = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      hits++;
      let msg;
      try { msg = JSON.parse(body); } catch { msg = undefined; }
      if (msg && msg.method && msg.id === undefined) { // notifications: accepted
        res.writeHead(202);
        res.end();
        return;
      }
      if (msg?.method === 'initialize') {
        const b = JSON.stringify({ jsonrpc: '2.0', id: msg.id, result: { protocolVersion: msg.params.protocolVersion, capabilities: { tools: {} }, serverInfo: { name: 'redirector', version: '1' } } });
        res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': 'up-session-1', 'content-length': Buffer.byteLength(b) });
        res.end(b);
        return;
      }
      const b = `<html>moved to ${location} internal-redirect-body</html>`;
      res.writeHead(302, { location, 'content-type': 'text/html', 'content-length': Buffer.byteLength(b) });
      res.end(b);
    });
  });
  await new Promise((r) => up.listen(0, '127.0.0.1', r));
  closers.push(() => new Promise((r) => up.close(() => r())));
  const gw = await startGateway(); // loopback allowed: the redirect target WOULD be reachable if followed
  const t = await setupTenant(gw, { users: ['alice@acme.com'] });
  const r = await t.putConnector('redir', { url: `http://127.0.0.1:${up.address().port}/mcp`, description: 'x', auth: { type: 'none' } });
  assert.equal(r.status, 201, show(r));
  const tok = (await t.mintToken('alice@acme.com')).token;

  const check = (res, what) => {
    assert.equal(res.headers.location, undefined, `${what}: no Location header relayed (${JSON.stringify(res.headers)})`);
    assert.notEqual(res.status, 302, `${what}: the 3xx status is not relayed`);
    assert.ok(!res.body.includes(location) && !res.body.includes('internal-redirect-body'),
      `${what}: neither the Location nor the upstream's body reach the client: ${res.body}`);
    assertRpcError(res, { codes: [-32002], message: /connector "redir".*redirect/, what });
  };
  const s = await rawSession(t.mcpUrl('redir'), tok);
  check(await s.request('tools/list'), 'single-connector tools/list');
  check(await s.request('tools/call', { name: 'x', arguments: {} }), 'single-connector tools/call');
  const a = await rawSession(`${gw.url}/t/${t.id}/mcp`, tok);
  check(await a.request('tools/call', { name: 'redir__x', arguments: {} }), 'aggregated tools/call');
  assert.ok(hits >= 3, `the upstream was asked (${hits})`);
  await sleep(200);
  assert.equal(target.connections, 0, 'the redirect target was never contacted');
  await gw.stop();
});

test('a connector PUT that changes the URL ends its streams and sessions; old upstream session ids never reach the new server', async () => {
  const [gw, upA, upB] = await Promise.all([startGateway(), startEverything(), startEverything()]);
  const [recA, recB] = await Promise.all([startRecorder(upA.url), startRecorder(upB.url)]);
  const t = await setupTenant(gw, { users: ['alice@acme.com'] });
  let r = await t.putConnector('svc', { url: recA.url, description: 'A', auth: { type: 'none' } });
  assert.equal(r.status, 201, show(r));
  const tok = (await t.mintToken('alice@acme.com')).token;

  // a single-connector session with an open GET stream, and an aggregated
  // session that has opened its upstream session on A
  const s1 = await rawSession(t.mcpUrl('svc'), tok);
  const st = await openStream(t.mcpUrl('svc'), { headers: { accept: 'text/event-stream', authorization: `Bearer ${tok}`, 'mcp-session-id': s1.sessionId, 'mcp-protocol-version': s1.protocolVersion } });
  assert.equal(st.status, 200, 'GET stream open');
  const agg = await rawSession(`${gw.url}/t/${t.id}/mcp`, tok);
  let c = await agg.request('tools/call', { name: 'svc__echo', arguments: { message: 'on A' } });
  assert.equal(c.messages.find((m) => m.result)?.result?.content?.[0]?.text, 'Echo: on A', show(c));
  const idsFromA = new Set();
  for (const e of recA.requests()) {
    if (e.response?.headers?.['mcp-session-id']) idsFromA.add(e.response.headers['mcp-session-id']);
    if (e.headers['mcp-session-id']) idsFromA.add(e.headers['mcp-session-id']);
  }
  assert.ok(idsFromA.size >= 2, `A issued upstream sessions: ${[...idsFromA]}`);

  r = await t.putConnector('svc', { url: recB.url, description: 'B', auth: { type: 'none' } });
  assert.equal(r.status, 200, `PUT with a new URL: ${show(r)}`);

  // the live stream of the old server ended with the PUT
  const how = await Promise.race([st.ended, sleep(5000).then(() => 'still open')]);
  assert.notEqual(how, 'still open', 'the GET stream to the old server ended');
  // the single-connector session was bound to A's session: gone
  const gone = await s1.request('tools/list');
  assert.equal(gone.status, 404, `the old single-connector session is gone (client re-initializes): ${show(gone)}`);
  // the aggregated session lives on, with a fresh upstream session on B
  c = await agg.request('tools/call', { name: 'svc__echo', arguments: { message: 'on B' } });
  assert.equal(c.messages.find((m) => m.result)?.result?.content?.[0]?.text, 'Echo: on B', show(c));
  // and a new single-connector session works against B
  const s2 = await connectClient(t.mcpUrl('svc'), tok);
  assert.equal(toolText(await s2.client.callTool({ name: 'echo', arguments: { message: 'b2' } })), 'Echo: b2');
  await s2.close();

  assert.ok(recB.requests().length > 0, 'B was used');
  for (const e of recB.requests()) {
    const sid = e.headers['mcp-session-id'];
    assert.ok(!sid || !idsFromA.has(sid), `B received an upstream session id that A issued (${sid}) on ${e.method} ${e.body.slice(0, 100)}`);
  }

  // DELETE then re-create at another URL: the aggregated session's id from
  // B must not reach A either
  const idsFromB = new Set(recB.requests().flatMap((e) => [e.headers['mcp-session-id'], e.response?.headers?.['mcp-session-id']]).filter(Boolean));
  r = await t.admin('DELETE', '/connectors/svc');
  assert.equal(r.status, 204, show(r));
  r = await t.putConnector('svc', { url: recA.url, description: 'A again', auth: { type: 'none' } });
  assert.equal(r.status, 201, show(r));
  const fromA = recA.requests().length;
  c = await agg.request('tools/call', { name: 'svc__echo', arguments: { message: 'on A again' } });
  assert.equal(c.messages.find((m) => m.result)?.result?.content?.[0]?.text, 'Echo: on A again', show(c));
  for (const e of recA.requests().slice(fromA)) {
    const sid = e.headers['mcp-session-id'];
    assert.ok(!sid || !idsFromB.has(sid), `A received an upstream session id that B issued (${sid})`);
  }
  st.close();
  await gw.stop();
});

test('egress config keys: listed in --print-config; bad entries refuse the start naming the key', async () => {
  const r = await runGateway(['serve', '--print-config', '--egress-allow', '10.0.0.0/8, mcp.internal.example', '--egress-allow-untrusted', '']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^egress_allow = 10\.0\.0\.0\/8, mcp\.internal\.example$/m, r.stdout);
  assert.match(r.stdout, /^egress_allow_untrusted = $/m, r.stdout);
  for (const [flag, bad] of [['--egress-allow', '10.0.0.0/33'], ['--egress-allow', 'bad_host!'], ['--egress-allow-untrusted', 'http://x/']]) {
    const b = await runGateway(['serve', '--print-config', flag, bad]);
    assert.notEqual(b.code, 0, `${flag} ${bad} refused`);
    assert.match(b.stderr, new RegExp(`config key ${flag.slice(2).replace(/-/g, '_')}\\b.*bad entry`), b.stderr);
  }
  const env = await runGateway(['serve', '--print-config'], { env: { MCPGATE_EGRESS_ALLOW: '::1,*.corp.example' } });
  assert.match(env.stdout, /^egress_allow = ::1,\*\.corp\.example$/m, env.stdout);
});
