// Preloaded into Haraka (NODE_OPTIONS=--require) by tests/integration/test_outside_haraka.py:
// every DNS resolver node makes, the module's own and each `new Resolver()` (dns-list makes
// its own at load), asks HARAKA_DNS (host:port, the test's rbldnsd) instead of resolv.conf.
'use strict'
const dns = require('node:dns')
const server = process.env.HARAKA_DNS
if (server) {
  dns.setServers([server])
  dns.promises.setServers([server])
  for (const ns of [dns, dns.promises]) {
    const Base = ns.Resolver
    ns.Resolver = class extends Base {
      constructor(...args) {
        super(...args)
        this.setServers([server])
      }
    }
  }
}
