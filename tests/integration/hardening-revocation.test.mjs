// Attacks on revocation and policy found by review (issue 11), each run
// against the real binary (and, under `make test`, its ASan+UBSan build,
// whose reports fail the file):
//   1. pipelined calls + a connector DELETE: the revocation walk must not
//      meet the pipelined request it released (use-after-free before);
//   2. a tenant deleted and created again must not inherit the previous
//      incarnation's compiled policy;
//   3. a forged relayed-answer id must not open (or post to) an upstream
//      session of a connector policy hides, nor reach an upstream that never
//      asked;
//   4. deleting a tenant ends its live streams before the 202;
//   5. revoking an employee token ends what was opened with it before the 204;
//   6. a batch element waiting between two upstream steps is not forwarded
//      after its user is deactivated;
//   7. a session write racing a deactivation stores nothing (checked in
//      the LMDB file itself after the gateway stops).
// Upstreams: lib/ctl-upstream.mjs, whose replies the tests hold and release.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';

import { startGateway, connect, request, sleep, waitFor, parseResponses } from './lib/gateway.mjs';
import { api, recreateAfterPurge } from './lib/admin.mjs';
import { scimClient } from './lib/scim.mjs';
import {
  setupTenant, rawSession, mcpPost, openStream, mcpHeaders, initializeBody, assertGatewayUp,
} from './lib/mcp.mjs';
import { startCtlUpstream } from './lib/ctl-upstream.mjs';

const ALICE = 'alice@acme.com';
const REVOKED = -32004;

/** A gateway, tenant acme with alice (allow-all policy), ctl connectors by name. */
async function fixture(names = ['ca'], { policy } = {}) {
  const gw = await startGateway();
  const ups = {};
  for (const n of names) ups[n] = await startCtlUpstream({ name: n });
  const t = await setupTenant(gw, { users: [ALICE], ...(policy ? { policy } : {}) });
  for (const n of names) {
    const r = await t.putConnector(n, { url: ups[n].url, auth: { type: 'header', name: 'X-Key', value: `secret-${n}` } });
    assert.equal(r.status, 201, `PUT connector ${n}: ${r.status} ${r.body}`);
  }
  const m = await t.mintToken(ALICE);
  assert.equal(m.status, 201, m.body);
  return { gw, ups, t, token: m.token, tokenId: m.id, alice: t.users[ALICE] };
}

const callBody = (id, name, args = {}) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: args } });

function rawPost(path, { token, sid, pv, body }) {
  const b = JSON.stringify(body);
  return `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${token}\r\n` +
    'Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n' +
    `Mcp-Session-Id: ${sid}\r\nMCP-Protocol-Version: ${pv}\r\nContent-Length: ${Buffer.byteLength(b)}\r\n\r\n${b}`;
}

test('1. two pipelined slow calls to two connectors, then DELETE of the first: the first is revoked, the second still answers, nothing is freed early', async () => {
  const f = await fixture(['ca', 'cb']);
  const sa = await rawSession(f.t.mcpUrl('ca'), f.token);
  const sb = await rawSession(f.t.mcpUrl('cb'), f.token);
  const conn = await connect(f.gw.port);
  await conn.write(
    rawPost('/t/acme/mcp/ca', { token: f.token, sid: sa.sessionId, pv: sa.protocolVersion, body: callBody(1, 'slow', { ms: 3000 }) }) +
    rawPost('/t/acme/mcp/cb', { token: f.token, sid: sb.sessionId, pv: sb.protocolVersion, body: callBody(2, 'slow', { ms: 1500 }) }));
  await f.ups.ca.waitRequest((e) => e.json?.method === 'tools/call');
  const del = await f.t.admin('DELETE', '/connectors/ca');
  assert.equal(del.status, 204, del.body);
  const [r1, r2] = await conn.responses(2, 8000);
  assert.equal(JSON.parse(r1.body).error.code, REVOKED, `the revoked call: ${r1.status} ${r1.body}`);
  assert.equal(r2.status, 200, `the pipelined call, started after the revocation walk: ${r2.status} ${r2.body}`);
  assert.match(r2.body, /cb:slow done/);
  assert.equal((await f.ups.cb.waitRequest((e) => e.json?.method === 'tools/call')).json.params.name, 'slow');
  conn.destroy();
  await assertGatewayUp(f.gw);
  await f.gw.stop(); // throws on a sanitizer report
});

