// ci-variants: build-w1 (the claude CLI is heavy, the gateway's part light: its C paths run under ASan in agg-basic — CI's 15 minutes)
// The real Claude Code CLI (offline, temporary HOME) pointed at the
// aggregated endpoint /t/{tenant}/mcp — the one URL employees paste — with
// an mgw_ token: `claude mcp list` reports it connected.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { startAggFixture, upstreamSession } from './lib/agg.mjs';
import { claudeMcpList, claudeServerLine } from './lib/mcp.mjs';

let f;
before(async () => { f = await startAggFixture(); });

test('claude mcp add --transport http acme <gw>/t/acme/mcp + claude mcp list → connected', async () => {
  for (const rec of Object.values(f.recs)) rec.clear();
  const mark = f.gw.mark();
  const r = await claudeMcpList({ url: f.url, token: f.tokens.alice, name: 'acme' });
  const line = claudeServerLine(r.stdout, 'acme');
  assert.equal(r.add.code, 0, `claude mcp add exit code (stdout ${r.add.stdout}, stderr ${r.add.stderr})`);
  assert.equal(r.code, 0, `claude mcp list exit code (stdout ${r.stdout}, stderr ${r.stderr})`);
  assert.ok(line.includes(f.url), `the line shows the aggregated URL: ${JSON.stringify(line)}`);
  assert.match(line, /✔ Connected|✓ Connected/, `claude mcp list line for acme: ${JSON.stringify(line)}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  // Claude Code's requests went to the aggregated endpoint and were served there
  await f.gw.settle();
  const hits = f.gw.logs().slice(mark).filter((e) => e.msg === 'access' && e.path === '/t/acme/mcp');
  assert.ok(hits.some((e) => e.method === 'POST' && e.status === 200), `the access log shows Claude Code's requests on /t/acme/mcp served: ${JSON.stringify(hits)}`);
  assert.ok(hits.every((e) => e.status < 400), `no request was refused: ${JSON.stringify(hits)}`);
  // when it opened an upstream session (to list tools), Claude Code's clientInfo was replayed
  const { init } = upstreamSession(f.recs.alpha, (e) => e.json?.method === 'tools/list');
  if (init) assert.match(init.json.params.clientInfo?.name ?? '', /claude/i, `alpha saw Claude Code's clientInfo: ${init.body}`);
});

test('claude mcp list with a revoked token does not connect', async () => {
  const m = await f.t.mintToken('bob@acme.com');
  assert.equal(m.status, 201, m.body);
  const d = await f.t.admin('DELETE', `/tokens/${m.id}`);
  assert.equal(d.status, 204, d.body);
  for (const rec of Object.values(f.recs)) rec.clear();
  const r = await claudeMcpList({ url: f.url, token: m.token, name: 'acme' });
  const line = claudeServerLine(r.stdout, 'acme');
  assert.ok(line.length > 0, `acme listed: ${r.stdout}`);
  assert.doesNotMatch(line, /Connected/, `a revoked token must not connect: ${line}`);
  for (const rec of Object.values(f.recs)) assert.equal(rec.requests().length, 0, 'nothing reached an upstream');
});
