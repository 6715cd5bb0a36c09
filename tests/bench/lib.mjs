// tests/bench/lib.mjs — parts the benchmarks share: nginx as a plain
// reverse proxy (the baseline every proxy hop is measured against), the C
// upstream (tests/bench/upstream.c), and wrk runs with a JSON summary.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { spawn, spawnSync, execFile } from 'node:child_process';
import { REPO_ROOT } from '../integration/lib/gateway.mjs';

/* nginx as a plain reverse proxy in front of an upstream, with upstream
 * keep-alive: what any proxy hop costs, without auth, policy, sessions or
 * inspection. `workers` worker processes (the gateway runs as many loops). */
export async function startNginx(upPort, workers = 1) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mcpgate-bench-nginx-'));
  const port = 20000 + Math.floor(Math.random() * 20000);
  fs.writeFileSync(path.join(dir, 'nginx.conf'), `
worker_processes ${workers}; daemon off; pid ${dir}/nginx.pid; error_log ${dir}/error.log;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path ${dir}; proxy_temp_path ${dir}; fastcgi_temp_path ${dir};
  uwsgi_temp_path ${dir}; scgi_temp_path ${dir};
  upstream up { server 127.0.0.1:${upPort}; keepalive 64; }
  server { listen 127.0.0.1:${port}; keepalive_requests 1000000;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_buffering off; proxy_cache off; } } }`);
  const p = spawn(fs.existsSync('/usr/sbin/nginx') ? '/usr/sbin/nginx' : 'nginx', ['-c', path.join(dir, 'nginx.conf'), '-p', dir], { stdio: 'ignore' });
  await waitListening(port);
  return {
    port, url: `http://127.0.0.1:${port}/mcp`, pid: p.pid,
    stop: () => { p.kill('SIGTERM'); fs.rmSync(dir, { recursive: true, force: true }); },
  };
}

/* Resolves once 127.0.0.1:port accepts a connection (10 s at most). */
export async function waitListening(port) {
  for (let i = 0; i < 200; i++) {
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => { s.destroy(); resolve(true); });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listens on 127.0.0.1:${port}`);
}

/* The C upstream: never the bottleneck. `make bench` builds it. */
export async function startCUpstream({ tools = 20, events = 100 } = {}) {
  const bin = process.env.MCPGATE_BENCH_UPSTREAM || path.join(REPO_ROOT, 'build/bench/upstream');
  if (!fs.existsSync(bin)) throw new Error(`${bin} is missing: run make bench (or make build/bench/upstream)`);
  const p = spawn(bin, ['--port', '0', '--tools', String(tools), '--events', String(events)], { stdio: ['ignore', 'pipe', 'ignore'] });
  const port = await new Promise((resolve, reject) => {
    let out = '';
    p.stdout.on('data', (d) => {
      out += d;
      const m = /port (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    p.on('exit', (c) => reject(new Error(`upstream exited ${c}`)));
  });
  return { port, url: `http://127.0.0.1:${port}/mcp`, pid: p.pid, stop: () => p.kill('SIGTERM') };
}

/* CPU time (user + system, ms) used so far by pid and its descendants
 * (nginx's worker is a child of its master); cpuMs(pid, 'user') for user
 * time only. */
export function cpuMs(pid, which = 'all') {
  const tick = 1000 / 100; // USER_HZ
  let total = 0;
  const walk = (p) => {
    try {
      const f = fs.readFileSync(`/proc/${p}/stat`, 'utf8');
      const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
      total += (Number(rest[11]) + (which === 'user' ? 0 : Number(rest[12]))) * tick; // utime, stime
      for (const t of fs.readdirSync(`/proc/${p}/task`))
        for (const c of fs.readFileSync(`/proc/${p}/task/${t}/children`, 'utf8').trim().split(/\s+/).filter(Boolean)) walk(c);
    } catch { /* gone */ }
  };
  walk(pid);
  return total;
}

/* Per-thread figures of pid so far, summed by thread name (the gateway
 * names its threads: mcpgate-auditw, mcpgate-audit…): {name: {cpuMs (user
 * + system), faults (minor page faults)}}. */
