// Audit (issue 22): a tenant's additions to audit_redact. The tenant setting
// `audit_redact` (comma-separated key patterns) masks more keys of that
// tenant's call arguments, on top of the operator's audit_redact and the
// defaults (never instead of them); another tenant is not affected; a PATCH
// applies from the next call, also after calls that warmed the per-loop
// memo of the tenant's settings; malformed values are refused naming the
// setting, with nothing applied.
// Real parts: the gateway binary with its audit environment, server-everything
// behind it, the official SDK client on both endpoints, the admin API.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { waitFor, scrapeMetrics, metricValue } from './lib/gateway.mjs';
import { startProxyFixture, setupTenant, connectClient, toolText, UPSTREAM_SECRET } from './lib/mcp.mjs';

let fx, globex;

before(async () => {
  // the operator masks "opField" besides the defaults
  fx = await startProxyFixture({ gatewayArgs: ['--audit-redact', 'opField'] });
  const t = await setupTenant(fx.gw, { id: 'globex', users: ['carol@globex.com'] });
  const r = await t.putConnector('everything', {
    url: fx.rec.url, auth: { type: 'header', name: 'Authorization', value: UPSTREAM_SECRET },
  });
  assert.equal(r.status, 201, r.body);
  const m = await t.mintToken('carol@globex.com');
  assert.equal(m.status, 201, m.body);
  globex = { t, token: m.token };
});
after(async () => { await fx?.gw.stop(); await fx?.up.stop?.(); });

const patchSettings = (t, settings) => t.admin('PATCH', '', { settings });

let seq = 0;
/** One echo call on `url`; returns the call's audit record (found by its unique message). */
async function callAndRecord(t, url, token, tool, extra) {
  const message = `redact-${++seq}`;
  const c = await connectClient(url, token);
  try {
    const r = await c.client.callTool({ name: tool, arguments: { message, ...extra } });
    assert.match(toolText(r), new RegExp(message));
  } finally { await c.close(); }
  let rec;
  await waitFor(async () => {
    const r = await t.admin('GET', '/audit?kind=call&limit=20');
    assert.equal(r.status, 200, r.body);
    rec = r.json.records.find((x) => x.arguments?.message === message);
    return rec;
  }, { timeoutMs: 5000, intervalMs: 50, what: `the record of ${message}` });
  return rec;
}
const direct = (extra) => callAndRecord(fx.t, fx.url, fx.tokens.alice, 'echo', extra);
const aggregated = (extra) => callAndRecord(fx.t, `${fx.gw.url}/t/acme/mcp`, fx.tokens.alice, 'everything__echo', extra);
const other = (extra) => callAndRecord(globex.t, globex.t.mcpUrl('everything'), globex.token, 'echo', extra);

const SENT = {
  cardNumber: '4111111111111111',
  nested: { SSN: '078-05-1120', items: [{ backupCardNumber: '5500' }, 'plain'], keep: 'k' },
  password: 'hunter2',
  opField: 'op-secret',
};

test('a tenant\'s audit_redact masks its keys (any depth, any case, in arrays) on top of the operator\'s and the defaults, on both endpoints', async () => {
  const before = await direct(SENT); // the memo holds acme's settings from here on
  assert.equal(before.arguments.cardNumber, SENT.cardNumber, 'not masked before the setting');
  const r = await patchSettings(fx.t, { audit_redact: 'cardNumber,ssn' });
  assert.equal(r.status, 200, r.body);
  assert.equal(r.json.settings.audit_redact, 'cardNumber,ssn');
  for (const call of [direct, aggregated]) {
    const rec = await call(SENT);
    assert.deepEqual({ ...rec.arguments, message: undefined }, {
      message: undefined,
      cardNumber: '[redacted]',
      nested: { SSN: '[redacted]', items: [{ backupCardNumber: '[redacted]' }, 'plain'], keep: 'k' },
      password: '[redacted]', // the defaults still apply
      opField: '[redacted]', // and the operator's
    });
  }
  // arguments whose only masked key is the tenant's (the "as sent" path must see it too)
  for (const call of [direct, aggregated]) {
    const only = await call({ cardNumber: '4111', amount: 12 });
    assert.deepEqual(only.arguments, { message: only.arguments.message, cardNumber: '[redacted]', amount: 12 });
  }
  // the raw arguments as sent, when none of the patterns occurs: nothing to mask
  const clean = await direct({ amount: 12, note: 'x' });
  assert.deepEqual(clean.arguments, { message: clean.arguments.message, amount: 12, note: 'x' });
});

test('another tenant without the setting keeps its own values: tenants are isolated', async () => {
  const r = await patchSettings(fx.t, { audit_redact: 'cardNumber,ssn' });
  assert.equal(r.status, 200, r.body);
  const rec = await other(SENT);
  assert.equal(rec.tenant, 'globex');
  assert.equal(rec.arguments.cardNumber, SENT.cardNumber);
  assert.equal(rec.arguments.nested.SSN, SENT.nested.SSN);
  assert.equal(rec.arguments.password, '[redacted]');
  assert.equal(rec.arguments.opField, '[redacted]');
  // and acme's log holds no globex record (and acme's pattern still masks there)
  const mine = await direct(SENT);
  assert.equal(mine.arguments.cardNumber, '[redacted]');
});

