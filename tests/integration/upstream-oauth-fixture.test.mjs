// The upstream-OAuth fixture (lib/upstream-oauth.mjs) on its own, without the
// gateway: a client runs the authorization code + PKCE flow against the
// upstream's AS (oidc-provider), exchanges the code with either client
// authentication method, calls the OAuth-protected MCP upstream through the
// SDK client, and sees expiry, refresh-token rotation (and reuse detection),
// RFC 7009 revocation and the revocation knobs behave as they will for the
// gateway's Vault tests. One run goes through the login form in chromium.
// ci-variants: build-w1 (the fixture alone: no gateway, nothing to vary)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import crypto from 'node:crypto';
import { chromium } from 'playwright-core';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

import { startUpstreamAS, startOAuthMcpUpstream, hashToken } from './lib/upstream-oauth.mjs';
import { Browser } from './lib/okta.mjs';
import { waitFor } from './lib/gateway.mjs';

const SCOPE = 'openid offline_access tools.read';

// the client's redirect_uri: a tiny server that records ?code&state&iss
let cb;
let redirectUri;
const callbacks = [];
let asBasic; // client_secret_basic
let asPost;  // client_secret_post
let up;      // MCP upstream checking tokens at asBasic

before(async () => {
  cb = http.createServer((req, res) => {
    const u = new URL(req.url, 'http://x');
    if (u.pathname === '/callback') callbacks.push(Object.fromEntries(u.searchParams));
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<!DOCTYPE html><title>callback</title><p id="done">ok</p>');
  });
  await new Promise((r) => cb.listen(0, '127.0.0.1', r));
  redirectUri = `http://127.0.0.1:${cb.address().port}/callback`;
  asBasic = await startUpstreamAS({ redirectUris: [redirectUri], tokenEndpointAuthMethod: 'client_secret_basic' });
  asPost = await startUpstreamAS({ redirectUris: [redirectUri], tokenEndpointAuthMethod: 'client_secret_post', clientId: 'gw-post' });
  up = await startOAuthMcpUpstream({ as: asBasic });
});

after(async () => {
  await up?.close();
  await asBasic?.close();
  await asPost?.close();
  if (cb) { cb.closeAllConnections(); await new Promise((r) => cb.close(r)); }
});

// ------------------------------------------------------------------ client side

function pkce() {
  const verifier = crypto.randomBytes(32).toString('base64url');
  return { verifier, challenge: crypto.createHash('sha256').update(verifier).digest('base64url') };
}

function authorizeUrl(as, { challenge, state, scope = SCOPE, extra = {} }) {
  const u = new URL(as.authorizeUrl);
  u.search = new URLSearchParams({
    response_type: 'code', client_id: as.clientId, redirect_uri: redirectUri, scope, state,
    ...(challenge ? { code_challenge: challenge, code_challenge_method: 'S256' } : {}),
    ...extra,
  }).toString();
  return u.href;
}

const atRedirect = (url) => url.startsWith(redirectUri);

/**
 * The front channel as a browser over fetch: authorize, the login form
 * submitted as `account` (unless the interaction completes by itself),
 * stopped at the redirect_uri. Resolves {code, state, iss, error, sawForm}.
 */
async function authorize(as, account, { browser = new Browser(), challenge, state = crypto.randomBytes(16).toString('base64url'), scope } = {}) {
  let res = await browser.get(authorizeUrl(as, { challenge, state, scope }), { stopAt: atRedirect });
  let sawForm = false;
  if (!res.stopped) {
    assert.equal(res.status, 200, `login page: ${res.status} ${res.url} ${res.text?.slice(0, 200)}`);
    assert.match(res.text, /<input name="login"/);
    sawForm = true;
    res = await browser.submitForm(res, { fields: { login: account }, stopAt: atRedirect });
  }
  assert.ok(res.stopped, `ends at the redirect_uri, not ${res.status} ${res.url}`);
  const q = new URL(res.url).searchParams;
  return { code: q.get('code'), state: q.get('state'), iss: q.get('iss'), error: q.get('error'), sawForm, sentState: state };
}