test('1b. a pipelined request on a stream revoked by a user deactivation starts on a later loop turn and is refused cleanly', async () => {
  const f = await fixture(['ca']);
  const s = await rawSession(f.t.mcpUrl('ca'), f.token);
  const conn = await connect(f.gw.port);
  await conn.write(
    rawPost('/t/acme/mcp/ca', { token: f.token, sid: s.sessionId, pv: s.protocolVersion, body: callBody(1, 'slow', { ms: 5000 }) }) +
    rawPost('/t/acme/mcp/ca', { token: f.token, sid: s.sessionId, pv: s.protocolVersion, body: callBody(2, 'echo', { message: 'x' }) }));
  await f.ups.ca.waitRequest((e) => e.json?.method === 'tools/call');
  await f.t.deactivate(f.alice.id);
  const [r1] = await conn.responses(1, 8000);
  assert.equal(JSON.parse(r1.body).error.code, REVOKED, r1.body);
  // the pipelined request is refused (401), or never read: her connection
  // closes after the answer it was writing (revoke.c rule 8)
  await waitFor(() => conn.closed || parseResponses(conn.buffer).responses.length >= 2, { timeoutMs: 8000, what: 'a second answer or the close' });
  const all = parseResponses(conn.buffer, { eof: conn.closed }).responses;
  if (all.length >= 2) assert.equal(all[1].status, 401, `the pipelined request of a deactivated user: ${all[1].status} ${all[1].body}`);
  else assert.ok(conn.closed);
  assert.equal(f.ups.ca.rpc('tools/call').filter((e) => e.json.params.name === 'echo').length, 0, 'the second call never reached the upstream');
  conn.destroy();
  await f.gw.stop();
});

test('2. a tenant deleted and created again with the same id does not inherit the old compiled policy', async () => {
  const f = await fixture(['ca']);
  const s = await rawSession(f.t.mcpUrl('ca'), f.token);
  const ok = await s.request('tools/call', { name: 'echo', arguments: { message: 'old' } });
  assert.match(ok.body, /ca:echo old/, 'allowed under the first incarnation (its policy is now cached)');
  const del = await api(f.gw.port, f.t.opToken, 'DELETE', '/admin/v1/tenants/acme');
  assert.equal(del.status, 202, del.body);
  const created = await recreateAfterPurge(f.gw.port, f.t.opToken, 'acme');
  const scim = scimClient(f.gw.port, 'acme', created.scim.token);
  const bob = await scim.createUser('bob@acme.com');
  const admin = (m, p, b) => api(f.gw.port, f.t.opToken, m, `/admin/v1/tenants/acme${p}`, b);
  assert.equal((await admin('PUT', '/connectors/ca', { url: f.ups.ca.url, auth: { type: 'none' } })).status, 201);
  // stricter: only "slow"; same revision number (1) as the old document
  const pol = await admin('PUT', '/policy', { version: 1, default: 'block', rules: [{ groups: ['*'], connector: 'ca', allow: ['slow'] }] });
  assert.equal(pol.status, 200, pol.body);
  assert.equal(pol.json.version, 1, 'the new incarnation restarts at version 1');
  const tok = await admin('POST', '/tokens', { user: 'bob@acme.com' });
  assert.equal(tok.status, 201, tok.body);
  const s2 = await rawSession(f.t.mcpUrl('ca'), tok.json.token);
  const before = f.ups.ca.rpc('tools/call').length;
  const r = await s2.request('tools/call', { name: 'echo', arguments: { message: 'new' } });
  assert.equal(r.messages[0]?.error?.code, -32003, `echo is blocked under the new policy: ${r.body}`);
  const list = await s2.request('tools/list');
  assert.deepEqual(list.messages[0].result.tools.map((x) => x.name), ['slow'], list.body);
  assert.equal(f.ups.ca.rpc('tools/call').length, before, 'nothing was forwarded');
  const ex = await admin('GET', `/explain?user=${bob.id}&connector=ca&tool=echo`);
  assert.equal(ex.json?.decision, 'block', `explain agrees: ${ex.body}`);
  await f.gw.stop();
});

