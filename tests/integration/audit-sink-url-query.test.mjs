// A SIEM's intake that takes its API key in the URL's query (Datadog's:
// https://http-intake.logs.datadoghq.com/api/v2/logs?dd-api-key=…): a
// tenant admin PUTs such a URL as the tenant's audit sink. Before this
// test's fix the key was kept in clear in the main store, shown back by
// the PUT's answer and GET …/audit/sink (to every holder of an admin token
// of the tenant), and written into nothing else only because the sink's
// writes recorded no change. The sink URL is now sealed like a connector
// URL's query: shown with every query value as "…" (names kept) by the
// answers, the audit record of the change (before → after), the logs; the
// receiver gets the exact URL; a PUT sending the shown form back keeps the
// stored values at the same scheme, host, port and path only.
// The operator's own sink (config audit_sink_url) is config, not stored:
// its query values must only stay out of logs, /metrics and answers.
// Real parts: the gateway binary (debug log level) with its two LMDB
// environments on disk, a plain HTTP receiver recording each request target.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';

import { startGateway, waitFor, runGateway } from './lib/gateway.mjs';
import { api, createTenant, operatorToken, findSecretsInFiles } from './lib/admin.mjs';
import { startSinkReceiver } from './lib/sink.mjs';

const key = (what) => `${what}-${crypto.randomBytes(18).toString('base64url')}`;

test('a key in a tenant sink URL\'s query is sealed and shown as "…" everywhere; the receiver gets the exact URL', async () => {
  const KEY = key('ddk1');
  const KEY2 = key('ddk2');
  const KEY3 = key('ddk3');
  const ALL = [KEY, KEY2, KEY3];
  const noKey = (text, what) => {
    for (const k of ALL) assert.ok(!text.includes(k), `${what} shows a key of the sink URL's query: ${text.slice(0, 2000)}`);
  };
  const rx = await startSinkReceiver();
  const gw = await startGateway({ args: ['--log-level', 'debug'] });
  try {
    const op = operatorToken(gw.dataDir);
    await createTenant(gw.port, op, 'acme');
    const a = await api(gw.port, op, 'POST', '/admin/v1/tenants/acme/admin-tokens', { name: 'tenant admin' });
    assert.equal(a.status, 201, a.body);
    const admin = (method, p, body) => api(gw.port, a.json.token, method, `/admin/v1/tenants/acme${p}`, body);
    const base = `http://127.0.0.1:${rx.port}/api/v2/logs`;
    const shown = `${base}?dd-api-key=…&ddsource=…`;
    const targets = (from = 0) => [...new Set(rx.accepted().slice(from).map((p) => p.path))];

    let r = await admin('PUT', '/audit/sink', { url: `${base}?dd-api-key=${KEY}&ddsource=mcpgate` });
    assert.equal(r.status, 201, r.body);
    noKey(r.body, 'the PUT answer');
    assert.equal(r.json.url, shown, r.body);
    assert.equal(r.json.url_sealed, true, r.body);
    r = await admin('GET', '/audit/sink');
    assert.equal(r.status, 200, r.body);
    noKey(r.body, 'GET …/audit/sink');
    assert.equal(r.json.url, shown, r.body);
    // the receiver gets the exact URL, the key included
    await waitFor(() => rx.accepted().length > 0, { timeoutMs: 10000, what: 'the first POST' });
    assert.deepEqual(targets(), [`/api/v2/logs?dd-api-key=${KEY}&ddsource=mcpgate`]);

    // the shown URL sent back, one value changed (percent-encoded mask too): the key is kept
    r = await admin('PUT', '/audit/sink', { url: `${base}?dd-api-key=%E2%80%A6&ddsource=other` });
    assert.equal(r.status, 200, r.body);
    assert.equal(r.json.url, shown, r.body);
    let from = rx.accepted().length;
    await waitFor(() => rx.accepted().length > from, { timeoutMs: 10000, what: 'a POST after the PUT' });
    assert.deepEqual(targets(from), [`/api/v2/logs?dd-api-key=${KEY}&ddsource=other`]);

    // a kept value goes nowhere else: another path, host or port is refused; so is a name never stored
    const posts = rx.posts.length;
    for (const other of [`http://127.0.0.1:${rx.port}/other?dd-api-key=…`, `http://localhost:${rx.port}/api/v2/logs?dd-api-key=…`,
      `http://127.0.0.1:${rx.port + 1}/api/v2/logs?dd-api-key=…`, `${base}?dd-api-key=…&ddtags=…`]) {
      r = await admin('PUT', '/audit/sink', { url: other });
      assert.equal(r.status, 400, `${other}: ${r.body}`);
      assert.equal(r.json.error, 'invalid_request', r.body);
      assert.match(r.json.message, /…/, r.body);
    }
    r = await admin('GET', '/audit/sink');
    assert.equal(r.json.url, shown, 'the refused PUTs changed nothing');

    // a new key: sealed too, and the receiver gets it
    r = await admin('PUT', '/audit/sink', { url: `${base}?dd-api-key=${KEY2}&ddsource=other` });
    assert.equal(r.status, 200, r.body);
    noKey(r.body, 'the PUT answer');
    from = rx.accepted().length;
    await waitFor(() => rx.accepted().length > from, { timeoutMs: 10000, what: 'a POST with the new key' });
    assert.deepEqual(targets(from), [`/api/v2/logs?dd-api-key=${KEY2}&ddsource=other`]);
    assert.ok(rx.posts.length > posts);

    // a receiver that cannot be reached: its failure shown (last_error) and logged, the key not
    r = await admin('PUT', '/audit/sink', { url: `http://127.0.0.1:1/api/v2/logs?dd-api-key=${KEY3}` });
    assert.equal(r.status, 200, r.body);
    noKey(r.body, 'the PUT answer');
    let g;
    await waitFor(async () => {
      g = await admin('GET', '/audit/sink');
      return g.json?.delivery?.last_error;
    }, { timeoutMs: 10000, what: 'the sink\'s failure in GET' });
    noKey(g.body, 'GET …/audit/sink of a failing sink');
    r = await admin('DELETE', '/audit/sink');
    assert.equal(r.status, 204, r.body);

    // the audit log: every before → after of the sink shown masked
    let au;
    await waitFor(async () => {
      au = await admin('GET', '/audit?kind=admin&limit=200');
      return au.status === 200 && au.json.records.filter((x) => x.path.endsWith('/audit/sink') && x.change).length >= 5;
    }, { what: 'the sink writes with their change in the audit log' });
    noKey(au.body, 'the audit log');
    const first = au.json.records.filter((x) => x.path.endsWith('/audit/sink') && x.status === 201)[0];
    assert.equal(first.change.after.url, shown, JSON.stringify(first));
    assert.equal(first.change.before, undefined, JSON.stringify(first));
    const del = au.json.records.find((x) => x.method === 'DELETE' && x.path.endsWith('/audit/sink'));
    assert.equal(del.change.before.url, 'http://127.0.0.1:1/api/v2/logs?dd-api-key=…', JSON.stringify(del));
    noKey((await admin('GET', '/audit/export')).body, 'the audit export');
    const mx = await fetch(`${gw.url}/metrics`, { headers: { authorization: `Bearer ${op}` } }).then((x) => x.text());
    noKey(mx, '/metrics');

    // logs and the store files, once stopped
    await gw.settle();
    await gw.stop();
    noKey(gw.stderrText() + gw.stdoutText(), 'the log');
    const found = await findSecretsInFiles([gw.dataDir], ALL, { exclude: ['admin.token', 'master.key'] });
    assert.ok(found.scanned > 0);
    assert.deepEqual(found.hits, [], 'no key of a sink URL\'s query in clear in the data directory');
  } finally {
    await gw.stop().catch(() => {});
    await rx.close();
  }
});

