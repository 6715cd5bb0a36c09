// Approvals, the operator's side (issue 23): the tenant's approval webhook
// (Slack-compatible {"text"} POSTed when a call is held: retried after a
// 5xx, never in the call's way when it hangs, its URL a secret in logs),
// `mcpgate approvals list|cancel`, the approval metrics on /metrics, and
// explain naming the user's live grants. Real binary, real SDK client,
// server-everything behind a recorder, a node receiver for the webhook.
// ci-variants: build-w1 build-asan-w2 (one loop, and two under ASan)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import http from 'node:http';

import { connectClient } from './lib/mcp.mjs';
import { startPolicyFixture, applyPolicy, forwardedCalls, groups, waitFor, sleep, toolText, ownTokens } from './lib/policy.mjs';
import { cli, assertExit } from './lib/admin.mjs';
import { request, scrapeMetrics, metricValue } from './lib/gateway.mjs';
import { startSinkReceiver } from './lib/sink.mjs';

const SUM = 'get-sum';
const SECRET_PATH = '/services/T0001/B0002/s3cr3tXYZ';
let f, c, rx, hang, hangHits = 0;
let statusFor = () => 200; // the receiver's answer to the n-th POST

before(async () => {
  f = await startPolicyFixture({ users: ['alice@acme.com', 'bob@acme.com'], gatewayArgs: ['--approval-progress-interval-ms', '300'] });
  await ownTokens(f, ['bob']); // decisions need bob's own token (f.tokens are admin-minted)
  const g = groups(f.t.scim);
  await g.create('Engineers', [f.users.alice.id, f.users.bob.id]);
  await g.create('DB Admins', [f.users.bob.id]);
  await applyPolicy(f.t, {
    version: 1,
    default: 'block',
    rules: [
      { groups: ['Engineers'], connector: 'everything', approve: [SUM], approvers: ['DB Admins'], approval_timeout_s: 60 },
      { groups: ['Engineers'], connector: 'everything', approve: ['get-tiny-image'], approvers: ['DB Admins'], grant_minutes: 5 },
    ],
  });
  rx = await startSinkReceiver({ path: SECRET_PATH, status: (n, e) => statusFor(n, e) });
  // a webhook that takes the request and never answers
  hang = http.createServer(() => { hangHits++; });
  await new Promise((r) => hang.listen(0, '127.0.0.1', r));
  c = await connectClient(f.url, f.tokens.alice);
});

after(async () => {
  await rx?.close();
  hang?.closeAllConnections?.();
  await new Promise((r) => (hang ? hang.close(r) : r()));
});

const setHook = (url) => f.t.admin('PATCH', '', { settings: { approval_webhook_url: url } });

function heldCall(client, name, args) {
  return client.client.callTool({ name, arguments: args }, undefined, { timeout: 20000, resetTimeoutOnProgress: true })
    .then((result) => ({ result }), (error) => ({ error }));
}

async function pendingFor(tool, args) {
  let found;
  await waitFor(async () => {
    const r = await f.t.admin('GET', '/approvals?state=pending');
    found = r.json.approvals.find((a) => a.tool === tool && JSON.stringify(a.arguments) === JSON.stringify(args));
    return !!found;
  }, { timeoutMs: 8000, what: `a pending request for ${tool} ${JSON.stringify(args)}` });
  return found;
}

