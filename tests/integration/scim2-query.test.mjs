// SCIM 2.0 queries on real data: every filter operator, and/or/not and their
// precedence, value paths, sub-attributes, URN-qualified attributes (dots in
// the URN), boolean/number/null/dateTime literals, caseExact, group filters,
// paging over filters no index answers (evaluated on a worker thread),
// invalid filters, and POST …/.search (Users, Groups, root) against the GET
// forms. Every expected result set is computed here from the data the test
// created (an oracle over the resources as the server returned them).
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { connect, sleep } from './lib/gateway.mjs';
import {
  startScimGateway, scimCall, assertScimError, assertListResponse, assertHealthy, URN,
} from './lib/scim.mjs';
import {
  SEARCH_URN, XURN, ciEq, ciCmp, ciCo, ciSw, ciEw, present, idsOf, expectIds, search, searchBody,
  listQuery, filterIds, walkPages, seedDirectory, reloadDirectory, valuesOf, seedIndex,
} from './lib/scim2.mjs';

const E = URN.ENT;
let gw, acme, c, d;
let U, G; // users and groups as GET returns them
const ent = (u) => u[E] ?? {};
const xt = (u) => u[XURN] ?? {};
const emails = (u) => u.emails ?? [];
const groupIdsOf = (u) => valuesOf(u, 'groups', 'value');
const group = (name) => G.find((g) => g.displayName === name);
const memberIds = (g) => valuesOf(g, 'members', 'value');
/** The user seeded as number i (seedUserBody(i)). */
const bySeed = (i) => U.find((u) => seedIndex(u) === i);

before(async () => {
  ({ gw, tenants: { acme } } = await startScimGateway({ tenants: ['acme'] }));
  c = acme.c;
  // two batches a second apart (second-precision dateTime literals fall between them)
  await seedDirectory(c, { between: async (i) => { if (i === 14) await sleep(1100); } });
  // later edits: lastModified moves past created for a few users
  await sleep(20);
  const first = await reloadDirectory(c);
  for (const u of first.users.filter((x) => seedIndex(x) % 9 === 4)) {
    const r = await c.patchOps(`/Users/${u.id}`, [{ op: 'replace', path: 'nickName', value: 'edited' }]);
    assert.equal(r.status, 200, r.body);
  }
  d = await reloadDirectory(c);
  U = d.users;
  G = d.groups;
  assert.equal(U.length, 30);
  assert.equal(G.length, 6);
});

/**
 * GET /{res}?filter=f must return exactly the resources pred selects, in id
 * order, with totalResults equal to their number. Unless trivial is set, the
 * expected set is neither empty nor everything (so the case means something).
 */
async function check(res, f, pred, { trivial = false } = {}) {
  const list = res === 'Users' ? U : G;
  const want = expectIds(list, pred);
  if (!trivial) {
    assert.ok(want.length > 0 && want.length < list.length,
      `test data: ${f} should select some but not all ${res} (selects ${want.length})`);
  }
  const got = await filterIds(c, res, f);
  assert.deepEqual(got, [...got].sort(), `${f}: ordered by id`);
  assert.deepEqual(got, want, `${res}?filter=${f}`);
  return want;
}

test('data set: 30 users, 6 groups, varied attributes; password not kept', async () => {
  assert.ok(U.every((u) => u.password === undefined));
  assert.equal(U.filter((u) => u.active === false).length, 7);
  assert.ok(U.some((u) => u.nickName === ''), 'one empty nickName');
  assert.ok(U.some((u) => u.meta.lastModified !== u.meta.created), 'some users edited later');
  assert.equal(memberIds(group('Everyone')).length, 30);
  assert.equal(memberIds(group('Empty Group')).length, 0);
});

test('eq ne co sw ew on strings (caseExact=false values, any case of attribute names and operators)', async () => {
  await check('Users', 'title eq "engineer"', (u) => ciEq(u.title, 'engineer'));
  await check('Users', 'TITLE EQ "Senior Engineer"', (u) => ciEq(u.title, 'Senior Engineer'));
  const albert = U.find((u) => u.name.givenName === 'Albert');
  await check('Users', `userName eq "${albert.userName.toUpperCase()}"`, (u) => u.id === albert.id);
  await check('Users', `userName eq "${albert.userName.toLowerCase()}"`, (u) => u.id === albert.id);
  await check('Users', 'displayName ne "alice smith"', (u) => !ciEq(u.displayName, 'alice smith'));
  await check('Users', 'userName ne "nobody@nowhere.test"', () => true, { trivial: true });
  await check('Users', 'userName co "BETA"', (u) => ciCo(u.userName, 'beta'));
  await check('Users', 'emails.value co "corp-b"', (u) => valuesOf(u, 'emails', 'value').some((v) => ciCo(v, 'corp-b')));
  await check('Users', 'displayName sw "a"', (u) => ciSw(u.displayName, 'a'));
  await check('Users', 'userName ew "@GAMMA.test"', (u) => ciEw(u.userName, '@gamma.test'));
  await check('Users', 'uSeRnAmE Co "zhou" oR userName sw "ravi"', (u) => ciCo(u.userName, 'zhou') || ciSw(u.userName, 'ravi'));
  // indexed eq combined: an index hit is checked against the whole filter
  const [u1, u2] = [bySeed(1), bySeed(2)];
  await check('Users', `userName eq "${u1.userName}" or userName eq "${u2.userName}"`, (u) => u === u1 || u === u2);
  await check('Users', `userName eq "${u1.userName}" and active eq ${!u1.active}`, () => false, { trivial: true });
  await check('Users', `title eq "nope" and userName eq "${u1.userName}"`, () => false, { trivial: true });
  await check('Users', `not (userName eq "${u1.userName}")`, (u) => u !== u1);
});

