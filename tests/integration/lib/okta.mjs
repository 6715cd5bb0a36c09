// tests/integration/lib/okta.mjs — a stand-in for a tenant's Okta org, and a
// scripted browser to sign in through it, for the OIDC-login tests.
//
// What is real: the OpenID provider. startOkta() runs oidc-provider (a
// certified OP) in-process on its own 127.0.0.1 HTTP server, with signing
// keys, one confidential client and accounts set by the test. Endpoints sit
// at Okta's org authorization server paths (/oauth2/v1/authorize, /token,
// /keys, /userinfo, /logout), so a relying party must find them through
// discovery like it would against Okta.
//
// What is in front of it: a small HTTP "front" server whose URL is the
// issuer. It forwards every request to the provider unchanged (method, path,
// headers, body; status, headers and body back) and logs it in
// okta.requests as {method, path (no query), url (with it), headers, body},
// so tests can count and inspect what the gateway asked for (e.g. JWKS
// refetches, the token request's Basic auth and code_verifier). It alters a
// 200 JSON reply only when a test sets a hook (sync or async) in okta.tamper:
//   - tamper.idToken(claims, header) -> {claims, header, key?} | {token}:
//                       the id_token of a token-endpoint reply is decoded,
//                       handed to the hook, and re-signed with the current
//                       key, or with `key` (a private JWK: a foreign key
//                       under a known kid, an oct key for HS256), or replaced
//                       by `token` verbatim (garbage, alg none, ...);
//   - tamper.discovery(doc) -> doc: rewrites /.well-known/openid-configuration;
//   - tamper.jwks(doc) -> doc:      rewrites the JWKS reply.
// These exist because the provider itself, being correct, never produces the
// broken answers the negative tests need. With every hook null the front
// server is transparent.
//
// The front server also lets the provider be rebuilt behind a stable issuer:
// oidc-provider fixes its keystore and claim names at construction, so
// rotateKeys() (and setAccount() with a claim name never seen before) build a
// new Provider instance on the same inner server. Sessions, grants and codes
// live in a store shared by all instances and the cookie keys are kept, so a
// browser's provider session survives a rotation, as it would at Okta.
//
// Sign-in uses oidc-provider's devInteractions pages: a login form (any
// password; login = the account's sub) and a consent form. Consent is
// auto-granted by default (Okta does not prompt for first-party org apps);
// set opts.autoConsent = false (or okta.autoConsent = false at runtime) to
// get the consent page, which signIn() submits when it appears. A login the
// accounts do not have (or deleteAccount() of a signed-in one) brings the
// login page back, as a failed Okta sign-in would.
//
// Browser: a cookie jar per origin over global fetch (redirect: 'manual').
import http from 'node:http';
import crypto from 'node:crypto';
import { nextRsaPrivateKey } from './keys.mjs';

// oidc-provider warns on import that node 20 is not a supported runtime (it
// works) and, when built, that devInteractions are enabled (they are the
// point here). Those two lines, and only those, are dropped.
const EXPECTED_NOTICES = [/Unsupported runtime/, /development-only feature devInteractions/];

function quietly(fn) {
  const saved = { warn: console.warn, info: console.info };
  const filter = (orig) => (...args) => {
    if (typeof args[0] === 'string' && EXPECTED_NOTICES.some((re) => re.test(args[0]))) return;
    orig.apply(console, args);
  };
  console.warn = filter(saved.warn);
  console.info = filter(saved.info);
  const restore = () => { console.warn = saved.warn; console.info = saved.info; };
  try {
    const out = fn();
    if (out && typeof out.then === 'function') return out.finally(restore);
    restore();
    return out;
  } catch (e) {
    restore();
    throw e;
  }
}

// imported by startOkta, on first use: ~0.45 s of CPU that a file which
// never starts the provider (many import this module for its helpers) skips
let Provider, interactionPolicy;
async function loadProvider() {
  if (!Provider) ({ default: Provider, interactionPolicy } = await quietly(() => import('oidc-provider')));
}