const approve = (id) => request(f.gw.port, {
  method: 'POST', path: `/t/acme/approvals/${id}/approve`,
  headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${f.own.bob}` }, body: '{}',
});

const postsFor = (id) => rx.posts.filter((p) => p.body.includes(id));

test('approval_webhook_url: http(s) only, a literal address the egress policy refuses is refused, a host name is kept', async () => {
  let r = await setHook('ftp://hooks.example.com/x');
  assert.equal(r.status, 400, r.body);
  assert.match(r.body, /approval_webhook_url/);
  r = await setHook('https://');
  assert.equal(r.status, 400, r.body);
  // a mistyped backslash path: the "origin" failures log would be part of the secret path (SIEM review)
  r = await setHook('https://hooks.slack.com\\services\\T0\\B0\\sealed-xyz');
  assert.equal(r.status, 400, r.body);
  assert.doesNotMatch(r.body, /sealed-xyz/);
  r = await setHook('http://10.20.30.40/hook'); // the test gateway allows loopback only
  assert.equal(r.status, 400, r.body);
  assert.match(r.body, /egress_refused/);
  const secret = 'https://hooks.slack.com/services/T0SEALED/B0SEALED/sealed-webhook-token-xyz';
  r = await setHook(secret);
  assert.equal(r.status, 200, r.body);
  // a credential: sealed in the store, never shown back (GET, PATCH reply), "[set]" keeps it
  assert.equal(r.json.settings.approval_webhook_url, '[set]');
  assert.doesNotMatch(r.body, /sealed-webhook-token/);
  const g = await f.t.admin('GET', '');
  assert.equal(g.json.settings.approval_webhook_url, '[set]');
  assert.doesNotMatch(g.body, /sealed-webhook-token/);
  r = await setHook('[set]');
  assert.equal(r.status, 200, r.body);
  assert.equal(r.json.settings.approval_webhook_url, '[set]');
  const raw = fs.readFileSync(path.join(f.gw.dataDir, 'store', 'data.mdb'));
  assert.equal(raw.indexOf('sealed-webhook-token'), -1, 'the webhook URL is not in the store file in the clear');
  assert.equal(raw.indexOf('T0SEALED'), -1);
  r = await setHook('');
  assert.equal(r.status, 200, r.body);
  assert.equal(r.json.settings.approval_webhook_url, '');
  r = await setHook(rx.url);
  assert.equal(r.status, 200, r.body);
});

test('a held call notifies once: Slack JSON with requester, tool, connector, a short escaped argument summary, the page and the id; a 503 is retried', async () => {
  // first: the receiver answers 503 once per request, then 200
  const seen = new Set();
  statusFor = (n, e) => {
    const id = /request ([0-9a-f]{32})/.exec(e.body)?.[1];
    if (id && !seen.has(id)) { seen.add(id); return 503; }
    return 200;
  };
  const args = { a: 2, b: 3, note: `<!channel> & \`*fake* https://evil.example/decide\` \u202Egpj.exe ${'x'.repeat(400)}` };
  const call = heldCall(c, SUM, args);
  const req = await pendingFor(SUM, args);
  await waitFor(() => postsFor(req.id).length >= 2, { timeoutMs: 6000, what: 'the POST and its retry' });
  const [first, second] = postsFor(req.id);
  assert.equal(first.status, 503);
  assert.equal(second.status, 200);
  assert.ok(second.at - first.at >= 800, `retried after a back-off: ${second.at - first.at} ms`);
  assert.equal(first.body, second.body, 'the same notification');
  assert.equal(first.path, SECRET_PATH);
  assert.match(first.headers['content-type'], /^application\/json/);
  const body = JSON.parse(first.body);
  assert.deepEqual(Object.keys(body), ['text']);
  const t = body.text;
  assert.match(t, /alice@acme\.com/);
  assert.match(t, /`get-sum`/);
  assert.match(t, /`everything`/);
  assert.ok(t.includes(`/t/acme/approvals (request ${req.id})`), t);
  assert.ok(t.includes(`${f.gw.url}/t/acme/approvals`), `the link starts with public_url: ${t}`);
  assert.ok(!t.includes('<!channel>') && t.includes('&lt;!channel&gt; &amp;'), `Slack control characters escaped: ${t}`);
  const summary = /with arguments `([^`]*)`/.exec(t)?.[1] ?? '';
  assert.ok(summary.startsWith('{"a":2,"b":3,"note":"&lt;!channel&gt;'), summary);
  // a backtick in a value cannot close the code span (and let the rest be
  // formatted or linked as the gateway's own words): only the template's six
  assert.equal((t.match(/`/g) ?? []).length, 6, `backticks in the text: ${t}`);
  assert.ok(summary.includes('ˋ*fake* https://evil.example/decideˋ'), summary);
  // nor can a right-to-left override reorder what the reviewers read
  assert.ok(!t.includes('\u202E') && summary.includes('\\u202egpj.exe'), summary);
  assert.ok(summary.endsWith('…') && summary.length < 260, `at most 200 bytes of arguments (escaped): ${summary.length}`);
  // the URL's path is a secret: logs show scheme://host only
  const warn = await f.gw.waitForLog((l) => /webhook .* failed \(HTTP 503\); retrying/.test(l.msg ?? ''));
  assert.ok(warn.msg.includes(`http://127.0.0.1:${rx.port} `), warn.msg);
  assert.ok(!f.gw.stderrText().includes('s3cr3tXYZ'), 'the webhook path never reaches the log');
  // the step is in the tenant's audit chain (the webhook by its origin only)
  let note;
  await waitFor(async () => {
    const a = await f.t.admin('GET', '/audit?kind=approval&limit=100');
    note = a.json?.records?.find((x) => x.request === req.id && x.event === 'notified');
    return !!note;
  }, { timeoutMs: 5000, what: 'the "notified" audit record' });
  assert.equal(note.attempts, 2);
  assert.equal(note.webhook, `http://127.0.0.1:${rx.port}`);
  assert.ok(!JSON.stringify(note).includes('s3cr3tXYZ'));
  // the held call itself goes on as usual
  assert.equal((await approve(req.id)).status, 200);
  const out = await call;
  assert.ok(out.result, String(out.error));
  assert.match(toolText(out.result), /5/);
  await sleep(300);
  assert.equal(postsFor(req.id).length, 2, 'exactly one notification (and its one retry)');
  statusFor = () => 200;
});