test('gt ge lt le on strings, numbers (integer and decimal) and the enterprise employeeNumber', async () => {
  const fam = (u) => u.name.familyName;
  await check('Users', 'name.familyName gt "m"', (u) => ciCmp(fam(u), 'm') > 0);
  await check('Users', 'name.familyName ge "Moore"', (u) => ciCmp(fam(u), 'moore') >= 0);
  await check('Users', 'name.familyName lt "c"', (u) => ciCmp(fam(u), 'c') < 0);
  await check('Users', 'name.familyName le "COSTA"', (u) => ciCmp(fam(u), 'costa') <= 0);
  await check('Users', `${E}:employeeNumber gt "1100"`, (u) => ent(u).employeeNumber > '1100');
  await check('Users', `${E}:employeeNumber le "1035"`, (u) => ent(u).employeeNumber <= '1035');
  const lvl = (u) => xt(u).level;
  await check('Users', `${XURN}:level gt 3`, (u) => typeof lvl(u) === 'number' && lvl(u) > 3);
  await check('Users', `${XURN}:level ge 3`, (u) => typeof lvl(u) === 'number' && lvl(u) >= 3);
  await check('Users', `${XURN}:level lt 2`, (u) => typeof lvl(u) === 'number' && lvl(u) < 2);
  await check('Users', `${XURN}:level le 0`, (u) => lvl(u) === 0);
  await check('Users', `${XURN}:level eq 4`, (u) => lvl(u) === 4);
  await check('Users', `${XURN}:level ne 4 and ${XURN}:level pr`, (u) => typeof lvl(u) === 'number' && lvl(u) !== 4);
  const sc = (u) => xt(u).score;
  await check('Users', `${XURN}:score ge 5.5`, (u) => sc(u) >= 5.5);
  await check('Users', `${XURN}:score lt 2.5`, (u) => sc(u) < 2.5);
  await check('Users', `${XURN}:score eq 7.0`, (u) => sc(u) === 7, {});
  await check('Users', `${XURN}:score eq 7`, (u) => sc(u) === 7);
  await check('Users', `${XURN}:score gt -1e1 and ${XURN}:score lt 1.5e0`, (u) => sc(u) > -10 && sc(u) < 1.5);
  // a number never equals a string, whatever it spells
  await check('Users', `${E}:employeeNumber eq 1035`, () => false, { trivial: true });
});

test('pr: absent, null, "" and [] are not present', async () => {
  await check('Users', 'title pr', (u) => present(u.title));
  await check('Users', 'nickName pr', (u) => present(u.nickName));
  assert.ok(!present(U.find((u) => u.nickName === '').nickName), 'the empty nickName is not pr');
  await check('Users', 'emails pr', (u) => present(u.emails));
  await check('Users', `${E}:department pr`, (u) => present(ent(u).department));
  await check('Users', `${E}:manager pr`, (u) => present(ent(u).manager));
  await check('Users', `${E}:manager.value pr`, (u) => present(ent(u).manager?.value));
  await check('Users', `${XURN}:note pr`, (u) => present(xt(u).note));
  await check('Users', 'id pr and meta.created pr and userName pr', () => true, { trivial: true });
});

test('booleans: active eq/ne true/false, extension booleans', async () => {
  await check('Users', 'active eq false', (u) => u.active === false);
  await check('Users', 'active eq true', (u) => u.active === true);
  await check('Users', 'active ne true', (u) => u.active !== true);
  await check('Users', 'ACTIVE EQ TRUE', (u) => u.active === true);
  await check('Users', `${XURN}:vip eq true`, (u) => xt(u).vip === true);
  await check('Users', `${XURN}:vip eq true and active eq false`, (u) => xt(u).vip === true && u.active === false);
  // "true" the string is not the boolean true
  await check('Users', 'active eq "true"', () => false, { trivial: true });
});

test('null literal: an attribute sent as null is unassigned, and eq null matches unassigned attributes (RFC 7643 §2.5)', async () => {
  // the seed sends "note": null for odd users: stored as absent
  assert.ok(U.every((u) => xt(u).note === undefined || xt(u).note === 'even'));
  // RFC 7643 §2.5: "Unassigned attributes, the null value, or empty array … SHALL be
  // considered to be equivalent in state": eq null ≡ not pr, ne null ≡ pr
  const r1 = await filterIds(c, 'Users', `${XURN}:note eq null`);
  assert.deepEqual(r1, expectIds(U, (u) => !present(xt(u).note)), `${XURN}:note eq null matches users whose note is unassigned`);
  const r2 = await filterIds(c, 'Users', 'title ne null');
  assert.deepEqual(r2, expectIds(U, (u) => present(u.title)), 'title ne null ≡ title pr');
  const r3 = await filterIds(c, 'Users', 'title eq null');
  assert.deepEqual(r3, expectIds(U, (u) => !present(u.title)), 'title eq null ≡ not (title pr)');
});

