// tests/integration/lib/scim2.mjs — helpers for the scim2-*.test.mjs files
// (queries, ETags, attribute selection); built on lib/scim.mjs.
//
// seedDirectory() fills a tenant with ~30 users and a few groups whose
// attributes vary on purpose (names, typed emails, titles, active flags,
// the enterprise extension, a test extension carrying numbers, booleans and
// nulls) and returns the resources exactly as the server replied, so tests
// can compute the expected result of a filter from that data (an oracle)
// instead of hard-coding lists.
import assert from 'node:assert/strict';
import { URN, assertListResponse, qFilter } from './scim.mjs';

export const SEARCH_URN = 'urn:ietf:params:scim:api:messages:2.0:SearchRequest';
/** A client-defined extension (dots in the URN, like the enterprise one). */
export const XURN = 'urn:example:params:scim:schemas:extension:mcpgate-test:1.0:User';

// ---------------------------------------------------------------- oracle helpers

/** Case-insensitive string equality (SCIM caseExact=false). */
export const ciEq = (a, b) => typeof a === 'string' && typeof b === 'string' && a.toLowerCase() === b.toLowerCase();
/** Case-insensitive three-way string compare (byte order of the lower-cased strings). */
export function ciCmp(a, b) {
  const x = a.toLowerCase(), y = b.toLowerCase();
  return x < y ? -1 : x > y ? 1 : 0;
}
export const ciCo = (a, b) => typeof a === 'string' && a.toLowerCase().includes(b.toLowerCase());
export const ciSw = (a, b) => typeof a === 'string' && a.toLowerCase().startsWith(b.toLowerCase());
export const ciEw = (a, b) => typeof a === 'string' && a.toLowerCase().endsWith(b.toLowerCase());
/** SCIM "present": not absent, not null, not "", not []. */
export const present = (v) => v !== undefined && v !== null && v !== '' && !(Array.isArray(v) && v.length === 0);

/** Ids of resources (in the given order). */
export const idsOf = (list) => list.map((r) => r.id);
/** Sorted ids of the resources a predicate selects (the expected result of a filter). */
export const expectIds = (list, pred) => list.filter(pred).map((r) => r.id).sort();

// ---------------------------------------------------------------- requests

/** A SearchRequest body. */
export function searchBody(fields = {}) {
  return { schemas: [SEARCH_URN], ...fields };
}

/** POST {where}/.search with a SearchRequest made of fields (where: '', '/Users' or '/Groups'). */
export function search(c, where, fields = {}, opts) {
  return c.post(`${where}/.search`, searchBody(fields), opts);
}

/** GET list query string from {filter, startIndex, count, attributes, excludedAttributes, extra}. */
export function listQuery({ filter, startIndex, count, attributes, excludedAttributes } = {}) {
  const q = [];
  if (filter !== undefined) q.push(qFilter(filter));
  if (startIndex !== undefined) q.push(`startIndex=${startIndex}`);
  if (count !== undefined) q.push(`count=${count}`);
  if (attributes !== undefined) q.push('attributes=' + encodeURIComponent([].concat(attributes).join(',')));
  if (excludedAttributes !== undefined) {
    q.push('excludedAttributes=' + encodeURIComponent([].concat(excludedAttributes).join(',')));
  }
  return q.length ? '?' + q.join('&') : '';
}

/** Ids (in reply order) of GET {res}?filter=…&count=1000, asserting a well-formed ListResponse
 *  whose totalResults equals the number of resources. */
export async function filterIds(c, res, filter) {
  const r = await c.get(`/${res}` + listQuery({ filter, count: 1000 }));
  assert.equal(r.status, 200, `${res} filter ${filter}: ${r.body.slice(0, 300)}`);
  const l = assertListResponse(r);
  assert.equal(l.totalResults, l.Resources.length, `totalResults = all results for ${filter}`);
  return idsOf(l.Resources);
}