// The login prompt, plus: prompt again when the session's account is gone
// (an unknown login submitted on the dev login page, or deleteAccount()).
// Without it the provider answers such a session with a server_error.
function interactionsPolicy() {
  const policy = interactionPolicy.base();
  policy.get('login').checks.add(new interactionPolicy.Check(
    'account_gone', 'the signed-in account no longer exists',
    (ctx) => (ctx.oidc.session.accountId && !ctx.oidc.account
      ? interactionPolicy.Check.REQUEST_PROMPT : interactionPolicy.Check.NO_NEED_TO_PROMPT),
  ));
  return policy;
}

// Okta's org authorization server layout.
export const OKTA_PATHS = {
  discovery: '/.well-known/openid-configuration',
  authorization: '/oauth2/v1/authorize',
  token: '/oauth2/v1/token',
  jwks: '/oauth2/v1/keys',
  userinfo: '/oauth2/v1/userinfo',
  end_session: '/oauth2/v1/logout',
  pushed_authorization_request: '/oauth2/v1/par',
};

const EMAIL_CLAIMS = ['email', 'email_verified'];
const PROFILE_CLAIMS = [
  'name', 'family_name', 'given_name', 'middle_name', 'nickname', 'preferred_username',
  'profile', 'picture', 'website', 'gender', 'birthdate', 'zoneinfo', 'locale', 'updated_at',
];
const SCOPED = new Set(['sub', ...EMAIL_CLAIMS, ...PROFILE_CLAIMS]);

// ------------------------------------------------------------------ JOSE bits

const b64url = (buf) => Buffer.from(buf).toString('base64url');

/** Splits a compact JWS into {header, claims, signature (Buffer), signingInput}. */
export function decodeJwt(token) {
  const parts = String(token).split('.');
  if (parts.length !== 3) throw new Error(`not a compact JWS (${parts.length} parts)`);
  return {
    header: JSON.parse(Buffer.from(parts[0], 'base64url').toString('utf8')),
    claims: JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8')),
    signature: Buffer.from(parts[2], 'base64url'),
    signingInput: `${parts[0]}.${parts[1]}`,
  };
}

/**
 * Signs claims as a compact JWS with header.alg: RS256 / ES256 with a private
 * JWK (ES256 in JOSE r||s form), HS256 with an {kty: 'oct', k} JWK, or 'none'.
 */
export function signJwt(claims, header, jwk) {
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
  const data = Buffer.from(input);
  let sig;
  switch (header.alg) {
    case 'none':
      sig = Buffer.alloc(0);
      break;
    case 'HS256':
      sig = crypto.createHmac('sha256', Buffer.from(jwk.k, 'base64url')).update(data).digest();
      break;
    case 'RS256':
      sig = crypto.sign('sha256', data, crypto.createPrivateKey({ key: jwk, format: 'jwk' }));
      break;
    case 'ES256':
      sig = crypto.sign('sha256', data, {
        key: crypto.createPrivateKey({ key: jwk, format: 'jwk' }), dsaEncoding: 'ieee-p1363',
      });
      break;
    default:
      throw new Error(`signJwt: unsupported alg ${header.alg}`);
  }
  return `${input}.${b64url(sig)}`;
}

/** A fresh private signing JWK (RS256: RSA 2048 from lib/keys.mjs, distinct from every other of this process; ES256: P-256) with a new kid. */
export function generateSigningJwk(alg = 'RS256') {
  let pair;
  if (alg === 'RS256') pair = { privateKey: nextRsaPrivateKey() };
  else if (alg === 'ES256') pair = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  else throw new Error(`unsupported alg ${alg}`);
  const jwk = pair.privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: `k-${crypto.randomBytes(6).toString('hex')}`, alg, use: 'sig' };
}

/** The public half of a private JWK (kty, kid, alg, use and the public members). */
export function publicJwk(jwk) {
  const pub = crypto.createPublicKey({ key: jwk, format: 'jwk' }).export({ format: 'jwk' });
  return { ...pub, kid: jwk.kid, alg: jwk.alg, use: jwk.use };
}

// ------------------------------------------------------------------ provider storage

