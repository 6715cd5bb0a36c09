// tests/integration/lib/scim.mjs — helpers for the SCIM 2.0 integration tests
// (built on lib/gateway.mjs and lib/admin.mjs).
import assert from 'node:assert/strict';
import { startGateway, request, parsePrometheus, metricValue, fetchMetrics } from './gateway.mjs';
import { api, createTenant, operatorToken } from './admin.mjs';

export const URN = {
  USER: 'urn:ietf:params:scim:schemas:core:2.0:User',
  GROUP: 'urn:ietf:params:scim:schemas:core:2.0:Group',
  ENT: 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User',
  LIST: 'urn:ietf:params:scim:api:messages:2.0:ListResponse',
  PATCH: 'urn:ietf:params:scim:api:messages:2.0:PatchOp',
  ERROR: 'urn:ietf:params:scim:api:messages:2.0:Error',
};

export const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export const WEAK_ETAG_RE = /^W\/"[^"]+"$/;

export const PUBLIC_URL = 'https://gw.example.test:8443';

/**
 * Starts a gateway (public URL PUBLIC_URL unless args override it) and creates
 * the given tenants. Resolves {gw, opToken, tenants: {id: {base_url, token, c}}}
 * where c is a scimClient for that tenant.
 */
export async function startScimGateway({ tenants = ['acme'], args = [], env = {} } = {}) {
  const gw = await startGateway({ args: ['--public-url', PUBLIC_URL, ...args], env });
  const opToken = operatorToken(gw.dataDir);
  const out = {};
  for (const id of tenants) {
    const t = await createTenant(gw.port, opToken, id);
    out[id] = { id, base_url: t.scim.base_url, token: t.scim.token, c: scimClient(gw.port, id, t.scim.token) };
  }
  return { gw, opToken, tenants: out };
}

/** The SCIM base path (no origin) of a tenant. */
export const scimBase = (tenant) => `/t/${tenant}/scim/v2`;

/**
 * One SCIM call on a fresh connection.
 *   auth: string → `Authorization: Bearer <auth>`; {basic: [user, pass]} → Basic;
 *         {header: '…'} → that header verbatim; null → none.
 *   body: object → JSON; string/Buffer → sent as is.
 *   opts.headers: extra/override headers (undefined/null removes one); opts.contentType (default Okta's
 *   `application/scim+json; charset=utf-8`).
 */
export function scimCall(port, tenant, auth, method, p, body, { headers = {}, contentType } = {}) {
  const h = { accept: 'application/scim+json' };
  if (typeof auth === 'string') h.authorization = `Bearer ${auth}`;
  else if (auth && auth.basic) h.authorization = 'Basic ' + Buffer.from(`${auth.basic[0]}:${auth.basic[1]}`).toString('base64');
  else if (auth && auth.header) h.authorization = auth.header;
  let b;
  if (body !== undefined) {
    b = typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
    h['content-type'] = contentType ?? 'application/scim+json; charset=utf-8';
    h['content-length'] = String(Buffer.byteLength(b));
  }
  Object.assign(h, headers);
  for (const k of Object.keys(h)) if (h[k] === undefined || h[k] === null) delete h[k]; // {header: undefined} drops it
  return request(port, { method, path: scimBase(tenant) + p, headers: h, body: b, timeoutMs: 15000 });
}

/** A SCIM client bound to a port, tenant and token. Paths are relative to the SCIM base. */
export function scimClient(port, tenant, token) {
  const call = (m, p, b, o) => scimCall(port, tenant, token, m, p, b, o);
  return {
    port, tenant, token,
    get: (p, o) => call('GET', p, undefined, o),
    post: (p, b, o) => call('POST', p, b, o),
    put: (p, b, o) => call('PUT', p, b, o),
    patch: (p, b, o) => call('PATCH', p, b, o),
    del: (p, o) => call('DELETE', p, undefined, o),
    call,
    /** Creates a user (asserting 201) and returns its JSON. */
    async createUser(userName, extra = {}) {
      const r = await call('POST', '/Users', { schemas: [URN.USER], userName, active: true, ...extra });
      assert.equal(r.status, 201, `create user ${userName}: ${r.body}`);
      return r.json;
    },
    /** Creates a group (asserting 201) and returns its JSON. */
    async createGroup(displayName, memberIds = [], extra = {}) {
      const r = await call('POST', '/Groups', {
        schemas: [URN.GROUP], displayName, members: memberIds.map((value) => ({ value })), ...extra,
      });
      assert.equal(r.status, 201, `create group ${displayName}: ${r.body}`);
      return r.json;
    },
    /** GET a resource, asserting 200; returns its JSON. */
    async fetch(p) {
      const r = await call('GET', p);
      assert.equal(r.status, 200, `GET ${p}: ${r.body}`);
      assertScimContentType(r);
      return r.json;
    },
    /** PATCH with a PatchOp body built from ops. */
    patchOps: (p, ops, o) => call('PATCH', p, { schemas: [URN.PATCH], Operations: ops }, o),
    /** Sorted member ids of a group (GET /Groups/{id}). */
    async memberIds(gid) {
      const r = await call('GET', `/Groups/${gid}`);
      assert.equal(r.status, 200, `GET group ${gid}: ${r.body}`);
      return (r.json.members ?? []).map((m) => m.value).sort();
    },
  };
}

