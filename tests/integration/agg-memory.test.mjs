// The aggregated endpoint's per-session memory stays bounded per employee:
// one user who keeps opening sessions (each evicting their oldest in the
// store) and listing resources cannot keep more resource-URI maps in memory
// than sessions_per_user_max while waiting for the purge sweep.
// Upstreams: lib/ctl-upstream.mjs.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { startGateway, metricValue, waitFor } from './lib/gateway.mjs';
import { scrape } from './lib/scim.mjs';
import { setupTenant, rawSession } from './lib/mcp.mjs';
import { startCtlUpstream } from './lib/ctl-upstream.mjs';

async function fixture({ args = [], env = {}, resources = 3, resourceUris, second = false } = {}) {
  const gw = await startGateway({ args, env });
  const t = await setupTenant(gw, { users: ['alice@acme.com', 'bob@acme.com'] });
  const up = await startCtlUpstream({ name: 'ra', resources, resourceUris });
  const r = await t.putConnector('ra', { url: up.url, auth: { type: 'none' } });
  assert.equal(r.status, 201, r.body);
  if (second) { // two connectors offer resources: an unmapped URI is not routed to the only one
    const rb = await startCtlUpstream({ name: 'rb', resources: 1 });
    assert.equal((await t.putConnector('rb', { url: rb.url, auth: { type: 'none' } })).status, 201);
  }
  return { gw, t, up, agg: `${gw.url}/t/acme/mcp`, maps: async () => metricValue(await scrape(gw.port), 'mcpgate_mcp_agg_uri_maps') };
}

test('a user opening sessions faster than the purge sweep keeps at most sessions_per_user_max URI maps in memory; others keep theirs', async () => {
  // the sweep runs once a minute (the default): it never runs during this test
  const f = await fixture({ args: ['--sessions-per-user-max', '2'] });
  const bobTok = (await f.t.mintToken('bob@acme.com')).token;
  const bob = await rawSession(f.agg, bobTok);
  assert.equal((await bob.request('resources/list')).messages[0].result.resources.length, 3);
  const tok = (await f.t.mintToken('alice@acme.com')).token;
  let s;
  for (let i = 0; i < 12; i++) {
    s = await rawSession(f.agg, tok);
    const r = await s.request('resources/list');
    assert.equal(r.messages[0].result.resources.length, 3, r.body);
  }
  const n = await f.maps();
  assert.ok(n <= 3, `alice's evicted sessions' maps went at once (bob's 1 + alice's at most 2): ${n}`);
  const read = async (sess, uri) => (await sess.request('resources/read', { uri })).messages[0];
  assert.equal((await read(s, 'ra://r/1')).result?.contents?.[0]?.text, 'ra:read ra://r/1', 'her newest session still routes');
  assert.equal((await read(bob, 'ra://r/2')).result?.contents?.[0]?.text, 'ra:read ra://r/2', 'bob\'s map was not touched');
  await f.gw.stop();
});

// The store evicts a user's oldest session BY CREATION past
// sessions_per_user_max; the maps must drop that session's entry, not the
// one first used: else a user at the cap who opens a session loses a live
// session's routes (questions, progress tokens) while the dead one's entry
// waits for the sweep.
test('at the per-user cap, a new session\'s maps push out those of the session the store evicted, not a live one used earlier', async () => {
  const f = await fixture({ args: ['--sessions-per-user-max', '2'], second: true });
  const tok = (await f.t.mintToken('alice@acme.com')).token;
  const s1 = await rawSession(f.agg, tok);
  // a later second: s2's creation stamp is surely later than s1's
  const sec = Math.floor(Date.now() / 1000);
  await waitFor(() => Math.floor(Date.now() / 1000) > sec, { what: 'the next second' });
  const s2 = await rawSession(f.agg, tok);
  // s2's maps first, then s1's: s2's entry is the older one
  for (const s of [s2, s1]) assert.equal((await s.request('resources/list')).messages[0].result.resources.length, 3);
  const s3 = await rawSession(f.agg, tok); // the store evicts s1, created first
  assert.equal((await s3.request('resources/list')).messages[0].result.resources.length, 3);
  assert.equal((await s1.request('resources/list')).status, 404, 'the store evicted s1');
  const read = async (sess, uri) => (await sess.request('resources/read', { uri })).messages[0];
  // two connectors offer resources: a URI the session's map lost is not routed
  assert.equal((await read(s2, 'ra://r/1')).result?.contents?.[0]?.text, 'ra:read ra://r/1', 'live s2 lost its URI map');
  assert.equal((await read(s3, 'ra://r/2')).result?.contents?.[0]?.text, 'ra:read ra://r/2', 'the newest session routes');
  assert.equal(await f.maps(), 2);
  await f.gw.stop();
});