function threadStat(pid) {
  const out = {};
  try {
    for (const t of fs.readdirSync(`/proc/${pid}/task`)) {
      try {
        const f = fs.readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8');
        const comm = f.slice(f.indexOf('(') + 1, f.lastIndexOf(')'));
        const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
        const o = (out[comm] ??= { cpuMs: 0, faults: 0 });
        o.cpuMs += (Number(rest[11]) + Number(rest[12])) * 10; // utime, stime (USER_HZ 100)
        o.faults += Number(rest[7]); // minflt
      } catch { /* the thread ended */ }
    }
  } catch { /* gone */ }
  return out;
}

/* CPU time (ms) of pid's threads so far, by thread name. */
export function threadCpuMs(pid) {
  return Object.fromEntries(Object.entries(threadStat(pid)).map(([k, v]) => [k, v.cpuMs]));
}

/* Minor page faults of pid's threads so far, by thread name. */
export function threadFaults(pid) {
  return Object.fromEntries(Object.entries(threadStat(pid)).map(([k, v]) => [k, v.faults]));
}

/* The whole machine's CPU time so far (ms, every core, /proc/stat):
 * busy (user, nice, system, irq, softirq, steal) and idle (idle, iowait). */
export function machineMs() {
  const times = (line) => {
    const [user, nice, system, idle, iowait, irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number);
    return { busy: (user + nice + system + irq + softirq + (steal || 0)) * 10, idle: (idle + iowait) * 10 };
  };
  const lines = fs.readFileSync('/proc/stat', 'utf8').split('\n');
  // ... and each core's: with --pin, which side (the proxy's core or the
  // load's) was the one with no idle time left
  return { ...times(lines[0]), cpus: lines.filter((l) => /^cpu\d+ /.test(l)).map(times) };
}

/* Context switches of pid's threads so far, summed by thread name:
 * {name: {vol, invol}} (involuntary: the thread was preempted). */
export function threadSwitches(pid) {
  const out = {};
  try {
    for (const t of fs.readdirSync(`/proc/${pid}/task`)) {
      try {
        const f = fs.readFileSync(`/proc/${pid}/task/${t}/status`, 'utf8');
        const name = /^Name:\s*(.*)$/m.exec(f)[1];
        const o = (out[name] ??= { vol: 0, invol: 0 });
        o.vol += Number(/^voluntary_ctxt_switches:\s*(\d+)/m.exec(f)[1]);
        o.invol += Number(/^nonvoluntary_ctxt_switches:\s*(\d+)/m.exec(f)[1]);
      } catch { /* the thread ended */ }
    }
  } catch { /* gone */ }
  return out;
}

/* Pins pid, its threads and its children's (nginx's workers) to cpus
 * (taskset's list syntax, "0" or "1-3"). */
export function pinTree(pid, cpus) {
  const walk = (p) => {
    spawnSync('taskset', ['-a', '-p', '-c', cpus, String(p)], { stdio: 'ignore' });
    try {
      for (const t of fs.readdirSync(`/proc/${p}/task`))
        for (const c of fs.readFileSync(`/proc/${p}/task/${t}/children`, 'utf8').trim().split(/\s+/).filter(Boolean)) walk(c);
    } catch { /* gone */ }
  };
  walk(pid);
}

/* Runs wrk with a Lua script that POSTs `body(n)` JSON-RPC messages (n:
 * 1..4096 in turn, so ids in flight differ) with `headers`; resolves to
 * {rps, p50, p99, p999 (µs), requests, errors}. */
