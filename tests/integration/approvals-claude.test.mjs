// ci-variants: build-w1
// Approvals (issue 23) end to end with the real Claude Code CLI. `claude -p`
// runs offline in a temporary HOME; its model API is stood in for by
// lib/anthropic-mock.mjs (ANTHROPIC_BASE_URL), whose "model" asks for the
// approve tool mcp__acme__everything__get-sum {a:2,b:3} and then answers
// with the text of the tool_result it got. Claude Code is given the
// aggregated endpoint /t/acme/mcp (the URL employees paste) with alice's
// mgw_ token by `claude mcp add`; the gateway holds the call, the upstream
// (server-everything behind a recorder) sees nothing, bob (DB Admins)
// decides with his own token while Claude Code waits.
//
// Between Claude Code and the gateway sits a recording pass-through
// (startRecorder, same path, Host rewritten to the gateway's): it shows the
// bytes Claude Code received on the held call's SSE stream — the
// notifications/progress with Claude Code's own progressToken. Claude Code
// itself shows MCP progress only in its interactive UI (not in -p output,
// not in --debug logs), and its idle-timeout watchdog, which progress
// resets, checks only every 30 s, so "Claude Code consumed them" is not
// observable within the 30 s test budget; the tool completing after the
// hold is.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

import { claudeBin, claudeEnv, runAsync, startRecorder, parseSse, rpcMessages } from './lib/mcp.mjs';
import { startPolicyFixture, applyPolicy, forwardedCalls, groups, waitFor, sleep, ownTokens } from './lib/policy.mjs';
import { request } from './lib/gateway.mjs';
import { startAnthropicMock } from './lib/anthropic-mock.mjs';

const SERVER = 'acme';
const TOOL = `mcp__${SERVER}__everything__get-sum`;   // Claude Code's name for the aggregated tool
const PROMPT = 'add 2 and 3 with the tool';

let f, mock, tap, home, env;
const { cmd, pre } = claudeBin();

before(async () => {
  [f, mock] = await Promise.all([
    startPolicyFixture({ users: ['alice@acme.com', 'bob@acme.com'], gatewayArgs: ['--approval-progress-interval-ms', '200'] }),
    startAnthropicMock({ toolUse: { match: TOOL, input: { a: 2, b: 3 } } }),
  ]);
  const g = groups(f.t.scim);
  await ownTokens(f, ['bob']); // decisions need bob's own token (f.tokens are admin-minted)
  await g.create('Engineers', [f.users.alice.id, f.users.bob.id]);
  await g.create('DB Admins', [f.users.bob.id]);
  await applyPolicy(f.t, {
    version: 1,
    default: 'block',
    rules: [{ groups: ['Engineers'], connector: 'everything', allow: ['echo'], approve: ['get-sum'], approvers: ['DB Admins'], approval_timeout_s: 60 }],
  });
  tap = await startRecorder(`${f.gw.url}/t/acme/mcp`);
  home = await fsp.mkdtemp(path.join(os.tmpdir(), 'mcpgate-claude-'));
  env = {
    ...claudeEnv(home),
    ANTHROPIC_BASE_URL: mock.url,
    ANTHROPIC_API_KEY: 'test',
    // connect the MCP servers before the first model request (in -p mode
    // Claude Code otherwise connects them in the background, racing it)
    MCP_CONNECTION_NONBLOCKING: 'false',
  };
  const add = await runAsync(cmd, [...pre, 'mcp', 'add', '--transport', 'http', SERVER, tap.url,
    '--header', `Authorization: Bearer ${f.tokens.alice}`], { env, cwd: home, timeoutMs: 10000 });
  assert.equal(add.code, 0, `claude mcp add: ${add.stdout} ${add.stderr}`);
});

after(async () => {
  await mock?.close();
  if (home) await fsp.rm(home, { recursive: true, force: true });
});

const decide = (id, action, token, reason) => request(f.gw.port, {
  method: 'POST', path: `/t/acme/approvals/${id}/${action}`,
  headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
  body: JSON.stringify({ reason }),
});

/** Starts `claude -p PROMPT --allowedTools TOOL`; resolves like runAsync, plus the debug log. */
function claudePrint() {
  const debugFile = path.join(home, `debug-${Date.now()}.log`);
  const run = runAsync(cmd, [...pre, '-p', PROMPT, '--allowedTools', TOOL, '--debug-file', debugFile],
    { env, cwd: home, timeoutMs: 20000 });
  return run.then(async (r) => ({ ...r, debug: await fsp.readFile(debugFile, 'utf8').catch(() => '') }));
}

const explainRun = (out) => `exit ${out.code} (signal ${out.signal}, timedOut ${out.timedOut})\nstdout: ${out.stdout}\nstderr: ${out.stderr}\n`
  + `debug (MCP/API lines): ${out.debug.split('\n').filter((l) => /MCP|API|error/i.test(l)).slice(-30).join('\n')}`;

/** The pending request of alice for get-sum {a, b}, once the gateway holds it (fails at once if claude ends first). */
async function pending(run, a, b) {
  let req;
  const held = waitFor(async () => {
    const r = await f.t.admin('GET', '/approvals?state=pending');
    assert.equal(r.status, 200, r.body);
    req = r.json.approvals.find((x) => x.user === f.users.alice.id && x.tool === 'get-sum' && x.arguments?.a === a && x.arguments?.b === b);
    return !!req;
  }, { timeoutMs: 10000, what: 'the pending approval request of Claude Code\'s call' });
  const ended = run.then((out) => { if (!req) throw new Error(`claude -p ended before the gateway held its call: ${explainRun(out)}`); });
  await Promise.race([held, ended]);
  return req;
}

