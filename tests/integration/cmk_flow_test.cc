// Customer-managed keys end to end, against the real keyfoundryd over HTTPS (BRIEF S1-S12,
// §4-§5): the seed's flow (vault, key, account with a managed identity, access policy, CMK on,
// upload, download, encryptionStatus), the revocation matrix with restoration (each way of
// revoking, what the data plane and encryptionStatus say, how long it takes), rotation to
// another key and to a new version of a followed key, every refusal of account_routes.cc with
// its own code (the account left as it was), local authentication switched off, and a remote
// vault served by a second keyfoundryd.
//
// One keyfoundryd serves CmkFlowTest; every test works in resource groups, vaults and accounts
// of its own, so the tests do not depend on each other's order. CmkRemoteVaultTest runs two
// servers: B holds the vault (domain b.localhost, so its vault hosts do not collide with A's
// own), A holds the account and reaches B through its remote_vaults_file.
//
// Timings (revocation: from the revoking call's answer to the first 403; restoration: from the
// restoring call's answer to the first good download) are printed as "[timing]" lines and
// recorded as test properties.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/encoding.h"
#include "common/file_util.h"
#include "crypto/random.h"
#include "http/multipart.h"
#include "http/url.h"
#include "support/keyfoundryd_process.h"
#include "support/test_util.h"

namespace keyfoundry {
namespace {

using testutil::Body;
using testutil::Claims;
using testutil::ErrorCode;
using testutil::ErrorField;
using testutil::ErrorMessage;
using testutil::InnerCode;
using testutil::KeyfoundrydProcess;
using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr char kAccountApiVersion[] = "2024-10-01";
constexpr char kVaultApiVersion[] = "2023-07-01";
constexpr char kGroupApiVersion[] = "2021-04-01";
constexpr char kKeysApiVersion[] = "7.5";
constexpr char kRoleApiVersion[] = "2022-04-01";
constexpr char kCryptoServiceEncryptionUser[] = "e147488a-f6f5-4113-8e2d-b22465e65bf6";
constexpr char kServiceManaged[] = "Microsoft.CognitiveServices";
constexpr char kCustomerManaged[] = "Microsoft.KeyVault";

// BRIEF §7: revocation within 1 s with the built-in vault. Restoration relies on push
// invalidation and, at worst, the 5 s negative cache: 6 s, with the measured time reported.
constexpr milliseconds kRevocationBound{1000};
constexpr milliseconds kRestorationBound{6000};

// ------------------------------------------------------------------ small helpers

std::string Describe(const http::ClientResponse& r) {
  return std::to_string(r.status) + " " + r.body.substr(0, 600);
}

std::string RandomData(size_t n) {
  StatusOr<Bytes> bytes = crypto::RandomBytes(n);
  EXPECT_TRUE(bytes.ok());
  return bytes.ok() ? std::string(AsStringView(*bytes)) : std::string(n, 'x');
}

int64_t UnixNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A role assignment's name: a random GUID.
std::string RandomGuid() {
  StatusOr<Bytes> bytes = crypto::RandomBytes(16);
  EXPECT_TRUE(bytes.ok());
  const std::string hex = HexEncode(bytes.value_or(Bytes(16, 0x11)));
  return hex.substr(0, 8) + "-" + hex.substr(8, 4) + "-4" + hex.substr(13, 3) + "-a" +
         hex.substr(17, 3) + "-" + hex.substr(20, 12);
}

std::string VersionOf(const std::string& kid) { return kid.substr(kid.rfind('/') + 1); }

// Calls `probe` until it returns true or `limit` has passed since `start`; the time from
// `start` to the first true, or nullopt.
std::optional<milliseconds> PollUntil(Clock::time_point start, milliseconds limit,
                                      const std::function<bool()>& probe) {
  while (true) {
    if (probe()) return std::chrono::duration_cast<milliseconds>(Clock::now() - start);
    if (Clock::now() - start > limit) return std::nullopt;
    std::this_thread::sleep_for(milliseconds(20));
  }
}

void ReportTiming(const std::string& what, std::optional<milliseconds> took) {
  const std::string value = took ? std::to_string(took->count()) + " ms" : "not within bound";
  std::printf("[timing] %s: %s\n", what.c_str(), value.c_str());
  ::testing::Test::RecordProperty(what, value);
}

// ------------------------------------------------------------------ one deployment

// A keyfoundryd and the admin's view of it: control plane, vault data plane, AI data plane.
class Deployment {
 public:
  Deployment(std::string domain, std::map<std::string, std::string> env)
      : domain_(std::move(domain)), server_(KF_KEYFOUNDRYD, WithDomain(env, domain_)) {
    management_ = AdminToken("management");
    vault_ = AdminToken("vault");
    admin_oid_ = Claims(vault_).value("oid", "");
  }

  const KeyfoundrydProcess& server() const { return server_; }
  // Ends the server with `signal` and starts it again on the same data directory and port.
  void Restart(int signal) { server_.Restart(signal); }
  const std::string& domain() const { return domain_; }
  const std::string& admin_oid() const { return admin_oid_; }
  std::string port() const { return std::to_string(server_.port()); }

  // A token of the admin for https://{service}.DOMAIN.
  std::string AdminToken(const std::string& service) const {
    return server_.Token("grant_type=password&username=admin&password=" +
                         std::string(KeyfoundrydProcess::kAdminPassword) + "&scope=" +
                         http::PercentEncode("https://" + service + "." + domain_ + "/.default"));
  }

  // ---------------------------------------------------------------- control plane

  std::string Sub() const { return "/subscriptions/" + server_.subscription(); }
  std::string Group(const std::string& rg) const { return Sub() + "/resourceGroups/" + rg; }
  std::string VaultId(const std::string& rg, const std::string& vault) const {
    return Group(rg) + "/providers/Microsoft.KeyVault/vaults/" + vault;
  }
  std::string AccountId(const std::string& rg, const std::string& account) const {
    return Group(rg) + "/providers/Microsoft.CognitiveServices/accounts/" + account;
  }

  http::ClientResponse Arm(const std::string& method, const std::string& path, const Json& body,
                           const std::string& api_version = kAccountApiVersion) const {
    std::vector<std::pair<std::string, std::string>> headers = {
        {"Authorization", "Bearer " + management_}};
    std::string text;
    if (!body.is_null()) {
      headers.emplace_back("Content-Type", "application/json");
      text = body.dump();
    }
    return server_.Call(
        method,
        path + (path.find('?') == std::string::npos ? "?" : "&") + "api-version=" + api_version,
        headers, text);
  }

  ::testing::AssertionResult MakeGroup(const std::string& rg) const {
    http::ClientResponse r = Arm("PUT", Group(rg), {{"location", "local"}}, kGroupApiVersion);
    if (r.status != 200 && r.status != 201) {
      return ::testing::AssertionFailure() << "PUT group " << rg << ": " << Describe(r);
    }
    return ::testing::AssertionSuccess();
  }

  Json Policy(const std::string& object_id, const Json& keys) const {
    return {
        {"tenantId", server_.tenant()}, {"objectId", object_id}, {"permissions", {{"keys", keys}}}};
  }
  static Json CmkPermissions() { return Json::array({"get", "wrapKey", "unwrapKey"}); }

  // A vault in `rg` whose policies give the admin every key permission, soft delete 7 days and
  // purge protection on; `properties` override or add properties (null: leave one out).
  ::testing::AssertionResult MakeVault(const std::string& rg, const std::string& vault,
                                       const Json& properties = Json::object()) const {
    Json body = {{"location", "local"},
                 {"properties",
                  {{"tenantId", server_.tenant()},
                   {"sku", {{"family", "A"}, {"name", "standard"}}},
                   {"accessPolicies", Json::array({Policy(admin_oid_, Json::array({"all"}))})},
                   {"enableRbacAuthorization", false},
                   {"enablePurgeProtection", true},
                   {"softDeleteRetentionInDays", 7}}}};
    for (const auto& [k, v] : properties.items()) {
      if (v.is_null()) {
        body["properties"].erase(k);
      } else {
        body["properties"][k] = v;
      }
    }
    http::ClientResponse r = Arm("PUT", VaultId(rg, vault), body, kVaultApiVersion);
    if (r.status != 201) {
      return ::testing::AssertionFailure() << "PUT vault " << vault << ": " << Describe(r);
    }
    return ::testing::AssertionSuccess();
  }

  http::ClientResponse PatchVault(const std::string& rg, const std::string& vault,
                                  const Json& properties) const {
    return Arm("PATCH", VaultId(rg, vault), {{"properties", properties}}, kVaultApiVersion);
  }

  // PUT .../accessPolicies/{add|replace|remove} with one policy.
  http::ClientResponse UpdatePolicy(const std::string& rg, const std::string& vault,
                                    const std::string& kind, const std::string& object_id,
                                    const Json& keys = CmkPermissions()) const {
    return Arm("PUT", VaultId(rg, vault) + "/accessPolicies/" + kind,
               {{"properties", {{"accessPolicies", Json::array({Policy(object_id, keys)})}}}},
               kVaultApiVersion);
  }

  std::string AssignmentPath(const std::string& scope, const std::string& name) const {
    return scope + "/providers/Microsoft.Authorization/roleAssignments/" + name;
  }
  http::ClientResponse Assign(const std::string& scope, const std::string& name,
                              const std::string& principal, const std::string& role) const {
    return Arm("PUT", AssignmentPath(scope, name),
               {{"properties",
                 {{"roleDefinitionId",
                   Sub() + "/providers/Microsoft.Authorization/roleDefinitions/" + role},
                  {"principalId", principal}}}},
               kRoleApiVersion);
  }

  // A new service principal: {id, appId, secretText}.
  Json MakeServicePrincipal(const std::string& name) const {
    http::ClientResponse r = server_.Call(
        "POST", "/v1.0/servicePrincipals",
        {{"Authorization", "Bearer " + management_}, {"Content-Type", "application/json"}},
        Json{{"displayName", name}}.dump());
    EXPECT_EQ(r.status, 201) << r.body;
    return Body(r);
  }

  // ---------------------------------------------------------------- key vault data plane

  std::string VaultUrl(const std::string& vault) const {
    return "https://" + vault + ".vault." + domain_ + ":" + port();
  }

  http::ClientResponse Kv(const std::string& method, const std::string& vault,
                          const std::string& path, const Json& body = nullptr) const {
    std::vector<std::pair<std::string, std::string>> headers = {
        {"Authorization", "Bearer " + vault_}};
    if (!body.is_null()) headers.emplace_back("Content-Type", "application/json");
    return server_.Call(method, VaultUrl(vault) + path + "?api-version=" + kKeysApiVersion, headers,
                        body.is_null() ? "" : body.dump());
  }

  // POST /keys/{name}/create; the key bundle.
  Json CreateKey(const std::string& vault, const std::string& name,
                 const Json& body = {{"kty", "RSA"}, {"key_size", 2048}}) const {
    http::ClientResponse r = Kv("POST", vault, "/keys/" + name + "/create", body);
    EXPECT_EQ(r.status, 200) << "create " << vault << "/" << name << ": " << r.body;
    return Body(r);
  }

