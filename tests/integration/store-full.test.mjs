// Store full (issue 25, item 2): the main store's LMDB map is filled through
// the real APIs — SCIM user creates in Okta's shape, with a large extension
// attribute, then smaller ones — until even a one-line user is refused.
// Then, with the store full:
//   - every write surface answers 507 with its own error shape and a clear
//     message, nothing is written (SCIM: the SCIM Error schema; admin API:
//     {error:"store_full"}; a new MCP session: the JSON-RPC error -32603
//     "the gateway's store is full" for the initialize request, on HTTP 200
//     as every JSON-RPC error of the gateway's, and no Mcp-Session-Id);
//   - reads go on: SCIM lists and gets (Okta's paging and filter), admin
//     GETs, and MCP sessions opened before keep listing and calling tools
//     through the connector (server-everything upstream);
//   - taking access away still works, from the reserve (store_reserve): an
//     Okta deactivation (PATCH active=false, no path) answers 200 and the
//     user's live session is refused at once, a user DELETE answers 204 and
//     cuts that user too, a group DELETE and a member removal go through;
//   - no 500 anywhere, the server stays up, and no user is lost: after a
//     clean stop `mcpgate store check` passes, a restart serves the same
//     directory, and deleting users makes room for ordinary writes again.
// Without a reserve, a deactivation or an admin's revoke that cannot be
// written answers 507 and still cuts the user in memory (streams end,
// session and token refused); the admin's cut outlives Okta's next push.
// ci-variants: build-w1 build-asan-w2 (stops and restarts its gateway)
import { test, after } from 'node:test';
import assert from 'node:assert/strict';

import fs from 'node:fs';
import path from 'node:path';

import { startGateway, request, runGateway } from './lib/gateway.mjs';
import { api, cli, assertExit, assertJsonError } from './lib/admin.mjs';
import { startProxyFixture, connectClient, mcpPost, initializeBody, rawSession, openStream, mcpHeaders, toolText, assertGatewayUp } from './lib/mcp.mjs';
import { URN, assertScimError, scimClient } from './lib/scim.mjs';

const fixtures = [];
after(async () => { for (const f of fixtures) { await f.gw.stop(); await f.up?.stop?.(); } });

// the default store_reserve (16M) is capped at a quarter of the map: 512K
const MAP = ['--store-map-size', '2M'];
const STORE_FULL = /store is full/;

/** Okta's user create body (shared/okta-scim.md), with a custom attribute of n bytes. */
const oktaUser = (userName, n) => ({
  schemas: [URN.USER, URN.ENT], userName,
  name: { givenName: 'Fill', familyName: 'User' },
  emails: [{ primary: true, value: userName, type: 'work' }],
  displayName: 'Fill User', locale: 'en-US', externalId: `00u${userName.replace(/\W/g, '')}`.slice(0, 20),
  groups: [], password: '1mz050nq', active: true,
  ...(n ? { [URN.ENT]: { department: 'd'.repeat(n) } } : {}),
});

const userCount = async (scim) => {
  const r = await scim.get('/Users?startIndex=1&count=1');
  assert.equal(r.status, 200, r.body);
  return r.json.totalResults;
};

const metric = async (gw, token, name) => {
  const r = await request(gw.port, { path: '/metrics', headers: { authorization: `Bearer ${token}` } });
  const m = new RegExp(`^${name} (\\d+)`, 'm').exec(r.body);
  return m ? Number(m[1]) : undefined;
};

/** Fills the store with SCIM creates, large then smaller, until a one-line user is refused. */
async function fill(scim) {
  let i = 0, created = 0;
  for (const n of [20000, 4000, 1000, 100, 0]) {
    for (;;) {
      const r = await scim.post('/Users', oktaUser(`fill${i++}@acme.com`, n));
      if (r.status === 201) { created++; continue; }
      assertScimError(r, 507, { detail: STORE_FULL });
      break;
    }
  }
  return created;
}

