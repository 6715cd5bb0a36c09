// Durability and offline operations: restart, SIGKILL during a write burst
// (no acknowledged write lost), store check, hot backup and restore, key
// rotation, the data directory lock, and no plaintext token at rest.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { startGateway, runGateway, makeTempDir, request } from './lib/gateway.mjs';
import {
  api, adminClient, cli, assertExit, operatorToken, createTenant, recreateAfterPurge, agentRequest, copyWithMode,
  findSecretsInFiles, SCIM_TOKEN_RE, ADMIN_TOKEN_RE,
} from './lib/admin.mjs';

const T = '/admin/v1/tenants';
const ENV_TOKEN = 'durability-operator-token-0123456789';

async function tenantIds(port, token) {
  const r = await api(port, token, 'GET', T);
  assert.equal(r.status, 200, r.body);
  return new Set(r.json.tenants.map((t) => t.id));
}

async function storeCheck(dataDir, what) {
  const r = await cli(['store', 'check', '--data', dataDir], { timeoutMs: 30000 });
  assertExit(r, 0, `store check (${what})`);
  assert.match(r.stdout, /store ok/, `store check (${what}) says "store ok": ${r.stdout}`);
  return r;
}

function keyFileLines(dataDir) {
  const text = fs.readFileSync(path.join(dataDir, 'master.key'), 'utf8');
  return text.split('\n').filter((l) => l.length > 0);
}

test('restart keeps tenants, token ids and the operator token', async () => {
  const dir = await makeTempDir();
  let gw = await startGateway({ dataDir: dir });
  const opToken = operatorToken(dir);
  const op = adminClient(gw.port, opToken);
  const made = {};
  for (const id of ['keep-a', 'keep-b', 'keep-c']) {
    const c = await createTenant(gw.port, opToken, id, `Keep ${id}`);
    const extra = await op.post(`${T}/${id}/scim-tokens`, { name: 'rotation' });
    assert.equal(extra.status, 201, extra.body);
    made[id] = [c.scim.token_id, extra.json.id].sort();
  }
  const tadm = await op.post(`${T}/keep-a/admin-tokens`, { name: 'ci' });
  assert.equal(tadm.status, 201);
  await createTenant(gw.port, opToken, 'keep-gone');
  assert.equal((await op.del(`${T}/keep-gone`)).status, 202);
  assert.equal((await op.patch(`${T}/keep-b`, { name: 'Renamed B' })).status, 200);

  const ex = await gw.stop('SIGTERM');
  assert.equal(ex.code, 0, 'SIGTERM → exit 0');

  gw = await startGateway({ dataDir: dir });
  assert.equal(operatorToken(dir), opToken, 'admin.token is not regenerated');
  const op2 = adminClient(gw.port, opToken);
  const ids = await tenantIds(gw.port, opToken);
  for (const id of Object.keys(made)) {
    assert.ok(ids.has(id), `${id} survived the restart`);
    const l = await op2.get(`${T}/${id}/scim-tokens`);
    assert.equal(l.status, 200);
    assert.deepEqual(l.json.tokens.map((t) => t.id).sort(), made[id], `${id}: SCIM token ids kept`);
  }
  assert.ok(!ids.has('keep-gone'), 'a deleted tenant stays deleted');
  assert.equal((await op2.get(`${T}/keep-b`)).json.name, 'Renamed B', 'rename kept');
  const ta = await api(gw.port, tadm.json.token, 'GET', `${T}/keep-a`);
  assert.equal(ta.status, 200, 'a tenant admin token still works after the restart');
  assert.equal((await op2.post(T, { id: 'keep-a' })).status, 409, 'uniqueness still enforced');
  const ex2 = await gw.stop('SIGTERM');
  assert.equal(ex2.code, 0);
});

