#!/usr/bin/env node
// End-to-end: keyfoundryd's AI data plane driven by the official OpenAI SDK for JavaScript
// (`openai` from the npm registry, its AzureOpenAI client, pinned by package-lock.json).
//
//   node tests/e2e/js/openai_sdk_test.mjs --keyfoundryd build/release/src/server/keyfoundryd
//
// support/launch.mjs starts keyfoundryd and runs openai_sdk_cases.mjs in a second process that
// trusts its CA and resolves *.localhost. The cases set up, over ARM-shaped HTTPS, an account
// whose content is encrypted under a customer-managed key (vault with purge protection, RSA
// 2048 key, the account's managed identity granted get/wrapKey/unwrapKey, CMK on); then the SDK
// uploads a training file, creates a fine-tuning job, waits for it, lists models, and, once the
// fine-tuned model is deployed, gets chat completions from it, plain and streamed.
import { fileURLToPath } from "node:url";

import { isTestProcess, launch } from "./support/launch.mjs";

if (!isTestProcess()) {
  process.exitCode = await launch({
    name: "openai_sdk_test",
    testFile: fileURLToPath(import.meta.url),
    packages: ["openai"],
  });
} else {
  await import("./openai_sdk_cases.mjs");
}