test('a PATCH applies from the next call: removing the pattern unmasks, setting it again masks', async () => {
  let r = await patchSettings(fx.t, { audit_redact: 'cardNumber' });
  assert.equal(r.status, 200, r.body);
  assert.equal((await direct(SENT)).arguments.cardNumber, '[redacted]');
  assert.equal((await direct(SENT)).arguments.cardNumber, '[redacted]'); // warm
  r = await patchSettings(fx.t, { audit_redact: null });
  assert.equal(r.status, 200, r.body);
  assert.equal(r.json.settings.audit_redact, '', 'back to the default: none');
  const unmasked = await direct(SENT);
  assert.equal(unmasked.arguments.cardNumber, SENT.cardNumber);
  assert.equal(unmasked.arguments.password, '[redacted]', 'the defaults never go');
  r = await patchSettings(fx.t, { audit_redact: 'CARDNUMBER' });
  assert.equal(r.status, 200, r.body);
  assert.equal((await aggregated(SENT)).arguments.cardNumber, '[redacted]');
  r = await patchSettings(fx.t, { audit_redact: '' });
  assert.equal(r.status, 200, r.body);
  assert.equal((await aggregated(SENT)).arguments.cardNumber, SENT.cardNumber);
  // the settings were read through the memo, and read again after each write
  const m = await scrapeMetrics(fx.gw);
  assert.ok(metricValue(m, 'mcpgate_memo_lookups_total', { table: 'settings', result: 'miss' }) >= 4);
});

test('calls in a row with nothing written between read the tenant\'s settings from the memo, and still mask', async () => {
  const r = await patchSettings(fx.t, { audit_redact: 'cardNumber' });
  assert.equal(r.status, 200, r.body);
  const hits = async () => metricValue(await scrapeMetrics(fx.gw), 'mcpgate_memo_lookups_total', { table: 'settings', result: 'hit' });
  const before = await hits();
  const c = await connectClient(fx.url, fx.tokens.alice);
  const marks = [];
  try {
    // three calls on two loops at most: two of them share a loop and a snapshot
    for (let i = 0; i < 3; i++) {
      const message = `memo-${i}-${Date.now()}`;
      marks.push(message);
      await c.client.callTool({ name: 'echo', arguments: { message, cardNumber: '4111' } });
    }
  } finally { await c.close(); }
  assert.ok(await hits() > before, 'at least one call answered from the memo');
  await waitFor(async () => {
    const rs = (await fx.t.admin('GET', '/audit?kind=call&limit=20')).json.records;
    const mine = rs.filter((x) => marks.includes(x.arguments?.message));
    if (mine.length < 3) return false;
    for (const x of mine) assert.equal(x.arguments.cardNumber, '[redacted]');
    return true;
  }, { timeoutMs: 5000, intervalMs: 50, what: 'the three records' });
});

test('malformed values are refused with 400 naming the setting, and nothing is applied', async () => {
  let r = await patchSettings(fx.t, { audit_redact: 'ssn' });
  assert.equal(r.status, 200, r.body);
  const bad = [
    ['card number', /pattern 1 holds ' '/],
    ['ssn,,iban', /pattern 2 is empty/],
    ['ssn,', /pattern 2 is empty/],
    ['x'.repeat(65), /pattern 1 is too long/],
    [Array.from({ length: 33 }, (_, i) => `p${i}`).join(','), /at most 32 patterns/],
    ['card.number', /pattern 1 holds '\.'/],
    ['caf\u00e9', /pattern 1 holds byte 0xc3/],
    [5, /must be a string/],
    [['ssn'], /must be a string/],
    ['a'.repeat(3000), /characters/],
  ];
  for (const [v, why] of bad) {
    r = await patchSettings(fx.t, { audit_redact: v, sessions_per_user_max: 3 });
    assert.equal(r.status, 400, `${JSON.stringify(v).slice(0, 40)}: ${r.body}`);
    assert.match(r.json.message ?? r.body, /"audit_redact"/, r.body);
    assert.match(r.json.message ?? r.body, why, r.body);
  }
  const g = await fx.t.admin('GET', '');
  assert.equal(g.json.settings.audit_redact, 'ssn', 'unchanged');
  assert.equal(g.json.settings.sessions_per_user_max, 0, 'nothing of a refused PATCH applied');
  // the longest valid value
  const longest = Array.from({ length: 32 }, (_, i) => `${String(i).padStart(2, '0')}${'a'.repeat(62)}`).join(',');
  r = await patchSettings(fx.t, { audit_redact: longest });
  assert.equal(r.status, 200, r.body);
  r = await patchSettings(fx.t, { audit_redact: null });
  assert.equal(r.status, 200, r.body);
});
