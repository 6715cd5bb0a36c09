// ci-variants: build-w1 build-asan-w2 (one loop plain, two loops under ASan; the plain two-loop run only repeated it — CI's 15 minutes)
// The limits of the gateway's OAuth authorization server (issue 17), each
// shown working before it is shown refusing: an authorization code past
// oauth_code_ttl_ms is refused (invalid_grant); a refresh past the tenant's
// signin_max_age_ms after the Okta sign-in is refused with invalid_grant and
// a message that says so (and the same token refreshes again once the
// setting allows it: the age decided, nothing else); the authorization and
// token endpoints past auth_rate_per_address / auth_rate_per_tenant answer
// 429 with Retry-After (the token endpoint in RFC 6749 §5.2's JSON shape),
// while other addresses and tenants go on; registrations past their own
// budget (dcr_rate_per_tenant) are 429 too, and a flood of them leaves the
// sign-in's budget alone; junk token and authorize requests from many
// addresses spend the tenant's budget, but a grant that works and a browser
// signed in to the tenant never take from it and go on once it is empty.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import http from 'node:http';

import { sleep, startGateway } from './lib/gateway.mjs';
import { startLoginFixture, signIn, registerClient } from './lib/login.mjs';
import { grant, pkce } from './lib/oauth.mjs';
import { adminClient, createTenant, operatorToken } from './lib/admin.mjs';

let fx, clientId;
const CB = 'http://127.0.0.1:45123/callback';
const isCb = (u) => u.startsWith('http://127.0.0.1:45123/');
const b64u = (b) => Buffer.from(b).toString('base64url');

before(async () => {
  fx = await startLoginFixture({
    tenants: { acme: { users: [{ userName: 'alice@acme.com', externalId: '00u-alice' }] } },
    accounts: { '00u-alice': { email: 'alice@acme.com' } },
    gatewayArgs: ['--oauth-code-ttl-ms', '3000'],
  });
  clientId = await registerClient(fx, 'acme', 'Limits client');
});

after(async () => { if (fx) await fx.stop(); });

async function token(form, base = fx.base('acme'), localAddress, headers = {}) {
  const body = new URLSearchParams(form).toString();
  const u = new URL(`${base}/oauth/token`);
  return new Promise((resolve, reject) => {
    const r = http.request({
      host: u.hostname, port: u.port, path: u.pathname, method: 'POST', localAddress,
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body), ...headers },
    }, (res) => {
      let text = '';
      res.on('data', (d) => { text += d; });
      res.on('end', () => {
        let json = null;
        try { json = JSON.parse(text); } catch { /* not JSON */ }
        resolve({ status: res.statusCode, headers: res.headers, text, json });
      });
    });
    r.on('error', reject);
    r.end(body);
  });
}

/** authorize → (sign-in, consent) → the code at the client's redirect. */
async function getCode(b) {
  const verifier = b64u(crypto.randomBytes(32));
  const challenge = b64u(crypto.createHash('sha256').update(verifier).digest());
  const q = new URLSearchParams({
    response_type: 'code', client_id: clientId, redirect_uri: CB, state: 's', code_challenge: challenge,
    code_challenge_method: 'S256', resource: `${fx.gw.url}/t/acme/mcp`,
  });
  let res = await signIn(b, `${fx.base('acme')}/oauth/authorize?${q}`, { login: '00u-alice', stopAtCallback: isCb });
  if (!res.stopped && /oauth\/consent/.test(res.text ?? '')) res = await b.submitForm(res, { fields: { decision: 'allow' }, stopAt: isCb });
  assert.equal(res.stopped, true, `authorize ended at the client's redirect: ${res.status} ${res.text?.slice(0, 200)}`);
  const code = new URL(res.url).searchParams.get('code');
  if (!/^mgc_/.test(code ?? '')) {
    const said = fx.gw.logs().filter((e) => e.module === 'oauth' || e.level !== 'info').slice(-6).map((e) => JSON.stringify(e));
    assert.fail(`the redirect carries no code: ${res.url}\nthe gateway's last words:\n${said.join('\n')}`);
  }
  return { code, verifier };
}