test('3. a forged relayed-answer id reaches neither a hidden connector nor an upstream that never asked; a real answer still routes', async () => {
  const policy = { version: 1, default: 'block', rules: [{ groups: ['*'], connector: 'vis', allow: ['*'] }] };
  const f = await fixture(['vis', 'hid'], { policy });
  const agg = `${f.gw.url}/t/acme/mcp`;
  const s = await rawSession(agg, f.token, { capabilities: { elicitation: {} } });
  const hidBefore = f.ups.hid.requests().length;
  const visBefore = f.ups.vis.requests().length;

  // forged answer towards the hidden connector
  let r = await s.post({ jsonrpc: '2.0', id: 'mcpgate:hid:"q-1"', result: { action: 'accept', content: {} } });
  assert.equal(r.status, 202, r.body);
  // and towards the visible one, which asked nothing
  r = await s.post({ jsonrpc: '2.0', id: 'mcpgate:vis:"q-9"', result: { action: 'accept', content: {} } });
  assert.equal(r.status, 202, r.body);
  // a client notification fans out to upstream sessions of visible connectors only
  await s.notify('notifications/roots/list_changed');
  // a GET stream multiplexes visible connectors only
  const st = await openStream(agg, { headers: { ...mcpHeaders({ token: f.token, sessionId: s.sessionId, protocolVersion: s.protocolVersion }), accept: 'text/event-stream' } });
  assert.equal(st.status, 200);
  await sleep(300);
  assert.equal(f.ups.hid.requests().length, hidBefore,
    `the hidden connector's upstream received nothing: ${JSON.stringify(f.ups.hid.requests().slice(hidBefore).map((e) => [e.method, e.json]))}`);
  const visNew = f.ups.vis.requests().slice(visBefore);
  assert.ok(!visNew.some((e) => e.json && e.json.id === 'q-9'), `the forged answer never reached vis: ${JSON.stringify(visNew.map((e) => e.json))}`);
  await f.gw.waitForLog((l) => /dropped a client answer to hid/.test(l.msg ?? ''));
  await f.gw.waitForLog((l) => /dropped a client answer to vis/.test(l.msg ?? ''));

  // the real thing: vis asks (elicitation) during a call; the answer goes back with the original id, once
  const call = await openStream(agg, { method: 'POST', headers: mcpHeaders({ token: f.token, sessionId: s.sessionId, protocolVersion: s.protocolVersion }), body: callBody(7, 'vis__ask') });
  const q = await call.waitFor((m) => m.method === 'elicitation/create');
  assert.match(String(q.id), /^mcpgate:vis:/, `the question's id is rewritten: ${JSON.stringify(q)}`);
  r = await s.post({ jsonrpc: '2.0', id: q.id, result: { action: 'accept', content: {} } });
  assert.equal(r.status, 202, r.body);
  const done = await call.waitFor((m) => m.id === 7);
  assert.match(JSON.stringify(done), /vis:asked accept/);
  const answers = f.ups.vis.requests().filter((e) => e.json && e.json.id === 'q-1' && !e.json.method);
  assert.equal(answers.length, 1, 'the upstream got the answer with its own id');
  // replaying the same answer is dropped: nothing is outstanding any more
  r = await s.post({ jsonrpc: '2.0', id: q.id, result: { action: 'accept', content: {} } });
  await sleep(200);
  assert.equal(f.ups.vis.requests().filter((e) => e.json && e.json.id === 'q-1' && !e.json.method).length, 1, 'a replayed answer is not delivered again');
  st.close();
  await f.gw.stop();
});

