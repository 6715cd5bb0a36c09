// ci-variants: build-w1
// The offline commands and a master key kept outside the data directory
// (master_key_file, as the README advises for production), found by review:
// `mcpgate backup` and `store check` (and `audit export`) run without
// MCPGATE_MASTER_KEY_FILE created a NEW master key in <data>/master.key.
// backup then told the operator to "back up <data>/master.key separately" —
// the fresh key, not the server's: a restore from that pair loses every
// sealed secret — and store check reported the server's secrets as
// corrupt. An offline command never creates a master key: backup and
// export need none, store check and key rotate refuse, naming the file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { startGateway, makeTempDir, gatewayBin } from './lib/gateway.mjs';
import { createTenant, operatorToken, api } from './lib/admin.mjs';

function cli(args, env = {}) {
  const e = { ...process.env, ...env };
  if (!('MCPGATE_MASTER_KEY_FILE' in env)) delete e.MCPGATE_MASTER_KEY_FILE;
  return spawnSync(gatewayBin(), args, { encoding: 'utf8', timeout: 30000, env: e });
}

test('offline commands never create a master key beside the store', async () => {
  const keys = await makeTempDir();
  const keyFile = path.join(keys, 'master.key');
  const g = await startGateway({ args: ['--master-key-file', keyFile] });
  const dir = g.dataDir;
  const stray = path.join(dir, 'master.key');
  try {
    const op = operatorToken(dir);
    await createTenant(g.port, op, 'acme');
    const r = await api(g.port, op, 'PUT', '/admin/v1/tenants/acme/oidc', { issuer: 'https://acme.okta.example', client_id: 'abc', client_secret: 'a-sealed-secret' });
    assert.equal(r.status, 201, r.body);
    assert.ok(fs.existsSync(keyFile) && !fs.existsSync(stray));

    const dest = path.join(await makeTempDir(), 'bk');
    const b = cli(['backup', dest, '--data', dir]);
    assert.equal(b.status, 0, b.stderr);
    assert.ok(!fs.existsSync(stray), `backup created ${stray}`);
    assert.ok(!b.stdout.includes(stray), `backup names a key file that is not the server's: ${b.stdout}`);

    const ex = cli(['audit', 'export', 'acme', '--data', dir]);
    assert.equal(ex.status, 0, ex.stderr);
    assert.ok(!fs.existsSync(stray), `audit export created ${stray}`);

    const c = cli(['store', 'check', '--data', dir]);
    assert.ok(!fs.existsSync(stray), `store check created ${stray}`);
    assert.equal(c.status, 1);
    assert.doesNotMatch(c.stdout, /does not unseal/, 'the server\'s secrets are not reported corrupt');
    assert.match(c.stderr, /MCPGATE_MASTER_KEY_FILE/, 'says how to name the key');
    const ok = cli(['store', 'check', '--data', dir], { MCPGATE_MASTER_KEY_FILE: keyFile });
    assert.equal(ok.status, 0, ok.stdout + ok.stderr);
  } finally {
    await g.stop();
  }
  const k = cli(['key', 'rotate', '--data', dir]);
  assert.equal(k.status, 1);
  assert.ok(!fs.existsSync(stray), `key rotate created ${stray}`);
});

// Found by the operations review: `key rotate` on a master_key_file that is
// a symlink (the key on a secrets volume, linked from where the config
// names it) renamed the new key file over the link. The link became a
// regular file beside the config, the volume kept the old key, and the next
// start with the link put back (a redeploy) refused the store re-sealed
// under the new key. The rotation now writes through the link.
test('key rotate through a symlinked master_key_file replaces the file it names, and the link stays', async () => {
  const vol = await makeTempDir();
  const real = path.join(vol, 'master.key');
  const conf = await makeTempDir();
  const link = path.join(conf, 'master.key');
  const g = await startGateway({ args: ['--master-key-file', real] });
  const dir = g.dataDir;
  try {
    const op = operatorToken(dir);
    await createTenant(g.port, op, 'acme');
    const r = await api(g.port, op, 'PUT', '/admin/v1/tenants/acme/oidc', { issuer: 'https://acme.okta.example', client_id: 'abc', client_secret: 'a-sealed-secret' });
    assert.equal(r.status, 201, r.body);
  } finally {
    await g.stop();
  }
  fs.symlinkSync(real, link);
  const before = fs.readFileSync(real, 'utf8');
  const k = cli(['key', 'rotate', '--data', dir], { MCPGATE_MASTER_KEY_FILE: link });
  assert.equal(k.status, 0, k.stdout + k.stderr);
  assert.ok(fs.lstatSync(link).isSymbolicLink(), 'the link is still a link');
  assert.equal(fs.readlinkSync(link), real);
  assert.notEqual(fs.readFileSync(real, 'utf8'), before, 'the file on the volume holds the new key');
  assert.equal(fs.statSync(real).mode & 0o777, 0o600);
  assert.deepEqual(fs.readdirSync(conf), ['master.key'], 'nothing left beside the link');
  // the server, started through the link, opens every secret
  const c = cli(['store', 'check', '--data', dir], { MCPGATE_MASTER_KEY_FILE: link });
  assert.equal(c.status, 0, c.stdout + c.stderr);
  const g2 = await startGateway({ dataDir: dir, args: ['--master-key-file', link] });
  await g2.stop();
});