const exchange = ({ code, verifier }) => token({ grant_type: 'authorization_code', code, redirect_uri: CB, client_id: clientId, code_verifier: verifier });
const refresh = (rt) => token({ grant_type: 'refresh_token', refresh_token: rt, client_id: clientId });

test('an authorization code older than oauth_code_ttl_ms is refused with invalid_grant', async () => {
  const b = fx.browser();
  const fresh = await getCode(b);
  const ok = await exchange(fresh);
  assert.equal(ok.status, 200, `a fresh code is exchanged: ${ok.text}`);
  const stale = await getCode(b);
  await sleep(3200); // oauth_code_ttl_ms is 3000
  const r = await exchange(stale);
  assert.equal(r.status, 400, r.text);
  assert.equal(r.json.error, 'invalid_grant');
  assert.match(r.json.error_description, /expired/);
  assert.equal(r.headers['cache-control'], 'no-store');
});

test('a refresh past the tenant\'s signin_max_age_ms is refused with invalid_grant and says why; before, it works', async () => {
  const b = fx.browser();
  const t = await exchange(await getCode(b));
  assert.equal(t.status, 200, t.text);
  const r1 = await refresh(t.json.refresh_token);
  assert.equal(r1.status, 200, `within the sign-in age a refresh works: ${r1.text}`);
  await fx.t.acme.setSettings({ signin_max_age_ms: 1000 });
  await sleep(1100); // the sign-in (unix seconds) is now older than 1 s
  const old = await refresh(r1.json.refresh_token);
  assert.equal(old.status, 400, old.text);
  assert.equal(old.json.error, 'invalid_grant');
  assert.match(old.json.error_description, /sign-in .*older than .*signin_max_age_ms/);
  assert.match(old.json.error_description, /sign in again/);
  assert.doesNotMatch(old.text, /mgr_|mgo_/, 'no token in the error');
  // the refusal spent nothing: with the default age back, the same token refreshes
  await fx.t.acme.setSettings({ signin_max_age_ms: null });
  const again = await refresh(r1.json.refresh_token);
  assert.equal(again.status, 200, `the age alone refused it: ${again.text}`);
});

test('rate limits on authorize and token: 429 with Retry-After past the burst; other addresses and tenants go on', async () => {
  const gw = await startGateway({ args: ['--auth-rate-per-address', '2', '--auth-rate-per-tenant', '6'] });
  try {
    const op = adminClient(gw.port, operatorToken(gw.dataDir));
    await createTenant(gw.port, op.token, 'acme');
    await createTenant(gw.port, op.token, 'beta');
    const authz = (from) => new Promise((resolve, reject) => {
      const q = 'response_type=code&client_id=mcpc_unknown&redirect_uri=http%3A%2F%2F127.0.0.1%2Fcb';
      http.get({ host: '127.0.0.1', port: gw.port, path: `/t/acme/oauth/authorize?${q}`, localAddress: from }, (res) => {
        let text = '';
        res.on('data', (d) => { text += d; });
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, text }));
      }).on('error', reject);
    });
    const base = (t) => `${gw.url}/t/${t}`;
    // authorize: two answered (an unknown client: its page), the third refused; another address answered
    for (let i = 0; i < 2; i++) assert.equal((await authz('127.0.0.1')).status, 400);
    const a = await authz('127.0.0.1');
    assert.equal(a.status, 429);
    assert.match(a.headers['retry-after'] ?? '', /^[1-9][0-9]*$/);
    assert.ok(Number(a.headers['retry-after']) <= 60);
    assert.equal((await authz('127.0.0.2')).status, 400, 'another address has its own bucket');
    // token: the same per address, refused in RFC 6749 §5.2's JSON
    for (let i = 0; i < 2; i++) assert.equal((await token({ grant_type: 'refresh_token' }, base('acme'), '127.0.0.3')).status, 400);
    const t = await token({ grant_type: 'refresh_token' }, base('acme'), '127.0.0.3');
    assert.equal(t.status, 429, t.text);
    assert.match(t.headers['retry-after'] ?? '', /^[1-9][0-9]*$/);
    assert.match(t.headers['content-type'], /^application\/json/);
    assert.equal(t.headers['cache-control'], 'no-store');
    assert.equal(typeof t.json?.error, 'string');
    assert.equal(typeof t.json?.error_description, 'string');
    // the tenant's bucket: 5 of 6 spent by these requests, none of which works (an unknown client, a
    // refresh without a token); one more from a fresh address, then it is empty for every address's
    // junk — not for a grant that works, which never takes from it (the tests below)
    assert.equal((await token({ grant_type: 'refresh_token' }, base('acme'), '127.0.0.4')).status, 400);
    const full = await token({ grant_type: 'refresh_token' }, base('acme'), '127.0.0.5');
    assert.equal(full.status, 429, 'acme\'s tenant bucket is empty for junk');
    assert.match(full.headers['retry-after'] ?? '', /^[1-9][0-9]*$/);
    assert.equal((await token({ grant_type: 'refresh_token' }, base('beta'), '127.0.0.5')).status, 400, 'beta has its own');
  } finally {
    await gw.stop();
  }
});

