// ci-variants: build-w1
// Audit (issue 22), found by review: the default pattern "api_key" masked
// only keys spelling it with an underscore, so a tool's "apiKey" (camelCase,
// the usual spelling of TypeScript MCP servers), an "X-Api-Key" header passed
// in the arguments, "api-key" or "APIKEY" went into the call's record — the
// admin's query, the export, the tenant's SIEM — in clear, and so into what a
// reviewer reads of a held call. A pattern now matches a key whatever its
// separators ('_' and '-', on either side) and case: "api_key" masks "apiKey",
// a tenant's "card_number" masks "cardNumber".
// Real parts: the gateway binary with its audit environment, server-everything
// behind it, the official SDK client on both endpoints, the admin API.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { waitFor } from './lib/gateway.mjs';
import { startProxyFixture, connectClient, toolText } from './lib/mcp.mjs';

let fx;
before(async () => {
  fx = await startProxyFixture();
  const r = await fx.t.admin('PATCH', '', { settings: { audit_redact: 'card_number' } });
  assert.equal(r.status, 200, r.body);
});
after(async () => { await fx?.gw.stop(); await fx?.up.stop?.(); });

let seq = 0;
async function callAndRecord(url, tool, extra) {
  const message = `spelling-${++seq}`;
  const c = await connectClient(url, fx.tokens.alice);
  try {
    const r = await c.client.callTool({ name: tool, arguments: { message, ...extra } });
    assert.match(toolText(r), new RegExp(message));
  } finally { await c.close(); }
  let rec;
  await waitFor(async () => {
    const r = await fx.t.admin('GET', '/audit?kind=call&limit=20');
    assert.equal(r.status, 200, r.body);
    rec = r.json.records.find((x) => x.arguments?.message === message);
    return rec;
  }, { timeoutMs: 5000, intervalMs: 50, what: `the record of ${message}` });
  return rec;
}

const SENT = {
  apiKey: 'SECRET-camel',
  'api-key': 'SECRET-dash',
  APIKEY: 'SECRET-upper',
  headers: { 'X-Api-Key': 'SECRET-header', Accept: 'application/json' },
  list: [{ xApiKey: 'SECRET-in-array' }],
  pass_word: 'SECRET-split',
  cardNumber: 'SECRET-tenant-pattern',
  // defaults beyond the first five: spellings secrets go by in tools' arguments
  passwd: 'SECRET-passwd',
  privateKey: 'SECRET-private-key',
  aws_credentials: { id: 'SECRET-credential' },
  Cookie: 'SECRET-cookie',
  keep: 'visible',
};

test('every spelling of a pattern (camelCase, dashes, no separator, any case) is masked, on both endpoints', async () => {
  for (const [url, tool] of [[fx.url, 'echo'], [`${fx.gw.url}/t/acme/mcp`, 'everything__echo']]) {
    const rec = await callAndRecord(url, tool, SENT);
    const text = JSON.stringify(rec);
    for (const v of Object.values(SENT).flatMap((x) => (typeof x === 'string' ? [x] : JSON.stringify(x).match(/SECRET-[a-z-]+/g))))
      if (v.startsWith('SECRET')) assert.ok(!text.includes(v), `${tool}: ${v} is in the record: ${text}`);
    assert.deepEqual({ ...rec.arguments, message: undefined }, {
      message: undefined,
      apiKey: '[redacted]',
      'api-key': '[redacted]',
      APIKEY: '[redacted]',
      headers: { 'X-Api-Key': '[redacted]', Accept: 'application/json' },
      list: [{ xApiKey: '[redacted]' }],
      pass_word: '[redacted]',
      cardNumber: '[redacted]',
      passwd: '[redacted]',
      privateKey: '[redacted]',
      aws_credentials: '[redacted]',
      Cookie: '[redacted]',
      keep: 'visible',
    }, tool);
  }
});

test('only separators are ignored: keys whose letters are split by anything else stay as sent', async () => {
  const rec = await callAndRecord(fx.url, 'echo', { apiXkey: 'a', tok_en_count: 3, api: 'b', key: 'c' });
  assert.deepEqual({ ...rec.arguments, message: undefined },
    { message: undefined, apiXkey: 'a', tok_en_count: '[redacted]', api: 'b', key: 'c' });
});
