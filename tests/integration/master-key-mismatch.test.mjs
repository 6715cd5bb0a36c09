// The master key seals every secret in the store; a store that holds
// secrets and finds no key file is refused at start (master-key-location).
// A key file that is there but is not the store's was not: another
// deployment's key mounted by mistake, a key file with a damaged digit, or
// a backup from before `key rotate` restored beside the rotated key file
// (README: "keep each backup with the key file of its time"). The server
// started, every secret failed at its first use, and whatever was sealed
// meanwhile (a connector's new key, a queued upstream revocation) went
// under the wrong key — lost once the right file is back. Now a key file
// under which the store's secrets do not unseal is refused at start, and
// by `key rotate`, naming the file and the key id; the right file serves.
// Both checks (this one and the missing file's) run before the store's
// migrations: migration 11 seals connector URL queries, and it sealed them
// under a key made for a store that had lost its own, which the refusal
// then removed — the query values (API keys) gone for good.
// ci-variants: build-w1 (start-up checks: one run is enough)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { REPO_ROOT, makeTempDir, startGateway, runGateway } from './lib/gateway.mjs';
import { api, cli, assertExit } from './lib/admin.mjs';

const WEBHOOK = 'https://hooks.example.com/services/T0/B0/secret';
const esc = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

// a data directory whose store holds one sealed secret (a tenant's webhook URL)
async function storeWithSecret() {
  const dir = await makeTempDir();
  const gw = await startGateway({ dataDir: dir });
  const op = gw.operatorToken();
  assert.equal((await api(gw.port, op, 'POST', '/admin/v1/tenants', { id: 'acme' })).status, 201);
  const p = await api(gw.port, op, 'PATCH', '/admin/v1/tenants/acme', { settings: { approval_webhook_url: WEBHOOK } });
  assert.equal(p.status, 200, p.body);
  await gw.stop();
  return dir;
}

async function servesSecret(dir) {
  const gw = await startGateway({ dataDir: dir });
  try {
    const t = await api(gw.port, gw.operatorToken(), 'GET', '/admin/v1/tenants/acme');
    assert.equal(t.json?.settings?.approval_webhook_url, '[set]', t.body);
  } finally {
    await gw.stop();
  }
}

test('a key file that is not the store\'s (another deployment\'s, same key id) is refused at start and by key rotate', async () => {
  const dir = await storeWithSecret();
  const key = path.join(dir, 'master.key');
  const right = await fs.readFile(key);
  // another data directory's key: the same id (1), another key
  const other = await makeTempDir();
  const o = await startGateway({ dataDir: other });
  await o.stop();
  const wrong = await fs.readFile(path.join(other, 'master.key'));
  assert.notDeepEqual(wrong, right);
  await fs.writeFile(key, wrong, { mode: 0o600 });

  const r = await runGateway(['serve', '--listen', '127.0.0.1:0', '--data', dir], { timeoutMs: 8000 });
  assert.equal(r.timedOut, false, `refused rather than served: ${r.stderr.slice(-800)}`);
  assert.notEqual(r.code, 0, 'non-zero exit');
  assert.match(r.stderr, new RegExp(`master key file ${esc(key)}.*key id 1.*does not unseal`), r.stderr.slice(-800));
  assert.doesNotMatch(r.stderr, /[0-9a-f]{64}/, 'no key material in the log');

  // key rotate with that file: refused before it writes a key into it
  const rot = await cli(['key', 'rotate', '--data', dir], { timeoutMs: 30000 });
  assertExit(rot, 1, 'key rotate with the wrong key file');
  assert.match(rot.stderr, /does not unseal/, rot.stderr);
  assert.deepEqual(await fs.readFile(key), wrong, 'the key file is left as it was');

  // the right file back: it serves, the secret intact
  await fs.writeFile(key, right, { mode: 0o600 });
  await servesSecret(dir);
});

