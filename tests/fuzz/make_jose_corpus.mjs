// tests/fuzz/make_jose_corpus.mjs — writes the seed corpus of
// tests/fuzz/fuzz_jose.c into tests/fuzz/corpus/jose/.
//
// Real inputs from the `jose` npm package (the JOSE library oidc-provider
// signs its ID tokens with; tests/node_modules/jose, installed by
// `make deps` as oidc-provider's dependency): RSA-2048 and P-256 keys, a
// JWKS as a provider publishes it, and ID tokens signed with them — good
// ones and the refusals the verifier must reach (rotated kid, wrong key,
// none/HS256/PS256/ES384, expired, aud without azp, nonce mismatch, a weak
// RSA key and an off-curve EC point in the JWKS).
//
// Each file is `<JWKS JSON>\n<compact JWS>`, the split fuzz_jose.c makes.
// The claims use the expectations fixed in fuzz_jose.c (issuer, client id,
// nonce, clock), so the good seeds pass every check and the fuzzer starts
// from the deepest path. Keys are fresh on every run: rerun it whenever the
// seeds should change, and commit the output.
//
//   node tests/fuzz/make_jose_corpus.mjs
import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { exportJWK, generateKeyPair, SignJWT, UnsecuredJWT } from 'jose';

// must match fuzz_jose.c
const ISSUER = 'http://127.0.0.1:3000/oidc';
const CLIENT = 'mcpgate-acme';
const NONCE = 'n-0S6_WzA2Mj';
const NOW = 1767225600; // 2026-01-01T00:00:00Z, the fuzzer's clock

const out = join(dirname(fileURLToPath(import.meta.url)), 'corpus', 'jose');
mkdirSync(out, { recursive: true });
for (const f of readdirSync(out)) rmSync(join(out, f));

const pair = async (alg) => generateKeyPair(alg, { extractable: true });
const pub = async (key, kid, alg) => ({ ...(await exportJWK(key)), kid, alg, use: 'sig' });

const rsa = await pair('RS256');
const rsaOther = await pair('RS256');
const ec = await pair('ES256');
const ecOther = await pair('ES256');
const ps = await pair('PS256');
const ec384 = await pair('ES384');

const jwkRsa = await pub(rsa.publicKey, 'rsa-1', 'RS256');
const jwkEc = await pub(ec.publicKey, 'ec-1', 'ES256');
const jwks = { keys: [jwkRsa, jwkEc] };

const claims = (extra = {}) => ({
  iss: ISSUER, sub: '00u1abcd', aud: CLIENT, nonce: NONCE,
  iat: NOW - 5, exp: NOW + 3600, auth_time: NOW - 30, ...extra,
});
const sign = (payload, key, header) => new SignJWT(payload).setProtectedHeader(header).sign(key);

const seeds = {
  'rs256-good': [jwks, await sign(claims(), rsa.privateKey, { alg: 'RS256', kid: 'rsa-1', typ: 'JWT' })],
  'es256-good': [jwks, await sign(claims(), ec.privateKey, { alg: 'ES256', kid: 'ec-1' })],
  'rs256-no-kid': [{ keys: [{ ...jwkRsa, kid: undefined }] },
    await sign(claims(), rsa.privateKey, { alg: 'RS256' })],
  'rich-claims': [jwks, await sign(claims({
    email: 'ada@example.com', email_verified: true, name: 'Ada', groups: ['eng', 'ops'],
    amr: ['pwd', 'mfa'], at_hash: 'x4Q8HQ1_qP3Xg9iH3yKzhw', sid: 's-1', nbf: NOW - 5, oid: 'a1b2',
  }), ec.privateKey, { alg: 'ES256', kid: 'ec-1', typ: 'JWT' })],
  'aud-array-azp': [jwks, await sign(claims({ aud: [CLIENT, 'api://other'], azp: CLIENT }),
    rsa.privateKey, { alg: 'RS256', kid: 'rsa-1' })],
  'aud-array-no-azp': [jwks, await sign(claims({ aud: [CLIENT, 'api://other'] }),
    rsa.privateKey, { alg: 'RS256', kid: 'rsa-1' })],
  'expired': [jwks, await sign(claims({ iat: NOW - 7200, exp: NOW - 3600 }),
    ec.privateKey, { alg: 'ES256', kid: 'ec-1' })],
  'nonce-mismatch': [jwks, await sign(claims({ nonce: 'n-other' }), rsa.privateKey, { alg: 'RS256', kid: 'rsa-1' })],
  'kid-rotated': [jwks, await sign(claims(), rsaOther.privateKey, { alg: 'RS256', kid: 'rsa-0' })],
  'wrong-key': [jwks, await sign(claims(), ecOther.privateKey, { alg: 'ES256', kid: 'ec-1' })],
  'alg-none': [jwks, new UnsecuredJWT(claims()).encode()],
  'alg-hs256': [jwks, await sign(claims(), new TextEncoder().encode('a-shared-secret-of-32-bytes-long'),
    { alg: 'HS256', kid: 'rsa-1' })],
  'alg-ps256': [{ keys: [...jwks.keys, await pub(ps.publicKey, 'ps-1', 'PS256')] },
    await sign(claims(), ps.privateKey, { alg: 'PS256', kid: 'ps-1' })],
  'alg-es384': [{ keys: [...jwks.keys, await pub(ec384.publicKey, 'ec384-1', 'ES384')] },
    await sign(claims(), ec384.privateKey, { alg: 'ES384', kid: 'ec384-1' })],
  'jwks-mixed': [{ keys: [
    { kty: 'oct', kid: 'hmac-1', k: 'c2VjcmV0' },
    { ...(await exportJWK(rsaOther.publicKey)), kid: 'enc-1', use: 'enc' },
    { ...(await exportJWK(ec384.publicKey)), kid: 'ec384-1' },
    { ...jwkEc, key_ops: ['verify'] }, jwkRsa,
  ] }, await sign(claims(), ec.privateKey, { alg: 'ES256', kid: 'ec-1' })],
  'jwks-rsa-1024': [{ keys: [{ ...(await exportJWK(generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey)),
    kid: 'rsa-small', use: 'sig' }, jwkEc] },
    await sign(claims(), ec.privateKey, { alg: 'ES256', kid: 'ec-1' })],
};
// an EC point off the curve: y with its last bit flipped
const y = Buffer.from(jwkEc.y, 'base64url');
y[31] ^= 1;
seeds['jwks-off-curve'] = [{ keys: [{ ...jwkEc, y: y.toString('base64url') }] }, seeds['es256-good'][1]];

for (const [name, [set, token]] of Object.entries(seeds)) {
  writeFileSync(join(out, name), `${JSON.stringify(set)}\n${token}`);
}
console.log(`make_jose_corpus: ${Object.keys(seeds).length} files in ${out}`);
