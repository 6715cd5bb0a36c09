// tests/integration/lib/keys.mjs — RSA signing keys for the test issuers,
// generated once per checkout instead of once per issuer.
//
// An RSA 2048 key costs 50 ms to over a second of CPU to generate (a random
// prime search), and every stand-in Okta and upstream authorization server
// made one: ~100 per integration pass, tens of CPU seconds of a CI run that
// has a budget. So a process takes its keys from files under
// build/test-keys/ in order: its first RSA key is rsa-0.pem, its second
// rsa-1.pem, and so on (made by the first process that needs one, written
// to a temporary name and renamed, so a racing process reads a whole key or
// makes its own). Keys within one process are therefore distinct (a test
// that rotates a key or signs with "another key" still gets another one);
// processes share them, which no test can notice: each test file runs its
// own issuers and gateways, and kids stay random per key use.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../build/test-keys');
let next = 0;

/**
 * The next RSA 2048 private key of this process (a KeyObject): distinct
 * from every other this process was given.
 */
export function nextRsaPrivateKey() {
  const file = path.join(DIR, `rsa-${next++}.pem`);
  try {
    return crypto.createPrivateKey(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    if (e.code !== 'ENOENT') throw e;
  }
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  fs.mkdirSync(DIR, { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  fs.renameSync(tmp, file);
  return privateKey;
}