test('SIGKILL during a burst of creates loses no acknowledged tenant', async (t) => {
  const dir = await makeTempDir();
  const gw = await startGateway({ dataDir: dir, env: { MCPGATE_ADMIN_TOKEN: ENV_TOKEN } });
  const N = 200, KILL_AT = 100;
  const acked = new Set();
  const otherStatus = [];
  let killed = false;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 12 });
  const hdr = { authorization: `Bearer ${ENV_TOKEN}`, 'content-type': 'application/json' };
  const one = async (i) => {
    const id = `burst-${i}`;
    const body = JSON.stringify({ id, name: `Burst ${i}` });
    try {
      // two thirds over 12 keep-alive connections, the rest on their own connections
      const r = i % 3 === 2
        ? await request(gw.port, { method: 'POST', path: T, headers: { ...hdr, 'content-length': String(Buffer.byteLength(body)) }, body, timeoutMs: 20000 })
        : await agentRequest(agent, gw.port, { method: 'POST', path: T, headers: hdr, body });
      if (r.status === 201) {
        assert.equal(r.json?.id, id);
        acked.add(id);
        if (acked.size >= KILL_AT && !killed) { killed = true; gw.kill(); }
      } else otherStatus.push(r.status);
    } catch { /* connection cut by the kill */ }
  };
  await Promise.all(Array.from({ length: N }, (_, i) => one(i)));
  agent.destroy();
  await gw.kill();
  const ex = await gw.exited();
  assert.ok(killed, `the burst reached ${KILL_AT} acknowledgements (got ${acked.size}, other statuses ${otherStatus})`);
  assert.equal(ex.signal, 'SIGKILL', 'the gateway died of SIGKILL');
  assert.ok(otherStatus.every((s) => s === 503), `only 201 or 503 (store busy) answers: ${otherStatus}`);
  t.diagnostic(`burst: ${acked.size} of ${N} acknowledged before SIGKILL took effect`);

  // the store is consistent after the crash, and every acknowledged tenant is there
  await storeCheck(dir, 'after SIGKILL');
  const gw2 = await startGateway({ dataDir: dir, env: { MCPGATE_ADMIN_TOKEN: ENV_TOKEN } });
  const ids = await tenantIds(gw2.port, ENV_TOKEN);
  const lost = [...acked].filter((id) => !ids.has(id));
  assert.deepEqual(lost, [], `acknowledged tenants lost (${lost.length} of ${acked.size})`);
  for (const id of ids) assert.match(id, /^burst-\d+$/);
  // each tenant committed with its initial SCIM token (one transaction)
  const sample = [...ids].slice(0, 25);
  for (const id of sample) {
    const l = await api(gw2.port, ENV_TOKEN, 'GET', `${T}/${id}/scim-tokens`);
    assert.equal(l.status, 200);
    assert.equal(l.json.tokens.length, 1, `${id} has its initial SCIM token`);
  }
  // still writable; a tenant that was not acknowledged can be created or already exists
  const missing = Array.from({ length: N }, (_, i) => `burst-${i}`).find((id) => !ids.has(id));
  if (missing) assert.equal((await api(gw2.port, ENV_TOKEN, 'POST', T, { id: missing })).status, 201);
  assert.equal((await api(gw2.port, ENV_TOKEN, 'POST', T, { id: 'after-crash' })).status, 201);
  assert.equal((await gw2.stop()).code, 0);
  await storeCheck(dir, 'after restart and stop');
});

test('store check, hot backup and restore on a fresh data directory', async () => {
  const dir = await makeTempDir();
  const env = { MCPGATE_ADMIN_TOKEN: ENV_TOKEN };
  const gw = await startGateway({ dataDir: dir, env });
  const tokenIds = {};
  for (let i = 0; i < 20; i++) {
    const c = await createTenant(gw.port, ENV_TOKEN, `bk-${i}`, `Backup ${i}`);
    tokenIds[c.id] = c.scim.token_id;
  }
  await storeCheck(dir, 'while the server runs');

  // backup while writes keep coming
  let writing = true, written = 0;
  const writer = (async () => {
    while (writing) {
      const r = await api(gw.port, ENV_TOKEN, 'POST', T, { id: `bk-live-${written}` });
      assert.equal(r.status, 201, r.body);
      written++;
    }
  })();
  const parent = await makeTempDir();
  const dest = path.join(parent, 'backup');
  const b = await cli(['backup', dest, '--data', dir], { timeoutMs: 30000 });
  writing = false;
  await writer;
  assertExit(b, 0, 'backup beside a running server');
  assert.ok(fs.existsSync(path.join(dest, 'data.mdb')), 'backup wrote data.mdb');
  assert.ok(!fs.existsSync(path.join(dest, 'master.key')), 'the backup does not contain the master key');
  // the audit log's environment beside it, and its chains verify there
  assert.ok(fs.existsSync(path.join(dest, 'audit', 'data.mdb')), 'backup wrote audit/data.mdb');
  const av = await cli(['audit', 'verify', '--data', dest], { timeoutMs: 30000 });
  assertExit(av, 0, 'the backed-up audit log verifies');

  // into a non-empty directory → exit 1, existing content untouched
  const busy = path.join(parent, 'busy');
  await fsp.mkdir(busy);
  await fsp.writeFile(path.join(busy, 'keep.txt'), 'mine');
  const b2 = await cli(['backup', busy, '--data', dir], { timeoutMs: 30000 });
  assertExit(b2, 1, 'backup into a non-empty directory');
  assert.ok(b2.stderr.trim().length > 0, 'an error message');
  assert.deepEqual(await fsp.readdir(busy), ['keep.txt']);
  assert.equal(await fsp.readFile(path.join(busy, 'keep.txt'), 'utf8'), 'mine');

  // restore: a fresh data dir made of the backup plus the master key
  const nd = await makeTempDir();
  await fsp.mkdir(path.join(nd, 'store'), { mode: 0o700 });
  await fsp.copyFile(path.join(dest, 'data.mdb'), path.join(nd, 'store', 'data.mdb'));
  await copyWithMode(path.join(dir, 'master.key'), path.join(nd, 'master.key'), 0o600);
  await storeCheck(nd, 'restored copy');
  const gw2 = await startGateway({ dataDir: nd, env });
  const ids = await tenantIds(gw2.port, ENV_TOKEN);
  for (const [id, tid] of Object.entries(tokenIds)) {
    assert.ok(ids.has(id), `${id} is in the restored copy`);
    const l = await api(gw2.port, ENV_TOKEN, 'GET', `${T}/${id}/scim-tokens`);
    assert.deepEqual(l.json.tokens.map((t) => t.id), [tid], `${id}: its SCIM token id`);
  }
  assert.equal((await api(gw2.port, ENV_TOKEN, 'GET', `${T}/bk-3`)).json.name, 'Backup 3');
  // the live writes in the copy form a prefix of what was written (consistent snapshot)
  const live = [...ids].filter((id) => id.startsWith('bk-live-')).map((id) => Number(id.slice(8))).sort((a, c) => a - c);
  live.forEach((n, i) => assert.equal(n, i, `restored live writes are a prefix: ${live}`));
  // the restored server is independent: a write there does not show up in the original
  assert.equal((await api(gw2.port, ENV_TOKEN, 'POST', T, { id: 'only-in-copy' })).status, 201);
  assert.ok(!(await tenantIds(gw.port, ENV_TOKEN)).has('only-in-copy'));
  assert.equal((await gw2.stop()).code, 0);
  assert.equal((await gw.stop()).code, 0);
  await storeCheck(dir, 'after the server stopped');
});

