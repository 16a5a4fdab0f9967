// Control-plane routes for resource groups and Microsoft.KeyVault/vaults, in ARM's shapes, so
// that the az-like CLI, the Azure management SDKs and ARM template bodies work unchanged:
//
//   /subscriptions/{s}/resourcegroups                                  GET
//   /subscriptions/{s}/resourcegroups/{rg}                             PUT GET HEAD PATCH DELETE
//   /subscriptions/{s}/resourcegroups/{rg}/providers/Microsoft.KeyVault/vaults          GET
//   /subscriptions/{s}/resourcegroups/{rg}/providers/Microsoft.KeyVault/vaults/{name}
//                                                                      PUT GET PATCH DELETE
//   .../vaults/{name}/accessPolicies/{add|replace|remove}               PUT
//   /subscriptions/{s}/providers/Microsoft.KeyVault/vaults               GET
//   /subscriptions/{s}/providers/Microsoft.KeyVault/deletedVaults        GET
//   /subscriptions/{s}/providers/Microsoft.KeyVault/locations/{loc}/deletedVaults/{name}  GET
//   .../deletedVaults/{name}/purge                                      POST
//   /subscriptions/{s}/providers/Microsoft.KeyVault/checkNameAvailability  POST
//   /subscriptions/{s}/resources?$filter=resourceType eq 'Microsoft.KeyVault/vaults'  GET
//
// Every pattern has a fixed number of segments, so the longer role-assignment paths under a
// group or a vault ({scope}/providers/Microsoft.Authorization/...) still reach management
// routes' catch-all.
//
// Each handler: authentication, api-version, the subscription, the request's own validation,
// authorization (ARM actions at the resource's scope), then the work. A change is published on
// the event bus after it commits and audited (one hook, AuditChange) whatever its outcome.
#include <nlohmann/json.hpp>

#include "audit/audit_log.h"
#include "common/logging.h"
#include "common/strings.h"
#include "keyvault/events.h"
#include "keyvault/vault.h"
#include "management/resource_groups.h"
#include "server/arm.h"
#include "server/services.h"

