// tests/tools/run-integration.mjs — what `node --test` does for
// tests/run.sh, with the files started in the order given: node 20's
// command line sorts its file arguments, so a slow file named late in the
// alphabet started last and kept one slot busy after the others ran dry.
// tests/run.sh puts them longest first (tests/integration/durations.txt).
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
import fs from 'node:fs';
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
// With RUN_INTEGRATION_TIMES=PATH, each file's line goes there at the end:
// the seconds its tests took, then when its last result arrived (seconds
// after the pass started), slowest first: what bounds a pass.
const t0 = Date.now();
const times = new Map();
function timed(d) {
  if (!d?.file || d.nesting !== 0) return;
  const e = times.get(d.file) ?? { ms: 0, last: 0 };
  e.ms += d.details?.duration_ms ?? 0;
  e.last = Date.now() - t0;
  times.set(d.file, e);
}
let failed = false;
const stream = run({ files, concurrency: Number(concurrency), timeout: Number(timeout) });
stream.on('test:fail', (d) => { failed = true; timed(d); });
stream.on('test:pass', timed);
stream.on('end', () => {
  if (failed) process.exitCode = 1;
  if (process.env.RUN_INTEGRATION_TIMES) {
    const lines = [...times].sort((a, b) => b[1].ms - a[1].ms)
      .map(([f, e]) => `${(e.ms / 1000).toFixed(1).padStart(6)} s  done at ${(e.last / 1000).toFixed(0).padStart(4)} s  ${f.replace(/.*\/tests\//, 'tests/')}`);
    fs.writeFileSync(process.env.RUN_INTEGRATION_TIMES, `${lines.join('\n')}\n`);
  }
  ending = true;
  shared?.proc.kill('SIGTERM');
});
stream.compose(tap).pipe(process.stdout);
