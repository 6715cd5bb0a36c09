// tests/bench/tools_call.mjs — tools/call throughput and latency through
// the gateway, against baselines measured in the same invocation.
//
//   node tests/bench/tools_call.mjs [--secs 5] [--rounds 3] [--conns 16] [--baseline BIN]
//
// --baseline BIN[,BIN2...] (or MCPGATE_BENCH_BASELINE): a second gateway binary (an
// earlier commit's build) measured in the same rounds as "connector@base"
// and "aggregated@base" (more as @base2...): how a change moved the numbers,
// on the same noise. An entry env:K=V[+K=V...] is this build started with
// those variables (env:MCPGATE_AUDIT_BATCH_MS=5): a setting's effect.
//
// Load: wrk (one thread, --conns keep-alive connections), POSTing a small
// tools/call on one MCP session per variant. Upstream: the C upstream
// (tests/bench/upstream.c), which is never the bottleneck. Variants,
// interleaved round by round (the machine is noisy; medians printed):
//   (a) direct       wrk → upstream
//   (b) nginx        wrk → nginx (one worker, upstream keep-alive) → upstream
//   (c) connector    wrk → gateway /t/acme/mcp/ub → upstream
//   (d) aggregated   wrk → gateway /t/acme/mcp (ub__echo) → upstream
// Prints req/s, p50/p99/p99.9, c/b and d/b, and the latency c and d add
// over a. Asserts nothing (make bench); every variant is checked once to
// answer the call before it is loaded, and a run with errors is reported.
//
// After the call scenario, every variant is also run open loop at half
// the gateway's maximum (tests/bench/rate.c; --no-half skips it): the
// latency the gateway adds at a load it can carry.
//
// --workers 1,2: the gateway with each number of loops (--workers) against
// nginx with as many worker processes, in the same rounds; variants of
// N > 1 are suffixed -wN, loaded by wrk with N threads, and compared with
// nginx-wN.
//
// Scenarios (--scenario call,sse,list; default all):
//   call   tools/call with a small JSON reply
//   sse    tools/call answered as SSE: 100 notifications/progress, then the
//          result (events/s = req/s x 101; added latency per event)
//   list   tools/list of a 500-tool upstream; through the gateway it is
//          filtered by a 200-rule policy over the user's 20 groups
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { startGateway } from '../integration/lib/gateway.mjs';
import { setupTenant } from '../integration/lib/mcp.mjs';
import { startNginx, startCUpstream, wrkPost, ratePost, median, pinTree, cpuMs } from './lib.mjs';