// Found by review: registration took its tokens from the sign-in's tenant
// bucket, so a flood of registrations (anyone may send them, from as many
// addresses as they have: the per-address limit is lifted here to stand for
// that) spent auth_rate_per_tenant and held off the employees' authorize,
// login and token requests. Registrations have their own budget now
// (dcr_rate_per_tenant, default 300 a minute).
test('a flood of registrations spends its own budget (dcr_rate_per_tenant), not the sign-in\'s', async () => {
  const gw = await startGateway({ args: ['--auth-rate-per-address', '0', '--auth-rate-per-tenant', '6'] });
  try {
    const op = adminClient(gw.port, operatorToken(gw.dataDir));
    await createTenant(gw.port, op.token, 'acme');
    const register = () => fetch(`${gw.url}/t/acme/oauth/register`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}', // refused after the limit: nothing stored
    });
    let n = 0, last;
    for (; n < 1000; n++) {
      last = await register();
      await last.arrayBuffer();
      if (last.status === 429) break;
    }
    assert.equal(last.status, 429, 'the registrations ran out of budget');
    assert.match(last.headers.get('retry-after') ?? '', /^[1-9][0-9]*$/);
    // the employees' sign-in is untouched: authorize answers (an unknown client: its page), token answers
    const authz = await fetch(`${gw.url}/t/acme/oauth/authorize?response_type=code&client_id=mcpc_unknown`, { redirect: 'manual' });
    await authz.arrayBuffer();
    assert.equal(authz.status, 400, `authorize after ${n} registrations`);
    const tk = await token({ grant_type: 'refresh_token' }, `${gw.url}/t/acme`);
    assert.equal(tk.status, 400, `token after ${n} registrations: ${tk.text}`);
    assert.ok(n >= 300, `the registrations' own budget (300 a minute): ${n} answered before the 429`);
    // the sign-in's own budget still holds: 2 of 6 used, 4 more, then 429
    for (let i = 0; i < 4; i++) await token({ grant_type: 'refresh_token' }, `${gw.url}/t/acme`);
    assert.equal((await token({ grant_type: 'refresh_token' }, `${gw.url}/t/acme`)).status, 429);
  } finally {
    await gw.stop();
  }
});

test('dcr_rate_per_tenant: registrations past it are 429 with Retry-After; another tenant registers', async () => {
  const gw = await startGateway({ args: ['--auth-rate-per-address', '0', '--dcr-rate-per-tenant', '3'] });
  try {
    const op = adminClient(gw.port, operatorToken(gw.dataDir));
    await createTenant(gw.port, op.token, 'acme');
    await createTenant(gw.port, op.token, 'beta');
    const register = async (t) => {
      const r = await fetch(`${gw.url}/t/${t}/oauth/register`, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ client_name: 'Flood', redirect_uris: ['http://127.0.0.1/cb'] }),
      });
      return { status: r.status, retry: r.headers.get('retry-after'), json: await r.json() };
    };
    for (let i = 0; i < 3; i++) assert.equal((await register('acme')).status, 201);
    const r = await register('acme');
    assert.equal(r.status, 429);
    assert.equal(r.json.error, 'rate_limited');
    assert.match(r.retry ?? '', /^[1-9][0-9]*$/);
    assert.equal((await register('beta')).status, 201, 'beta has its own budget');
    const m = await fetch(`${gw.url}/t/acme/oauth/authorize?response_type=code&client_id=mcpc_unknown`, { redirect: 'manual' });
    await m.arrayBuffer();
    assert.equal(m.status, 400, 'acme\'s sign-in goes on');
  } finally {
    await gw.stop();
  }
});

