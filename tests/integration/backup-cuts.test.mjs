// A deactivation the store cannot write (the map full, no reserve) still
// cuts the user, in memory, and the cut is kept across restarts in a small
// file beside data.mdb (<data>/store/unwritten-cuts; memberships in
// unwritten-memberships) until Okta's retried task commits (store-full).
// `mcpgate backup` copied data.mdb only: a store full is when an operator
// backs the data up to move it to a larger volume, and the store restored
// from that backup handed the deactivated user their access back. The
// backup now holds those files too, copied before the snapshot (a mark
// older than the snapshot whose write landed since only cuts a user the
// snapshot already has cut), and the restored copy keeps the user cut.
// ci-variants: build-w1
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';

import { startGateway, makeTempDir } from './lib/gateway.mjs';
import { cli, assertExit } from './lib/admin.mjs';
import { startProxyFixture, mcpPost, initializeBody } from './lib/mcp.mjs';
import { URN, assertScimError } from './lib/scim.mjs';

const stops = [];
after(async () => { for (const s of stops) await s().catch(() => {}); });

const fillUser = (userName, n) => ({
  schemas: [URN.USER, URN.ENT], userName, name: { givenName: 'Fill', familyName: 'User' },
  emails: [{ primary: true, value: userName, type: 'work' }], active: true,
  ...(n ? { [URN.ENT]: { department: 'd'.repeat(n) } } : {}),
});

test('a backup keeps a user cut in memory (a deactivation the full store could not write) cut in the restored copy', async () => {
  const fx = await startProxyFixture({ gatewayArgs: ['--store-map-size', '1M', '--store-reserve', '0'] });
  stops.push(() => fx.gw.stop(), () => fx.up?.stop?.());
  const { t } = fx;
  const bob = await t.scim.fetch(`/Users/${fx.users.bob.id}`);
  const big = { ...bob, schemas: [URN.USER, URN.ENT], [URN.ENT]: { department: 'd'.repeat(9000) } };
  assert.equal((await t.scim.put(`/Users/${bob.id}`, big)).status, 200);
  let i = 0;
  for (const n of [20000, 4000, 1000, 100, 0]) {
    for (;;) {
      const r = await t.scim.post('/Users', fillUser(`fill${i++}@acme.com`, n));
      if (r.status !== 201) { assertScimError(r, 507, {}); break; }
    }
  }
  const d = await t.scim.put(`/Users/${bob.id}`, { ...big, active: false });
  assertScimError(d, 507, {});
  assert.equal((await mcpPost(fx.url, initializeBody(1), { token: fx.tokens.bob })).status, 401, 'bob is cut, in memory');

  // the backup, beside the running server, and its restore into a new data
  // directory (with the key and the operator token, as the README says)
  const dest = path.join(await makeTempDir('mcpgate-backup-'), 'b');
  assertExit(await cli(['backup', dest, '--data', fx.gw.dataDir], { timeoutMs: 30000 }), 0, 'backup');
  for (const f of await fs.readdir(dest)) {
    if (f === 'audit') continue;
    const st = await fs.stat(path.join(dest, f));
    assert.equal(st.mode & 0o077, 0, `${f} in the backup is 0600`);
  }
  await fx.gw.stop();
  const dir = await makeTempDir('mcpgate-restored-');
  await fs.cp(dest, path.join(dir, 'store'), { recursive: true, filter: (s) => !s.endsWith(`${path.sep}audit`) });
  for (const f of ['master.key', 'admin.token']) await fs.copyFile(path.join(fx.gw.dataDir, f), path.join(dir, f));

  const gw2 = await startGateway({ args: ['--store-map-size', '8M', '--store-reserve', '0'], dataDir: dir });
  stops.push(() => gw2.stop());
  const url2 = `${gw2.url}/t/acme/mcp/everything`;
  assert.equal((await mcpPost(url2, initializeBody(1), { token: fx.tokens.alice })).status, 200, 'alice works on the copy');
  assert.equal((await mcpPost(url2, initializeBody(1), { token: fx.tokens.bob })).status, 401, 'bob stays cut on the copy');
});