/** Walks every page of a list (GET path with query, or a .search via fn(startIndex, count)). */
export async function walkPages(fetchPage, pageSize) {
  const seen = [];
  const totals = new Set();
  for (let start = 1; ; start += pageSize) {
    const l = await fetchPage(start, pageSize);
    assert.equal(l.startIndex, start, 'startIndex echoed');
    totals.add(l.totalResults);
    assert.ok(l.Resources.length <= pageSize, `page of at most ${pageSize}`);
    seen.push(...l.Resources);
    if (start + pageSize > l.totalResults) {
      assert.equal(l.Resources.length, Math.max(0, l.totalResults - start + 1), 'last page holds the rest');
      break;
    }
    assert.equal(l.Resources.length, pageSize, `a full page at startIndex ${start}`);
  }
  assert.equal(totals.size, 1, `totalResults the same on every page: ${[...totals]}`);
  return { resources: seen, total: [...totals][0] };
}

/** Asserts that no part of a reply (headers or body) mentions a password. */
export function assertNoPassword(res, what = '') {
  assert.doesNotMatch(res.body ?? '', /password/i, `no password in the body ${what}: ${String(res.body).slice(0, 300)}`);
  for (const [k, v] of Object.entries(res.headers ?? {})) {
    assert.doesNotMatch(`${k}: ${v}`, /password/i, `no password in header ${k} ${what}`);
  }
}

// ---------------------------------------------------------------- the seeded directory

const GIVEN = ['Alice', 'Albert', 'Amir', 'Bob', 'Bianca', 'Carol', 'Chen', 'Dave', 'Dana', 'Eve',
  'Erik', 'Fatima', 'Femi', 'Grace', 'Gus', 'Hana', 'Ivan', 'Ines', 'Jon', 'Julia',
  'Kai', 'Kofi', 'Lena', 'Luis', 'Mia', 'Nora', 'Omar', 'Priya', 'Quinn', 'Ravi'];
const FAMILY = ['Smith', 'Zhou', 'Khan', 'Brown', 'Rossi', 'Diaz', 'Li', 'Moore', 'White', 'Adams',
  'Berg', 'Haddad', 'Okafor', 'Hopper', 'Grant', 'Sato', 'Petrov', 'Costa', 'Snow', 'Young',
  'Aoki', 'Mensah', 'Vogel', 'Garcia', 'Wong', 'Ali', 'Farouk', 'Patel', 'Quill', 'Shah'];
const TITLES = ['Engineer', 'Senior Engineer', 'Manager', 'Director', undefined];
const DEPTS = ['R&D', 'Sales', 'Ops', undefined];

/** The POST body of seeded user i (0-based); managerId sets the enterprise manager. */
export function seedUserBody(i, { managerId } = {}) {
  const given = GIVEN[i % GIVEN.length], family = FAMILY[i % FAMILY.length];
  const domain = i % 3 === 0 ? 'alpha.test' : i % 3 === 1 ? 'beta.test' : 'gamma.test';
  // mixed case in some userNames: userName is caseExact=false
  const local = `${given}.${family}`;
  const userName = (i % 4 === 1 ? local : local.toLowerCase()) + '@' + domain;
  const u = {
    schemas: [URN.USER, URN.ENT, XURN],
    userName,
    name: { givenName: given, familyName: family, formatted: `${given} ${family}` },
    displayName: `${given} ${family}`,
    // caseExact: some externalIds carry upper case
    externalId: i % 5 === 0 ? `EXT-Mixed-${i}` : `ext-${String(i).padStart(3, '0')}`,
    active: i % 4 !== 3,
    password: `Secret-${i}-pw!`,
  };
  if (TITLES[i % TITLES.length]) u.title = TITLES[i % TITLES.length];
  if (i % 6 === 0) u.nickName = given.slice(0, 3);
  if (i === 7) u.nickName = ''; // present but empty: not "pr"
  const low = given.toLowerCase();
  const emails = [];
  // work mail at corp-a for even i, corp-b for odd; home mail (at corp-a!) for i % 3 === 0,
  // so "type is work" and "value at corp-a" can hold on different elements
  if (i % 7 !== 6) emails.push({ value: `${low}@corp-${i % 2 === 0 ? 'a' : 'b'}.test`, type: 'work', primary: true });
  if (i % 3 === 0) emails.push({ value: `${low}.home@corp-a.test`, type: 'home', primary: false });
  if (i === 10) emails.push({ value: `${low}.second@corp-c.test`, type: 'work' });
  if (emails.length) u.emails = emails;
  const ent = { employeeNumber: String(1000 + i * 7) };
  if (DEPTS[i % DEPTS.length]) ent.department = DEPTS[i % DEPTS.length];
  if (managerId) ent.manager = { value: managerId, displayName: 'Boss' };
  u[URN.ENT] = ent;
  const x = { level: i % 7, score: i * 0.5, vip: i % 5 === 1, note: i % 2 === 0 ? 'even' : null };
  if (i % 8 === 0) delete x.level;
  u[XURN] = x;
  return u;
}

