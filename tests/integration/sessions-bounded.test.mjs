// ci-variants: build-w1 build-asan-w2 (one loop plain, two loops under ASan; the plain two-loop run only repeated it — CI's 15 minutes)
// Bounded MCP sessions (issue 12 item 4, the store side):
//   1. a session idle past session_idle_timeout_ms answers 404 "Session not
//      found" (-32001) on both endpoints, while one kept in use lives on; the
//      purge removes the expired records from the store (checked in the LMDB
//      file after the gateway stops);
//   2. the refusal holds before any purge ran (the request path reads the
//      stored stamps; the records are still in the file);
//   3. a session older than session_max_age_ms is refused however much it is
//      used, and purged;
//   4. sessions_per_user_max: one more session evicts the user's oldest (by
//      creation) in the creating transaction; the newest work, another
//      user's sessions are untouched;
//   5. bad values of the four keys refuse the start, naming the key;
//   6. a stream open on a session that is evicted (or expires) ends at the
//      next purge tick instead of outliving its session.
// Upstream: lib/ctl-upstream.mjs (one connector "ca").
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';

import { startGateway, runGateway, makeTempDir, sleep, waitFor } from './lib/gateway.mjs';
import { setupTenant, rawSession, openStream, mcpHeaders } from './lib/mcp.mjs';
import { startCtlUpstream } from './lib/ctl-upstream.mjs';

const ALICE = 'alice@acme.com';
const BOB = 'bob@acme.com';

async function fixture(args) {
  const gw = await startGateway({ args });
  const up = await startCtlUpstream({ name: 'ca' });
  const t = await setupTenant(gw, { users: [ALICE, BOB] });
  const r = await t.putConnector('ca', { url: up.url, auth: { type: 'header', name: 'X-Key', value: 'secret-ca' } });
  assert.equal(r.status, 201, `PUT connector: ${r.status} ${r.body}`);
  const a = await t.mintToken(ALICE);
  const b = await t.mintToken(BOB);
  assert.equal(a.status, 201, a.body);
  assert.equal(b.status, 201, b.body);
  return {
    gw, t, tokens: { alice: a.token, bob: b.token },
    single: `${gw.url}/t/acme/mcp/ca`,
    agg: `${gw.url}/t/acme/mcp`,
  };
}

/** tools/list on a session: the HTTP reply. */
const use = (s) => s.request('tools/list', {});

function assertSessionGone(res, what) {
  assert.equal(res.status, 404, `${what}: expected 404, got ${res.status} ${res.body}`);
  assert.equal(res.json?.error?.code, -32001, `${what}: JSON-RPC -32001: ${res.body}`);
  assert.match(res.json?.error?.message ?? '', /Session not found/, `${what}: ${res.body}`);
}

function assertSessionAlive(res, what) {
  assert.equal(res.status, 200, `${what}: expected 200, got ${res.status} ${res.body}`);
  assert.ok(res.messages.some((m) => m.result?.tools), `${what}: a tools/list result: ${res.body}`);
}

/** The sessions database as mdb_dump -p prints it (gateway stopped). */
function dumpSessions(dataDir) {
  const d = spawnSync('mdb_dump', ['-p', '-s', 'sessions', `${dataDir}/store`], { encoding: 'latin1' });
  assert.equal(d.status, 0, `mdb_dump: ${d.stderr}`);
  return d.stdout;
}

/** The "s" record key of a session id in mdb_dump -p's notation. */
function recordKey(sid) {
  const raw = Buffer.concat([Buffer.from('s'), createHash('sha256').update(sid).digest()]);
  let out = '';
  for (const b of raw) {
    if (b === 0x5c) out += '\\\\';
    else if (b >= 0x20 && b <= 0x7e) out += String.fromCharCode(b);
    else out += '\\' + b.toString(16).padStart(2, '0');
  }
  return out;
}

/** True when the dump holds the session's record or its per-user index entry. */
function inStore(dump, sid) {
  const hex = createHash('sha256').update(sid).digest('hex');
  const lines = dump.split('\n').map((l) => l.trim());
  return lines.includes(recordKey(sid)) || dump.includes(hex);
}