test('3b. a policy change hiding a connector stops its upstream GET stream on open aggregated streams', async () => {
  const f = await fixture(['vis', 'other']);
  const agg = `${f.gw.url}/t/acme/mcp`;
  const s = await rawSession(agg, f.token);
  // open upstream sessions for both connectors (listing every page does)
  for (let cursor, i = 0; i < 5; i++) {
    const lr = await s.request('tools/list', cursor ? { cursor } : {});
    cursor = lr.messages[0]?.result?.nextCursor;
    if (!cursor) break;
  }
  const st = await openStream(agg, { headers: { ...mcpHeaders({ token: f.token, sessionId: s.sessionId, protocolVersion: s.protocolVersion }), accept: 'text/event-stream' } });
  await waitFor(() => f.ups.vis.getStreams() === 1 && f.ups.other.getStreams() === 1, { what: 'both upstream GET streams open' });
  await f.t.setPolicy({ version: 1, default: 'block', rules: [{ groups: ['*'], connector: 'other', allow: ['*'] }] });
  await st.waitFor((m) => m.method === 'notifications/tools/list_changed');
  await waitFor(() => f.ups.vis.getStreams() === 0, { what: 'the hidden connector\'s GET stream closed' });
  assert.equal(f.ups.other.getStreams(), 1, 'the visible connector\'s stream stays');
  f.ups.vis.push({ jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: 'from vis' } });
  f.ups.other.push({ jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: 'from other' } });
  await st.waitFor((m) => m.params?.data === 'from other');
  assert.ok(!st.messages.some((m) => m.params?.data === 'from vis'), 'nothing of the hidden connector reaches the client');
  st.close();
  await f.gw.stop();
});

test('4. deleting a tenant ends its open streams (single connector and aggregated) before the 202', async () => {
  const f = await fixture(['ca']);
  const s1 = await rawSession(f.t.mcpUrl('ca'), f.token);
  const s2 = await rawSession(`${f.gw.url}/t/acme/mcp`, f.token);
  const get = (url, s) => openStream(url, { headers: { ...mcpHeaders({ token: f.token, sessionId: s.sessionId, protocolVersion: s.protocolVersion }), accept: 'text/event-stream' } });
  const st1 = await get(f.t.mcpUrl('ca'), s1);
  const st2 = await get(`${f.gw.url}/t/acme/mcp`, s2);
  assert.equal(st1.status, 200);
  assert.equal(st2.status, 200);
  await waitFor(() => f.ups.ca.getStreams() >= 1, { what: 'upstream GET stream open' });
  const del = await api(f.gw.port, f.t.opToken, 'DELETE', '/admin/v1/tenants/acme');
  assert.equal(del.status, 202, del.body);
  // the streams were cut before the reply was written: their end is in flight at most
  const ended = await Promise.race([Promise.all([st1.ended, st2.ended]).then(() => true), sleep(1000).then(() => false)]);
  assert.ok(ended, 'both streams ended within a second of the 202');
  await waitFor(() => f.ups.ca.getStreams() === 0, { timeoutMs: 2000, what: 'the upstream stream closed too' });
  await f.gw.stop();
});

test('5. revoking an employee token ends the streams opened with it, and only those, before the 204', async () => {
  const f = await fixture(['ca']);
  const other = await f.t.mintToken(ALICE);
  const url = f.t.mcpUrl('ca');
  const sA = await rawSession(url, f.token);
  const sB = await rawSession(url, other.token);
  const get = (s, tok) => openStream(url, { headers: { ...mcpHeaders({ token: tok, sessionId: s.sessionId, protocolVersion: s.protocolVersion }), accept: 'text/event-stream' } });
  const stA = await get(sA, f.token);
  const stB = await get(sB, other.token);
  await waitFor(() => f.ups.ca.getStreams() === 2, { what: 'two upstream GET streams' });
  const slow = mcpPost(url, callBody(5, 'slow', { ms: 4000 }), { token: f.token, sessionId: sA.sessionId, protocolVersion: sA.protocolVersion });
  await f.ups.ca.waitRequest((e) => e.json?.method === 'tools/call');
  const del = await f.t.admin('DELETE', `/tokens/${f.tokenId}`);
  assert.equal(del.status, 204, del.body);
  const ended = await Promise.race([stA.ended.then(() => true), sleep(1000).then(() => false)]);
  assert.ok(ended, 'the stream of the revoked token ended');
  const r = await slow;
  assert.equal(r.json?.error?.code, REVOKED, `the call in flight with the revoked token: ${r.status} ${r.body}`);
  assert.equal(stB.isEnded, false, 'the stream of the other token stays open');
  const again = await mcpPost(url, callBody(6, 'echo', { message: 'b' }), { token: other.token, sessionId: sB.sessionId, protocolVersion: sB.protocolVersion });
  assert.match(again.body, /ca:echo b/, 'the other token still works');
  stB.close();
  await f.gw.stop();
});

