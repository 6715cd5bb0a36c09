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