// oidc-provider's storage adapter over one Map, shared by every Provider
// instance of a harness (so a rebuild keeps sessions, grants and codes).
function sharedAdapter(entries) {
  const live = (key) => {
    const e = entries.get(key);
    if (!e) return undefined;
    if (e.expiresAt && e.expiresAt <= Date.now()) { entries.delete(key); return undefined; }
    return e.payload;
  };
  const findBy = (model, field, value) => {
    for (const key of entries.keys()) {
      if (!key.startsWith(`${model}:`)) continue;
      const p = live(key);
      if (p && p[field] === value) return p;
    }
    return undefined;
  };
  return (model) => ({
    async upsert(id, payload, expiresIn) {
      entries.set(`${model}:${id}`, { payload, expiresAt: expiresIn ? Date.now() + expiresIn * 1000 : 0 });
    },
    async find(id) { return live(`${model}:${id}`); },
    async findByUid(uid) { return findBy(model, 'uid', uid); },
    async findByUserCode(userCode) { return findBy(model, 'userCode', userCode); },
    async consume(id) {
      const p = live(`${model}:${id}`);
      if (p) p.consumed = Math.floor(Date.now() / 1000);
    },
    async destroy(id) { entries.delete(`${model}:${id}`); },
    async revokeByGrantId(grantId) {
      for (const [key, e] of entries) if (e.payload?.grantId === grantId) entries.delete(key);
    },
  });
}

const htmlEscape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

// ------------------------------------------------------------------ the Okta stand-in

/**
 * Starts the provider and its front server. Options:
 *   redirectUris (required), clientId ('mcpgate-test'), clientSecret (random),
 *   postLogoutRedirectUris ([]), accounts ({sub: claims}), alg ('RS256' | 'ES256'),
 *   autoConsent (true).
 */