function clientAuth(as, form) {
  const headers = { 'content-type': 'application/x-www-form-urlencoded' };
  if (as.tokenEndpointAuthMethod === 'client_secret_basic') {
    headers.authorization = `Basic ${Buffer.from(`${encodeURIComponent(as.clientId)}:${encodeURIComponent(as.clientSecret)}`).toString('base64')}`;
  } else {
    form.client_id = as.clientId;
    form.client_secret = as.clientSecret;
  }
  return { headers, body: new URLSearchParams(form) };
}

async function postForm(as, url, form) {
  const r = await fetch(url, { method: 'POST', ...clientAuth(as, form) });
  const text = await r.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: r.status, json, text, headers: r.headers };
}

const exchange = (as, code, verifier) => postForm(as, as.tokenUrl, {
  grant_type: 'authorization_code', code, redirect_uri: redirectUri, code_verifier: verifier,
});
const refresh = (as, refreshToken) => postForm(as, as.tokenUrl, { grant_type: 'refresh_token', refresh_token: refreshToken });
const revoke = (as, token, hint) => postForm(as, as.revocationUrl, { token, ...(hint ? { token_type_hint: hint } : {}) });

/** A full grant for `account`: authorize + exchange. Resolves the token response. */
async function grantFor(as, account) {
  const { verifier, challenge } = pkce();
  const a = await authorize(as, account, { challenge });
  assert.ok(a.code, `a code (error ${a.error})`);
  const t = await exchange(as, a.code, verifier);
  assert.equal(t.status, 200, t.text);
  return t.json;
}

async function mcpWith(token) {
  const client = new Client({ name: 'fixture-test', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(up.url), {
    requestInit: { headers: { authorization: `Bearer ${token}` } },
  });
  await client.connect(transport);
  return client;
}

async function whoami(token) {
  const client = await mcpWith(token);
  try {
    const r = await client.callTool({ name: 'whoami', arguments: {} });
    return JSON.parse(r.content[0].text);
  } finally {
    await client.close();
  }
}

/** A raw initialize POST to the MCP upstream with this Authorization header (or none). */
function rawInitialize(authorization) {
  return fetch(up.url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json', accept: 'application/json, text/event-stream',
      ...(authorization ? { authorization } : {}),
    },
    body: JSON.stringify({
      jsonrpc: '2.0', id: 1, method: 'initialize',
      params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
    }),
  });
}

// ------------------------------------------------------------------ tests

test('authorization code + PKCE S256 with client_secret_basic: login form as alice, state and iss back, tokens for alice', async () => {
  const { verifier, challenge } = pkce();
  const before0 = asBasic.stats();
  const a = await authorize(asBasic, 'alice', { challenge });
  assert.ok(a.sawForm, 'the interaction showed the login form');
  assert.equal(a.state, a.sentState);
  assert.equal(a.iss, asBasic.issuer);
  assert.match(a.code, /^[A-Za-z0-9_-]{20,}$/);

  const t = await exchange(asBasic, a.code, verifier);
  assert.equal(t.status, 200, t.text);
  assert.equal(t.json.token_type, 'Bearer');
  assert.equal(t.json.expires_in, 60);
  assert.ok(t.json.access_token && t.json.refresh_token, 'access and refresh token');
  assert.deepEqual(t.json.scope.split(' ').sort(), ['openid', 'tools.read']);

  const info = await asBasic.introspection(t.json.access_token);
  assert.equal(info.active, true);
  assert.equal(info.sub, 'alice');
  assert.equal(info.client_id, asBasic.clientId);
  assert.equal(await asBasic.introspect(t.json.refresh_token), true);

  const s = asBasic.stats();
  assert.equal(s.token.authorization_code, before0.token.authorization_code + 1);
  assert.deepEqual(s.tokenRequests.at(-1), { grant_type: 'authorization_code', auth: 'basic', status: 200 });
  assert.equal(s.logins.at(-1), 'alice');

  // the code is single-use
  const again = await exchange(asBasic, a.code, verifier);
  assert.equal(again.status, 400);
  assert.equal(again.json.error, 'invalid_grant');
});