test('a full store: writes answer 507, reads and live sessions go on, a deactivation still cuts', async () => {
  const fx = await startProxyFixture({ gatewayArgs: MAP, users: ['alice@acme.com', 'bob@acme.com', 'carol@acme.com'] });
  fixtures.push(fx);
  const { gw, t } = fx;
  const scim = t.scim;
  const grp = await scim.createGroup('Engineering', [fx.users.alice.id, fx.users.bob.id, fx.users.carol.id]);
  const spare = await scim.createGroup('Spare', []);
  // sessions opened while there was room: the SDK client on the connector
  // (alice, bob) and on the aggregated endpoint (alice), raw for carol
  const alice = await connectClient(fx.url, fx.tokens.alice);
  const bob = await connectClient(fx.url, fx.tokens.bob);
  const aliceAgg = await connectClient(`${gw.url}/t/acme/mcp`, fx.tokens.alice);
  const carol = await rawSession(fx.url, fx.tokens.carol);
  assert.equal(toolText(await alice.client.callTool({ name: 'echo', arguments: { message: 'before' } })), 'Echo: before');
  assert.ok((await aliceAgg.client.listTools()).tools.some((x) => x.name === 'everything__echo'));

  const spareTok = await t.mintToken('alice@acme.com', { name: 'spare' });
  assert.equal(spareTok.status, 201, spareTok.body);
  const aliceSpare = await rawSession(fx.url, spareTok.token);
  const aliceAgg2 = await rawSession(`${gw.url}/t/acme/mcp`, fx.tokens.alice);

  const created = await fill(scim);
  assert.ok(created > 20, `the map took ${created} users before it was full`);
  const users = await userCount(scim);
  assert.equal(users, 3 + created);

  // ---- SCIM writes: 507, SCIM Error schema, nothing written
  const refused = async (what, p) => {
    const r = await p;
    assertScimError(r, 507, { detail: STORE_FULL });
    assert.match(r.json.detail, /nothing was written/, what);
  };
  await refused('POST /Users', scim.post('/Users', oktaUser('late@acme.com', 0)));
  const a = await scim.fetch(`/Users/${fx.users.alice.id}`);
  await refused('PUT /Users', scim.put(`/Users/${a.id}`, { ...a, displayName: 'Alice Renamed', name: { givenName: 'Alice', familyName: 'Renamed' } }));
  await refused('PATCH /Users', scim.patchOps(`/Users/${a.id}`, [{ op: 'replace', value: { displayName: 'Alice Patched' } }]));
  await refused('POST /Groups', scim.post('/Groups', { schemas: [URN.GROUP], displayName: 'Test SCIMv2', members: [] }));
  await refused('PUT /Groups', scim.put(`/Groups/${spare.id}`, { schemas: [URN.GROUP], displayName: 'Spare', members: [{ value: fx.users.alice.id }] }));
  await refused('PATCH /Groups (add)', scim.patchOps(`/Groups/${spare.id}`, [{ op: 'add', path: 'members', value: [{ value: fx.users.alice.id, display: 'alice@acme.com' }] }]));
  assert.equal((await scim.fetch(`/Users/${a.id}`)).displayName, a.displayName, 'the refused PUT/PATCH wrote nothing');
  assert.deepEqual(await scim.memberIds(spare.id), [], 'the refused group writes wrote nothing');

  // ---- admin API writes: 507 {error: "store_full"}
  const adminRefused = async (what, p) => assertJsonError(await p, 507, { error: 'store_full', message: STORE_FULL });
  await adminRefused('tenant create', api(gw.port, t.opToken, 'POST', '/admin/v1/tenants', { id: 'beta' }));
  await adminRefused('policy PUT', t.admin('PUT', '/policy', { version: 1, default: 'block', rules: [{ groups: ['Engineering'], connector: '*', allow: ['*'] }] }));
  await adminRefused('connector PUT', t.putConnector('other', { url: fx.rec.url, description: 'Other' }));
  await adminRefused('token create', t.admin('POST', '/tokens', { user: 'alice@acme.com', name: 'second', expires_in_days: 1 }));

  // ---- OAuth client registration (RFC 7591): 507, the OAuth error shape
  const reg = await request(gw.port, {
    method: 'POST', path: '/t/acme/oauth/register', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ client_name: 'Claude Code', redirect_uris: ['http://127.0.0.1/callback'] }),
  });
  assert.equal(reg.status, 507, `DCR on a full store: ${reg.status} ${reg.body}`);
  assert.equal(JSON.parse(reg.body).error, 'server_error');
  assert.match(JSON.parse(reg.body).error_description, STORE_FULL);

  // ---- a new MCP session needs a write: like every JSON-RPC error of the
  // gateway's, HTTP 200 with the error (-32603) for the request's id
  for (const url of [fx.url, `${gw.url}/t/acme/mcp`]) {
    const r = await mcpPost(url, initializeBody(1), { token: fx.tokens.alice });
    assert.equal(r.status, 200, `initialize on ${url}: ${r.status} ${r.body}`);
    assert.equal(r.headers['mcp-session-id'], undefined, 'no session');
    const e = r.messages.find((m) => m.error)?.error;
    assert.ok(e, `a JSON-RPC error: ${r.body}`);
    assert.equal(e.code, -32603);
    assert.match(e.message, STORE_FULL);
  }

  // ---- reads go on
  const list = await scim.get('/Users?startIndex=1&count=100');
  assert.equal(list.status, 200, list.body);
  assert.equal(list.json.totalResults, users);
  const byName = await scim.get(`/Users?filter=${encodeURIComponent('userName eq "bob@acme.com"')}&startIndex=1&count=100`);
  assert.equal(byName.json.totalResults, 1, byName.body);
  assert.equal((await scim.get('/Groups?startIndex=1&count=100')).json.totalResults, 2);
  for (const p of ['', '/policy', '/connectors', '/tokens']) {
    const r = await t.admin('GET', p);
    assert.equal(r.status, 200, `admin GET ${p}: ${r.status} ${r.body}`);
  }
  assert.equal((await alice.client.listTools()).tools.length > 5, true);
  assert.equal(toolText(await alice.client.callTool({ name: 'echo', arguments: { message: 'full' } })), 'Echo: full');
  assert.equal(toolText(await aliceAgg.client.callTool({ name: 'everything__echo', arguments: { message: 'agg' } })), 'Echo: agg');
  const cl = await carol.request('tools/list', {});
  assert.equal(cl.status, 200, cl.body);

  // ---- taking access away uses the reserve
  assert.equal(toolText(await bob.client.callTool({ name: 'echo', arguments: { message: 'bob' } })), 'Echo: bob');
  const d = await scim.patchOps(`/Users/${fx.users.bob.id}`, [{ op: 'replace', value: { active: false } }]);
  assert.equal(d.status, 200, `Okta's deactivation on a full store: ${d.status} ${d.body}`);
  assert.equal(d.json.active, false);
  // refused: with an error, or with the connection the deactivation closed
  // (a keep-alive socket the client reuses just as the gateway closes it:
  // undici's "fetch failed"); the fresh request below shows the token is gone
  await assert.rejects(bob.client.callTool({ name: 'echo', arguments: { message: 'after' } }),
    /invalid_token|revoked|40[13]|fetch failed/);
  const bobNew = await mcpPost(fx.url, initializeBody(1), { token: fx.tokens.bob });
  assert.equal(bobNew.status, 401, `bob's token is gone: ${bobNew.status} ${bobNew.body}`);

  const del = await scim.del(`/Users/${fx.users.carol.id}`);
  assert.equal(del.status, 204, `DELETE on a full store: ${del.status} ${del.body}`);
  const cl2 = await carol.request('tools/list', {});
  assert.equal(cl2.status, 401, `carol's session is cut: ${cl2.status} ${cl2.body}`);

  const rm = await scim.patchOps(`/Groups/${grp.id}`, [{ op: 'remove', path: `members[value eq "${fx.users.alice.id}"]` }]);
  assert.ok(rm.status === 200 || rm.status === 204, `member removal on a full store: ${rm.status} ${rm.body}`);
  assert.deepEqual(await scim.memberIds(grp.id), [fx.users.bob.id].sort());
  const tr = await t.admin('DELETE', `/tokens/${spareTok.id}`);
  assert.equal(tr.status, 204, `token revocation on a full store: ${tr.status} ${tr.body}`);
  const sp = await aliceSpare.request('tools/list', {});
  assert.equal(sp.status, 401, `the revoked token's session is cut: ${sp.status} ${sp.body}`);
  const aliceRaw = await rawSession(fx.url, fx.tokens.alice).catch((e) => e);
  assert.ok(aliceRaw instanceof Error, 'no new session while full');
  const sd = await aliceAgg2.del();
  assert.equal(sd.status, 204, `MCP session DELETE on a full store: ${sd.status} ${sd.body}`);
  assert.equal((await aliceAgg2.request('tools/list', {})).status, 404, 'the deleted session is gone');
  const gd = await scim.del(`/Groups/${spare.id}`);
  assert.equal(gd.status, 204, `group DELETE on a full store: ${gd.status} ${gd.body}`);

  const live = await metric(gw, t.opToken, 'mcpgate_store_map_live_bytes');
  const reserve = await metric(gw, t.opToken, 'mcpgate_store_map_reserve_bytes');
  assert.equal(reserve, 512 * 1024);
  assert.ok(live <= 2 * 1024 * 1024 - reserve, `what ordinary writes took stayed out of the reserve (${live} bytes in use)`);

  // still full for everything else, still up, nothing lost
  await refused('POST /Users after', scim.post('/Users', oktaUser('later@acme.com', 0)));
  await assertGatewayUp(gw);
  assert.equal(await userCount(scim), users - 1);
  assert.ok(!gw.logs().some((e) => e.status >= 500 && e.status !== 507), 'no 5xx other than 507 in the access log');
  await alice.close(); await bob.close(); await aliceAgg.close();

  // ---- stop, check, restart
  await gw.stop();
  const chk = await cli(['store', 'check', '--data', gw.dataDir], { timeoutMs: 20000 });
  assertExit(chk, 0, 'store check');
  assert.match(chk.stdout, /store ok/);
  // a store_map_size below the store's file (found by the operations review:
  // LMDB maps the whole file anyway, and the gateway started "ready" with
  // no room): refused, saying what to set; nothing in the file changes
  const before = fs.readFileSync(path.join(gw.dataDir, 'store', 'data.mdb'));
  const small = await runGateway(['serve', '--listen', '127.0.0.1:0', '--data', gw.dataDir, '--store-map-size', '1M'], { timeoutMs: 8000 });
  assert.equal(small.timedOut, false, `refused rather than started: ${small.stderr.slice(-800)}`);
  assert.notEqual(small.code, 0);
  assert.match(small.stderr, /store_map_size \(1048576 bytes\) is smaller than the store's file \(\d+ bytes\).*set store_map_size to at least \d+ bytes/, small.stderr.slice(-800));
  assert.ok(fs.readFileSync(path.join(gw.dataDir, 'store', 'data.mdb')).equals(before), 'the store is as it was');
  const gw2 = await startGateway({ args: MAP, dataDir: gw.dataDir });
  fixtures.push({ gw: gw2 });
  const scim2 = scimClient(gw2.port, 'acme', scim.token);
  assert.equal(await userCount(scim2), users - 1);
  assert.equal((await scim2.fetch(`/Users/${fx.users.bob.id}`)).active, false);
  await refused('POST /Users after restart', scim2.post('/Users', oktaUser('restart@acme.com', 0)));
  // deleting users makes room: ordinary writes and sessions come back
  for (let i = 0; i < 8; i++) {
    const f = await scim2.get(`/Users?filter=${encodeURIComponent(`userName eq "fill${i}@acme.com"`)}`);
    const r = await scim2.del(`/Users/${f.json.Resources[0].id}`);
    assert.equal(r.status, 204, r.body);
  }
  const back = await scim2.post('/Users', oktaUser('back@acme.com', 0));
  assert.equal(back.status, 201, `room again after deletes: ${back.status} ${back.body}`);
  const s = await mcpPost(`${gw2.url}/t/acme/mcp/everything`, initializeBody(1), { token: fx.tokens.alice });
  assert.equal(s.status, 200, `a new session after deletes: ${s.status} ${s.body}`);
});