test('1. idle sessions are refused on both endpoints and purged; a session kept in use lives on', async () => {
  const f = await fixture(['--session-idle-timeout-ms', '1000', '--session-purge-interval-ms', '100']);
  const single = await rawSession(f.single, f.tokens.alice);
  const agg = await rawSession(f.agg, f.tokens.alice);
  const kept = await rawSession(f.single, f.tokens.alice);
  const keptAgg = await rawSession(f.agg, f.tokens.alice);
  assertSessionAlive(await use(single), 'single right after initialize');
  assertSessionAlive(await use(agg), 'aggregated right after initialize');
  // 3 s: three idle timeouts (and, for the aggregated session whose creation
  // stamp has one-second resolution, still two); the kept ones are used
  // every 200 ms throughout
  const end = Date.now() + 3000;
  while (Date.now() < end) {
    assertSessionAlive(await use(kept), 'single session kept in use');
    assertSessionAlive(await use(keptAgg), 'aggregated session kept in use');
    await sleep(200);
  }
  assertSessionGone(await use(single), 'idle single-connector session');
  assertSessionGone(await use(agg), 'idle aggregated session');
  const del = await single.del();
  assert.equal(del.status, 404, `DELETE of an idle session: ${del.status} ${del.body}`);
  assertSessionAlive(await use(kept), 'kept single session after the others expired');
  assertSessionAlive(await use(keptAgg), 'kept aggregated session after the others expired');
  await sleep(400); // a purge pass (every 100 ms) after the last check
  await f.gw.stop();
  const dump = dumpSessions(f.gw.dataDir);
  assert.ok(inStore(dump, kept.sessionId) && inStore(dump, keptAgg.sessionId), 'the sessions in use are still stored');
  assert.ok(!inStore(dump, single.sessionId), 'the idle single-connector session was purged from the store');
  assert.ok(!inStore(dump, agg.sessionId), 'the idle aggregated session was purged from the store');
});

test('2. expiry holds before any purge: the request path reads the stored stamps', async () => {
  const f = await fixture(['--session-idle-timeout-ms', '500', '--session-purge-interval-ms', '86400000']);
  const single = await rawSession(f.single, f.tokens.alice);
  const agg = await rawSession(f.agg, f.tokens.alice);
  await sleep(1800);
  assertSessionGone(await use(single), 'idle single-connector session, no purge yet');
  assertSessionGone(await use(agg), 'idle aggregated session, no purge yet');
  await f.gw.stop();
  const dump = dumpSessions(f.gw.dataDir);
  assert.ok(inStore(dump, single.sessionId) && inStore(dump, agg.sessionId),
    'the records are still in the store (no purge ran): the refusal came from their stamps');
});

test('3. a session past session_max_age_ms is refused however much it is used, and purged', async () => {
  const f = await fixture(['--session-max-age-ms', '1500', '--session-purge-interval-ms', '100']);
  // the clock starts before the sessions are created: a session can only
  // end later than this, however slowly the two creations go (under ASan
  // on a busy machine they took over 100 ms)
  const start = Date.now();
  const single = await rawSession(f.single, f.tokens.alice);
  const agg = await rawSession(f.agg, f.tokens.alice);
  const goneAt = {};
  while (Date.now() - start < 4500 && !(goneAt.single && goneAt.agg)) {
    for (const [name, s] of [['single', single], ['agg', agg]]) {
      if (goneAt[name]) continue;
      const r = await use(s);
      if (r.status === 404) {
        assertSessionGone(r, `${name} session past its max age`);
        goneAt[name] = Date.now() - start;
      } else {
        assertSessionAlive(r, `${name} session in use`);
      }
    }
    await sleep(150);
  }
  assert.ok(goneAt.single >= 1400, `the single-connector session lived its max age, used throughout (gone at ${goneAt.single} ms)`);
  assert.ok(goneAt.agg >= 1400, `the aggregated session lived its max age, used throughout (gone at ${goneAt.agg} ms)`);
  await sleep(400);
  await f.gw.stop();
  const dump = dumpSessions(f.gw.dataDir);
  assert.ok(!inStore(dump, single.sessionId) && !inStore(dump, agg.sessionId), 'both were purged from the store');
});

test('4. sessions_per_user_max: one more session evicts the user\'s oldest; the newest work; other users untouched', async () => {
  const f = await fixture(['--sessions-per-user-max', '3']);
  // creation order across endpoints: the sessions whose order matters are
  // 1.1 s apart (4b: within one second)
  const bob1 = await rawSession(f.single, f.tokens.bob);
  const bob2 = await rawSession(f.agg, f.tokens.bob);
  const s1 = await rawSession(f.single, f.tokens.alice);
  await sleep(1100);
  const s2 = await rawSession(f.agg, f.tokens.alice);
  await sleep(1100);
  const s3 = await rawSession(f.single, f.tokens.alice);
  for (const [n, s] of [['s1', s1], ['s2', s2], ['s3', s3]]) assertSessionAlive(await use(s), `${n} within the cap`);
  await sleep(1100);
  const s4 = await rawSession(f.agg, f.tokens.alice);
  assertSessionGone(await use(s1), 'the oldest session (s1), evicted by the fourth');
  for (const [n, s] of [['s2', s2], ['s3', s3], ['s4', s4]]) assertSessionAlive(await use(s), `${n} after the eviction`);
  const s5 = await rawSession(f.single, f.tokens.alice);
  assertSessionGone(await use(s2), 'the next oldest (s2, aggregated), evicted by the fifth');
  for (const [n, s] of [['s3', s3], ['s4', s4], ['s5', s5]]) assertSessionAlive(await use(s), `${n} after the second eviction`);
  assertSessionAlive(await use(bob1), "bob's single-connector session");
  assertSessionAlive(await use(bob2), "bob's aggregated session");
  await f.gw.stop();
  const dump = dumpSessions(f.gw.dataDir);
  assert.ok(!inStore(dump, s1.sessionId) && !inStore(dump, s2.sessionId), 'the evicted records are gone from the store');
  for (const s of [s3, s4, s5, bob1, bob2]) assert.ok(inStore(dump, s.sessionId), 'the others are stored');
});