// Found by review: the token endpoint took from the tenant's bucket
// (auth_rate_per_tenant) for every request, so junk sent from many
// addresses (codes and refresh tokens that are none: anyone can send them)
// spent it, and every MCP client's refresh of the tenant was answered 429 —
// once their access tokens expired, every agent of the tenant was cut off.
// A grant that works is now checked first and never takes from it; junk
// still does, and is refused once it is empty. The same for authorize: a
// browser signed in to the tenant does not take from it. The gateway here
// sits behind a trusted proxy (127.0.0.1), so each X-Forwarded-For is a
// client address of its own: "many addresses" are many values of it, with
// the per-address bucket on (30 a minute) and the tenant's at 6.
let fxDrain;
after(async () => { if (fxDrain) await fxDrain.stop(); });

async function drainFixture() {
  fxDrain ??= await startLoginFixture({
    tenants: {
      acme: { users: [{ userName: 'alice@acme.com', externalId: '00u-alice' }] },
      beta: { users: [{ userName: 'bob@beta.com', externalId: '00u-bob' }] },
      gamma: { users: [{ userName: 'carol@gamma.com', externalId: '00u-carol' }] },
    },
    accounts: { '00u-alice': { email: 'alice@acme.com' }, '00u-bob': { email: 'bob@beta.com' }, '00u-carol': { email: 'carol@gamma.com' } },
    gatewayArgs: ['--auth-rate-per-address', '30', '--auth-rate-per-tenant', '6', '--trusted-proxies', '127.0.0.1/32',
      '--refresh-reuse-grace-ms', '0'],
  });
  return fxDrain;
}

let addrs = 0;
const addr = () => { addrs++; return `10.7.${addrs >> 8}.${addrs & 255}`; };
const from = (a) => ({ 'x-forwarded-for': a });

/** The signed-in browser's authorize for client: {res, code, verifier} (code null when it did not come straight back). */
async function codeWith(f, b, tenant, client) {
  const { verifier, challenge } = pkce();
  const q = new URLSearchParams({
    response_type: 'code', client_id: client, redirect_uri: CB, state: 's', code_challenge: challenge,
    code_challenge_method: 'S256', resource: `${f.gw.url}/t/${tenant}/mcp`,
  });
  const res = await b.get(`${f.base(tenant)}/oauth/authorize?${q}`, { stopAt: isCb });
  return { res, verifier, code: res.stopped ? new URL(res.url).searchParams.get('code') : null };
}

/** codeWith, the browser's request sent with extra headers (an X-Forwarded-For). */
async function codeFrom(f, b, tenant, client, headers) {
  const { verifier, challenge } = pkce();
  const q = new URLSearchParams({
    response_type: 'code', client_id: client, redirect_uri: CB, state: 's', code_challenge: challenge,
    code_challenge_method: 'S256', resource: `${f.gw.url}/t/${tenant}/mcp`,
  });
  const res = await b.get(`${f.base(tenant)}/oauth/authorize?${q}`, { stopAt: isCb, headers });
  return { res, verifier, code: res.stopped ? new URL(res.url).searchParams.get('code') : null };
}

/** Sends junk (one request a call) until the tenant's bucket refuses it: the 429. */
async function drain(send, junkStatus) {
  for (let n = 0; n < 50; n++) {
    const r = await send(addr());
    if (r.status === 429) return r;
    assert.equal(r.status, junkStatus, `junk #${n}: ${r.status} ${r.text?.slice(0, 200)}`);
  }
  assert.fail('50 junk requests from 50 addresses were all answered: no tenant budget');
}