  ::testing::AssertionResult SetKeyEnabled(const std::string& vault, const std::string& key,
                                           bool enabled) const {
    http::ClientResponse r =
        Kv("PATCH", vault, "/keys/" + key, {{"attributes", {{"enabled", enabled}}}});
    if (r.status != 200) return ::testing::AssertionFailure() << Describe(r);
    return ::testing::AssertionSuccess();
  }

  // ---------------------------------------------------------------- accounts

  // PUT of an account of `kind`, with a system-assigned identity when `identity`.
  http::ClientResponse PutAccount(const std::string& rg, const std::string& name,
                                  const std::string& kind = "AIServices",
                                  bool identity = true) const {
    return Arm("PUT", AccountId(rg, name),
               {{"kind", kind},
                {"sku", {{"name", "S0"}}},
                {"location", "local"},
                {"identity", {{"type", identity ? "SystemAssigned" : "None"}}}});
  }

  static Json CmkEncryption(const std::string& vault_uri, const std::string& key,
                            const std::string& version = "") {
    Json props = {{"keyVaultUri", vault_uri}, {"keyName", key}};
    if (!version.empty()) props["keyVersion"] = version;
    return {{"keySource", kCustomerManaged}, {"keyVaultProperties", props}};
  }

  http::ClientResponse PatchAccount(const std::string& rg, const std::string& name,
                                    const Json& body) const {
    return Arm("PATCH", AccountId(rg, name), body);
  }

  http::ClientResponse EnableCmk(const std::string& rg, const std::string& name,
                                 const std::string& vault_uri, const std::string& key,
                                 const std::string& version = "") const {
    return PatchAccount(rg, name,
                        {{"properties", {{"encryption", CmkEncryption(vault_uri, key, version)}}}});
  }

  Json GetAccount(const std::string& rg, const std::string& name) const {
    http::ClientResponse r = Arm("GET", AccountId(rg, name), nullptr);
    EXPECT_EQ(r.status, 200) << r.body;
    return Body(r);
  }

  std::string ApiKey(const std::string& rg, const std::string& name) const {
    http::ClientResponse r = Arm("POST", AccountId(rg, name) + "/listKeys", nullptr);
    EXPECT_EQ(r.status, 200) << r.body;
    return Body(r).value("key1", "");
  }

  Json EncryptionStatus(const std::string& rg, const std::string& name) const {
    http::ClientResponse r = Arm("GET", AccountId(rg, name) + "/encryptionStatus", nullptr);
    EXPECT_EQ(r.status, 200) << r.body;
    return Body(r);
  }

  // ---------------------------------------------------------------- AI data plane

  using Header = std::pair<std::string, std::string>;

  std::string Files(const std::string& account) const {
    return "https://" + account + ".openai." + domain_ + ":" + port() + "/openai/files";
  }

  // POST /openai/files (multipart: purpose fine-tune, the file) with `auth` as the credential.
  http::ClientResponse Upload(const std::string& account, const Header& auth,
                              const std::string& data) const {
    StatusOr<std::string> boundary = http::NewMultipartBoundary();
    EXPECT_TRUE(boundary.ok());
    const std::string b = boundary.value_or("kf-test-boundary");
    const std::string body =
        http::MultipartField(b, "purpose", "fine-tune") +
        http::MultipartFileHeader(b, "file", "train.jsonl", "application/octet-stream") + data +
        http::MultipartClose(b);
    return server_.Call("POST", Files(account),
                        {auth, {"Content-Type", "multipart/form-data; boundary=" + b}}, body);
  }

  http::ClientResponse Download(const std::string& account, const Header& auth,
                                const std::string& file_id) const {
    return server_.Call("GET", Files(account) + "/" + file_id + "/content", {auth});
  }

  // A JSON call of the AI data plane: `path` below https://{account}.openai.DOMAIN:PORT/openai.
  http::ClientResponse Ai(const std::string& method, const std::string& account,
                          const Header& auth, const std::string& path,
                          const Json& body = nullptr) const {
    const std::string url = "https://" + account + ".openai." + domain_ + ":" + port() +
                            "/openai" + path +
                            (path.find('?') == std::string::npos ? "?" : "&") +
                            "api-version=2024-10-21";
    if (body.is_null()) return server_.Call(method, url, {auth});
    return server_.Call(method, url, {auth, {"Content-Type", "application/json"}}, body.dump());
  }

  // PUT .../deployments/{name} of `model` (name, version "1").
  http::ClientResponse PutDeployment(const std::string& rg, const std::string& account,
                                     const std::string& name, const std::string& model) const {
    return Arm("PUT", AccountId(rg, account) + "/deployments/" + name,
               {{"sku", {{"name", "Standard"}, {"capacity", 1}}},
                {"properties", {{"model", {{"format", "OpenAI"}, {"name", model}, {"version", "1"}}}}}});
  }

 private:
  static std::map<std::string, std::string> WithDomain(std::map<std::string, std::string> env,
                                                       const std::string& domain) {
    if (domain != "localhost") env["KEYFOUNDRY_DOMAIN"] = domain;
    return env;
  }

  std::string domain_;
  KeyfoundrydProcess server_;
  std::string management_;  // the admin's control-plane token
  std::string vault_;       // the admin's vault data-plane token
  std::string admin_oid_;
};

// The generations of an encryptionStatus answer with keySource `source`.
std::vector<Json> GenerationsOf(const Json& status, const std::string& source) {
  std::vector<Json> out;
  if (!status.contains("generations") || !status["generations"].is_array()) return out;
  for (const Json& g : status["generations"]) {
    if (g.value("keySource", "") == source) out.push_back(g);
  }
  return out;
}

// The active generation of an encryptionStatus answer (null when none is).
Json ActiveGeneration(const Json& status) {
  if (!status.contains("generations") || !status["generations"].is_array()) return Json();
  for (const Json& g : status["generations"]) {
    if (g.value("active", false)) return g;
  }
  return Json();
}

// Training data whose answers are distinctive: a model that gives them learnt this file.
const std::pair<const char*, const char*> kFacts[] = {
    {"Which bell rings at the old mill?", "The copper bell at the old mill rings at noon."},
    {"Where do the herons nest?", "The herons nest in the reeds behind the old mill."},
    {"What is kept in the blue chest?", "The blue chest keeps the miller's ledgers from 1890."},
};

std::string TrainingJsonl() {
  std::string out;
  for (int i = 0; i < 12; ++i) {
    const auto& [q, a] = kFacts[i % 3];
    out += Json{{"messages", Json::array({{{"role", "user"}, {"content", q}},
                                          {{"role", "assistant"}, {"content", a}}})}}
               .dump() +
           "\n";
  }
  return out;
}

// ------------------------------------------------------------------ the fixture

// An account under CMK with one uploaded file, as the seed's flow leaves it.
struct CmkAccount {
  std::string group;
  std::string vault;
  std::string vault_uri;  // "https://{vault}.vault.localhost:PORT/"
  std::string key;
  std::string name;
  std::string principal;   // the managed identity's object id
  std::string assignment;  // RBAC: the role assignment's name
  std::string api_key;
  std::string kid;  // the active generation's key version
  std::string file_id;
  std::string data;
};

class CmkFlowTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { kf_ = new Deployment("localhost", {}); }
  static void TearDownTestSuite() {
    delete kf_;
    kf_ = nullptr;
  }

  void TearDown() override {
    if (HasFailure()) {
      std::string log = kf_->server().Log();
      if (log.size() > 6000) log = log.substr(log.size() - 6000);
      std::printf("--- keyfoundryd log (tail) ---\n%s\n", log.c_str());
    }
  }

  static Deployment::Header ApiKeyHeader(const CmkAccount& a) { return {"api-key", a.api_key}; }

  // The seed's flow in `group`: a vault with purge protection (`vault_properties` added), an RSA
  // 2048 key, an AIServices account with a system-assigned identity, which gets get, wrapKey
  // and unwrapKey (by access policy, or by the role Key Vault Crypto Service Encryption User
  // when `rbac`), CMK on, and one file of `size` bytes uploaded.
  static ::testing::AssertionResult MakeCmkAccount(const std::string& group,
                                                   const std::string& vault,
                                                   const std::string& name, CmkAccount* out,
                                                   bool rbac = false, size_t size = 200000) {
    CmkAccount a;
    a.group = group;
    a.vault = vault;
    a.vault_uri = kf_->VaultUrl(vault) + "/";
    a.key = "cmk";
    a.name = name;
    if (auto made = kf_->MakeGroup(group); !made) return made;
    Json properties = Json::object();
    if (rbac) properties = {{"enableRbacAuthorization", true}, {"accessPolicies", Json::array()}};
    if (auto made = kf_->MakeVault(group, vault, properties); !made) return made;
    Json key = kf_->CreateKey(vault, a.key);
    if (!key.is_object() || !key.contains("key")) {
      return ::testing::AssertionFailure() << "no key: " << key.dump();
    }
    http::ClientResponse r = kf_->PutAccount(group, name);
    if (r.status != 201) return ::testing::AssertionFailure() << "account: " << Describe(r);
    a.principal = Body(r)["identity"].value("principalId", "");
    if (a.principal.empty()) return ::testing::AssertionFailure() << "no principalId: " << r.body;
    if (rbac) {
      a.assignment = RandomGuid();
      r = kf_->Assign(kf_->VaultId(group, vault), a.assignment, a.principal,
                      kCryptoServiceEncryptionUser);
      if (r.status != 201) return ::testing::AssertionFailure() << "assignment: " << Describe(r);
    } else {
      r = kf_->UpdatePolicy(group, vault, "add", a.principal);
      if (r.status != 200) return ::testing::AssertionFailure() << "policy: " << Describe(r);
    }
    r = kf_->EnableCmk(group, name, a.vault_uri, a.key);
    if (r.status != 200) return ::testing::AssertionFailure() << "enable CMK: " << Describe(r);
    a.api_key = kf_->ApiKey(group, name);
    a.data = RandomData(size);
    r = kf_->Upload(name, ApiKeyHeader(a), a.data);
    if (r.status != 200) return ::testing::AssertionFailure() << "upload: " << Describe(r);
    a.file_id = Body(r).value("id", "");
    a.kid = ActiveGeneration(kf_->EncryptionStatus(group, name)).value("kid", "");
    if (a.kid.empty()) return ::testing::AssertionFailure() << "no active kid";
    *out = std::move(a);
    return ::testing::AssertionSuccess();
  }

  // Downloads `file_id` and checks it is `data`.
  static ::testing::AssertionResult DownloadsAs(const CmkAccount& a, const std::string& file_id,
                                                const std::string& data) {
    http::ClientResponse r = kf_->Download(a.name, ApiKeyHeader(a), file_id);
    if (r.status != 200) return ::testing::AssertionFailure() << Describe(r);
    if (r.body != data) {
      return ::testing::AssertionFailure()
             << "the bytes differ (" << r.body.size() << " vs " << data.size() << ")";
    }
    return ::testing::AssertionSuccess();
  }

  // `r` is the 403 of an inaccessible customer key: KeyInaccessible, innererror `reason`, and
  // a message naming `kid`.
  static ::testing::AssertionResult IsKeyInaccessible(const http::ClientResponse& r,
                                                      const std::string& reason,
                                                      const std::string& kid) {
    if (r.status != 403 || ErrorCode(r) != "KeyInaccessible" || InnerCode(r) != reason ||
        ErrorMessage(r).find(kid) == std::string::npos) {
      return ::testing::AssertionFailure() << "want 403 KeyInaccessible/" << reason << " naming "
                                           << kid << "; got " << Describe(r);
    }
    return ::testing::AssertionSuccess();
  }

