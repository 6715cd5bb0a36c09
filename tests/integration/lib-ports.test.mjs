// refusedPort (lib/gateway.mjs): the port tests use for "could not connect"
// lies outside the kernel's ephemeral range as this machine configures it
// (a listen(0) elsewhere can never take it), and is refused right now.
// ci-variants: build-w1 (no gateway: nothing to vary)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { refusedPort, refusedPortWindow, connectRefused } from './lib/gateway.mjs';

test('the window avoids ip_local_port_range as configured', () => {
  assert.deepEqual(refusedPortWindow('32768\t60999\n'), [20000, 32767]); // Debian's default
  assert.deepEqual(refusedPortWindow(null), [20000, 32767]); // unreadable: the default assumed
  assert.deepEqual(refusedPortWindow('10000 65000'), [1024, 9999]); // a range that starts low
  assert.deepEqual(refusedPortWindow('1024 40000'), [40001, 65535]); // nothing below: above it
  assert.throws(() => refusedPortWindow('1024 65535'), /leaves no room/);
});

test('refusedPort: outside this machine\'s ephemeral range, and refused', async () => {
  const [lo, hi] = fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
  for (let i = 0; i < 5; i++) {
    const p = await refusedPort();
    assert.ok(p < lo || p > hi, `port ${p} lies in the ephemeral range ${lo}-${hi}`);
    assert.ok(p >= 1024 && p <= 65535, `port ${p}`);
    assert.equal(await connectRefused(p), true);
  }
});