test('PKCE is enforced: no code_challenge is refused at the authorization endpoint, a wrong verifier at the token endpoint', async () => {
  const noPkce = await authorize(asBasic, 'alice', {});
  assert.equal(noPkce.code, null);
  assert.equal(noPkce.error, 'invalid_request');

  const { challenge } = pkce();
  const a = await authorize(asBasic, 'alice', { challenge });
  const t = await exchange(asBasic, a.code, pkce().verifier);
  assert.equal(t.status, 400);
  assert.equal(t.json.error, 'invalid_grant');
});

test('client_secret_post: the secret in the body is accepted, Basic is refused (invalid_client)', async () => {
  const { verifier, challenge } = pkce();
  const a = await authorize(asPost, 'alice', { challenge });
  const basicTry = await postForm({ ...asPost, tokenEndpointAuthMethod: 'client_secret_basic' }, asPost.tokenUrl, {
    grant_type: 'authorization_code', code: a.code, redirect_uri: redirectUri, code_verifier: verifier,
  });
  assert.equal(basicTry.status, 401);
  assert.equal(basicTry.json.error, 'invalid_client');
  assert.deepEqual(asPost.stats().tokenRequests.at(-1), { grant_type: 'authorization_code', auth: 'basic', status: 401 });

  const { verifier: v2, challenge: c2 } = pkce();
  const b = await authorize(asPost, 'alice', { challenge: c2 });
  const t = await exchange(asPost, b.code, v2);
  assert.equal(t.status, 200, t.text);
  assert.ok(t.json.refresh_token);
  assert.equal(asPost.stats().tokenRequests.at(-1).auth, 'post');
  assert.equal((await asPost.introspection(t.json.access_token)).sub, 'alice');
});

test('the MCP upstream: whoami through the SDK client answers the token\'s subject and scope; seen() records the token', async () => {
  const t = await grantFor(asBasic, 'alice');
  up.clearSeen();
  const client = await mcpWith(t.access_token);
  const r = await client.callTool({ name: 'whoami', arguments: {} });
  const who = JSON.parse(r.content[0].text);
  assert.equal(who.sub, 'alice');
  assert.deepEqual(who.scope.split(' ').sort(), ['openid', 'tools.read']);
  const e = await client.callTool({ name: 'echo', arguments: { message: 'hi' } });
  assert.equal(e.content[0].text, 'echo: hi');
  await client.close();

  const seen = up.seen().filter((x) => x.method);
  assert.ok(seen.length >= 3, JSON.stringify(seen));
  assert.ok(seen.every((x) => x.sub === 'alice' && x.token === t.access_token));
  assert.deepEqual(seen.map((x) => x.method).filter((m) => m === 'initialize' || m === 'tools/call'),
    ['initialize', 'tools/call', 'tools/call']);

  // a second person's token is theirs, and cannot use alice's session
  const bob = await grantFor(asBasic, 'bob');
  assert.equal((await whoami(bob.access_token)).sub, 'bob');
  const aliceSession = up.sessions().find((s) => s.sub === 'alice').sid;
  const cross = await fetch(up.url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json', accept: 'application/json, text/event-stream',
      authorization: `Bearer ${bob.access_token}`, 'mcp-session-id': aliceSession, 'mcp-protocol-version': '2025-06-18',
    },
    body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/list' }),
  });
  assert.equal(cross.status, 404);
});