test('without a reserve a deactivation that cannot be written answers 507 and still cuts the user, in memory', async () => {
  const fx = await startProxyFixture({ gatewayArgs: ['--store-map-size', '1M', '--store-reserve', '0'] });
  fixtures.push(fx);
  const { t } = fx;
  const bob = await t.scim.fetch(`/Users/${fx.users.bob.id}`);
  const big = { ...bob, schemas: [URN.USER, URN.ENT], [URN.ENT]: { department: 'd'.repeat(9000) } };
  assert.equal((await t.scim.put(`/Users/${bob.id}`, big)).status, 200);
  // bob's live session and stream, and alice's, opened while there was room
  const bobS = await rawSession(fx.url, fx.tokens.bob);
  const aliceS = await rawSession(fx.url, fx.tokens.alice);
  assert.equal((await bobS.request('tools/list', {})).status, 200);
  const bobStream = await openStream(fx.url, { headers: mcpHeaders({ token: fx.tokens.bob, sessionId: bobS.sessionId, protocolVersion: bobS.protocolVersion, accept: 'text/event-stream' }) });
  assert.equal(bobStream.status, 200, 'bob holds a GET stream');
  const created = await fill(t.scim);
  assert.ok(created > 5, `${created} users fit`);
  // the map's real end: a wizard app's deactivation (PUT of the whole
  // user, active false) cannot be written — an honest 507 that Okta shows
  // as a failed task to retry, never a 500, and nothing half-done
  const d = await t.scim.put(`/Users/${bob.id}`, { ...big, active: false });
  assertScimError(d, 507, { detail: STORE_FULL });
  assert.equal((await t.scim.fetch(`/Users/${fx.users.bob.id}`)).active, true, 'nothing was written');
  // ...but access is taken away all the same (fail closed): bob's stream
  // ends, his session and his token are refused; alice is untouched
  await Promise.race([bobStream.ended, new Promise((_, no) => setTimeout(() => no(new Error("bob's stream was not cut")), 5000))]);
  const after = await bobS.request('tools/list', {});
  assert.equal(after.status, 401, `bob's session after the unwritten deactivation: ${after.status} ${after.body}`);
  const bobNew = await mcpPost(fx.url, initializeBody(1), { token: fx.tokens.bob });
  assert.equal(bobNew.status, 401, `bob's token after the unwritten deactivation: ${bobNew.status} ${bobNew.body}`);
  assert.equal((await aliceS.request('tools/list', {})).status, 200, 'alice still works');
  assert.equal(await metric(fx.gw, t.opToken, 'mcpgate_store_users_cut_in_memory'), 1, 'the SRE sees it');
  // and the audit log (its own environment, not full) says what was done instead
  let rec;
  for (let i = 0; i < 50 && !rec; i++) {
    const q = await t.admin('GET', '/audit?limit=50');
    assert.equal(q.status, 200, q.body);
    rec = JSON.parse(q.body).records.find((x) => x.kind === 'scim' && x.status === 507 && x.method === 'PUT');
    if (!rec) await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(rec, 'the refused deactivation is in the audit log');
  assert.equal(rec.note, `not written; user ${bob.id} cut in memory`);
  await fx.gw.waitForLog((e) => e.level === 'error' && /deactivation could not be written/.test(e.msg ?? ''), 5000); // the operator is told
  await assertGatewayUp(fx.gw);
  // the remedy is a restart with a larger map: bob stays cut across it
  // (Okta does not retry a failed task by itself), until the retried
  // deactivation commits
  await fx.gw.stop();
  const gw2 = await startGateway({ args: ['--store-map-size', '8M', '--store-reserve', '0'], dataDir: fx.gw.dataDir });
  fixtures.push({ gw: gw2 });
  const url2 = `${gw2.url}/t/acme/mcp/everything`;
  assert.equal((await mcpPost(url2, initializeBody(1), { token: fx.tokens.bob })).status, 401, 'bob still cut after the restart');
  assert.equal((await mcpPost(url2, initializeBody(1), { token: fx.tokens.alice })).status, 200, 'alice works');
  assert.equal(await metric(gw2, t.opToken, 'mcpgate_store_users_cut_in_memory'), 1);
  assert.ok(gw2.logs().some((e) => e.level === 'error' && /stay cut in memory/.test(e.msg ?? '')), 'said at start');
  const scim2 = scimClient(gw2.port, 'acme', t.scim.token);
  const retried = await scim2.put(`/Users/${bob.id}`, { ...big, active: false });
  assert.equal(retried.status, 200, retried.body);
  assert.equal(await metric(gw2, t.opToken, 'mcpgate_store_users_cut_in_memory'), 0, 'the store says it now');
  assert.equal((await mcpPost(url2, initializeBody(1), { token: fx.tokens.bob })).status, 401);
});

test("without a reserve an admin's revoke that cannot be written still cuts, until the admin restores", async () => {
  const fx = await startProxyFixture({ gatewayArgs: ['--store-map-size', '1M', '--store-reserve', '0'] });
  fixtures.push(fx);
  const { t } = fx;
  const alice = await t.scim.fetch(`/Users/${fx.users.alice.id}`);
  const aliceS = await rawSession(fx.url, fx.tokens.alice);
  const bobS = await rawSession(fx.url, fx.tokens.bob);
  assert.equal((await aliceS.request('tools/list', {})).status, 200);
  const stream = await openStream(fx.url, { headers: mcpHeaders({ token: fx.tokens.alice, sessionId: aliceS.sessionId, protocolVersion: aliceS.protocolVersion, accept: 'text/event-stream' }) });
  assert.equal(stream.status, 200, 'alice holds a GET stream');
  assert.ok(await fill(t.scim) > 5);
  // the incident button, with the store full to its last page: 507 (nothing
  // written), and the answer says the cut holds in memory
  const r = await t.admin('POST', `/users/${alice.id}/revoke`, { reason: 'laptop stolen (INC-77)' });
  assert.equal(r.status, 507, r.body);
  const body = JSON.parse(r.body);
  assert.equal(body.error, 'store_full');
  assert.match(body.message, /cut in memory/);
  await Promise.race([stream.ended, new Promise((_, no) => setTimeout(() => no(new Error("alice's stream was not cut")), 5000))]);
  assert.equal((await aliceS.request('tools/list', {})).status, 401, "alice's session after the unwritten revoke");
  assert.equal((await mcpPost(fx.url, initializeBody(1), { token: fx.tokens.alice })).status, 401, "alice's token");
  assert.equal((await bobS.request('tools/list', {})).status, 200, 'bob still works');
  assert.equal(await metric(fx.gw, t.opToken, 'mcpgate_store_users_cut_in_memory'), 1);
  let rec;
  for (let i = 0; i < 50 && !rec; i++) {
    const q = await t.admin('GET', '/audit?limit=50');
    assert.equal(q.status, 200, q.body);
    rec = JSON.parse(q.body).records.find((x) => x.status === 507 && /\/revoke$/.test(x.path ?? ''));
    if (!rec) await new Promise((res) => setTimeout(res, 100));
  }
  assert.ok(rec, 'the unwritten revoke is in the audit log');
  assert.equal(rec.note, `not written; user ${alice.id} cut in memory`);
  // Okta's next push of alice (PUT of the whole user, active true: nothing
  // changes, so it commits even now) is not the admin's word: still cut
  const push = await t.scim.put(`/Users/${alice.id}`, { ...alice, schemas: [URN.USER, URN.ENT], active: true });
  assert.equal(push.status, 200, push.body);
  assert.equal((await mcpPost(fx.url, initializeBody(1), { token: fx.tokens.alice })).status, 401, 'still cut after an IdP push');
  // ...and after a restart (the log beside the store)
  await fx.gw.stop();
  const gw2 = await startGateway({ args: ['--store-map-size', '1M', '--store-reserve', '0'], dataDir: fx.gw.dataDir });
  fixtures.push({ gw: gw2 });
  fx.gw = gw2;
  fx.url = `${gw2.url}/t/acme/mcp/everything`;
  t.admin = (m, p, b) => api(gw2.port, t.opToken, m, `/admin/v1/tenants/acme${p}`, b);
  assert.equal((await mcpPost(fx.url, initializeBody(1), { token: fx.tokens.alice })).status, 401, 'still cut after a restart');
  // the admin's restore lifts it, signing alice out as the revoke would
  // have (found by review: the unwritten revoke deleted nothing, and the
  // stolen laptop's token worked again after the restore)
  const rs = await t.admin('POST', `/users/${alice.id}/restore`);
  assert.equal(rs.status, 200, rs.body);
  assert.equal(await metric(fx.gw, t.opToken, 'mcpgate_store_users_cut_in_memory'), 0);
  assert.equal((await mcpPost(fx.url, initializeBody(1), { token: fx.tokens.alice })).status, 401, "the old token is gone after the restore");
  const fresh = await t.admin('POST', '/tokens', { user: alice.userName, name: 'new laptop' });
  assert.equal(fresh.status, 201, fresh.body);
  assert.equal((await mcpPost(fx.url, initializeBody(1), { token: JSON.parse(fresh.body).token })).status, 200, 'alice back with a new token');
  await assertGatewayUp(fx.gw);
});

// Found by review: a member removal or a group DELETE that cannot be
// written (the map's real end: no reserve left) answered 507 and left the
// members in the group — every connector the group granted kept working
// until Okta's retry landed, while an unwritten deactivation cuts the user.
// Now those memberships go in memory (store/dir.h): the policy sees the
// group gone for them at once, across a restart, until a write that
// settles them commits; no one else is touched.
test('without a reserve a member removal or group DELETE that cannot be written still takes the group away, in memory', async () => {
  const fx = await startProxyFixture({ gatewayArgs: ['--store-map-size', '1M', '--store-reserve', '0'], users: ['alice@acme.com', 'bob@acme.com', 'carol@acme.com'] });
  fixtures.push(fx);
  const { t } = fx;
  const [alice, bob, carol] = [fx.users.alice.id, fx.users.bob.id, fx.users.carol.id];
  const eng = await t.scim.createGroup('Engineers', [alice, bob]);
  // Ops is large: deleting it rewrites many pages, which a full map has no room for
  const crew = [];
  for (let i = 0; i < 200; i++) crew.push((await t.scim.createUser(`crew${i}@acme.com`)).id);
  const ops = await t.scim.createGroup('Ops', [carol, ...crew]);
  await t.setPolicy({ version: 1, default: 'block', rules: [{ groups: ['Engineers', 'Ops'], connector: 'everything', allow: ['*'] }] });
  let url = fx.url;
  const called = async (s) => {
    const r = await s.request('tools/call', { name: 'echo', arguments: { message: 'hi' } });
    return r.status === 200 && (r.messages ?? []).some((m) => m.result && !m.result.isError);
  };
  // a new session and a call: a connector the user may not use is not
  // even found (404), as for any connector the policy hides
  const echoes = async (u) => {
    let s;
    try { s = await rawSession(url, fx.tokens[u]); } catch { return false; }
    return called(s);
  };
  const aliceS = await rawSession(url, fx.tokens.alice); // opened while she had the group
  for (const u of ['alice', 'bob', 'carol']) assert.ok(await echoes(u), `${u} may call the connector's tools`);
  const created = await fill(t.scim);
  assert.ok(created > 5, `${created} users fit`);

  // Okta removes alice from Engineers: the store cannot write it
  const rm = await t.scim.patchOps(`/Groups/${eng.id}`, [{ op: 'remove', path: `members[value eq "${alice}"]` }]);
  assertScimError(rm, 507, { detail: STORE_FULL });
  assert.deepEqual(await t.scim.memberIds(eng.id), [alice, bob].sort(), 'nothing was written');
  assert.equal(await echoes('alice'), false, 'alice lost the group all the same');
  assert.equal(await called(aliceS), false, 'her session opened before cannot call either');
  assert.ok(await echoes('bob'), 'bob keeps it');
  assert.equal(await metric(fx.gw, t.opToken, 'mcpgate_store_memberships_cut_in_memory'), 1, 'the SRE sees it');
  await fx.gw.waitForLog((e) => e.level === 'error' && /group .*: the removal of 1 member\(s\) could not be written/.test(e.msg ?? ''), 5000); // the operator is told
  // the Ops group is deleted in Okta: nor can that be written — every member goes
  const del = await t.scim.del(`/Groups/${ops.id}`);
  assertScimError(del, 507, { detail: STORE_FULL });
  assert.equal(await echoes('carol'), false, 'carol lost Ops all the same');
  assert.ok(await echoes('bob'), 'bob still keeps Engineers');
  assert.equal(await metric(fx.gw, t.opToken, 'mcpgate_store_memberships_cut_in_memory'), 2);
  // the audit log says what was done instead
  let rec;
  for (let i = 0; i < 50 && !rec; i++) {
    const q = await t.admin('GET', '/audit?limit=50');
    rec = JSON.parse(q.body).records.find((x) => x.kind === 'scim' && x.status === 507 && x.method === 'DELETE');
    if (!rec) await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(rec?.note, `not written; group ${ops.id}, every member: cut in memory`);

  // a restart with a larger map keeps both, until Okta's retries commit
  await fx.gw.stop();
  const gw2 = await startGateway({ args: ['--store-map-size', '8M', '--store-reserve', '0'], dataDir: fx.gw.dataDir });
  fixtures.push({ gw: gw2 });
  url = `${gw2.url}/t/acme/mcp/everything`;
  assert.equal(await echoes('alice'), false, 'alice still without Engineers after the restart');
  assert.equal(await echoes('carol'), false, 'carol still without Ops');
  assert.ok(await echoes('bob'));
  assert.equal(await metric(gw2, t.opToken, 'mcpgate_store_memberships_cut_in_memory'), 2);
  assert.ok(gw2.logs().some((e) => e.level === 'error' && /group membership\(s\) whose removal could not be written/.test(e.msg ?? '')), 'said at start');
  const scim2 = scimClient(gw2.port, 'acme', t.scim.token);
  // a membership PATCH of Ops retried from before its DELETE does not hand it back
  const add = await scim2.patchOps(`/Groups/${ops.id}`, [{ op: 'add', path: 'members', value: [{ value: bob }] }]);
  assert.equal(add.status, 200, add.body);
  assert.equal(await echoes('carol'), false, 'a PATCH does not end a deleted group\'s cut');
  const rm2 = await scim2.patchOps(`/Groups/${eng.id}`, [{ op: 'remove', path: `members[value eq "${alice}"]` }]);
  assert.equal(rm2.status, 200, rm2.body);
  const del2 = await scim2.del(`/Groups/${ops.id}`);
  assert.equal(del2.status, 204, del2.body);
  assert.equal(await metric(gw2, t.opToken, 'mcpgate_store_memberships_cut_in_memory'), 0, 'the store says it now');
  assert.equal(await echoes('alice'), false);
  assert.equal(await echoes('carol'), false);
  assert.ok(await echoes('bob'));
  // and Okta adding alice back gives it back
  const back = await scim2.patchOps(`/Groups/${eng.id}`, [{ op: 'add', path: 'members', value: [{ value: alice }] }]);
  assert.equal(back.status, 200, back.body);
  assert.ok(await echoes('alice'), 'alice is in Engineers again');
});

// Found by review: an Okta deactivation the full store could not write
// cut the user in memory only — the tokens, sessions and grants it would
// have deleted stayed stored — and the IdP's next word on active (a
// reactivation, which changes nothing stored and so commits even now)
// ended the mark without signing the user out: the stolen laptop's token
// and MCP session worked again. An admin's restore, meant for the admin's
// own incident block, lifted the IdP's mark too. Whatever ends such a mark
// now signs the user out in the same transaction (store/dir.c), and a
// restore ends only the admin's and a logout's marks.
test('an unwritten Okta deactivation ended by a reactivation or an admin restore revives nothing from before it', async () => {
  const fx = await startProxyFixture({ gatewayArgs: ['--store-map-size', '1M', '--store-reserve', '0'] });
  fixtures.push(fx);
  const { t } = fx;
  const bob = await t.scim.fetch(`/Users/${fx.users.bob.id}`);
  const alice = await t.scim.fetch(`/Users/${fx.users.alice.id}`);
  const big = (u) => ({ ...u, schemas: [URN.USER, URN.ENT], [URN.ENT]: { department: 'd'.repeat(9000) } });
  assert.equal((await t.scim.put(`/Users/${bob.id}`, big(bob))).status, 200);
  assert.equal((await t.scim.put(`/Users/${alice.id}`, big(alice))).status, 200);
  const bobS = await rawSession(fx.url, fx.tokens.bob);
  assert.equal((await bobS.request('tools/list', {})).status, 200);
  assert.ok(await fill(t.scim) > 5);
  // IT deactivates both in Okta: cannot be written, cut in memory
  for (const u of [bob, alice]) {
    const d = await t.scim.put(`/Users/${u.id}`, { ...big(u), active: false });
    assertScimError(d, 507, { detail: STORE_FULL });
  }
  assert.equal((await mcpPost(fx.url, initializeBody(1), { token: fx.tokens.bob })).status, 401, 'cut in memory');
  // Okta reactivates bob: his old token and session stay dead, a new token works
  const re = await t.scim.patchOps(`/Users/${bob.id}`, [{ op: 'replace', value: { active: true } }]);
  assert.equal(re.status, 200, re.body);
  assert.equal((await mcpPost(fx.url, initializeBody(1), { token: fx.tokens.bob })).status, 401, "bob's old token after the reactivation");
  assert.equal((await bobS.request('tools/list', {})).status, 401, "bob's old MCP session after the reactivation");
  const fresh = await t.admin('POST', '/tokens', { user: bob.userName, name: 'new laptop' });
  assert.equal(fresh.status, 201, fresh.body);
  assert.equal((await mcpPost(fx.url, initializeBody(1), { token: JSON.parse(fresh.body).token })).status, 200, 'bob back with a new token');
  // an admin's restore of alice is not Okta's word: she stays cut
  const rs = await t.admin('POST', `/users/${alice.id}/restore`);
  assert.equal(rs.status, 200, rs.body);
  assert.equal((await mcpPost(fx.url, initializeBody(1), { token: fx.tokens.alice })).status, 401, "alice after the admin's restore");
  assert.equal(await metric(fx.gw, t.opToken, 'mcpgate_store_users_cut_in_memory'), 1, 'her mark stays');
});