namespace keyfoundry::server {
namespace {

using http::Request;
using http::Response;
using identity::Caller;
using keyvault::Vault;
using keyvault::VaultEventType;
using management::ResourceGroup;
using Json = nlohmann::json;

constexpr char kGroupPath[] = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}";
constexpr char kVaultProvider[] = "/providers/Microsoft.KeyVault";
constexpr size_t kSmallBody = size_t{64} * 1024;

// ---------------------------------------------------------------- common steps

std::string VaultScope(const Services& s, std::string_view group, std::string_view vault) {
  return GroupScope(s, group) + kVaultProvider + "/vaults/" + std::string(vault);
}

std::string VaultUri(const Services& s, const Vault& vault) {
  return s.VaultUri(ToLowerAscii(vault.name));
}

Response VaultNotFoundResponse(std::string_view group, std::string_view vault) {
  return http::AzureError(404, "ResourceNotFound",
                          "The Resource 'Microsoft.KeyVault/vaults/" + std::string(vault) +
                              "' under resource group '" + std::string(group) + "' was not found.");
}

bool InGroup(const Services& s, const Vault& vault, std::string_view group) {
  return EqualsIgnoreCase(vault.subscription_id, s.subscription_id) &&
         EqualsIgnoreCase(vault.resource_group, group);
}

void Publish(const Services& s, VaultEventType type, std::string_view vault) {
  if (s.events == nullptr) return;
  keyvault::VaultEvent event;
  event.type = type;
  event.vault = ToLowerAscii(vault);
  s.events->Publish(event);
}

// The events a change from `before` to `after` calls for (events.h).
void PublishChanges(const Services& s, const Vault& before, const Vault& after) {
  if (before.access_policies != after.access_policies) {
    Publish(s, VaultEventType::kAccessPolicyChanged, after.name);
  }
  if (before.network_acls != after.network_acls ||
      before.public_network_access != after.public_network_access) {
    Publish(s, VaultEventType::kFirewallChanged, after.name);
  }
  if (before.sku != after.sku || before.rbac_authorization != after.rbac_authorization ||
      before.purge_protection != after.purge_protection || before.tenant_id != after.tenant_id ||
      before.tags != after.tags || before.extra_properties != after.extra_properties) {
    Publish(s, VaultEventType::kVaultUpdated, after.name);
  }
}

Status CheckTenant(const Services& s, const Vault& vault) {
  if (EqualsIgnoreCase(vault.tenant_id, s.tenant_id)) return OkStatus();
  return InvalidArgumentError("properties.tenantId: '" + vault.tenant_id +
                              "' is not this deployment's tenant; use '" + s.tenant_id + "'")
      .WithReason("BadRequest");
}

// ---------------------------------------------------------------- resource groups

// PUT creates or replaces a group (201 / 200); PATCH (`patch`) merges into an existing one.
Response WriteResourceGroup(const Services& s, Request& r, bool patch) {
  return WithSubscription(s, r, [&](const Caller& caller) {
    const std::string name = r.params["resourceGroupName"];
    const std::string scope = GroupScope(s, name);
    return Audited(s, r, caller, "ResourceGroupWrite", scope, [&]() -> Response {
      if (Status valid = management::ValidateResourceGroupName(name); !valid.ok()) {
        return ErrorResponse(r, valid);
      }
      StatusOr<Json> body = ParseJsonBody(r);
      if (!body.ok()) return ErrorResponse(r, body.status());
      if (auto denied = Authorize(s, caller, scope,
                                  "Microsoft.Resources/subscriptions/resourceGroups/write")) {
        return *denied;
      }
      StatusOr<ResourceGroup> existing = s.resource_groups->Get(s.subscription_id, name);
      if (!existing.ok() && existing.status().code() != StatusCode::kNotFound) {
        return InternalFailure(r, existing.status());
      }
      if (patch && !existing.ok()) return ResourceGroupNotFound(name);
      ResourceGroup base;
      if (existing.ok()) {
        base = *existing;
      } else {
        base.subscription_id = s.subscription_id;
        base.name = name;
        base.created_by = caller.object_id;
      }
      StatusOr<ResourceGroup> group = management::ResourceGroupFromArm(*body, base, patch);
      if (!group.ok()) return ErrorResponse(r, group.status());
      group->updated_by = caller.object_id;
      bool created = false;
      StatusOr<ResourceGroup> stored = s.resource_groups->Put(*group, &created);
      if (!stored.ok()) return ErrorResponse(r, stored.status());
      LogChange(r, caller, created ? "resource_group.created" : "resource_group.updated",
                stored->ResourceId());
      return http::Json(created ? 201 : 200, management::ResourceGroupToArm(*stored));
    }());
  });
}

// GET (the group) and HEAD (204 when it exists, as ARM's CheckExistence).
Response GetResourceGroup(const Services& s, Request& r, bool head) {
  return WithSubscription(s, r, [&](const Caller& caller) -> Response {
    const std::string name = r.params["resourceGroupName"];
    if (Status valid = management::ValidateResourceGroupName(name); !valid.ok()) {
      return ErrorResponse(r, valid);
    }
    if (auto denied = Authorize(s, caller, GroupScope(s, name),
                                "Microsoft.Resources/subscriptions/resourceGroups/read")) {
      return *denied;
    }
    StatusOr<ResourceGroup> group = s.resource_groups->Get(s.subscription_id, name);
    if (!group.ok()) {
      return group.status().code() == StatusCode::kNotFound ? ResourceGroupNotFound(name)
                                                            : InternalFailure(r, group.status());
    }
    if (head) return http::Text(204, "", "");
    return http::Json(200, management::ResourceGroupToArm(*group));
  });
}

Response ListResourceGroups(const Services& s, Request& r) {
  return WithSubscription(s, r, [&](const Caller& caller) -> Response {
    constexpr std::string_view kRead = "Microsoft.Resources/subscriptions/resourceGroups/read";
    StatusOr<size_t> top = Top(r);
    if (!top.ok()) return ErrorResponse(r, top.status());
    StatusOr<std::vector<ResourceGroup>> groups = s.resource_groups->List(s.subscription_id);
    if (!groups.ok()) return InternalFailure(r, groups.status());
    const bool all = Allowed(s, caller, SubscriptionScope(s), kRead);
    Json value = Json::array();
    for (const ResourceGroup& g : *groups) {
      if (value.size() >= *top) break;
      if (all || Allowed(s, caller, g.ResourceId(), kRead)) {
        value.push_back(management::ResourceGroupToArm(g));
      }
    }
    return http::Json(200, {{"value", value}});
  });
}

// Soft-deletes the group's vaults (they go to the deleted vaults, as in Azure), then removes
// the group.
Response DeleteResourceGroup(const Services& s, Request& r) {
  return WithSubscription(s, r, [&](const Caller& caller) {
    const std::string name = r.params["resourceGroupName"];
    const std::string scope = GroupScope(s, name);
    return Audited(s, r, caller, "ResourceGroupDelete", scope, [&]() -> Response {
      if (Status valid = management::ValidateResourceGroupName(name); !valid.ok()) {
        return ErrorResponse(r, valid);
      }
      if (auto denied = Authorize(s, caller, scope,
                                  "Microsoft.Resources/subscriptions/resourceGroups/delete")) {
        return *denied;
      }
      if (auto missing = RequireGroup(s, r, name)) return *missing;
      StatusOr<std::vector<Vault>> vaults = s.vaults->List(false);
      if (!vaults.ok()) return InternalFailure(r, vaults.status());
      for (const Vault& vault : *vaults) {
        if (!InGroup(s, vault, name)) continue;
        StatusOr<Vault> deleted = s.vaults->Delete(vault.name);
        if (!deleted.ok() && deleted.status().code() != StatusCode::kNotFound) {
          return InternalFailure(r, deleted.status());
        }
        if (!deleted.ok()) continue;
        Publish(s, VaultEventType::kVaultDeleted, deleted->name);
        LogChange(r, caller, "vault.deleted", deleted->ResourceId());
        Status audited = AuditChange(s, r, caller, "VaultDelete", deleted->ResourceId(), 200);
        if (!audited.ok()) return InternalFailure(r, UnavailableError(audited.ToString()));
      }
      StatusOr<ResourceGroup> removed = s.resource_groups->Delete(s.subscription_id, name);
      if (!removed.ok()) {
        return removed.status().code() == StatusCode::kNotFound
                   ? ResourceGroupNotFound(name)
                   : InternalFailure(r, removed.status());
      }
      LogChange(r, caller, "resource_group.deleted", removed->ResourceId());
      return http::Text(200, "", "");
    }());
  });
}

// ---------------------------------------------------------------- vaults

// A new vault of this deployment, before its body is applied.
Vault NewVault(const Services& s, std::string_view group, std::string_view name,
               const Caller& caller) {
  Vault vault;
  vault.name = std::string(name);
  vault.subscription_id = s.subscription_id;
  vault.resource_group = std::string(group);
  vault.tenant_id = s.tenant_id;
  vault.created_by = caller.object_id;
  vault.updated_by = caller.object_id;
  return vault;
}

// createMode "recover": brings back the deleted vault as it was (the body's other properties
// are validated, not applied, as Azure does).
Response RecoverVault(const Services& s, const Request& r, const Caller& caller,
                      const std::string& group, const std::string& name, const Json& body) {
  StatusOr<Vault> checked = keyvault::VaultFromArm(body, NewVault(s, group, name, caller));
  if (!checked.ok()) return ErrorResponse(r, checked.status());
  StatusOr<Vault> any = s.vaults->GetAny(name);
  if (!any.ok()) {
    if (any.status().code() != StatusCode::kNotFound) return InternalFailure(r, any.status());
    return http::AzureError(404, "DeletedVaultNotFound",
                            "There is no deleted vault named '" + name +
                                "' to recover. Create it without createMode \"recover\".");
  }
  if (!InGroup(s, *any, group)) {
    return http::AzureError(409, any->deleted_at ? "ConflictError" : "VaultAlreadyExists",
                            "The vault '" + any->name + "' belongs to the resource group '" +
                                any->resource_group + "'; recover it there.");
  }
  if (!any->deleted_at) return http::Json(200, keyvault::VaultToArm(*any, VaultUri(s, *any)));
  StatusOr<Vault> recovered = s.vaults->Recover(name);
  if (!recovered.ok()) return ErrorResponse(r, recovered.status());
  Publish(s, VaultEventType::kVaultRecovered, recovered->name);
  LogChange(r, caller, "vault.recovered", recovered->ResourceId());
  return http::Json(200, keyvault::VaultToArm(*recovered, VaultUri(s, *recovered)));
}

Response PutVault(const Services& s, Request& r) {
  return WithSubscription(s, r, [&](const Caller& caller) {
    const std::string group = r.params["resourceGroupName"];
    const std::string name = r.params["vaultName"];
    const std::string scope = VaultScope(s, group, name);
    StatusOr<Json> body = ParseJsonBody(r);
    StatusOr<keyvault::CreateMode> mode =
        body.ok() ? keyvault::CreateModeOf(*body) : StatusOr<keyvault::CreateMode>(body.status());
    const bool recover = mode.ok() && *mode == keyvault::CreateMode::kRecover;
    return Audited(s, r, caller, recover ? "VaultRecover" : "VaultPut", scope, [&]() -> Response {
      if (Status valid = keyvault::ValidateVaultName(name); !valid.ok()) {
        return ErrorResponse(r, valid);
      }
      if (!mode.ok()) return ErrorResponse(r, mode.status());
      if (auto denied = Authorize(s, caller, scope, "Microsoft.KeyVault/vaults/write")) {
        return *denied;
      }
      if (auto missing = RequireGroup(s, r, group)) return *missing;
      if (recover) return RecoverVault(s, r, caller, group, name, *body);

      StatusOr<Vault> current = s.vaults->GetAny(name);
      if (!current.ok() && current.status().code() != StatusCode::kNotFound) {
        return InternalFailure(r, current.status());
      }
      if (current.ok() && !current->deleted_at && InGroup(s, *current, group)) {
        Vault before;
        StatusOr<Vault> updated = s.vaults->Update(name, [&](Vault& vault) -> Status {
          before = vault;
          ASSIGN_OR_RETURN(vault, keyvault::VaultFromArm(*body, vault));
          vault.updated_by = caller.object_id;
          return CheckTenant(s, vault);
        });
        if (!updated.ok()) {
          if (updated.status().code() == StatusCode::kNotFound) {
            return VaultNotFoundResponse(group, name);
          }
          return ErrorResponse(r, updated.status());
        }
        PublishChanges(s, before, *updated);
        LogChange(r, caller, "vault.updated", updated->ResourceId());
        return http::Json(200, keyvault::VaultToArm(*updated, VaultUri(s, *updated)));
      }
      // A new vault (or a name taken elsewhere, which Put refuses once the body is valid).
      StatusOr<Vault> parsed = keyvault::VaultFromArm(*body, NewVault(s, group, name, caller));
      if (!parsed.ok()) return ErrorResponse(r, parsed.status());
      if (Status tenant = CheckTenant(s, *parsed); !tenant.ok()) return ErrorResponse(r, tenant);
      bool created = false;
      StatusOr<Vault> stored = s.vaults->Put(*parsed, &created);
      if (!stored.ok()) return ErrorResponse(r, stored.status());
      Publish(s, VaultEventType::kVaultUpdated, stored->name);
      LogChange(r, caller, created ? "vault.created" : "vault.updated", stored->ResourceId());
      return http::Json(created ? 201 : 200, keyvault::VaultToArm(*stored, VaultUri(s, *stored)));
    }());
  });
}

Response PatchVault(const Services& s, Request& r) {
  return WithSubscription(s, r, [&](const Caller& caller) {
    const std::string group = r.params["resourceGroupName"];
    const std::string name = r.params["vaultName"];
    const std::string scope = VaultScope(s, group, name);
    return Audited(s, r, caller, "VaultPatch", scope, [&]() -> Response {
      if (Status valid = keyvault::ValidateVaultName(name); !valid.ok()) {
        return ErrorResponse(r, valid);
      }
      StatusOr<Json> body = ParseJsonBody(r);
      if (!body.ok()) return ErrorResponse(r, body.status());
      if (auto denied = Authorize(s, caller, scope, "Microsoft.KeyVault/vaults/write")) {
        return *denied;
      }
      if (auto missing = RequireGroup(s, r, group)) return *missing;
      Vault before;
      StatusOr<Vault> updated = s.vaults->Update(name, [&](Vault& vault) -> Status {
        if (!InGroup(s, vault, group)) return NotFoundError("not in this resource group");
        before = vault;
        ASSIGN_OR_RETURN(vault, keyvault::VaultPatchFromArm(*body, vault));
        vault.updated_by = caller.object_id;
        return CheckTenant(s, vault);
      });
      if (!updated.ok()) {
        if (updated.status().code() == StatusCode::kNotFound) {
          return VaultNotFoundResponse(group, name);
        }
        return ErrorResponse(r, updated.status());
      }
      PublishChanges(s, before, *updated);
      LogChange(r, caller, "vault.updated", updated->ResourceId());
      return http::Json(200, keyvault::VaultToArm(*updated, VaultUri(s, *updated)));
    }());
  });
}

Response GetVault(const Services& s, Request& r) {
  return WithSubscription(s, r, [&](const Caller& caller) -> Response {
    const std::string group = r.params["resourceGroupName"];
    const std::string name = r.params["vaultName"];
    if (Status valid = keyvault::ValidateVaultName(name); !valid.ok()) {
      return ErrorResponse(r, valid);
    }
    if (auto denied =
            Authorize(s, caller, VaultScope(s, group, name), "Microsoft.KeyVault/vaults/read")) {
      return *denied;
    }
    if (auto missing = RequireGroup(s, r, group)) return *missing;
    StatusOr<Vault> vault = s.vaults->Get(name);
    if (!vault.ok() && vault.status().code() != StatusCode::kNotFound) {
      return InternalFailure(r, vault.status());
    }
    if (!vault.ok() || !InGroup(s, *vault, group)) return VaultNotFoundResponse(group, name);
    return http::Json(200, keyvault::VaultToArm(*vault, VaultUri(s, *vault)));
  });
}

// Soft delete: 200 when deleted, 204 when there was no such vault (ARM).
Response DeleteVault(const Services& s, Request& r) {
  return WithSubscription(s, r, [&](const Caller& caller) {
    const std::string group = r.params["resourceGroupName"];
    const std::string name = r.params["vaultName"];
    const std::string scope = VaultScope(s, group, name);
    return Audited(s, r, caller, "VaultDelete", scope, [&]() -> Response {
      if (Status valid = keyvault::ValidateVaultName(name); !valid.ok()) {
        return ErrorResponse(r, valid);
      }
      if (auto denied = Authorize(s, caller, scope, "Microsoft.KeyVault/vaults/delete")) {
        return *denied;
      }
      if (auto missing = RequireGroup(s, r, group)) return *missing;
      StatusOr<Vault> vault = s.vaults->Get(name);
      if (!vault.ok() && vault.status().code() != StatusCode::kNotFound) {
        return InternalFailure(r, vault.status());
      }
      if (!vault.ok() || !InGroup(s, *vault, group)) return http::Text(204, "", "");
      StatusOr<Vault> deleted = s.vaults->Delete(name);
      if (!deleted.ok()) {
        if (deleted.status().code() == StatusCode::kNotFound) return http::Text(204, "", "");
        return InternalFailure(r, deleted.status());
      }
      Publish(s, VaultEventType::kVaultDeleted, deleted->name);
      LogChange(r, caller, "vault.deleted", deleted->ResourceId());
      return http::Text(200, "", "");
    }());
  });
}

Response ListGroupVaults(const Services& s, Request& r) {
  return WithSubscription(s, r, [&](const Caller& caller) -> Response {
    const std::string group = r.params["resourceGroupName"];
    if (Status valid = management::ValidateResourceGroupName(group); !valid.ok()) {
      return ErrorResponse(r, valid);
    }
    StatusOr<size_t> top = Top(r);
    if (!top.ok()) return ErrorResponse(r, top.status());
    if (auto denied =
            Authorize(s, caller, GroupScope(s, group), "Microsoft.KeyVault/vaults/read")) {
      return *denied;
    }
    if (auto missing = RequireGroup(s, r, group)) return *missing;
    StatusOr<std::vector<Vault>> vaults = s.vaults->List(false);
    if (!vaults.ok()) return InternalFailure(r, vaults.status());
    Json value = Json::array();
    for (const Vault& vault : *vaults) {
      if (value.size() >= *top) break;
      if (InGroup(s, vault, group))
        value.push_back(keyvault::VaultToArm(vault, VaultUri(s, vault)));
    }
    return http::Json(200, {{"value", value}});
  });
}

// The subscription's vaults the caller may read: as full resources (`full`), or in the short
// shape of GET /subscriptions/{s}/resources.
Response ListSubscriptionVaults(const Services& s, Request& r, bool full) {
  return WithSubscription(s, r, [&](const Caller& caller) -> Response {
    StatusOr<size_t> top = Top(r);
    if (!top.ok()) return ErrorResponse(r, top.status());
    if (!full) {
      auto filter = r.query.find("$filter");
      if (filter != r.query.end() && !filter->second.empty() &&
          !EqualsIgnoreCase(filter->second, "resourceType eq 'Microsoft.KeyVault/vaults'")) {
        return http::AzureError(400, "InvalidFilter",
                                "supported $filter: resourceType eq 'Microsoft.KeyVault/vaults'");
      }
    }
    StatusOr<std::vector<Vault>> vaults = s.vaults->List(false);
    if (!vaults.ok()) return InternalFailure(r, vaults.status());
    Json value = Json::array();
    for (const Vault& vault : *vaults) {
      if (value.size() >= *top) break;
      if (!EqualsIgnoreCase(vault.subscription_id, s.subscription_id) ||
          !Allowed(s, caller, vault.ResourceId(), "Microsoft.KeyVault/vaults/read")) {
        continue;
      }
      if (full) {
        value.push_back(keyvault::VaultToArm(vault, VaultUri(s, vault)));
      } else {
        value.push_back({{"id", vault.ResourceId()},
                         {"name", vault.name},
                         {"type", "Microsoft.KeyVault/vaults"},
                         {"location", vault.location},
                         {"tags", vault.tags}});
      }
    }
    return http::Json(200, {{"value", value}});
  });
}

Response UpdateAccessPolicies(const Services& s, Request& r) {
  return WithSubscription(s, r, [&](const Caller& caller) {
    const std::string group = r.params["resourceGroupName"];
    const std::string name = r.params["vaultName"];
    const std::string scope = VaultScope(s, group, name);
    return Audited(s, r, caller, "VaultAccessPolicyWrite", scope, [&]() -> Response {
      if (Status valid = keyvault::ValidateVaultName(name); !valid.ok()) {
        return ErrorResponse(r, valid);
      }
      const std::string& kind_name = r.params["operationKind"];
      std::optional<keyvault::AccessPolicyUpdateKind> kind =
          keyvault::ParseAccessPolicyUpdateKind(kind_name);
      if (!kind) {
        return http::AzureError(400, "BadRequest",
                                "The access policy operation '" + kind_name +
                                    "' is not supported; use add, replace or remove.");
      }
      StatusOr<Json> body = ParseJsonBody(r);
      if (!body.ok()) return ErrorResponse(r, body.status());
      if (auto denied =
              Authorize(s, caller, scope, "Microsoft.KeyVault/vaults/accessPolicies/write")) {
        return *denied;
      }
      if (auto missing = RequireGroup(s, r, group)) return *missing;
      Vault before;
      StatusOr<Vault> updated = s.vaults->Update(name, [&](Vault& vault) -> Status {
        if (!InGroup(s, vault, group)) return NotFoundError("not in this resource group");
        before = vault;
        ASSIGN_OR_RETURN(std::vector<keyvault::AccessPolicy> policies,
                         keyvault::AccessPoliciesFromArm(*body, vault.tenant_id));
        RETURN_IF_ERROR(keyvault::ApplyAccessPolicyUpdate(vault, *kind, policies));
        vault.updated_by = caller.object_id;
        return OkStatus();
      });
      if (!updated.ok()) {
        if (updated.status().code() == StatusCode::kNotFound) {
          return VaultNotFoundResponse(group, name);
        }
        return ErrorResponse(r, updated.status());
      }
      PublishChanges(s, before, *updated);
      LogChange(r, caller, "vault.access_policies_updated", updated->ResourceId());
      const std::string lower_kind = ToLowerAscii(kind_name);
      return http::Json(
          200, {{"id", updated->ResourceId() + "/accessPolicies/" + lower_kind},
                {"name", lower_kind},
                {"type", "Microsoft.KeyVault/vaults/accessPolicies"},
                {"location", updated->location},
                {"properties", {{"accessPolicies", keyvault::AccessPoliciesToArm(*updated)}}}});
    }());
  });
}

// ---------------------------------------------------------------- deleted vaults

Response ListDeletedVaults(const Services& s, Request& r) {
  return WithSubscription(s, r, [&](const Caller& caller) -> Response {
    if (auto denied =
            Authorize(s, caller, SubscriptionScope(s), "Microsoft.KeyVault/deletedVaults/read")) {
      return *denied;
    }
    StatusOr<std::vector<Vault>> vaults = s.vaults->List(true);
    if (!vaults.ok()) return InternalFailure(r, vaults.status());
    Json value = Json::array();
    for (const Vault& vault : *vaults) {
      if (EqualsIgnoreCase(vault.subscription_id, s.subscription_id)) {
        value.push_back(keyvault::DeletedVaultToArm(vault));
      }
    }
    return http::Json(200, {{"value", value}});
  });
}

// The deleted vault the path names ({location}, {vaultName}), or the 404 to send.
StatusOr<Vault> FindDeletedVault(const Services& s, const Request& r) {
  const std::string& name = r.params.at("vaultName");
  const std::string& location = r.params.at("location");
  StatusOr<Vault> vault = s.vaults->GetAny(name);
  if (!vault.ok() && vault.status().code() != StatusCode::kNotFound) return vault.status();
  if (!vault.ok() || !vault->deleted_at ||
      !EqualsIgnoreCase(vault->subscription_id, s.subscription_id) ||
      keyvault::NormalizeArmLocation(vault->location) != keyvault::NormalizeArmLocation(location)) {
    return NotFoundError("There is no deleted vault named '" + name + "' in location '" + location +
                         "'.")
        .WithReason("DeletedVaultNotFound");
  }
  return vault;
}

Response GetDeletedVault(const Services& s, Request& r) {
  return WithSubscription(s, r, [&](const Caller& caller) -> Response {
    if (auto denied = Authorize(s, caller, SubscriptionScope(s),
                                "Microsoft.KeyVault/locations/deletedVaults/read")) {
      return *denied;
    }
    StatusOr<Vault> vault = FindDeletedVault(s, r);
    if (!vault.ok()) return ErrorResponse(r, vault.status());
    return http::Json(200, keyvault::DeletedVaultToArm(*vault));
  });
}

// Destroys the vault's keys, then its record: refused (409) under purge protection before the
// scheduled purge date, checked before anything is destroyed.
Response PurgeDeletedVault(const Services& s, Request& r) {
  return WithSubscription(s, r, [&](const Caller& caller) {
    const std::string scope = SubscriptionScope(s) + kVaultProvider + "/locations/" +
                              r.params["location"] + "/deletedVaults/" + r.params["vaultName"];
    return Audited(s, r, caller, "VaultPurge", scope, [&]() -> Response {
      if (auto denied = Authorize(s, caller, SubscriptionScope(s),
                                  "Microsoft.KeyVault/locations/deletedVaults/purge/action")) {
        return *denied;
      }
      StatusOr<Vault> vault = FindDeletedVault(s, r);
      if (!vault.ok()) return ErrorResponse(r, vault.status());
      if (Status allowed = s.vaults->CanPurge(vault->name); !allowed.ok()) {
        return ErrorResponse(r, allowed);
      }
      if (s.purge_vault_keys) {
        if (Status keys = s.purge_vault_keys(vault->name); !keys.ok()) {
          return InternalFailure(r, keys);
        }
      }
      if (Status purged = s.vaults->Purge(vault->name); !purged.ok()) {
        return ErrorResponse(r, purged);
      }
      Publish(s, VaultEventType::kVaultPurged, vault->name);
      LogChange(r, caller, "vault.purged", vault->ResourceId());
      return http::Text(200, "", "");
    }());
  });
}

Response CheckNameAvailability(const Services& s, Request& r) {
  return WithSubscription(s, r, [&](const Caller& caller) -> Response {
    StatusOr<Json> body = ParseJsonBody(r);
    if (!body.ok()) return ErrorResponse(r, body.status());
    auto name = body->find("name");
    if (name == body->end() || !name->is_string()) {
      return http::AzureError(400, "BadRequest", "name: is required (the vault name to check)");
    }
    auto type = body->find("type");
    if (type == body->end() || !type->is_string() ||
        !EqualsIgnoreCase(type->get_ref<const std::string&>(), "Microsoft.KeyVault/vaults")) {
      return http::AzureError(400, "BadRequest", "type: must be \"Microsoft.KeyVault/vaults\"");
    }
    if (auto denied = Authorize(s, caller, SubscriptionScope(s),
                                "Microsoft.KeyVault/checkNameAvailability/read")) {
      return *denied;
    }
    const std::string& vault_name = name->get_ref<const std::string&>();
    if (Status valid = keyvault::ValidateVaultName(vault_name); !valid.ok()) {
      return http::Json(200, {{"nameAvailable", false},
                              {"reason", "AccountNameInvalid"},
                              {"message", valid.message()}});
    }
    StatusOr<Vault> existing = s.vaults->GetAny(vault_name);
    if (existing.ok()) {
      const std::string message =
          existing->deleted_at
              ? "The vault name '" + vault_name +
                    "' is held by a deleted vault; recover or purge it to reuse the name."
              : "The vault name '" + vault_name + "' is already in use.";
      return http::Json(
          200, {{"nameAvailable", false}, {"reason", "AlreadyExists"}, {"message", message}});
    }
    if (existing.status().code() != StatusCode::kNotFound) {
      return InternalFailure(r, existing.status());
    }
    return http::Json(200, {{"nameAvailable", true}});
  });
}

}  // namespace

