// The master key seals every secret in the store. README (Security notes):
// the server "warns while it sits inside the data directory" — a copy of
// the data directory (a volume snapshot, a disk backup) would then hold the
// key beside the secrets it protects. It used to warn only on the start
// that created the key, never again: an image or a host that keeps the
// default (<data>/master.key, as the Dockerfile does) started quietly from
// its second start on. Now every start with the key inside the data
// directory warns, naming the key file and master_key_file; a key kept
// elsewhere starts without the warning.
// ci-variants: build-w1 (start-up checks: one run is enough)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { makeTempDir, startGateway } from './lib/gateway.mjs';

const inside = (e) => e.level === 'warn' && /master key file .* is inside the data directory/.test(e.msg || '');

test('a master key inside the data directory is warned about at every start, not only the first', async () => {
  const dir = await makeTempDir();
  const first = await startGateway({ dataDir: dir });
  await first.stop();
  // the first start created the key (and said so, with its own advice)
  assert.ok(first.logs().some((e) => /created master key file/.test(e.msg || '')), 'the first start created the key');

  const second = await startGateway({ dataDir: dir });
  try {
    const w = second.logs().find(inside);
    assert.ok(w, 'the second start warns that the key sits in the data directory:\n' + second.stderrText().slice(-1500));
    assert.ok(w.msg.includes(path.join(dir, 'master.key')), `names the file: ${w.msg}`);
    assert.ok(w.msg.includes('master_key_file'), `names the config key: ${w.msg}`);
  } finally {
    await second.stop();
  }
});

test('a master key kept outside the data directory starts without that warning', async () => {
  const dir = await makeTempDir();
  const keyDir = await makeTempDir();
  const key = path.join(keyDir, 'master.key');
  const first = await startGateway({ dataDir: dir, args: ['--master-key-file', key] });
  await first.stop();
  await fs.access(key);
  const second = await startGateway({ dataDir: dir, args: ['--master-key-file', key] });
  try {
    assert.equal(second.logs().find(inside), undefined, 'no warning for a key outside the data directory');
  } finally {
    await second.stop();
  }
});

test('a master key reached through a path that resolves into the data directory is warned about too', async () => {
  const dir = await makeTempDir();
  const first = await startGateway({ dataDir: dir });
  await first.stop();
  // the same file, named through a symlinked directory outside the data directory
  const other = await makeTempDir();
  await fs.symlink(dir, path.join(other, 'link'));
  const second = await startGateway({ dataDir: dir, args: ['--master-key-file', path.join(other, 'link', 'master.key')] });
  try {
    assert.ok(second.logs().find(inside), 'the resolved path is inside the data directory');
  } finally {
    await second.stop();
  }
});

// README: the master key is "generated on first start". It was generated on
// any start that found no key file: a store restored without its key (the
// README: "back up master.key separately"), or a key volume mounted at the
// wrong place, started with a new key under which none of its secrets
// unseal — silently, until each secret's first use failed. A store that
// holds sealed secrets now refuses to start without its key, naming the
// file and the count, and leaves no new key behind; a store without
// secrets still gets one.
test('a store holding sealed secrets refuses to start without its master key, and keeps no new one', async () => {
  const { api } = await import('./lib/admin.mjs');
  const dir = await makeTempDir();
  const key = path.join(dir, 'master.key');
  const gw = await startGateway({ dataDir: dir });
  const op = gw.operatorToken();
  assert.equal((await api(gw.port, op, 'POST', '/admin/v1/tenants', { id: 'acme' })).status, 201);
  // a sealed secret: the approval webhook URL (a credential: sealed in the store)
  const p = await api(gw.port, op, 'PATCH', '/admin/v1/tenants/acme',
    { settings: { approval_webhook_url: 'https://hooks.example.com/services/T0/B0/secret' } });
  assert.equal(p.status, 200, p.body);
  await gw.stop();
  const saved = await fs.readFile(key);
  await fs.rm(key);

  const { runGateway } = await import('./lib/gateway.mjs');
  const r = await runGateway(['serve', '--listen', '127.0.0.1:0', '--data', dir], { timeoutMs: 8000 });
  assert.equal(r.timedOut, false, `refused rather than served: ${r.stderr.slice(-800)}`);
  assert.notEqual(r.code, 0, 'non-zero exit');
  assert.match(r.stderr, new RegExp(`master key file ${key.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is missing.*1 sealed secret`), r.stderr.slice(-800));
  await assert.rejects(fs.access(key), 'no new key left behind');

  // with its key back it serves, and the secret is there
  await fs.writeFile(key, saved, { mode: 0o600 });
  const again = await startGateway({ dataDir: dir });
  try {
    const t = await api(again.port, again.operatorToken(), 'GET', '/admin/v1/tenants/acme');
    assert.equal(t.json?.settings?.approval_webhook_url, '[set]', t.body);
  } finally {
    await again.stop();
  }
});

test('a store without sealed secrets still gets a new master key when its file is missing', async () => {
  const dir = await makeTempDir();
  const first = await startGateway({ dataDir: dir });
  await first.stop();
  await fs.rm(path.join(dir, 'master.key'));
  const second = await startGateway({ dataDir: dir });
  await second.stop();
  await fs.access(path.join(dir, 'master.key'));
});
