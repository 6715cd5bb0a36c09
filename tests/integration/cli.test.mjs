// The command line as an admin client of a running gateway: tenant,
// scim-token and admin-token commands, --json, exit codes (0 ok, 1 failed,
// 2 usage), token sources (admin.token, MCPGATE_ADMIN_TOKEN_FILE,
// MCPGATE_ADMIN_TOKEN).
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { startGateway, makeTempDir, refusedPort, waitFor, gatewayBin } from './lib/gateway.mjs';
import {
  api, cli, assertExit, operatorToken, SCIM_TOKEN_RE, ADMIN_TOKEN_RE, TOKEN_ID_RE,
} from './lib/admin.mjs';

const PUBLIC_URL = 'https://scim.example.test';
let gw, opToken, common;
const outputs = []; // every CLI stdout/stderr, checked for the operator token at the end

before(async () => {
  gw = await startGateway({ args: ['--public-url', PUBLIC_URL] });
  opToken = operatorToken(gw.dataDir);
  common = ['--server', gw.url, '--data', gw.dataDir];
});

async function run(args, opts) {
  const r = await cli(args, opts);
  outputs.push(r.stdout, r.stderr);
  return r;
}
const mg = (...args) => run([...args, ...common]);

function parseJson(text, what) {
  try { return JSON.parse(text); } catch (e) { assert.fail(`${what}: --json output is not JSON: ${e.message}\n${text}`); }
}


test('mcpgate version → exit 0', async () => {
  const r = await run(['version']);
  assertExit(r, 0);
  assert.match(r.stdout, /^mcpgate \d+\.\d+\.\d+/);
});

let acmeInitial; // {token, id}

test('tenant create prints the SCIM base URL and a mgs_ token', async () => {
  const r = await mg('tenant', 'create', 'acme', '--name', 'Acme Corp');
  assertExit(r, 0);
  assert.ok(r.stdout.includes(`${PUBLIC_URL}/t/acme/scim/v2`), `base URL printed:\n${r.stdout}`);
  const toks = r.stdout.match(/mgs_[A-Za-z0-9_-]+/g) ?? [];
  assert.equal(toks.length, 1, `one SCIM token printed:\n${r.stdout}`);
  assert.match(toks[0], SCIM_TOKEN_RE);
  // the tenant exists with its name
  const s = await api(gw.port, opToken, 'GET', '/admin/v1/tenants/acme');
  assert.equal(s.status, 200, s.body);
  assert.equal(s.json.name, 'Acme Corp');
  // the printed token's id is the one listed
  const l = await api(gw.port, opToken, 'GET', '/admin/v1/tenants/acme/scim-tokens');
  assert.equal(l.json.tokens.length, 1);
  const id = l.json.tokens[0].id;
  assert.ok(r.stdout.includes(id), `token id ${id} printed:\n${r.stdout}`);
  acmeInitial = { token: toks[0], id };

  const sl = await mg('scim-token', 'list', 'acme');
  assertExit(sl, 0);
  assert.ok(sl.stdout.includes(id), `scim-token list shows ${id}:\n${sl.stdout}`);
  assert.ok(!sl.stdout.includes(toks[0]), 'scim-token list never shows the token');
});

test('tenant create of an existing id → exit 1 with a message on stderr', async () => {
  const r = await mg('tenant', 'create', 'acme');
  assertExit(r, 1);
  assert.match(r.stderr, /409|exists/i, `stderr: ${r.stderr}`);
  assert.doesNotMatch(r.stdout, /mgs_/, 'no token printed');
  // an id that could never be valid is a usage error, refused before any request
  const bad = await mg('tenant', 'create', 'Not_Valid');
  assertExit(bad, 2);
  assert.match(bad.stderr, /invalid id/i, `stderr: ${bad.stderr}`);
  const sneaky = await mg('tenant', 'show', 'acme/scim-tokens');
  assertExit(sneaky, 2);
  assert.doesNotMatch(sneaky.stdout, /tokens/, 'no path smuggling through an id');
});

