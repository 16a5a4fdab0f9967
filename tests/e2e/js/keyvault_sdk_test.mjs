#!/usr/bin/env node
// End-to-end: keyfoundryd's key vault driven by the official Azure SDK for JavaScript
// (@azure/keyvault-keys from the npm registry, pinned by package-lock.json).
//
//   node tests/e2e/js/keyvault_sdk_test.mjs --keyfoundryd build/release/src/server/keyfoundryd
//
// (or KEYFOUNDRYD=... in the environment; other arguments are Node.js options for the test
// process, e.g. --test-name-pattern=wrapKey). support/launch.mjs starts keyfoundryd and runs
// keyvault_sdk_cases.mjs in a second process that trusts its CA. The cases create a service
// principal, a resource group and an access-policy vault over ARM-shaped HTTPS, then use
// KeyClient and CryptographyClient with default options: only the credential is given.
import { fileURLToPath } from "node:url";

import { isTestProcess, launch } from "./support/launch.mjs";

if (!isTestProcess()) {
  process.exitCode = await launch({
    name: "keyvault_sdk_test",
    testFile: fileURLToPath(import.meta.url),
    packages: ["@azure/keyvault-keys"],
  });
} else {
  await import("./keyvault_sdk_cases.mjs");
}