// Both endpoints stamp a session's creation to the millisecond: an
// aggregated session made in the same second as, and before, a connector
// endpoint's is the older one, and the cap evicts it first. (Stamped to
// the end of its second, it was the newer, and the cap took the
// connector endpoint's session.)
test('4b. sessions_per_user_max across endpoints within one second: the one created first is evicted', async () => {
  const f = await fixture(['--sessions-per-user-max', '2']);
  // early in a second, so the first two are made within it
  await waitFor(() => Date.now() % 1000 < 100, { what: 'the start of a second', timeoutMs: 3000 });
  const sec = Math.floor(Date.now() / 1000);
  const a1 = await rawSession(f.agg, f.tokens.alice);
  await sleep(5); // another millisecond
  const d1 = await rawSession(f.single, f.tokens.alice);
  // Within one second (as a rule) is where second-granular stamps
  // misordered them; the order asserted below holds in any case, so a slow
  // machine that took longer does not fail the test, it only tests less.
  if (Math.floor(Date.now() / 1000) !== sec) console.log('# 4b: the two sessions were not made within one second');
  await sleep(5);
  const d2 = await rawSession(f.single, f.tokens.alice);
  assertSessionGone(await use(a1), 'the aggregated session, created first, evicted by the third');
  for (const [n, s] of [['d1', d1], ['d2', d2]]) assertSessionAlive(await use(s), `${n}, created after it`);
  await f.gw.stop();
});

test('5. bad values of the session keys refuse the start, naming the key', async () => {
  const dir = await makeTempDir();
  const bad = [
    ['session_idle_timeout_ms', '0'], ['session_idle_timeout_ms', 'soon'],
    ['session_max_age_ms', '-1'], ['session_max_age_ms', '99999999999999'],
    ['sessions_per_user_max', '0'], ['sessions_per_user_max', '1.5'],
    ['session_purge_interval_ms', '5'], ['session_purge_interval_ms', ''],
  ];
  for (const [key, v] of bad) {
    const r = await runGateway(['serve', '--listen', '127.0.0.1:0', '--data', dir, `--${key.replaceAll('_', '-')}`, v], { timeoutMs: 5000 });
    assert.equal(r.timedOut, false, `${key}=${v}: refused rather than started`);
    assert.notEqual(r.code, 0, `${key}=${v}: non-zero exit`);
    assert.ok(r.stderr.includes(key), `${key}=${v}: stderr names the key: ${r.stderr.slice(-300)}`);
  }
  const env = await runGateway(['serve', '--listen', '127.0.0.1:0', '--data', dir], { env: { MCPGATE_SESSIONS_PER_USER_MAX: '0' }, timeoutMs: 5000 });
  assert.notEqual(env.code, 0, 'a bad value from the environment refuses too');
  assert.ok(env.stderr.includes('sessions_per_user_max'), env.stderr.slice(-300));
  const ok = await runGateway(['serve', '--print-config', '--data', dir]);
  assert.equal(ok.code, 0, ok.stderr);
  for (const line of ['session_idle_timeout_ms = 86400000', 'session_max_age_ms = 604800000',
    'sessions_per_user_max = 64', 'session_purge_interval_ms = 60000']) {
    assert.ok(ok.stdout.includes(line), `default: ${line}`);
  }
});

test('6. the open GET streams of an evicted session end at the next purge tick; the others stay', async () => {
  const f = await fixture(['--sessions-per-user-max', '1', '--session-purge-interval-ms', '100']);
  const get = (url, s) => openStream(url, { headers: { ...mcpHeaders({ token: f.tokens.alice, sessionId: s.sessionId, protocolVersion: s.protocolVersion }), accept: 'text/event-stream' } });
  const s1 = await rawSession(f.single, f.tokens.alice);
  const st1 = await get(f.single, s1);
  assert.equal(st1.status, 200);
  await sleep(1100);
  const s2 = await rawSession(f.agg, f.tokens.alice); // evicts s1
  const st2 = await get(f.agg, s2);
  assert.equal(st2.status, 200);
  const ended = await Promise.race([st1.ended.then(() => true), sleep(3000).then(() => false)]);
  assert.ok(ended, 'the evicted session\'s stream ended');
  await f.gw.waitForLog((l) => /live exchange of an evicted or expired session/.test(l.msg ?? ''));
  await sleep(300);
  assert.equal(st2.isEnded, false, 'the live session\'s stream stays');
  st2.close();
  await f.gw.stop();
});
