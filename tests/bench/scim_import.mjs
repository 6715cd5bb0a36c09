// tests/bench/scim_import.mjs — an Okta-like first import, measured.
//
//   node tests/bench/scim_import.mjs [--users 10000] [--groups 100] [--members 1000] [--conns 8]
//
// Starts the real gateway (build/mcpgate, or MCPGATE_BIN) on a fresh data
// dir and, as the baseline in the same invocation, nginx answering the same
// requests with a canned 201 (what the HTTP round trip alone costs on this
// machine). Then: N POST /Users over C keep-alive connections; G groups,
// each filled to M members by PATCH add in batches of 100; `userName eq`
// lookups. Prints users/s (gateway vs nginx), PATCH p50/p99, lookup
// p50/p99, store size and commits vs jobs (group commit at work).
// Prints numbers; asserts nothing. Not part of `make test` (`make bench`).
import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const USERS = arg('users', 10000), GROUPS = arg('groups', 100), MEMBERS = arg('members', 1000);
const CONNS = arg('conns', 8);
const bin = path.resolve(root, process.env.MCPGATE_BIN || 'build/mcpgate');

function pct(a, p) {
  const s = [...a].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0));
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}
const ms = (ns) => (Number(ns) / 1e6).toFixed(3);

function req(agent, port, method, p, headers, body) {
  return new Promise((resolve, reject) => {
    const r = http.request({ host: '127.0.0.1', port, method, path: p, agent, headers }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString() }));
    });
    r.on('error', reject);
    if (body) r.end(body);
    else r.end();
  });
}

async function pool(n, conc, fn) {
  let next = 0;
  const workers = Array.from({ length: conc }, async () => {
    while (next < n) await fn(next++);
  });
  await Promise.all(workers);
}

async function createUsers(port, base, headers, n, conc) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: conc });
  const ids = new Array(n);
  const t0 = process.hrtime.bigint();
  await pool(n, conc, async (i) => {
    const body = JSON.stringify({
      schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'],
      userName: `user${i}@bench.example`, name: { givenName: 'U', familyName: `${i}` },
      emails: [{ primary: true, value: `user${i}@bench.example`, type: 'work' }],
      displayName: `User ${i}`, externalId: `00u${i}`, active: true, password: 'x',
    });
    const r = await req(agent, port, 'POST', `${base}/Users`, { ...headers, 'content-type': 'application/scim+json' }, body);
    if (r.status !== 201) throw new Error(`create ${i}: ${r.status} ${r.body.slice(0, 200)}`);
    try { ids[i] = JSON.parse(r.body).id; } catch { ids[i] = null; }
  });
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  agent.destroy();
  return { ids, secs };
}

async function waitPort(port) {
  for (let i = 0; i < 100; i++) {
    try { await req(undefined, port, 'GET', '/healthz', {}); return; } catch { await new Promise((r) => setTimeout(r, 50)); }
  }
  throw new Error('server did not come up');
}

