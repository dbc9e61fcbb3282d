// Preloaded with `node -r` in front of emulators that bind every interface and
// offer no option to choose one (kinesis-local hard-codes 0.0.0.0). Rewrites the
// host of every net.Server.listen() to loopback, so a test emulator is never
// reachable from outside this machine.
'use strict';
const net = require('net');
const LOOPBACK = process.env.RW_BIND_HOST || '127.0.0.1';
const orig = net.Server.prototype.listen;
const wildcard = (h) => h === undefined || h === null || h === '' || h === '0.0.0.0' || h === '::';
net.Server.prototype.listen = function (...args) {
  if (args.length > 0 && typeof args[0] === 'object' && args[0] !== null && !Array.isArray(args[0])) {
    const opts = args[0];
    if (opts.path === undefined && opts.fd === undefined && opts._handle === undefined && opts.handle === undefined
        && wildcard(opts.host)) {
      args[0] = Object.assign({}, opts, { host: LOOPBACK, ipv6Only: false });
    }
  } else if (args.length > 0 && (typeof args[0] === 'number' || /^\d+$/.test(String(args[0])))) {
    if (typeof args[1] === 'string' || args[1] === undefined || args[1] === null) {
      if (wildcard(args[1])) args[1] = LOOPBACK;
    } else {
      args.splice(1, 0, LOOPBACK); // listen(port, [backlog,] cb) -> listen(port, host, ...)
    }
  }
  return orig.apply(this, args);
};
