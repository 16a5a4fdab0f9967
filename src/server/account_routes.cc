// Control-plane routes for Microsoft.CognitiveServices/accounts, in ARM's shapes:
//
//   /subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.CognitiveServices/accounts  GET
//   .../accounts/{name}                                         PUT GET PATCH DELETE
//   .../accounts/{name}/listKeys                                POST
//   .../accounts/{name}/regenerateKey                           POST {keyName: Key1 | Key2}
//   .../accounts/{name}/encryptionStatus                        GET (generations, usage)
//   .../accounts/{name}/projects[/{project}]                    GET PUT DELETE
//   .../accounts/{name}/deployments[/{deployment}]              GET PUT DELETE (models loaded
//                                                               into memory: deployments.h)
//   .../accounts/{name}/encryption/reprocess                    POST {mode: rewrap | reencrypt,
//                                                               generation?, maxObjectsPerSecond?}:
//                                                               202 + Azure-AsyncOperation
//   .../accounts/{name}/encryption/operations[/{id}]            GET (reprocess.h)
//   .../accounts/{name}/encryption/generations/{n}/retire       POST: 409 GenerationInUse while it
//                                                               is active or protects objects
//   /subscriptions/{s}/providers/Microsoft.CognitiveServices/accounts                  GET
//   /subscriptions/{s}/providers/Microsoft.KeyFoundry/cmkApprovals[/{kind}]  GET PUT DELETE
//
// Encryption rules (BRIEF S3-S6, S10), checked in this order when a write enables CMK or
// changes its key, each refusal 400 with its own code and a message saying what to fix:
//   CmkApprovalRequired                  the kind needs an approval in this subscription
//   ManagedIdentityRequired              no system-assigned identity
//   KeyVaultNotFound                     keyVaultUri is no vault of this deployment (nor a
//                                        configured remote vault)
//   KeyVaultNotInSameResourceGroup       the vault lives in another resource group
//   KeyVaultPurgeProtectionRequired      soft delete and purge protection must both be on
//   KeyVaultFirewallBlocksService        defaultAction Deny without bypass AzureServices or an
//                                        allow rule for the service
//   KeyVaultIdentityPermissionsMissing   the identity lacks get, wrapKey or unwrapKey
//   KeyVaultKeyNotFound / KeyVaultKeyNotSupported (not RSA 2048) / KeyVaultKeyDisabled /
//   KeyVaultKeyExpired / KeyVaultKeyNotYetValid / KeyVaultKeyOperationsMissing
//   KeyVaultProbeFailed                  the real wrap + unwrap probe failed
// and, for changes of an account that already uses CMK:
//   CmkToServiceManagedNotSupported      keySource back to Microsoft.CognitiveServices (S5)
//   KeyVaultChangeNotSupported           a key in another vault (S6)
//   ManagedIdentityRequiredByCmk         identity switched off while CMK is on (S4)
// For a remote vault only the key's own checks and the probe apply: its properties are not
// visible from here.
#include <nlohmann/json.hpp>

#include "audit/audit_log.h"
#include "common/logging.h"
#include "common/strings.h"
#include "encryption/account_keys.h"
#include "encryption/local_vault_client.h"
#include "foundry/accounts.h"
#include "foundry/deployments.h"
#include "foundry/files.h"
#include "foundry/fine_tuning.h"
#include "foundry/models.h"
#include "foundry/reprocess.h"
#include "keyvault/key_vault.h"
#include "keyvault/vault.h"
#include "server/arm.h"
#include "server/services.h"

