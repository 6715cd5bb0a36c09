// tests/bench/cold_user.mjs — the first tools/list of a user whose policy
// decisions are not cached yet, in a large directory.
//
//   node tests/bench/cold_user.mjs [--users 100000] [--groups 1000] [--sample 200] [--conns 8]
//
// Imports --users SCIM users and --groups groups (each user in 10 groups,
// groups filled by POST /Groups with their members) into a real gateway,
// puts a policy of one rule per group on a connector to the C upstream
// (tests/bench/upstream.c, 20 tools), then for --sample users: mint a
// token and time initialize + initialized + tools/list twice, each on a
// new session — the first builds the user's decisions (cold), the second
// uses them (warm). Prints cold and warm p50/p99 and the added latency.
// Asserts nothing (make bench).
import http from 'node:http';
import { startGateway } from '../integration/lib/gateway.mjs';
import { operatorToken, createTenant, api } from '../integration/lib/admin.mjs';
import { startCUpstream } from './lib.mjs';

const arg = (n, d) => {
  const i = process.argv.indexOf(`--${n}`);
  return i > 0 ? Number(process.argv[i + 1]) : d;
};
const USERS = arg('users', 100000), GROUPS = arg('groups', 1000), SAMPLE = arg('sample', 200), CONNS = arg('conns', 8);
const PER_USER = Math.min(10, GROUPS);
const PV = '2025-06-18';

function req(agent, port, method, p, headers, body) {
  return new Promise((resolve, reject) => {
    const r = http.request({ host: '127.0.0.1', port, method, path: p, agent, headers }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString() }));
    });
    r.on('error', reject);
    r.end(body);
  });
}

async function pool(n, conc, fn) {
  let next = 0;
  await Promise.all(Array.from({ length: conc }, async () => { while (next < n) await fn(next++); }));
}

const pct = (a, p) => [...a].sort((x, y) => x - y)[Math.min(a.length - 1, Math.floor((p / 100) * a.length))];

async function main() {
  const up = await startCUpstream();
  const gw = await startGateway({ args: ['--access-log', 'false', '--workers', '1'] });
  try {
    const op = operatorToken(gw.dataDir);
    const t = await createTenant(gw.port, op, 'acme');
    const agent = new http.Agent({ keepAlive: true, maxSockets: CONNS });
    const scimH = { Authorization: `Bearer ${t.scim.token}`, 'Content-Type': 'application/scim+json' };
    const ids = new Array(USERS);
    const t0 = Date.now();
    await pool(USERS, CONNS, async (i) => {
      const r = await req(agent, gw.port, 'POST', '/t/acme/scim/v2/Users', scimH, JSON.stringify({
        schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'], userName: `user${i}@acme.com`, active: true,
        name: { givenName: `U${i}`, familyName: 'Bench' }, emails: [{ value: `user${i}@acme.com`, primary: true }],
      }));
      if (r.status !== 201) throw new Error(`POST /Users: ${r.status} ${r.body}`);
      ids[i] = JSON.parse(r.body).id;
    });
    // user i is in groups (i + k * stride) % GROUPS for k < PER_USER
    const members = Array.from({ length: GROUPS }, () => []);
    const stride = Math.max(1, Math.floor(GROUPS / PER_USER));
    for (let i = 0; i < USERS; i++) for (let k = 0; k < PER_USER; k++) members[(i + k * stride) % GROUPS].push(ids[i]);
    await pool(GROUPS, CONNS, async (g) => {
      const r = await req(agent, gw.port, 'POST', '/t/acme/scim/v2/Groups', scimH, JSON.stringify({
        schemas: ['urn:ietf:params:scim:schemas:core:2.0:Group'], displayName: `group-${g}`,
        members: members[g].map((value) => ({ value })),
      }));
      if (r.status !== 201) throw new Error(`POST /Groups: ${r.status} ${r.body.slice(0, 200)}`);
    });
    const importSecs = (Date.now() - t0) / 1000;
    const admin = (m, p, b) => api(gw.port, op, m, `/admin/v1/tenants/acme${p}`, b);
    const rules = Array.from({ length: GROUPS }, (_, g) => ({ groups: [`group-${g}`], connector: 'ub', allow: [`tool_${g % 20}`, 'echo'] }));
    let r = await admin('PUT', '/policy', { version: 1, default: 'block', rules });
    if (r.status !== 200) throw new Error(`policy: ${r.status} ${r.body}`);
    r = await admin('PUT', '/connectors/ub', { url: up.url, auth: { type: 'none' } });
    if (r.status !== 201) throw new Error(`connector: ${r.status} ${r.body}`);

    const cold = [], warm = [];
    const url = '/t/acme/mcp/ub';
    const step = Math.max(1, Math.floor(USERS / SAMPLE));
    for (let s = 0; s < SAMPLE && s * step < USERS; s++) {
      const user = `user${s * step}@acme.com`;
      r = await admin('POST', '/tokens', { user, name: 'bench', expires_in_days: 1 });
      if (r.status !== 201) throw new Error(`token: ${r.status} ${r.body}`);
      const h = {
        Authorization: `Bearer ${r.json.token}`, 'Content-Type': 'application/json',
        Accept: 'application/json, text/event-stream', 'MCP-Protocol-Version': PV,
      };
      // twice: a new session each time; the first builds the user's
      // decisions (wherever the gateway first needs them: the visibility
      // check at initialize, or tools/list), the second finds them cached
      for (const into of [cold, warm]) {
        const t1 = process.hrtime.bigint();
        const init = await req(agent, gw.port, 'POST', url, h, JSON.stringify({ jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: PV, capabilities: {}, clientInfo: { name: 'b', version: '1' } } }));
        if (init.status !== 200) throw new Error(`initialize: ${init.status} ${init.body}`);
        const hs = { ...h, 'Mcp-Session-Id': init.headers['mcp-session-id'] };
        await req(agent, gw.port, 'POST', url, hs, JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }));
        const l = await req(agent, gw.port, 'POST', url, hs, JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }));
        into.push(Number(process.hrtime.bigint() - t1) / 1e6);
        if (l.status !== 200 || !l.body.includes('"tools"')) throw new Error(`tools/list: ${l.status} ${l.body.slice(0, 200)}`);
      }
    }
    const f = (x) => `${x.toFixed(3)} ms`;
    console.log(`cold user: ${USERS} users, ${GROUPS} groups (${PER_USER} per user), a ${GROUPS}-rule policy; imported in ${importSecs.toFixed(1)} s`);
    console.log(`  initialize + tools/list, new session, cold user  p50 ${f(pct(cold, 50))}  p99 ${f(pct(cold, 99))}   over ${cold.length} users`);
    console.log(`  the same, warm (decisions cached)                p50 ${f(pct(warm, 50))}  p99 ${f(pct(warm, 99))}`);
    console.log(`  added by a cold user                             p50 ${f(pct(cold, 50) - pct(warm, 50))}  p99 ${f(pct(cold, 99) - pct(warm, 99))}`);
  } finally {
    await gw.stop().catch((e) => console.error(e.message));
    up.stop();
  }
}

main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