test('a backup from before key rotate, restored beside the rotated key file, is refused naming the key id it needs', async () => {
  const dir = await storeWithSecret();
  const key = path.join(dir, 'master.key');
  const before = await fs.readFile(key);
  const dest = path.join(await makeTempDir('mcpgate-backup-'), 'b');
  assertExit(await cli(['backup', dest, '--data', dir], { timeoutMs: 30000 }), 0, 'backup');
  assertExit(await cli(['key', 'rotate', '--data', dir], { timeoutMs: 30000 }), 0, 'key rotate');
  assert.match(await fs.readFile(key, 'utf8'), /^2 [0-9a-f]{64}\n$/, 'the rotated file holds key 2 alone');
  // the restore: the backup's data.mdb over the store's
  await fs.copyFile(path.join(dest, 'data.mdb'), path.join(dir, 'store', 'data.mdb'));

  const r = await runGateway(['serve', '--listen', '127.0.0.1:0', '--data', dir], { timeoutMs: 8000 });
  assert.equal(r.timedOut, false, `refused rather than served: ${r.stderr.slice(-800)}`);
  assert.notEqual(r.code, 0, 'non-zero exit');
  assert.match(r.stderr, new RegExp(`1 sealed secret\\(s\\) .*key id 1, which master key file ${esc(key)} does not hold`),
    r.stderr.slice(-800));

  // with the key file of the backup's time it serves
  await fs.writeFile(key, before, { mode: 0o600 });
  await servesSecret(dir);
});

// a data directory holding the schema-10 fixture (tests/fixtures/README.md):
// a connector with a sealed credential, another whose URL query is in clear
async function v10() {
  const src = path.join(REPO_ROOT, 'tests', 'fixtures', 'store-v10');
  const dir = await makeTempDir('mcpgate-v10-');
  await fs.mkdir(path.join(dir, 'store'), { mode: 0o700 });
  await fs.copyFile(path.join(src, 'data.mdb'), path.join(dir, 'store', 'data.mdb'));
  for (const f of ['master.key', 'admin.token']) {
    await fs.copyFile(path.join(src, f), path.join(dir, f));
    await fs.chmod(path.join(dir, f), 0o600);
  }
  await fs.chmod(dir, 0o700);
  return { dir, meta: JSON.parse(await fs.readFile(path.join(src, 'fixture.json'), 'utf8')) };
}

async function migratedServes(dir, meta) {
  const gw = await startGateway({ dataDir: dir });
  try {
    const op = (await fs.readFile(path.join(dir, 'admin.token'), 'utf8')).trim();
    const base = `/admin/v1/tenants/${meta.tenant}/connectors/${meta.query_connector}`;
    const r = await api(gw.port, op, 'GET', base);
    assert.equal(r.json?.url, 'http://127.0.0.1:1/mcp?api_key=…&region=…', r.body);
    // the sealed value is there to keep (a value `…` needs it unsealed)
    const put = await api(gw.port, op, 'PUT', base, { url: 'http://127.0.0.1:1/mcp?api_key=…&region=us' });
    assert.equal(put.status, 200, put.body);
  } finally {
    await gw.stop();
  }
  const chk = await cli(['store', 'check', '--data', dir], { timeoutMs: 30000 });
  assertExit(chk, 0, `store check: ${chk.stdout} ${chk.stderr}`);
}

for (const how of ['missing', 'another deployment\'s']) {
  test(`an older store with its key file ${how}: refused before its migration seals a URL query under a key that is not its own`, async () => {
    const { dir, meta } = await v10();
    const key = path.join(dir, 'master.key');
    const right = await fs.readFile(key);
    if (how === 'missing') await fs.rm(key);
    else await fs.writeFile(key, `1 ${'ab'.repeat(32)}\n`, { mode: 0o600 });
    const r = await runGateway(['serve', '--listen', '127.0.0.1:0', '--data', dir], { timeoutMs: 8000 });
    assert.equal(r.timedOut, false, `refused rather than served: ${r.stderr.slice(-800)}`);
    assert.notEqual(r.code, 0, 'non-zero exit');
    assert.doesNotMatch(r.stderr, /migrating store schema 10 -> 11/, 'refused before the migration ran');
    // the store's own key back: it migrates, and the query values are intact
    await fs.writeFile(key, right, { mode: 0o600 });
    await migratedServes(dir, meta);
  });
}
