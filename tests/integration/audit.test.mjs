// Audit (issue 22): every tools/call (allowed or refused) and every admin
// and SCIM write lands in the tenant's hash-chained audit log; the admin
// queries it (newest first, cursor paging) and exports it (NDJSON); the
// chain verifies offline, and a record edited in a copy of the environment
// makes `mcpgate audit verify` name that record; no gateway-held secret is
// in any record; arguments are masked by key.
// Real parts: the gateway binary with its audit environment on disk,
// server-everything behind it, the official SDK client on both endpoints,
// SCIM with Okta's request shapes, the CLI on the data directory.
// ci-variants: build-w1 build-asan-w2 (one plain and one sanitizer run: CI's 15 minutes)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';

import { gatewayBin, waitFor, rawHttp } from './lib/gateway.mjs';
import { startProxyFixture, connectClient, toolText, UPSTREAM_SECRET } from './lib/mcp.mjs';

let fx;
const POLICY = {
  version: 1, default: 'block',
  rules: [{ groups: ['*'], connector: 'everything', allow: ['*'], block: ['get-sum'] }],
};

before(async () => {
  fx = await startProxyFixture({ gatewayArgs: ['--audit-redact', 'cardNumber'] });
  await fx.t.setPolicy(POLICY);
});
after(async () => { await fx?.gw.stop(); await fx?.up.stop?.(); });