// Found by review: the webhook escaped only the 2- and 3-byte hidden
// characters it listed, while the reviewers' page (approvals.js) shows every
// default-ignorable or format character, C1 controls and the line and
// paragraph separators. Tag characters (U+E0000..E007F: "ASCII smuggling",
// a whole text a reader cannot see but an agent or a summarising bot reads),
// the variation selectors supplement, the musical and shorthand format
// controls, the interlinear annotation marks, NEL and U+2028/9 reached the
// reviewers' channel as they were.
test('the webhook shows every invisible or text-reordering character as an escape, astral planes included, as the page does', async () => {
  const hidden = ['\u0085', '\u180B', '\u2028', '\u2029', '\uFFF9', '\u{110BD}', '\u{1BCA0}', '\u{1D173}',
    '\u{E0001}', '\u{E0041}', '\u{E007F}', '\u{E0100}'];
  const args = { a: 1, b: 7, note: `ok${hidden.join('')}end` };
  const call = heldCall(c, SUM, args);
  const req = await pendingFor(SUM, args);
  await waitFor(() => postsFor(req.id).length >= 1, { timeoutMs: 4000, what: 'the notification' });
  const t = JSON.parse(postsFor(req.id)[0].body).text;
  for (const h of hidden) {
    assert.ok(!t.includes(h), `U+${h.codePointAt(0).toString(16).toUpperCase()} is not in the text as it is: ${JSON.stringify(t)}`);
  }
  const summary = /with arguments `([^`]*)`/.exec(t)?.[1] ?? '';
  assert.ok(summary.includes('ok\\u0085\\u180b\\u2028\\u2029\\ufff9\\u{110bd}\\u{1bca0}\\u{1d173}\\u{e0001}\\u{e0041}' +
    '\\u{e007f}\\u{e0100}end'), summary);
  assert.equal((await approve(req.id)).status, 200);
  assert.ok((await call).result);
});

test('every held call gets exactly one POST; a webhook that hangs does not hold up the call, its approval or the next call', async () => {
  const a1 = { a: 5, b: 5 };
  const call = heldCall(c, SUM, a1);
  const req = await pendingFor(SUM, a1);
  await waitFor(() => postsFor(req.id).length === 1, { timeoutMs: 4000, what: 'one POST' });
  await setHook(`http://127.0.0.1:${hang.address().port}${SECRET_PATH}`);
  const a2 = { a: 6, b: 6 };
  const t0 = Date.now();
  const hungCall = heldCall(c, SUM, a2);
  const req2 = await pendingFor(SUM, a2);
  await waitFor(() => hangHits === 1, { timeoutMs: 4000, what: 'the hanging webhook got its POST' });
  assert.equal((await approve(req2.id)).status, 200);
  const out2 = await hungCall;
  assert.ok(out2.result, String(out2.error));
  assert.match(toolText(out2.result), /12/);
  assert.ok(Date.now() - t0 < 5000, `held + approved while the webhook hangs: ${Date.now() - t0} ms`);
  assert.equal((await approve(req.id)).status, 200);
  assert.ok((await call).result);
  assert.equal(forwardedCalls(f.rec, SUM).filter((e) => [5, 6].includes(e.json?.params?.arguments?.a)).length, 2);
  assert.equal(postsFor(req2.id).length, 0);
  await setHook(rx.url);
});

test('mcpgate approvals list and cancel: the operator sees the pending call and stops it; the client is told why', async () => {
  const args = { a: 9, b: 9 };
  const call = heldCall(c, SUM, args);
  const req = await pendingFor(SUM, args);
  const common = ['--server', f.gw.url, '--data', f.gw.dataDir];
  let r = await cli(['approvals', 'list', 'acme', '--state', 'pending', ...common]);
  assertExit(r, 0, 'list');
  assert.match(r.stdout, new RegExp(`^${req.id} +pending +\\S+ +everything +get-sum +${f.users.alice.id} \\(\\d+ s left\\)$`, 'm'));
  r = await cli(['approvals', 'list', 'acme', '--state', 'pending', '--json', ...common]);
  assertExit(r, 0, 'list --json');
  assert.ok(JSON.parse(r.stdout).approvals.some((a) => a.id === req.id));
  r = await cli(['approvals', 'cancel', 'acme', req.id, '--reason', 'change freeze', ...common]);
  assertExit(r, 0, 'cancel');
  assert.match(r.stdout, new RegExp(`Approval request ${req.id} cancelled`));
  const out = await call;
  assert.equal(out.error?.code, -32010, String(out.error));
  assert.match(String(out.error.message), /change freeze/);
  r = await cli(['approvals', 'list', 'acme', '--state', 'cancelled', ...common]);
  assertExit(r, 0, 'list cancelled');
  assert.match(r.stdout, new RegExp(`^${req.id} +cancelled .* / operator$`, 'm'));
  r = await cli(['approvals', 'cancel', 'acme', req.id, ...common]);
  assertExit(r, 1, 'a second cancel');
  assert.match(r.stderr, /error 409/);
  r = await cli(['approvals', 'list', 'acme', '--state', 'bogus', ...common]);
  assertExit(r, 1, 'a bad state');
  assert.match(r.stderr, /error 400/);
  for (const bad of [['approvals'], ['approvals', 'approve', 'acme', req.id], ['approvals', 'cancel', 'acme'], ['approvals', 'list', 'ACME!']]) {
    r = await cli([...bad, ...common]);
    assertExit(r, 2, bad.join(' '));
  }
});