test('key rotate: refused while served, then one new key and intact data', async () => {
  const dir = await makeTempDir();
  let gw = await startGateway({ dataDir: dir });
  const opToken = operatorToken(dir);
  await createTenant(gw.port, opToken, 'rot-a', 'Rot A');
  const ta = await api(gw.port, opToken, 'POST', `${T}/rot-a/admin-tokens`, { name: 'ci' });
  assert.equal(ta.status, 201);
  const before = keyFileLines(dir);
  assert.equal(before.length, 1, 'one key before rotation');
  const m0 = /^(\d+) ([0-9a-f]{64})$/.exec(before[0]);
  assert.ok(m0, `key line format: ${before[0].replace(/[0-9a-f]{64}/, '<hex>')}`);

  const r1 = await cli(['key', 'rotate', '--data', dir], { timeoutMs: 30000 });
  assertExit(r1, 1, 'key rotate while the server runs');
  assert.match(r1.stderr, /running|in use|lock|stop/i, `stderr: ${r1.stderr}`);
  assert.deepEqual(keyFileLines(dir), before, 'key file untouched by the refused rotation');
  assert.equal((await request(gw.port, { path: '/healthz' })).status, 200, 'server unaffected');

  assert.equal((await gw.stop()).code, 0);
  const r2 = await cli(['key', 'rotate', '--data', dir], { timeoutMs: 30000 });
  assertExit(r2, 0, 'key rotate with the server stopped');
  const after = keyFileLines(dir);
  assert.equal(after.length, 1, 'exactly one key line after rotation');
  const m1 = /^(\d+) ([0-9a-f]{64})$/.exec(after[0]);
  assert.ok(m1, 'rotated key line format');
  assert.notEqual(m1[1], m0[1], 'a different key id');
  assert.notEqual(m1[2], m0[2], 'a different key');
  assert.equal(fs.statSync(path.join(dir, 'master.key')).mode & 0o777, 0o600, 'key file stays 0600');
  await storeCheck(dir, 'after key rotation');

  gw = await startGateway({ dataDir: dir });
  assert.ok((await tenantIds(gw.port, opToken)).has('rot-a'), 'data intact after rotation');
  assert.equal((await api(gw.port, ta.json.token, 'GET', `${T}/rot-a`)).status, 200, 'tenant admin token works');
  await createTenant(gw.port, opToken, 'rot-b');
  assert.equal((await gw.stop()).code, 0);
});