/** Asserts the reply's content type is application/scim+json. */
export function assertScimContentType(res) {
  assert.match(String(res.headers['content-type'] ?? ''), /^application\/scim\+json\b/i,
    `content type application/scim+json (got ${res.headers['content-type']}; status ${res.status}; body ${res.body})`);
}

/** Asserts a SCIM Error reply: status, schema, string status, non-empty detail, optional scimType / detail regexp. */
export function assertScimError(res, status, { scimType, detail } = {}) {
  assert.equal(res.status, status, `status ${status} expected, got ${res.status}: ${res.body}`);
  assertScimContentType(res);
  const j = res.json;
  assert.ok(j && typeof j === 'object' && !Array.isArray(j), `SCIM error body is a JSON object: ${res.body}`);
  assert.deepEqual(j.schemas, [URN.ERROR], `error schemas: ${res.body}`);
  assert.equal(j.status, String(status), `"status" is the string "${status}": ${res.body}`);
  assert.equal(typeof j.detail, 'string', `detail is a string: ${res.body}`);
  assert.ok(j.detail.length > 0, 'non-empty detail');
  if (scimType !== undefined) assert.equal(j.scimType, scimType, `scimType: ${res.body}`);
  if (detail) assert.match(j.detail, detail, `detail: ${res.body}`);
  return j;
}

/** Asserts a ListResponse with integer totals and returns it. */
export function assertListResponse(res, { total, startIndex, itemsPerPage } = {}) {
  assert.equal(res.status, 200, `list: ${res.body}`);
  assertScimContentType(res);
  const j = res.json;
  assert.deepEqual(j.schemas, [URN.LIST], `ListResponse schemas: ${res.body.slice(0, 300)}`);
  for (const k of ['totalResults', 'itemsPerPage', 'startIndex']) {
    assert.ok(Number.isInteger(j[k]), `${k} is an integer: ${JSON.stringify(j[k])}`);
  }
  const resources = j.Resources ?? [];
  assert.ok(Array.isArray(resources), 'Resources is an array');
  assert.equal(j.itemsPerPage, resources.length, 'itemsPerPage = number of Resources');
  if (total !== undefined) assert.equal(j.totalResults, total, `totalResults: ${res.body.slice(0, 500)}`);
  if (startIndex !== undefined) assert.equal(j.startIndex, startIndex, 'startIndex');
  if (itemsPerPage !== undefined) assert.equal(j.itemsPerPage, itemsPerPage, 'itemsPerPage');
  return { ...j, Resources: resources };
}

/** `?filter=...` query fragment, URL-encoded like Okta does (%20, %22, %40). */
export const qFilter = (f) => 'filter=' + encodeURIComponent(f);

/** Okta's user creation body (okta-scim.md, Users 2). */
export function oktaUser(userName, { givenName = 'Test', familyName = 'User', externalId, active = true } = {}) {
  return {
    schemas: [URN.USER], userName,
    name: { givenName, familyName },
    emails: [{ primary: true, value: userName, type: 'work' }],
    displayName: `${givenName} ${familyName}`, locale: 'en-US',
    externalId: externalId ?? '00u' + Math.random().toString(36).slice(2, 14),
    groups: [], password: '1mz050nq', active,
  };
}

/** The /metrics samples of a gateway. */
export async function scrape(port) {
  const r = await fetchMetrics(port); // with the operator token
  assert.equal(r.status, 200, `metrics: ${r.body.slice(0, 200)}`);
  return parsePrometheus(r.body);
}

/** Value of mcpgate_scim_events_total{event}. */
export async function scimEvent(port, event) {
  return metricValue(await scrape(port), 'mcpgate_scim_events_total', { event });
}

/** Asserts GET /healthz is 200. */
export async function assertHealthy(port) {
  const r = await request(port, { path: '/healthz' });
  assert.equal(r.status, 200, `healthz: ${r.status} ${r.body}`);
}

/** Admin API call with the operator (or any) token. */
export const adminGet = (port, token, p) => api(port, token, 'GET', p);

/** Stable JSON of a resource without meta (for "unchanged" comparisons). */
export function sansMeta(r) {
  const { meta, ...rest } = r;
  return rest;
}