test('tenant list / show, human and --json', async () => {
  const r = await mg('tenant', 'list');
  assertExit(r, 0);
  assert.match(r.stdout, /^acme\s+Acme Corp\s/m, `list:\n${r.stdout}`);
  const j = await mg('tenant', 'list', '--json');
  assertExit(j, 0);
  const lj = parseJson(j.stdout, 'tenant list');
  assert.ok(Array.isArray(lj.tenants));
  assert.ok(lj.tenants.some((t) => t.id === 'acme' && t.name === 'Acme Corp'));

  const s = await mg('tenant', 'show', 'acme');
  assertExit(s, 0);
  const sj = parseJson(s.stdout, 'tenant show');
  assert.equal(sj.id, 'acme');
  assert.equal(sj.scim.base_url, `${PUBLIC_URL}/t/acme/scim/v2`);
  const sj2 = parseJson((await mg('tenant', 'show', 'acme', '--json')).stdout, 'tenant show --json');
  assert.equal(sj2.id, 'acme');

  const miss = await mg('tenant', 'show', 'nope');
  assertExit(miss, 1);
  assert.match(miss.stderr, /404/, `stderr: ${miss.stderr}`);
});

test('tenant create --json parses and carries the token', async () => {
  const r = await mg('tenant', 'create', 'jsonco', '--name', 'Json Co', '--json');
  assertExit(r, 0);
  const j = parseJson(r.stdout, 'tenant create');
  assert.equal(j.id, 'jsonco');
  assert.equal(j.name, 'Json Co');
  assert.match(j.scim.token, SCIM_TOKEN_RE);
  assert.match(j.scim.token_id, TOKEN_ID_RE);
  assert.equal(j.scim.base_url, `${PUBLIC_URL}/t/jsonco/scim/v2`);
});

test('scim-token create / list / revoke', async () => {
  const c = await mg('scim-token', 'create', 'acme', '--name', 'okta2');
  assertExit(c, 0);
  const toks = c.stdout.match(/mgs_[A-Za-z0-9_-]+/g) ?? [];
  assert.equal(toks.length, 1, c.stdout);
  assert.match(toks[0], SCIM_TOKEN_RE);
  assert.notEqual(toks[0], acmeInitial.token);

  const cj = await mg('scim-token', 'create', 'acme', '--name', 'okta3', '--json');
  assertExit(cj, 0);
  const t3 = parseJson(cj.stdout, 'scim-token create');
  assert.match(t3.token, SCIM_TOKEN_RE);
  assert.match(t3.id, TOKEN_ID_RE);
  assert.equal(t3.name, 'okta3');

  const l = await mg('scim-token', 'list', 'acme');
  assertExit(l, 0);
  assert.match(l.stdout, /\bokta2\b/);
  assert.match(l.stdout, /\bokta3\b/);
  assert.ok(!l.stdout.includes(toks[0]) && !l.stdout.includes(t3.token), 'no token text in the list');
  const lj = parseJson((await mg('scim-token', 'list', 'acme', '--json')).stdout, 'scim-token list');
  assert.equal(lj.tokens.length, 3, 'initial + okta2 + okta3');
  const okta2 = lj.tokens.find((t) => t.name === 'okta2');
  assert.ok(okta2, 'okta2 listed');
  assert.ok(c.stdout.includes(okta2.id), 'create printed the id that list shows');
  for (const t of lj.tokens) assert.deepEqual(Object.keys(t).sort(), ['created', 'id', 'last_used', 'name']);

  const rv = await mg('scim-token', 'revoke', 'acme', okta2.id);
  assertExit(rv, 0);
  const lj2 = parseJson((await mg('scim-token', 'list', 'acme', '--json')).stdout, 'scim-token list');
  assert.deepEqual(lj2.tokens.map((t) => t.id).sort(), [acmeInitial.id, t3.id].sort());
  const again = await mg('scim-token', 'revoke', 'acme', okta2.id);
  assertExit(again, 1);
  assert.match(again.stderr, /404/, `stderr: ${again.stderr}`);

  const nt = await mg('scim-token', 'list', 'no-such-tenant');
  assertExit(nt, 1);
  assert.match(nt.stderr, /404/);
});

