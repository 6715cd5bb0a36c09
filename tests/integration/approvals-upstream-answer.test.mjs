// A held call (issue 23) is answered on the gateway's own SSE stream: once
// a reviewer approves, the call goes upstream and the upstream's answer
// becomes the stream's last event, which the client reads as a JSON-RPC
// message whatever the upstream's HTTP status was. Found by review: an
// answer that was not JSON (any content type but application/json) with a
// status other than 200 — a 400, a 201 — was relayed as it came, without
// the checks and the tool-list filter every other answer gets: an upstream
// could so hand the client a tool list its policy hides (the SDK matches a
// response to a request by id alone), or any message unchecked. Such an
// answer is an upstream error now, as a non-JSON 200 already was.
// ci-variants: build-w1 build-asan-w2
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';

import { rawSession, openStream, mcpHeaders } from './lib/mcp.mjs';
import { startPolicyFixture, applyPolicy, groups, waitFor, ownTokens } from './lib/policy.mjs';
import { request } from './lib/gateway.mjs';

const TOOLS = ['echo', 'secret', 'merge'].map((name) => ({ name, inputSchema: { type: 'object' } }));
let f, url, answer;
const servers = [];

/** An upstream whose answer to tools/call the test chooses: answer(m) → {status, ct, body}. */
async function upstream() {
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      if (req.method === 'GET') { res.writeHead(405).end(); return; }
      let m;
      try { m = JSON.parse(Buffer.concat(chunks).toString('utf8')); } catch { m = undefined; }
      if (req.method !== 'POST' || !m || m.id === undefined) { res.writeHead(202, { 'mcp-session-id': 'u1' }).end(); return; }
      if (m.method === 'initialize') {
        res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': 'u1' }).end(JSON.stringify({
          jsonrpc: '2.0', id: m.id, result: { protocolVersion: m.params.protocolVersion, capabilities: { tools: {} }, serverInfo: { name: 'up', version: '1' } },
        }));
        return;
      }
      const a = answer(m);
      res.writeHead(a.status, { 'content-type': a.ct, 'mcp-session-id': 'u1' }).end(a.body);
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  servers.push(server);
  return `http://127.0.0.1:${server.address().port}/mcp`;
}

before(async () => {
  f = await startPolicyFixture({ users: ['alice@acme.com', 'bob@acme.com'] });
  await ownTokens(f, ['bob']);
  const g = groups(f.t.scim);
  await g.create('Engineers', [f.users.alice.id, f.users.bob.id]);
  await g.create('DB Admins', [f.users.bob.id]);
  url = await upstream();
  assert.equal((await f.t.putConnector('up', { url, auth: { type: 'none' } })).status, 201);
  await applyPolicy(f.t, {
    version: 1,
    default: 'block',
    rules: [{ groups: ['Engineers'], connector: 'up', allow: ['echo'], approve: ['merge'], approvers: ['DB Admins'] }],
  });
});

after(async () => {
  for (const s of servers) await new Promise((r) => s.close(() => r()));
});

/** alice's held merge call on the connector endpoint, approved by bob: the messages of its stream. */
async function heldAndApproved(id) {
  const murl = f.t.mcpUrl('up');
  const s = await rawSession(murl, f.tokens.alice);
  const hdr = mcpHeaders({ token: f.tokens.alice, sessionId: s.sessionId, protocolVersion: s.protocolVersion });
  const st = await openStream(murl, { method: 'POST', headers: { ...hdr, 'content-type': 'application/json' },
    body: { jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'merge', arguments: { n: id } } } });
  let req;
  await waitFor(async () => {
    const r = await f.t.admin('GET', '/approvals?state=pending');
    req = r.json.approvals.find((a) => a.tool === 'merge' && a.user === f.users.alice.id);
    return !!req;
  }, { what: 'the held call pending' });
  const d = await request(f.gw.port, {
    method: 'POST', path: `/t/acme/approvals/${req.id}/approve`,
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${f.own.bob}` }, body: '{}',
  });
  assert.equal(d.status, 200, d.body);
  await st.ended;
  return st.messages;
}

const names = (msgs) => msgs.flatMap((x) => x?.result?.tools ?? []).map((x) => x.name);

for (const [status, ct] of [[400, 'text/plain'], [201, 'text/plain'], [422, 'application/problem+json']]) {
  test(`an approved call's upstream answering HTTP ${status} (${ct}) gets no unchecked message to the client`, async () => {
    const id = 7000 + status;
    answer = (m) => ({ status, ct, body: JSON.stringify({ jsonrpc: '2.0', id: m.id, result: { tools: TOOLS } }) });
    const msgs = await heldAndApproved(id);
    assert.ok(!names(msgs).includes('secret'), `a hidden tool reached the client: ${JSON.stringify(msgs)}`);
    const last = msgs.at(-1);
    assert.equal(last?.id, id, JSON.stringify(msgs));
    assert.ok(last.error, `an error names the connector's odd answer: ${JSON.stringify(last)}`);
    assert.match(last.error.message, /"up"/);
    assert.match(last.error.message, new RegExp(`HTTP ${status}`));
  });
}

test('an approved call answered in JSON with a 4xx is still relayed, filtered', async () => {
  answer = (m) => ({ status: 409, ct: 'application/json', body: JSON.stringify({ jsonrpc: '2.0', id: m.id, result: { tools: TOOLS } }) });
  const msgs = await heldAndApproved(7409);
  assert.deepEqual(names(msgs), ['echo', 'merge'], JSON.stringify(msgs));
});

// An approved call whose upstream answers 202 or 204 (no reply at all) left
// the held stream ending without any message: the client waited for its
// reply until its own timeout. It gets an error naming the connector now.
for (const status of [202, 204]) {
  test(`an approved call's upstream answering HTTP ${status} with no reply gets the client an error, not silence`, async () => {
    const id = 7100 + status;
    answer = () => ({ status, ct: 'application/json', body: '' });
    const msgs = await heldAndApproved(id);
    const last = msgs.at(-1);
    assert.equal(last?.id, id, `a reply to the call: ${JSON.stringify(msgs)}`);
    assert.ok(last.error, JSON.stringify(last));
    assert.match(last.error.message, /"up"/);
  });
}

// JSON whose whitespace holds lone carriage returns is valid, and an SSE
// reader ends a line at a lone CR: split at LF only, the held stream's
// last event reached the client cut into a field it ignores and data it
// cannot parse. Every line end splits it now, as the relay's SSE does.
test('an approved call answered in JSON with lone CRs as whitespace reaches the client whole', async () => {
  answer = (m) => ({ status: 200, ct: 'application/json', body: `{"jsonrpc":"2.0",\r"id":${m.id},\r"result":{"content":[{"type":"text","text":"done"}]}}` });
  const msgs = await heldAndApproved(7300);
  const last = msgs.at(-1);
  assert.equal(last?.id, 7300, JSON.stringify(msgs));
  assert.equal(last.result?.content?.[0]?.text, 'done', JSON.stringify(last));
});