test('no token or a bad one: 401 with a Bearer challenge (invalid_token for a bad one) and the RFC 9728 metadata', async () => {
  const none = await rawInitialize();
  assert.equal(none.status, 401);
  const challenge = none.headers.get('www-authenticate');
  assert.match(challenge, /^Bearer /);
  assert.doesNotMatch(challenge, /error=/);
  assert.match(challenge, new RegExp(`resource_metadata="${up.resourceMetadataUrl}"`));

  const bad = await rawInitialize('Bearer not-a-token');
  assert.equal(bad.status, 401);
  assert.match(bad.headers.get('www-authenticate'), /^Bearer error="invalid_token"/);

  const meta = await (await fetch(up.resourceMetadataUrl)).json();
  assert.equal(meta.resource, up.url);
  assert.deepEqual(meta.authorization_servers, [asBasic.issuer]);
  const asMeta = await (await fetch(meta.authorization_servers[0] + '/.well-known/oauth-authorization-server')).json();
  assert.equal(asMeta.issuer, asBasic.issuer);
  assert.equal(asMeta.token_endpoint, asBasic.tokenUrl);
  assert.equal(asMeta.revocation_endpoint, asBasic.revocationUrl);
  assert.equal(asMeta.introspection_endpoint, asBasic.introspectionUrl);
  assert.ok(asMeta.code_challenge_methods_supported.includes('S256'));
});

test('access token expiry: once its TTL passes the MCP upstream answers 401 invalid_token; a refreshed token works again', async () => {
  asBasic.setAccessTokenTTL(2);
  let t;
  try {
    t = await grantFor(asBasic, 'alice');
  } finally {
    asBasic.setAccessTokenTTL(60);
  }
  assert.equal(t.expires_in, 2);
  // wait for the TTL to pass (the AS's own view), then the upstream refuses it
  await waitFor(async () => !(await asBasic.introspect(t.access_token)), { timeoutMs: 5000, intervalMs: 100, what: 'the access token to expire' });
  const r = await rawInitialize(`Bearer ${t.access_token}`);
  assert.equal(r.status, 401);
  assert.match(r.headers.get('www-authenticate'), /error="invalid_token"/);
  await assert.rejects(mcpWith(t.access_token), (e) => e.code === 401);
  assert.equal(up.seen().at(-1).sub, null);

  const n = await refresh(asBasic, t.refresh_token);
  assert.equal(n.status, 200, n.text);
  assert.equal((await whoami(n.json.access_token)).sub, 'alice');
});

test('refresh token rotation: a new pair works, the old refresh token is invalid_grant, and its reuse ends the grant', async () => {
  const t = await grantFor(asBasic, 'alice');
  const before0 = asBasic.stats().token.refresh_token;
  const n = await refresh(asBasic, t.refresh_token);
  assert.equal(n.status, 200, n.text);
  assert.notEqual(n.json.refresh_token, t.refresh_token, 'a new refresh token');
  assert.notEqual(n.json.access_token, t.access_token);
  assert.equal((await whoami(n.json.access_token)).sub, 'alice');
  assert.equal(await asBasic.introspect(t.refresh_token), false, 'the old refresh token is spent');

  const old = await refresh(asBasic, t.refresh_token);
  assert.equal(old.status, 400);
  assert.equal(old.json.error, 'invalid_grant');
  assert.equal(asBasic.stats().token.refresh_token, before0 + 2);
  // oidc-provider treats the reuse as a stolen token: the grant is revoked
  assert.equal(await asBasic.introspect(n.json.refresh_token), false);
  assert.equal(await asBasic.introspect(n.json.access_token), false);
});