test('admin-token create / list / revoke; the minted token works against the API', async () => {
  const c = await mg('admin-token', 'create', 'acme', '--name', 'ci');
  assertExit(c, 0);
  const toks = c.stdout.match(/mga_[A-Za-z0-9_-]+/g) ?? [];
  assert.equal(toks.length, 1, c.stdout);
  assert.match(toks[0], ADMIN_TOKEN_RE);
  assert.notEqual(toks[0], opToken);
  const tok = toks[0];
  assert.equal((await api(gw.port, tok, 'GET', '/admin/v1/tenants/acme')).status, 200);
  assert.equal((await api(gw.port, tok, 'GET', '/admin/v1/tenants/jsonco')).status, 403);

  // the tenant token used by the CLI itself sees only its tenant
  const asTenant = await run(['tenant', 'list', '--json', '--server', gw.url], { env: { MCPGATE_ADMIN_TOKEN: tok } });
  assertExit(asTenant, 0);
  assert.deepEqual(parseJson(asTenant.stdout, 'tenant list').tenants.map((t) => t.id), ['acme']);
  const denied = await run(['tenant', 'create', 'sneaky', '--server', gw.url], { env: { MCPGATE_ADMIN_TOKEN: tok } });
  assertExit(denied, 1);
  assert.match(denied.stderr, /403/, `stderr: ${denied.stderr}`);

  const l = await mg('admin-token', 'list', 'acme');
  assertExit(l, 0);
  assert.match(l.stdout, /\bci\b/);
  assert.ok(!l.stdout.includes(tok), 'no token text in the list');
  const lj = parseJson((await mg('admin-token', 'list', 'acme', '--json')).stdout, 'admin-token list');
  assert.equal(lj.tokens.length, 1);
  const id = lj.tokens[0].id;
  assert.match(id, TOKEN_ID_RE);
  assert.ok(c.stdout.includes(id), 'create printed the token id');

  const cj = await mg('admin-token', 'create', 'acme', '--json');
  assertExit(cj, 0);
  const second = parseJson(cj.stdout, 'admin-token create');
  assert.match(second.token, ADMIN_TOKEN_RE);

  const rv = await mg('admin-token', 'revoke', 'acme', id);
  assertExit(rv, 0);
  assert.equal((await api(gw.port, tok, 'GET', '/admin/v1/tenants/acme')).status, 401, 'revoked token refused');
  assert.equal((await api(gw.port, second.token, 'GET', '/admin/v1/tenants/acme')).status, 200, 'the other one works');
  const again = await mg('admin-token', 'revoke', 'acme', id);
  assertExit(again, 1);
});