/**
 * Creates N seeded users (user 0 and user 1 are the managers of the others)
 * and these groups, then re-reads everything: resolves
 *   {users, groups, byId, userByName}  — users/groups exactly as GET returns them
 *   (users include their read-only `groups`).
 * `between` (optional async fn(i)) runs after user i is created (for timestamps).
 */
export async function seedDirectory(c, { n = 30, between } = {}) {
  const created = [];
  for (let i = 0; i < n; i++) {
    const managerId = i >= 2 ? created[i % 2].id : undefined;
    const r = await c.post('/Users', seedUserBody(i, { managerId }));
    assert.equal(r.status, 201, `seed user ${i}: ${r.body}`);
    created.push(r.json);
    if (between) await between(i);
  }
  const ids = created.map((u) => u.id);
  const groupDefs = [
    ['Engineering', ids.filter((_, i) => i % 5 === 0 || i % 5 === 1), 'grp-ENG'],
    ['Engineering Leads', ids.filter((_, i) => i % 10 === 0), 'grp-eng-leads'],
    ['Sales Team', ids.filter((_, i) => i % 4 === 1), 'grp-sales'],
    ['ops', ids.filter((_, i) => i % 3 === 2), undefined],
    ['Everyone', ids.slice(), 'grp-all'],
    ['Empty Group', [], 'grp-empty'],
  ];
  for (const [name, members, externalId] of groupDefs) {
    const body = { schemas: [URN.GROUP], displayName: name, members: members.map((value) => ({ value })) };
    if (externalId) body.externalId = externalId;
    const r = await c.post('/Groups', body);
    assert.equal(r.status, 201, `seed group ${name}: ${r.body}`);
  }
  return reloadDirectory(c);
}

/** Re-reads every user and group of the tenant (all pages). */
export async function reloadDirectory(c) {
  const users = (await c.fetch('/Users?count=1000')).Resources;
  const groups = (await c.fetch('/Groups?count=1000')).Resources;
  return {
    users, groups,
    byId: Object.fromEntries([...users, ...groups].map((r) => [r.id, r])),
    userByName: Object.fromEntries(users.map((u) => [u.userName.toLowerCase(), u])),
  };
}

/** The i of seedUserBody(i) a seeded user was made from (its employeeNumber tells). */
export const seedIndex = (u) => (Number(u?.[URN.ENT]?.employeeNumber) - 1000) / 7;

/** Values of a (possibly multi-valued) attribute a, or sub-attribute s of it, of resource r. */
export function valuesOf(r, a, s) {
  const v = r?.[a];
  if (v === undefined || v === null) return [];
  const list = Array.isArray(v) ? v : [v];
  if (s === undefined) return list.map((e) => (e && typeof e === 'object' && !Array.isArray(e) && 'value' in e ? e.value : e));
  return list.map((e) => e?.[s]).filter((x) => x !== undefined);
}
