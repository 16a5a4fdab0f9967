#!/usr/bin/env node
// End-to-end: keyfoundryd's key vault driven by the official Azure SDK for JavaScript
// (@azure/keyvault-keys from the npm registry, pinned by package-lock.json).
//
//   node tests/e2e/js/keyvault_sdk_test.mjs --keyfoundryd build/release/src/server/keyfoundryd
//
// (or KEYFOUNDRYD=... in the environment; other arguments are Node.js options for the test
// process, e.g. --test-name-pattern=wrapKey). It runs in two processes:
//  1. the launcher (this file, run as above) checks node_modules, starts its own keyfoundryd
//     on a free port with a fresh data directory, and runs
//  2. this file again as the test process, with NODE_EXTRA_CA_CERTS set to the deployment's CA
//     (Node reads that variable only at start-up, and the CA exists only once keyfoundryd has
//     initialised its data directory: hence the second process) and with
//     support/resolve-localhost.mjs preloaded (*.localhost → 127.0.0.1, no client option).
// The test process creates a service principal, a resource group and an access-policy vault
// over ARM-shaped HTTPS, then uses KeyClient and CryptographyClient with default options:
// only the credential is given. The launcher stops keyfoundryd with SIGTERM and prints its
// stderr if anything failed.
import { spawn } from "node:child_process";
import { existsSync, readFileSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));

if (process.env.KF_E2E_TEST_PROCESS !== "1") {
  process.exitCode = await launch();
} else {
  await import("./keyvault_sdk_cases.mjs");
}

function fail(message) {
  console.error(`keyvault_sdk_test: ${message}`);
  return 1;
}

async function launch() {
  const args = process.argv.slice(2);
  let binary = process.env.KEYFOUNDRYD ?? "";
  const i = args.indexOf("--keyfoundryd");
  if (i >= 0) {
    binary = args[i + 1] ?? "";
    args.splice(i, 2);
  }
  if (!binary) return fail("pass the keyfoundryd binary as --keyfoundryd PATH or $KEYFOUNDRYD");

  const major = Number(process.versions.node.split(".")[0]);
  if (major < 20) {
    return fail(`Node.js ${process.versions.node} is too old: @azure/keyvault-keys needs 20+`);
  }
  // The SDK comes from npm: scripts/install-deps.sh runs `npm ci` here. A missing or stale
  // node_modules is a failure, never a silent pass.
  const installed = join(HERE, "node_modules", ".package-lock.json");
  const lock = join(HERE, "package-lock.json");
  if (!existsSync(join(HERE, "node_modules", "@azure", "keyvault-keys", "package.json"))) {
    return fail(
      `${join(HERE, "node_modules")} has no @azure/keyvault-keys: run scripts/install-deps.sh ` +
        `(or \`npm ci --no-audit --no-fund\` in ${HERE})`,
    );
  }
  if (existsSync(installed) && statSync(installed).mtimeMs < statSync(lock).mtimeMs) {
    return fail(
      `node_modules in ${HERE} is older than package-lock.json: run scripts/install-deps.sh ` +
        `(or \`npm ci --no-audit --no-fund\` there)`,
    );
  }

  const { startKeyfoundryd } = await import("./support/keyfoundryd.mjs");
  let server;
  try {
    server = await startKeyfoundryd(binary);
  } catch (e) {
    return fail(e.message);
  }
  const sdkVersion = JSON.parse(
    readFileSync(join(HERE, "node_modules", "@azure", "keyvault-keys", "package.json"), "utf8"),
  ).version;
  console.error(`@azure/keyvault-keys ${sdkVersion}, Node.js ${process.versions.node}, ` +
    `keyfoundryd ${binary} on port ${server.port}`);

  const child = spawn(
    process.execPath,
    ["--import", join(HERE, "support", "resolve-localhost.mjs"), "--test-reporter=spec", ...args,
      fileURLToPath(import.meta.url)],
    {
      stdio: "inherit",
      env: {
        ...process.env,
        KF_E2E_TEST_PROCESS: "1",
        NODE_EXTRA_CA_CERTS: server.caPath,
        KF_E2E_PORT: String(server.port),
        KF_E2E_TENANT: server.tenant,
        KF_E2E_SUBSCRIPTION: server.subscription,
      },
    },
  );
  const forward = (signal) => child.kill(signal);
  process.on("SIGINT", forward);
  process.on("SIGTERM", forward);
  const testStatus = await new Promise((resolve) => {
    child.on("exit", (code, signal) => resolve(code ?? signal));
    child.on("error", (e) => {
      console.error(e);
      resolve(-1);
    });
  });
  const serverStatus = await server.stop();
  const failed = testStatus !== 0 || serverStatus !== 0;
  if (failed) {
    console.error(`\n----- keyfoundryd stderr (exit code ${serverStatus}) -----`);
    console.error(server.log());
    console.error("----- end of keyfoundryd stderr -----");
    if (testStatus === 0) console.error(`keyfoundryd exited with ${serverStatus} on SIGTERM (expected 0)`);
  }
  await server.cleanup();
  return failed ? 1 : 0;
}
