// Vault: a corrupt entry in the revocation queue does not stop it. The queue
// is every tenant's, read oldest due first; an entry the worker could not
// read as a job (a value that does not parse, a member missing) was the
// caller's to see — "the revocation queue could not be read", again at every
// poll — so one such entry at its head held every tenant's revocations for
// good (deactivated employees' grants stayed live at their upstreams).
// Here acme's revocation of Alice's grant fails once (the AS answers 503) and
// waits for its retry; the gateway stops and its queue entry is damaged
// offline (lmdb-utils, as a bug or a bad restore would); after the restart,
// globex's admin disconnects Gina: her revocation reaches the AS, and Alice's
// entry is set aside — acme's report says failed and why, /metrics counts it,
// `mcpgate store check` names it, the log says so once.
// Real parts: the gateway, oidc-provider as Okta and as the upstream's AS,
// the SDK upstream, mdb_dump/mdb_load.
// ci-variants: build-w1 (a stop and a restart; the queue code runs under ASan in the unit tests)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { makeTempDir, metricValue, scrapeMetrics, startGateway, waitFor } from './lib/gateway.mjs';
import { adminClient, cli, operatorToken } from './lib/admin.mjs';
import { startLoginFixture, signIn } from './lib/login.mjs';
import { connectClient, ALLOW_ALL_POLICY } from './lib/mcp.mjs';
import { startUpstreamAS, startOAuthMcpUpstream } from './lib/upstream-oauth.mjs';
import { oauthConnector } from './lib/vault.mjs';

let fx, as, up, gw2;
before(async () => {
  fx = await startLoginFixture({
    tenants: {
      acme: { users: [{ userName: 'alice@acme.com', externalId: '00u-alice' }] },
      globex: { users: [{ userName: 'gina@globex.com', externalId: '00u-gina' }] },
    },
    accounts: {
      '00u-alice': { email: 'alice@acme.com', email_verified: true },
      '00u-gina': { email: 'gina@globex.com', email_verified: true },
    },
  });
  as = await startUpstreamAS({
    redirectUris: [`${fx.base('acme')}/connect/crm/callback`, `${fx.base('globex')}/connect/crm/callback`],
  });
  up = await startOAuthMcpUpstream({ as });
  for (const t of ['acme', 'globex']) {
    assert.equal((await fx.t[t].admin('PUT', '/policy', ALLOW_ALL_POLICY)).status, 200);
    const r = await fx.t[t].admin('PUT', '/connectors/crm', oauthConnector(as, up));
    assert.equal(r.status, 201, r.body);
  }
});
after(async () => {
  await gw2?.stop().catch(() => {});
  await up?.close().catch(() => {});
  await as?.close().catch(() => {});
  await fx?.stop();
});

async function connect(tenant, who) {
  const b = fx.browser();
  const s = await signIn(b, `${fx.base(tenant)}/login`, { login: `00u-${who}` });
  assert.equal(s.status, 200);
  as.loginAs(who);
  try {
    const r = await b.get(`${fx.base(tenant)}/connect/crm`);
    assert.equal(r.status, 200, r.text.slice(0, 300));
  } finally {
    as.loginAs(null);
  }
}

/** Calls crm__whoami as who; the access token the upstream saw. */
async function tokenOf(tenant, email, sub) {
  const m = await fx.t[tenant].admin('POST', '/tokens', { user: email, name: 'laptop', expires_in_days: 1 });
  assert.equal(m.status, 201, m.body);
  const c = await connectClient(`${fx.base(tenant)}/mcp`, m.json.token);
  try {
    await c.client.callTool({ name: 'crm__whoami', arguments: {} });
  } finally {
    await c.close();
  }
  const token = up.seen().filter((s) => s.method === 'tools/call' && s.sub === sub).at(-1)?.token;
  assert.ok(token, `the upstream saw ${sub}'s token`);
  return token;
}

/** The dump of dataDir/store with the vault entries that edit(keyBuffer, valueBuffer) replaces by {key, value}. */
function rewriteVault(dataDir, edit) {
  const store = path.join(dataDir, 'store');
  const d = spawnSync('mdb_dump', ['-a', store], { encoding: 'latin1', maxBuffer: 256 << 20 });
  assert.equal(d.status, 0, `mdb_dump: ${d.stderr}`);
  const out = [];
  let db = null, inData = false, key = null, edited = 0;
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
      out.push(line);
      continue;
    }
    if (key === null) {
      key = line;
      continue;
    }
    const e = db === 'vault' ? edit(Buffer.from(key.trim(), 'hex'), Buffer.from(line.trim(), 'hex')) : undefined;
    if (e) edited++;
    out.push(e ? ` ${e.key.toString('hex')}` : key, e ? ` ${e.value.toString('hex')}` : line);
    key = null;
  }
  return { out, edited };
}

