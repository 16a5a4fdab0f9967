// Makes every name under .localhost resolve to 127.0.0.1, inside this Node.js process only.
// Loaded with `node --import ./support/resolve-localhost.mjs` (keyvault_sdk_test.mjs does it).
//
// Each key vault is its own host, https://{vault}.vault.localhost:PORT/. RFC 6761 reserves
// .localhost for the loopback address, and curl and systemd-resolved answer such names
// themselves, but plain glibc does not (a Debian container has /etc/hosts with "localhost"
// only and nsswitch "files dns"), so the SDK's connection would fail with ENOTFOUND. The SDK
// is used with default client options, so instead of an option this replaces dns.lookup:
// Node's net.connect (under https.request, which the SDK's HTTP client uses, and under
// fetch) reads `dns.lookup` from the dns module when it connects to a host name. TLS still
// sees the real host name (SNI and the certificate check are unchanged); only the address
// lookup is answered here. Every other name goes to the original function.
import dns from "node:dns";
import { syncBuiltinESMExports } from "node:module";

const originalLookup = dns.lookup;

export function isLocalhostName(hostname) {
  if (typeof hostname !== "string") return false;
  const name = hostname.replace(/\.$/, "").toLowerCase();
  return name === "localhost" || name.endsWith(".localhost");
}

// dns.lookup(hostname[, options], callback): options is a family number or an object with
// `family` and `all` (net asks for all addresses when it tries several, autoSelectFamily).
function lookup(hostname, options, callback) {
  if (typeof options === "function") {
    callback = options;
    options = {};
  }
  if (!isLocalhostName(hostname)) return originalLookup.call(dns, hostname, options, callback);
  const all = typeof options === "object" && options !== null && options.all === true;
  // keyfoundryd listens on 127.0.0.1 in the tests (no IPv6 socket): IPv4 loopback always.
  process.nextTick(() => {
    if (all) callback(null, [{ address: "127.0.0.1", family: 4 }]);
    else callback(null, "127.0.0.1", 4);
  });
  return {};
}

dns.lookup = lookup;
syncBuiltinESMExports(); // `import { lookup } from "node:dns"` sees the replacement too