test('dateTime: meta.created / meta.lastModified compared with literals in the stored format', async () => {
  // created never moves: its median splits the users
  const cr = U.map((u) => u.meta.created).sort();
  const mid = cr[Math.floor(cr.length / 2)];
  await check('Users', `meta.created gt "${mid}"`, (u) => u.meta.created > mid);
  await check('Users', `meta.created ge "${mid}"`, (u) => u.meta.created >= mid);
  await check('Users', `meta.created lt "${mid}"`, (u) => u.meta.created < mid);
  await check('Users', `meta.created le "${mid}"`, (u) => u.meta.created <= mid);
  // the users edited last have the latest lastModified
  const edited = U.filter((u) => seedIndex(u) % 9 === 4);
  const rest = U.filter((u) => !edited.includes(u));
  const t = rest.map((u) => u.meta.lastModified).sort().at(-1);
  const later = await check('Users', `meta.lastModified gt "${t}"`, (u) => u.meta.lastModified > t);
  assert.deepEqual(later, idsOf(edited).sort(), 'the edited users');
  await check('Users', `meta.lastModified le "${t}"`, (u) => u.meta.lastModified <= t);
  await check('Users', 'meta.lastModified gt "2000-01-01T00:00:00.000Z"', () => true, { trivial: true });
  await check('Users', 'meta.lastModified lt "2000-01-01T00:00:00.000Z"', () => false, { trivial: true });
  const e0 = edited[0];
  await check('Users', `meta.lastModified eq "${e0.meta.lastModified}" and meta.created ne "${e0.meta.lastModified}"`,
    (u) => u.meta.lastModified === e0.meta.lastModified && u.meta.created !== e0.meta.lastModified);
  await check('Users', 'meta.resourceType eq "user"', () => true, { trivial: true });
  await check('Groups', 'meta.resourceType eq "Group"', () => true, { trivial: true });
});

test('dateTime literals compare chronologically, whatever their precision or UTC offset (RFC 7644 §3.4.2.2)', async () => {
  // the second batch was created at least a second after the first: a whole-second
  // literal (no fraction) at the second batch's first second falls between the batches
  const created = U.map((u) => u.meta.created).sort();
  const late = created[created.length - 1];
  const boundary = late.slice(0, 19) + 'Z';               // e.g. 2026-01-01T10:00:01Z
  const ms = (s) => Date.parse(s);
  const want = expectIds(U, (u) => ms(u.meta.created) >= ms(boundary));
  assert.ok(want.length > 0 && want.length < U.length, 'the boundary splits the users');
  assert.deepEqual(await filterIds(c, 'Users', `meta.created ge "${boundary}"`), want,
    `meta.created ge "${boundary}" (second precision) selects users created at or after it`);
  // the same instant written with an offset
  const t = new Date(ms(boundary) + 2 * 3600e3).toISOString().slice(0, 19) + '+02:00';
  assert.deepEqual(await filterIds(c, 'Users', `meta.created ge "${t}"`), want, `meta.created ge "${t}" (+02:00 offset)`);
});

test('string literals: JSON escapes (quotes, backslash, \\u) in indexed and scanned filters', async () => {
  const name = 'Ren\u00e9e "Core" \\ Team';
  const g = await c.createGroup(name, [], { externalId: 'x"y\\z' });
  const u = await c.createUser('q"uote\\d@esc.test', { title: 'T "1"' });
  try {
    const lit = JSON.stringify(name); // "Ren\u00e9e \"Core\" \\ Team" as a SCIM string literal
    assert.deepEqual(await filterIds(c, 'Groups', `displayName eq ${lit}`), [g.id], 'indexed eq');
    assert.deepEqual(await filterIds(c, 'Groups', `displayName eq "Ren\\u00e9e \\"Core\\" \\\\ Team"`), [g.id], '\\u escape');
    assert.deepEqual(await filterIds(c, 'Groups', 'displayName co "\\"core\\" \\\\"'), [g.id], 'scanned co');
    assert.deepEqual(await filterIds(c, 'Groups', `externalId eq ${JSON.stringify('x"y\\z')}`), [g.id]);
    assert.deepEqual(await filterIds(c, 'Users', `userName eq ${JSON.stringify(u.userName.toUpperCase())}`), [u.id]);
    assert.deepEqual(await filterIds(c, 'Users', 'title eq "t \\"1\\""'), [u.id]);
    assert.deepEqual(await filterIds(c, 'Users', 'userName sw "q\\"uote\\\\"'), [u.id]);
  } finally {
    assert.equal((await c.del(`/Groups/${g.id}`)).status, 204);
    assert.equal((await c.del(`/Users/${u.id}`)).status, 204);
  }
});

