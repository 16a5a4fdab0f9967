// kf cognitiveservices: AI accounts, as `az cognitiveservices account`, with their identity,
// customer-managed key, API keys and key-usage report, and the CMK approvals some kinds need.
//
//   kf cognitiveservices account create|update|show|list|delete
//   kf cognitiveservices account identity assign|remove|show
//   kf cognitiveservices account keys list|regenerate
//   kf cognitiveservices account encryption show | reprocess | retire
//   kf cognitiveservices account deployment create|list|show|delete
//   kf cognitiveservices cmk-approval grant|revoke|list
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <thread>

#include "cli/commands.h"
#include "common/strings.h"
#include "http/url.h"

namespace keyfoundry::cli {
namespace {

using Json = nlohmann::json;

struct AccountOptions {
  std::string name;
  std::string group;
  std::string kind = "AIServices";
  std::string sku = "S0";
  std::string location = "local";
  bool assign_identity = false;
  std::string key_source;
  std::string key_vault;
  std::string key_name;
  std::optional<std::string> key_version;
  std::string disable_local_auth;
  std::vector<std::string> tags;
  std::string key_to_regenerate;
  std::string approval_kind;
  bool yes = false;
  // deployments
  std::string deployment;
  std::string model_name;
  std::string model_version;
  std::string model_format = "OpenAI";
  std::string deployment_sku = "Standard";
  int64_t sku_capacity = 1;
  // reprocessing
  std::string reprocess_mode = "rewrap";
  std::string reprocess_generation = "all";
  int64_t max_objects_per_second = 0;
  bool no_wait = false;
  int64_t retire_generation = 0;
};

const std::vector<Column>& AccountColumns() {
  static const std::vector<Column> columns = {
      Field("Name", "/name"),
      Field("Kind", "/kind"),
      Field("Location", "/location"),
      Field("Identity", "/identity/type"),
      Field("KeySource", "/properties/encryption/keySource"),
      Field("KeyName", "/properties/encryption/keyVaultProperties/keyName"),
      Field("Endpoint", "/properties/endpoint")};
  return columns;
}

std::string AccountPath(const Session& s, const AccountOptions& o, const std::string& suffix = "") {
  return "/subscriptions/" + s.profile.subscription_id + "/resourceGroups/" +
         http::PercentEncode(o.group) + "/providers/Microsoft.CognitiveServices/accounts/" +
         http::PercentEncode(o.name) + suffix + "?api-version=" + kCognitiveServicesApiVersion;
}

// --encryption-key-vault: a vault URI as given, or a vault name of this deployment.
std::string VaultUriOf(const Session& s, const std::string& vault) {
  if (vault.rfind("https://", 0) == 0) return vault.back() == '/' ? vault : vault + "/";
  const std::string& server = s.profile.server;
  const size_t colon = server.rfind(':');
  const std::string port = colon != std::string::npos && colon > std::string("https:").size()
                               ? server.substr(colon)
                               : "";
  return "https://" + vault + "." + s.profile.vault_dns_suffix + port + "/";
}

// The properties.encryption object the options ask for, or null when they name none.
StatusOr<Json> EncryptionOf(const Session& s, const AccountOptions& o) {
  const bool any_key = !o.key_vault.empty() || !o.key_name.empty() || o.key_version.has_value();
  if (o.key_source.empty() && !any_key) return Json(nullptr);
  std::string source = o.key_source.empty() ? "Microsoft.KeyVault" : o.key_source;
  if (source != "Microsoft.KeyVault" && source != "Microsoft.CognitiveServices") {
    return InvalidArgumentError(
        "--encryption-key-source must be Microsoft.KeyVault or Microsoft.CognitiveServices");
  }
  if (source == "Microsoft.CognitiveServices") {
    if (any_key) {
      return InvalidArgumentError(
          "--encryption-key-vault, --encryption-key-name and --encryption-key-version go with "
          "--encryption-key-source Microsoft.KeyVault");
    }
    return Json{{"keySource", source}};
  }
  if (o.key_vault.empty() || o.key_name.empty()) {
    return InvalidArgumentError(
        "a customer-managed key needs --encryption-key-vault (a vault name or URI) and "
        "--encryption-key-name");
  }
  return Json{{"keySource", source},
              {"keyVaultProperties",
               {{"keyVaultUri", VaultUriOf(s, o.key_vault)},
                {"keyName", o.key_name},
                {"keyVersion", o.key_version.value_or("")}}}};
}

Status Create(const AccountOptions& o) {
  ASSIGN_OR_RETURN(Json tags, ParseTags(o.tags));
  ASSIGN_OR_RETURN(Session s, OpenSession());
  Json body = {{"kind", o.kind},
               {"sku", {{"name", o.sku}}},
               {"location", o.location},
               {"identity", {{"type", o.assign_identity ? "SystemAssigned" : "None"}}},
               {"properties", Json::object()}};
  if (!o.tags.empty()) body["tags"] = tags;
  ASSIGN_OR_RETURN(Json encryption, EncryptionOf(s, o));
  if (!encryption.is_null()) body["properties"]["encryption"] = encryption;
  if (!o.disable_local_auth.empty()) {
    ASSIGN_OR_RETURN(bool disable, ParseBool("--disable-local-auth", o.disable_local_auth));
    body["properties"]["disableLocalAuth"] = disable;
  }
  ASSIGN_OR_RETURN(ApiResult account, s.client->Call("PUT", AccountPath(s, o), s.token, body));
  Print(account.body, AccountColumns());
  return OkStatus();
}

// PATCH with what the options change. A new key name or version without a vault rotates
// within the account's current vault.
Status Update(const AccountOptions& given) {
  ASSIGN_OR_RETURN(Session s, OpenSession());
  AccountOptions o = given;
  if (o.key_vault.empty() && (!o.key_name.empty() || o.key_version.has_value())) {
    ASSIGN_OR_RETURN(ApiResult current, s.client->Call("GET", AccountPath(s, o), s.token));
    o.key_vault = current.body.value(
        "/properties/encryption/keyVaultProperties/keyVaultUri"_json_pointer, std::string());
    if (o.key_name.empty()) {
      o.key_name = current.body.value(
          "/properties/encryption/keyVaultProperties/keyName"_json_pointer, std::string());
    }
  }
  Json body = {{"properties", Json::object()}};
  ASSIGN_OR_RETURN(Json encryption, EncryptionOf(s, o));
  if (!encryption.is_null()) body["properties"]["encryption"] = encryption;
  if (!o.disable_local_auth.empty()) {
    ASSIGN_OR_RETURN(bool disable, ParseBool("--disable-local-auth", o.disable_local_auth));
    body["properties"]["disableLocalAuth"] = disable;
  }
  if (!o.tags.empty()) {
    ASSIGN_OR_RETURN(body["tags"], ParseTags(o.tags));
  }
  ASSIGN_OR_RETURN(ApiResult account, s.client->Call("PATCH", AccountPath(s, o), s.token, body));
  Print(account.body, AccountColumns());
  return OkStatus();
}

Status Show(const AccountOptions& o) {
  ASSIGN_OR_RETURN(Session s, OpenSession());
  ASSIGN_OR_RETURN(ApiResult account, s.client->Call("GET", AccountPath(s, o), s.token));
  Print(account.body, AccountColumns());
  return OkStatus();
}

Status List(const AccountOptions& o) {
  ASSIGN_OR_RETURN(Session s, OpenSession());
  std::string path = "/subscriptions/" + s.profile.subscription_id;
  if (!o.group.empty()) path += "/resourceGroups/" + http::PercentEncode(o.group);
  path += "/providers/Microsoft.CognitiveServices/accounts?api-version=" +
          std::string(kCognitiveServicesApiVersion);
  ASSIGN_OR_RETURN(Json accounts, ListPages(s, path));
  Print(accounts, AccountColumns());
  return OkStatus();
}

Status Delete(const AccountOptions& o) {
  RETURN_IF_ERROR(
      Confirm("Delete the account '" + o.name + "' with its files and keys? This cannot be undone.",
              o.yes));
  ASSIGN_OR_RETURN(Session s, OpenSession());
  RETURN_IF_ERROR(s.client->Call("DELETE", AccountPath(s, o), s.token));
  return OkStatus();
}

Json IdentityOf(const Json& account) { return account.value("identity", Json::object()); }

Status Identity(const AccountOptions& o, const char* type) {
  ASSIGN_OR_RETURN(Session s, OpenSession());
  if (type == nullptr) {
    ASSIGN_OR_RETURN(ApiResult account, s.client->Call("GET", AccountPath(s, o), s.token));
    PrintJson(IdentityOf(account.body));
    return OkStatus();
  }
  ASSIGN_OR_RETURN(ApiResult account, s.client->Call("PATCH", AccountPath(s, o), s.token,
                                                     Json{{"identity", {{"type", type}}}}));
  PrintJson(IdentityOf(account.body));
  return OkStatus();
}

Status Keys(const AccountOptions& o, bool regenerate) {
  ASSIGN_OR_RETURN(Session s, OpenSession());
  if (!regenerate) {
    ASSIGN_OR_RETURN(ApiResult keys, s.client->Call("POST", AccountPath(s, o, "/listKeys"), s.token,
                                                    Json::object()));
    PrintJson(keys.body);
    return OkStatus();
  }
  ASSIGN_OR_RETURN(ApiResult keys, s.client->Call("POST", AccountPath(s, o, "/regenerateKey"),
                                                  s.token, Json{{"keyName", o.key_to_regenerate}}));
  PrintJson(keys.body);
  return OkStatus();
}

Status EncryptionShow(const AccountOptions& o) {
  ASSIGN_OR_RETURN(Session s, OpenSession());
  ASSIGN_OR_RETURN(ApiResult status,
                   s.client->Call("GET", AccountPath(s, o, "/encryptionStatus"), s.token));
  if (Output() == OutputFormat::kTable) {
    Print(status.body.value("generations", Json::array()),
          {Field("Generation", "/generation"), Field("Source", "/keySource"),
           Field("State", "/state"), Field("Reason", "/reason"), Field("Objects", "/objects"),
           Field("Bytes", "/bytes"), Field("Retirable", "/retirable"), Field("Kid", "/kid")});
    return OkStatus();
  }
  PrintJson(status.body);
  return OkStatus();
}

// A bar on stderr, redrawn in place on a terminal: "reprocess [#####     ]  42% 420/1000".
void DrawProgress(const Json& op) {
  if (::isatty(STDERR_FILENO) != 1) return;
  const double percent = op.value("percentComplete", 0.0);
  const int width = 30;
  const int filled = std::clamp(static_cast<int>(width * percent / 100.0), 0, width);
  const Json& p = op.contains("properties") ? op["properties"] : Json::object();
  std::fprintf(stderr, "\rreprocess [%-*s] %3.0f%% %lld/%lld objects", width,
               std::string(static_cast<size_t>(filled), '#').c_str(), percent,
               static_cast<long long>(p.value("moved", int64_t{0}) + p.value("failed", int64_t{0})),
               static_cast<long long>(p.value("total", int64_t{0})));
  std::fflush(stderr);
}

// POST .../encryption/reprocess, then (unless --no-wait) polls the operation until it ends.
Status Reprocess(const AccountOptions& o) {
  ASSIGN_OR_RETURN(Session s, OpenSession());
  Json body = {{"mode", o.reprocess_mode}};
  if (o.reprocess_generation == "all") {
    body["generation"] = "all";
  } else {
    const std::optional<int64_t> n = ParseInt64(o.reprocess_generation);
    if (!n.has_value() || *n < 1) {
      return InvalidArgumentError("--generation must be a generation number or all");
    }
    body["generation"] = *n;
  }
  if (o.max_objects_per_second > 0) body["maxObjectsPerSecond"] = o.max_objects_per_second;
  ASSIGN_OR_RETURN(ApiResult started,
                   s.client->Call("POST", AccountPath(s, o, "/encryption/reprocess"), s.token, body));
  Json op = started.body;
  const std::string id = op.value("name", "");
  const std::string path = AccountPath(s, o, "/encryption/operations/" + id);
  while (!o.no_wait && op.value("status", "") == "InProgress") {
    DrawProgress(op);
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    if (s.token.expires_on < std::time(nullptr) + 120) {
      ASSIGN_OR_RETURN(s, OpenSession());
    }
    ASSIGN_OR_RETURN(ApiResult polled, s.client->Call("GET", path, s.token));
    op = polled.body;
  }
  if (!o.no_wait) {
    DrawProgress(op);
    if (::isatty(STDERR_FILENO) == 1) std::fputc('\n', stderr);
  }
  PrintJson(op);
  if (op.value("status", "") == "Failed") {
    const Json error = op.value("error", Json::object());
    return FailedPreconditionError("reprocessing failed: " + error.value("code", "") + ": " +
                                   error.value("message", ""));
  }
  return OkStatus();
}

Status Retire(const AccountOptions& o) {
  ASSIGN_OR_RETURN(Session s, OpenSession());
  ASSIGN_OR_RETURN(
      ApiResult retired,
      s.client->Call("POST",
                     AccountPath(s, o, "/encryption/generations/" +
                                           std::to_string(o.retire_generation) + "/retire"),
                     s.token, Json::object()));
  PrintJson(retired.body);
  return OkStatus();
}

// --- deployments: a model loaded to answer chat (kf openai chat), a child resource of the account

const std::vector<Column>& DeploymentColumns() {
  static const std::vector<Column> columns = {
      Field("Name", "/name"),
      Field("Model", "/properties/model/name"),
      Field("Version", "/properties/model/version"),
      Field("Sku", "/sku/name"),
      Field("Capacity", "/sku/capacity"),
      Field("ProvisioningState", "/properties/provisioningState"),
      Field("ServingState", "/properties/servingState"),
      Field("ServingError", "/properties/servingError/code")};
  return columns;
}

std::string DeploymentPath(const Session& s, const AccountOptions& o) {
  return AccountPath(s, o, "/deployments/" + http::PercentEncode(o.deployment));
}

// PUT: created (201) or updated (200). Loading a fine-tuned model needs the key sealing its
// weights: refused with 403 KeyInaccessible, naming the key, when it is inaccessible.
Status DeploymentCreate(const AccountOptions& o) {
  ASSIGN_OR_RETURN(Session s, OpenSession());
  Json model = {{"format", o.model_format}, {"name", o.model_name}};
  if (!o.model_version.empty()) model["version"] = o.model_version;
  const Json body = {{"sku", {{"name", o.deployment_sku}, {"capacity", o.sku_capacity}}},
                     {"properties", {{"model", model}}}};
  ASSIGN_OR_RETURN(ApiResult deployment,
                   s.client->Call("PUT", DeploymentPath(s, o), s.token, body));
  Print(deployment.body, DeploymentColumns());
  return OkStatus();
}

Status DeploymentShow(const AccountOptions& o) {
  ASSIGN_OR_RETURN(Session s, OpenSession());
  ASSIGN_OR_RETURN(ApiResult deployment, s.client->Call("GET", DeploymentPath(s, o), s.token));
  Print(deployment.body, DeploymentColumns());
  return OkStatus();
}

Status DeploymentList(const AccountOptions& o) {
  ASSIGN_OR_RETURN(Session s, OpenSession());
  ASSIGN_OR_RETURN(Json deployments, ListPages(s, AccountPath(s, o, "/deployments")));
  Print(deployments, DeploymentColumns());
  return OkStatus();
}

Status DeploymentDelete(const AccountOptions& o) {
  RETURN_IF_ERROR(
      Confirm("Delete the deployment '" + o.deployment + "' of account '" + o.name + "'?", o.yes));
  ASSIGN_OR_RETURN(Session s, OpenSession());
  RETURN_IF_ERROR(s.client->Call("DELETE", DeploymentPath(s, o), s.token));
  return OkStatus();
}

std::string ApprovalPath(const Session& s, const std::string& kind) {
  return "/subscriptions/" + s.profile.subscription_id +
         "/providers/Microsoft.KeyFoundry/cmkApprovals" +
         (kind.empty() ? "" : "/" + http::PercentEncode(kind)) +
         "?api-version=" + kCognitiveServicesApiVersion;
}

Status Approval(const AccountOptions& o, const char* method) {
  ASSIGN_OR_RETURN(Session s, OpenSession());
  if (std::string_view(method) == "GET") {
    ASSIGN_OR_RETURN(ApiResult list, s.client->Call("GET", ApprovalPath(s, ""), s.token));
    Print(list.body.value("value", Json::array()),
          {Field("Kind", "/kind"), Field("GrantedBy", "/grantedBy"),
           Field("GrantedAt", "/grantedAt")});
    return OkStatus();
  }
  ASSIGN_OR_RETURN(ApiResult done,
                   s.client->Call(method, ApprovalPath(s, o.approval_kind), s.token,
                                  std::string_view(method) == "PUT" ? Json::object() : Json()));
  if (!done.body.is_null()) PrintJson(done.body);
  return OkStatus();
}

void NameAndGroup(CLI::App* cmd, const std::shared_ptr<AccountOptions>& o) {
  cmd->add_option("-n,--name", o->name, "the account's name")->required();
  cmd->add_option("-g,--resource-group", o->group, "its resource group")->required();
}

void EncryptionOptions(CLI::App* cmd, const std::shared_ptr<AccountOptions>& o) {
  cmd->add_option("--encryption-key-source", o->key_source,
                  "Microsoft.KeyVault (customer-managed key) or Microsoft.CognitiveServices");
  cmd->add_option("--encryption-key-vault", o->key_vault, "the key vault: its name or URI");
  cmd->add_option("--encryption-key-name", o->key_name, "the key's name");
  cmd->add_option("--encryption-key-version", o->key_version,
                  "the key's version; empty or absent: follow the key's latest version");
  cmd->add_option("--disable-local-auth", o->disable_local_auth,
                  "true: refuse API keys, accept only tokens");
  cmd->add_option("--tags", o->tags, "space-separated tags: key[=value] ...");
}

}  // namespace

void AddCognitiveServicesCommands(CLI::App& app) {
  CLI::App* cs = app.add_subcommand("cognitiveservices", "AI accounts and their encryption");
  cs->require_subcommand(1);
  auto o = std::make_shared<AccountOptions>();
  CLI::App* account = cs->add_subcommand("account", "AI accounts (Microsoft.CognitiveServices)");
  account->require_subcommand(1);

  CLI::App* create = account->add_subcommand("create", "create an account");
  NameAndGroup(create, o);
  create->add_option("--kind", o->kind, "AIServices (default), OpenAI, SpeechServices, ...");
  create->add_option("--sku", o->sku, "S0 (default), F0, ...");
  create->add_option("-l,--location", o->location, "its location (default: local)");
  create->add_flag("--assign-identity", o->assign_identity,
                   "turn on the system-assigned managed identity");
  create->add_flag("--yes", o->yes, "accepted for az compatibility");
  EncryptionOptions(create, o);
  create->callback([o] { Check(Create(*o)); });

  CLI::App* update = account->add_subcommand(
      "update", "change an account: its key (rotation in the same vault), local auth, tags");
  NameAndGroup(update, o);
  EncryptionOptions(update, o);
  update->callback([o] { Check(Update(*o)); });

  CLI::App* show = account->add_subcommand("show", "show an account");
  NameAndGroup(show, o);
  show->callback([o] { Check(Show(*o)); });

  CLI::App* list = account->add_subcommand("list", "list accounts");
  list->add_option("-g,--resource-group", o->group, "only this resource group's");
  list->callback([o] { Check(List(*o)); });

  CLI::App* del = account->add_subcommand("delete", "delete an account, its files and keys");
  NameAndGroup(del, o);
  del->add_flag("-y,--yes", o->yes, "do not ask for confirmation");
  del->callback([o] { Check(Delete(*o)); });

  CLI::App* identity = account->add_subcommand("identity", "the system-assigned identity");
  identity->require_subcommand(1);
  CLI::App* assign = identity->add_subcommand("assign", "turn the identity on");
  NameAndGroup(assign, o);
  assign->callback([o] { Check(Identity(*o, "SystemAssigned")); });
  CLI::App* remove = identity->add_subcommand(
      "remove", "turn the identity off (refused while a customer-managed key is in use)");
  NameAndGroup(remove, o);
  remove->callback([o] { Check(Identity(*o, "None")); });
  CLI::App* identity_show = identity->add_subcommand("show", "show the identity");
  NameAndGroup(identity_show, o);
  identity_show->callback([o] { Check(Identity(*o, nullptr)); });

  CLI::App* keys = account->add_subcommand("keys", "the account's API keys");
  keys->require_subcommand(1);
  CLI::App* keys_list = keys->add_subcommand("list", "show key1 and key2");
  NameAndGroup(keys_list, o);
  keys_list->callback([o] { Check(Keys(*o, false)); });
  CLI::App* regenerate = keys->add_subcommand("regenerate", "replace one key");
  NameAndGroup(regenerate, o);
  regenerate->add_option("--key-name", o->key_to_regenerate, "Key1 or Key2")->required();
  regenerate->callback([o] { Check(Keys(*o, true)); });

  CLI::App* encryption = account->add_subcommand("encryption", "the account's encryption");
  encryption->require_subcommand(1);
  CLI::App* encryption_show = encryption->add_subcommand(
      "show", "key generations: key, state (Active, Accessible, KeyInaccessible) and usage");
  NameAndGroup(encryption_show, o);
  encryption_show->callback([o] { Check(EncryptionShow(*o)); });

  CLI::App* reprocess = encryption->add_subcommand(
      "reprocess", "move objects to the active key generation (waits, with a progress bar)");
  NameAndGroup(reprocess, o);
  reprocess->add_option("--mode", o->reprocess_mode,
                        "rewrap (data keys only, the default) or reencrypt (content too)")
      ->check(CLI::IsMember({"rewrap", "reencrypt"}));
  reprocess->add_option("--generation", o->reprocess_generation,
                        "the generation to empty, or all (the default: every inactive one)");
  reprocess->add_option("--max-objects-per-second", o->max_objects_per_second,
                        "rate limit (default: none)")
      ->check(CLI::Range(int64_t{1}, int64_t{10000000}));
  reprocess->add_flag("--no-wait", o->no_wait, "return once the operation has started");
  reprocess->callback([o] { Check(Reprocess(*o)); });

  CLI::App* retire = encryption->add_subcommand(
      "retire", "delete a key generation that protects nothing (see encryption show: Retirable)");
  NameAndGroup(retire, o);
  retire->add_option("--generation", o->retire_generation, "the generation")
      ->required()
      ->check(CLI::Range(int64_t{1}, INT64_MAX));
  retire->callback([o] { Check(Retire(*o)); });

  CLI::App* deployment =
      account->add_subcommand("deployment", "deployments: models loaded to answer chat");
  deployment->require_subcommand(1);
  auto deployment_name = [&o](CLI::App* cmd) {
    NameAndGroup(cmd, o);
    cmd->add_option("--deployment-name", o->deployment, "the deployment's name")->required();
  };
  CLI::App* deployment_create = deployment->add_subcommand(
      "create", "deploy a model (a base model or one the account fine-tuned), or update it");
  deployment_name(deployment_create);
  deployment_create
      ->add_option("--model-name", o->model_name,
                   "the model: a base model (gpt-4o-mini) or a fine-tuned model's id")
      ->required();
  deployment_create->add_option("--model-version", o->model_version,
                                "its version (a fine-tuned model's is 1; default: the latest)");
  deployment_create->add_option("--model-format", o->model_format, "OpenAI (the default)");
  deployment_create->add_option("--sku-name", o->deployment_sku, "Standard (the default), ...");
  deployment_create->add_option("--sku-capacity", o->sku_capacity, "capacity units (default 1)")
      ->check(CLI::Range(int64_t{1}, int64_t{10000}));
  deployment_create->callback([o] { Check(DeploymentCreate(*o)); });
  CLI::App* deployment_list = deployment->add_subcommand("list", "list the account's deployments");
  NameAndGroup(deployment_list, o);
  deployment_list->callback([o] { Check(DeploymentList(*o)); });
  CLI::App* deployment_show = deployment->add_subcommand("show", "show a deployment");
  deployment_name(deployment_show);
  deployment_show->callback([o] { Check(DeploymentShow(*o)); });
  CLI::App* deployment_delete = deployment->add_subcommand("delete", "delete a deployment");
  deployment_name(deployment_delete);
  deployment_delete->add_flag("-y,--yes", o->yes, "do not ask for confirmation");
  deployment_delete->callback([o] { Check(DeploymentDelete(*o)); });

  CLI::App* approval = cs->add_subcommand(
      "cmk-approval", "approvals for customer-managed keys on kinds that need one");
  approval->require_subcommand(1);
  CLI::App* grant = approval->add_subcommand("grant", "approve CMK for a kind in the subscription");
  grant->add_option("--kind", o->approval_kind, "the account kind, e.g. SpeechServices")
      ->required();
  grant->callback([o] { Check(Approval(*o, "PUT")); });
  CLI::App* revoke = approval->add_subcommand("revoke", "withdraw an approval");
  revoke->add_option("--kind", o->approval_kind, "the account kind")->required();
  revoke->callback([o] { Check(Approval(*o, "DELETE")); });
  approval->add_subcommand("list", "list the subscription's approvals")->callback([o] {
    Check(Approval(*o, "GET"));
  });
}

}  // namespace keyfoundry::cli
