// tests/tools/run-integration.mjs — what `node --test` does for
// tests/run.sh, with the files started in the order given: node 20's
// command line sorts its file arguments, so a slow file named late in the
// alphabet started last and kept one slot busy after the others ran dry.
// tests/run.sh puts the files marked "// ci-slow" first.
//
//   node tests/tools/run-integration.mjs CONCURRENCY TIMEOUT_MS FILE...
//
// Prints the TAP report (node:test/reporters' tap, as --test-reporter=tap)
// and exits 1 when a test (or a file) failed, as `node --test` does. Each
// file runs in its own process, as with `node --test`.
//
// It also starts the pass's shared server-everything first and hands its URL
// to every file (lib/everything.mjs's SHARED_ENV; lib/mcp.mjs's
// startEverything says who gets it), and stops it at the end.
import { run } from 'node:test';
import { tap } from 'node:test/reporters';
import { spawnEverything, SHARED_ENV } from '../integration/lib/everything.mjs';

const [concurrency, timeout, ...files] = process.argv.slice(2);
if (!(Number(concurrency) >= 1) || !(Number(timeout) >= 1) || files.length === 0) {
  console.error('usage: node tests/tools/run-integration.mjs CONCURRENCY TIMEOUT_MS FILE...');
  process.exit(2);
}
let shared = null;
let ending = false;
try {
  shared = await spawnEverything();
  process.env[SHARED_ENV] = shared.url;
  shared.exited.then((x) => {
    if (!ending) console.error(`run-integration: the shared server-everything exited mid-pass (code ${x.code}, signal ${x.signal}); its output:\n${shared.output().slice(-3000)}`);
  });
} catch (e) {
  console.error(`run-integration: no shared server-everything (each file starts its own): ${e.message}`);
}
process.on('exit', () => { ending = true; shared?.proc.kill('SIGKILL'); });
let failed = false;
const stream = run({ files, concurrency: Number(concurrency), timeout: Number(timeout) });
stream.on('test:fail', () => { failed = true; });
stream.on('end', () => {
  if (failed) process.exitCode = 1;
  ending = true;
  shared?.proc.kill('SIGTERM');
});
stream.compose(tap).pipe(process.stdout);