async function nginxBaseline() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mcpgate-bench-nginx-'));
  const port = 20000 + Math.floor(Math.random() * 20000);
  fs.writeFileSync(path.join(dir, 'nginx.conf'), `
worker_processes 1; daemon off; pid ${dir}/nginx.pid; error_log ${dir}/error.log;
events { worker_connections 1024; }
http { access_log off; client_body_temp_path ${dir}; proxy_temp_path ${dir}; fastcgi_temp_path ${dir};
  uwsgi_temp_path ${dir}; scgi_temp_path ${dir};
  server { listen 127.0.0.1:${port}; keepalive_requests 100000;
    location / { default_type application/scim+json; return 201 '{"id":"00000000-0000-4000-8000-000000000000"}'; }
    location = /healthz { return 200 'ok'; } } }`);
  const nginx = fs.existsSync('/usr/sbin/nginx') ? '/usr/sbin/nginx' : 'nginx';
  const p = spawn(nginx, ['-c', path.join(dir, 'nginx.conf'), '-p', dir], { stdio: 'ignore' });
  try {
    await waitPort(port);
    const r = await createUsers(port, '/t/acme/scim/v2', {}, USERS, CONNS);
    return USERS / r.secs;
  } finally {
    p.kill('SIGTERM');
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function main() {
  const data = fs.mkdtempSync(path.join(os.tmpdir(), 'mcpgate-bench-'));
  const port = 20000 + Math.floor(Math.random() * 20000);
  const gw = spawn(bin, ['serve', '--listen', `127.0.0.1:${port}`, '--data', data, '--access-log', 'false', '--workers', '1',
    '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'inherit'] });
  try {
    await waitPort(port);
    const op = fs.readFileSync(path.join(data, 'admin.token'), 'utf8').trim();
    const t = await req(undefined, port, 'POST', '/admin/v1/tenants',
      { authorization: `Bearer ${op}`, 'content-type': 'application/json' }, JSON.stringify({ id: 'acme' }));
    const scim = JSON.parse(t.body).scim;
    const base = '/t/acme/scim/v2';
    const auth = { authorization: `Bearer ${scim.token}` };
    const opAuth = { authorization: `Bearer ${op}` }; // /metrics on the main listener needs the operator token
    const metrics0 = (await req(undefined, port, 'GET', '/metrics', opAuth)).body;

    const { ids, secs } = await createUsers(port, base, auth, USERS, CONNS);
    const metrics1 = (await req(undefined, port, 'GET', '/metrics', opAuth)).body;
    const num = (m, name) => Number((m.match(new RegExp(`^${name} (\\S+)$`, 'm')) || [])[1] || 0);
    const commits = num(metrics1, 'mcpgate_store_commits_total') - num(metrics0, 'mcpgate_store_commits_total');
    const jobs = num(metrics1, 'mcpgate_store_jobs_total') - num(metrics0, 'mcpgate_store_jobs_total');

    // groups, filled by PATCH add in batches of 100 (Okta's Group Push)
    const agent = new http.Agent({ keepAlive: true, maxSockets: CONNS });
    const patchNs = [];
    const gids = [];
    for (let g = 0; g < GROUPS; g++) {
      const r = await req(agent, port, 'POST', `${base}/Groups`, { ...auth, 'content-type': 'application/scim+json' },
        JSON.stringify({ schemas: ['urn:ietf:params:scim:schemas:core:2.0:Group'], displayName: `Group ${g}`, members: [] }));
      gids.push(JSON.parse(r.body).id);
    }
    const batches = [];
    for (let g = 0; g < GROUPS; g++)
      for (let b = 0; b < MEMBERS; b += 100) batches.push([g, b]);
    const tp = process.hrtime.bigint();
    await pool(batches.length, CONNS, async (i) => {
      const [g, b] = batches[i];
      const members = [];
      for (let k = b; k < Math.min(b + 100, MEMBERS); k++) members.push({ value: ids[(g * 37 + k) % USERS] });
      const t0 = process.hrtime.bigint();
      const r = await req(agent, port, 'PATCH', `${base}/Groups/${gids[g]}`, { ...auth, 'content-type': 'application/scim+json' },
        JSON.stringify({ schemas: ['urn:ietf:params:scim:api:messages:2.0:PatchOp'], Operations: [{ op: 'add', path: 'members', value: members }] }));
      patchNs.push(process.hrtime.bigint() - t0);
      if (r.status !== 200) throw new Error(`patch: ${r.status} ${r.body.slice(0, 200)}`);
    });
    const patchSecs = Number(process.hrtime.bigint() - tp) / 1e9;

    // lookups, one connection, as Okta does before each create
    const lookNs = [];
    const la = new http.Agent({ keepAlive: true, maxSockets: 1 });
    for (let i = 0; i < 2000; i++) {
      const u = `user${(i * 7919) % USERS}@bench.example`;
      const t0 = process.hrtime.bigint();
      const r = await req(la, port, 'GET', `${base}/Users?filter=${encodeURIComponent(`userName eq "${u}"`)}&startIndex=1&count=100`, auth);
      lookNs.push(process.hrtime.bigint() - t0);
      if (r.status !== 200 || !r.body.includes('"totalResults":1')) throw new Error(`lookup ${u}: ${r.status}`);
    }
    la.destroy();
    agent.destroy();
    const size = fs.statSync(path.join(data, 'store', 'data.mdb')).size;
    let used = '';
    try { used = execFileSync('du', ['-sh', path.join(data, 'store')], { encoding: 'utf8' }).split('\t')[0]; } catch {}

    const nginxRate = await nginxBaseline();
    const rate = USERS / secs;
    console.log(`scim import bench: ${USERS} users over ${CONNS} keep-alive connections, ${GROUPS} groups x ${MEMBERS} members`);
    console.log(`  POST /Users (durable)        ${rate.toFixed(0)} users/s  (${secs.toFixed(2)} s)`);
    console.log(`  baseline nginx canned 201    ${nginxRate.toFixed(0)} req/s   gateway/nginx = ${(rate / nginxRate).toFixed(3)}`);
    console.log(`  group commit                 ${jobs} jobs in ${commits} commits (${(jobs / Math.max(1, commits)).toFixed(2)} jobs/commit)`);
    console.log(`  PATCH add 100 members        p50 ${ms(pct(patchNs, 50))} ms  p99 ${ms(pct(patchNs, 99))} ms  (${(batches.length / patchSecs).toFixed(0)} PATCH/s, ${(batches.length * 100 / patchSecs).toFixed(0)} members/s)`);
    console.log(`  userName eq lookup @${USERS}   p50 ${ms(pct(lookNs, 50))} ms  p99 ${ms(pct(lookNs, 99))} ms  (client-side, one keep-alive connection)`);
    console.log(`  store data.mdb               ${(size / 1048576).toFixed(1)} MiB apparent, ${used.trim()} on disk`);
  } finally {
    gw.kill('SIGTERM');
    await new Promise((r) => gw.on('exit', r));
    fs.rmSync(data, { recursive: true, force: true });
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
