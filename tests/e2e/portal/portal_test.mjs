#!/usr/bin/env node
// End-to-end: the web portal in Debian's Chromium (headless), driven by playwright-core,
// against a real keyfoundryd. It walks the seed's customer-managed-key flow through the UI
// only (docs/portal.md): sign in, resource group, vault with purge protection and an RSA 2048
// key, an account with a system-assigned identity, the identity granted get/wrapKey/unwrapKey,
// CMK enabled on the Encryption blade, a file uploaded, the key rotated, the access policy
// removed (the account shows KeyInaccessible and the download fails), access restored, data
// reprocessed. Each step saves a screenshot to $KF_PORTAL_SCREENSHOTS (a temporary directory
// when unset; CTest sets one in the build tree).
//
//   node tests/e2e/portal/portal_test.mjs --keyfoundryd build/release/src/server/keyfoundryd
//
// tests/e2e/js/support/launch.mjs starts keyfoundryd and runs portal_cases.mjs in a second
// process. Chromium trusts the deployment's CA the way a user's browser would: a fresh NSS
// database (certutil from libnss3-tools) holding the CA as a trusted root, in a temporary
// HOME given only to Chromium. No certificate check is disabled.
import { fileURLToPath } from "node:url";

import { isTestProcess, launch } from "../js/support/launch.mjs";

if (!isTestProcess()) {
  process.exitCode = await launch({
    name: "portal_test",
    testFile: fileURLToPath(import.meta.url),
    packages: ["playwright-core"],
  });
} else {
  await import("./portal_cases.mjs");
}