test('metrics: held now, requests stored, outcomes and time to decision', async () => {
  let m = await scrapeMetrics(f.gw);
  const base = {
    requests: metricValue(m, 'mcpgate_approval_requests_total'),
    approved: metricValue(m, 'mcpgate_approvals_decided_total', { outcome: 'approved' }),
    cancelled: metricValue(m, 'mcpgate_approvals_decided_total', { outcome: 'cancelled' }),
    count: metricValue(m, 'mcpgate_approval_decision_seconds_count'),
  };
  assert.ok(base.requests >= 4, `requests so far: ${base.requests}`);
  assert.ok(base.approved >= 3 && base.cancelled >= 1, JSON.stringify(base));
  assert.ok(metricValue(m, 'mcpgate_approval_webhook_notifications_total', { result: 'retried' }) >= 1);
  assert.ok(metricValue(m, 'mcpgate_approval_webhook_notifications_total', { result: 'ok' }) >= 2);
  assert.equal(metricValue(m, 'mcpgate_approvals_held'), 0);
  const args = { a: 1, b: 41 };
  const call = heldCall(c, SUM, args);
  const req = await pendingFor(SUM, args);
  await waitFor(async () => metricValue(await scrapeMetrics(f.gw), 'mcpgate_approvals_held') === 1, { what: 'one call held' });
  await sleep(1100); // past the first bucket
  assert.equal((await approve(req.id)).status, 200);
  assert.ok((await call).result);
  m = await scrapeMetrics(f.gw);
  assert.equal(metricValue(m, 'mcpgate_approvals_held'), 0);
  assert.equal(metricValue(m, 'mcpgate_approval_requests_total'), base.requests + 1);
  assert.equal(metricValue(m, 'mcpgate_approvals_decided_total', { outcome: 'approved' }), base.approved + 1);
  assert.equal(metricValue(m, 'mcpgate_approval_decision_seconds_count'), base.count + 1);
  assert.ok(metricValue(m, 'mcpgate_approval_decision_seconds_sum') >= 1.1);
  const le1 = metricValue(m, 'mcpgate_approval_decision_seconds_bucket', { le: '1' });
  const le10 = metricValue(m, 'mcpgate_approval_decision_seconds_bucket', { le: '10' });
  assert.ok(le10 - le1 >= 1, `the slow decision is above the 1 s bucket: ${le1} ${le10}`);
  assert.equal(metricValue(m, 'mcpgate_approval_decision_seconds_bucket', { le: '+Inf' }), base.count + 1);
});

test('explain names the live grants of an approve tool: how many argument sets, until when', async () => {
  const explain = () => f.t.admin('GET', `/explain?user=alice@acme.com&connector=everything&tool=get-tiny-image`);
  let r = await explain();
  assert.equal(r.status, 200, r.body);
  assert.equal(r.json.decision, 'approve');
  assert.equal(r.json.grant, undefined, 'no grant yet');
  const call = heldCall(c, 'get-tiny-image', {});
  const req = await pendingFor('get-tiny-image', {});
  assert.equal((await approve(req.id)).status, 200);
  assert.ok((await call).result);
  r = await explain();
  assert.equal(r.json.grant.count, 1, r.body);
  assert.equal(r.json.grant.request, req.id);
  const left = Date.parse(r.json.grant.expires_max) - Date.now();
  assert.ok(left > 4 * 60000 && left <= 5 * 60000, `grant_minutes 5: ${r.json.grant.expires_max}`);
  r = await f.t.admin('GET', `/explain?user=bob@acme.com&connector=everything&tool=get-tiny-image`);
  assert.equal(r.json.grant, undefined, 'another user holds none');
});