test('junk token requests from many addresses spend the tenant\'s budget; a refresh or code exchange that works still goes through', async () => {
  const f = await drainFixture();
  const base = f.base('acme');
  const b = f.browser();
  const g = await grant(f, b, { tenant: 'acme', login: '00u-alice', redirect: CB });
  const c2 = await codeWith(f, b, 'acme', g.client_id); // consent given, loopback: straight back
  assert.ok(c2.code, `a second code: ${c2.res.status} ${c2.res.text?.slice(0, 200)}`);
  const junk = (a) => token({
    grant_type: 'refresh_token', refresh_token: `mgr_${crypto.randomBytes(32).toString('base64url')}`, client_id: g.client_id,
  }, base, undefined, from(a));
  const full = await drain(junk, 400);
  assert.equal(full.json?.error, 'rate_limited', full.text);
  assert.match(full.headers['retry-after'] ?? '', /^[1-9][0-9]*$/);
  // the MCP client's refresh: before, 429 like the junk (one bucket held both)
  const r1 = await token({ grant_type: 'refresh_token', refresh_token: g.refresh_token, client_id: g.client_id }, base);
  assert.equal(r1.status, 200, `a refresh that works, after the junk: ${r1.text}`);
  assert.match(r1.json.access_token, /^mgo_/);
  const x2 = await token({ grant_type: 'authorization_code', code: c2.code, redirect_uri: CB, client_id: g.client_id, code_verifier: c2.verifier }, base);
  assert.equal(x2.status, 200, `a code exchange that works, after the junk: ${x2.text}`);
  // a rotated refresh token that comes back is no junk either: its grant is revoked, bucket empty or not
  // (refresh_reuse_grace_ms is 0 here); the grant's newest token then is junk
  const reuse = await token({ grant_type: 'refresh_token', refresh_token: g.refresh_token, client_id: g.client_id }, base);
  assert.equal(reuse.status, 400, reuse.text);
  assert.match(reuse.json.error_description, /already used/);
  const gone = await token({ grant_type: 'refresh_token', refresh_token: r1.json.refresh_token, client_id: g.client_id }, base);
  assert.notEqual(gone.status, 200, `the grant was revoked: ${gone.text}`);
  // junk is still refused (of two, at least one: a token comes back every 10 s)
  const again = [await junk(addr()), await junk(addr())];
  assert.ok(again.some((r) => r.status === 429), `junk after the drain: ${again.map((r) => r.status)}`);
  // one address still cannot pass its own budget (30 a minute), with a grant that works neither
  const one = addr();
  let rt = x2.json.refresh_token, last;
  for (let n = 0; n < 100; n++) {
    last = await token({ grant_type: 'refresh_token', refresh_token: rt, client_id: g.client_id }, base, undefined, from(one));
    if (last.status !== 200) break;
    rt = last.json.refresh_token;
  }
  assert.equal(last.status, 429, `one address's refreshes end at its own budget: ${last.text}`);
  assert.equal(last.json.error, 'rate_limited');
  const mine = await token({ grant_type: 'refresh_token', refresh_token: rt, client_id: g.client_id }, base);
  assert.equal(mine.status, 200, `the same token from the client's own address: ${mine.text}`);
});

test('junk authorize requests from many addresses spend the tenant\'s budget; an employee signed in still gets the code', async () => {
  const f = await drainFixture();
  const b = f.browser();
  const g = await grant(f, b, { tenant: 'beta', login: '00u-bob', redirect: CB });
  const junk = (a) => new Promise((resolve, reject) => {
    const q = 'response_type=code&client_id=mcpc_unknown&redirect_uri=http%3A%2F%2F127.0.0.1%2Fcb';
    http.get({ host: '127.0.0.1', port: f.gw.port, path: `/t/beta/oauth/authorize?${q}`, headers: from(a) }, (res) => {
      let text = '';
      res.on('data', (d) => { text += d; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, text }));
    }).on('error', reject);
  });
  const full = await drain(junk, 400); // an unknown client: its page
  assert.match(full.headers['retry-after'] ?? '', /^[1-9][0-9]*$/);
  // the signed-in employee's browser: before, the 429 page
  const mine = await codeWith(f, b, 'beta', g.client_id);
  assert.ok(mine.code, `the signed-in employee's authorize, after the junk: ${mine.res.status} ${mine.res.text?.slice(0, 200)}`);
  const x = await token({ grant_type: 'authorization_code', code: mine.code, redirect_uri: CB, client_id: g.client_id, code_verifier: mine.verifier }, f.base('beta'));
  assert.equal(x.status, 200, x.text);
  // junk is still refused, and so is a browser that is not signed in (its sign-in shares the bucket anyway)
  const again = [await junk(addr()), await junk(addr())];
  assert.ok(again.some((r) => r.status === 429), `junk after the drain: ${again.map((r) => r.status)}`);
  const strangers = [await codeWith(f, f.browser(), 'beta', g.client_id), await codeWith(f, f.browser(), 'beta', g.client_id)];
  assert.ok(strangers.some((s) => s.res.status === 429), `not signed in: ${strangers.map((s) => s.res.status)}`);
});

