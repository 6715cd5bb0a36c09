// tests/soak/soak.mjs — `make soak` (issue 25 item 6): mixed traffic against
// the real binary for a while, and the gateway's memory and descriptors over
// time. Not part of `make test`.
//
//   node tests/soak/soak.mjs [--secs 300] [--bin build/mcpgate] [--clients 8] [--sample 10]
//
// Traffic, all at once, until --secs: SCIM churn as Okta sends it (users
// created, pushed into a group, deactivated, reactivated, deleted), SDK
// clients on both MCP endpoints (initialize, tools/list, tools/call, a GET
// stream held a while, then closed), approvals (a held call approved or
// denied by a reviewer) and deactivations of users with open sessions.
// Every --sample seconds the gateway's heap (RssAnon), its mapped files and open descriptors are printed.
// Pass: no unexpected error (each kind of request has the answers it may
// get; a deactivated employee's cut sessions count as "cut"), the heap in the
// last third of the run within 15 % (and 8 MB) of its median in the middle
// third, descriptors in the last third within 16 of the middle third's peak
// and, once the clients closed, within 32 of the baseline (the upstream
// keep-alive pools stay). `make soak SANITIZE=1` runs build-asan.
import fs from 'node:fs';
import { startGateway, sleep } from '../integration/lib/gateway.mjs';
import { startEverything, setupTenant, connectClient } from '../integration/lib/mcp.mjs';
import { api } from '../integration/lib/admin.mjs';

const arg = (n, d) => {
  const i = process.argv.indexOf(`--${n}`);
  return i > 0 ? process.argv[i + 1] : d;
};
const SECS = Number(arg('secs', process.env.SOAK_SECS ?? 300));
const CLIENTS = Number(arg('clients', 8));
const SAMPLE = Number(arg('sample', 10));
const bin = arg('bin', process.env.MCPGATE_BIN ?? 'build/mcpgate');

const errors = [];
const cutAt = {}; // employee → when okta() last deactivated them
const counts = {};
const count = (k) => { counts[k] = (counts[k] ?? 0) + 1; };
const unexpected = (what, detail) => {
  errors.push(`${what}: ${String(detail).slice(0, 300)}`);
  if (errors.length <= 20) console.error(`unexpected: ${what}: ${String(detail).slice(0, 300)}`);
};

function procStats(pid) {
  const st = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  /* the heap (RssAnon): what a leak grows. RssFile is the LMDB maps'
   * pages in the page cache, which grow with the data (the audit log
   * gains a record per call) and are not the process's memory to leak */
  const rss = Number(/RssAnon:\s+(\d+)/.exec(st)?.[1] ?? 0) * 1024;
  const file = Number(/RssFile:\s+(\d+)/.exec(st)?.[1] ?? 0) * 1024;
  const fds = fs.readdirSync(`/proc/${pid}/fd`).length;
  return { rss, file, fds };
}

const [gw, up] = await Promise.all([
  startGateway({ bin, args: ['--approval-progress-interval-ms', '500', '--workers', '2'] }),
  startEverything(),
]);
const reviewers = ['rev1@acme.com', 'rev2@acme.com'];
const t = await setupTenant(gw, { users: [...reviewers, ...Array.from({ length: CLIENTS }, (_, i) => `emp${i}@acme.com`)], policy: null });
const gidAll = (await t.scim.createGroup('Everyone', Object.values(t.users).map((u) => u.id))).id;
await t.scim.createGroup('Reviewers', reviewers.map((r) => t.users[r].id));
let r = await t.putConnector('everything', { url: up.url, auth: { type: 'header', name: 'X-Key', value: 'soak-secret' } });
if (r.status !== 201) throw new Error(`connector: ${r.status} ${r.body}`);
r = await t.admin('PUT', '/policy', {
  version: 1, default: 'block',
  rules: [{ groups: ['Everyone'], connector: 'everything', allow: ['echo', 'get-tiny-image'], approve: ['get-sum'], approvers: ['Reviewers'], approval_timeout_s: 20 }],
});
if (r.status !== 200) throw new Error(`policy: ${r.status} ${r.body}`);
const tokens = {};
for (const u of Object.keys(t.users)) tokens[u] = (await t.mintToken(u)).token;

const pid = gw.proc.pid;
const base = procStats(pid);
console.log(`soak: ${SECS} s, ${CLIENTS} clients, gateway pid ${pid} (${bin}); baseline heap ${(base.rss / 1048576).toFixed(1)} MB, ${base.fds} fds`);
const samples = [];
const t0 = Date.now();
const until = t0 + SECS * 1000;
const live = () => Date.now() < until;