// A tenant may lower sessions_per_user_max below the operator's (tenant
// settings: effective = min(tenant, operator)); the store evicts at the
// tenant's value, and so must the maps: at the operator's value a user of
// that tenant kept up to 64 sessions' maps in memory for sessions the
// store had evicted, until the sweep.
test('a tenant\'s lower sessions_per_user_max bounds a user\'s maps too, not only the operator\'s', async () => {
  const f = await fixture(); // the operator's cap: 64
  assert.equal((await f.t.admin('PATCH', '', { settings: { sessions_per_user_max: 2 } })).status, 200);
  const bob = await rawSession(f.agg, (await f.t.mintToken('bob@acme.com')).token);
  assert.equal((await bob.request('resources/list')).messages[0].result.resources.length, 3);
  const tok = (await f.t.mintToken('alice@acme.com')).token;
  const opened = [];
  for (let i = 0; i < 8; i++) {
    opened.push(await rawSession(f.agg, tok));
    assert.equal((await opened[i].request('resources/list')).messages[0].result.resources.length, 3);
  }
  const n = await f.maps();
  assert.ok(n <= 3, `alice's evicted sessions' maps went at once (bob's 1 + alice's at most 2): ${n}`);
  // which two the store kept: sessions made in one millisecond go by their ids' hash
  const live = [];
  for (const s of opened) if ((await s.request('resources/list')).status !== 404) live.push(s);
  assert.equal(live.length, 2, 'the store keeps the tenant\'s 2');
  const read = async (sess, uri) => (await sess.request('resources/read', { uri })).messages[0];
  for (const s of [...live, bob])
    assert.equal((await read(s, 'ra://r/1')).result?.contents?.[0]?.text, 'ra:read ra://r/1', 'a live session routes');
  assert.equal(await f.maps(), 3);
  await f.gw.stop();
});

// The store applies a lowered cap at the user's next new session, not at
// once (mcp_session.h): until then the user's sessions beyond it are live,
// and their maps must stay — the maps judge by the cap their newest
// session was created under, not the tenant's value now.
test('a cap lowered while a user holds more sessions drops none of their live maps; their next session drops the evicted ones', async () => {
  const f = await fixture({ second: true });
  const tok = (await f.t.mintToken('alice@acme.com')).token;
  const s = [];
  for (let i = 0; i < 3; i++) s.push(await rawSession(f.agg, tok));
  assert.equal((await f.t.admin('PATCH', '', { settings: { sessions_per_user_max: 2 } })).status, 200);
  // the maps are made now, after the change: three live sessions
  for (const x of s) assert.equal((await x.request('resources/list')).messages[0].result.resources.length, 3);
  const read = async (sess, uri) => (await sess.request('resources/read', { uri })).messages[0];
  // two connectors offer resources: a URI a session's map lost is not routed
  for (const x of s) assert.equal((await read(x, 'ra://r/1')).result?.contents?.[0]?.text, 'ra:read ra://r/1', 'a live session kept its map');
  assert.equal(await f.maps(), 3);
  // a later second: the next one's creation stamp is surely later
  const sec = Math.floor(Date.now() / 1000);
  await waitFor(() => Math.floor(Date.now() / 1000) > sec, { what: 'the next second' });
  const s3 = await rawSession(f.agg, tok); // the store keeps it and one of the three
  assert.equal((await s3.request('resources/list')).messages[0].result.resources.length, 3);
  assert.equal(await f.maps(), 2, 'the evicted sessions\' maps went');
  const live = [];
  for (const x of s) if ((await x.request('resources/list')).status !== 404) live.push(x);
  assert.equal(live.length, 1, 'the store evicted two of the three');
  for (const x of [live[0], s3])
    assert.equal((await read(x, 'ra://r/2')).result?.contents?.[0]?.text, 'ra:read ra://r/2', 'a live session kept its map');
  await f.gw.stop();
});