const arg = (n, d) => {
  const i = process.argv.indexOf(`--${n}`);
  return i > 0 ? Number(process.argv[i + 1]) : d;
};
const SECS = arg('secs', 5), ROUNDS = arg('rounds', 3), CONNS = arg('conns', 16);
const PV = '2025-06-18';
const argStr = (n) => {
  const i = process.argv.indexOf(`--${n}`);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const BASELINE = argStr('baseline') || process.env.MCPGATE_BENCH_BASELINE;
const SCENARIOS = (argStr('scenario') || 'call,sse,list').split(',');
const HALF = !process.argv.includes('--no-half');
const WORKERS = (argStr('workers') || '1').split(',').map(Number).filter((n) => n > 0);
// --perf VARIANT: instead of the table, run wrk against that variant
// (connector, aggregated) for --secs while `perf record -g` samples the
// gateway, then print perf's top symbols (build with
// EXTRA_CFLAGS=-fno-omit-frame-pointer for whole call chains).
const PERF = argStr('perf');
// --syscalls VARIANT[,VARIANT…]: strace -c the serving process (nginx's
// worker included) while wrk runs, and print system calls per request.
const SYSCALLS = argStr('syscalls');
// --segments VARIANT[,VARIANT…]: TCP segments the machine sent per request
// under wrk (nstat: TcpOutSegs, and of them pure ACKs and delayed ACKs) —
// the loopback work every hop pays, including wrk's and the upstream's
// (direct: 2 a call at best; a proxy: 4).
const SEGMENTS = argStr('segments');
// --callgrind [N]: the gateway runs under valgrind's callgrind; after a
// warm-up, N (default 4,000) tools/call per endpoint on --conns keep-alive
// connections, and the instructions the whole process executed divided by
// N: a per-call cost that does not move with the machine's noise (unlike
// req/s), to compare builds (MCPGATE_BIN) change by change.
const CALLGRIND = process.argv.includes('--callgrind') ? (Number(argStr('callgrind')) || 4000) : 0;
// --audit-off: the gateway runs with audit = false. --audit-cost: a second
// gateway (same binary) with audit = false is measured in the same rounds
// as "connector@noaudit" / "aggregated@noaudit" (issue 22: audit on costs
// at most 5 %).
const AUDIT_OFF = process.argv.includes('--audit-off');
const AUDIT_COST = process.argv.includes('--audit-cost');
// --verbose: every round's req/s and CPU per call under each variant's line
const VERBOSE = process.argv.includes('--verbose');
// --pin: the proxies (every gateway, nginx and its worker) on CPU 0, wrk
// and the upstream on CPU 1 (with 2 CPUs; on more, the proxies get the
// first half): the proxy under test has a core of its own, and where the
// kernel places a woken thread no longer decides the numbers.
const PIN = process.argv.includes('--pin');
// --upstream-auth header: the connectors present a shared API key (auth type
// "header": the gateway unseals it for every call) instead of none.
const UPSTREAM_AUTH = argStr('upstream-auth') === 'header'
  ? { type: 'header', name: 'X-Api-Key', value: 'bench-key-0123456789abcdef' }
  : { type: 'none' };
const NCPU = os.cpus().length;
const PROXY_CPUS = NCPU > 2 ? `0-${Math.floor(NCPU / 2) - 1}` : '0';
const LOAD_CPUS = NCPU > 2 ? `${Math.floor(NCPU / 2)}-${NCPU - 1}` : '1';

async function rpc(url, headers, msg) {
  const r = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream', 'MCP-Protocol-Version': PV, ...headers },
    body: JSON.stringify(msg),
  });
  return { status: r.status, sid: r.headers.get('mcp-session-id'), text: await r.text() };
}

/* An initialized MCP session at url; returns the headers a call needs. */
async function session(url, token) {
  const auth = token ? { Authorization: `Bearer ${token}` } : {};
  const init = await rpc(url, auth, { jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: PV, capabilities: {}, clientInfo: { name: 'bench', version: '1' } } });
  if (init.status !== 200 || !init.sid) throw new Error(`initialize at ${url}: ${init.status} ${init.text}`);
  const h = { ...auth, 'Mcp-Session-Id': init.sid };
  const n = await rpc(url, h, { jsonrpc: '2.0', method: 'notifications/initialized' });
  if (n.status !== 202) throw new Error(`initialized at ${url}: ${n.status} ${n.text}`);
  return h;
}

/* What each scenario sends (tool: the upstream's tool name as this
 * variant sees it) and a substring its answer must contain. */
const SCEN = {
  call: { msg: (tool) => ({ method: 'tools/call', params: { name: tool('echo'), arguments: { q: 'bench' } } }), expect: '"text":"ok"' },
  sse: { msg: (tool) => ({ method: 'tools/call', params: { name: tool('stream'), arguments: {}, _meta: { progressToken: 7 } } }), expect: '"text":"done"' },
  list: { msg: () => ({ method: 'tools/list', params: {} }), expect: '"tools":[' },
};

