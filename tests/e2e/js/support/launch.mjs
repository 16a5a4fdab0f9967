// Test-only: the launcher of an end-to-end test file (keyvault_sdk_test.mjs,
// openai_sdk_test.mjs), run as `node FILE --keyfoundryd PATH [node test options]` (or with
// KEYFOUNDRYD=... in the environment). It
//  1. checks that the npm packages the test needs are installed and not older than
//     package-lock.json (scripts/install-deps.sh runs `npm ci`: a missing or stale
//     node_modules is a failure, never a silent pass);
//  2. starts its own keyfoundryd on a free port with a fresh data directory;
//  3. runs the test file again as the test process, with NODE_EXTRA_CA_CERTS set to the
//     deployment's CA (Node reads that variable only at start-up, and the CA exists only once
//     keyfoundryd has initialised its data directory: hence the second process) and with
//     resolve-localhost.mjs preloaded (*.localhost → 127.0.0.1, no client option);
//  4. stops keyfoundryd with SIGTERM and prints its stderr if anything failed.
// The test process sees KF_E2E_TEST_PROCESS=1, KF_E2E_PORT, KF_E2E_TENANT, KF_E2E_SUBSCRIPTION.
import { spawn } from "node:child_process";
import { existsSync, readFileSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { startKeyfoundryd } from "./keyfoundryd.mjs";

const JS_DIR = join(dirname(fileURLToPath(import.meta.url)), "..");

export const isTestProcess = () => process.env.KF_E2E_TEST_PROCESS === "1";

// `name` labels messages; `testFile` is the file to run as the test process; `packages` the npm
// packages it needs (their versions are printed). Returns the exit code.
export async function launch({ name, testFile, packages }) {
  const fail = (message) => {
    console.error(`${name}: ${message}`);
    return 1;
  };
  const args = process.argv.slice(2);
  let binary = process.env.KEYFOUNDRYD ?? "";
  const i = args.indexOf("--keyfoundryd");
  if (i >= 0) {
    binary = args[i + 1] ?? "";
    args.splice(i, 2);
  }
  if (!binary) return fail("pass the keyfoundryd binary as --keyfoundryd PATH or $KEYFOUNDRYD");

  const major = Number(process.versions.node.split(".")[0]);
  if (major < 20) return fail(`Node.js ${process.versions.node} is too old: the SDKs need 20+`);
  const installed = join(JS_DIR, "node_modules", ".package-lock.json");
  const lock = join(JS_DIR, "package-lock.json");
  const versions = [];
  for (const pkg of packages) {
    const manifest = join(JS_DIR, "node_modules", ...pkg.split("/"), "package.json");
    if (!existsSync(manifest)) {
      return fail(
        `${join(JS_DIR, "node_modules")} has no ${pkg}: run scripts/install-deps.sh ` +
          `(or \`npm ci --no-audit --no-fund\` in ${JS_DIR})`,
      );
    }
    versions.push(`${pkg} ${JSON.parse(readFileSync(manifest, "utf8")).version}`);
  }
  if (existsSync(installed) && statSync(installed).mtimeMs < statSync(lock).mtimeMs) {
    return fail(
      `node_modules in ${JS_DIR} is older than package-lock.json: run scripts/install-deps.sh ` +
        `(or \`npm ci --no-audit --no-fund\` there)`,
    );
  }

  let server;
  try {
    server = await startKeyfoundryd(binary);
  } catch (e) {
    return fail(e.message);
  }
  console.error(`${versions.join(", ")}, Node.js ${process.versions.node}, ` +
    `keyfoundryd ${binary} on port ${server.port}`);

  const child = spawn(
    process.execPath,
    ["--import", join(JS_DIR, "support", "resolve-localhost.mjs"), "--test-reporter=spec", ...args,
      testFile],
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