export async function wrkPost(url, { headers = {}, bodyLua, conns = 16, secs = 5, threads = 1, pid, cpus }) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mcpgate-bench-wrk-'));
  const script = path.join(dir, 'post.lua');
  const hdr = Object.entries(headers).map(([k, v]) => `wrk.headers[${JSON.stringify(k)}] = ${JSON.stringify(v)}`).join('\n');
  fs.writeFileSync(script, `
wrk.method = "POST"
${hdr}
-- the requests are formatted once, in init, and sent in turn: formatting
-- each one in Lua (wrk.format builds the whole request) cost wrk more CPU
-- than a proxy spends on it, and pinned, wrk's core was the bound. 4,096
-- ids in turn: never two alike in flight on 16 connections.
local reqs, nreq, i = {}, 4096, 0
init = function(args)
  for n = 1, nreq do reqs[n] = wrk.format(nil, nil, nil, ${bodyLua}) end
end
request = function()
  i = i + 1
  if i > nreq then i = 1 end
  return reqs[i]
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('\\nRESULT {"requests":%d,"duration_us":%d,"errors":%d,"p50":%d,"p99":%d,"p999":%d}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
`);
  const cpu0 = pid ? cpuMs(pid) : 0, user0 = pid ? cpuMs(pid, 'user') : 0, th0 = pid ? threadCpuMs(pid) : {};
  const sw0 = pid ? threadSwitches(pid) : {}, m0 = machineMs(), pf0 = pid ? threadFaults(pid) : {};
  try {
    const out = await new Promise((resolve, reject) => {
      execFile(cpus ? 'taskset' : 'wrk', [...(cpus ? ['-c', cpus, 'wrk'] : []), `-t${threads}`, `-c${conns}`, `-d${secs}s`, '-s', script, url], { maxBuffer: 1 << 20 },
        (err, stdout, stderr) => (err ? reject(new Error(`wrk: ${err.message} ${stderr}`)) : resolve(stdout)));
    });
    const m = /RESULT (\{.*\})/.exec(out);
    if (!m) throw new Error(`wrk printed no result:\n${out}`);
    const r = JSON.parse(m[1]);
    // the proxy's CPU per request (µs): what a request costs it, whether or
    // not it was the bottleneck
    const cpuUs = pid && r.requests ? ((cpuMs(pid) - cpu0) * 1000) / r.requests : null;
    const userUs = pid && r.requests ? ((cpuMs(pid, 'user') - user0) * 1000) / r.requests : null;
    // ... and by thread (µs per request), e.g. the loop against the audit writer
    const th1 = pid ? threadCpuMs(pid) : {}, byThread = {};
    if (r.requests) for (const [k, v] of Object.entries(th1)) byThread[k] = ((v - (th0[k] ?? 0)) * 1000) / r.requests;
    // the whole machine per request (wrk and the upstream included), and
    // each thread's context switches per request
    const m1 = machineMs(), sw1 = pid ? threadSwitches(pid) : {}, switches = {};
    const machine = r.requests ? {
      busyUs: ((m1.busy - m0.busy) * 1000) / r.requests, idleUs: ((m1.idle - m0.idle) * 1000) / r.requests,
      // each core's busy share of the run (0..1)
      cpuBusy: m1.cpus.map((c, i) => {
        const b = c.busy - (m0.cpus[i]?.busy ?? 0), t = b + c.idle - (m0.cpus[i]?.idle ?? 0);
        return t > 0 ? b / t : 0;
      }),
    } : null;
    if (r.requests)
      for (const [k, v] of Object.entries(sw1))
        switches[k] = { vol: (v.vol - (sw0[k]?.vol ?? 0)) / r.requests, invol: (v.invol - (sw0[k]?.invol ?? 0)) / r.requests };
    const faults = {}; // page faults per request, by thread
    if (pid && r.requests) for (const [k, v] of Object.entries(threadFaults(pid))) faults[k] = (v - (pf0[k] ?? 0)) / r.requests;
    return { ...r, rps: r.requests / (r.duration_us / 1e6), cpuUs, userUs, byThread, machine, switches, faults };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/* Runs the open-loop generator (tests/bench/rate.c) at rps against url;
 * resolves to {sent, done, errors, rps, p50, p99, p999 (µs)}. */
export async function ratePost(url, { headers = {}, body, rps, secs = 5, conns = 16 }) {
  const bin = process.env.MCPGATE_BENCH_RATE || path.join(REPO_ROOT, 'build/bench/rate');
  if (!fs.existsSync(bin)) throw new Error(`${bin} is missing: run make bench (or make build/bench/rate)`);
  const u = new URL(url);
  const args = ['--port', u.port, '--path', u.pathname, '--rps', String(rps), '--secs', String(secs), '--conns', String(conns), '--body', body];
  for (const [k, v] of Object.entries(headers)) args.push('--header', `${k}: ${v}`);
  const out = await new Promise((resolve, reject) => {
    execFile(bin, args, { maxBuffer: 1 << 20 }, (err, stdout, stderr) => (err ? reject(new Error(`rate: ${err.message} ${stderr}`)) : resolve(stdout)));
  });
  return JSON.parse(out.trim().split('\n').pop());
}

export const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
