// ci-variants: build-w1 (the claude CLI is heavy, the gateway's part light: its C paths run under ASan in oauth-flow — CI's 15 minutes)
// The real Claude Code CLI (offline, temporary HOME) pointed at the
// aggregated endpoint WITHOUT a token: it reads the 401's resource_metadata,
// the protected resource metadata and the authorization server metadata,
// and `claude mcp list` reports that the server needs authentication —
// discovery worked — rather than that it failed to connect.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { startGateway } from './lib/gateway.mjs';
import { setupTenant, claudeMcpList, claudeServerLine } from './lib/mcp.mjs';

let gw;

before(async () => {
  gw = await startGateway();
  await setupTenant(gw, { id: 'acme', users: ['alice@acme.com'] });
});

after(async () => { if (gw) await gw.stop(); });

test('claude mcp add --transport http acme <gw>/t/acme/mcp (no header) + claude mcp list → needs authentication', async () => {
  const mark = gw.mark();
  const r = await claudeMcpList({ url: `${gw.url}/t/acme/mcp` });
  assert.equal(r.add.code, 0, `claude mcp add: ${r.add.stderr}`);
  const line = claudeServerLine(r.stdout);
  assert.match(line, /needs authentication/i, `claude mcp list line for acme: ${JSON.stringify(line)}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  // it got there by discovery: the gateway served the metadata documents
  const paths = gw.logs().slice(mark).map((e) => e.path).filter(Boolean);
  assert.ok(paths.some((p) => p.startsWith('/.well-known/oauth-protected-resource/t/acme/mcp')), `PRM fetched: ${paths.join(' ')}`);
  assert.ok(paths.some((p) => p.startsWith('/.well-known/oauth-authorization-server/t/acme')), `AS metadata fetched: ${paths.join(' ')}`);
});
