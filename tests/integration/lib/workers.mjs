// tests/integration/lib/workers.mjs — what the workers tests share: a
// gateway on two loops with a tenant and server-everything, and reading
// which loop served a request from its access line.
import assert from 'node:assert/strict';
import { after } from 'node:test';

import { startGateway, connect, waitFor } from './gateway.mjs';
import { setupTenant, rawSession, mcpHeaders, openStream, startEverything } from './mcp.mjs';

export const ALICE = 'alice@acme.com';
export const BOB = 'bob@acme.com';

let up;
after(async () => { await up?.stop(); });
/** server-everything, one per test file. */
export async function everything() {
  up ??= await startEverything();
  return up;
}

export async function fixture({ env = {}, args = [] } = {}) {
  const upstream = await everything();
  const gw = await startGateway({ args: ['--workers', '2', ...args], env });
  const t = await setupTenant(gw, { users: [ALICE, BOB] });
  const c = await t.putConnector('ev', { url: upstream.url, auth: { type: 'none' } });
  assert.equal(c.status, 201, `PUT connector: ${c.status} ${c.body}`);
  const alice = (await t.mintToken(ALICE)).token;
  const bob = (await t.mintToken(BOB)).token;
  return { gw, t, alice, bob, url: `${gw.url}/t/acme/mcp` };
}

export const accessIndex = (gw, id) => gw.logs().findIndex((e) => e.msg === 'access' && e.request_id === id);
export const accessLine = (gw, id) => gw.logs().find((e) => e.msg === 'access' && e.request_id === id);

/** A keep-alive connection that loop `loop` accepted (asked with /healthz). */
export async function connOnLoop(gw, loop) {
  for (let i = 0; i < 60; i++) {
    const c = await connect(gw.port);
    await c.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    const [h] = await c.responses(1);
    const line = await waitFor(() => accessLine(gw, h.headers['x-request-id']), { what: 'the healthz access line' });
    if (line.loop === loop) return c;
    c.destroy();
  }
  throw new Error(`no connection landed on loop ${loop}`);
}

/** n aggregated GET streams of token, one per session, each on its own connection. */
export async function openStreams(f, token, n) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const s = await rawSession(f.url, token);
    const st = await openStream(f.url, { headers: { ...mcpHeaders({ token, sessionId: s.sessionId, protocolVersion: s.protocolVersion }), accept: 'text/event-stream' } });
    assert.equal(st.status, 200, `GET stream: ${st.status}`);
    st.requestId = st.headers['x-request-id'];
    out.push(st);
  }
  return out;
}