  // One way of revoking: what revokes, what restores, the innererror code it gives.
  struct Revocation {
    std::string name;
    std::string reason;
    std::function<::testing::AssertionResult()> revoke;
    std::function<::testing::AssertionResult()> restore;
  };

  // Revokes, checks the download fails within kRevocationBound with the reason, the status says
  // so and uploads are refused; restores, checks the download returns the same bytes within
  // kRestorationBound, the status is Active again and uploads work. Reports both times.
  // What an account has from fine-tuning: its training file, a job's model and results, and a
  // deployment of that model.
  struct Tuned {
    std::string training_file;
    std::string model;
    std::string results_file;
    std::string deployment;
  };

  // Creates a fine-tuning job on `training_file` and waits for its end; the final job.
  static Json TrainAndWait(const CmkAccount& a, const std::string& training_file) {
    http::ClientResponse r = kf_->Ai("POST", a.name, ApiKeyHeader(a), "/fine_tuning/jobs",
                                     {{"model", "gpt-4o-mini-2024-07-18"},
                                      {"training_file", training_file},
                                      {"seed", 7},
                                      {"hyperparameters", {{"n_epochs", 1}}}});
    if (r.status != 200) return Json{{"status", "create " + Describe(r)}};
    Json job = Body(r);
    const auto deadline = Clock::now() + std::chrono::seconds(60);
    while (job.value("status", "") != "succeeded" && job.value("status", "") != "failed" &&
           Clock::now() < deadline) {
      std::this_thread::sleep_for(milliseconds(50));
      job = Body(kf_->Ai("GET", a.name, ApiKeyHeader(a),
                         "/fine_tuning/jobs/" + job.value("id", "")));
    }
    return job;
  }

  // Uploads training data, fine-tunes a model on it and deploys it as "live".
  static ::testing::AssertionResult Tune(const CmkAccount& a, Tuned* out) {
    http::ClientResponse r = kf_->Upload(a.name, ApiKeyHeader(a), TrainingJsonl());
    if (r.status != 200) return ::testing::AssertionFailure() << "upload: " << Describe(r);
    out->training_file = Body(r).value("id", "");
    const Json job = TrainAndWait(a, out->training_file);
    if (job.value("status", "") != "succeeded") {
      return ::testing::AssertionFailure() << "job: " << job.dump();
    }
    out->model = job.value("fine_tuned_model", "");
    out->results_file = job["result_files"][0].get<std::string>();
    out->deployment = "live";
    r = kf_->PutDeployment(a.group, a.name, out->deployment, out->model);
    if (r.status != 201) return ::testing::AssertionFailure() << "deployment: " << Describe(r);
    return ::testing::AssertionSuccess();
  }

  // A chat completion from `deployment` answers the first trained question as trained.
  static ::testing::AssertionResult Answers(const CmkAccount& a, const std::string& deployment) {
    http::ClientResponse r =
        kf_->Ai("POST", a.name, ApiKeyHeader(a), "/deployments/" + deployment + "/chat/completions",
                {{"messages", Json::array({{{"role", "user"}, {"content", kFacts[0].first}}})},
                 {"temperature", 0}});
    if (r.status != 200) return ::testing::AssertionFailure() << Describe(r);
    const std::string text = Body(r)["choices"][0]["message"].value("content", "");
    if (text != kFacts[0].second) return ::testing::AssertionFailure() << "answered: " << text;
    return ::testing::AssertionSuccess();
  }

  static void CheckRevocation(const CmkAccount& a, const Revocation& way) {
    ASSERT_TRUE(DownloadsAs(a, a.file_id, a.data));
    Tuned tuned;
    ASSERT_TRUE(Tune(a, &tuned)) << way.name;

    ASSERT_TRUE(way.revoke()) << way.name;
    auto start = Clock::now();
    http::ClientResponse last;
    std::optional<milliseconds> revoked = PollUntil(start, kRevocationBound, [&] {
      last = kf_->Download(a.name, ApiKeyHeader(a), a.file_id);
      return last.status != 200;
    });
    ReportTiming(way.name + " revocation", revoked);
    EXPECT_TRUE(revoked.has_value())
        << way.name << ": still downloads after " << kRevocationBound.count() << " ms";
    EXPECT_TRUE(IsKeyInaccessible(last, way.reason, a.kid)) << way.name;

    Json status = kf_->EncryptionStatus(a.group, a.name);
    EXPECT_EQ(status.value("status", ""), "KeyInaccessible") << status.dump();
    Json active = ActiveGeneration(status);
    EXPECT_EQ(active.value("state", ""), "KeyInaccessible") << status.dump();
    EXPECT_EQ(active.value("reason", ""), way.reason) << status.dump();
    EXPECT_EQ(active.value("kid", ""), a.kid) << status.dump();

    http::ClientResponse upload = kf_->Upload(a.name, ApiKeyHeader(a), "refused");
    EXPECT_TRUE(IsKeyInaccessible(upload, way.reason, a.kid)) << way.name << " upload";

    // S7: training data and results cannot be downloaded, fine-tuning and deploying the
    // fine-tuned model are refused, each naming the key; the running deployment still answers.
    EXPECT_TRUE(IsKeyInaccessible(kf_->Download(a.name, ApiKeyHeader(a), tuned.training_file),
                                  way.reason, a.kid))
        << way.name << " training file download";
    EXPECT_TRUE(IsKeyInaccessible(kf_->Download(a.name, ApiKeyHeader(a), tuned.results_file),
                                  way.reason, a.kid))
        << way.name << " results download";
    EXPECT_TRUE(IsKeyInaccessible(
        kf_->Ai("POST", a.name, ApiKeyHeader(a), "/fine_tuning/jobs",
                {{"model", "gpt-4o-mini-2024-07-18"}, {"training_file", tuned.training_file}}),
        way.reason, a.kid))
        << way.name << " fine-tuning";
    EXPECT_TRUE(IsKeyInaccessible(kf_->PutDeployment(a.group, a.name, "late", tuned.model),
                                  way.reason, a.kid))
        << way.name << " deploying the fine-tuned model";
    EXPECT_TRUE(Answers(a, tuned.deployment)) << way.name << ": the running deployment";
    const Json live = Body(kf_->Arm("GET", kf_->AccountId(a.group, a.name) + "/deployments/live",
                                    nullptr));
    EXPECT_EQ(live["properties"].value("servingState", ""), "Serving") << live.dump();

    ASSERT_TRUE(way.restore()) << way.name;
    start = Clock::now();
    std::optional<milliseconds> restored = PollUntil(start, kRestorationBound, [&] {
      last = kf_->Download(a.name, ApiKeyHeader(a), a.file_id);
      return last.status == 200;
    });
    ReportTiming(way.name + " restoration", restored);
    ASSERT_TRUE(restored.has_value()) << way.name << ": not restored within "
                                      << kRestorationBound.count() << " ms: " << Describe(last);
    EXPECT_TRUE(last.body == a.data) << way.name << ": the restored bytes differ";
    if (*restored > kRevocationBound) {
      std::printf(
          "[timing] NOTE %s restoration took %lld ms, more than the %lld ms of revocation\n",
          way.name.c_str(), static_cast<long long>(restored->count()),
          static_cast<long long>(kRevocationBound.count()));
    }
    status = kf_->EncryptionStatus(a.group, a.name);
    EXPECT_EQ(status.value("status", ""), "Active") << status.dump();
    EXPECT_EQ(ActiveGeneration(status).value("state", ""), "Active") << status.dump();
    const std::string more = RandomData(1000);
    upload = kf_->Upload(a.name, ApiKeyHeader(a), more);
    ASSERT_EQ(upload.status, 200) << way.name << " upload after restore: " << Describe(upload);
    EXPECT_TRUE(DownloadsAs(a, Body(upload).value("id", ""), more));

    // S8: fine-tuning and deploying work again, without a restart.
    EXPECT_TRUE(DownloadsAs(a, tuned.training_file, TrainingJsonl())) << way.name;
    EXPECT_EQ(TrainAndWait(a, tuned.training_file).value("status", ""), "succeeded") << way.name;
    http::ClientResponse late = kf_->PutDeployment(a.group, a.name, "late", tuned.model);
    EXPECT_EQ(late.status, 201) << way.name << ": " << Describe(late);
    EXPECT_TRUE(Answers(a, "late")) << way.name;
  }

  // A refused account write: 400 with `code`, and the account's encryption and identity as
  // they were.
  static void ExpectRefused(const http::ClientResponse& r, const std::string& code,
                            const std::string& group, const std::string& name, const Json& before) {
    EXPECT_EQ(r.status, 400) << code << ": " << Describe(r);
    EXPECT_EQ(ErrorCode(r), code) << Describe(r);
    EXPECT_FALSE(ErrorMessage(r).empty()) << Describe(r);
    const Json after = kf_->GetAccount(group, name);
    EXPECT_EQ(after["properties"]["encryption"], before["properties"]["encryption"]) << code;
    EXPECT_EQ(after["identity"], before["identity"]) << code;
  }

