// tests/integration/lib/stalled.mjs — what the heavy-read tests share: an
// audit chain long enough that its export outlasts what loopback sockets
// buffer, and an export whose client never reads.
//
//   fillAuditChain(url, token, n)        n tools/call of echo with ~24 KB of
//                                        arguments (one record each); more
//                                        than 256 (one export chunk) to stall
//   stalledExport(port, tenant, token)   the export's socket, paused once its
//                                        200 head arrived (the export holds
//                                        its slot); never read after that
//   heavyOpen(gw)                        mcpgate_heavy_reads_open
import assert from 'node:assert/strict';
import net from 'node:net';

import { scrapeMetrics, metricValue } from './gateway.mjs';
import { rawSession } from './mcp.mjs';

export async function fillAuditChain(url, token, n) {
  const s = await rawSession(url, token);
  const message = 'x'.repeat(24 * 1024);
  for (let i = 0; i < n; i += 10) {
    const rs = await Promise.all(Array.from({ length: Math.min(10, n - i) }, () => s.request('tools/call', { name: 'echo', arguments: { message } })));
    for (const r of rs) assert.equal(r.status, 200, r.body);
  }
}

export function stalledExport(port, tenant, token) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1', () => {
      sock.write(`GET /admin/v1/tenants/${tenant}/audit/export HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n\r\n`);
    });
    sock.once('data', (d) => {
      sock.pause();
      const head = d.toString('latin1', 0, 12);
      if (head === 'HTTP/1.1 200') resolve(sock);
      else { sock.destroy(); reject(new Error(`the export did not start: ${d.toString('latin1', 0, 200)}`)); }
    });
    sock.on('error', reject);
  });
}

export async function heavyOpen(gw) {
  return metricValue(await scrapeMetrics(gw), 'mcpgate_heavy_reads_open');
}
