// Tenant purge through the store's purge registry (st_purge_tenant_step):
// a tenant with data in every module that keeps per-tenant keys — SCIM users
// and groups, a connector with a sealed credential, a policy, an employee
// token, an MCP session, settings — is deleted; once the purge finished the
// id can be created again and the new incarnation sees none of it, a
// prefix-sharing neighbour keeps all of its own, and `store check` is clean
// (no index entry or token left pointing nowhere).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';

import { startGateway } from './lib/gateway.mjs';
import { setupTenant, rawSession } from './lib/mcp.mjs';
import { startCtlUpstream } from './lib/ctl-upstream.mjs';
import { adminClient, cli, assertExit, operatorToken, recreateAfterPurge } from './lib/admin.mjs';

const T = '/admin/v1/tenants';
const ALICE = 'alice@acme.com';

test('a purged tenant leaves nothing behind; its neighbour keeps everything', async () => {
  const gw = await startGateway();
  const up = await startCtlUpstream({ name: 'ca' });
  const op = adminClient(gw.port, operatorToken(gw.dataDir));
  const made = {};
  for (const id of ['doomed', 'doomed-2']) {
    const t = await setupTenant(gw, { id, users: [ALICE] });
    const g = await t.scim.post('/Groups', { schemas: ['urn:ietf:params:scim:schemas:core:2.0:Group'], displayName: 'eng' });
    assert.equal(g.status, 201, g.body);
    const c = await t.putConnector('ca', { url: up.url, auth: { type: 'header', name: 'X-Key', value: `secret-${id}` } });
    assert.equal(c.status, 201, c.body);
    const m = await t.mintToken(ALICE);
    assert.equal(m.status, 201, m.body);
    const s = await rawSession(`${gw.url}/t/${id}/mcp/ca`, m.token);
    assert.equal((await op.patch(`${T}/${id}`, { settings: { sessions_per_user_max: 5 } })).status, 200);
    made[id] = { t, token: m.token, session: s };
  }
  const del = await op.del(`${T}/doomed`);
  assert.equal(del.status, 202, del.body);
  const again = await recreateAfterPurge(gw.port, op.token, 'doomed');
  assert.equal(again.id, 'doomed');

  const users = await op.get(`${T}/doomed/users`);
  assert.equal(users.status, 200, users.body);
  assert.equal(users.json.totalResults, 0, 'no SCIM user of the old incarnation');
  assert.equal((await op.get(`${T}/doomed/groups`)).json.totalResults, 0, 'no group');
  assert.deepEqual((await op.get(`${T}/doomed/connectors`)).json.connectors, [], 'no connector');
  assert.equal((await op.get(`${T}/doomed/policy`)).status, 404, 'no policy');
  assert.deepEqual((await op.get(`${T}/doomed/tokens`)).json.tokens, [], 'no employee token');
  assert.equal((await op.get(`${T}/doomed`)).json.settings.sessions_per_user_max, 0, 'settings went with the record');
  const old = await made.doomed.session.request('tools/list', {});
  assert.equal(old.status, 401, `the old employee token authenticates nothing: ${old.status} ${old.body}`);

  // the neighbour whose id shares the prefix kept everything
  const nb = made['doomed-2'];
  assert.equal((await op.get(`${T}/doomed-2/users`)).json.totalResults, 1);
  assert.equal((await op.get(`${T}/doomed-2/groups`)).json.totalResults, 1);
  assert.equal((await op.get(`${T}/doomed-2/connectors`)).json.connectors.length, 1);
  assert.equal((await op.get(`${T}/doomed-2/policy`)).status, 200);
  assert.equal((await op.get(`${T}/doomed-2/tokens`)).json.tokens.length, 1);
  assert.equal((await op.get(`${T}/doomed-2`)).json.settings.sessions_per_user_max, 5);
  const live = await nb.session.request('tools/list', {});
  assert.equal(live.status, 200, `the neighbour's session and its sealed credential still work: ${live.body}`);

  assert.equal((await gw.stop()).code, 0);
  const r = await cli(['store', 'check', '--data', gw.dataDir], { timeoutMs: 30000 });
  assertExit(r, 0, 'store check after the purge');
  assert.match(r.stdout, /store ok/, r.stdout);
  // no sealed secret of the old incarnation is left in the file
  const d = spawnSync('mdb_dump', ['-p', '-s', 'secrets', `${gw.dataDir}/store`], { encoding: 'latin1' });
  assert.equal(d.status, 0, d.stderr);
  assert.ok(!/doomed(?!-2)/.test(d.stdout.replaceAll('doomed-2', '')), 'no secret keyed by the purged tenant');
});