export async function startOkta(opts = {}) {
  const {
    clientId = 'mcpgate-test',
    clientSecret = crypto.randomBytes(24).toString('base64url'),
    redirectUris,
    postLogoutRedirectUris = [],
    accounts: initialAccounts = {},
    alg = 'RS256',
  } = opts;
  if (!Array.isArray(redirectUris) || redirectUris.length === 0) {
    throw new Error('startOkta: opts.redirectUris (array) is required');
  }
  await loadProvider();

  const accounts = new Map(Object.entries(initialAccounts).map(([sub, c]) => [sub, { ...c }]));
  const store = new Map();
  const cookieKeys = [crypto.randomBytes(32).toString('base64url')];
  let signingKey = generateSigningJwk(alg);
  let claimNames = new Set();
  let provider;
  let handler;

  const okta = {
    issuer: '',
    clientId,
    clientSecret,
    redirectUris: [...redirectUris],
    alg,
    autoConsent: opts.autoConsent ?? true,
    endpoints: {},
    tamper: { idToken: null, discovery: null, jwks: null },
    requests: [],
  };

  const extraClaims = () => {
    const names = new Set();
    for (const c of accounts.values()) for (const n of Object.keys(c)) if (!SCOPED.has(n)) names.add(n);
    names.add('oid');
    return names;
  };

  function build() {
    claimNames = extraClaims();
    const config = {
      adapter: sharedAdapter(store),
      jwks: { keys: [signingKey] },
      cookies: { keys: cookieKeys },
      routes: Object.fromEntries(Object.entries(OKTA_PATHS).filter(([k]) => k !== 'discovery')),
      clients: [{
        client_id: clientId,
        client_secret: clientSecret,
        redirect_uris: [...redirectUris],
        post_logout_redirect_uris: [...postLogoutRedirectUris],
        grant_types: ['authorization_code'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
        id_token_signed_response_alg: alg,
      }],
      scopes: ['openid'],
      // oid and any non-standard account claim are always in the ID token
      // (openid scope); profile and email claims come with their scopes.
      claims: { openid: ['sub', ...claimNames], email: EMAIL_CLAIMS, profile: PROFILE_CLAIMS },
      conformIdTokenClaims: false,
      interactions: { policy: interactionsPolicy() },
      pkce: { required: () => true },
      features: {
        devInteractions: { enabled: true },
        // The end-session endpoint always asks; submit its form with
        // fields {logout: 'yes'} to end the provider session.
        rpInitiatedLogout: {
          enabled: true,
          logoutSource: (ctx, form) => {
            ctx.body = `<!DOCTYPE html><title>Sign out</title>${form}
              <button type="submit" form="op.logoutForm" name="logout" value="yes">Sign out</button>`;
          },
          postLogoutSuccessSource: (ctx) => { ctx.body = '<!DOCTYPE html><title>Signed out</title>'; },
        },
      },
      async findAccount(ctx, sub) {
        if (!accounts.has(sub)) return undefined;
        return { accountId: sub, claims: async () => ({ ...accounts.get(sub), sub }) };
      },
      async loadExistingGrant(ctx) {
        const { oidc } = ctx;
        const grantId = oidc.result?.consent?.grantId || oidc.session.grantIdFor(oidc.client.clientId);
        let grant = grantId ? await oidc.provider.Grant.find(grantId) : undefined;
        if (!okta.autoConsent) return grant;
        grant ??= new oidc.provider.Grant({ accountId: oidc.session.accountId, clientId: oidc.client.clientId });
        grant.addOIDCScope('openid profile email');
        await grant.save();
        return grant;
      },
      clientBasedCORS: () => false,
      renderError(ctx, out) {
        ctx.type = 'html';
        ctx.body = `<!DOCTYPE html><title>oidc error</title><pre id="error">${htmlEscape(JSON.stringify(out))}</pre>`;
      },
      ttl: {
        AccessToken: 3600, AuthorizationCode: 60, IdToken: 3600, RefreshToken: 86400,
        Interaction: 3600, Session: 86400, Grant: 86400,
      },
    };
    provider = quietly(() => new Provider(okta.issuer, config));
    provider.on('server_error', (ctx, err) => console.error('okta harness: provider server_error:', err));
    handler = provider.callback();
  }

  // inner server: the provider (swapped on rebuild)
  const inner = http.createServer((req, res) => handler(req, res));
  await listen(inner);
  const innerPort = inner.address().port;

  // front server: the issuer
  const front = http.createServer((req, res) => {
    forward(req, res).catch((e) => {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
      res.end(`okta front server: ${e.stack || e}`);
    });
  });
  await listen(front);
  // opts.issuerSlash: an issuer spelled with a final '/', as Auth0's is
  const base = `http://127.0.0.1:${front.address().port}`;
  okta.issuer = base + (opts.issuerSlash ? '/' : '');
  for (const [name, p] of Object.entries(OKTA_PATHS)) okta.endpoints[name] = base + p;
  build();

  async function forward(req, res) {
    const body = await readAll(req);
    const path = req.url.split('?')[0];
    okta.requests.push({
      method: req.method, path, url: req.url, headers: { ...req.headers }, body: body.toString('utf8'),
    });

    const headers = { ...req.headers };
    for (const h of NOT_FORWARDED) delete headers[h];
    headers['content-length'] = String(body.length);
    const up = await new Promise((resolve, reject) => {
      const r = http.request({ host: '127.0.0.1', port: innerPort, method: req.method, path: req.url, headers }, resolve);
      r.on('error', reject);
      r.end(body);
    });
    let replyBody = await readAll(up);
    const replyHeaders = { ...up.headers };
    for (const h of NOT_FORWARDED) delete replyHeaders[h];

    const rewritten = await applyTamper(req.method, path, up.statusCode, replyHeaders, replyBody);
    if (rewritten) {
      replyBody = Buffer.from(JSON.stringify(rewritten));
      delete replyHeaders.etag;
    }
    replyHeaders['content-length'] = String(replyBody.length);
    res.writeHead(up.statusCode, up.statusMessage, replyHeaders);
    res.end(replyBody);
  }

  // Returns the rewritten JSON document, or null to pass the reply through.
  async function applyTamper(method, path, status, headers, body) {
    const isJson = status === 200 && /json/i.test(headers['content-type'] || '');
    if (!isJson || headers['content-encoding']) return null;
    const { tamper } = okta;
    if (method === 'GET' && path === OKTA_PATHS.discovery && tamper.discovery) {
      return tamper.discovery(JSON.parse(body.toString('utf8')));
    }
    if (method === 'GET' && path === OKTA_PATHS.jwks && tamper.jwks) {
      return tamper.jwks(JSON.parse(body.toString('utf8')));
    }
    if (method === 'POST' && path === OKTA_PATHS.token && tamper.idToken) {
      const doc = JSON.parse(body.toString('utf8'));
      if (typeof doc.id_token !== 'string') return null;
      const { header, claims } = decodeJwt(doc.id_token);
      const out = (await tamper.idToken(claims, header)) ?? {};
      doc.id_token = typeof out.token === 'string'
        ? out.token
        : signJwt(out.claims ?? claims, out.header ?? header, out.key ?? signingKey);
      return doc;
    }
    return null;
  }

  Object.defineProperties(okta, {
    /** The current Provider instance (replaced by rotateKeys / new claim names). */
    provider: { get: () => provider, enumerable: true },
    /** The current signing key's kid. */
    kid: { get: () => signingKey.kid, enumerable: true },
  });
  Object.assign(okta, {
    /** A copy of the current private signing JWK. */
    privateJwk() { return { ...signingKey }; },
    /** A new key (same alg) with a new kid; the provider signs and publishes only it. Returns the kid. */
    rotateKeys() {
      signingKey = generateSigningJwk(alg);
      build();
      return signingKey.kid;
    },
    /** Creates or replaces an account (claims without sub). */
    setAccount(sub, claims) {
      accounts.set(sub, { ...claims });
      const names = extraClaims();
      if ([...names].some((n) => !claimNames.has(n))) build();
    },
    deleteAccount(sub) { return accounts.delete(sub); },
    clearRequests() { okta.requests.length = 0; },
    async stop() {
      for (const s of [front, inner]) {
        s.closeAllConnections();
        await new Promise((resolve) => s.close(() => resolve()));
      }
    },
  });
  return okta;
}

// Hop-by-hop and framing headers: not copied across the front server, which
// sends every body whole with its own content-length.
const NOT_FORWARDED = ['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'proxy-connection', 'content-length'];

function listen(server) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => { server.off('error', reject); resolve(); });
  });
}

