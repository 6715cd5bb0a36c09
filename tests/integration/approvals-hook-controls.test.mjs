// Approvals' webhook, found by review: the Slack text escaped &, <, >, the
// backtick and the invisible code points, but passed control characters
// (U+0000..001F, U+007F) as they were. A tool name is the client's (any
// name an approve rule's glob matches is held: "get-sum*"), so an employee
// could end the template's line with a newline of their own and write the
// next lines of the gateway's message to the reviewers' channel — "Approved
// by IT, decide here: https://…" is linked by Slack by itself — or hide the
// rest behind a carriage return. Controls now reach the text as \uXXXX
// escapes, like the invisible characters: the text has the template's two
// lines, whatever the client sent.
// ci-variants: build-w1
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { connectClient } from './lib/mcp.mjs';
import { startPolicyFixture, applyPolicy, groups, waitFor } from './lib/policy.mjs';
import { startSinkReceiver } from './lib/sink.mjs';

let f, c, rx;

before(async () => {
  f = await startPolicyFixture({ users: ['alice@acme.com', 'bob@acme.com'] });
  const g = groups(f.t.scim);
  await g.create('Engineers', [f.users.alice.id, f.users.bob.id]);
  await g.create('DB Admins', [f.users.bob.id]);
  await applyPolicy(f.t, {
    version: 1,
    default: 'block',
    rules: [{ groups: ['Engineers'], connector: 'everything', approve: ['get-sum*'], approvers: ['DB Admins'] }],
  });
  rx = await startSinkReceiver({ path: '/hook' });
  const r = await f.t.admin('PATCH', '', { settings: { approval_webhook_url: rx.url } });
  assert.equal(r.status, 200, r.body);
  c = await connectClient(f.url, f.tokens.alice);
});

after(async () => { await c?.close?.(); await rx?.close(); await f?.stop?.(); });

test('a control character in a held call\'s tool name or arguments reaches the webhook\'s text as an escape, never as a line of its own', async () => {
  const tool = 'get-sum\nApproved by IT, decide here: https://evil.example/t/acme/approvals\r\t\u001b[2K\u007f';
  const args = { a: 1, b: 2 };
  const call = c.client.callTool({ name: tool, arguments: args }, undefined, { timeout: 20000 })
    .then((result) => ({ result }), (error) => ({ error }));
  let req;
  await waitFor(async () => {
    const r = await f.t.admin('GET', '/approvals?state=pending');
    req = r.json.approvals.find((a) => a.tool === tool);
    return !!req;
  }, { timeoutMs: 8000, what: 'the pending request' });
  await waitFor(() => rx.posts.some((p) => p.body.includes(req.id)), { timeoutMs: 4000, what: 'the notification' });
  const t = JSON.parse(rx.posts.find((p) => p.body.includes(req.id)).body).text;
  // eslint-disable-next-line no-control-regex
  const controls = t.replace('\n', '').match(/[\u0000-\u001f\u007f]/g);
  assert.equal(controls, null, `only the template's own line break: ${JSON.stringify(t)}`);
  assert.equal(t.split('\n').length, 2, JSON.stringify(t));
  assert.ok(t.startsWith('Approval needed: alice@acme.com asks to call `get-sum\\u000aApproved by IT'), JSON.stringify(t));
  assert.ok(t.includes('\\u000d\\u0009\\u001b[2K\\u007f` on `everything`'), JSON.stringify(t));
  const cancel = await f.t.admin('POST', `/approvals/${req.id}/cancel`, {});
  assert.equal(cancel.status, 200, cancel.body);
  const out = await call;
  assert.equal(out.error?.code, -32010, String(out.error));
});
