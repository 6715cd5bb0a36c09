// ci-variants: build-w1 (the claude CLI is heavy, the gateway's part light: its C paths run under ASan in proxy-passthrough and proxy-auth — CI's 15 minutes)
// The real Claude Code CLI (offline, temporary HOME) pointed at the gateway's
// single-connector endpoint with an mgw_ token: `claude mcp list` connects.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { startProxyFixture, claudeMcpList, claudeServerLine, UPSTREAM_SECRET } from './lib/mcp.mjs';

let f;
before(async () => { f = await startProxyFixture(); });

test('claude mcp list reports the gateway connector connected', async () => {
  f.rec.clear();
  const r = await claudeMcpList({ url: f.url, token: f.tokens.alice });
  const line = claudeServerLine(r.stdout);
  assert.equal(r.code, 0, `claude mcp list exit code (stdout ${r.stdout}, stderr ${r.stderr})`);
  assert.match(line, /✔ Connected|✓ Connected/, `claude mcp list line for acme: ${JSON.stringify(line)}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  const init = f.rec.requests().find((e) => e.json?.method === 'initialize');
  assert.ok(init, 'Claude Code\'s initialize reached the upstream through the gateway');
  assert.match(init.json.params.clientInfo?.name ?? '', /claude/i, 'it was Claude Code');
  for (const e of f.rec.requests()) {
    assert.equal(e.headers.authorization, UPSTREAM_SECRET, 'upstream saw the connector credential');
    assert.ok(!JSON.stringify(e.rawHeaders).includes(f.tokens.alice), 'never the mgw_ token');
  }
});

test('claude mcp list with a revoked token does not connect', async () => {
  const m = await f.t.mintToken('bob@acme.com');
  assert.equal(m.status, 201, m.body);
  const d = await f.t.admin('DELETE', `/tokens/${m.id}`);
  assert.equal(d.status, 204, d.body);
  f.rec.clear();
  const r = await claudeMcpList({ url: f.url, token: m.token });
  const line = claudeServerLine(r.stdout);
  assert.ok(line.length > 0, `acme listed: ${r.stdout}`);
  assert.doesNotMatch(line, /Connected/, `a revoked token must not connect: ${line}`);
  assert.equal(f.rec.requests().length, 0, 'nothing reached the upstream');
});