const audit = async (q = '') => {
  const r = await fx.t.admin('GET', `/audit${q}`);
  assert.equal(r.status, 200, r.body);
  return r.json;
};
/** every record of the tenant, by cursor pages of `limit` */
async function allRecords(limit = 3) {
  const out = [];
  let cursor = null;
  for (let i = 0; i < 1000; i++) {
    const page = await audit(`?limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    out.push(...page.records);
    if (!page.next_cursor) return out;
    cursor = page.next_cursor;
  }
  throw new Error('paging did not end');
}

test('a tools/call through each endpoint is recorded with its decision, arguments (masked) and outcome', async () => {
  const args = { message: 'hello audit', password: 'hunter2', nested: { api_key: 'k-123', cardNumber: '4111' } };
  const c = await connectClient(fx.url, fx.tokens.alice);
  try {
    const r = await c.client.callTool({ name: 'echo', arguments: args });
    assert.match(toolText(r), /hello audit/);
  } finally { await c.close(); }
  const a = await connectClient(`${fx.gw.url}/t/acme/mcp`, fx.tokens.alice);
  try {
    const r = await a.client.callTool({ name: 'everything__echo', arguments: { message: 'via aggregated' } });
    assert.match(toolText(r), /via aggregated/);
  } finally { await a.close(); }
  let recs;
  await waitFor(async () => { recs = (await audit('?kind=call&tool=echo')).records; return recs.length >= 2; },
    { timeoutMs: 5000, intervalMs: 50, what: 'two call records' });
  const [agg, direct] = recs; // newest first
  assert.equal(agg.arguments.message, 'via aggregated');
  for (const rec of [agg, direct]) {
    assert.equal(rec.kind, 'call');
    assert.equal(rec.tenant, 'acme');
    assert.equal(rec.user, fx.users.alice.id);
    assert.equal(rec.connector, 'everything');
    assert.equal(rec.tool, 'echo');
    assert.equal(rec.decision, 'allow');
    assert.equal(rec.upstream_status, 200);
    assert.equal(rec.is_error, false);
    assert.ok(rec.bytes_out > 0 && rec.bytes_in > 0, JSON.stringify(rec));
    assert.ok(Number.isInteger(rec.duration_us) && rec.duration_us >= 0, JSON.stringify(rec));
    assert.ok(Number.isInteger(rec.policy_version));
    assert.ok(rec.client, 'the employee token id');
    assert.ok(rec.session, 'the gateway session');
    assert.match(rec.prev, /^[0-9a-f]{64}$/);
    assert.equal(rec.id, `${rec.id.split('-')[0]}-${rec.seq}`);
    assert.ok(Math.abs(rec.time - Date.now()) < 60000);
  }
  assert.deepEqual(direct.arguments, {
    message: 'hello audit', password: '[redacted]', nested: { api_key: '[redacted]', cardNumber: '[redacted]' },
  });
  assert.equal(agg.seq, direct.seq + 1 + (agg.seq - direct.seq - 1), 'seqs grow');
  assert.ok(agg.seq > direct.seq);
});

// a name with every kind of byte the record must escape, at varied offsets
const ODD_TOOL = 'tool"with\\back\u0001slash-and-a-longer-run\tof plain text é ü "end"\u001f';
test('refused calls are recorded: blocked by policy, and an unknown tool', async () => {
  const a = await connectClient(`${fx.gw.url}/t/acme/mcp`, fx.tokens.bob);
  try {
    await assert.rejects(a.client.callTool({ name: 'everything__get-sum', arguments: { a: 1, b: 2 } }));
    await assert.rejects(a.client.callTool({ name: `nope__${ODD_TOOL}`, arguments: {} }));
  } finally { await a.close(); }
  let blocked, hidden;
  await waitFor(async () => {
    const rs = (await audit(`?user=${fx.users.bob.id}`)).records;
    blocked = rs.find((r) => r.decision === 'block');
    hidden = rs.find((r) => r.decision === 'hidden');
    return blocked && hidden;
  }, { timeoutMs: 5000, intervalMs: 50, what: 'the refused calls recorded' });
  assert.equal(blocked.tool, 'get-sum');
  assert.equal(blocked.connector, 'everything');
  assert.deepEqual(blocked.arguments, { a: 1, b: 2 });
  assert.equal(blocked.upstream_status, undefined, 'never sent upstream');
  assert.equal(hidden.connector, 'nope', 'no rule gives bob a connector "nope"');
  assert.equal(hidden.tool, ODD_TOOL, 'escapes in the name survive the record (before, inside and after 8-byte runs)');
  const only = (await audit('?decision=block')).records;
  assert.ok(only.length >= 1 && only.every((r) => r.decision === 'block'));
});

test('a long tool name is recorded cut between characters: the log stays readable', async () => {
  // 255 ASCII bytes then two-byte characters: byte 256 falls inside one
  const name = `${'a'.repeat(255)}${'é'.repeat(20)}`;
  const c = await connectClient(fx.url, fx.tokens.alice);
  try {
    await c.client.callTool({ name, arguments: {} }).catch(() => {});
  } finally { await c.close(); }
  let rec;
  await waitFor(async () => {
    rec = (await audit(`?user=${fx.users.alice.id}&limit=5`)).records.find((x) => x.tool?.startsWith('aaaa'));
    return rec;
  }, { timeoutMs: 5000, intervalMs: 50, what: 'the long-name record' });
  assert.equal(rec.tool, 'a'.repeat(255), 'cut before the character that would not fit');
  const exp = await fetch(`${fx.gw.url}/admin/v1/tenants/acme/audit/export`, { headers: { authorization: `Bearer ${fx.t.opToken}` } });
  assert.equal(exp.status, 200);
  for (const l of (await exp.text()).trim().split('\n')) JSON.parse(l);
});

test('admin and SCIM writes are recorded with who made them; reads are not', async () => {
  const mark = (await audit('?limit=1')).records[0].seq;
  let r = await fx.t.admin('PUT', '/policy', POLICY);
  assert.equal(r.status, 200, r.body);
  r = await fx.t.scim.patchOps(`/Users/${fx.users.bob.id}`, [{ op: 'replace', value: { displayName: 'Bob B' } }]);
  assert.equal(r.status, 200, r.body);
  await fx.t.admin('GET', '/policy');
  const conn = (await fx.t.admin('GET', '/connectors/everything')).json;
  r = await fx.t.putConnector('everything', {
    url: conn.url, description: 'Everything, renamed', auth: { type: 'header', name: 'Authorization', value: UPSTREAM_SECRET },
  });
  assert.equal(r.status, 200, r.body);
  // a tenant's settings: before → after too (found by review: only method,
  // path and status were recorded), a secret one never by its value
  const HOOK = 'https://hooks.example/services/T0/B0/hook-secret-4711';
  r = await fx.t.admin('PATCH', '', { settings: { signin_max_age_ms: 3600000, approval_webhook_url: HOOK } });
  assert.equal(r.status, 200, r.body);
  let recs;
  await waitFor(async () => { recs = (await audit()).records.filter((x) => x.seq > mark); return recs.length >= 4; },
    { timeoutMs: 5000, intervalMs: 50, what: 'the admin and SCIM records' });
  const tpatch = recs.find((x) => x.kind === 'admin' && x.method === 'PATCH' && x.path === '/admin/v1/tenants/acme');
  assert.ok(tpatch?.change, JSON.stringify(tpatch));
  assert.notEqual(tpatch.change.before.settings.signin_max_age_ms, 3600000);
  assert.equal(tpatch.change.after.settings.signin_max_age_ms, 3600000);
  assert.equal(typeof tpatch.change.after.name, 'string');
  assert.equal(JSON.stringify(recs).includes('hook-secret-4711'), false, 'the webhook URL is in no record');
  // the sign-in settings too: created, then deleted; the client secret never
  const m2 = (await audit('?limit=1')).records[0].seq;
  r = await fx.t.admin('PUT', '/oidc', { issuer: 'https://login.example.com', client_id: 'cid-1', client_secret: 'oidc-secret-9876' });
  assert.equal(r.status, 201, r.body);
  r = await fx.t.admin('DELETE', '/oidc');
  assert.equal(r.status, 204, r.body);
  let orecs;
  await waitFor(async () => { orecs = (await audit()).records.filter((x) => x.seq > m2 && x.path.endsWith('/oidc')); return orecs.length >= 2; },
    { timeoutMs: 5000, intervalMs: 50, what: 'the OIDC records' });
  const oput = orecs.find((x) => x.method === 'PUT'), odel = orecs.find((x) => x.method === 'DELETE');
  assert.equal(oput.change?.before, undefined, JSON.stringify(oput));
  assert.equal(oput.change.after.issuer, 'https://login.example.com');
  assert.equal(oput.change.after.client_secret_set, true);
  assert.equal(odel.change.before.client_id, 'cid-1', JSON.stringify(odel));
  assert.equal(JSON.stringify(orecs).includes('oidc-secret-9876'), false, 'the client secret is in no record');
  const adm = recs.find((x) => x.kind === 'admin' && x.path.endsWith('/policy'));
  // what changed: the policy's versions and documents, the connector's views (no secret)
  assert.equal(adm.change.after.version, adm.change.before.version + 1);
  assert.deepEqual(adm.change.after.document, POLICY);
  const cput = recs.find((x) => x.kind === 'admin' && x.path.endsWith('/connectors/everything'));
  assert.equal(cput.change.before.description, 'Everything');
  assert.equal(cput.change.after.description, 'Everything, renamed');
  assert.equal(cput.change.after.auth.sealed, true);
  assert.equal(JSON.stringify(cput).includes(UPSTREAM_SECRET.split(' ')[1]), false, 'the header value is not recorded');
  const scim = recs.find((x) => x.kind === 'scim');
  assert.equal(adm.method, 'PUT');
  assert.equal(adm.path, '/admin/v1/tenants/acme/policy');
  assert.equal(adm.status, 200);
  assert.equal(adm.actor, 'operator');
  assert.equal(scim.method, 'PATCH');
  assert.equal(scim.path, `/t/acme/scim/v2/Users/${fx.users.bob.id}`);
  assert.equal(scim.status, 200);
  assert.match(scim.actor, /^scim-token:/);
  assert.equal(recs.filter((x) => x.method === 'GET').length, 0, 'reads are not recorded');
});

// A path with bytes outside ASCII was recorded with them replaced by '?'
// (gateway/mcp/audit_log.c keeps that, as a defence). Since llhttp runs in
// its strict mode such a request target is refused by the parser itself:
// 400, nothing reaches a route, nothing is recorded. The same bytes
// percent-encoded are ASCII: that write is recorded as sent.
test('a write whose path holds bytes outside ASCII is refused by the parser; percent-encoded, it is recorded as sent', async () => {
  const net = await import('node:net');
  const send = (target) => new Promise((resolve, reject) => {
    const raw = Buffer.concat([
      Buffer.from('PUT '), target,
      Buffer.from(` HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${fx.t.opToken}\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}`),
    ]);
    const sock = net.connect(fx.gw.port, '127.0.0.1', () => sock.end(raw));
    let got = '';
    sock.on('data', (d) => { got += d.toString('latin1'); });
    sock.on('end', () => resolve(got));
    sock.on('error', reject);
  });
  const raw = await send(Buffer.concat([Buffer.from('/admin/v1/tenants/acme/connectors/ab'), Buffer.from([0xff, 0xfe])]));
  assert.match(raw, /^HTTP\/1\.1 400 /, raw.slice(0, 80));
  const enc = await send(Buffer.from('/admin/v1/tenants/acme/connectors/cd%FF%FE'));
  assert.match(enc, /^HTTP\/1\.1 400 /, enc.slice(0, 80));
  let rec;
  await waitFor(async () => {
    rec = (await audit('?kind=admin&limit=5')).records.find((x) => x.path.startsWith('/admin/v1/tenants/acme/connectors/cd'));
    return rec;
  }, { timeoutMs: 5000, intervalMs: 50, what: 'the refused write recorded' });
  assert.equal(rec.path, '/admin/v1/tenants/acme/connectors/cd%FF%FE');
  assert.equal(rec.status, 400);
  assert.equal(rec.actor, 'operator');
  const all = (await audit('?kind=admin&limit=50')).records;
  assert.ok(!all.some((x) => x.path.startsWith('/admin/v1/tenants/acme/connectors/ab')), 'the request the parser refused reached no route');
});

test('export streams every record once, in chain order; paging agrees; no secret is in any record', async () => {
  const r = await fetch(`${fx.gw.url}/admin/v1/tenants/acme/audit/export`, { headers: { authorization: `Bearer ${fx.t.opToken}` } });
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type'), /application\/x-ndjson/);
  const text = await r.text();
  const lines = text.trim().split('\n').map((l) => JSON.parse(l));
  assert.ok(lines.length >= 6, `${lines.length} records`);
  lines.forEach((rec, i) => assert.equal(rec.seq, lines[0].seq + i, 'consecutive, oldest first'));
  assert.equal(new Set(lines.map((x) => x.id)).size, lines.length);
  const paged = await allRecords(2);
  assert.deepEqual(paged.map((x) => x.seq).sort((a, b) => a - b), lines.map((x) => x.seq).slice(0, paged.length));
  // gateway-held secrets: the upstream credential, the SCIM token, employee tokens, the operator token
  for (const secret of [UPSTREAM_SECRET.split(' ')[1], fx.t.tenant.scim.token, fx.tokens.alice, fx.tokens.bob, fx.t.opToken]) {
    assert.ok(secret && secret.length > 8);
    assert.equal(text.includes(secret), false, `a secret (${secret.slice(0, 6)}…) is in the audit log`);
  }
  assert.equal(text.includes('hunter2'), false, 'a masked argument');
  // a client that asks to close the connection still gets a complete body:
  // the chunked stream's last chunk before the close (it was left out)
  const raw = await rawHttp(fx.gw.port, `GET /admin/v1/tenants/acme/audit/export HTTP/1.1\r\nHost: x\r\n` +
    `Authorization: Bearer ${fx.t.opToken}\r\nConnection: close\r\n\r\n`, { timeoutMs: 5000 });
  assert.ok(raw.closed, 'the gateway closed the connection as asked');
  assert.match(raw.data, /^HTTP\/1\.1 200/);
  assert.match(raw.data, /transfer-encoding: chunked/i);
  assert.ok(raw.data.endsWith('\r\n0\r\n\r\n'), `the last chunk is there: …${JSON.stringify(raw.data.slice(-20))}`);
  // bad parameters
  for (const q of ['?since=yesterday', '?limit=0', '?limit=5000', '?cursor=zzz', '?since=2026-12-04T10:00:00Z&until=2026-12-03T10:00:00Z']) {
    const b = await fx.t.admin('GET', `/audit${q}`);
    assert.equal(b.status, 400, `${q}: ${b.body}`);
  }
  const badExport = await fetch(`${fx.gw.url}/admin/v1/tenants/acme/audit/export?since=soon`, { headers: { authorization: `Bearer ${fx.t.opToken}` } });
  assert.equal(badExport.status, 400);
  const noAuth = await fetch(`${fx.gw.url}/admin/v1/tenants/acme/audit/export`);
  assert.equal(noAuth.status, 401);
  const since = lines.at(-2).time;
  const tail = (await audit(`?since=${since}`)).records;
  assert.ok(tail.every((x) => x.time >= since) && tail.length >= 2);
  const iso = (await audit(`?since=${encodeURIComponent(new Date(since).toISOString())}`)).records;
  assert.deepEqual(iso.map((x) => x.seq), tail.map((x) => x.seq));
});

test('another tenant cannot read this audit log; unknown tenant is 404', async () => {
  const other = await fx.t.admin('GET', '/../nope/audit');
  assert.ok([400, 404].includes(other.status), other.body);
  const r = await fetch(`${fx.gw.url}/admin/v1/tenants/nope/audit`, { headers: { authorization: `Bearer ${fx.t.opToken}` } });
  assert.equal(r.status, 404);
  const m = await fx.t.admin('POST', '/audit', {});
  assert.equal(m.status, 405);
});

test('the chain verifies offline; a record edited in a copy is named by `mcpgate audit verify`', async () => {
  const victim = (await audit('?kind=call&tool=echo')).records.find((x) => x.arguments?.message === 'hello audit');
  assert.ok(victim);
  await fx.gw.stop();
  const bin = gatewayBin();
  const ok = spawnSync(bin, ['audit', 'verify', '--data', fx.gw.dataDir], { encoding: 'utf8' });
  assert.equal(ok.status, 0, ok.stdout + ok.stderr);
  assert.match(ok.stdout, /audit log ok/);
  assert.match(ok.stdout, /tenant acme/);
  // the CLI export is the API's
  const exp = execFileSync(bin, ['audit', 'export', 'acme', '--data', fx.gw.dataDir], { encoding: 'utf8' });
  assert.ok(exp.includes('"hello audit"'));
  // verify counts the records it checked: here all of them (one chain, seq 1..N)
  const nAll = exp.trim().split('\n').length;
  assert.match(ok.stdout, new RegExp(`^audit log ok: ${nAll} records verified in 1 chain\n`), ok.stdout);
  assert.match(ok.stdout,
    new RegExp(`tenant acme \\(chain [0-9a-f]+\\): ${nAll} records verified, seq 1\\.\\.${nAll}, head seq ${nAll} [0-9a-f]{64}\n`),
    ok.stdout);
  // a copy of the data directory with one byte of that record changed
  const copy = fs.mkdtempSync(path.join(path.dirname(fx.gw.dataDir), 'audit-copy-'));
  fs.cpSync(fx.gw.dataDir, copy, { recursive: true });
  const file = path.join(copy, 'audit', 'data.mdb');
  const buf = fs.readFileSync(file);
  const needle = Buffer.from('hello audit');
  let at = buf.indexOf(needle), n = 0;
  while (at >= 0) { buf[at] = 'j'.charCodeAt(0); n++; at = buf.indexOf(needle, at + 1); }
  assert.ok(n >= 1, 'the record is in the file');
  fs.writeFileSync(file, buf);
  const bad = spawnSync(bin, ['audit', 'verify', '--data', copy], { encoding: 'utf8' });
  assert.equal(bad.status, 1, bad.stdout + bad.stderr);
  assert.match(bad.stdout, new RegExp(`record ${victim.seq}\\b`));
  fs.rmSync(copy, { recursive: true, force: true });

  // retention: the oldest records pruned, the rest still verifies and exports
  const before = exp.trim().split('\n').map((l) => JSON.parse(l));
  const cut = before[2].time + 1; // the first three (and any of the same millisecond)
  const pr = spawnSync(bin, ['audit', 'prune', '--before', String(cut), '--data', fx.gw.dataDir], { encoding: 'utf8' });
  assert.equal(pr.status, 0, pr.stdout + pr.stderr);
  const gone = before.filter((x) => x.time < cut).length;
  assert.match(pr.stdout, new RegExp(`^${gone} audit record`));
  const ok2 = spawnSync(bin, ['audit', 'verify', '--data', fx.gw.dataDir], { encoding: 'utf8' });
  assert.equal(ok2.status, 0, ok2.stdout + ok2.stderr);
  // what verify checked is what is left, the pruned ones counted apart (not as verified)
  const kept = nAll - gone;
  assert.match(ok2.stdout,
    new RegExp(`^audit log ok: ${kept} records verified in 1 chain \\(${gone} older ones pruned by retention\\)\n`),
    ok2.stdout);
  assert.match(ok2.stdout,
    new RegExp(`\\): ${kept} records verified, seq ${gone + 1}\\.\\.${nAll} \\(${gone} pruned before seq ${gone + 1}\\), ` +
      `head seq ${nAll} [0-9a-f]{64}\n`), ok2.stdout);
  const after = execFileSync(bin, ['audit', 'export', 'acme', '--data', fx.gw.dataDir], { encoding: 'utf8' })
    .trim().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(after.map((x) => x.seq), before.filter((x) => x.time >= cut).map((x) => x.seq));
  const bad2 = spawnSync(bin, ['audit', 'prune', '--data', fx.gw.dataDir], { encoding: 'utf8' });
  assert.equal(bad2.status, 2, 'prune needs --before');
  const nobody = spawnSync(bin, ['audit', 'export', 'nope', '--data', fx.gw.dataDir], { encoding: 'utf8' });
  assert.equal(nobody.status, 1, 'no such tenant');
  assert.match(nobody.stderr, /no tenant nope/);
});