test('and / or / not and their precedence: a or b and c ≠ (a or b) and c', async () => {
  const a = (u) => ciEq(u.title, 'Manager'), b = (u) => u.active === false, cc = (u) => xt(u).vip === true;
  const A = 'title eq "Manager"', B = 'active eq false', C = `${XURN}:vip eq true`;
  const w1 = await check('Users', `${A} or ${B} and ${C}`, (u) => a(u) || (b(u) && cc(u)));
  const w2 = await check('Users', `(${A} or ${B}) and ${C}`, (u) => (a(u) || b(u)) && cc(u));
  assert.notDeepEqual(w1, w2, 'the data tells the two groupings apart');
  await check('Users', `${B} and ${C} or ${A}`, (u) => (b(u) && cc(u)) || a(u));
  await check('Users', `${B} and (${C} or ${A})`, (u) => b(u) && (cc(u) || a(u)));
  await check('Users', 'title eq "Engineer" and active eq true or title eq "Director" and active eq false',
    (u) => (ciEq(u.title, 'Engineer') && u.active) || (ciEq(u.title, 'Director') && !u.active));
  await check('Users', 'active eq true and not (title pr)', (u) => u.active && !present(u.title));
  await check('Users', 'not (userName co "alpha") and not(userName co "beta")', (u) => !ciCo(u.userName, 'alpha') && !ciCo(u.userName, 'beta'));
  await check('Users', 'not (not (title eq "Director"))', (u) => ciEq(u.title, 'Director'));
  await check('Users', 'not (title eq "Director" or active eq false)', (u) => !(ciEq(u.title, 'Director') || !u.active));
  await check('Users', 'userName co "a" and (title eq "Engineer" or title eq "Director") and active eq true',
    (u) => ciCo(u.userName, 'a') && (ciEq(u.title, 'Engineer') || ciEq(u.title, 'Director')) && u.active);
  await check('Users', 'title eq "Engineer" OR title eq "Director" AND NOT (active eq true)',
    (u) => ciEq(u.title, 'Engineer') || (ciEq(u.title, 'Director') && !u.active));
  await check('Users', '((((title eq "Manager"))))', (u) => ciEq(u.title, 'Manager'));
});

test('value paths: the conditions hold on ONE element; [..].sub; not and or inside the brackets', async () => {
  const inOne = (u, p) => emails(u).some(p);
  const w1 = await check('Users', 'emails[type eq "work" and value co "@corp-a"]',
    (u) => inOne(u, (e) => ciEq(e.type, 'work') && ciCo(e.value, '@corp-a')));
  // the same conditions on any elements select more (work mail elsewhere, home mail at corp-a)
  const w2 = await check('Users', 'emails.type eq "work" and emails.value co "@corp-a"',
    (u) => inOne(u, (e) => ciEq(e.type, 'work')) && inOne(u, (e) => ciCo(e.value, '@corp-a')));
  assert.ok(w2.length > w1.length, 'the data tells one element from any elements apart');
  const second = U.flatMap(emails).find((e) => e.value.includes('.second@')).value; // a second work address
  await check('Users', `emails[type eq "work"].value eq "${second.toUpperCase()}"`,
    (u) => inOne(u, (e) => ciEq(e.type, 'work') && ciEq(e.value, second)));
  await check('Users', `emails[type eq "home"].value eq "${second}"`, () => false, { trivial: true });
  await check('Users', 'emails[type eq "home"].value ew "@CORP-A.test"', (u) => inOne(u, (e) => e.type === 'home' && ciEw(e.value, '@corp-a.test')));
  await check('Users', 'emails[type eq "work"].value pr', (u) => inOne(u, (e) => e.type === 'work' && present(e.value)));
  await check('Users', 'emails[type eq "home" or primary eq true]', (u) => inOne(u, (e) => e.type === 'home' || e.primary === true));
  await check('Users', 'emails[not (type eq "work")]', (u) => inOne(u, (e) => !ciEq(e.type, 'work')));
  await check('Users', 'emails[type eq "work"] and not (emails[type eq "home"])',
    (u) => inOne(u, (e) => e.type === 'work') && !inOne(u, (e) => e.type === 'home'));
  await check('Users', 'emails[value sw "AL"]', (u) => inOne(u, (e) => ciSw(e.value, 'al')));
  await check('Users', 'EMAILS[TYPE EQ "WORK" AND NOT (PRIMARY EQ TRUE)]', (u) => inOne(u, (e) => ciEq(e.type, 'work') && e.primary !== true));
  // a value path on a single complex attribute of an extension
  const boss = ent(U.find((u) => ent(u).manager)).manager.value;
  await check('Users', `${E}:manager[value eq "${boss}"]`, (u) => ent(u).manager?.value === boss);
});

