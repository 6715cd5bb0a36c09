// `mcpgate store check` runs every module's checks offline (issue 13,
// behaviour change 1): the module table (gateway/modules.c) registers the
// same checks for the CLI as for `serve`. Before, the CLI ran only the admin
// records' check; the SCIM index check was registered by the server alone,
// and nothing looked for employee tokens or MCP sessions left behind by a
// user or tenant that is gone.
//
// The store is written by the real server (tenant, two SCIM users, an
// employee token and an MCP session for alice), checked clean, then damaged
// offline with lmdb-utils the way a bug or a bad restore would: the whole
// environment is dumped (mdb_dump -a), two entries are left out — alice's
// SCIM user record (her token and session now point at nobody) and bob's
// userName index entry (a SCIM index problem) — and it is loaded back
// (mdb_load) in place of the original.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { startGateway, makeTempDir } from './lib/gateway.mjs';
import { cli, assertExit } from './lib/admin.mjs';
import { setupTenant, rawSession } from './lib/mcp.mjs';
import { startCtlUpstream } from './lib/ctl-upstream.mjs';

const ALICE = 'alice@acme.com';
const BOB = 'bob@acme.com';

/** Rewrites dataDir/store without the entries drop(db, keyBuffer) selects. */
async function rewriteStore(dataDir, drop) {
  const store = path.join(dataDir, 'store');
  const d = spawnSync('mdb_dump', ['-a', store], { encoding: 'latin1', maxBuffer: 256 << 20 });
  assert.equal(d.status, 0, `mdb_dump: ${d.stderr}`);
  const out = [];
  let db = null, inData = false, pending = null, dropped = 0;
  for (const line of d.stdout.split('\n')) {
    if (!inData) {
      const m = /^database=(.*)$/.exec(line);
      if (m) db = m[1];
      if (line === 'HEADER=END') inData = true;
      out.push(line);
      continue;
    }
    if (line === 'DATA=END') {
      inData = false;
      db = null;
      out.push(line);
      continue;
    }
    if (pending === null) {
      pending = line; // the key; its value is the next line
      continue;
    }
    if (drop(db, Buffer.from(pending.trim(), 'hex'))) dropped++;
    else out.push(pending, line);
    pending = null;
  }
  const fresh = await makeTempDir('mcpgate-store-');
  const dump = path.join(fresh, 'dump.txt');
  fs.writeFileSync(dump, out.join('\n'), 'latin1');
  const l = spawnSync('mdb_load', ['-f', dump, fresh], { encoding: 'latin1' });
  assert.equal(l.status, 0, `mdb_load: ${l.stderr}`);
  fs.copyFileSync(path.join(fresh, 'data.mdb'), path.join(store, 'data.mdb'));
  fs.rmSync(path.join(store, 'lock.mdb'), { force: true });
  return dropped;
}

test('store check runs the SCIM, token and session checks offline, and reports a clean store as ok', async () => {
  const gw = await startGateway();
  const up = await startCtlUpstream({ name: 'sc' });
  const t = await setupTenant(gw, { users: [ALICE, BOB] });
  const put = await t.putConnector('sc', { url: up.url, auth: { type: 'none' } });
  assert.equal(put.status, 201, put.body);
  const tok = await t.mintToken(ALICE);
  assert.equal(tok.status, 201, tok.body);
  await rawSession(`${gw.url}/t/acme/mcp`, tok.token);
  const aliceId = t.users[ALICE].id;
  await gw.stop();
  await up.stop();

  const clean = await cli(['store', 'check', '--data', gw.dataDir], { timeoutMs: 30000 });
  assertExit(clean, 0, `store check of a clean store: ${clean.stdout} ${clean.stderr}`);
  assert.match(clean.stdout, /store ok/, clean.stdout);

  const dropped = await rewriteStore(gw.dataDir, (db, key) =>
    (db === 'scim.res' && key.includes(Buffer.from(`\0U${aliceId}`))) ||
    (db === 'scim.idx' && key.includes(Buffer.from(BOB))));
  assert.ok(dropped >= 2, `entries left out of the store: ${dropped}`);

  const bad = await cli(['store', 'check', '--data', gw.dataDir], { timeoutMs: 30000 });
  assertExit(bad, 1, `store check of a damaged store: ${bad.stdout} ${bad.stderr}`);
  // SCIM's own index check (registered only by `serve` before)
  assert.match(bad.stdout, /problem: scim: tenant acme: user [0-9a-f-]+ is missing from the userName index/, bad.stdout);
  // what alice's deletion would have removed in the same transaction
  assert.match(bad.stdout, new RegExp(`problem: tokens: employee token [0-9a-f]+ of tenant acme belongs to unknown user ${aliceId}`), bad.stdout);
  assert.match(bad.stdout, new RegExp(`problem: sessions: session [0-9a-f]+… of tenant acme belongs to unknown user ${aliceId}`), bad.stdout);
  assert.match(bad.stdout, /problem\(s\) found/, bad.stdout);
});