function readAll(stream) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    stream.on('data', (c) => chunks.push(c));
    stream.on('end', () => resolve(Buffer.concat(chunks)));
    stream.on('error', reject);
  });
}

// ------------------------------------------------------------------ scripted browser

const BROWSER_ACCEPT = 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8';

/**
 * A browser: a cookie jar per origin and redirect following.
 *   get(url, {follow = true, headers, stopAt})
 *   post(url, body, {follow = true, headers, stopAt})   body: object (form-urlencoded) or string
 * resolve {status, url, headers, text, setCookies, history: [{status, url, location, setCookies}]},
 * or {stopped: true, url, history} when stopAt(url) was true for a URL about to be requested.
 * `headers` apply to the first request only (not to redirects).
 */
export class Browser {
  #jar = new Map(); // origin -> Map(`${name}\0${path}` -> {name, value, path, expires})

  cookies(origin) {
    const out = new Map();
    const list = [...this.#live(new URL(origin).origin)].sort((a, b) => a.path.length - b.path.length);
    for (const c of list) out.set(c.name, c.value);
    return out;
  }

  setCookie(origin, name, value, { path = '/' } = {}) {
    this.#bucket(new URL(origin).origin).set(`${name}\0${path}`, { name, value, path, expires: Infinity });
  }

  clearCookies() { this.#jar.clear(); }

  get(url, opts = {}) { return this.request('GET', url, undefined, opts); }

  post(url, body, opts = {}) { return this.request('POST', url, body, opts); }

  async request(method, url, body, { follow = true, headers = {}, stopAt = null } = {}) {
    let target = new URL(url);
    target.hash = '';
    let extra = headers;
    if (body !== undefined && body !== null && typeof body !== 'string') {
      body = new URLSearchParams(body).toString();
    }
    const history = [];
    for (let hop = 0; ; hop++) {
      if (hop > 20) throw new Error(`Browser: more than 20 redirects from ${url}`);
      if (stopAt && stopAt(target.href)) return { stopped: true, url: target.href, history };
      const h = { accept: BROWSER_ACCEPT, ...lower(extra) };
      const cookie = this.#cookieHeader(target);
      if (cookie) h.cookie = cookie;
      if (body !== undefined && body !== null && !h['content-type']) {
        h['content-type'] = 'application/x-www-form-urlencoded';
      }
      const res = await fetch(target, { method, headers: h, body: body ?? undefined, redirect: 'manual' });
      const setCookies = res.headers.getSetCookie();
      for (const sc of setCookies) this.#store(target, sc);
      const location = res.headers.get('location');
      if (follow && [301, 302, 303, 307, 308].includes(res.status) && location) {
        await res.arrayBuffer();
        history.push({ status: res.status, url: target.href, location, setCookies });
        if (res.status !== 307 && res.status !== 308 && method !== 'HEAD') {
          method = 'GET';
          body = undefined;
        }
        target = new URL(location, target);
        target.hash = '';
        extra = {};
        continue;
      }
      return { status: res.status, url: target.href, headers: res.headers, text: await res.text(), setCookies, history };
    }
  }

  /** Fills and submits a form of a response (see parseForms), following redirects. */
  submitForm(res, { fields = {}, formIndex = 0, follow = true, headers = {}, stopAt = null } = {}) {
    const forms = parseForms(res.text, res.url);
    const form = forms[formIndex];
    if (!form) throw new Error(`Browser: no form #${formIndex} on ${res.url} (${forms.length} forms)`);
    const pairs = form.fields.map(([n, v]) => [n, v]);
    for (const [name, value] of Object.entries(fields)) {
      const rest = pairs.filter(([n]) => n !== name);
      if (value !== null && value !== undefined) rest.push([name, String(value)]);
      pairs.length = 0;
      pairs.push(...rest);
    }
    const encoded = new URLSearchParams(pairs).toString();
    if (form.method === 'GET') {
      const u = new URL(form.action);
      u.search = encoded;
      return this.get(u.href, { follow, headers, stopAt });
    }
    return this.post(form.action, encoded, {
      follow, stopAt, headers: { origin: new URL(res.url).origin, ...headers },
    });
  }

  #bucket(origin) {
    if (!this.#jar.has(origin)) this.#jar.set(origin, new Map());
    return this.#jar.get(origin);
  }

  * #live(origin) {
    const bucket = this.#jar.get(origin);
    if (!bucket) return;
    const now = Date.now();
    for (const [k, c] of bucket) {
      if (c.expires <= now) bucket.delete(k);
      else yield c;
    }
  }

  #cookieHeader(url) {
    const p = url.pathname;
    const matches = [...this.#live(url.origin)]
      .filter((c) => p === c.path || (p.startsWith(c.path) && (c.path.endsWith('/') || p[c.path.length] === '/')))
      .sort((a, b) => b.path.length - a.path.length);
    return matches.map((c) => `${c.name}=${c.value}`).join('; ');
  }

  #store(url, raw) {
    const [pair, ...attrs] = raw.split(';');
    const eq = pair.indexOf('=');
    if (eq < 0) return;
    const name = pair.slice(0, eq).trim();
    const value = pair.slice(eq + 1).trim();
    if (!name) return;
    let path = null;
    let expires = Infinity;
    let maxAge = null;
    for (const a of attrs) {
      const i = a.indexOf('=');
      const k = (i < 0 ? a : a.slice(0, i)).trim().toLowerCase();
      const v = i < 0 ? '' : a.slice(i + 1).trim();
      if (k === 'path' && v.startsWith('/')) path = v;
      else if (k === 'max-age' && /^-?\d+$/.test(v)) maxAge = Number(v);
      else if (k === 'expires' && !Number.isNaN(Date.parse(v))) expires = Date.parse(v);
    }
    if (maxAge !== null) expires = maxAge <= 0 ? 0 : Date.now() + maxAge * 1000;
    if (path === null) {
      const dir = url.pathname.slice(0, url.pathname.lastIndexOf('/'));
      path = dir || '/';
    }
    const bucket = this.#bucket(url.origin);
    const key = `${name}\0${path}`;
    if (expires <= Date.now()) bucket.delete(key);
    else bucket.set(key, { name, value, path, expires });
  }
}