// The same for an employee's connect page (/t/{t}/connect/{connector} and
// its callback): it needs a signed-in browser, and junk that spent the
// tenant's budget answered the signed-in employee 429 there. A browser
// signed in to the tenant does not take from it (as at authorize).
test('junk from many addresses spends the tenant\'s budget; a signed-in employee\'s connect page still answers', async () => {
  const f = await drainFixture();
  const b = f.browser();
  const s = await signIn(b, `${f.base('gamma')}/login`, { login: '00u-carol' });
  assert.equal(s.status, 200, `carol signed in: ${s.status}`);
  const junk = (a) => new Promise((resolve, reject) => {
    const q = 'response_type=code&client_id=mcpc_unknown&redirect_uri=http%3A%2F%2F127.0.0.1%2Fcb';
    http.get({ host: '127.0.0.1', port: f.gw.port, path: `/t/gamma/oauth/authorize?${q}`, headers: from(a) }, (res) => {
      let text = '';
      res.on('data', (d) => { text += d; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, text }));
    }).on('error', reject);
  });
  await drain(junk, 400);
  // no such connector: the page says so (before: the 429 page)
  const mine = await b.get(`${f.base('gamma')}/connect/nope`);
  assert.equal(mine.status, 404, `the signed-in employee's connect page, after the junk: ${mine.status} ${mine.text?.slice(0, 200)}`);
  // a browser that is not signed in still takes from the spent budget
  const stranger = await f.browser().get(`${f.base('gamma')}/connect/nope`);
  assert.equal(stranger.status, 429, `not signed in: ${stranger.status}`);
});

// A browser signed in to the tenant skips the tenant's bucket at authorize,
// and each of its requests there writes a code (a writer job): one session
// cookie sent from as many addresses as its holder has must not be a flood
// bounded by nothing but the addresses. The person's requests take from a
// bucket of their own at the address's rate (auth_rate_per_address, 30 here),
// whatever address they come from.
let fxPerson;
after(async () => { if (fxPerson) await fxPerson.stop(); });

test('one signed-in browser from many addresses: its authorize requests end at the person\'s own budget', async () => {
  // a gateway of its own: the drain tests spent 127.0.0.1's budget
  const f = fxPerson = await startLoginFixture({
    tenants: { delta: { users: [{ userName: 'dave@delta.com', externalId: '00u-dave' }] } },
    accounts: { '00u-dave': { email: 'dave@delta.com' } },
    gatewayArgs: ['--auth-rate-per-address', '30', '--auth-rate-per-tenant', '6', '--trusted-proxies', '127.0.0.1/32'],
  });
  const b = f.browser();
  const g = await grant(f, b, { tenant: 'delta', login: '00u-dave', redirect: CB });
  let last, n = 0;
  for (; n < 60; n++) {
    last = await codeFrom(f, b, 'delta', g.client_id, from(addr()));
    if (!last.code) break;
  }
  assert.equal(last.code, null, `${n + 1} authorize requests of one session from as many addresses all got a code`);
  assert.equal(last.res.status, 429, `authorize #${n}: ${last.res.status} ${last.res.text?.slice(0, 200)}`);
  assert.ok(n >= 20 && n <= 31, `codes before the 429: ${n}`);
});

// A refresh token that works skips the tenant's bucket, and so does the one
// just rotated, within refresh_reuse_grace_ms (the same successor pair
// again: a writer job each). Its holder, sending it from as many addresses as
// they have, must not get a stream of writer jobs bounded by nothing but the
// addresses: a token's requests that work take from a bucket of that token,
// at the address's rate (30 here), whatever address they come from.
let fxGrace;
after(async () => { if (fxGrace) await fxGrace.stop(); });