test("a corrupt entry at the head of the revocation queue is set aside; another tenant's revocation goes on", async () => {
  await connect('acme', 'alice');
  await connect('globex', 'gina');
  const gina = await tokenOf('globex', 'gina@globex.com', 'gina');

  // Alice's revocation fails once: queued again, due in a second or so
  as.setRevocationStatus(503);
  const attempts = as.stats().revocationAttempts;
  const d = await fx.t.acme.admin('DELETE', '/users/alice@acme.com/connections/crm');
  assert.ok([200, 204].includes(d.status), `${d.status} ${d.body}`);
  await waitFor(() => as.stats().revocationAttempts > attempts, { timeoutMs: 8000, what: "Alice's revocation tried" });
  let alice;
  await waitFor(async () => {
    alice = (await fx.t.acme.admin('GET', '/revocations')).json.revocations[0];
    return alice?.attempts >= 1;
  }, { timeoutMs: 8000, intervalMs: 100, what: 'the failed attempt recorded' });
  assert.equal(alice.state, 'pending', JSON.stringify(alice));
  const { dataDir } = fx.gw;
  await fx.gw.stop();
  as.setRevocationStatus(null);

  // its queue entry ("q" ‖ due ‖ id) damaged: a value cut short, and due
  // long ago (at the head of the queue, whenever the restart is done)
  const { out, edited } = rewriteVault(dataDir, (k, v) => {
    if (k[0] !== 0x71 || k.length !== 25 || k.subarray(9).toString('latin1') !== alice.id) return undefined;
    const key = Buffer.from(k);
    key.fill(0, 1, 9);
    key[8] = 1;
    return { key, value: v.subarray(0, 20) };
  });
  assert.equal(edited, 1, 'one queue entry damaged');
  const fresh = await makeTempDir('mcpgate-store-');
  const dump = path.join(fresh, 'dump.txt');
  fs.writeFileSync(dump, out.join('\n'), 'latin1');
  const l = spawnSync('mdb_load', ['-f', dump, fresh], { encoding: 'latin1' });
  assert.equal(l.status, 0, `mdb_load: ${l.stderr}`);
  fs.copyFileSync(path.join(fresh, 'data.mdb'), path.join(dataDir, 'store', 'data.mdb'));
  fs.rmSync(path.join(dataDir, 'store', 'lock.mdb'), { force: true });

  gw2 = await startGateway({ dataDir });
  const op = adminClient(gw2.port, operatorToken(dataDir));
  const g = await op.del('/admin/v1/tenants/globex/users/gina@globex.com/connections/crm');
  assert.ok([200, 204].includes(g.status), `${g.status} ${g.body}`);
  await waitFor(async () => !(await as.introspect(gina)), {
    timeoutMs: 10000, intervalMs: 100, what: "Gina's revocation at the AS, past acme's corrupt entry",
  });
  await waitFor(async () => {
    const r = (await op.get('/admin/v1/tenants/acme/revocations')).json.revocations.find((x) => x.id === alice.id);
    return r?.state === 'failed' && /corrupt/.test(r.last_error) && /by hand/.test(r.last_error);
  }, { timeoutMs: 8000, intervalMs: 100, what: "Alice's report says failed: its queue entry was corrupt" });
  // the AS forgot the token when it took the request; the report says done
  // once the gateway has read its answer and written the result (a writer
  // job after it: under load, after the checks above)
  let globex;
  await waitFor(async () => {
    globex = (await op.get('/admin/v1/tenants/globex/revocations')).json.revocations;
    return globex.length === 1 && globex[0].state !== 'pending';
  }, { timeoutMs: 8000, intervalMs: 100, what: "Gina's revocation reported" });
  assert.deepEqual(globex.map((x) => x.state), ['done'], JSON.stringify(globex));
  const m = await scrapeMetrics(gw2);
  assert.equal(metricValue(m, 'mcpgate_vault_revocations', { state: 'corrupt' }), 1);
  assert.equal(metricValue(m, 'mcpgate_vault_revocations', { state: 'pending' }), 0);
  const lines = gw2.logs().filter((e) => /set aside/.test(e.msg ?? ''));
  assert.equal(lines.length, 1, JSON.stringify(lines));
  assert.equal(lines[0].tenant, 'acme');
  assert.ok(lines[0].msg.includes(alice.id), lines[0].msg);

  await gw2.stop();
  const chk = await cli(['store', 'check', '--data', dataDir], { timeoutMs: 30000 });
  assert.notEqual(chk.code, 0, `store check names it: ${chk.stdout} ${chk.stderr}`);
  assert.match(chk.stdout + chk.stderr, new RegExp(`revocation ${alice.id} of tenant acme was set aside`));
});