const lower = (h) => Object.fromEntries(Object.entries(h).map(([k, v]) => [k.toLowerCase(), v]));

const ENTITIES = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: '\u00a0' };
const decodeEntities = (s) => s.replace(/&(#x[0-9a-f]+|#\d+|[a-z]+);/gi, (m, e) => {
  if (e[0] === '#') return String.fromCodePoint(e[1] === 'x' || e[1] === 'X' ? parseInt(e.slice(2), 16) : Number(e.slice(1)));
  return ENTITIES[e.toLowerCase()] ?? m;
});

function parseAttrs(s) {
  const out = {};
  for (const m of s.matchAll(/([^\s=/>]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+)))?/g)) {
    out[m[1].toLowerCase()] = decodeEntities(m[2] ?? m[3] ?? m[4] ?? '');
  }
  return out;
}

const SKIPPED_INPUTS = new Set(['submit', 'button', 'image', 'reset', 'file']);

/**
 * The <form>s of an HTML page: [{action (absolute), method ('GET' | 'POST'),
 * id, fields: [[name, value], ...]}], fields being the inputs a browser would
 * send without clicking a named button (checked boxes only, first option of
 * a select unless one is selected, no disabled controls).
 */
export function parseForms(html, baseUrl) {
  const forms = [];
  for (const fm of String(html).matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form\s*>/gi)) {
    const attrs = parseAttrs(fm[1]);
    const fields = [];
    const controls = /<input\b([^>]*)>|<textarea\b([^>]*)>([\s\S]*?)<\/textarea\s*>|<select\b([^>]*)>([\s\S]*?)<\/select\s*>/gi;
    for (const c of fm[2].matchAll(controls)) {
      const a = parseAttrs(c[1] ?? c[2] ?? c[4]);
      if (!a.name || 'disabled' in a) continue;
      if (c[1] !== undefined) {
        const type = (a.type || 'text').toLowerCase();
        if (SKIPPED_INPUTS.has(type)) continue;
        if ((type === 'checkbox' || type === 'radio') && !('checked' in a)) continue;
        fields.push([a.name, a.value ?? ((type === 'checkbox' || type === 'radio') ? 'on' : '')]);
      } else if (c[2] !== undefined) {
        fields.push([a.name, decodeEntities(c[3])]);
      } else {
        const options = [...c[5].matchAll(/<option\b([^>]*)>([^<]*)/gi)]
          .map((o) => ({ ...parseAttrs(o[1]), text: decodeEntities(o[2]).trim() }));
        const chosen = options.find((o) => 'selected' in o) ?? options[0];
        if (chosen) fields.push([a.name, chosen.value ?? chosen.text]);
      }
    }
    forms.push({
      action: new URL(attrs.action || baseUrl, baseUrl).href,
      method: (attrs.method || 'GET').toUpperCase() === 'POST' ? 'POST' : 'GET',
      id: attrs.id ?? null,
      fields,
    });
  }
  return forms;
}