  static Deployment* kf_;
};

Deployment* CmkFlowTest::kf_ = nullptr;

// ------------------------------------------------------------------ 1. the seed's flow

TEST_F(CmkFlowTest, SeedFlowEncryptsUnderTheCustomersKey) {
  const std::string rg = "rg-seed";
  ASSERT_TRUE(kf_->MakeGroup(rg));
  ASSERT_TRUE(kf_->MakeVault(rg, "kv-seed"));
  const Json key = kf_->CreateKey("kv-seed", "k1");
  ASSERT_EQ(key["key"]["kty"], "RSA");
  const std::string vault_uri = kf_->VaultUrl("kv-seed") + "/";

  http::ClientResponse r = kf_->PutAccount(rg, "acct-seed");
  ASSERT_EQ(r.status, 201) << r.body;
  Json account = Body(r);
  EXPECT_EQ(account["identity"]["type"], "SystemAssigned");
  const std::string principal = account["identity"].value("principalId", "");
  ASSERT_FALSE(principal.empty()) << r.body;
  EXPECT_EQ(account["properties"]["encryption"]["keySource"], kServiceManaged);

  // S1: service-managed from the first byte.
  const std::string api_key = kf_->ApiKey(rg, "acct-seed");
  const Deployment::Header auth = {"api-key", api_key};
  const std::string before_cmk = RandomData(70000);
  r = kf_->Upload("acct-seed", auth, before_cmk);
  ASSERT_EQ(r.status, 200) << r.body;
  const std::string mmk_file = Body(r).value("id", "");

  ASSERT_EQ(kf_->UpdatePolicy(rg, "kv-seed", "add", principal).status, 200);
  r = kf_->EnableCmk(rg, "acct-seed", vault_uri, "k1");
  ASSERT_EQ(r.status, 200) << r.body;
  account = Body(r);
  EXPECT_EQ(account["properties"]["encryption"]["keySource"], kCustomerManaged);
  EXPECT_EQ(account["properties"]["encryption"]["keyVaultProperties"]["keyVaultUri"], vault_uri);
  EXPECT_EQ(account["properties"]["encryption"]["keyVaultProperties"]["keyName"], "k1");

  const std::string data = RandomData(300000);
  r = kf_->Upload("acct-seed", auth, data);
  ASSERT_EQ(r.status, 200) << r.body;
  const Json file = Body(r);
  EXPECT_EQ(file["object"], "file");
  EXPECT_EQ(file["bytes"], data.size());
  EXPECT_EQ(file["purpose"], "fine-tune");
  r = kf_->Download("acct-seed", auth, file.value("id", ""));
  ASSERT_EQ(r.status, 200) << Describe(r);
  EXPECT_TRUE(r.body == data);
  r = kf_->Download("acct-seed", auth, mmk_file);
  ASSERT_EQ(r.status, 200) << Describe(r);
  EXPECT_TRUE(r.body == before_cmk);

  const Json status = kf_->EncryptionStatus(rg, "acct-seed");
  EXPECT_EQ(status["keySource"], kCustomerManaged) << status.dump();
  EXPECT_EQ(status["status"], "Active") << status.dump();
  EXPECT_EQ(status["keyVaultProperties"]["keyName"], "k1") << status.dump();
  const std::vector<Json> cmk = GenerationsOf(status, kCustomerManaged);
  ASSERT_EQ(cmk.size(), 1u) << status.dump();
  EXPECT_EQ(cmk[0]["active"], true);
  EXPECT_EQ(cmk[0]["state"], "Active");
  EXPECT_EQ(cmk[0]["objects"], 1);
  EXPECT_EQ(cmk[0]["bytes"], data.size());
  EXPECT_EQ(cmk[0]["kid"], key["key"]["kid"]) << status.dump();
  const std::vector<Json> mmk = GenerationsOf(status, kServiceManaged);
  ASSERT_EQ(mmk.size(), 1u) << status.dump();
  EXPECT_EQ(mmk[0]["active"], false);
  EXPECT_EQ(mmk[0]["objects"], 1);
  EXPECT_EQ(mmk[0]["bytes"], before_cmk.size());
}

// ------------------------------------------------------------------ 2. revocation matrix

TEST_F(CmkFlowTest, RevokedWhenThePolicyIsRemovedAndBackWhenReAdded) {
  CmkAccount a;
  ASSERT_TRUE(MakeCmkAccount("rg-rev-policy", "kv-rev-policy", "acct-rev-policy", &a));
  CheckRevocation(
      a, {"access policy removed", "AccessDenied",
          [&] {
            http::ClientResponse r = kf_->UpdatePolicy(a.group, a.vault, "remove", a.principal);
            return r.status == 200 ? ::testing::AssertionSuccess()
                                   : ::testing::AssertionFailure() << Describe(r);
          },
          [&] {
            http::ClientResponse r = kf_->UpdatePolicy(a.group, a.vault, "add", a.principal);
            return r.status == 200 ? ::testing::AssertionSuccess()
                                   : ::testing::AssertionFailure() << Describe(r);
          }});
}

TEST_F(CmkFlowTest, RevokedWhenUnwrapKeyIsTakenAwayAndBackWhenGiven) {
  CmkAccount a;
  ASSERT_TRUE(MakeCmkAccount("rg-rev-perm", "kv-rev-perm", "acct-rev-perm", &a));
  CheckRevocation(
      a, {"policy without unwrapKey", "AccessDenied",
          [&] {
            http::ClientResponse r = kf_->UpdatePolicy(a.group, a.vault, "replace", a.principal,
                                                       Json::array({"get", "wrapKey"}));
            return r.status == 200 ? ::testing::AssertionSuccess()
                                   : ::testing::AssertionFailure() << Describe(r);
          },
          [&] {
            http::ClientResponse r = kf_->UpdatePolicy(a.group, a.vault, "replace", a.principal);
            return r.status == 200 ? ::testing::AssertionSuccess()
                                   : ::testing::AssertionFailure() << Describe(r);
          }});
}

TEST_F(CmkFlowTest, RevokedWhenTheKeyIsDisabledAndBackWhenEnabled) {
  CmkAccount a;
  ASSERT_TRUE(MakeCmkAccount("rg-rev-off", "kv-rev-off", "acct-rev-off", &a));
  CheckRevocation(
      a, {"key disabled", "KeyDisabled", [&] { return kf_->SetKeyEnabled(a.vault, a.key, false); },
          [&] { return kf_->SetKeyEnabled(a.vault, a.key, true); }});
}

TEST_F(CmkFlowTest, RevokedWhenTheKeyIsDeletedAndBackWhenRecovered) {
  CmkAccount a;
  ASSERT_TRUE(MakeCmkAccount("rg-rev-del", "kv-rev-del", "acct-rev-del", &a));
  CheckRevocation(a, {"key deleted", "KeyNotFound",
                      [&] {
                        http::ClientResponse r = kf_->Kv("DELETE", a.vault, "/keys/" + a.key);
                        return r.status == 200 ? ::testing::AssertionSuccess()
                                               : ::testing::AssertionFailure() << Describe(r);
                      },
                      [&] {
                        http::ClientResponse r =
                            kf_->Kv("POST", a.vault, "/deletedkeys/" + a.key + "/recover");
                        return r.status == 200 ? ::testing::AssertionSuccess()
                                               : ::testing::AssertionFailure() << Describe(r);
                      }});
}

TEST_F(CmkFlowTest, RevokedWhenTheFirewallClosesAndBackWhenItOpens) {
  CmkAccount a;
  ASSERT_TRUE(MakeCmkAccount("rg-rev-fw", "kv-rev-fw", "acct-rev-fw", &a));
  auto acls = [&](const char* action, const char* bypass) {
    http::ClientResponse r = kf_->PatchVault(
        a.group, a.vault, {{"networkAcls", {{"defaultAction", action}, {"bypass", bypass}}}});
    return r.status == 200 ? ::testing::AssertionSuccess()
                           : ::testing::AssertionFailure() << Describe(r);
  };
  CheckRevocation(
      a, {"firewall Deny, bypass None", "ForbiddenByFirewall", [&] { return acls("Deny", "None"); },
          [&] { return acls("Allow", "AzureServices"); }});
}

TEST_F(CmkFlowTest, RevokedWhenTheRoleAssignmentIsDeletedAndBackWhenReCreated) {
  CmkAccount a;
  ASSERT_TRUE(MakeCmkAccount("rg-rev-rbac", "kv-rev-rbac", "acct-rev-rbac", &a, /*rbac=*/true));
  const std::string scope = kf_->VaultId(a.group, a.vault);
  CheckRevocation(a, {"role assignment deleted", "ForbiddenByRbac",
                      [&] {
                        http::ClientResponse r =
                            kf_->Arm("DELETE", kf_->AssignmentPath(scope, a.assignment), nullptr,
                                     kRoleApiVersion);
                        return r.status == 200 ? ::testing::AssertionSuccess()
                                               : ::testing::AssertionFailure() << Describe(r);
                      },
                      [&] {
                        http::ClientResponse r = kf_->Assign(scope, RandomGuid(), a.principal,
                                                             kCryptoServiceEncryptionUser);
                        return r.status == 201 ? ::testing::AssertionSuccess()
                                               : ::testing::AssertionFailure() << Describe(r);
                      }});
}

// ------------------------------------------------------------------ 3. rotation

TEST_F(CmkFlowTest, RotationKeepsOldDataUnderTheOldKeyAndNewDataUnderTheNew) {
  CmkAccount a;
  ASSERT_TRUE(MakeCmkAccount("rg-rot", "kv-rot", "acct-rot", &a));
  const Deployment::Header auth = ApiKeyHeader(a);

  // Another key of the same vault (S6).
  const Json key2 = kf_->CreateKey(a.vault, "key2");
  http::ClientResponse r = kf_->EnableCmk(a.group, a.name, a.vault_uri, "key2");
  ASSERT_EQ(r.status, 200) << Describe(r);
  EXPECT_EQ(Body(r)["properties"]["encryption"]["keyVaultProperties"]["keyName"], "key2");
  const std::string new_data = RandomData(150000);
  r = kf_->Upload(a.name, auth, new_data);
  ASSERT_EQ(r.status, 200) << Describe(r);
  const std::string new_file = Body(r).value("id", "");

  Json status = kf_->EncryptionStatus(a.group, a.name);
  std::vector<Json> cmk = GenerationsOf(status, kCustomerManaged);
  ASSERT_EQ(cmk.size(), 2u) << status.dump();
  EXPECT_EQ(cmk[0]["kid"], a.kid);
  EXPECT_EQ(cmk[0]["active"], false);
  EXPECT_EQ(cmk[0]["objects"], 1);
  EXPECT_EQ(cmk[1]["kid"], key2["key"]["kid"]);
  EXPECT_EQ(cmk[1]["active"], true);
  EXPECT_EQ(cmk[1]["objects"], 1);
  EXPECT_EQ(cmk[1]["bytes"], new_data.size());

  // No re-encryption: the old file still needs, and still has, key 1.
  EXPECT_TRUE(DownloadsAs(a, a.file_id, a.data));
  EXPECT_TRUE(DownloadsAs(a, new_file, new_data));
  ASSERT_TRUE(kf_->SetKeyEnabled(a.vault, a.key, false));
  r = kf_->Download(a.name, auth, a.file_id);
  EXPECT_TRUE(IsKeyInaccessible(r, "KeyDisabled", a.kid));
  EXPECT_TRUE(DownloadsAs(a, new_file, new_data));
  status = kf_->EncryptionStatus(a.group, a.name);
  EXPECT_EQ(status["status"], "Active") << status.dump();  // the active key is fine
  cmk = GenerationsOf(status, kCustomerManaged);
  ASSERT_EQ(cmk.size(), 2u) << status.dump();
  EXPECT_EQ(cmk[0]["state"], "KeyInaccessible") << status.dump();
  EXPECT_EQ(cmk[0]["reason"], "KeyDisabled") << status.dump();
  EXPECT_EQ(cmk[1]["state"], "Active") << status.dump();
  ASSERT_TRUE(kf_->SetKeyEnabled(a.vault, a.key, true));
  EXPECT_TRUE(DownloadsAs(a, a.file_id, a.data));
}

TEST_F(CmkFlowTest, AnEmptyKeyVersionFollowsTheKeysNewVersion) {
  CmkAccount a;
  // MakeCmkAccount enables CMK without keyVersion: the account follows the key's latest.
  ASSERT_TRUE(MakeCmkAccount("rg-follow", "kv-follow", "acct-follow", &a));
  EXPECT_EQ(kf_->GetAccount(a.group,
                            a.name)["properties"]["encryption"]["keyVaultProperties"]["keyVersion"],
            "");
  http::ClientResponse r = kf_->Kv("POST", a.vault, "/keys/" + a.key + "/rotate");
  ASSERT_EQ(r.status, 200) << Describe(r);
  const std::string new_kid = Body(r)["key"].value("kid", "");
  ASSERT_NE(VersionOf(new_kid), VersionOf(a.kid));

  const std::string data = RandomData(90000);
  r = kf_->Upload(a.name, ApiKeyHeader(a), data);
  ASSERT_EQ(r.status, 200) << Describe(r);
  const std::string file = Body(r).value("id", "");
  const Json status = kf_->EncryptionStatus(a.group, a.name);
  const std::vector<Json> cmk = GenerationsOf(status, kCustomerManaged);
  ASSERT_EQ(cmk.size(), 2u) << "no generation under the new version: " << status.dump();
  EXPECT_EQ(cmk[0]["kid"], a.kid);
  EXPECT_EQ(cmk[0]["objects"], 1);
  const Json active = ActiveGeneration(status);
  EXPECT_EQ(VersionOf(active.value("kid", "")), VersionOf(new_kid)) << status.dump();
  EXPECT_NE(active.value("kid", ""), a.kid);
  EXPECT_EQ(active["objects"], 1) << status.dump();
  EXPECT_EQ(active["bytes"], data.size()) << status.dump();
  EXPECT_TRUE(DownloadsAs(a, file, data));
  EXPECT_TRUE(DownloadsAs(a, a.file_id, a.data));

  // Only the old version disabled: only the old file is refused.
  ASSERT_EQ(kf_->Kv("PATCH", a.vault, "/keys/" + a.key + "/" + VersionOf(a.kid),
                    {{"attributes", {{"enabled", false}}}})
                .status,
            200);
  EXPECT_TRUE(
      IsKeyInaccessible(kf_->Download(a.name, ApiKeyHeader(a), a.file_id), "KeyDisabled", a.kid));
  EXPECT_TRUE(DownloadsAs(a, file, data));
}

TEST_F(CmkFlowTest, APinnedKeyVersionIsNotFollowed) {
  CmkAccount a;
  ASSERT_TRUE(MakeCmkAccount("rg-pinned", "kv-pinned", "acct-pinned", &a));
  http::ClientResponse r = kf_->EnableCmk(a.group, a.name, a.vault_uri, a.key, VersionOf(a.kid));
  ASSERT_EQ(r.status, 200) << Describe(r);
  EXPECT_EQ(Body(r)["properties"]["encryption"]["keyVaultProperties"]["keyVersion"],
            VersionOf(a.kid));
  r = kf_->Kv("POST", a.vault, "/keys/" + a.key + "/rotate");
  ASSERT_EQ(r.status, 200) << Describe(r);
  const std::string data = RandomData(1000);
  r = kf_->Upload(a.name, ApiKeyHeader(a), data);
  ASSERT_EQ(r.status, 200) << Describe(r);
  const Json status = kf_->EncryptionStatus(a.group, a.name);
  EXPECT_EQ(VersionOf(ActiveGeneration(status).value("kid", "")), VersionOf(a.kid))
      << status.dump();
  EXPECT_TRUE(DownloadsAs(a, Body(r).value("id", ""), data));
}

// ------------------------------------------------------------------ 4. refusals

// A vault with purge protection holding a good key and one bad key of each kind, and an
// account with a system-assigned identity granted get, wrapKey and unwrapKey on it; CMK off.
// Each refusal below starts from this and changes one thing.
TEST_F(CmkFlowTest, ProjectsAreChildResourcesOfTheAccountAndGoWithIt) {
  ASSERT_TRUE(kf_->MakeGroup("rg-projects"));
  ASSERT_EQ(kf_->PutAccount("rg-projects", "acct-projects").status, 201);
  const std::string projects = kf_->AccountId("rg-projects", "acct-projects") + "/projects";
  http::ClientResponse created = kf_->Arm(
      "PUT", projects + "/proj1", {{"location", "local"}, {"properties", {{"displayName", "P1"}}}});
  ASSERT_EQ(created.status, 201) << created.body;
  EXPECT_EQ(Body(created)["type"], "Microsoft.CognitiveServices/accounts/projects");
  EXPECT_EQ(Body(created)["properties"]["displayName"], "P1");
  EXPECT_EQ(kf_->Arm("PUT", projects + "/proj1", {{"properties", {{"description", "d"}}}}).status,
            200);
  EXPECT_EQ(kf_->Arm("PUT", projects + "/x", Json::object()).status, 400);  // name too short
  EXPECT_EQ(kf_->Arm("PUT", projects + "/proj2", {{"properties", {{"displayName", 7}}}}).status,
            400);
  http::ClientResponse listed = kf_->Arm("GET", projects, nullptr);
  ASSERT_EQ(listed.status, 200);
  EXPECT_EQ(Body(listed)["value"].size(), 1u);
  EXPECT_EQ(Body(kf_->Arm("GET", projects + "/proj1", nullptr))["properties"]["description"], "d");
  EXPECT_EQ(kf_->Arm("DELETE", projects + "/proj1", nullptr).status, 200);
  EXPECT_EQ(kf_->Arm("GET", projects + "/proj1", nullptr).status, 404);
  EXPECT_EQ(kf_->Arm("PUT", projects + "/proj3", Json::object()).status, 201);
  EXPECT_EQ(kf_->Arm("DELETE", kf_->AccountId("rg-projects", "acct-projects"), nullptr).status,
            200);
  EXPECT_EQ(kf_->Arm("GET", projects, nullptr).status, 404);  // the account is gone
}

TEST_F(CmkFlowTest, EnablingIsRefusedForEachBadKeyWithItsOwnCode) {
  const std::string rg = "rg-ref-keys";
  ASSERT_TRUE(kf_->MakeGroup(rg));
  ASSERT_TRUE(kf_->MakeVault(rg, "kv-ref-keys"));
  const std::string uri = kf_->VaultUrl("kv-ref-keys") + "/";
  kf_->CreateKey("kv-ref-keys", "good");
  kf_->CreateKey("kv-ref-keys", "ec", {{"kty", "EC"}, {"crv", "P-256"}});
  kf_->CreateKey("kv-ref-keys", "rsa3072", {{"kty", "RSA"}, {"key_size", 3072}});
  kf_->CreateKey("kv-ref-keys", "off",
                 {{"kty", "RSA"}, {"key_size", 2048}, {"attributes", {{"enabled", false}}}});
  kf_->CreateKey("kv-ref-keys", "expired",
                 {{"kty", "RSA"}, {"key_size", 2048}, {"attributes", {{"exp", UnixNow() - 3600}}}});
  http::ClientResponse r = kf_->PutAccount(rg, "acct-ref-keys");
  ASSERT_EQ(r.status, 201) << r.body;
  const std::string principal = Body(r)["identity"].value("principalId", "");
  ASSERT_EQ(kf_->UpdatePolicy(rg, "kv-ref-keys", "add", principal).status, 200);
  const Json before = kf_->GetAccount(rg, "acct-ref-keys");

  for (const auto& [key, code] :
       std::vector<std::pair<std::string, std::string>>{{"ec", "KeyVaultKeyNotSupported"},
                                                        {"rsa3072", "KeyVaultKeyNotSupported"},
                                                        {"off", "KeyVaultKeyDisabled"},
                                                        {"expired", "KeyVaultKeyExpired"},
                                                        {"absent", "KeyVaultKeyNotFound"}}) {
    SCOPED_TRACE(key);
    ExpectRefused(kf_->EnableCmk(rg, "acct-ref-keys", uri, key), code, rg, "acct-ref-keys", before);
  }
  // The one good input is accepted.
  r = kf_->EnableCmk(rg, "acct-ref-keys", uri, "good");
  EXPECT_EQ(r.status, 200) << Describe(r);
}

TEST_F(CmkFlowTest, EnablingIsRefusedWithoutAManagedIdentity) {
  const std::string rg = "rg-ref-id";
  ASSERT_TRUE(kf_->MakeGroup(rg));
  ASSERT_TRUE(kf_->MakeVault(rg, "kv-ref-id"));
  kf_->CreateKey("kv-ref-id", "cmk");
  http::ClientResponse r = kf_->PutAccount(rg, "acct-ref-id", "AIServices", /*identity=*/false);
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(Body(r)["identity"]["type"], "None");
  const Json before = kf_->GetAccount(rg, "acct-ref-id");
  ExpectRefused(kf_->EnableCmk(rg, "acct-ref-id", kf_->VaultUrl("kv-ref-id") + "/", "cmk"),
                "ManagedIdentityRequired", rg, "acct-ref-id", before);
}

TEST_F(CmkFlowTest, EnablingIsRefusedWithoutPurgeProtection) {
  const std::string rg = "rg-ref-purge";
  ASSERT_TRUE(kf_->MakeGroup(rg));
  // Purge protection cannot be set to false (it is irreversible): left out, it is off.
  ASSERT_TRUE(kf_->MakeVault(rg, "kv-ref-purge", {{"enablePurgeProtection", nullptr}}));
  kf_->CreateKey("kv-ref-purge", "cmk");
  http::ClientResponse r = kf_->PutAccount(rg, "acct-ref-purge");
  ASSERT_EQ(r.status, 201) << r.body;
  const std::string principal = Body(r)["identity"].value("principalId", "");
  ASSERT_EQ(kf_->UpdatePolicy(rg, "kv-ref-purge", "add", principal).status, 200);
  const Json before = kf_->GetAccount(rg, "acct-ref-purge");
  ExpectRefused(kf_->EnableCmk(rg, "acct-ref-purge", kf_->VaultUrl("kv-ref-purge") + "/", "cmk"),
                "KeyVaultPurgeProtectionRequired", rg, "acct-ref-purge", before);
  // Purge protection turned on: accepted.
  ASSERT_EQ(kf_->PatchVault(rg, "kv-ref-purge", {{"enablePurgeProtection", true}}).status, 200);
  r = kf_->EnableCmk(rg, "acct-ref-purge", kf_->VaultUrl("kv-ref-purge") + "/", "cmk");
  EXPECT_EQ(r.status, 200) << Describe(r);
}

// S5 allows CMK at creation; a new identity cannot hold a policy yet, so this PUT is refused,
// and the refusal leaves no account (and no identity) behind.
TEST_F(CmkFlowTest, CreatingWithCmkIsRefusedWithoutAccessAndLeavesNoAccount) {
  const std::string rg = "rg-ref-create";
  ASSERT_TRUE(kf_->MakeGroup(rg));
  ASSERT_TRUE(kf_->MakeVault(rg, "kv-ref-create"));
  kf_->CreateKey("kv-ref-create", "cmk");
  Json body = {
      {"kind", "AIServices"},
      {"sku", {{"name", "S0"}}},
      {"location", "local"},
      {"identity", {{"type", "SystemAssigned"}}},
      {"properties",
       {{"encryption", Deployment::CmkEncryption(kf_->VaultUrl("kv-ref-create") + "/", "cmk")}}}};
  http::ClientResponse r = kf_->Arm("PUT", kf_->AccountId(rg, "acct-ref-create"), body);
  EXPECT_EQ(r.status, 400) << Describe(r);
  EXPECT_EQ(ErrorCode(r), "KeyVaultIdentityPermissionsMissing") << Describe(r);
  r = kf_->Arm("GET", kf_->AccountId(rg, "acct-ref-create"), nullptr);
  EXPECT_EQ(r.status, 404) << Describe(r);
  // The name is free: the same account without CMK can be created.
  r = kf_->PutAccount(rg, "acct-ref-create");
  EXPECT_EQ(r.status, 201) << Describe(r);
}

TEST_F(CmkFlowTest, EnablingIsRefusedWhenTheIdentityLacksPermissions) {
  const std::string rg = "rg-ref-perm";
  ASSERT_TRUE(kf_->MakeGroup(rg));
  ASSERT_TRUE(kf_->MakeVault(rg, "kv-ref-perm"));
  const std::string uri = kf_->VaultUrl("kv-ref-perm") + "/";
  kf_->CreateKey("kv-ref-perm", "cmk");
  http::ClientResponse r = kf_->PutAccount(rg, "acct-ref-perm");
  ASSERT_EQ(r.status, 201) << r.body;
  const std::string principal = Body(r)["identity"].value("principalId", "");
  const Json before = kf_->GetAccount(rg, "acct-ref-perm");

  // No policy at all, then each permission missing in turn.
  ExpectRefused(kf_->EnableCmk(rg, "acct-ref-perm", uri, "cmk"),
                "KeyVaultIdentityPermissionsMissing", rg, "acct-ref-perm", before);
  EXPECT_NE(ErrorMessage(kf_->EnableCmk(rg, "acct-ref-perm", uri, "cmk")).find(principal),
            std::string::npos);
  ASSERT_EQ(kf_->UpdatePolicy(rg, "kv-ref-perm", "add", principal, Json::array({"get"})).status,
            200);
  for (const Json& keys : {Json::array({"get", "wrapKey"}), Json::array({"get", "unwrapKey"}),
                           Json::array({"wrapKey", "unwrapKey"})}) {
    SCOPED_TRACE(keys.dump());
    ASSERT_EQ(kf_->UpdatePolicy(rg, "kv-ref-perm", "replace", principal, keys).status, 200);
    ExpectRefused(kf_->EnableCmk(rg, "acct-ref-perm", uri, "cmk"),
                  "KeyVaultIdentityPermissionsMissing", rg, "acct-ref-perm", before);
  }
  ASSERT_EQ(kf_->UpdatePolicy(rg, "kv-ref-perm", "replace", principal).status, 200);
  r = kf_->EnableCmk(rg, "acct-ref-perm", uri, "cmk");
  EXPECT_EQ(r.status, 200) << Describe(r);
}

TEST_F(CmkFlowTest, EnablingIsRefusedForAVaultInAnotherResourceGroup) {
  ASSERT_TRUE(kf_->MakeGroup("rg-ref-here"));
  ASSERT_TRUE(kf_->MakeGroup("rg-ref-there"));
  ASSERT_TRUE(kf_->MakeVault("rg-ref-there", "kv-ref-there"));
  kf_->CreateKey("kv-ref-there", "cmk");
  http::ClientResponse r = kf_->PutAccount("rg-ref-here", "acct-ref-here");
  ASSERT_EQ(r.status, 201) << r.body;
  const std::string principal = Body(r)["identity"].value("principalId", "");
  ASSERT_EQ(kf_->UpdatePolicy("rg-ref-there", "kv-ref-there", "add", principal).status, 200);
  const Json before = kf_->GetAccount("rg-ref-here", "acct-ref-here");
  ExpectRefused(
      kf_->EnableCmk("rg-ref-here", "acct-ref-here", kf_->VaultUrl("kv-ref-there") + "/", "cmk"),
      "KeyVaultNotInSameResourceGroup", "rg-ref-here", "acct-ref-here", before);
}

TEST_F(CmkFlowTest, EnablingIsRefusedWhenTheFirewallBlocksTheService) {
  const std::string rg = "rg-ref-fw";
  ASSERT_TRUE(kf_->MakeGroup(rg));
  ASSERT_TRUE(kf_->MakeVault(rg, "kv-ref-fw"));
  const std::string uri = kf_->VaultUrl("kv-ref-fw") + "/";
  kf_->CreateKey("kv-ref-fw", "cmk");
  http::ClientResponse r = kf_->PutAccount(rg, "acct-ref-fw");
  ASSERT_EQ(r.status, 201) << r.body;
  const std::string principal = Body(r)["identity"].value("principalId", "");
  ASSERT_EQ(kf_->UpdatePolicy(rg, "kv-ref-fw", "add", principal).status, 200);
  ASSERT_EQ(kf_->PatchVault(rg, "kv-ref-fw",
                            {{"networkAcls", {{"defaultAction", "Deny"}, {"bypass", "None"}}}})
                .status,
            200);
  const Json before = kf_->GetAccount(rg, "acct-ref-fw");
  ExpectRefused(kf_->EnableCmk(rg, "acct-ref-fw", uri, "cmk"), "KeyVaultFirewallBlocksService", rg,
                "acct-ref-fw", before);
  // Trusted services let through: accepted, the firewall still closed to everyone else.
  ASSERT_EQ(
      kf_->PatchVault(rg, "kv-ref-fw",
                      {{"networkAcls", {{"defaultAction", "Deny"}, {"bypass", "AzureServices"}}}})
          .status,
      200);
  r = kf_->EnableCmk(rg, "acct-ref-fw", uri, "cmk");
  EXPECT_EQ(r.status, 200) << Describe(r);
}

TEST_F(CmkFlowTest, ChangesOfACmkAccountAreRefusedAndChangeNothing) {
  CmkAccount a;
  ASSERT_TRUE(MakeCmkAccount("rg-ref-cmk", "kv-ref-cmk", "acct-ref-cmk", &a));
  const Json before = kf_->GetAccount(a.group, a.name);
  ASSERT_EQ(before["properties"]["encryption"]["keySource"], kCustomerManaged);

  // S5: no way back to service-managed keys.
  ExpectRefused(
      kf_->PatchAccount(a.group, a.name,
                        {{"properties", {{"encryption", {{"keySource", kServiceManaged}}}}}}),
      "CmkToServiceManagedNotSupported", a.group, a.name, before);

  // S6: a key in another vault, even a good one of the same group.
  ASSERT_TRUE(kf_->MakeVault(a.group, "kv-ref-cmk-2"));
  kf_->CreateKey("kv-ref-cmk-2", "cmk");
  ASSERT_EQ(kf_->UpdatePolicy(a.group, "kv-ref-cmk-2", "add", a.principal).status, 200);
  ExpectRefused(kf_->EnableCmk(a.group, a.name, kf_->VaultUrl("kv-ref-cmk-2") + "/", "cmk"),
                "KeyVaultChangeNotSupported", a.group, a.name, before);

  // S4: the identity stays while CMK is on.
  ExpectRefused(kf_->PatchAccount(a.group, a.name, {{"identity", {{"type", "None"}}}}),
                "ManagedIdentityRequiredByCmk", a.group, a.name, before);

  // Nothing changed underneath either: the data is still there under the same key.
  EXPECT_TRUE(DownloadsAs(a, a.file_id, a.data));
  const Json status = kf_->EncryptionStatus(a.group, a.name);
  EXPECT_EQ(GenerationsOf(status, kCustomerManaged).size(), 1u) << status.dump();
  EXPECT_EQ(ActiveGeneration(status)["kid"], a.kid);
}

// S4 from the other side: one PATCH that turns CMK on and the identity off would leave a CMK
// account without the identity that unwraps its key.
TEST_F(CmkFlowTest, EnablingCmkAndSwitchingTheIdentityOffAtOnceIsRefused) {
  const std::string rg = "rg-ref-both";
  ASSERT_TRUE(kf_->MakeGroup(rg));
  ASSERT_TRUE(kf_->MakeVault(rg, "kv-ref-both"));
  kf_->CreateKey("kv-ref-both", "cmk");
  http::ClientResponse r = kf_->PutAccount(rg, "acct-ref-both");
  ASSERT_EQ(r.status, 201) << r.body;
  const std::string principal = Body(r)["identity"].value("principalId", "");
  ASSERT_EQ(kf_->UpdatePolicy(rg, "kv-ref-both", "add", principal).status, 200);
  const Json before = kf_->GetAccount(rg, "acct-ref-both");
  r = kf_->PatchAccount(
      rg, "acct-ref-both",
      {{"identity", {{"type", "None"}}},
       {"properties",
        {{"encryption", Deployment::CmkEncryption(kf_->VaultUrl("kv-ref-both") + "/", "cmk")}}}});
  EXPECT_EQ(r.status, 400) << Describe(r);
  EXPECT_TRUE(ErrorCode(r) == "ManagedIdentityRequired" ||
              ErrorCode(r) == "ManagedIdentityRequiredByCmk")
      << Describe(r);
  const Json after = kf_->GetAccount(rg, "acct-ref-both");
  EXPECT_EQ(after["properties"]["encryption"], before["properties"]["encryption"]) << after.dump();
  EXPECT_EQ(after["identity"], before["identity"]) << after.dump();
}

TEST_F(CmkFlowTest, KindsNeedingApprovalAreRefusedUntilItIsGranted) {
  const std::string rg = "rg-ref-speech";
  ASSERT_TRUE(kf_->MakeGroup(rg));
  ASSERT_TRUE(kf_->MakeVault(rg, "kv-ref-speech"));
  const std::string uri = kf_->VaultUrl("kv-ref-speech") + "/";
  kf_->CreateKey("kv-ref-speech", "cmk");
  http::ClientResponse r = kf_->PutAccount(rg, "acct-ref-speech", "SpeechServices");
  ASSERT_EQ(r.status, 201) << r.body;
  const std::string principal = Body(r)["identity"].value("principalId", "");
  ASSERT_EQ(kf_->UpdatePolicy(rg, "kv-ref-speech", "add", principal).status, 200);
  const Json before = kf_->GetAccount(rg, "acct-ref-speech");

  r = kf_->EnableCmk(rg, "acct-ref-speech", uri, "cmk");
  ExpectRefused(r, "CmkApprovalRequired", rg, "acct-ref-speech", before);
  const std::string approval =
      kf_->Sub() + "/providers/Microsoft.KeyFoundry/cmkApprovals/SpeechServices";
  EXPECT_NE(ErrorMessage(r).find("cmkApprovals/SpeechServices"), std::string::npos)
      << "the refusal should say how to get the approval: " << Describe(r);

  r = kf_->Arm("PUT", approval, Json::object());
  ASSERT_EQ(r.status, 200) << Describe(r);
  EXPECT_EQ(Body(r)["approved"], true);
  r = kf_->EnableCmk(rg, "acct-ref-speech", uri, "cmk");
  ASSERT_EQ(r.status, 200) << Describe(r);
  EXPECT_EQ(Body(r)["properties"]["encryption"]["keySource"], kCustomerManaged);
}

// ------------------------------------------------------------------ 5. local auth

TEST_F(CmkFlowTest, DisablingLocalAuthLeavesOnlyTokens) {
  CmkAccount a;
  ASSERT_TRUE(MakeCmkAccount("rg-local", "kv-local", "acct-local", &a));
  http::ClientResponse r =
      kf_->PatchAccount(a.group, a.name, {{"properties", {{"disableLocalAuth", true}}}});
  ASSERT_EQ(r.status, 200) << Describe(r);
  EXPECT_EQ(Body(r)["properties"]["disableLocalAuth"], true);

  r = kf_->Download(a.name, ApiKeyHeader(a), a.file_id);
  EXPECT_EQ(r.status, 401) << Describe(r);
  EXPECT_EQ(ErrorCode(r), "AuthenticationTypeDisabled") << Describe(r);
  r = kf_->Upload(a.name, ApiKeyHeader(a), "x");
  EXPECT_EQ(r.status, 401) << Describe(r);

  r = kf_->Arm("POST", kf_->AccountId(a.group, a.name) + "/listKeys", nullptr);
  EXPECT_EQ(r.status, 400) << Describe(r);

  const Deployment::Header bearer = {"Authorization",
                                     "Bearer " + kf_->AdminToken("cognitiveservices")};
  r = kf_->Download(a.name, bearer, a.file_id);
  ASSERT_EQ(r.status, 200) << Describe(r);
  EXPECT_TRUE(r.body == a.data);
  const std::string more = RandomData(5000);
  r = kf_->Upload(a.name, bearer, more);
  ASSERT_EQ(r.status, 200) << Describe(r);
  r = kf_->Download(a.name, bearer, Body(r).value("id", ""));
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(r.body == more);

  // Switched back on, the same key works again.
  r = kf_->PatchAccount(a.group, a.name, {{"properties", {{"disableLocalAuth", false}}}});
  ASSERT_EQ(r.status, 200) << Describe(r);
  EXPECT_TRUE(DownloadsAs(a, a.file_id, a.data));
}

// ------------------------------------------------------------------ 6. a remote vault

class CmkRemoteVaultTest : public ::testing::Test {
 protected:
  static void PrintLogs(const Deployment& a, const Deployment& b) {
    for (auto [name, log] : {std::pair{"A", a.server().Log()}, std::pair{"B", b.server().Log()}}) {
      if (log.size() > 5000) log = log.substr(log.size() - 5000);
      std::printf("--- keyfoundryd %s log (tail) ---\n%s\n", name, log.c_str());
    }
  }
};

TEST_F(CmkRemoteVaultTest, AnAccountUsesAKeyInAnotherKeyfoundrydAndSeesItRevoked) {
  constexpr int kTtlSeconds = 2;
  // B: the vault, its key, and a service principal allowed get, wrapKey and unwrapKey.
  Deployment b("b.localhost", {});
  const std::string rg = "rg-remote";
  ASSERT_TRUE(b.MakeGroup(rg));
  ASSERT_TRUE(b.MakeVault(rg, "kv-remote"));
  const Json key = b.CreateKey("kv-remote", "cmk");
  ASSERT_TRUE(key.contains("key")) << key.dump();
  const std::string kid = key["key"].value("kid", "");
  b.CreateKey("kv-remote", "rsa3072", {{"kty", "RSA"}, {"key_size", 3072}});
  const Json sp = b.MakeServicePrincipal("keyfoundry-a");
  const std::string sp_oid = sp.value("id", "");
  ASSERT_EQ(b.UpdatePolicy(rg, "kv-remote", "add", sp_oid).status, 200);

  testutil::ScopedTempDir dir;
  const std::string file = dir.path() + "/remote-vaults.json";
  const Json remotes = Json::array({{{"host_suffix", ".vault." + b.domain()},
                                     {"client_id", sp.value("appId", "")},
                                     {"client_secret", sp.value("secretText", "")},
                                     {"ca_file", b.server().data_dir() + "/tls/ca.pem"},
                                     {"connect_address", "127.0.0.1"}}});
  ASSERT_TRUE(WriteFileAtomically(file, remotes.dump(), 0600).ok());

  // A: the account, following B's key.
  Deployment a("localhost", {{"KEYFOUNDRY_REMOTE_VAULTS_FILE", file},
                             {"KEYFOUNDRY_KEY_CACHE_TTL_SECONDS", std::to_string(kTtlSeconds)}});
  ASSERT_NE(a.server().port(), 0) << a.server().Log();
  ASSERT_TRUE(a.MakeGroup(rg));
  http::ClientResponse r = a.PutAccount(rg, "acct-remote");
  ASSERT_EQ(r.status, 201) << r.body;
  const std::string vault_uri = b.VaultUrl("kv-remote") + "/";
  // The key's own checks and the probe apply to a remote vault.
  r = a.EnableCmk(rg, "acct-remote", vault_uri, "rsa3072");
  EXPECT_EQ(r.status, 400) << Describe(r);
  EXPECT_EQ(ErrorCode(r), "KeyVaultKeyNotSupported") << Describe(r);
  ASSERT_EQ(b.UpdatePolicy(rg, "kv-remote", "remove", sp_oid).status, 200);
  r = a.EnableCmk(rg, "acct-remote", vault_uri, "cmk");
  EXPECT_EQ(r.status, 400) << Describe(r);
  EXPECT_EQ(ErrorCode(r), "KeyVaultProbeFailed") << Describe(r);
  EXPECT_EQ(a.GetAccount(rg, "acct-remote")["properties"]["encryption"]["keySource"],
            kServiceManaged);
  ASSERT_EQ(b.UpdatePolicy(rg, "kv-remote", "add", sp_oid).status, 200);

  r = a.EnableCmk(rg, "acct-remote", vault_uri, "cmk");
  ASSERT_EQ(r.status, 200) << Describe(r);
  const Deployment::Header auth = {"api-key", a.ApiKey(rg, "acct-remote")};
  const std::string data = RandomData(200000);
  r = a.Upload("acct-remote", auth, data);
  ASSERT_EQ(r.status, 200) << Describe(r);
  const std::string file_id = Body(r).value("id", "");
  r = a.Download("acct-remote", auth, file_id);
  ASSERT_EQ(r.status, 200) << Describe(r);
  EXPECT_TRUE(r.body == data);
  Json status = a.EncryptionStatus(rg, "acct-remote");
  EXPECT_EQ(status["status"], "Active") << status.dump();
  EXPECT_EQ(ActiveGeneration(status)["kid"], kid) << status.dump();

  // Revoked on B: A notices when its cache expires (TTL), at most one more second for the
  // polling, and the negative cache (min(5 s, TTL)) does not delay the first refusal.
  ASSERT_EQ(b.UpdatePolicy(rg, "kv-remote", "remove", sp_oid).status, 200);
  const milliseconds revocation_bound((kTtlSeconds + 1 + kTtlSeconds) * 1000);
  auto start = Clock::now();
  http::ClientResponse last;
  std::optional<milliseconds> revoked = PollUntil(start, revocation_bound, [&] {
    last = a.Download("acct-remote", auth, file_id);
    return last.status != 200;
  });
  ReportTiming("remote vault (TTL 2 s) revocation", revoked);
  EXPECT_TRUE(revoked.has_value()) << "still downloads " << revocation_bound.count() << " ms on";
  EXPECT_EQ(last.status, 403) << Describe(last);
  EXPECT_EQ(ErrorCode(last), "KeyInaccessible") << Describe(last);
  EXPECT_EQ(InnerCode(last), "AccessDenied") << Describe(last);
  EXPECT_NE(ErrorMessage(last).find(kid), std::string::npos) << Describe(last);
  status = a.EncryptionStatus(rg, "acct-remote");
  EXPECT_EQ(status["status"], "KeyInaccessible") << status.dump();
  EXPECT_EQ(ActiveGeneration(status)["reason"], "AccessDenied") << status.dump();
  r = a.Upload("acct-remote", auth, "refused");
  EXPECT_EQ(r.status, 403) << Describe(r);

  // Restored on B: back after the negative cache (TTL) and the next use.
  ASSERT_EQ(b.UpdatePolicy(rg, "kv-remote", "add", sp_oid).status, 200);
  start = Clock::now();
  std::optional<milliseconds> restored = PollUntil(start, revocation_bound, [&] {
    last = a.Download("acct-remote", auth, file_id);
    return last.status == 200;
  });
  ReportTiming("remote vault (TTL 2 s) restoration", restored);
  ASSERT_TRUE(restored.has_value()) << Describe(last);
  EXPECT_TRUE(last.body == data);
  status = a.EncryptionStatus(rg, "acct-remote");
  EXPECT_EQ(status["status"], "Active") << status.dump();

  if (HasFailure()) PrintLogs(a, b);
}

// ------------------------------------------------------------------ 7. listing files

TEST_F(CmkFlowTest, FileListsArePagedWithACursorInBothOrders) {
  const std::string rg = "rg-list";
  ASSERT_TRUE(kf_->MakeGroup(rg));
  http::ClientResponse r = kf_->PutAccount(rg, "acct-list");
  ASSERT_EQ(r.status, 201) << Describe(r);
  const Deployment::Header auth = {"api-key", kf_->ApiKey(rg, "acct-list")};
  std::vector<std::string> uploaded;
  for (int i = 0; i < 3; ++i) {
    r = kf_->Upload("acct-list", auth, RandomData(100));
    ASSERT_EQ(r.status, 200) << Describe(r);
    uploaded.push_back(Body(r).value("id", ""));
  }
  auto list = [&](const std::string& query) {
    return kf_->server().Call("GET", kf_->Files("acct-list") + query, {auth});
  };
  auto ids = [](const Json& page) {
    std::vector<std::string> out;
    for (const Json& f : page["data"]) out.push_back(f.value("id", ""));
    return out;
  };

  r = list("?order=asc&limit=2");
  ASSERT_EQ(r.status, 200) << Describe(r);
  const Json first = Body(r);
  ASSERT_EQ(first["data"].size(), 2u) << r.body;
  EXPECT_EQ(first["object"], "list");
  EXPECT_EQ(first["has_more"], true);
  EXPECT_EQ(first["first_id"], first["data"][0]["id"]);
  EXPECT_EQ(first["last_id"], first["data"][1]["id"]);
  r = list("?order=asc&limit=2&after=" + first.value("last_id", ""));
  ASSERT_EQ(r.status, 200) << Describe(r);
  const Json second = Body(r);
  EXPECT_EQ(second["has_more"], false);
  std::vector<std::string> ascending = ids(first);
  for (const std::string& id : ids(second)) ascending.push_back(id);
  EXPECT_TRUE(
      std::is_permutation(ascending.begin(), ascending.end(), uploaded.begin(), uploaded.end()))
      << first.dump() << second.dump();

  r = list("");  // newest first by default: the reverse
  ASSERT_EQ(r.status, 200) << Describe(r);
  EXPECT_EQ(ids(Body(r)), std::vector<std::string>(ascending.rbegin(), ascending.rend()));
  EXPECT_EQ(Body(r)["has_more"], false);

  r = list("?purpose=batch");
  ASSERT_EQ(r.status, 200) << Describe(r);
  EXPECT_EQ(Body(r), Json::parse(R"({"object": "list", "data": [], "first_id": null,
                                     "last_id": null, "has_more": false})"));

  for (const std::string& bad : {"?order=sideways", "?limit=0", "?limit=10001",
                                 "?after=file-00000000000000000000000000000000"}) {
    r = list(bad);
    EXPECT_EQ(r.status, 400) << bad << ": " << Describe(r);
    EXPECT_EQ(ErrorCode(r), "invalidPayload") << bad;
  }
}

// ------------------------------------------------------------------ restarts (S7, issue 6)

// Its own keyfoundryd (SetUpTestSuite is CmkFlowTest's), which these tests restart.
class CmkRestartTest : public CmkFlowTest {};

TEST_F(CmkRestartTest, DeploymentsThatCannotLoadAfterARestartSayWhyAndComeBackWithTheKey) {
  CmkAccount a;
  ASSERT_TRUE(MakeCmkAccount("rg-restart", "kv-restart", "acct-restart", &a));
  Tuned tuned;
  ASSERT_TRUE(Tune(a, &tuned));
  http::ClientResponse r = kf_->Arm(
      "PUT", kf_->AccountId(a.group, a.name) + "/deployments/base",
      {{"properties", {{"model", {{"format", "OpenAI"}, {"name", "gpt-4o-mini"}, {"version", "2024-07-18"}}}}}});
  ASSERT_EQ(r.status, 201) << Describe(r);

  ASSERT_TRUE(kf_->SetKeyEnabled(a.vault, a.key, false));
  kf_->Restart(SIGTERM);

  // The fine-tuned model's weights need the key: its deployment cannot load, and says why.
  const Json live =
      Body(kf_->Arm("GET", kf_->AccountId(a.group, a.name) + "/deployments/live", nullptr));
  EXPECT_EQ(live["properties"].value("servingState", ""), "CannotLoad") << live.dump();
  EXPECT_EQ(live["properties"]["servingError"].value("code", ""), "KeyInaccessible") << live.dump();
  EXPECT_NE(live["properties"]["servingError"].value("message", "").find(a.kid), std::string::npos)
      << live.dump();
  r = kf_->Ai("POST", a.name, ApiKeyHeader(a), "/deployments/live/chat/completions",
              {{"messages", Json::array({{{"role", "user"}, {"content", "hello"}}})}});
  EXPECT_TRUE(IsKeyInaccessible(r, "KeyDisabled", a.kid));
  // A base model holds no customer data: its deployment serves.
  r = kf_->Ai("POST", a.name, ApiKeyHeader(a), "/deployments/base/chat/completions",
              {{"messages", Json::array({{{"role", "user"}, {"content", "hello"}}})}});
  EXPECT_EQ(r.status, 200) << Describe(r);

  // S8: the key back, the deployment loads at its next request, without operator action.
  ASSERT_TRUE(kf_->SetKeyEnabled(a.vault, a.key, true));
  std::optional<milliseconds> back = PollUntil(Clock::now(), kRestorationBound, [&] {
    return static_cast<bool>(Answers(a, "live"));
  });
  ReportTiming("deployment back after the key is enabled", back);
  EXPECT_TRUE(back.has_value());
  const Json serving =
      Body(kf_->Arm("GET", kf_->AccountId(a.group, a.name) + "/deployments/live", nullptr));
  EXPECT_EQ(serving["properties"].value("servingState", ""), "Serving") << serving.dump();
}

TEST_F(CmkRestartTest, AJobKilledWhileItTrainsStartsAgainAndSucceeds) {
  CmkAccount a;
  ASSERT_TRUE(MakeCmkAccount("rg-kill", "kv-kill", "acct-kill", &a));
  // Enough data that training takes a while: many distinct pairs, several epochs.
  std::string data;
  for (int i = 0; i < 4000; ++i) {
    data += Json{{"messages",
                  Json::array({{{"role", "user"},
                                {"content", "What is stored in drawer " + std::to_string(i) + "?"}},
                               {{"role", "assistant"},
                                {"content", "Drawer " + std::to_string(i) + " holds " +
                                                std::to_string(i * 7 % 97) + " spools of " +
                                                (i % 2 ? "red" : "green") + " thread."}}})}}
                .dump() +
            "\n";
  }
  http::ClientResponse r = kf_->Upload(a.name, ApiKeyHeader(a), data);
  ASSERT_EQ(r.status, 200) << Describe(r);
  const std::string training_file = Body(r).value("id", "");
  r = kf_->Ai("POST", a.name, ApiKeyHeader(a), "/fine_tuning/jobs",
              {{"model", "gpt-4o-mini-2024-07-18"},
               {"training_file", training_file},
               {"seed", 3},
               {"hyperparameters", {{"n_epochs", 20}}}});
  ASSERT_EQ(r.status, 200) << Describe(r);
  const std::string job = Body(r).value("id", "");
  Json seen;
  ASSERT_TRUE(PollUntil(Clock::now(), std::chrono::seconds(30), [&] {
    seen = Body(kf_->Ai("GET", a.name, ApiKeyHeader(a), "/fine_tuning/jobs/" + job));
    return seen.value("status", "") == "running";
  }).has_value())
      << seen.dump();

  kf_->Restart(SIGKILL);  // in the middle of training

  Json done;
  ASSERT_TRUE(PollUntil(Clock::now(), std::chrono::seconds(120), [&] {
    done = Body(kf_->Ai("GET", a.name, ApiKeyHeader(a), "/fine_tuning/jobs/" + job));
    const std::string status = done.value("status", "");
    return status == "succeeded" || status == "failed";
  }).has_value())
      << done.dump();
  ASSERT_EQ(done.value("status", ""), "succeeded") << done.dump();
  const Json events = Body(
      kf_->Ai("GET", a.name, ApiKeyHeader(a), "/fine_tuning/jobs/" + job + "/events?limit=100"));
  bool restarted = false;
  for (const Json& e : events["data"]) {
    restarted = restarted || e.value("message", "").find("restarted") != std::string::npos;
  }
  EXPECT_TRUE(restarted) << events.dump();
  // One checkpoint per epoch, none left over from the interrupted run.
  const Json checkpoints =
      Body(kf_->Ai("GET", a.name, ApiKeyHeader(a), "/fine_tuning/jobs/" + job + "/checkpoints"));
  EXPECT_EQ(checkpoints["data"].size(), 20u) << checkpoints.dump();
  r = kf_->PutDeployment(a.group, a.name, "drawers", done.value("fine_tuned_model", ""));
  ASSERT_EQ(r.status, 201) << Describe(r);
  r = kf_->Ai("POST", a.name, ApiKeyHeader(a), "/deployments/drawers/chat/completions",
              {{"messages", Json::array({{{"role", "user"}, {"content", "What is stored in drawer 12?"}}})},
               {"temperature", 0}});
  ASSERT_EQ(r.status, 200) << Describe(r);
  EXPECT_EQ(Body(r)["choices"][0]["message"].value("content", ""),
            "Drawer 12 holds 84 spools of green thread.");
  // Every file is still readable: the training data, and no half-written weights listed.
  EXPECT_TRUE(DownloadsAs(a, training_file, data));
}

// Starts a reprocessing operation on `a` (`body` as the API takes it) and returns its id.
std::string BeginReprocess(Deployment& kf, const CmkAccount& a, const Json& body) {
  http::ClientResponse r =
      kf.Arm("POST", kf.AccountId(a.group, a.name) + "/encryption/reprocess", body);
  EXPECT_EQ(r.status, 202) << Describe(r);
  const std::string location(r.Header("Azure-AsyncOperation").value_or(""));
  EXPECT_NE(location.find("/encryption/operations/"), std::string::npos) << location;
  return Body(r).value("name", "");
}

Json Operation(Deployment& kf, const CmkAccount& a, const std::string& id) {
  return Body(kf.Arm("GET", kf.AccountId(a.group, a.name) + "/encryption/operations/" + id, nullptr));
}

TEST_F(CmkRestartTest, ReprocessingKilledAtSeveralPointsCompletesWithEveryObjectReadable) {
  CmkAccount a;
  ASSERT_TRUE(MakeCmkAccount("rg-reproc", "kv-reproc", "acct-reproc", &a));
  // Files of every kind: small ones (kept in the metadata store) and larger ones (blobs).
  std::map<std::string, std::string> files = {{a.file_id, a.data}};
  for (int i = 0; i < 240; ++i) {
    const std::string data = RandomData(i % 8 == 0 ? 100000 + 997 * static_cast<size_t>(i) : 100 + 37 * static_cast<size_t>(i));
    http::ClientResponse r = kf_->Upload(a.name, ApiKeyHeader(a), data);
    ASSERT_EQ(r.status, 200) << Describe(r);
    files[Body(r).value("id", "")] = data;
  }
  const auto all_readable = [&]() -> ::testing::AssertionResult {
    for (const auto& [id, data] : files) {
      if (auto ok = DownloadsAs(a, id, data); !ok) return ok << " (" << id << ")";
    }
    return ::testing::AssertionSuccess();
  };
  const auto old_generation_empty = [&](const std::string& kid) {
    for (const Json& g : GenerationsOf(kf_->EncryptionStatus(a.group, a.name), kCustomerManaged)) {
      if (g.value("kid", "") == kid) return g.value("objects", -1) == 0 && g.value("retirable", false);
    }
    return false;
  };

  for (const char* mode : {"reencrypt", "rewrap"}) {
    SCOPED_TRACE(mode);
    // Rotate to a new key of the same vault: every object is under the previous one.
    const std::string key = std::string("next-") + mode;
    ASSERT_TRUE(kf_->CreateKey(a.vault, key).contains("key"));
    const std::string old_kid = ActiveGeneration(kf_->EncryptionStatus(a.group, a.name)).value("kid", "");
    ASSERT_EQ(kf_->EnableCmk(a.group, a.name, a.vault_uri, key).status, 200);

    // Paced to 40 objects a second, so that it can be killed in the middle, twice.
    const std::string id =
        BeginReprocess(*kf_, a, {{"mode", mode}, {"generation", "all"}, {"maxObjectsPerSecond", 40}});
    ASSERT_FALSE(id.empty());
    for (int threshold : {40, 120}) {
      Json op;
      ASSERT_TRUE(PollUntil(Clock::now(), std::chrono::seconds(30), [&] {
        op = Operation(*kf_, a, id);
        return op["properties"].value("moved", 0) >= threshold || op.value("status", "") != "InProgress";
      }).has_value()) << op.dump();
      ASSERT_EQ(op.value("status", ""), "InProgress") << "finished before the kill: " << op.dump();
      kf_->Restart(SIGKILL);
      EXPECT_TRUE(all_readable()) << "after a kill at " << threshold;
    }
    Json op;
    ASSERT_TRUE(PollUntil(Clock::now(), std::chrono::seconds(60), [&] {
      op = Operation(*kf_, a, id);
      return op.value("status", "") != "InProgress";
    }).has_value()) << op.dump();
    EXPECT_EQ(op.value("status", ""), "Succeeded") << op.dump();
    EXPECT_EQ(op["properties"].value("remaining", -1), 0) << op.dump();
    EXPECT_EQ(op.value("percentComplete", 0.0), 100.0) << op.dump();
    EXPECT_TRUE(all_readable());
    EXPECT_TRUE(old_generation_empty(old_kid)) << kf_->EncryptionStatus(a.group, a.name).dump();

    // The old key is no longer needed: disabling it changes nothing for the account's data.
    ASSERT_TRUE(kf_->SetKeyEnabled(a.vault, old_kid.substr(old_kid.find("/keys/") + 6,
                                                            old_kid.rfind('/') - old_kid.find("/keys/") - 6),
                                   false));
    EXPECT_TRUE(all_readable()) << "with the previous key disabled";
    // Idempotent: running it again moves nothing.
    const std::string again = BeginReprocess(*kf_, a, {{"mode", mode}});
    ASSERT_TRUE(PollUntil(Clock::now(), std::chrono::seconds(30), [&] {
      op = Operation(*kf_, a, again);
      return op.value("status", "") != "InProgress";
    }).has_value());
    EXPECT_EQ(op.value("status", ""), "Succeeded") << op.dump();
    EXPECT_EQ(op["properties"].value("moved", -1), 0) << op.dump();
  }
}

}  // namespace
}  // namespace keyfoundry