test('the operator\'s sink URL: its query values are in no log line, /metrics, admin answer or config error', async () => {
  const OPKEY = key('opk');
  const rx = await startSinkReceiver({ status: (n) => (n === 0 ? 503 : 200) });
  const gw = await startGateway({ args: ['--audit-sink-url', `${rx.url}?dd-api-key=${OPKEY}`, '--log-level', 'debug'] });
  try {
    const op = operatorToken(gw.dataDir);
    await createTenant(gw.port, op, 'acme');
    // a failed POST (logged), then delivered
    await waitFor(() => rx.accepted().length > 0, { timeoutMs: 15000, what: 'the operator\'s sink delivering after a 503' });
    assert.equal(rx.posts[0].path, `/ingest?dd-api-key=${OPKEY}`);
    const mx = await fetch(`${gw.url}/metrics`, { headers: { authorization: `Bearer ${op}` } }).then((x) => x.text());
    assert.ok(!mx.includes(OPKEY), '/metrics');
    const r = await api(gw.port, op, 'GET', '/admin/v1/tenants/acme/audit/sink');
    assert.ok(!r.body.includes(OPKEY), r.body);
    await gw.settle();
    await gw.stop();
    assert.ok(!(gw.stderrText() + gw.stdoutText()).includes(OPKEY), 'the log');
  } finally {
    await gw.stop().catch(() => {});
    await rx.close();
  }
  // a URL the config refuses: the message names it without its query values
  const bad = await runGateway(['serve', '--audit-sink-url', `http://siem.example.com/in put?dd-api-key=${OPKEY}`, '--print-config']);
  assert.notEqual(bad.code, 0, bad.stderr);
  assert.match(bad.stderr, /audit_sink_url/);
  assert.ok(!(bad.stderr + bad.stdout).includes(OPKEY), bad.stderr);
});
