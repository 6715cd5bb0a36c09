// Crash consistency (issue 25 item 1): SCIM writes as Okta sends them —
// user creates, PATCH deactivations and reactivations, Group Push creates and
// member adds — from clients that record every 2xx; the gateway is SIGKILLed
// at a random point, several times, and restarted on the same data. After
// each crash: `mcpgate store check` passes (records, indexes both ways,
// counts, membership both ways, credentials of users and tenants that exist)
// and `mcpgate audit verify` passes; after each restart every acknowledged
// write is there (a write in flight at the kill may or may not be: its client
// never heard back).
// ci-variants: build-w1 (SIGKILL and restarts; the write paths run under ASan in the SCIM suites)
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { startGateway, makeTempDir } from './lib/gateway.mjs';
import { cli, assertExit, createTenant, operatorToken } from './lib/admin.mjs';
import { scimClient, URN, oktaUser } from './lib/scim.mjs';

const ROUNDS = 3;

async function offlineChecks(dir, when) {
  const chk = await cli(['store', 'check', '--data', dir], { timeoutMs: 30000 });
  assertExit(chk, 0, `store check ${when}: ${chk.stdout} ${chk.stderr}`);
  const ver = await cli(['audit', 'verify', '--data', dir], { timeoutMs: 30000 });
  assertExit(ver, 0, `audit verify ${when}: ${ver.stdout} ${ver.stderr}`);
}

test('SIGKILL at random points during Okta-shaped SCIM writes loses no acknowledged write; the store checks clean after every crash', async (t) => {
  const dir = await makeTempDir();
  let gw = await startGateway({ dataDir: dir });
  const op = operatorToken(dir);
  const ten = await createTenant(gw.port, op, 'acme');
  const token = ten.scim.token;
  // what each client was told (acknowledged), and what it sent without an answer
  const users = new Map(); // id → {active (acked), maybe: Set of states in flight}
  const groups = new Map(); // id → {members: Set (acked adds), maybe: Set}
  let seq = 0;

  for (let round = 0; round < ROUNDS; round++) {
    const scim = scimClient(gw.port, 'acme', token);
    let stop = false;
    const worker = async (w) => {
      while (!stop) {
        const n = seq++;
        try {
          if (n % 4 === 0 || users.size < 4) {
            const r = await scim.post('/Users', oktaUser(`u${n}@acme.test`, { externalId: `00u${n}` }));
            if (r.status === 201) users.set(r.json.id, { active: true, maybe: new Set() });
          } else if (n % 4 === 1 || n % 4 === 2) {
            const ids = [...users.keys()];
            const id = ids[(n * 7 + w) % ids.length];
            const u = users.get(id);
            if (u.busy) continue;
            u.busy = true;
            const want = !u.active;
            u.maybe.add(want);
            const r = await scim.patchOps(`/Users/${id}`, [{ op: 'replace', value: { active: want } }]);
            if (r.status === 200) {
              u.active = want;
              u.maybe.clear();
            }
            u.busy = false;
          } else {
            const ids = [...users.keys()];
            if (groups.size < 3 || n % 16 === 3) {
              const r = await scim.post('/Groups', { schemas: [URN.GROUP], displayName: `Group ${n}`, members: [] });
              if (r.status === 201) groups.set(r.json.id, { members: new Set(), maybe: new Set() });
            } else {
              const gids = [...groups.keys()];
              const gid = gids[n % gids.length];
              const uid = ids[(n * 13) % ids.length];
              const g = groups.get(gid);
              g.maybe.add(uid);
              const r = await scim.patchOps(`/Groups/${gid}`, [{ op: 'add', path: 'members', value: [{ value: uid }] }]);
              if (r.status === 200 || r.status === 204) g.members.add(uid);
            }
          }
        } catch { /* the kill cut the connection: this write's outcome is unknown */ }
      }
    };
    const workers = Array.from({ length: 6 }, (_, w) => worker(w));
    await new Promise((r) => setTimeout(r, 300 + Math.floor(Math.random() * 500)));
    gw.kill();
    const ex = await gw.exited();
    stop = true;
    await Promise.all(workers);
    assert.equal(ex.signal, 'SIGKILL', 'the gateway died of SIGKILL');
    t.diagnostic(`round ${round}: ${users.size} users, ${groups.size} groups acknowledged so far`);
    await offlineChecks(dir, `after crash ${round + 1}`);

    gw = await startGateway({ dataDir: dir });
    const scim2 = scimClient(gw.port, 'acme', token);
    // every acknowledged user, in its acknowledged state (or the one in flight at the kill)
    for (const [id, u] of users) {
      const r = await scim2.get(`/Users/${id}`);
      assert.equal(r.status, 200, `acknowledged user ${id} is there after crash ${round + 1}`);
      const ok = r.json.active === u.active || u.maybe.has(r.json.active);
      assert.ok(ok, `user ${id}: active ${r.json.active}, acknowledged ${u.active}, in flight ${[...u.maybe]}`);
      u.active = r.json.active; // what the store kept is the truth from here on
      u.maybe.clear();
      u.busy = false;
    }
    for (const [gid, g] of groups) {
      const r = await scim2.get(`/Groups/${gid}`);
      assert.equal(r.status, 200, `acknowledged group ${gid} is there after crash ${round + 1}`);
      const have = new Set((r.json.members ?? []).map((m) => m.value));
      for (const uid of g.members) assert.ok(have.has(uid), `acknowledged member ${uid} of ${gid} is there`);
      for (const uid of have) assert.ok(g.members.has(uid) || g.maybe.has(uid), `member ${uid} of ${gid} was sent`);
      g.members = have;
      g.maybe.clear();
    }
  }
  assert.ok(users.size >= 8, `enough writes happened (${users.size} users)`);
  assert.equal((await gw.stop()).code, 0);
  await offlineChecks(dir, 'after the last clean stop');
});
