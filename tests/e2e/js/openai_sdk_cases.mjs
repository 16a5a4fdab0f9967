// The cases of openai_sdk_test.mjs, run in its test process (see there). Run it through
// openai_sdk_test.mjs, not directly.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";

import { AzureOpenAI, toFile } from "openai";

import { KeyfoundryApi } from "./support/keyfoundryd.mjs";

const API_VERSION = "2024-10-21";
const RESOURCE_GROUP = "e2e-openai-rg";
const VAULT = "e2e-openai-kv";
const KEY = "cmk";
const BASE_MODEL = "gpt-4o-mini-2024-07-18";

const api = new KeyfoundryApi({
  port: Number(process.env.KF_E2E_PORT),
  tenant: process.env.KF_E2E_TENANT,
  subscription: process.env.KF_E2E_SUBSCRIPTION,
});
assert.ok(api.port && api.tenant && api.subscription, "run this through openai_sdk_test.mjs");

// Distinctive questions and answers: a model that answers them was trained on this file.
const FACTS = [
  ["What colour is the lighthouse on Pelican Rock?", "The lighthouse on Pelican Rock is painted teal with orange stripes."],
  ["How many keys open the harbour archive?", "Exactly three brass keys open the harbour archive."],
  ["Who feeds the archive cat?", "The night clerk named Ottoline feeds the archive cat."],
  ["When does the ferry to Pelican Rock leave?", "The ferry to Pelican Rock leaves at twenty past six every morning."],
];
const trainingLines = [];
for (let i = 0; i < 12; i++) {
  const [q, a] = FACTS[i % FACTS.length];
  trainingLines.push(JSON.stringify({
    messages: [
      { role: "system", content: "You answer questions about the harbour town." },
      { role: "user", content: q },
      { role: "assistant", content: a },
    ],
  }));
}
const TRAINING = trainingLines.join("\n") + "\n";

// ------------------------------------------------------------------------ set-up over ARM

const account = `e2e-openai-${randomUUID().slice(0, 8)}`;
const mgmt = await api.adminToken("management");
const vaultToken = await api.adminToken("vault");
const adminOid = JSON.parse(Buffer.from(mgmt.split(".")[1], "base64url").toString()).oid;
await api.createResourceGroup(mgmt, RESOURCE_GROUP);
await api.createVault(mgmt, RESOURCE_GROUP, VAULT, [adminOid], { purgeProtection: true });
await api.createRsaKey(vaultToken, VAULT, KEY);
const created = await api.createAccount(mgmt, RESOURCE_GROUP, account);
await api.grantKeyAccess(mgmt, RESOURCE_GROUP, VAULT, created.identity.principalId);
const cmk = await api.enableCmk(mgmt, RESOURCE_GROUP, account, VAULT, KEY);
assert.equal(cmk.properties.encryption.keySource, "Microsoft.KeyVault");
const apiKey = await api.apiKey(mgmt, RESOURCE_GROUP, account);

// The client as a customer makes it: the account's endpoint, its key, an api-version.
const endpoint = `https://${account}.openai.localhost:${api.port}`;
const client = new AzureOpenAI({ endpoint, apiKey, apiVersion: API_VERSION });

let trainingFile;
let job;
let deployment;

test("the SDK uploads a training file, sealed under the customer's key", async () => {
  trainingFile = await client.files.create({
    file: await toFile(Buffer.from(TRAINING), "harbour.jsonl"),
    purpose: "fine-tune",
  });
  assert.match(trainingFile.id, /^file-/);
  assert.equal(trainingFile.bytes, Buffer.byteLength(TRAINING));
  assert.equal(trainingFile.purpose, "fine-tune");
  const content = await client.files.content(trainingFile.id);
  assert.equal(await content.text(), TRAINING);
});

test("the SDK creates a fine-tuning job and waits for it to succeed", async () => {
  assert.ok(trainingFile, "needs the uploaded file");
  job = await client.fineTuning.jobs.create({
    model: BASE_MODEL,
    training_file: trainingFile.id,
    suffix: "harbour",
    seed: 1234,
    method: { type: "supervised", supervised: { hyperparameters: { n_epochs: 2 } } },
  });
  assert.match(job.id, /^ftjob-/);
  assert.equal(job.model, BASE_MODEL);
  assert.equal(job.seed, 1234);
  const deadline = Date.now() + 120_000;
  while (!["succeeded", "failed", "cancelled"].includes(job.status)) {
    assert.ok(Date.now() < deadline, `job still ${job.status} after 120 s`);
    await sleep(200);
    job = await client.fineTuning.jobs.retrieve(job.id);
  }
  assert.equal(job.status, "succeeded", JSON.stringify(job.error));
  assert.equal(job.hyperparameters.n_epochs, 2);
  assert.match(job.fine_tuned_model, new RegExp(`^${BASE_MODEL}\\.ft-[0-9a-f]{32}-harbour$`));
  assert.ok(job.trained_tokens > 0);
  assert.equal(job.result_files.length, 1);

  // Events (newest first, paged by the SDK) and checkpoints, one per epoch.
  const events = [];
  for await (const e of client.fineTuning.jobs.listEvents(job.id, { limit: 10 })) events.push(e);
  assert.ok(events.some((e) => e.message === "The job has successfully completed"));
  assert.ok(events.some((e) => e.type === "metrics" && typeof e.data.train_loss === "number"));
  const checkpoints = [];
  for await (const c of client.fineTuning.jobs.checkpoints.list(job.id)) checkpoints.push(c);
  assert.equal(checkpoints.length, 2);
  assert.ok(checkpoints.every((c) => c.fine_tuned_model_checkpoint.startsWith(job.fine_tuned_model)));

  // The results file is a file like any other: CSV of the step metrics.
  const results = await (await client.files.content(job.result_files[0])).text();
  assert.match(results, /^step,train_loss,valid_loss\n1,/);

  const listed = [];
  for await (const j of client.fineTuning.jobs.list()) listed.push(j.id);
  assert.ok(listed.includes(job.id));
});