async function variant(name, url, token, tool, scen, pid) {
  const h = await session(url, token);
  const msg = SCEN[scen].msg(tool);
  const probe = await rpc(url, h, { jsonrpc: '2.0', id: 1, ...msg });
  if (probe.status !== 200 || !probe.text.includes(SCEN[scen].expect)) throw new Error(`${name} (${scen}): answered ${probe.status} ${probe.text.slice(0, 300)}`);
  const headers = { 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream', 'MCP-Protocol-Version': PV, ...h };
  const rest = JSON.stringify(msg).slice(1); // "method":…}
  const bodyLua = `'{"jsonrpc":"2.0","id":' .. n .. ',' .. ${JSON.stringify(rest).replace(/^"|"$/g, "'")}`;
  const bodyTmpl = `{"jsonrpc":"2.0","id":{ID},${rest}`;
  const w = /-w(\d+)$/.exec(name);
  return { name, url, headers, bodyLua, bodyTmpl, runs: [], probeBytes: probe.text.length, pid, threads: w ? Number(w[1]) : 1,
    nginxName: w ? `nginx-w${w[1]}` : 'nginx' };
}

const POLICY_200 = {
  version: 1, default: 'block',
  rules: Array.from({ length: 200 }, (_, i) => ({
    groups: [`bench-${i % 20}`], connector: 'big', allow: [`tool_${i}`, `tool_${i + 200}`, 'echo'], block: [`tool_${i + 1}_x`],
  })).concat([{ groups: ['*'], connector: 'ub', allow: ['*'] }]),
};

async function main() {
  const up = await startCUpstream();
  const big = await startCUpstream({ tools: 500 });
  const ngx = await startNginx(up.port);
  const ngxBig = await startNginx(big.port);
  const extraNginx = [];
  const cgDir = CALLGRIND ? fs.mkdtempSync(path.join(os.tmpdir(), 'mcpgate-cg-')) : null;
  const gws = [await startGateway({
    args: ['--access-log', 'false', '--workers', '1'],
    env: AUDIT_OFF ? { MCPGATE_AUDIT: 'false' } : {},
    ...(CALLGRIND ? { wrap: ['valgrind', '--tool=callgrind', `--callgrind-out-file=${cgDir}/cg.out`], timeoutMs: 120000 } : {}),
  })];
  gws[0].sfx = '';
  // several, comma-separated: @base, @base2, ... in the same rounds
  // (an entry env:K=V+K2=V2 is this build with those settings, e.g.
  // env:MCPGATE_AUDIT_BATCH_MS=5: a setting's effect on the same noise)
  for (const [i, spec] of (BASELINE ? BASELINE.split(',') : []).entries()) {
    const env = { MCPGATE_WORKERS: '1', ...(AUDIT_OFF ? { MCPGATE_AUDIT: 'false' } : {}) }; // the same audit setting as this build
    let bin = spec;
    if (spec.startsWith('env:')) {
      bin = undefined;
      for (const kv of spec.slice(4).split('+')) env[kv.slice(0, kv.indexOf('='))] = kv.slice(kv.indexOf('=') + 1);
    }
    const g = await startGateway({ args: ['--access-log', 'false'], env, bin }); // an older build may not know --workers (nor its variable: then it runs a loop per core)
    g.sfx = i ? `@base${i + 1}` : '@base';
    gws.push(g);
  }
  if (AUDIT_COST) {
    const g = await startGateway({ args: ['--access-log', 'false', '--workers', '1'], env: { MCPGATE_AUDIT: 'false' } });
    g.sfx = '@noaudit';
    gws.push(g);
  }
  for (const n of WORKERS.filter((x) => x > 1)) {
    const g = await startGateway({ args: ['--access-log', 'false', '--workers', String(n)] });
    g.sfx = `-w${n}`;
    gws.push(g);
  }
  try {
    const scen = {};
    for (const sc of SCENARIOS) {
      const direct = sc === 'list' ? big : up, viaNginx = sc === 'list' ? ngxBig : ngx;
      scen[sc] = [
        await variant('direct', direct.url, null, (t) => t, sc, direct.pid),
        await variant('nginx', viaNginx.url, null, (t) => t, sc, viaNginx.pid),
      ];
      for (const n of WORKERS.filter((x) => x > 1)) {
        const nx = await startNginx((sc === 'list' ? big : up).port, n);
        extraNginx.push(nx);
        scen[sc].push(await variant(`nginx-w${n}`, nx.url, null, (t) => t, sc, nx.pid));
      }
    }
    for (const gw of gws) {
      const t = await setupTenant(gw, { users: ['alice@acme.com'], policy: null });
      const alice = t.users['alice@acme.com'].id;
      for (let g = 0; g < 20; g++) {
        const r = await t.scim.createGroup(`bench-${g}`, [alice]);
        if (!r.id) throw new Error(`group: ${JSON.stringify(r)}`);
      }
      await t.setPolicy(POLICY_200);
      for (const [name, u] of [['ub', up], ['big', big]]) {
        const put = await t.putConnector(name, { url: u.url, auth: UPSTREAM_AUTH });
        if (put.status !== 201) throw new Error(`connector: ${put.status} ${put.body}`);
      }
      const tok = (await t.mintToken('alice@acme.com')).token;
      const sfx = gw.sfx;
      for (const sc of SCENARIOS) {
        const c = sc === 'list' ? 'big' : 'ub';
        scen[sc].push(await variant(`connector${sfx}`, t.mcpUrl(c), tok, (x) => x, sc, gw.proc.pid));
        if (sc !== 'list') scen[sc].push(await variant(`aggregated${sfx}`, `${gw.url}/t/acme/mcp`, tok, (x) => `${c}__${x}`, sc, gw.proc.pid));
      }
    }
    if (PIN) {
      for (const gw of gws) pinTree(gw.proc.pid, PROXY_CPUS);
      for (const nx of [ngx, ngxBig, ...extraNginx]) pinTree(nx.pid, PROXY_CPUS);
      for (const u of [up, big]) pinTree(u.pid, LOAD_CPUS);
    }
    if (CALLGRIND) return await instructions(scen[SCENARIOS[0]].filter((v) => v.name === 'connector' || v.name === 'aggregated'), gws[0], cgDir);
    if (PERF) {
      for (const name of PERF.split(',')) await profile(scen[SCENARIOS[0]].find((v) => v.name === name), name);
      return;
    }
    if (SYSCALLS) {
      for (const name of SYSCALLS.split(',')) await syscalls(scen[SCENARIOS[0]].find((v) => v.name === name), name);
      return;
    }
    if (SEGMENTS) {
      for (let r = 0; r < ROUNDS; r++)
        for (const name of SEGMENTS.split(',')) await segments(scen[SCENARIOS[0]].find((v) => v.name === name), name, up.pid);
      return;
    }
    for (const sc of SCENARIOS) {
      const vs = scen[sc];
      for (let r = 0; r < ROUNDS; r++)
        for (const v of vs) v.runs.push(await wrkPost(v.url, { headers: v.headers, bodyLua: v.bodyLua, conns: CONNS, secs: SECS, pid: v.pid, threads: v.threads, cpus: PIN ? LOAD_CPUS : undefined }));
      const m = {};
      for (const v of vs) {
        m[v.name] = {
          rps: median(v.runs.map((x) => x.rps)), p50: median(v.runs.map((x) => x.p50)),
          p99: median(v.runs.map((x) => x.p99)), p999: median(v.runs.map((x) => x.p999)),
          errors: v.runs.reduce((s2, x) => s2 + x.errors, 0),
          cpu: median(v.runs.map((x) => x.cpuUs ?? 0)),
          user: median(v.runs.map((x) => x.userUs ?? 0)),
          cores: (v.runs[0]?.machine?.cpuBusy ?? []).map((_, i) => median(v.runs.map((x) => x.machine?.cpuBusy?.[i] ?? 0))),
        };
      }
      const ms = (x) => `${(x / 1000).toFixed(3)} ms`;
      const head = {
        call: 'tools/call, small JSON reply',
        sse: 'tools/call answered as SSE (100 progress events + result)',
        list: `tools/list of 500 tools (gateway: filtered by a 200-rule policy to the user's tools)`,
      }[sc];
      console.log(`${head}: wrk -t1 -c${CONNS}, ${ROUNDS} rounds x ${SECS} s interleaved, C upstream (medians)` +
        (PIN ? `; pinned: proxies on CPU ${PROXY_CPUS}, wrk and upstream on ${LOAD_CPUS}` : '') +
        (BASELINE ? `; @base = ${BASELINE}` : ''));
      for (const v of vs) {
        const x = m[v.name];
        let line = `  ${v.name.padEnd(16)} ${x.rps.toFixed(0).padStart(7)} req/s  p50 ${ms(x.p50)}  p99 ${ms(x.p99)}  p99.9 ${ms(x.p999)}`;
        if (x.cpu) line += `  cpu ${x.cpu.toFixed(1)} us/req (user ${x.user.toFixed(1)})`;
        // pinned, a core near 100 % is the bound: the proxy's (its CPU per
        // call decides) or the load's (wrk's and the upstream's per call do)
        if (PIN && x.cores.length) line += `  cores busy ${x.cores.map((c) => `${(c * 100).toFixed(0)}`).join('/')} %`;
        if (sc === 'sse') line += `  ${(x.rps * 101).toFixed(0)} events/s`;
        if (sc === 'list') line += `  ${v.probeBytes} B/reply`;
        if (v.name !== 'direct' && !v.name.startsWith('nginx')) {
          const base = m[v.nginxName] ?? m.nginx;
          line += `   ${(x.rps / base.rps).toFixed(2)}x ${m[v.nginxName] ? v.nginxName : 'nginx'}  +${((x.p50 - m.direct.p50) / 1000).toFixed(3)} ms p50 over direct`;
          if (sc === 'sse') line += ` (${((x.p50 - m.direct.p50) / 101).toFixed(1)} us/event)`;
        }
        if (x.errors) line += `   (${x.errors} errors!)`;
        if (VERBOSE) line += `\n      rounds: ${v.runs.map((r) => `${r.rps.toFixed(0)} (cpu ${(r.cpuUs ?? 0).toFixed(1)})`).join(', ')}`;
        console.log(line);
      }
      if (AUDIT_COST) {
        // audit on against off round by round: the two ran seconds apart,
        // so a slow phase of the machine moves both (a ratio of medians
        // may take them from different phases)
        for (const name of vs.map((v) => v.name).filter((n) => /^(connector|aggregated)(@base\d*)?$/.test(n))) {
          const on = vs.find((v) => v.name === name), off = vs.find((v) => v.name === `${name.split('@')[0]}@noaudit`);
          if (!on || !off) continue;
          const ratios = on.runs.map((r, i) => r.rps / off.runs[i].rps);
          const dcpu = on.runs.map((r, i) => (r.cpuUs ?? 0) - (off.runs[i].cpuUs ?? 0));
          const pct = (x) => `${x >= 1 ? '+' : ''}${((x - 1) * 100).toFixed(1)} %`;
          // the middle half of the rounds' ratios: how far apart two runs
          // of the same builds land on this machine (±3 % is common)
          const q = (xs, f) => {
            const a = [...xs].sort((x, y) => x - y), i = (a.length - 1) * f, lo = Math.floor(i);
            return a[lo] + (a[Math.ceil(i)] - a[lo]) * (i - lo);
          };
          console.log(`  audit cost, ${name}: ${pct(median(ratios))} req/s (middle half of rounds ${pct(q(ratios, 0.25))} to ${pct(q(ratios, 0.75))}; ` +
            `rounds: ${ratios.map(pct).join(', ')}), CPU per call ${median(dcpu) >= 0 ? '+' : ''}${median(dcpu).toFixed(1)} us`);
          // where the CPU went, thread by thread (medians; audit off has no audit threads)
          const names = [...new Set([...on.runs, ...off.runs].flatMap((r) => Object.keys(r.byThread ?? {})))].sort();
          const th = (runs, k) => median(runs.map((r) => r.byThread?.[k] ?? 0));
          console.log(`    CPU per call by thread, on / off: ${names.filter((k) => th(on.runs, k) + th(off.runs, k) >= 0.05)
            .map((k) => `${k} ${th(on.runs, k).toFixed(1)} / ${th(off.runs, k).toFixed(1)} us`).join(', ')}`);
          // the machine: what wrk and the upstream spent besides the
          // gateway, and the idle time (a busy core the loop waited on
          // shows as neither)
          const mm = (runs, k) => median(runs.map((r) => r.machine?.[k] ?? 0));
          const other = (runs) => median(runs.map((r) => (r.machine?.busyUs ?? 0) - (r.cpuUs ?? 0)));
          console.log(`    machine per call, on / off: busy ${mm(on.runs, 'busyUs').toFixed(1)} / ${mm(off.runs, 'busyUs').toFixed(1)} us ` +
            `(not the gateway: ${other(on.runs).toFixed(1)} / ${other(off.runs).toFixed(1)}), idle ${mm(on.runs, 'idleUs').toFixed(1)} / ${mm(off.runs, 'idleUs').toFixed(1)} us`);
          const pf = (runs, k) => median(runs.map((r) => r.faults?.[k] ?? 0));
          console.log(`    page faults per call, on / off: ${names.filter((k) => pf(on.runs, k) + pf(off.runs, k) >= 0.001)
            .map((k) => `${k} ${pf(on.runs, k).toFixed(3)} / ${pf(off.runs, k).toFixed(3)}`).join(', ') || 'none'}`);
          const sw = (runs, k, w) => median(runs.map((r) => r.switches?.[k]?.[w] ?? 0));
          console.log(`    context switches per call, on / off (voluntary, preempted): ${names.filter((k) => sw(on.runs, k, 'vol') + sw(on.runs, k, 'invol') >= 0.001)
            .map((k) => `${k} ${sw(on.runs, k, 'vol').toFixed(3)}, ${sw(on.runs, k, 'invol').toFixed(3)} / ${sw(off.runs, k, 'vol').toFixed(3)}, ${sw(off.runs, k, 'invol').toFixed(3)}`).join('; ')}`);
        }
      }
      if (sc === 'call' && HALF) {
        // issue 14's latency goal: added latency at half the gateway's
        // maximum throughput (the lower of its two endpoints), every
        // variant at the same rate, open loop (tests/bench/rate.c)
        // (this build's: a --baseline build does not lower the rate)
        const rate = Math.floor(0.5 * Math.min(...vs.filter((v) => (v.name === 'connector' || v.name === 'aggregated')).map((v) => m[v.name].rps)));
        const lat = {};
        for (let r = 0; r < ROUNDS; r++)
          for (const v of vs) (lat[v.name] ??= []).push(await ratePost(v.url, { headers: v.headers, body: v.bodyTmpl, rps: rate, secs: SECS, conns: CONNS }));
        console.log(`  at ${rate} req/s for every variant (half the gateway's maximum; open loop, tests/bench/rate.c, medians):`);
        const d50 = median(lat.direct.map((x) => x.p50)), d99 = median(lat.direct.map((x) => x.p99));
        for (const v of vs) {
          const p50 = median(lat[v.name].map((x) => x.p50)), p99 = median(lat[v.name].map((x) => x.p99)), p999 = median(lat[v.name].map((x) => x.p999));
          const errs = lat[v.name].reduce((a, x) => a + x.errors, 0);
          let line = `  ${v.name.padEnd(16)} p50 ${p50.toFixed(0).padStart(5)} us  p99 ${p99.toFixed(0).padStart(6)} us  p99.9 ${p999.toFixed(0).padStart(6)} us`;
          if (v.name !== 'direct') line += `   added over direct: p50 +${(p50 - d50).toFixed(0)} us, p99 +${(p99 - d99).toFixed(0)} us`;
          if (errs) line += `   (${errs} errors!)`;
          console.log(line);
        }
      }
    }
  } finally {
    for (const gw of gws) await gw.stop();
    ngx.stop();
    ngxBig.stop();
    for (const nx of extraNginx) nx.stop();
    up.stop();
    big.stop();
  }
}

/* N calls of variant v, --conns at a time, each answered 200 with the
 * scenario's expected text (or thrown). */
async function calls(v, n, scen) {
  let next = 0;
  const one = async () => {
    while (next < n) {
      const id = ++next;
      const r = await fetch(v.url, { method: 'POST', headers: v.headers, body: v.bodyTmpl.replace('{ID}', String(id + 1000)) });
      const t = await r.text();
      if (r.status !== 200 || !t.includes(SCEN[scen].expect)) throw new Error(`${v.name}: ${r.status} ${t.slice(0, 200)}`);
    }
  };
  await Promise.all(Array.from({ length: CONNS }, one));
}

async function instructions(vs, gw, dir) {
  const ctl = (a) => {
    const r = spawnSync('callgrind_control', [a, String(gw.proc.pid)], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`callgrind_control ${a}: ${r.stderr}`);
  };
  const sc = SCENARIOS[0];
  console.log(`instructions per ${sc} (callgrind, whole gateway process, one loop, ${CALLGRIND} calls on ${CONNS} connections after 500 warm-up):`);
  for (const v of vs) {
    await calls(v, 500, sc);
    ctl('-z');
    const before = new Set(fs.readdirSync(dir));
    await calls(v, CALLGRIND, sc);
    ctl('-d');
    const dump = fs.readdirSync(dir).filter((f) => !before.has(f)).sort().pop();
    const m = /^(?:summary|totals):\s*(\d+)/m.exec(fs.readFileSync(path.join(dir, dump), 'utf8'));
    if (!m) throw new Error(`no totals in ${dump}`);
    console.log(`  ${v.name.padEnd(16)} ${(Number(m[1]) / CALLGRIND / 1000).toFixed(1)}k instructions per call   (${path.join(dir, dump)})`);
  }
}

async function profile(v, name) {
  if (!v) throw new Error(`--perf: no variant ${name}`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mcpgate-perf-'));
  const data = path.join(dir, 'perf.data');
  const perf = spawn('perf', ['record', '-F', '999', ...(process.env.PERF_DWARF ? ['--call-graph', 'dwarf,16384'] : ['-g']), '-o', data, '-p', String(v.pid)], { stdio: 'ignore' });
  await new Promise((r) => setTimeout(r, 300));
  const w = await wrkPost(v.url, { headers: v.headers, bodyLua: v.bodyLua, conns: CONNS, secs: SECS, cpus: PIN ? LOAD_CPUS : undefined });
  perf.kill('SIGINT');
  await new Promise((r) => perf.on('exit', r));
  console.log(`${v.name}: ${w.rps.toFixed(0)} req/s (${w.requests} requests) while sampled; perf data in ${data}`);
  for (const args of [['--no-children', '--sort', 'dso'], ['--no-children', '--sort', 'symbol'], ['--children', '--sort', 'symbol']]) {
    const out = spawnSync('perf', ['report', '-i', data, '--stdio', '-g', 'none', '--percent-limit', '1.5', ...args], { encoding: 'utf8', maxBuffer: 1 << 26 });
    console.log(out.stdout.split('\n').filter((l) => l && !l.startsWith('#')).join('\n'));
  }
}

/* System calls per request of variant v's serving process (and its
 * children: nginx's worker), counted by strace -c while wrk runs. strace
 * slows the process down; the counts per request are what matter. */
async function syscalls(v, name) {
  if (!v || !v.pid) throw new Error(`--syscalls: no variant ${name} with a process (nginx, connector, aggregated)`);
  const pids = [String(v.pid)];
  for (const t of fs.readdirSync(`/proc/${v.pid}/task`))
    pids.push(...fs.readFileSync(`/proc/${v.pid}/task/${t}/children`, 'utf8').trim().split(/\s+/).filter(Boolean));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mcpgate-strace-'));
  const out = path.join(dir, 'strace.txt');
  const st = spawn('strace', ['-c', '-f', '-o', out, ...pids.flatMap((p) => ['-p', p])], { stdio: 'ignore' });
  await new Promise((r) => setTimeout(r, 500));
  const w = await wrkPost(v.url, { headers: v.headers, bodyLua: v.bodyLua, conns: CONNS, secs: SECS });
  st.kill('SIGINT');
  await new Promise((r) => st.on('exit', r));
  const n = w.requests;
  console.log(`${v.name}: ${n} requests under strace; system calls per request:`);
  for (const l of fs.readFileSync(out, 'utf8').split('\n')) {
    const f = l.trim().split(/\s+/);
    if (f.length >= 5 && /^\d/.test(f[0]) && f[f.length - 1] !== 'total') {
      const calls = Number(f[3]);
      if (calls / n >= 0.01) console.log(`  ${f[f.length - 1].padEnd(16)} ${(calls / n).toFixed(2)}`);
    }
  }
  fs.rmSync(dir, { recursive: true, force: true });
}

function nstat() {
  const out = spawnSync('nstat', ['-az', '--json'], { encoding: 'utf8' }).stdout;
  const j = JSON.parse(out);
  return j.kernel || j;
}

async function segments(v, name, upPid) {
  if (!v) throw new Error(`--segments: no variant ${name}`);
  const a = nstat(), u0 = cpuMs(upPid);
  const w = await wrkPost(v.url, { headers: v.headers, bodyLua: v.bodyLua, conns: CONNS, secs: SECS, pid: v.pid, cpus: PIN ? LOAD_CPUS : undefined });
  const b = nstat(), u1 = cpuMs(upPid);
  const per = (k) => (((b[k] || 0) - (a[k] || 0)) / w.requests).toFixed(2);
  const us = (x) => (x == null ? '-' : x.toFixed(1));
  console.log(`${name.padEnd(12)} ${w.rps.toFixed(0)} req/s: per request TcpOutSegs ${per('TcpOutSegs')}, pure ACKs received ${per('TcpExtTCPPureAcks')}, delayed ACKs ${per('TcpExtDelayedACKs')}; CPU us per request: proxy ${us(w.cpuUs)}, upstream ${us(((u1 - u0) * 1000) / w.requests)}, machine ${us(w.machine?.busyUs)}; cores busy ${w.machine?.cpuBusy.map((x) => Math.round(x * 100)).join('/')} %`);
}

main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