/** A gateway of its own (the drain tests spent 127.0.0.1's budget), shared with the revocation test below. */
async function graceFixture() {
  fxGrace ??= await startLoginFixture({
    tenants: { eps: { users: [{ userName: 'erin@eps.com', externalId: '00u-erin' }] } },
    accounts: { '00u-erin': { email: 'erin@eps.com' } },
    gatewayArgs: ['--auth-rate-per-address', '30', '--auth-rate-per-tenant', '6', '--trusted-proxies', '127.0.0.1/32',
      '--refresh-reuse-grace-ms', '300000'],
  });
  return fxGrace;
}

test('one refresh token replayed within its grace window from many addresses ends at the token\'s own budget', async () => {
  const f = await graceFixture();
  const base = f.base('eps');
  const g = await grant(f, f.browser(), { tenant: 'eps', login: '00u-erin', redirect: CB });
  const form = { grant_type: 'refresh_token', refresh_token: g.refresh_token, client_id: g.client_id };
  const first = await token(form, base, undefined, from(addr()));
  assert.equal(first.status, 200, first.text);
  let last, n = 0;
  for (; n < 60; n++) {
    last = await token(form, base, undefined, from(addr()));
    if (last.status !== 200) break;
    assert.equal(last.json.refresh_token, first.json.refresh_token, 'within the window: the same successor pair');
  }
  assert.notEqual(last.status, 200, `${n} replays of one refresh token from as many addresses all answered 200`);
  assert.equal(last.status, 429, last.text);
  assert.equal(last.json.error, 'rate_limited');
  // the successor, a token of its own, still works
  const next = await token({ ...form, refresh_token: first.json.refresh_token }, base, undefined, from(addr()));
  assert.equal(next.status, 200, next.text);
});

// /oauth/revoke takes no credential (RFC 7009 §2.1 for a public client):
// before this test's fix nothing bounded it — 50 junk revocations from 50
// addresses were all answered, each a hash and a store read. Junk now
// spends the address's and the tenant's budget like the token endpoint's
// junk; a revocation that revokes a token spends neither (only that
// token's own bucket), so a real client revokes its token after a flood,
// even from an address the flood drained.
function revoke(base, form, headers = {}) {
  return fetch(`${base}/oauth/revoke`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams(form).toString() }).then(async (r) => ({ status: r.status, text: await r.text(), headers: r.headers }));
}

test('junk revocations from many addresses and from one end at 429; a client still revokes its own token', async () => {
  const f = await graceFixture();
  const base = f.base('eps');
  const g = await grant(f, f.browser(), { tenant: 'eps', login: '00u-erin', redirect: CB });
  const junk = (a) => revoke(base, { token: `mgo_${crypto.randomBytes(32).toString('base64url')}`, client_id: g.client_id }, from(a));
  const full = await drain(junk, 200);
  assert.equal(JSON.parse(full.text).error, 'rate_limited', full.text);
  assert.match(full.headers.get('retry-after') ?? '', /^[1-9][0-9]*$/);
  // one address's own budget (30 a minute): drained too
  const one = addr();
  let n = 0;
  for (; n < 40 && (await junk(one)).status !== 429; n++);
  const stillJunk = await junk(one);
  assert.equal(stillJunk.status, 429, 'that address is refused');
  // the client's revocation of its own refresh token, from that very address: its whole grant goes
  const mine = await revoke(base, { token: g.refresh_token, token_type_hint: 'refresh_token', client_id: g.client_id }, from(one));
  assert.equal(mine.status, 200, mine.text);
  const left = await f.t.eps.admin('GET', `/users/${encodeURIComponent('erin@eps.com')}/grants`);
  assert.equal(left.status, 200, left.body);
  assert.ok(!left.json.grants.some((x) => x.client_id === g.client_id), `the grant was revoked: ${left.body}`);
  // now junk itself: refused like any other
  assert.equal((await revoke(base, { token: g.access_token, client_id: g.client_id }, from(one))).status, 429);
});