test('sub-attributes and URN-qualified attributes (dots in the URN; URNs case-insensitive)', async () => {
  await check('Users', 'name.givenName sw "A"', (u) => ciSw(u.name.givenName, 'a'));
  await check('Users', 'NAME.GIVENNAME sw "b"', (u) => ciSw(u.name.givenName, 'b'));
  await check('Users', 'name.familyName eq "SMITH"', (u) => ciEq(u.name.familyName, 'smith'));
  await check('Users', `${URN.USER}:name.givenName sw "c"`, (u) => ciSw(u.name.givenName, 'c'));
  await check('Users', `${URN.USER}:title eq "Manager"`, (u) => ciEq(u.title, 'Manager'));
  const carol = U.find((u) => u.name.givenName === 'Carol');
  await check('Users', `${URN.USER}:userName eq "${carol.userName}"`, (u) => u.id === carol.id);
  const en = ent(U[5]).employeeNumber;
  await check('Users', `${E}:employeeNumber eq "${en}"`, (u) => ent(u).employeeNumber === en);
  await check('Users', `${E}:department eq "r&d"`, (u) => ciEq(ent(u).department, 'r&d'));
  await check('Users', `${E.toUpperCase()}:department eq "Sales"`, (u) => ciEq(ent(u).department, 'sales'));
  const mgrs = [...new Set(U.map((u) => ent(u).manager?.value).filter(Boolean))];
  assert.equal(mgrs.length, 2);
  for (const m of mgrs) await check('Users', `${E}:manager.value eq "${m}"`, (u) => ent(u).manager?.value === m);
  await check('Users', `${E}:manager.displayName eq "boss" and ${E}:department pr and ${E}:department ne "Ops"`,
    (u) => ciEq(ent(u).manager?.displayName, 'boss') && present(ent(u).department) && !ciEq(ent(u).department, 'ops'));
  await check('Users', `${XURN}:level gt 3 and ${E}:department eq "Sales"`, (u) => xt(u).level > 3 && ciEq(ent(u).department, 'sales'));
  // an unknown attribute matches nothing (and is no error)
  await check('Users', 'nosuchAttr eq "x" or name.nosuch pr', () => false, { trivial: true });
});

test('caseExact: externalId and id exact, userName not; indexed and scanned forms agree', async () => {
  const mixed = U.filter((u) => /[A-Z]/.test(u.externalId));
  assert.ok(mixed.length >= 2);
  const x = mixed[1].externalId;
  await check('Users', `externalId eq "${x}"`, (u) => u.externalId === x);                                 // index
  await check('Users', `externalId eq "${x.toLowerCase()}"`, () => false, { trivial: true });              // index, wrong case
  await check('Users', `externalId eq "${x.toLowerCase()}" or active eq null`, () => false, { trivial: true }); // scan
  await check('Users', 'externalId sw "EXT-M"', (u) => u.externalId.startsWith('EXT-M'));
  await check('Users', 'externalId sw "ext-m"', () => false, { trivial: true });
  await check('Users', 'externalId co "Mixed"', (u) => u.externalId.includes('Mixed'));
  await check('Users', 'externalId co "mixed"', () => false, { trivial: true });
  // an id with hex letters in its first 8 characters (upper-casing changes it)
  const id = U.find((u) => /[a-f]/.test(u.id.slice(0, 8))).id;
  await check('Users', `id eq "${id}"`, (u) => u.id === id);
  await check('Users', `id eq "${id.toUpperCase()}"`, () => false, { trivial: true });
  await check('Users', `id eq "${id.toUpperCase()}" or title eq "nope"`, () => false, { trivial: true });
  await check('Users', `id sw "${id.slice(0, 8).toUpperCase()}"`, () => false, { trivial: true });
  const un = U[9].userName;
  await check('Users', `userName eq "${un.toUpperCase()}"`, (u) => u.id === U[9].id);
  await check('Users', `userName eq "${un.toUpperCase()}" and active pr`, (u) => u.id === U[9].id);
  await check('Users', `userName sw "${un.slice(0, 5).toUpperCase()}"`, (u) => ciSw(u.userName, un.slice(0, 5)));
  // groups
  await check('Groups', 'externalId eq "grp-ENG"', (g) => g.externalId === 'grp-ENG');
  await check('Groups', 'externalId eq "grp-eng"', () => false, { trivial: true });
  await check('Groups', 'externalId pr', (g) => present(g.externalId));
});

test('group filters: displayName (indexed eq, any case), co/sw/ew, members[value eq], members.value, members pr', async () => {
  await check('Groups', 'displayName co "ENG"', (g) => ciCo(g.displayName, 'eng'));
  await check('Groups', 'displayName eq "OPS"', (g) => ciEq(g.displayName, 'ops'));
  await check('Groups', 'displayName eq "Engineering"', (g) => g.displayName === 'Engineering');
  await check('Groups', 'displayName sw "e"', (g) => ciSw(g.displayName, 'e'));
  await check('Groups', 'displayName ew "TEAM"', (g) => ciEw(g.displayName, 'team'));
  await check('Groups', 'displayName gt "f"', (g) => ciCmp(g.displayName, 'f') > 0);
  for (const i of [0, 1, 5, 13, 20]) {
    const uid = bySeed(i).id;
    const inG = (g) => memberIds(g).includes(uid);
    await check('Groups', `members[value eq "${uid}"]`, inG, { trivial: true });            // index
    await check('Groups', `members.value eq "${uid}"`, inG, { trivial: true });             // index
    await check('Groups', `members[value eq "${uid}"] and displayName co "eng"`, (g) => inG(g) && ciCo(g.displayName, 'eng'), { trivial: true });
    await check('Groups', `members[value eq "${uid}"] or displayName eq "Empty Group"`, (g) => inG(g) || g.displayName === 'Empty Group', { trivial: true }); // scan
    await check('Groups', `not (members[value eq "${uid}"])`, (g) => !inG(g), { trivial: true });
  }
  await check('Groups', 'members pr', (g) => memberIds(g).length > 0);
  await check('Groups', 'not (members pr)', (g) => memberIds(g).length === 0);
  const alpha = U.filter((u) => ciEw(u.userName, '@alpha.test')).map((u) => u.id);
  await check('Groups', 'members[display ew "@ALPHA.test"] and displayName ne "Everyone"',
    (g) => memberIds(g).some((m) => alpha.includes(m)) && g.displayName !== 'Everyone');
  await check('Groups', 'members[value eq "00000000-0000-4000-8000-000000000000"]', () => false, { trivial: true });
});