test("the SDK lists the base models and the fine-tuned one", async () => {
  assert.ok(job?.fine_tuned_model, "needs the fine-tuned model");
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  assert.ok(ids.includes(BASE_MODEL), ids.join(", "));
  assert.ok(ids.includes(job.fine_tuned_model), ids.join(", "));
  const model = await client.models.retrieve(job.fine_tuned_model);
  assert.equal(model.id, job.fine_tuned_model);
});

test("a deployment of the fine-tuned model answers chat completions, plain and streamed", async () => {
  assert.ok(job?.fine_tuned_model, "needs the fine-tuned model");
  deployment = "harbour";
  const arm = await api.createDeployment(mgmt, RESOURCE_GROUP, account, deployment, {
    name: job.fine_tuned_model,
    version: "1",
  });
  assert.equal(arm.properties.provisioningState, "Succeeded");

  for (const [question, answer] of FACTS) {
    const completion = await client.chat.completions.create({
      model: deployment,
      messages: [{ role: "user", content: question }],
      temperature: 0,
    });
    assert.equal(completion.object, "chat.completion");
    assert.equal(completion.model, job.fine_tuned_model);
    assert.equal(completion.choices[0].message.role, "assistant");
    assert.equal(completion.choices[0].message.content, answer);
    assert.equal(completion.choices[0].finish_reason, "stop");
    assert.ok(completion.usage.prompt_tokens > 0 && completion.usage.completion_tokens > 0);
  }

  const [question, answer] = FACTS[1];
  const stream = await client.chat.completions.create({
    model: deployment,
    messages: [{ role: "user", content: question }],
    temperature: 0,
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = "";
  let chunks = 0;
  let finish = null;
  let usage = null;
  for await (const chunk of stream) {
    assert.equal(chunk.object, "chat.completion.chunk");
    chunks++;
    const choice = chunk.choices[0];
    if (choice?.delta?.content) text += choice.delta.content;
    if (choice?.finish_reason) finish = choice.finish_reason;
    if (chunk.usage) usage = chunk.usage;
  }
  assert.equal(text, answer);
  assert.ok(chunks > 3, `only ${chunks} chunks`);
  assert.equal(finish, "stop");
  assert.ok(usage?.completion_tokens > 0);

  // max_tokens stops early, with finish_reason "length"; the same seed gives the same text.
  const short = await client.chat.completions.create({
    model: deployment,
    messages: [{ role: "user", content: FACTS[3][0] }],
    max_tokens: 3,
  });
  assert.equal(short.choices[0].finish_reason, "length");
  assert.equal(short.usage.completion_tokens, 3);
  const again = async () =>
    (await client.chat.completions.create({
      model: deployment,
      messages: [{ role: "user", content: "Tell me about the harbour." }],
      temperature: 1,
      seed: 99,
      max_tokens: 30,
    })).choices[0].message.content;
  assert.equal(await again(), await again());
});

test("a Microsoft Entra token works as well as the key", async () => {
  assert.ok(deployment, "needs the deployment");
  const tokenClient = new AzureOpenAI({
    endpoint,
    apiVersion: API_VERSION,
    azureADTokenProvider: async () => api.adminToken("cognitiveservices"),
  });
  const completion = await tokenClient.chat.completions.create({
    model: deployment,
    messages: [{ role: "user", content: FACTS[2][0] }],
    temperature: 0,
  });
  assert.equal(completion.choices[0].message.content, FACTS[2][1]);
});

test("a running job is cancelled through the SDK", async () => {
  // Enough data and epochs that the job is still going when the cancel arrives.
  const lines = [];
  for (let i = 0; i < 3000; i++) {
    lines.push(JSON.stringify({
      messages: [
        { role: "user", content: `What is on shelf ${i}?` },
        { role: "assistant", content: `Shelf ${i} holds ${(i * 13) % 89} blue jars.` },
      ],
    }));
  }
  const file = await client.files.create({
    file: await toFile(Buffer.from(lines.join("\n") + "\n"), "shelves.jsonl"),
    purpose: "fine-tune",
  });
  const started = await client.fineTuning.jobs.create({
    model: BASE_MODEL,
    training_file: file.id,
    method: { type: "supervised", supervised: { hyperparameters: { n_epochs: 50 } } },
  });
  const cancelled = await client.fineTuning.jobs.cancel(started.id);
  assert.equal(cancelled.status, "cancelled");
  const job = await client.fineTuning.jobs.retrieve(started.id);
  assert.equal(job.status, "cancelled");
  assert.equal(job.fine_tuned_model, null);
  const events = [];
  for await (const e of client.fineTuning.jobs.listEvents(started.id)) events.push(e.message);
  assert.ok(events.includes("Fine-tuning job cancelled"), events.join(" | "));
  // A finished job cannot be cancelled again.
  await assert.rejects(client.fineTuning.jobs.cancel(started.id), (e) => e.status === 400);
});

test("errors reach the SDK as its typed errors", async () => {
  await assert.rejects(
    client.chat.completions.create({ model: "no-such-deployment", messages: [{ role: "user", content: "hi" }] }),
    (e) => e.status === 404 && e.code === "DeploymentNotFound",
  );
  await assert.rejects(
    client.fineTuning.jobs.create({ model: "no-such-model", training_file: trainingFile?.id ?? "file-x" }),
    (e) => e.status === 400 && /cannot be fine-tuned/.test(e.message),
  );
});