/** Claude Code's tools/call as the tap saw it, with the SSE messages it received on it so far. */
function heldExchange() {
  const e = tap.requests().find((x) => rpcMessages(x.json).some((m) => m.method === 'tools/call'));
  if (!e) return undefined;
  const call = rpcMessages(e.json).find((m) => m.method === 'tools/call');
  const got = parseSse(e.response?.body ?? '').events.map((ev) => { try { return JSON.parse(ev.data); } catch { return undefined; } })
    .filter(Boolean).flatMap(rpcMessages);
  return { call, response: e.response, got };
}

test('claude -p asks for the approve tool; the gateway holds it until bob approves; the result reaches the model and the answer', async () => {
  f.rec.clear(); tap.clear(); mock.clear();
  const run = claudePrint();

  const req = await pending(run, 2, 3);
  assert.equal(req.connector, 'everything');
  assert.deepEqual(req.arguments, { a: 2, b: 3 });
  // Claude Code used the mock with the key it was given; the model saw the gateway's tool and asked for it, once
  assert.ok(mock.messages().every((e) => e.headers['x-api-key'] === 'test'), 'x-api-key: test on every model request');
  const asked = mock.messages().filter((e) => e.answer?.stop_reason === 'tool_use');
  assert.equal(asked.length, 1, 'the model asked for the tool once');
  const schema = asked[0].json.tools.find((t) => t.name === TOOL)?.input_schema;
  assert.deepEqual(Object.keys(schema?.properties ?? {}).sort(), ['a', 'b'], `Claude Code offered ${TOOL} with get-sum's schema: ${JSON.stringify(schema)}`);

  // while Claude Code waits: progress on its held stream, nothing upstream, nothing for the model yet
  let held;
  await waitFor(() => {
    held = heldExchange();
    return (held?.got ?? []).filter((m) => m.method === 'notifications/progress').length >= 2;
  }, { timeoutMs: 5000, what: 'notifications/progress on the held call\'s stream to Claude Code' });
  const token = held.call.params?._meta?.progressToken;
  assert.ok(token !== undefined, `Claude Code's tools/call carries a progressToken: ${JSON.stringify(held.call)}`);
  assert.equal(held.call.params.name, 'everything__get-sum');
  assert.match(held.response.headers['content-type'] ?? '', /^text\/event-stream/);
  const progress = held.got.filter((m) => m.method === 'notifications/progress');
  assert.ok(progress.every((m) => m.params.progressToken === token), `progress for Claude Code's token ${token}: ${JSON.stringify(progress)}`);
  assert.match(progress[0].params.message ?? '', /waiting for approval by DB Admins/);
  assert.ok(!held.got.some((m) => m.id === held.call.id), 'no answer to the call yet');
  assert.equal(forwardedCalls(f.rec, 'get-sum').length, 0, 'nothing reaches the upstream before the approval');
  assert.equal(mock.toolResults().length, 0, 'no tool result reached the model before the approval');

  const d = await decide(req.id, 'approve', f.own.bob, 'claude may add');
  assert.equal(d.status, 200, d.body);
  assert.equal(JSON.parse(d.body).decided_by, 'bob@acme.com');

  const out = await run;
  assert.equal(out.code, 0, `claude -p: ${explainRun(out)}`);
  // the tool's result reached the model…
  const results = mock.toolResults();
  assert.equal(results.length, 1, `one tool_result sent to the model: ${JSON.stringify(results)}`);
  assert.ok(!results[0].is_error, `the tool_result is not an error: ${JSON.stringify(results[0])}`);
  assert.equal(results[0].text, 'The sum of 2 and 3 is 5.', `the tool_result carries get-sum's answer: ${JSON.stringify(results[0])}`);
  // …and Claude Code printed the model's answer, which quotes it
  assert.equal(out.stdout.trim(), 'The tool said: The sum of 2 and 3 is 5.', explainRun(out));
  // the upstream saw exactly the approved call, once; Claude Code got its answer on the held stream
  const calls = forwardedCalls(f.rec, 'get-sum');
  assert.equal(calls.length, 1, 'one call upstream');
  assert.deepEqual(calls[0].json.params.arguments, { a: 2, b: 3 });
  const done = heldExchange();
  const answer = done.got.find((m) => m.id === held.call.id);
  assert.ok(answer?.result, `the held stream ended with the call's result: ${JSON.stringify(done.got.slice(-2))}`);
  assert.ok(done.got.indexOf(answer) > done.got.indexOf(progress[0]), 'progress came before the result');
  assert.match(out.debug, /Tool 'everything__get-sum' completed successfully/, 'Claude Code saw the tool complete');
});

test('bob denies: the refusal, naming him and his reason, reaches the model as the tool\'s error, and Claude Code\'s answer', async () => {
  f.rec.clear(); tap.clear(); mock.clear();
  const run = claudePrint();
  const req = await pending(run, 2, 3);
  await sleep(300);
  const d = await decide(req.id, 'deny', f.own.bob, 'not today');
  assert.equal(d.status, 200, d.body);
  const out = await run;
  assert.equal(out.code, 0, `claude -p: ${explainRun(out)}`);
  const results = mock.toolResults();
  assert.equal(results.length, 1, `one tool_result sent to the model: ${JSON.stringify(results)}`);
  assert.equal(results[0].is_error, true, `the tool_result is an error: ${JSON.stringify(results[0])}`);
  assert.match(results[0].text, /denied by bob@acme\.com: not today/);
  assert.match(out.stdout, /The tool failed: .*denied by bob@acme\.com: not today/, explainRun(out));
  assert.equal(forwardedCalls(f.rec, 'get-sum').length, 0, 'nothing reached the upstream');
});