test('members.value is caseExact: the indexed and the scanned forms of the same filter agree', async () => {
  const uid = U.find((u) => /[a-f]/.test(u.id)).id;
  const up = uid.toUpperCase();
  const indexed = await filterIds(c, 'Groups', `members[value eq "${up}"]`);
  const scanned = await filterIds(c, 'Groups', `members[value eq "${up}"] or displayName eq "no such group"`);
  const scanned2 = await filterIds(c, 'Groups', `members.value eq "${up}" or displayName eq "no such group"`);
  assert.deepEqual(indexed, [], 'index: an upper-cased id is no member id');
  assert.deepEqual(scanned2, [], 'members.value eq (scanned) is caseExact');
  const ci = expectIds(G, (g) => memberIds(g).includes(uid));
  assert.deepEqual(scanned, indexed, `members[value eq "${up}"] or <nothing> must equal members[value eq "${up}"] ` +
    `(${ci.length} groups would match case-insensitively)`);
});

test('users by their read-only groups: groups.value, groups[display eq], groups.display co', async () => {
  const sales = group('Sales Team').id, leads = group('Engineering Leads').id;
  await check('Users', `groups.value eq "${sales}"`, (u) => groupIdsOf(u).includes(sales));
  await check('Users', `groups[value eq "${leads}"] or groups[display eq "OPS"]`,
    (u) => groupIdsOf(u).includes(leads) || groupIdsOf(u).includes(group('ops').id));
  await check('Users', 'groups.display co "eng" and active eq false',
    (u) => u.groups.some((g) => ciCo(g.display, 'eng')) && !u.active);
  await check('Users', `not (groups.value eq "${group('Everyone').id}")`, () => false, { trivial: true });
});

test('paging over a scanned filter: startIndex/count, totalResults, id order, stable across pages and repeats', async () => {
  const f = 'active eq true and emails pr';                 // no index answers this
  const want = expectIds(U, (u) => u.active && present(u.emails));
  assert.ok(want.length > 12);
  for (const size of [1, 4, 7, want.length, 100]) {
    const { resources, total } = await walkPages(async (s, n) =>
      assertListResponse(await c.get('/Users' + listQuery({ filter: f, startIndex: s, count: n }))), size);
    assert.equal(total, want.length, `totalResults with count=${size}`);
    assert.deepEqual(idsOf(resources), want, `pages of ${size}: every match once, in id order`);
  }
  // the same walk through .search
  const { resources } = await walkPages(async (s, n) =>
    assertListResponse(await search(c, '/Users', { filter: f, startIndex: s, count: n })), 5);
  assert.deepEqual(idsOf(resources), want, '.search pages');
  // odd pages, past the end, count=0, startIndex below 1
  const q = (o) => c.get('/Users' + listQuery({ filter: f, ...o }));
  const odd = assertListResponse(await q({ startIndex: 3, count: 5 }), { total: want.length, startIndex: 3, itemsPerPage: 5 });
  assert.deepEqual(idsOf(odd.Resources), want.slice(2, 7));
  assertListResponse(await q({ startIndex: want.length + 1, count: 5 }), { total: want.length, itemsPerPage: 0 });
  assertListResponse(await q({ startIndex: 1000, count: 5 }), { total: want.length, itemsPerPage: 0 });
  assertListResponse(await q({ count: 0 }), { total: want.length, itemsPerPage: 0 });
  const z = assertListResponse(await q({ startIndex: 0, count: 3 }), { total: want.length, itemsPerPage: 3 });
  assert.deepEqual(idsOf(z.Resources), want.slice(0, 3), 'startIndex 0 is read as 1');
  const neg = assertListResponse(await q({ startIndex: -5, count: 3 }), { total: want.length, itemsPerPage: 3 });
  assert.deepEqual(idsOf(neg.Resources), want.slice(0, 3), 'negative startIndex is read as 1');
  // the last page holds exactly the rest
  const last = assertListResponse(await q({ startIndex: want.length - 1, count: 10 }), { total: want.length, itemsPerPage: 2 });
  assert.deepEqual(idsOf(last.Resources), want.slice(-2));
  // an indexed filter pages in id order too
  const uid = U[0].id;
  const gw2 = expectIds(G, (g) => memberIds(g).includes(uid));
  const gp = await walkPages(async (s, n) => assertListResponse(await c.get('/Groups' + listQuery({ filter: `members[value eq "${uid}"]`, startIndex: s, count: n }))), 1);
  assert.deepEqual(idsOf(gp.resources), gw2);
});