namespace keyfoundry::server {
namespace {

using foundry::Account;
using foundry::AccountEncryption;
using http::Request;
using http::Response;
using identity::Caller;
using Json = nlohmann::json;

constexpr char kAccountPath[] =
    "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/"
    "Microsoft.CognitiveServices/accounts/{accountName}";
constexpr char kApprovalsPath[] =
    "/subscriptions/{subscriptionId}/providers/Microsoft.KeyFoundry/cmkApprovals";

std::string AccountScope(const Services& s, std::string_view group, std::string_view name) {
  return GroupScope(s, group) + "/providers/Microsoft.CognitiveServices/accounts/" +
         std::string(name);
}

Response Refuse(std::string code, std::string message) {
  return http::AzureError(400, std::move(code), std::move(message));
}

Response AccountNotFound(std::string_view group, std::string_view name) {
  return http::AzureError(404, "ResourceNotFound",
                          "The Resource 'Microsoft.CognitiveServices/accounts/" +
                              std::string(name) + "' under resource group '" + std::string(group) +
                              "' was not found.");
}

encryption::ActingIdentity IdentityOf(const Services& s, const Account& a) {
  return {a.principal_id, a.identity_client_id, s.tenant_id, a.ResourceId()};
}

// The key checks of S3 on what the vault reports about the key.
std::optional<Response> CheckKey(const encryption::VaultKeyInfo& key, std::string_view key_text) {
  const std::string name(key_text);
  if ((key.kty != "RSA" && key.kty != "RSA-HSM") || key.rsa_bits != 2048) {
    return Refuse("KeyVaultKeyNotSupported",
                  "The key " + name + " is " + key.kty +
                      (key.rsa_bits > 0 ? " " + std::to_string(key.rsa_bits) : std::string()) +
                      ": customer-managed keys must be RSA or RSA-HSM keys of size 2048. Create "
                      "one with: kf keyvault key create --vault-name VAULT --name KEY --kty RSA "
                      "--size 2048");
  }
  if (!key.enabled) {
    return Refuse("KeyVaultKeyDisabled", "The key " + name +
                                             " is disabled. Enable it with: kf keyvault key "
                                             "set-attributes --enabled true");
  }
  const int64_t now = UnixSeconds(Clock::Real());
  if (key.expires.has_value() && *key.expires <= now) {
    return Refuse("KeyVaultKeyExpired", "The key " + name + " expired on " +
                                            FormatIso8601(*key.expires) +
                                            ". Choose another key version or extend its expiry.");
  }
  if (key.not_before.has_value() && *key.not_before > now) {
    return Refuse("KeyVaultKeyNotYetValid", "The key " + name + " is not valid before " +
                                                FormatIso8601(*key.not_before) + ".");
  }
  for (std::string_view op : {"wrapKey", "unwrapKey"}) {
    if (std::find(key.key_ops.begin(), key.key_ops.end(), op) == key.key_ops.end()) {
      return Refuse("KeyVaultKeyOperationsMissing",
                    "The key " + name + " does not allow " + std::string(op) +
                        "; its key_ops must include wrapKey and unwrapKey.");
    }
  }
  return std::nullopt;
}

// S3's vault-side checks for a vault of this deployment.
std::optional<Response> CheckLocalVault(const Services& s, const Account& account,
                                        const std::string& vault_name, const AccountEncryption& e) {
  StatusOr<keyvault::Vault> vault = s.vaults->Get(vault_name);
  if (!vault.ok()) {
    return Refuse("KeyVaultNotFound", "The key vault at " + e.key_vault_uri +
                                          " was not found (or is deleted). Give the vaultUri of "
                                          "an existing vault.");
  }
  if (!EqualsIgnoreCase(vault->resource_group, account.resource_group) ||
      !EqualsIgnoreCase(vault->subscription_id, account.subscription_id)) {
    return Refuse("KeyVaultNotInSameResourceGroup",
                  "The key vault '" + vault->name + "' is in resource group '" +
                      vault->resource_group + "', the account in '" + account.resource_group +
                      "'. Use a key vault in the account's resource group.");
  }
  if (!vault->purge_protection) {
    return Refuse("KeyVaultPurgeProtectionRequired",
                  "The key vault '" + vault->name +
                      "' must have soft delete and purge protection enabled to hold a "
                      "customer-managed key. Enable it with: kf keyvault update --name " +
                      vault->name + " --enable-purge-protection true");
  }
  keyvault::NetworkOrigin service;
  service.client_address = "127.0.0.1";
  service.trusted_service = true;
  if (!keyvault::CheckFirewall(*vault, service).ok()) {
    return Refuse("KeyVaultFirewallBlocksService",
                  "The firewall of key vault '" + vault->name +
                      "' blocks the service. Allow trusted services (networkAcls.bypass "
                      "AzureServices: kf keyvault update --name " +
                      vault->name + " --bypass AzureServices) or add an allow rule for it.");
  }
  keyvault::AccessContext ctx;
  ctx.object_id = account.principal_id;
  ctx.app_id = account.identity_client_id;
  ctx.tenant_id = s.tenant_id;
  ctx.origin = service;
  std::string missing;
  for (auto [permission, name] : {std::pair{keyvault::KeyPermission::kGet, "get"},
                                  std::pair{keyvault::KeyPermission::kWrapKey, "wrapKey"},
                                  std::pair{keyvault::KeyPermission::kUnwrapKey, "unwrapKey"}}) {
    Status allowed = s.key_vault->CheckAccess(ctx, vault->name, e.key_name, permission);
    if (!allowed.ok()) missing += (missing.empty() ? "" : ", ") + std::string(name);
  }
  if (!missing.empty()) {
    const std::string how =
        vault->rbac_authorization
            ? "assign it the role 'Key Vault Crypto Service Encryption User' on the vault or key"
            : "grant them with: kf keyvault set-policy --name " + vault->name + " --object-id " +
                  account.principal_id + " --key-permissions get wrapKey unwrapKey";
    return Refuse("KeyVaultIdentityPermissionsMissing",
                  "The account's managed identity (" + account.principal_id +
                      ") lacks the key permissions " + missing + " on key vault '" + vault->name +
                      "'; " + how + ".");
  }
  return std::nullopt;
}

// Every check of S3 / S10 for `e` (a CMK setting) on `account` (identity already decided),
// then the real probe; on success the new generation is active.
std::optional<Response> EnableCmk(const Services& s, const Request& r, const Account& account,
                                  const AccountEncryption& e) {
  if (foundry::KindNeedsCmkApproval(account.kind)) {
    StatusOr<bool> approved = s.accounts->HasApproval(account.subscription_id, account.kind);
    if (!approved.ok()) return InternalFailure(r, approved.status());
    if (!*approved) {
      return Refuse("CmkApprovalRequired",
                    "Customer-managed keys for accounts of kind " + account.kind +
                        " need an approval for this subscription. An administrator grants it "
                        "with PUT /subscriptions/" +
                        account.subscription_id + "/providers/Microsoft.KeyFoundry/cmkApprovals/" +
                        account.kind + " (kf cognitiveservices cmk-approval grant --kind " +
                        account.kind + ").");
    }
  }
  if (!account.system_assigned_identity || account.principal_id.empty()) {
    return Refuse("ManagedIdentityRequired",
                  "Customer-managed keys need the account's system-assigned managed identity. "
                  "Turn it on first: kf cognitiveservices account identity assign --name " +
                      account.name + " --resource-group " + account.resource_group);
  }
  std::optional<std::string> local = s.local_vault_client != nullptr
                                         ? s.local_vault_client->VaultName(e.key_vault_uri)
                                         : std::nullopt;
  if (local.has_value()) {
    if (auto refused = CheckLocalVault(s, account, *local, e)) return refused;
  } else if (s.resolve_vault(e.key_vault_uri) == nullptr) {
    return Refuse("KeyVaultNotFound",
                  "No key vault is reachable at " + e.key_vault_uri +
                      ": it is neither a vault of this deployment nor a configured remote vault.");
  }
  encryption::VaultClient* client = s.resolve_vault(e.key_vault_uri);
  const encryption::ActingIdentity who = IdentityOf(s, account);
  const encryption::KeyReference ref{e.key_vault_uri, e.key_name, e.key_version};
  const std::string key_text = "'" + e.key_name + "'" +
                               (e.key_version.empty() ? "" : " (version " + e.key_version + ")") +
                               " in " + e.key_vault_uri;
  StatusOr<encryption::VaultKeyInfo> info = client->GetKey(who, ref);
  if (!info.ok()) {
    if (info.status().code() == StatusCode::kNotFound) {
      return Refuse("KeyVaultKeyNotFound",
                    "The key " + key_text + " was not found: " + info.status().message());
    }
    return Refuse("KeyVaultProbeFailed", "The key " + key_text + " cannot be read (" +
                                             info.status().reason() +
                                             "): " + info.status().message());
  }
  if (auto refused = CheckKey(*info, key_text)) return refused;
  StatusOr<encryption::Generation> added =
      s.account_keys->AddCustomerManaged(account.Key(), who, ref);
  if (!added.ok()) {
    if (added.status().code() == StatusCode::kUnavailable) {
      return InternalFailure(r, added.status());
    }
    return Refuse("KeyVaultProbeFailed", "The wrap and unwrap probe with the key " + key_text +
                                             " as the account's "
                                             "managed identity failed (" +
                                             added.status().reason() +
                                             "): " + added.status().message());
  }
  return std::nullopt;
}

Json ToArm(const Services& s, const Account& a) {
  return foundry::AccountToArm(a, s.AccountEndpoint(a.name));
}

// PUT (create or replace) and PATCH (`patch`: merge into an existing account).
Response WriteAccount(const Services& s, Request& r, bool patch) {
  return WithSubscription(s, r, [&](const Caller& caller) {
    const std::string group = r.params["resourceGroupName"];
    const std::string name = r.params["accountName"];
    const std::string scope = AccountScope(s, group, name);
    return Audited(s, r, caller, "AccountWrite", scope, [&]() -> Response {
      if (Status valid = foundry::ValidateAccountName(name); !valid.ok()) {
        return ErrorResponse(r, valid);
      }
      StatusOr<Json> body = ParseJsonBody(r);
      if (!body.ok()) return ErrorResponse(r, body.status());
      if (auto denied = Authorize(s, caller, scope, "Microsoft.CognitiveServices/accounts/write")) {
        return *denied;
      }
      if (auto missing = RequireGroup(s, r, group)) return *missing;
      StatusOr<Account> existing = s.accounts->Get(s.subscription_id, group, name);
      if (!existing.ok() && existing.status().code() != StatusCode::kNotFound) {
        return InternalFailure(r, existing.status());
      }
      if (patch && !existing.ok()) return AccountNotFound(group, name);
      Account base;
      if (existing.ok()) {
        base = *existing;
      } else {
        base.subscription_id = s.subscription_id;
        base.resource_group = group;
        base.name = name;
        base.created_by = caller.object_id;
      }
      std::optional<std::string> identity_type;
      StatusOr<Account> account = foundry::AccountFromArm(*body, base, patch, &identity_type);
      if (!account.ok()) return ErrorResponse(r, account.status());
      account->updated_by = caller.object_id;

      const AccountEncryption before = existing.ok() ? existing->encryption : AccountEncryption();
      const AccountEncryption& after = account->encryption;
      const bool wants_identity = identity_type.has_value() ? *identity_type == "SystemAssigned"
                                                            : base.system_assigned_identity;
      if (before.customer_managed()) {
        if (!after.customer_managed()) {
          return Refuse("CmkToServiceManagedNotSupported",
                        "The account '" + name +
                            "' uses a customer-managed key; going back to service-managed keys "
                            "(Microsoft.CognitiveServices) is not supported.");
        }
        if (!EqualsIgnoreCase(EnsureTrailingSlash(before.key_vault_uri),
                              EnsureTrailingSlash(after.key_vault_uri))) {
          return Refuse("KeyVaultChangeNotSupported",
                        "The account's key must stay in key vault " + before.key_vault_uri +
                            "; rotate to another key or version of that vault.");
        }
        if (!wants_identity) {
          return Refuse("ManagedIdentityRequiredByCmk",
                        "The managed identity cannot be switched off while the account uses a "
                        "customer-managed key: the service unwraps the account's key with it.");
        }
      }

      if (after.customer_managed() && identity_type == "None" && !before.customer_managed()) {
        return Refuse("ManagedIdentityRequired",
                      "Customer-managed keys need the account's system-assigned managed identity: "
                      "keep identity.type SystemAssigned in the same request.");
      }

      // The identity: created when switched on, removed when switched off.
      bool identity_created = false;
      if (wants_identity && !base.system_assigned_identity) {
        StatusOr<identity::Principal> principal =
            s.directory->CreateManagedIdentity(account->ResourceId());
        if (principal.status().code() == StatusCode::kAlreadyExists) {
          principal = s.directory->GetManagedIdentityByResource(account->ResourceId());
        } else if (principal.ok()) {
          identity_created = true;
        }
        if (!principal.ok()) return InternalFailure(r, principal.status());
        account->system_assigned_identity = true;
        account->principal_id = principal->object_id;
        account->identity_client_id = principal->app_id;
        account->identity_tenant_id = s.tenant_id;
      }
      auto undo_identity = [&] {
        if (identity_created) (void)s.directory->DeleteManagedIdentity(account->ResourceId());
      };

      const bool is_new = !existing.ok();
      if (is_new) {
        Status keys = s.account_keys->CreateServiceManaged(account->Key());
        if (!keys.ok() && keys.code() != StatusCode::kAlreadyExists) {
          undo_identity();
          return InternalFailure(r, keys);
        }
      }
      if (after.customer_managed() && !(after == before)) {
        if (auto refused = EnableCmk(s, r, *account, after)) {
          undo_identity();
          if (is_new) (void)s.account_keys->DeleteAccount(account->Key());
          return *refused;
        }
      }
      if (!wants_identity && base.system_assigned_identity) {
        (void)s.directory->DeleteManagedIdentity(account->ResourceId());
        account->system_assigned_identity = false;
        account->principal_id.clear();
        account->identity_client_id.clear();
        account->identity_tenant_id.clear();
      }
      bool created = false;
      StatusOr<Account> stored = s.accounts->Put(*account, &created);
      if (!stored.ok()) {
        undo_identity();
        if (is_new) (void)s.account_keys->DeleteAccount(account->Key());
        return ErrorResponse(r, stored.status());
      }
      LogChange(r, caller, created ? "account.created" : "account.updated", stored->ResourceId());
      return http::Json(created ? 201 : 200, ToArm(s, *stored));
    }());
  });
}

// The account of the route, or the response to send.
std::variant<Account, Response> FindAccount(const Services& s, const Request& r,
                                            const Caller& caller, std::string_view action) {
  const std::string group = r.params.at("resourceGroupName");
  const std::string name = r.params.at("accountName");
  if (auto denied = Authorize(s, caller, AccountScope(s, group, name), action)) return *denied;
  StatusOr<Account> account = s.accounts->Get(s.subscription_id, group, name);
  if (account.ok()) return *std::move(account);
  if (account.status().code() == StatusCode::kNotFound) return AccountNotFound(group, name);
  return InternalFailure(r, account.status());
}

Response GetAccount(const Services& s, Request& r) {
  return WithSubscription(s, r, [&](const Caller& caller) -> Response {
    auto found = FindAccount(s, r, caller, "Microsoft.CognitiveServices/accounts/read");
    if (auto* response = std::get_if<Response>(&found)) return std::move(*response);
    return http::Json(200, ToArm(s, std::get<Account>(found)));
  });
}

Response DeleteAccount(const Services& s, Request& r) {
  return WithSubscription(s, r, [&](const Caller& caller) {
    const std::string group = r.params["resourceGroupName"];
    const std::string name = r.params["accountName"];
    return Audited(s, r, caller, "AccountDelete", AccountScope(s, group, name), [&]() -> Response {
      auto found = FindAccount(s, r, caller, "Microsoft.CognitiveServices/accounts/delete");
      if (auto* response = std::get_if<Response>(&found)) {
        return response->status == 404 ? http::Text(204, "", "") : std::move(*response);
      }
      const Account& account = std::get<Account>(found);
      if (Status deployments = s.deployments->DeleteAccount(account.Key()); !deployments.ok()) {
        return InternalFailure(r, deployments);
      }
      if (Status ops = s.reprocessor->DeleteAccount(account.Key()); !ops.ok()) {
        return InternalFailure(r, ops);
      }
      if (Status jobs = s.fine_tuning->DeleteAccount(account.Key()); !jobs.ok()) {
        return InternalFailure(r, jobs);
      }
      if (Status models = s.models->DeleteAccount(account.Key()); !models.ok()) {
        return InternalFailure(r, models);
      }
      if (Status files = s.files->DeleteAll(account.Key()); !files.ok()) {
        return InternalFailure(r, files);
      }
      if (Status projects = s.accounts->DeleteProjects(account); !projects.ok()) {
        return InternalFailure(r, projects);
      }
      if (Status keys = s.account_keys->DeleteAccount(account.Key()); !keys.ok()) {
        return InternalFailure(r, keys);
      }
      if (account.system_assigned_identity) {
        (void)s.directory->DeleteManagedIdentity(account.ResourceId());
      }
      if (Status deleted = s.accounts->Delete(account); !deleted.ok()) {
        return InternalFailure(r, deleted);
      }
      LogChange(r, caller, "account.deleted", account.ResourceId());
      return http::Text(200, "", "");
    }());
  });
}

// GET of a group's accounts (`group` set) or the subscription's.
Response ListAccounts(const Services& s, Request& r, bool by_group) {
  return WithSubscription(s, r, [&](const Caller& caller) -> Response {
    const std::string group = by_group ? r.params["resourceGroupName"] : std::string();
    if (by_group) {
      if (auto missing = RequireGroup(s, r, group)) return *missing;
    }
    StatusOr<std::vector<Account>> accounts = s.accounts->List(s.subscription_id, group);
    if (!accounts.ok()) return InternalFailure(r, accounts.status());
    Json value = Json::array();
    for (const Account& a : *accounts) {
      if (Allowed(s, caller, a.ResourceId(), "Microsoft.CognitiveServices/accounts/read")) {
        value.push_back(ToArm(s, a));
      }
    }
    return http::Json(200, {{"value", value}});
  });
}

Json KeysJson(const std::vector<SecretBytes>& keys) {
  return {{"key1", std::string(AsStringView(keys[0].Reveal(InsecureSecretAccess())))},
          {"key2", std::string(AsStringView(keys[1].Reveal(InsecureSecretAccess())))}};
}

Response ListKeys(const Services& s, Request& r) {
  return WithSubscription(s, r, [&](const Caller& caller) -> Response {
    auto found = FindAccount(s, r, caller, "Microsoft.CognitiveServices/accounts/listKeys/action");
    if (auto* response = std::get_if<Response>(&found)) return std::move(*response);
    const Account& account = std::get<Account>(found);
    if (account.disable_local_auth) {
      return http::AzureError(400, "BadRequest",
                              "Local authentication is disabled for the account '" + account.name +
                                  "': use Microsoft Entra tokens.");
    }
    StatusOr<std::vector<SecretBytes>> keys = s.accounts->ListKeys(account);
    if (!keys.ok()) return InternalFailure(r, keys.status());
    return http::Json(200, KeysJson(*keys));
  });
}

Response RegenerateKey(const Services& s, Request& r) {
  return WithSubscription(s, r, [&](const Caller& caller) {
    const std::string scope =
        AccountScope(s, r.params["resourceGroupName"], r.params["accountName"]);
    return Audited(s, r, caller, "AccountRegenerateKey", scope, [&]() -> Response {
      StatusOr<Json> body = ParseJsonBody(r);
      if (!body.ok()) return ErrorResponse(r, body.status());
      const std::string key_name = body->value("keyName", "");
      const int which = EqualsIgnoreCase(key_name, "Key1")   ? 1
                        : EqualsIgnoreCase(key_name, "Key2") ? 2
                                                             : 0;
      if (which == 0) return Refuse("BadRequest", "keyName must be Key1 or Key2");
      auto found =
          FindAccount(s, r, caller, "Microsoft.CognitiveServices/accounts/regenerateKey/action");
      if (auto* response = std::get_if<Response>(&found)) return std::move(*response);
      StatusOr<Account> updated = s.accounts->RegenerateKey(std::get<Account>(found), which);
      if (!updated.ok()) return ErrorResponse(r, updated.status());
      StatusOr<std::vector<SecretBytes>> keys = s.accounts->ListKeys(*updated);
      if (!keys.ok()) return InternalFailure(r, keys.status());
      return http::Json(200, KeysJson(*keys));
    }());
  });
}

Json GenerationJson(const encryption::GenerationReport& g) {
  Json j = {{"generation", g.generation.number},
            {"keySource", g.generation.source == encryption::GenerationSource::kCustomerManaged
                              ? foundry::kCustomerManagedKeySource
                              : foundry::kServiceManagedKeySource},
            {"active", g.active},
            {"state", g.active && g.state == encryption::GenerationState::kAccessible
                          ? "Active"
                          : std::string(encryption::GenerationStateName(g.state))},
            {"createdAt", FormatIso8601(g.generation.created)},
            {"objects", g.objects},
            {"bytes", g.bytes},
            {"retirable", !g.active && g.objects == 0}};
  if (!g.generation.kid.empty()) j["kid"] = g.generation.kid;
  if (g.state == encryption::GenerationState::kInaccessible) {
    j["reason"] = g.reason;
    j["message"] = g.message;
  }
  if (g.checked_at != 0) j["checkedAt"] = FormatIso8601(g.checked_at);
  return j;
}

// The encryption status: every key generation, its state and what it protects.
Response EncryptionStatus(const Services& s, Request& r) {
  return WithSubscription(s, r, [&](const Caller& caller) -> Response {
    auto found = FindAccount(s, r, caller, "Microsoft.CognitiveServices/accounts/read");
    if (auto* response = std::get_if<Response>(&found)) return std::move(*response);
    const Account& account = std::get<Account>(found);
    StatusOr<std::vector<encryption::GenerationReport>> report =
        s.account_keys->Report(account.Key(), /*check=*/true);
    if (!report.ok()) return InternalFailure(r, report.status());
    Json generations = Json::array();
    std::string status = "Active";
    for (const auto& g : *report) {
      generations.push_back(GenerationJson(g));
      if (g.active && g.state == encryption::GenerationState::kInaccessible) {
        status = "KeyInaccessible";
      }
    }
    Json out = {{"id", account.ResourceId() + "/encryptionStatus"},
                {"keySource", account.encryption.key_source},
                {"status", status},
                {"generations", generations}};
    if (account.encryption.customer_managed()) {
      out["keyVaultProperties"] = {{"keyVaultUri", account.encryption.key_vault_uri},
                                   {"keyName", account.encryption.key_name},
                                   {"keyVersion", account.encryption.key_version}};
    }
    return http::Json(200, out);
  });
}

// --- projects (child resources)

Response WriteProject(const Services& s, Request& r) {
  return WithSubscription(s, r, [&](const Caller& caller) {
    const std::string scope =
        AccountScope(s, r.params["resourceGroupName"], r.params["accountName"]) + "/projects/" +
        r.params["projectName"];
    return Audited(s, r, caller, "ProjectWrite", scope, [&]() -> Response {
      StatusOr<Json> body = ParseJsonBody(r);
      if (!body.ok()) return ErrorResponse(r, body.status());
      auto found = FindAccount(s, r, caller, "Microsoft.CognitiveServices/accounts/projects/write");
      if (auto* response = std::get_if<Response>(&found)) return std::move(*response);
      bool created = false;
      StatusOr<Json> project = s.accounts->PutProject(std::get<Account>(found),
                                                      r.params["projectName"], *body, &created);
      if (!project.ok()) return ErrorResponse(r, project.status());
      return http::Json(created ? 201 : 200, *project);
    }());
  });
}

Response GetProject(const Services& s, Request& r) {
  return WithSubscription(s, r, [&](const Caller& caller) -> Response {
    auto found = FindAccount(s, r, caller, "Microsoft.CognitiveServices/accounts/projects/read");
    if (auto* response = std::get_if<Response>(&found)) return std::move(*response);
    StatusOr<Json> project =
        s.accounts->GetProject(std::get<Account>(found), r.params["projectName"]);
    if (!project.ok()) return ErrorResponse(r, project.status());
    return http::Json(200, *project);
  });
}

Response ListProjects(const Services& s, Request& r) {
  return WithSubscription(s, r, [&](const Caller& caller) -> Response {
    auto found = FindAccount(s, r, caller, "Microsoft.CognitiveServices/accounts/projects/read");
    if (auto* response = std::get_if<Response>(&found)) return std::move(*response);
    StatusOr<std::vector<Json>> projects = s.accounts->ListProjects(std::get<Account>(found));
    if (!projects.ok()) return InternalFailure(r, projects.status());
    return http::Json(200, {{"value", *projects}});
  });
}

Response DeleteProject(const Services& s, Request& r) {
  return WithSubscription(s, r, [&](const Caller& caller) {
    const std::string scope =
        AccountScope(s, r.params["resourceGroupName"], r.params["accountName"]) + "/projects/" +
        r.params["projectName"];
    return Audited(s, r, caller, "ProjectDelete", scope, [&]() -> Response {
      auto found =
          FindAccount(s, r, caller, "Microsoft.CognitiveServices/accounts/projects/delete");
      if (auto* response = std::get_if<Response>(&found)) return std::move(*response);
      Status deleted = s.accounts->DeleteProject(std::get<Account>(found), r.params["projectName"]);
      if (deleted.code() == StatusCode::kNotFound) return http::Text(204, "", "");
      if (!deleted.ok()) return ErrorResponse(r, deleted);
      return http::Text(200, "", "");
    }());
  });
}


// --- deployments (child resources: a model loaded to answer chat and completions)

// The answer to a change that needs a key (a deployment's model to load, objects to
// reprocess): 403 KeyInaccessible naming the key, 400 for a model that is not there, else as
// ARM.
Response NeedsKeyFailure(const Request& r, const Status& status) {
  if (status.code() == StatusCode::kPermissionDenied) {
    return http::AzureError(403, "KeyInaccessible", status.message(),
                            Json{{"code", status.reason()}});
  }
  if (status.code() == StatusCode::kNotFound &&
      status.reason() == "DeploymentModelNotSupported") {
    return Refuse("DeploymentModelNotSupported", status.message());
  }
  return ErrorResponse(r, status);
}

Response WriteDeployment(const Services& s, Request& r) {
  return WithSubscription(s, r, [&](const Caller& caller) {
    const std::string scope =
        AccountScope(s, r.params["resourceGroupName"], r.params["accountName"]) +
        "/deployments/" + r.params["deploymentName"];
    return Audited(s, r, caller, "DeploymentWrite", scope, [&]() -> Response {
      StatusOr<Json> body = ParseJsonBody(r);
      if (!body.ok()) return ErrorResponse(r, body.status());
      auto found =
          FindAccount(s, r, caller, "Microsoft.CognitiveServices/accounts/deployments/write");
      if (auto* response = std::get_if<Response>(&found)) return std::move(*response);
      const Account& account = std::get<Account>(found);
      if (Status name = foundry::ValidateDeploymentName(r.params["deploymentName"]); !name.ok()) {
        return ErrorResponse(r, name);
      }
      foundry::Deployment base;
      base.account = account.Key();
      base.name = r.params["deploymentName"];
      base.created_by = caller.object_id;
      base.updated_by = caller.object_id;
      StatusOr<foundry::Deployment> deployment = foundry::DeploymentFromArm(*body, base);
      if (!deployment.ok()) return ErrorResponse(r, deployment.status());
      bool created = false;
      StatusOr<foundry::Deployment> stored = s.deployments->Put(*std::move(deployment), &created);
      if (!stored.ok()) return NeedsKeyFailure(r, stored.status());
      LogChange(r, caller, created ? "deployment.created" : "deployment.updated", scope);
      return http::Json(created ? 201 : 200,
                        foundry::DeploymentToArm(*stored, account.ResourceId(),
                                                 s.deployments->State(account.Key(), stored->name)));
    }());
  });
}

Response GetDeployment(const Services& s, Request& r) {
  return WithSubscription(s, r, [&](const Caller& caller) -> Response {
    auto found = FindAccount(s, r, caller, "Microsoft.CognitiveServices/accounts/deployments/read");
    if (auto* response = std::get_if<Response>(&found)) return std::move(*response);
    const Account& account = std::get<Account>(found);
    StatusOr<foundry::Deployment> d =
        s.deployments->Get(account.Key(), r.params["deploymentName"]);
    if (!d.ok()) {
      if (d.status().code() == StatusCode::kNotFound) {
        return http::AzureError(404, "DeploymentNotFound", d.status().message());
      }
      return ErrorResponse(r, d.status());
    }
    return http::Json(200, foundry::DeploymentToArm(*d, account.ResourceId(),
                                                    s.deployments->State(account.Key(), d->name)));
  });
}

Response ListDeployments(const Services& s, Request& r) {
  return WithSubscription(s, r, [&](const Caller& caller) -> Response {
    auto found = FindAccount(s, r, caller, "Microsoft.CognitiveServices/accounts/deployments/read");
    if (auto* response = std::get_if<Response>(&found)) return std::move(*response);
    const Account& account = std::get<Account>(found);
    StatusOr<std::vector<foundry::Deployment>> all = s.deployments->List(account.Key());
    if (!all.ok()) return InternalFailure(r, all.status());
    Json value = Json::array();
    for (const auto& d : *all) {
      value.push_back(foundry::DeploymentToArm(d, account.ResourceId(),
                                               s.deployments->State(account.Key(), d.name)));
    }
    return http::Json(200, {{"value", value}});
  });
}

Response DeleteDeployment(const Services& s, Request& r) {
  return WithSubscription(s, r, [&](const Caller& caller) {
    const std::string scope =
        AccountScope(s, r.params["resourceGroupName"], r.params["accountName"]) +
        "/deployments/" + r.params["deploymentName"];
    return Audited(s, r, caller, "DeploymentDelete", scope, [&]() -> Response {
      auto found =
          FindAccount(s, r, caller, "Microsoft.CognitiveServices/accounts/deployments/delete");
      if (auto* response = std::get_if<Response>(&found)) return std::move(*response);
      Status deleted =
          s.deployments->Delete(std::get<Account>(found).Key(), r.params["deploymentName"]);
      if (deleted.code() == StatusCode::kNotFound) return http::Text(204, "", "");
      if (!deleted.ok()) return ErrorResponse(r, deleted);
      LogChange(r, caller, "deployment.deleted", scope);
      return http::Text(200, "", "");
    }());
  });
}


// --- reprocessing (a long-running operation, as ARM runs them)

std::string OperationId(const Account& account, std::string_view id) {
  return account.ResourceId() + "/encryption/operations/" + std::string(id);
}

Response Reprocess(const Services& s, Request& r) {
  return WithSubscription(s, r, [&](const Caller& caller) {
    const std::string scope =
        AccountScope(s, r.params["resourceGroupName"], r.params["accountName"]);
    return Audited(s, r, caller, "AccountReprocess", scope, [&]() -> Response {
      StatusOr<Json> body = ParseJsonBody(r);
      if (!body.ok()) return ErrorResponse(r, body.status());
      auto found = FindAccount(s, r, caller, "Microsoft.CognitiveServices/accounts/write");
      if (auto* response = std::get_if<Response>(&found)) return std::move(*response);
      const Account& account = std::get<Account>(found);
      StatusOr<foundry::ReprocessRequest> request = foundry::ReprocessRequestFromJson(*body);
      if (!request.ok()) return ErrorResponse(r, request.status());
      StatusOr<foundry::ReprocessOperation> op = s.reprocessor->Begin(account.Key(), *request);
      if (!op.ok()) return NeedsKeyFailure(r, op.status());
      LogChange(r, caller, "account.reprocess", scope);
      const std::string status_url = s.base_url + OperationId(account, op->id) +
                                     "?api-version=" + r.query["api-version"];
      Response out = http::Json(202, foundry::OperationToJson(*op, OperationId(account, op->id)));
      out.headers.emplace_back("Azure-AsyncOperation", status_url);
      out.headers.emplace_back("Location", status_url);
      out.headers.emplace_back("Retry-After", "1");
      return out;
    }());
  });
}

// POST .../encryption/generations/{generation}/retire: a generation that protects nothing.
Response RetireGeneration(const Services& s, Request& r) {
  return WithSubscription(s, r, [&](const Caller& caller) {
    const std::string scope =
        AccountScope(s, r.params["resourceGroupName"], r.params["accountName"]);
    return Audited(s, r, caller, "AccountRetireGeneration", scope, [&]() -> Response {
      auto found = FindAccount(s, r, caller, "Microsoft.CognitiveServices/accounts/write");
      if (auto* response = std::get_if<Response>(&found)) return std::move(*response);
      const Account& account = std::get<Account>(found);
      const std::optional<int64_t> number = ParseInt64(r.params["generation"]);
      if (!number.has_value() || *number < 1) {
        return Refuse("InvalidRequestContent", "The generation must be a positive number.");
      }
      Status retired = s.account_keys->Retire(account.Key(), static_cast<uint64_t>(*number));
      if (retired.code() == StatusCode::kFailedPrecondition) {
        return http::AzureError(409, retired.reason(), retired.message());
      }
      if (!retired.ok()) return ErrorResponse(r, retired);
      LogChange(r, caller, "account.generation_retired", scope);
      return http::Json(200, {{"generation", *number}, {"retired", true}});
    }());
  });
}

Response GetOperation(const Services& s, Request& r) {
  return WithSubscription(s, r, [&](const Caller& caller) -> Response {
    auto found = FindAccount(s, r, caller, "Microsoft.CognitiveServices/accounts/read");
    if (auto* response = std::get_if<Response>(&found)) return std::move(*response);
    const Account& account = std::get<Account>(found);
    StatusOr<foundry::ReprocessOperation> op =
        s.reprocessor->Get(account.Key(), r.params["operationId"]);
    if (!op.ok()) return ErrorResponse(r, op.status());
    return http::Json(200, foundry::OperationToJson(*op, OperationId(account, op->id)));
  });
}

Response ListOperations(const Services& s, Request& r) {
  return WithSubscription(s, r, [&](const Caller& caller) -> Response {
    auto found = FindAccount(s, r, caller, "Microsoft.CognitiveServices/accounts/read");
    if (auto* response = std::get_if<Response>(&found)) return std::move(*response);
    const Account& account = std::get<Account>(found);
    StatusOr<std::vector<foundry::ReprocessOperation>> ops = s.reprocessor->List(account.Key());
    if (!ops.ok()) return InternalFailure(r, ops.status());
    Json value = Json::array();
    for (const auto& op : *ops) value.push_back(foundry::OperationToJson(op, OperationId(account, op.id)));
    return http::Json(200, {{"value", value}});
  });
}

// --- CMK approvals (S10)

Response WriteApproval(const Services& s, Request& r, bool grant) {
  return WithSubscription(s, r, [&](const Caller& caller) {
    const std::string kind = r.params["kind"];
    const std::string scope =
        SubscriptionScope(s) + "/providers/Microsoft.KeyFoundry/cmkApprovals/" + kind;
    return Audited(
        s, r, caller, grant ? "CmkApprovalGrant" : "CmkApprovalRevoke", scope, [&]() -> Response {
          if (auto denied = Authorize(s, caller, SubscriptionScope(s),
                                      grant ? "Microsoft.KeyFoundry/cmkApprovals/write"
                                            : "Microsoft.KeyFoundry/cmkApprovals/delete")) {
            return *denied;
          }
          Status done = grant ? s.accounts->GrantApproval(s.subscription_id, kind, caller.object_id)
                              : s.accounts->RevokeApproval(s.subscription_id, kind);
          if (!done.ok()) return ErrorResponse(r, done);
          if (!grant) return http::Text(200, "", "");
          return http::Json(200, {{"id", scope}, {"kind", kind}, {"approved", true}});
        }());
  });
}

Response ListApprovals(const Services& s, Request& r) {
  return WithSubscription(s, r, [&](const Caller& caller) -> Response {
    if (auto denied =
            Authorize(s, caller, SubscriptionScope(s), "Microsoft.KeyFoundry/cmkApprovals/read")) {
      return *denied;
    }
    StatusOr<Json> approvals = s.accounts->ListApprovals(s.subscription_id);
    if (!approvals.ok()) return InternalFailure(r, approvals.status());
    return http::Json(200, {{"value", *approvals}});
  });
}

}  // namespace

void AddAccountRoutes(http::Router& router, std::shared_ptr<Services> services) {
  const auto& s = services;
  const std::string account = kAccountPath;
  const std::string group_accounts =
      "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/"
      "Microsoft.CognitiveServices/accounts";
  router.Add("GET", "*", group_accounts, [s](Request& r) { return ListAccounts(*s, r, true); });
  router.Add("GET", "*",
             "/subscriptions/{subscriptionId}/providers/Microsoft.CognitiveServices/accounts",
             [s](Request& r) { return ListAccounts(*s, r, false); });
  router.Add("PUT", "*", account, [s](Request& r) { return WriteAccount(*s, r, false); });
  router.Add("PATCH", "*", account, [s](Request& r) { return WriteAccount(*s, r, true); });
  router.Add("GET", "*", account, [s](Request& r) { return GetAccount(*s, r); });
  router.Add("DELETE", "*", account, [s](Request& r) { return DeleteAccount(*s, r); });
  router.Add("POST", "*", account + "/listKeys", [s](Request& r) { return ListKeys(*s, r); });
  router.Add("POST", "*", account + "/regenerateKey",
             [s](Request& r) { return RegenerateKey(*s, r); });
  router.Add("GET", "*", account + "/encryptionStatus",
             [s](Request& r) { return EncryptionStatus(*s, r); });
  router.Add("GET", "*", account + "/projects", [s](Request& r) { return ListProjects(*s, r); });
  router.Add("PUT", "*", account + "/projects/{projectName}",
             [s](Request& r) { return WriteProject(*s, r); });
  router.Add("GET", "*", account + "/projects/{projectName}",
             [s](Request& r) { return GetProject(*s, r); });
  router.Add("DELETE", "*", account + "/projects/{projectName}",
             [s](Request& r) { return DeleteProject(*s, r); });
  const std::string approvals = kApprovalsPath;
  router.Add("GET", "*", account + "/deployments",
             [s](Request& r) { return ListDeployments(*s, r); });
  router.Add("PUT", "*", account + "/deployments/{deploymentName}",
             [s](Request& r) { return WriteDeployment(*s, r); });
  router.Add("GET", "*", account + "/deployments/{deploymentName}",
             [s](Request& r) { return GetDeployment(*s, r); });
  router.Add("DELETE", "*", account + "/deployments/{deploymentName}",
             [s](Request& r) { return DeleteDeployment(*s, r); });
  router.Add("POST", "*", account + "/encryption/reprocess",
             [s](Request& r) { return Reprocess(*s, r); });
  router.Add("GET", "*", account + "/encryption/operations",
             [s](Request& r) { return ListOperations(*s, r); });
  router.Add("POST", "*", account + "/encryption/generations/{generation}/retire",
             [s](Request& r) { return RetireGeneration(*s, r); });
  router.Add("GET", "*", account + "/encryption/operations/{operationId}",
             [s](Request& r) { return GetOperation(*s, r); });
  router.Add("GET", "*", approvals, [s](Request& r) { return ListApprovals(*s, r); });
  router.Add("PUT", "*", approvals + "/{kind}",
             [s](Request& r) { return WriteApproval(*s, r, true); });
  router.Add("DELETE", "*", approvals + "/{kind}",
             [s](Request& r) { return WriteApproval(*s, r, false); });
}

}  // namespace keyfoundry::server