// The devInteractions forms carry a hidden prompt=login|consent and post to
// /interaction/{uid}.
function providerPrompt(form) {
  if (form.method !== 'POST' || !/\/interaction\/[^/]+$/.test(new URL(form.action).pathname)) return null;
  const p = form.fields.find(([n]) => n === 'prompt');
  return p && (p[1] === 'login' || p[1] === 'consent') ? p[1] : null;
}

/**
 * Signs in through the provider: GET startUrl (e.g. the gateway's
 * /t/{t}/login), follow to the provider's login page, submit it with login,
 * submit the consent page if one appears, follow back. Resolves the final
 * response, or the stopped result when stopAtCallback(url) matched; its
 * history covers every step. A login page shown again after submitting
 * (unknown account) is returned as is.
 */
export async function signIn(b, startUrl, { login, password = 'x', stopAtCallback = null } = {}) {
  if (!login) throw new Error('signIn: login (the account sub) is required');
  const stopAt = stopAtCallback;
  let res = await b.get(startUrl, { stopAt });
  const history = [...res.history];
  const submitted = new Set();
  while (!res.stopped) {
    const forms = parseForms(res.text, res.url);
    const formIndex = forms.findIndex((f) => providerPrompt(f));
    if (formIndex < 0) break;
    const prompt = providerPrompt(forms[formIndex]);
    if (submitted.has(prompt)) break;
    submitted.add(prompt);
    history.push({ status: res.status, url: res.url, location: null, setCookies: res.setCookies, form: prompt });
    const fields = prompt === 'login' ? { login, password } : {};
    res = await b.submitForm(res, { formIndex, fields, stopAt });
    history.push(...res.history);
  }
  return { ...res, history };
}