test('concurrent scans: identical replies in parallel; each reply is one consistent snapshot while writes land', async () => {
  const f = 'name.givenName sw "a" or title eq "Manager"';
  const path = '/Users' + listQuery({ filter: f, startIndex: 2, count: 5 });
  const ref = await c.get(path);
  assert.equal(ref.status, 200, ref.body);
  const many = await Promise.all(Array.from({ length: 24 }, () => c.get(path)));
  for (const r of many) assert.equal(r.body, ref.body, 'same reply for the same scan');

  // scans racing writes: new users that match join; every reply is self-consistent
  const base = expectIds(U, (u) => ciSw(u.name.givenName, 'a') || ciEq(u.title, 'Manager'));
  const full = '/Users' + listQuery({ filter: f, count: 1000 });
  const writes = (async () => {
    const made = [];
    for (let i = 0; i < 12; i++) {
      const r = await c.post('/Users', { schemas: [URN.USER], userName: `aa.race${i}@race.test`, name: { givenName: `Aaron${i}` } });
      assert.equal(r.status, 201, r.body);
      made.push(r.json.id);
    }
    return made;
  })();
  const reads = Promise.all(Array.from({ length: 30 }, async (_, k) => {
    await sleep(k * 3);
    return assertListResponse(await c.get(full));
  }));
  const [made, lists] = await Promise.all([writes, reads]);
  for (const l of lists) {
    assert.equal(l.totalResults, l.Resources.length, 'totalResults = resources of that snapshot');
    const ids = idsOf(l.Resources);
    assert.deepEqual(ids, [...ids].sort(), 'id order');
    for (const id of base) assert.ok(ids.includes(id), 'every original match is in every snapshot');
    const extra = ids.filter((id) => !base.includes(id));
    for (const id of extra) assert.ok(made.includes(id), 'only the racing users join');
  }
  const after = await filterIds(c, 'Users', f);
  assert.deepEqual(after, [...base, ...made].sort(), 'after the writes: all of them');
  for (const id of made) assert.equal((await c.del(`/Users/${id}`)).status, 204);
  assert.deepEqual(await filterIds(c, 'Users', f), base);
});

