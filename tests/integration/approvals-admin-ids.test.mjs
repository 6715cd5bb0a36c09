// An admin's cancel names one approval request exactly (found by review):
// POST …/approvals/{id}/cancel copied the path's id into a 33-byte buffer,
// so "<a real id>anything" was cut to that id and cancelled it, while GET
// of the same path was a 404 — the reviewers' routes already refuse an id
// longer than any request's ("never cut to one that exists").
// ci-variants: build-w1
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { rawSession, openStream, mcpHeaders } from './lib/mcp.mjs';
import { startPolicyFixture, applyPolicy, groups, waitFor } from './lib/policy.mjs';

let f, s;
before(async () => {
  f = await startPolicyFixture({ users: ['alice@acme.com', 'bob@acme.com'] });
  await groups(f.t.scim).create('Reviewers', [f.users.bob.id]);
  await applyPolicy(f.t, { version: 1, default: 'block',
    rules: [{ groups: ['*'], connector: 'everything', approve: ['get-sum'], approvers: ['Reviewers'] }] });
  s = await rawSession(f.url, f.tokens.alice);
});
after(async () => { await f?.stop?.(); });

test('an admin path naming a request id with anything after it is a 404 and cancels nothing', async () => {
  const hdr = mcpHeaders({ token: f.tokens.alice, sessionId: s.sessionId, protocolVersion: s.protocolVersion });
  const held = await openStream(f.url, { method: 'POST', headers: { ...hdr, 'content-type': 'application/json' },
    body: { jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'get-sum', arguments: { a: 1, b: 2 } } } });
  let req;
  try {
    await waitFor(async () => {
      const r = await f.t.admin('GET', '/approvals?state=pending');
      req = r.json.approvals[0];
      return !!req;
    }, { timeoutMs: 8000, what: 'a pending request' });
    const longer = `${req.id}0`;
    assert.equal((await f.t.admin('GET', `/approvals/${longer}`)).status, 404);
    const c = await f.t.admin('POST', `/approvals/${longer}/cancel`, { reason: 'not this one' });
    assert.equal(c.status, 404, `cancel of ${longer}: ${c.body}`);
    const still = await f.t.admin('GET', `/approvals/${req.id}`);
    assert.equal(still.json.state, 'pending', 'the request the path did not name is untouched');
    assert.equal((await f.t.admin('POST', `/approvals/${req.id}/cancel`, {})).status, 200);
  } finally { held.close(); }
});