test('SIGTERM right after a delete and a tenant-token use: clean exit 0; the purge completes after restart', async () => {
  // Writes the gateway fires without waiting (last_used touch, purge steps)
  // may still be in flight when the signal lands.
  const dir = await makeTempDir();
  const opToken = 'sigterm-operator-token-0123456789';
  const env = { MCPGATE_ADMIN_TOKEN: opToken };
  const ids = [];
  for (let round = 0; round < 3; round++) {
    const gw = await startGateway({ dataDir: dir, env });
    const id = `sd-${round}`;
    ids.push(id);
    await createTenant(gw.port, opToken, id);
    await createTenant(gw.port, opToken, `${id}-keep`);
    const m = await api(gw.port, opToken, 'POST', `${T}/${id}-keep/admin-tokens`, { name: 'ci' });
    assert.equal(m.status, 201);
    assert.equal((await api(gw.port, m.json.token, 'GET', `${T}/${id}-keep`)).status, 200);
    assert.equal((await api(gw.port, opToken, 'DELETE', `${T}/${id}`)).status, 202);
    gw.signal('SIGTERM');
    const ex = await gw.stop(null); // throws on a sanitizer report
    assert.equal(ex.code, 0, `round ${round}: exit ${JSON.stringify(ex)}`);
  }
  const gw = await startGateway({ dataDir: dir, env });
  for (const id of ids) {
    assert.equal((await api(gw.port, opToken, 'GET', `${T}/${id}`)).status, 404, `${id} stays deleted`);
    assert.equal((await api(gw.port, opToken, 'GET', `${T}/${id}-keep`)).status, 200, `${id}-keep kept`);
    await recreateAfterPurge(gw.port, opToken, id);
  }
  assert.equal((await gw.stop()).code, 0);
  await storeCheck(dir, 'after interrupted purges');
});

test('a second serve on a data directory already served exits quickly naming the lock', async () => {
  const dir = await makeTempDir();
  const gw = await startGateway({ dataDir: dir });
  const t0 = Date.now();
  const r = await runGateway(['serve', '--listen', '127.0.0.1:0', '--data', dir], { timeoutMs: 8000 });
  const ms = Date.now() - t0;
  assert.equal(r.timedOut, false, 'the second serve exits by itself');
  assert.notEqual(r.code, 0, `non-zero exit; stderr: ${r.stderr}`);
  assert.ok(ms < 5000, `exits quickly (${ms} ms)`);
  assert.match(r.stderr, /lock|in use/i, `stderr names the lock: ${r.stderr}`);
  assert.doesNotMatch(r.stderr, /"msg":"listening"/, 'it never listened');
  // the first server is unaffected
  assert.equal((await request(gw.port, { path: '/healthz' })).status, 200);
  await createTenant(gw.port, operatorToken(dir), 'still-fine');
  assert.equal((await gw.stop()).code, 0);
});

test('no token handed out is stored or logged in plaintext', async () => {
  const dir = await makeTempDir();
  const gw = await startGateway({ dataDir: dir });
  const opToken = operatorToken(dir);
  const op = adminClient(gw.port, opToken);
  const secrets = [opToken];
  for (const id of ['sec-a', 'sec-b']) {
    const c = await createTenant(gw.port, opToken, id);
    secrets.push(c.scim.token);
    const s = await op.post(`${T}/${id}/scim-tokens`, { name: 'second' });
    assert.equal(s.status, 201);
    secrets.push(s.json.token);
    const a = await op.post(`${T}/${id}/admin-tokens`, { name: 'ci' });
    assert.equal(a.status, 201);
    secrets.push(a.json.token);
    // use the tenant token so its record is rewritten (last_used)
    assert.equal((await api(gw.port, a.json.token, 'GET', `${T}/${id}`)).status, 200);
  }
  const rv = await op.post(`${T}/sec-a/scim-tokens`, { name: 'revoked' });
  secrets.push(rv.json.token);
  assert.equal((await op.del(`${T}/sec-a/scim-tokens/${rv.json.id}`)).status, 204);
  for (const s of secrets.slice(1)) assert.ok(SCIM_TOKEN_RE.test(s) || ADMIN_TOKEN_RE.test(s), s.slice(0, 4));
  assert.equal(new Set(secrets).size, secrets.length, 'all tokens distinct');

  const exclude = ['master.key', 'admin.token'];
  const running = await findSecretsInFiles([dir], secrets, { exclude });
  assert.ok(running.scanned >= 2, `scanned the store files (${running.scanned})`);
  assert.deepEqual(running.hits.map((h) => path.relative(dir, h.file)), [], 'no plaintext token while running');

  const parent = await makeTempDir();
  const b = await cli(['backup', path.join(parent, 'bk'), '--data', dir], { timeoutMs: 30000 });
  assertExit(b, 0);
  assert.equal((await gw.stop()).code, 0);
  const stopped = await findSecretsInFiles([dir, parent], secrets, { exclude });
  assert.ok(stopped.scanned >= 3, `scanned data dir and backup (${stopped.scanned})`);
  assert.deepEqual(stopped.hits.map((h) => h.file), [], 'no plaintext token at rest or in the backup');

  const logs = gw.stderrText();
  for (const s of secrets) assert.ok(!logs.includes(s.slice(4)), 'no token in the logs');
});