test('clients that hang up during a scan do not hurt the server', async () => {
  const path = '/t/acme/scim/v2/Users' + listQuery({ filter: 'emails[value co "corp"] or title pr', count: 1000 });
  for (let i = 0; i < 20; i++) {
    const conn = await connect(gw.port);
    await conn.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${acme.token}\r\n\r\n`);
    if (i % 2) await sleep(1);
    conn.destroy();
  }
  await sleep(100);
  await assertHealthy(gw.port);
  assert.equal((await filterIds(c, 'Users', 'title pr or emails[value co "corp"]')).length,
    expectIds(U, (u) => present(u.title) || emails(u).some((e) => ciCo(e.value, 'corp'))).length);
});

test('invalid filters → 400 invalidFilter with the position (GET, .search, root .search)', async () => {
  const bad = [
    ['userName xx "a"', 10], ['emails[type eq "work"', 22], ['userName eq "a" )', 17],
    ['userName eq'], ['(userName eq "a"'], ['userName eq "unterminated'], ['emails[type eq "work"]]'],
    ['userName eq "a" and'], ['or userName eq "a"'], ['not userName eq "a"'], ['userName eq bare'],
    ['title pr "x"'], ['title eq "a" or or title eq "b"'], ['"a" eq userName'], ['title eq "a" title eq "b"'],
    ['emails[type eq "work"].'], ['emails[type eq "work"].value'], ['[type eq "x"]'], ['()'], ['title eq 1.2.3'],
    ['title eq tru'], ['name.givenName.x eq "a"'], [`${E}: eq "a"`], ['emails[]'], ['active eq True1'],
    ['title eq "a" and not ()'], ['title eq\t'],
  ];
  for (const [f, pos] of bad) {
    const rs = [
      ['GET /Users', await c.get('/Users' + listQuery({ filter: f }))],
      ['GET /Groups', await c.get('/Groups' + listQuery({ filter: f }))],
      ['POST /Users/.search', await search(c, '/Users', { filter: f })],
      ['POST /Groups/.search', await search(c, '/Groups', { filter: f })],
      ['POST /.search', await search(c, '', { filter: f })],
    ];
    for (const [what, r] of rs) {
      const j = assertScimError(r, 400, { scimType: 'invalidFilter', detail: /position \d+/i });
      const n = Number(/position (\d+)/i.exec(j.detail)[1]);
      assert.ok(n >= 1 && n <= f.length + 1, `${what} ${JSON.stringify(f)}: position ${n} within the filter`);
      if (pos) assert.equal(n, pos, `${what} ${JSON.stringify(f)}: position (${j.detail})`);
    }
  }
  await assertHealthy(gw.port);
});

test('POST /Users/.search and /Groups/.search return what the GET forms return', async () => {
  const uid = U[2].id;
  const cases = [
    ['Users', {}],
    ['Users', { filter: 'title eq "Engineer"' }],
    ['Users', { filter: `userName eq "${U[4].userName}"` }],
    ['Users', { filter: `emails[type eq "work" and value co "@corp-a"] or ${E}:department eq "Ops"`, startIndex: 2, count: 4 }],
    ['Users', { filter: 'active eq true', count: 5, attributes: ['userName', 'name.givenName'] }],
    ['Users', { filter: 'active eq false', excludedAttributes: ['emails', 'groups'] }],
    ['Users', { startIndex: 11, count: 10, attributes: [`${E}:employeeNumber`] }],
    ['Groups', {}],
    ['Groups', { filter: 'displayName co "eng"' }],
    ['Groups', { filter: `members[value eq "${uid}"]`, excludedAttributes: ['members'] }],
    ['Groups', { filter: 'members pr', startIndex: 2, count: 2, attributes: ['displayName'] }],
  ];
  for (const [res, fields] of cases) {
    const g = await c.get(`/${res}` + listQuery(fields));
    const s = await search(c, `/${res}`, fields);
    assertListResponse(g);
    assertListResponse(s);
    assert.deepEqual(s.json, g.json, `${res} ${JSON.stringify(fields)}: .search = GET`);
    assert.match(String(s.headers['content-type']), /^application\/scim\+json/);
  }
  // attribute and field names of the SearchRequest are case-insensitive
  const a = await c.post('/Users/.search', { schemas: [SEARCH_URN], Filter: 'title pr', StartIndex: 1, COUNT: 3 });
  assert.deepEqual(a.json, (await c.get('/Users' + listQuery({ filter: 'title pr', count: 3 }))).json);
  // a search is a read: nothing is created, no token no answer
  assertListResponse(await c.get('/Users?count=0'), { total: 30 });
  assertScimError(await scimCall(gw.port, 'acme', null, 'POST', '/Users/.search', searchBody({ filter: 'title pr' })), 401);
  assertScimError(await scimCall(gw.port, 'acme', 'mgs_' + 'x'.repeat(43), 'POST', '/.search', searchBody()), 401);
});

test('POST /.search (root): users then groups, one totalResults, pages across the boundary', async () => {
  const all = [...idsOf(U), ...idsOf(G)];
  const r0 = assertListResponse(await search(c, '', { count: 1000 }), { total: 36 });
  assert.deepEqual(idsOf(r0.Resources), all, 'users (id order) then groups (id order)');
  assert.ok(r0.Resources.slice(0, 30).every((r) => r.meta.resourceType === 'User'));
  assert.ok(r0.Resources.slice(30).every((r) => r.meta.resourceType === 'Group'));
  for (const size of [1, 7, 29, 30, 31]) {
    const { resources, total } = await walkPages(async (s, n) => assertListResponse(await search(c, '', { startIndex: s, count: n })), size);
    assert.equal(total, 36);
    assert.deepEqual(idsOf(resources), all, `root pages of ${size}`);
  }
  // a filter applies to both types
  const f = 'displayName co "e"';
  const want = [...expectIds(U, (u) => ciCo(u.displayName, 'e')), ...expectIds(G, (g) => ciCo(g.displayName, 'e'))];
  const { resources } = await walkPages(async (s, n) => assertListResponse(await search(c, '', { filter: f, startIndex: s, count: n })), 4);
  assert.deepEqual(idsOf(resources), want, `root ${f}`);
  const r1 = assertListResponse(await search(c, '', { filter: 'displayName eq "Everyone" or userName eq "' + U[0].userName + '"' }), { total: 2 });
  assert.deepEqual(idsOf(r1.Resources), [U[0].id, group('Everyone').id]);
  // a page that starts among the groups
  const p = assertListResponse(await search(c, '', { startIndex: 32, count: 3 }), { total: 36, startIndex: 32, itemsPerPage: 3 });
  assert.deepEqual(idsOf(p.Resources), all.slice(31, 34));
  // attribute selection applies to both
  const r2 = assertListResponse(await search(c, '', { attributes: ['displayName'], count: 1000 }), { total: 36 });
  for (const r of r2.Resources) assert.deepEqual(Object.keys(r).sort(), ['displayName', 'id', 'meta', 'schemas']);
});

test('bad SearchRequests → 400; .search takes only POST (405)', async () => {
  const badFields = [
    { filter: 5 }, { filter: ['title pr'] }, { filter: {} }, { startIndex: '1' }, { startIndex: 1.5 }, { count: '10' },
    { count: true }, { attributes: 'userName' }, { attributes: [1] }, { attributes: [null] }, { excludedAttributes: {} },
    { excludedAttributes: 'emails' }, { unknownField: 1 }, { filterx: 'title pr' },
  ];
  for (const where of ['/Users', '/Groups', '']) {
    for (const f of badFields) {
      const r = await search(c, where, f);
      assertScimError(r, 400);
      assert.match(r.json.scimType ?? '', /^(invalidValue|invalidSyntax)$/, `${where}/.search ${JSON.stringify(f)}: ${r.body}`);
    }
    for (const body of ['[]', '"x"', '{', '{"filter":"a","filter":"b"}']) {
      assertScimError(await c.call('POST', `${where}/.search`, body), 400, { scimType: 'invalidSyntax' });
    }
    for (const m of ['GET', 'PUT', 'PATCH', 'DELETE']) {
      const r = await c.call(m, `${where}/.search`, m === 'GET' || m === 'DELETE' ? undefined : searchBody({ filter: 'title pr' }));
      assertScimError(r, 405);
    }
  }
  assertListResponse(await c.get('/Users?count=0'), { total: 30 });
  assertListResponse(await c.get('/Groups?count=0'), { total: 6 });
  await assertHealthy(gw.port);
});