// The employee's token: what the admin hands on is the one URL employees
// paste (the aggregated endpoint, at public_url), not only the per-connector
// form pointed at the address the CLI talked to (found by the README review).
test('token create prints the aggregated endpoint\'s claude mcp add at public_url; the token works there', async () => {
  const u = await fetch(`${gw.url}/t/acme/scim/v2/Users`, {
    method: 'POST',
    headers: { authorization: `Bearer ${acmeInitial.token}`, 'content-type': 'application/scim+json' },
    body: JSON.stringify({ schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'], userName: 'ada@acme.com', active: true }),
  });
  assert.equal(u.status, 201, await u.text());
  const c = await mg('token', 'create', 'acme', '--user', 'ada@acme.com', '--name', 'laptop');
  assertExit(c, 0);
  const tok = (c.stdout.match(/mgw_[A-Za-z0-9_-]+/) ?? [])[0];
  assert.ok(tok, c.stdout);
  assert.ok(c.stdout.includes(`claude mcp add --transport http acme ${PUBLIC_URL}/t/acme/mcp --header "Authorization: Bearer ${tok}"`),
    `the aggregated endpoint's command at public_url:\n${c.stdout}`);
  assert.ok(c.stdout.includes(`${PUBLIC_URL}/t/acme/mcp/<connector>`), c.stdout);
  const j = parseJson((await mg('token', 'create', 'acme', '--user', 'ada@acme.com', '--json')).stdout, 'token create');
  assert.equal(j.mcp_url, `${PUBLIC_URL}/t/acme/mcp`);
  const init = await fetch(`${gw.url}/t/acme/mcp`, {
    method: 'POST',
    headers: { authorization: `Bearer ${tok}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } } }),
  });
  assert.equal(init.status, 200, await init.text());
});

test('wrong token → exit 1 with an error 401 message', async () => {
  const r = await run(['tenant', 'list', '--server', gw.url, '--data', gw.dataDir],
    { env: { MCPGATE_ADMIN_TOKEN: 'bogus-but-long-enough-token' } });
  assertExit(r, 1);
  assert.match(r.stderr, /401/, `stderr: ${r.stderr}`);
  assert.equal(r.stdout, '', 'nothing on stdout');
  // no token anywhere (empty data dir, no env) → exit 1 naming the problem
  const empty = await makeTempDir();
  const n = await run(['tenant', 'list', '--server', gw.url, '--data', empty]);
  assertExit(n, 1);
  assert.match(n.stderr, /token/i, `stderr: ${n.stderr}`);
});

test('MCPGATE_SERVER and MCPGATE_DATA stand in for the flags', async () => {
  const r = await run(['tenant', 'list', '--json'], { env: { MCPGATE_SERVER: gw.url + '/', MCPGATE_DATA: gw.dataDir } });
  assertExit(r, 0);
  assert.ok(parseJson(r.stdout, 'tenant list').tenants.some((t) => t.id === 'acme'));
});

test('MCPGATE_ADMIN_TOKEN_FILE (admin_token_file\'s variable) points the CLI at a token file kept outside the data directory', async () => {
  // the README's Prometheus example reads the token from /etc/mcpgate/admin.token:
  // a server whose admin_token_file is there has no <data>/admin.token
  const tokDir = await makeTempDir();
  const file = `${tokDir}/admin.token`;
  const other = await startGateway({ env: { MCPGATE_ADMIN_TOKEN_FILE: file } });
  try {
    const r = await run(['tenant', 'list', '--json', '--server', other.url, '--data', other.dataDir],
      { env: { MCPGATE_ADMIN_TOKEN_FILE: file } });
    assertExit(r, 0);
    assert.ok(Array.isArray(parseJson(r.stdout, 'tenant list').tenants));
    // without it the CLI looks in the data directory, and says where else to look
    const n = await run(['tenant', 'list', '--server', other.url, '--data', other.dataDir]);
    assertExit(n, 1);
    assert.match(n.stderr, /MCPGATE_ADMIN_TOKEN_FILE/, `stderr: ${n.stderr}`);
    // MCPGATE_ADMIN_TOKEN still wins over the file
    const w = await run(['tenant', 'list', '--server', other.url, '--data', other.dataDir],
      { env: { MCPGATE_ADMIN_TOKEN_FILE: file, MCPGATE_ADMIN_TOKEN: 'bogus-but-long-enough-token' } });
    assertExit(w, 1);
    assert.match(w.stderr, /401/, `stderr: ${w.stderr}`);
  } finally {
    await other.stop();
  }
});

test('unreachable server → exit 1', async () => {
  const port = await refusedPort();
  const r = await run(['tenant', 'list', '--server', `http://127.0.0.1:${port}`, '--data', gw.dataDir]);
  assertExit(r, 1);
  assert.ok(r.stderr.trim().length > 0, 'an error message on stderr');
  assert.equal(r.stdout, '');
});

test('usage errors → exit 2', async () => {
  for (const args of [
    ['frobnicate'],
    [],
    ['tenant', 'frobnicate'],
    ['tenant', 'create'],
    ['tenant', 'create', 'a', 'b'],
    ['tenant', 'list', '--bogus-flag'],
    ['tenant', 'create', 'x', '--name'],
    ['scim-token', 'revoke', 'acme'],
    ['admin-token', 'create'],
  ]) {
    const r = await run(args);
    assertExit(r, 2, `mcpgate ${args.join(' ')}`);
    assert.ok(r.stderr.trim().length > 0, `usage message on stderr for: ${args.join(' ')}`);
  }
  assert.equal((await api(gw.port, opToken, 'GET', '/admin/v1/tenants/x')).status, 404, 'nothing was created');
});

test('tenant delete → exit 0, then the tenant is gone', async () => {
  const r = await mg('tenant', 'delete', 'acme');
  assertExit(r, 0);
  const s = await mg('tenant', 'show', 'acme');
  assertExit(s, 1);
  assert.match(s.stderr, /404/);
  const l = parseJson((await mg('tenant', 'list', '--json')).stdout, 'tenant list');
  assert.ok(!l.tenants.some((t) => t.id === 'acme'));
  const dj = await mg('tenant', 'delete', 'jsonco', '--json');
  assertExit(dj, 0);
  assert.equal(parseJson(dj.stdout, 'tenant delete').id, 'jsonco');
  const again = await mg('tenant', 'delete', 'jsonco');
  assertExit(again, 1);
});

test('the CLI never printed the operator token; the server stops cleanly', async () => {
  assert.ok(outputs.length > 20, 'the CLI ran');
  for (const o of outputs) assert.ok(!o.includes(opToken.slice(4)), 'operator token not in CLI output');
  const ex = await gw.stop();
  assert.equal(ex.code, 0);
});

// Found by the operations review: without --server the CLI sent the
// operator token to http://127.0.0.1:8080, whoever listened there — the
// server on another port (its listen or admin_listen ignored), or, with no
// server running, another local user's listener. Now it asks the data
// directory: the running server wrote where it answers; no server holding
// the directory's lock, no token sent anywhere.
test('without --server the CLI reaches the server running on the data directory, and sends nothing when none runs', async () => {
  const http = await import('node:http');
  // a server with a separate admin listener on a port of its own
  const other = await startGateway({ args: ['--admin-listen', '127.0.0.1:0'] });
  const env = { MCPGATE_SERVER: '' };
  let port;
  try {
    // written once every loop's listeners are bound: the gateway may answer before
    await waitFor(() => fs.existsSync(`${other.dataDir}/admin.url`), { what: 'admin.url' });
    const url = fs.readFileSync(`${other.dataDir}/admin.url`, 'utf8').trim();
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/, url);
    port = Number(new URL(url).port);
    assert.notEqual(port, other.port, 'the admin listener, not listen');
    const r = await run(['tenant', 'create', 'found', '--data', other.dataDir], { env });
    assertExit(r, 0, 'tenant create without --server');
    const l = await run(['tenant', 'list', '--json', '--data', other.dataDir], { env });
    assertExit(l, 0);
    assert.ok(parseJson(l.stdout, 'tenant list').tenants.some((t) => t.id === 'found'));
  } finally {
    await other.stop();
  }
  assert.equal(fs.existsSync(`${other.dataDir}/admin.url`), false, 'removed at exit');
  // stopped: someone else takes its admin port and records what it gets
  const seen = [];
  const rogue = http.createServer((req, res) => { seen.push(req.headers.authorization ?? ''); res.end('{}'); });
  await new Promise((res) => rogue.listen(port, '127.0.0.1', res));
  try {
    // even with the old address left behind (a crash leaves the file)
    fs.writeFileSync(`${other.dataDir}/admin.url`, `http://127.0.0.1:${port}\n`);
    const r = await run(['tenant', 'list', '--data', other.dataDir], { env });
    assertExit(r, 1);
    assert.match(r.stderr, /no mcpgate is running on .*its lock is free.*--server URL/, r.stderr);
    assert.deepEqual(seen, [], 'nothing, and no token, was sent to the listener');
    // a data directory no server ever used says so too
    const empty = await makeTempDir();
    const n = await run(['tenant', 'list', '--data', empty], { env: { ...env, MCPGATE_ADMIN_TOKEN: 'some-operator-token-0123456789' } });
    assertExit(n, 1);
    assert.match(n.stderr, /no mcpgate is running on/, n.stderr);
    assert.deepEqual(seen, []);
  } finally {
    await new Promise((res) => rogue.close(res));
  }
});

/** A listener that records the Authorization header of every request. */
async function rogueOn(port) {
  const http = await import('node:http');
  const seen = [];
  const srv = http.createServer((req, res) => { seen.push(req.headers.authorization ?? ''); res.end('{"tenants":[]}'); });
  await new Promise((res, rej) => { srv.once('error', rej); srv.listen(port, '127.0.0.1', res); });
  return { seen, port: srv.address().port, close: () => new Promise((res) => srv.close(res)) };
}

/** Holds an exclusive flock on file until released (as `flock -x` does). */
function holdLock(file, opts = {}) {
  const p = spawn('flock', ['-x', file, 'sleep', '60'], { stdio: 'ignore', ...opts });
  return { ready: waitFor(() => spawnSync('flock', ['-n', '-s', file, 'true']).status !== 0, { what: 'the lock held' }), stop: () => p.kill('SIGKILL') };
}

// Found by review: a lock anyone can hold and an admin.url anyone can write,
// in a data directory another local user made (./data under a shared
// directory), sent the operator token from MCPGATE_ADMIN_TOKEN to that
// user's listener. The file is believed only from a directory that only its
// owner could write and that nobody but root or this user could have put
// there, and only when that owner wrote it.
test('an admin.url planted by another user is not believed, and no token is sent', { skip: process.getuid?.() === 0 ? false : 'needs root: another user plants the file' }, async () => {
  const shared = await makeTempDir();
  fs.chmodSync(shared, 0o1777);
  const data = path.join(shared, 'data');
  fs.mkdirSync(data, { mode: 0o700 });
  const rogue = await rogueOn(0);
  fs.writeFileSync(path.join(data, 'admin.url'), `http://127.0.0.1:${rogue.port}\n`, { mode: 0o600 });
  fs.writeFileSync(path.join(data, 'mcpgate.lock'), '', { mode: 0o600 });
  spawnSync('chown', ['-R', '65534:65534', data]);
  const lock = holdLock(path.join(data, 'mcpgate.lock'), { uid: 65534, gid: 65534 });
  try {
    await lock.ready;
    const r = await run(['tenant', 'list', '--data', data], { env: { MCPGATE_SERVER: '', MCPGATE_ADMIN_TOKEN: 'operator-secret-token-0123456789' } });
    assertExit(r, 1);
    assert.match(r.stderr, /belongs to uid 65534 and sits in .*which others than root may write to: where its server answers cannot be believed/, r.stderr);
    assert.deepEqual(rogue.seen, [], 'no request, no token');
  } finally {
    lock.stop();
    await rogue.close();
  }
});

// Found by review: a server killed outright (SIGKILL, OOM) leaves its
// admin.url; while the next holder of the lock (a serve still opening the
// store, a key rotate) had not written its own, the CLI believed the old
// one, whose port may be anyone's by then. Taking the lock removes it.
test('a killed server\'s admin.url is removed by the next holder of the lock, and not believed meanwhile', async () => {
  const g = await startGateway();
  await waitFor(() => fs.existsSync(path.join(g.dataDir, 'admin.url')), { what: 'admin.url' });
  const port = Number(new URL(fs.readFileSync(path.join(g.dataDir, 'admin.url'), 'utf8').trim()).port);
  await g.kill(); // SIGKILL: no exit path runs
  assert.ok(fs.existsSync(path.join(g.dataDir, 'admin.url')), 'the killed server left its admin.url');
  const rogue = await rogueOn(port);
  try {
    // the next holder of the lock: here an offline command that takes it
    const p = await run(['audit', 'prune', '--before', '1', '--data', g.dataDir]);
    assertExit(p, 0, 'audit prune');
    assert.ok(!fs.existsSync(path.join(g.dataDir, 'admin.url')), 'the stale admin.url is gone once the lock was taken');
    // a holder that has not said where it answers (a serve still starting)
    const lock = holdLock(path.join(g.dataDir, 'mcpgate.lock'));
    try {
      await lock.ready;
      const r = await run(['tenant', 'list', '--data', g.dataDir], { env: { MCPGATE_SERVER: '' } });
      assertExit(r, 1);
      assert.match(r.stderr, /has not said where it answers/, r.stderr);
    } finally {
      lock.stop();
    }
    assert.deepEqual(rogue.seen, [], 'no request, no token');
  } finally {
    await rogue.close();
  }
});
