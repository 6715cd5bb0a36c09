// tests/integration/lib/upstream-shim.cjs — preloaded (`node --require`) into
// upstream MCP servers started by the tests (server-everything).
//
// server-everything calls `app.listen(PORT)`, which binds every interface.
// Tests must only ever listen on loopback, so every net.Server#listen call is
// rewritten to bind 127.0.0.1 (a unix-socket path or a handle is left alone).
// With MCP_UPSTREAM_SHIM_REPORT set, each bound TCP address is reported on
// stderr as `UPSTREAM-SHIM listening {"address","family","port"}` (so PORT=0
// can be used without a free-port race).
'use strict';
const net = require('node:net');

const origListen = net.Server.prototype.listen;

net.Server.prototype.listen = function listen(...args) {
  const a0 = args[0];
  if (a0 !== null && typeof a0 === 'object' && !Array.isArray(a0)) {
    // listen(options[, cb]) — keep path/handle/fd listeners as they are
    if (a0.path === undefined && a0.handle === undefined && a0._handle === undefined && a0.fd === undefined) {
      args[0] = { ...a0, host: '127.0.0.1' };
    }
  } else if (typeof a0 === 'number' || (typeof a0 === 'string' && /^\d+$/.test(a0))) {
    // listen(port[, host][, backlog][, cb])
    const port = Number(a0);
    let rest = args.slice(1);
    if (typeof rest[0] === 'string' || rest[0] === null || rest[0] === undefined) {
      if (rest.length > 0 && typeof rest[0] !== 'function') rest = rest.slice(1);
    }
    args = [port, '127.0.0.1', ...rest];
  } else if (typeof a0 === 'function' || a0 === undefined) {
    // listen([cb]) — random port on all interfaces otherwise
    args = [0, '127.0.0.1', ...args.filter((x) => x !== undefined)];
  }
  if (process.env.MCP_UPSTREAM_SHIM_REPORT) {
    this.once('listening', () => {
      const a = this.address();
      if (a && typeof a === 'object') process.stderr.write(`UPSTREAM-SHIM listening ${JSON.stringify(a)}\n`);
    });
  }
  return origListen.apply(this, args);
};