// The maps hold a bounded number of sessions, all tenants together
// (SESSIONS_MAX; MCPGATE_TEST_AGG_SESSIONS_MAX lowers it here). Past it,
// one tenant's sessions must not push out another's maps: the tenant
// adding one loses its own oldest when it holds its share or more, else
// the tenant holding the most loses its oldest.
test('past the maps\' session bound, a tenant opening many sessions pushes out its own maps, not another tenant\'s', async () => {
  const f = await fixture({ env: { MCPGATE_TEST_AGG_SESSIONS_MAX: '4' }, second: true });
  const beta = await setupTenant(f.gw, { id: 'beta', users: ['carol@beta.com'] });
  for (const [n, resources] of [['ba', 3], ['bb', 1]]) {
    const up = await startCtlUpstream({ name: n, resources });
    assert.equal((await beta.putConnector(n, { url: up.url, auth: { type: 'none' } })).status, 201);
  }
  const betaAgg = `${f.gw.url}/t/beta/mcp`;
  const carolTok = (await beta.mintToken('carol@beta.com')).token;
  const list = async (s) => assert.equal((await s.request('resources/list')).messages[0].result.resources.length, 3);
  const read = async (sess, uri) => (await sess.request('resources/read', { uri })).messages[0]?.result?.contents?.[0]?.text;
  const c1 = await rawSession(betaAgg, carolTok);
  await list(c1);
  const tok = (await f.t.mintToken('alice@acme.com')).token;
  const acme = [];
  for (let i = 0; i < 6; i++) {
    acme.push(await rawSession(f.agg, tok));
    await list(acme[i]);
  }
  assert.equal(await f.maps(), 4);
  // two connectors offer resources in each tenant: a URI a session's map lost is not routed
  assert.equal(await read(c1, 'ba://r/1'), 'ba:read ba://r/1', 'acme\'s sessions pushed out beta\'s map');
  assert.equal(await read(acme[5], 'ra://r/1'), 'ra:read ra://r/1', 'acme\'s newest session routes');
  assert.equal(await read(acme[0], 'ra://r/1'), undefined, 'acme\'s oldest map went');
  // a tenant under its share takes the place of the one holding the most
  const c2 = await rawSession(betaAgg, carolTok);
  await list(c2);
  assert.equal(await f.maps(), 4);
  assert.equal(await read(c1, 'ba://r/2'), 'ba:read ba://r/2', 'beta\'s second session pushed out its first');
  assert.equal(await read(c2, 'ba://r/2'), 'ba:read ba://r/2');
  await f.gw.waitForLog((l) => /MCPGATE_TEST_AGG_SESSIONS_MAX is set/.test(l.msg ?? ''));
  await f.gw.stop();
});

test('a session\'s URI map holds at most agg_uri_map_bytes of URIs however few they are: long URIs past it are not routed', async () => {
  // 40 URIs of ~2,000 bytes: far below agg_uri_map_max (10,000) entries,
  // 80 KB of keys against a 64 KiB cap
  const uris = Array.from({ length: 40 }, (_, i) => `ra://${String(i).padStart(4, '0')}/` + 'x'.repeat(1990));
  const f = await fixture({ args: ['--agg-uri-map-bytes', '65536'], resources: 1, resourceUris: uris, second: true });
  const tok = (await f.t.mintToken('alice@acme.com')).token;
  const s = await rawSession(f.agg, tok);
  const listed = [];
  for (let cursor, i = 0; i < 5; i++) {
    const r = await s.request('resources/list', cursor ? { cursor } : {});
    listed.push(...r.messages[0].result.resources.map((x) => x.uri));
    cursor = r.messages[0].result.nextCursor;
    if (!cursor) break;
  }
  assert.equal(listed.length, 41, 'both connectors listed');
  const read = async (uri) => (await s.request('resources/read', { uri })).messages[0];
  assert.equal((await read(uris[0])).result?.contents?.[0]?.text, `ra:read ${uris[0]}`, 'a URI noted before the cap routes');
  const late = await read(uris[39]);
  assert.equal(late.error?.code, -32602, `a URI past the byte cap is not routed: ${JSON.stringify(late).slice(0, 300)}`);
  await f.gw.waitForLog((l) => /agg_uri_map_bytes/.test(l.msg ?? ''));
  await f.gw.stop();
});