void AddVaultManagementRoutes(http::Router& router, std::shared_ptr<Services> services) {
  auto s = std::move(services);
  const http::RouteOptions small{.max_body_bytes = kSmallBody, .metrics_name = ""};
  const std::string group_path = kGroupPath;
  const std::string vaults_path = group_path + kVaultProvider + "/vaults";
  const std::string vault_path = vaults_path + "/{vaultName}";
  const std::string provider_path = std::string("/subscriptions/{subscriptionId}") + kVaultProvider;
  const std::string deleted_path =
      provider_path + "/locations/{location}/deletedVaults/{vaultName}";

  router.Add("GET", "*", "/subscriptions/{subscriptionId}/resourceGroups",
             [s](Request& r) { return ListResourceGroups(*s, r); });
  router.Add(
      "PUT", "*", group_path, [s](Request& r) { return WriteResourceGroup(*s, r, false); }, small);
  router.Add(
      "PATCH", "*", group_path, [s](Request& r) { return WriteResourceGroup(*s, r, true); }, small);
  router.Add("GET", "*", group_path, [s](Request& r) { return GetResourceGroup(*s, r, false); });
  router.Add("HEAD", "*", group_path, [s](Request& r) { return GetResourceGroup(*s, r, true); });
  router.Add("DELETE", "*", group_path, [s](Request& r) { return DeleteResourceGroup(*s, r); });

  router.Add("GET", "*", vaults_path, [s](Request& r) { return ListGroupVaults(*s, r); });
  router.Add("PUT", "*", vault_path, [s](Request& r) { return PutVault(*s, r); });
  router.Add("PATCH", "*", vault_path, [s](Request& r) { return PatchVault(*s, r); });
  router.Add("GET", "*", vault_path, [s](Request& r) { return GetVault(*s, r); });
  router.Add("DELETE", "*", vault_path, [s](Request& r) { return DeleteVault(*s, r); });
  router.Add("PUT", "*", vault_path + "/accessPolicies/{operationKind}",
             [s](Request& r) { return UpdateAccessPolicies(*s, r); });

  router.Add("GET", "*", provider_path + "/vaults",
             [s](Request& r) { return ListSubscriptionVaults(*s, r, true); });
  router.Add("GET", "*", "/subscriptions/{subscriptionId}/resources",
             [s](Request& r) { return ListSubscriptionVaults(*s, r, false); });
  router.Add("GET", "*", provider_path + "/deletedVaults",
             [s](Request& r) { return ListDeletedVaults(*s, r); });
  router.Add("GET", "*", deleted_path, [s](Request& r) { return GetDeletedVault(*s, r); });
  router.Add(
      "POST", "*", deleted_path + "/purge", [s](Request& r) { return PurgeDeletedVault(*s, r); },
      small);
  router.Add(
      "POST", "*", provider_path + "/checkNameAvailability",
      [s](Request& r) { return CheckNameAvailability(*s, r); }, small);
}

}  // namespace keyfoundry::server