/* one employee: sessions on both endpoints, calls, streams, approvals */
async function employee(i) {
  const who = `emp${i}@acme.com`;
  while (live()) {
    const agg = i % 2 === 0;
    const url = agg ? `${gw.url}/t/acme/mcp` : t.mcpUrl('everything');
    const name = (tool) => (agg ? `everything__${tool}` : tool);
    let c;
    try {
      c = await connectClient(url, tokens[who]);
      count('session');
      for (let k = 0; k < 5 && live(); k++) {
        await c.client.listTools();
        const res = await c.client.callTool({ name: name('echo'), arguments: { message: `soak ${i} ${k}` } });
        if (!JSON.stringify(res).includes(`soak ${i} ${k}`)) unexpected('echo', JSON.stringify(res));
        count('call');
      }
      if (i % 3 === 0 && live()) {
        // a held call: a reviewer approves (or denies) it while it waits
        const args = { a: i, b: Date.now() % 1000 };
        const call = c.client.callTool({ name: name('get-sum'), arguments: args }, undefined, { timeout: 30000, resetTimeoutOnProgress: true, onprogress: () => {} })
          .then((x) => ({ x }), (e) => ({ e }));
        let req;
        for (let w = 0; w < 50 && !req; w++) {
          const l = await t.admin('GET', '/approvals?state=pending&limit=1000');
          req = l.json?.approvals?.find((a) => a.user === t.users[who].id && a.arguments?.b === args.b);
          if (!req) await sleep(100);
        }
        if (!req && Date.now() - (cutAt[who] ?? 0) < 5000) count('cut');
        else if (!req) unexpected('approval', 'no pending request');
        else {
          const deny = Math.random() < 0.3;
          const d = await api(gw.port, tokens[reviewers[i % 2]], 'POST', `/t/acme/approvals/${req.id}/${deny ? 'deny' : 'approve'}`, {});
          if (d.status !== 200) unexpected('decide', `${d.status} ${d.body}`);
          const out = await call;
          if (Date.now() - (cutAt[who] ?? 0) < 5000 && out.e) count('cut');
          else if (deny ? out.e?.code !== -32008 : !out.x) unexpected('held call', JSON.stringify(out.x ?? String(out.e)));
          else count(deny ? 'denied' : 'approved');
        }
      }
      await sleep(200 + Math.random() * 800); // the GET stream stays open a while
    } catch (e) {
      // a deactivation (below) ends this employee's sessions and connections:
      // 401/-32004/a cut connection are expected then
      if (/401|403|-32004|revoked|Session not found|404/.test(String(e)) || Date.now() - (cutAt[who] ?? 0) < 5000) count('cut');
      else unexpected('employee', `${e.stack ?? e}${e.cause ? ` (cause: ${e.cause.code ?? ''} ${e.cause.message ?? e.cause})` : ''}`);
    } finally {
      if (c) await c.client.close().catch(() => {});
    }
  }
}

/* Okta: churn and deactivations of people with live sessions */
async function okta() {
  let n = 0;
  while (live()) {
    n++;
    try {
      const u = await t.scim.createUser(`churn${n}@acme.com`);
      const p = await t.scim.patchOps(`/Groups/${gidAll}`, [{ op: 'add', path: 'members', value: [{ value: u.id }] }]);
      if (p.status !== 200 && p.status !== 204) unexpected('group push', `${p.status} ${p.body}`);
      const d = await t.scim.patchOps(`/Users/${u.id}`, [{ op: 'replace', value: { active: false } }]);
      if (d.status !== 200) unexpected('deactivate', `${d.status} ${d.body}`);
      const x = await t.scim.del(`/Users/${u.id}`);
      if (x.status !== 204) unexpected('delete', `${x.status} ${x.body}`);
      count('scim churn');
      if (n % 10 === 0) {
        // an employee with live sessions goes and comes back
        const who = `emp${n % CLIENTS}@acme.com`;
        cutAt[who] = Date.now();
        await t.deactivate(t.users[who].id);
        await sleep(300);
        await t.reactivate(t.users[who].id);
        tokens[who] = (await t.mintToken(who)).token; // the old one went with the deactivation
        cutAt[who] = Date.now();
        count('offboard');
      }
    } catch (e) {
      unexpected('okta', e.stack ?? e);
    }
    await sleep(100);
  }
}

const sampler = (async () => {
  while (live()) {
    await sleep(SAMPLE * 1000);
    const s = { t: Math.round((Date.now() - t0) / 1000), ...procStats(pid) };
    samples.push(s);
    console.log(`t=${String(s.t).padStart(5)} s  heap ${(s.rss / 1048576).toFixed(1).padStart(7)} MB  mapped files ${(s.file / 1048576).toFixed(1).padStart(6)} MB  fds ${String(s.fds).padStart(5)}  ${JSON.stringify(counts)}`);
  }
})();

await Promise.all([...Array.from({ length: CLIENTS }, (_, i) => employee(i)), okta(), sampler]);
await sleep(2000); // connections the clients closed are gone
const end = procStats(pid);
await gw.stop();
await up.stop?.();

const third = Math.max(1, Math.floor(samples.length / 3));
const mid = samples.slice(third, 2 * third).map((s) => s.rss).sort((a, b) => a - b);
const median = mid.length ? mid[Math.floor(mid.length / 2)] : base.rss;
const last = samples.slice(2 * third).map((s) => s.rss);
const maxLast = last.length ? Math.max(...last) : end.rss;
const rssOk = maxLast <= Math.max(median * 1.15, median + 8 * 1048576);
// descriptors follow the load (client connections, upstream keep-alive
// pools): flat means the last third never exceeds the middle third by more
// than a few, and the end is near the baseline plus the pools
const fdMid = Math.max(...samples.slice(third, 2 * third).map((s) => s.fds), base.fds);
const fdLast = Math.max(...samples.slice(2 * third).map((s) => s.fds), 0);
const fdsOk = fdLast <= fdMid + 16 && end.fds <= base.fds + 32;
console.log(`\nsoak: ${Object.entries(counts).map(([k, v]) => `${v} ${k}`).join(', ')}`);
console.log(`heap (RssAnon): baseline ${(base.rss / 1048576).toFixed(1)} MB, middle-third median ${(median / 1048576).toFixed(1)} MB, last-third max ${(maxLast / 1048576).toFixed(1)} MB → ${rssOk ? 'flat' : 'GROWING'}`);
console.log(`descriptors: baseline ${base.fds}, middle-third max ${fdMid}, last-third max ${fdLast}, after the clients closed ${end.fds} → ${fdsOk ? 'flat' : 'GROWING'}`);
console.log(`unexpected errors: ${errors.length}`);
const ok = rssOk && fdsOk && errors.length === 0 && (counts.call ?? 0) > 0;
console.log(ok ? 'soak: PASS' : 'soak: FAIL');
process.exit(ok ? 0 : 1);