test('RFC 7009: revoking the refresh token kills it and its access token; a refresh then fails; revoking the access token ends the grant too', async () => {
  const t = await grantFor(asBasic, 'alice');
  const n0 = asBasic.stats().revocation;
  const r = await revoke(asBasic, t.refresh_token, 'refresh_token');
  assert.equal(r.status, 200, r.text);
  assert.equal(await asBasic.introspect(t.refresh_token), false);
  assert.equal(await asBasic.introspect(t.access_token), false);
  const f = await refresh(asBasic, t.refresh_token);
  assert.equal(f.status, 400);
  assert.equal(f.json.error, 'invalid_grant');
  const s = asBasic.stats();
  assert.equal(s.revocation, n0 + 1);
  assert.deepEqual(s.revoked.at(-1), { hash: hashToken(t.refresh_token), kind: 'refresh_token', hint: 'refresh_token' });

  // revoking an already-dead token still answers 200 (RFC 7009 2.2)
  assert.equal((await revoke(asBasic, t.refresh_token)).status, 200);
  assert.equal(asBasic.stats().revoked.at(-1).kind, 'unknown');

  const u = await grantFor(asBasic, 'alice');
  assert.equal((await revoke(asBasic, u.access_token, 'access_token')).status, 200);
  assert.equal(asBasic.stats().revoked.at(-1).kind, 'access_token');
  assert.equal(await asBasic.introspect(u.access_token), false);
  // oidc-provider ends every token of the grant (RFC 7009 2.1 allows it)
  assert.equal(await asBasic.introspect(u.refresh_token), false);

  // another client (the resource server) may not revoke the gateway's token
  const w = await grantFor(asBasic, 'alice');
  const foreign = await fetch(asBasic.revocationUrl, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: `Basic ${Buffer.from(`${asBasic.rsClientId}:${asBasic.rsClientSecret}`).toString('base64')}`,
    },
    body: new URLSearchParams({ token: w.refresh_token }),
  });
  assert.equal(foreign.status, 400);
  assert.equal((await foreign.json()).error, 'invalid_request');
  assert.equal(await asBasic.introspect(w.refresh_token), true);
});

test('setRevocationStatus(503): revocation answers 503 with Retry-After and revokes nothing; null restores it', async () => {
  const t = await grantFor(asBasic, 'alice');
  const s0 = asBasic.stats();
  asBasic.setRevocationStatus(503);
  try {
    const r = await revoke(asBasic, t.refresh_token);
    assert.equal(r.status, 503);
    assert.equal(r.headers.get('retry-after'), '1');
    assert.equal(r.json.error, 'temporarily_unavailable');
  } finally {
    asBasic.setRevocationStatus(null);
  }
  assert.equal(await asBasic.introspect(t.refresh_token), true);
  let s = asBasic.stats();
  assert.equal(s.revocationAttempts, s0.revocationAttempts + 1);
  assert.equal(s.revocation, s0.revocation);

  assert.equal((await revoke(asBasic, t.refresh_token)).status, 200);
  assert.equal(await asBasic.introspect(t.refresh_token), false);
  s = asBasic.stats();
  assert.equal(s.revocation, s0.revocation + 1);
});

test('setRevocationDelay: the answer is held (the token stays live meanwhile); a caller that hangs up leaves the token unrevoked', async () => {
  const t = await grantFor(asBasic, 'alice');
  const s0 = asBasic.stats();
  asBasic.setRevocationDelay(1500);
  try {
    // held: received, not answered, not yet revoked
    let settled = false;
    const pending = revoke(asBasic, t.refresh_token).finally(() => { settled = true; });
    await waitFor(() => asBasic.stats().revocationAttempts === s0.revocationAttempts + 1, { what: 'the revocation to arrive' });
    assert.equal(await asBasic.introspect(t.refresh_token), true, 'still live while the revocation is held');
    assert.equal(settled, false, 'no answer yet');
    const r = await pending;
    assert.equal(r.status, 200);
    assert.equal(await asBasic.introspect(t.refresh_token), false);

    // a caller that goes away during the delay (a SIGKILLed gateway)
    const u = await grantFor(asBasic, 'alice');
    const ac = new AbortController();
    const gone = fetch(asBasic.revocationUrl, { method: 'POST', signal: ac.signal, ...clientAuth(asBasic, { token: u.refresh_token }) })
      .catch((e) => e);
    await waitFor(() => asBasic.stats().revocationAttempts === s0.revocationAttempts + 2, { what: 'the second revocation to arrive' });
    ac.abort();
    assert.equal((await gone).name, 'AbortError');
    await waitFor(() => asBasic.stats().revocationAborted === s0.revocationAborted + 1, { what: 'the held revocation to be dropped' });
    assert.equal(await asBasic.introspect(u.refresh_token), true, 'not revoked');
    assert.equal(asBasic.stats().revocation, s0.revocation + 1);
  } finally {
    asBasic.setRevocationDelay(0);
  }
});