test('6. a batch element waiting for its upstream session is not forwarded once its user is deactivated', async () => {
  const f = await fixture(['ca']);
  const agg = `${f.gw.url}/t/acme/mcp`;
  const s = await rawSession(agg, f.token, { protocolVersion: '2025-03-26' });
  assert.equal(s.protocolVersion, '2025-03-26');
  // the element's upstream session opens in steps: initialize, then
  // notifications/initialized — held here while the user is deactivated
  const release = f.ups.ca.hold((m) => m.method === 'notifications/initialized');
  const batch = s.post([callBody(11, 'ca__echo', { message: 'after deactivation' })], { timeoutMs: 10000 });
  await f.ups.ca.waitRequest((e) => e.json?.method === 'notifications/initialized' && e.headers['mcp-session-id']);
  await f.t.deactivate(f.alice.id);
  release();
  const r = await batch;
  await sleep(300);
  assert.equal(f.ups.ca.rpc('tools/call').length, 0,
    `nothing was forwarded after the deactivation: ${JSON.stringify(f.ups.ca.rpc('tools/call').map((e) => e.json))}`);
  const msgs = Array.isArray(r.json) ? r.json : [r.json];
  assert.ok(msgs.some((m) => m?.error?.code === REVOKED), `the element was answered "access revoked": ${r.status} ${r.body}`);
  await f.gw.stop();
});

test('7. an aggregated initialize racing a deactivation never writes a session for the deactivated user', async () => {
  const f = await fixture(['ca']);
  const patch = (active) => ({ schemas: ['urn:ietf:params:scim:api:messages:2.0:PatchOp'], Operations: [{ op: 'replace', value: { active } }] });
  const scimRaw = (body) => {
    const b = JSON.stringify(body);
    return `PATCH /t/acme/scim/v2/Users/${f.alice.id} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${f.t.tenant.scim.token}\r\n` +
      `Content-Type: application/scim+json\r\nContent-Length: ${Buffer.byteLength(b)}\r\n\r\n${b}`;
  };
  let token = f.token;
  const statuses = [];
  for (let i = 0; i < 25; i++) {
    const init = JSON.stringify(initializeBody(1));
    const initRaw = `POST /t/acme/mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\n` +
      `Accept: application/json, text/event-stream\r\nContent-Length: ${Buffer.byteLength(init)}\r\n\r\n${init}`;
    const [c1, c2] = await Promise.all([connect(f.gw.port), connect(f.gw.port)]);
    // the deactivation first, the initialize right behind it: the initialize's
    // token check runs before the deactivation commits, its write after
    c1.socket.write(scimRaw(patch(false)));
    c2.socket.write(initRaw);
    const [[rs], [ri]] = await Promise.all([c1.responses(1, 5000), c2.responses(1, 5000)]);
    assert.equal(rs.status, 200, rs.body);
    statuses.push(ri.status);
    c1.destroy();
    c2.destroy();
    await f.t.reactivate(f.alice.id);
    const m = await f.t.mintToken(ALICE);
    assert.equal(m.status, 201, m.body);
    token = m.token;
  }
  // Every session alice had was deleted by the deactivation that followed
  // it; one that outlived it was written for a deactivated user.
  await f.gw.stop();
  const dump = spawnSync('mdb_dump', ['-p', '-s', 'sessions', `${f.gw.dataDir}/store`], { encoding: 'latin1' });
  assert.equal(dump.status, 0, `mdb_dump: ${dump.stderr}`);
  assert.ok(!dump.stdout.includes(f.alice.id),
    `no session record of alice survives (initialize statuses ${statuses.join(',')}):\n${dump.stdout.split('\n').filter((l) => l.includes(f.alice.id)).join('\n').slice(0, 800)}`);
});