test('holdRevocations: revocations wait for release() (the token stays live meanwhile); a caller that hangs up is dropped at once', async () => {
  const t = await grantFor(asBasic, 'alice');
  const s0 = asBasic.stats();
  const hold = asBasic.holdRevocations();
  try {
    let settled = false;
    const pending = revoke(asBasic, t.refresh_token).finally(() => { settled = true; });
    await waitFor(() => asBasic.stats().revocationAttempts === s0.revocationAttempts + 1, { what: 'the revocation to arrive' });
    // a caller that goes away while held (a SIGKILLed gateway): dropped
    // without a release
    const u = await grantFor(asBasic, 'alice');
    const ac = new AbortController();
    const gone = fetch(asBasic.revocationUrl, { method: 'POST', signal: ac.signal, ...clientAuth(asBasic, { token: u.refresh_token }) })
      .catch((e) => e);
    await waitFor(() => asBasic.stats().revocationAttempts === s0.revocationAttempts + 2, { what: 'the second revocation to arrive' });
    ac.abort();
    assert.equal((await gone).name, 'AbortError');
    await waitFor(() => asBasic.stats().revocationAborted === s0.revocationAborted + 1, { what: 'the held revocation to be dropped' });
    assert.equal(await asBasic.introspect(u.refresh_token), true, 'the dropped one revoked nothing');
    assert.equal(await asBasic.introspect(t.refresh_token), true, 'still live while the revocation is held');
    assert.equal(settled, false, 'no answer before release()');
    hold.release();
    const r = await pending;
    assert.equal(r.status, 200);
    assert.equal(await asBasic.introspect(t.refresh_token), false);
    // released: the next one is not held
    const w = await grantFor(asBasic, 'alice');
    assert.equal((await revoke(asBasic, w.refresh_token)).status, 200);
    assert.equal(await asBasic.introspect(w.refresh_token), false);
    assert.equal(asBasic.stats().revocation, s0.revocation + 2);
  } finally {
    hold.release();
  }
});

test('loginAs and the upstream_login cookie complete the interaction without a form', async () => {
  const browser = new Browser();
  browser.setCookie(asBasic.issuer, 'upstream_login', 'carol');
  const { verifier, challenge } = pkce();
  const a = await authorize(asBasic, 'nobody', { browser, challenge });
  assert.equal(a.sawForm, false);
  const t = await exchange(asBasic, a.code, verifier);
  assert.equal((await asBasic.introspection(t.json.access_token)).sub, 'carol');

  asBasic.loginAs('dave');
  try {
    const d = await grantFor(asBasic, 'nobody');
    assert.equal((await asBasic.introspection(d.access_token)).sub, 'dave');
  } finally {
    asBasic.loginAs(null);
  }
});

test('chromium: the login form submitted in a real browser lands on the redirect_uri with code and state', async () => {
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
  try {
    const page = await browser.newPage();
    const { verifier, challenge } = pkce();
    const state = crypto.randomBytes(16).toString('base64url');
    const n0 = callbacks.length;
    await page.goto(authorizeUrl(asBasic, { challenge, state }));
    await page.fill('input[name=login]', 'erin');
    await Promise.all([
      page.waitForURL((u) => u.href.startsWith(redirectUri)),
      page.click('button[type=submit]'),
    ]);
    await page.waitForSelector('#done');
    assert.equal(callbacks.length, n0 + 1);
    const got = callbacks.at(-1);
    assert.equal(got.state, state);
    assert.equal(got.iss, asBasic.issuer);
    const t = await exchange(asBasic, got.code, verifier);
    assert.equal(t.status, 200, t.text);
    assert.equal((await whoami(t.json.access_token)).sub, 'erin');
  } finally {
    await browser.close();
  }
});
