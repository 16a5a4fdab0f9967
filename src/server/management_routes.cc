// Control-plane routes of this release: health, readiness and metrics; subscriptions and
// locations; role assignments and role definitions at any scope
// ({scope}/providers/Microsoft.Authorization/...); and the directory's service principals in a
// Microsoft Graph–like shape (/v1.0/servicePrincipals), which `kf ad sp` uses.
#include "audit/audit_log.h"
#include "common/logging.h"
#include "crypto/random.h"
#include "hsm/key_provider.h"
#include "identity/ids.h"
#include "server/services.h"

namespace keyfoundry::server {
namespace {

using http::Request;
using http::Response;
using identity::Caller;

constexpr std::string_view kAuthorizationProvider = "/providers/microsoft.authorization/";

// Runs `body` for an authenticated control-plane caller whose request has an api-version.
template <typename Body>
Response WithCaller(const Services& s, Request& request, bool needs_api_version, Body body) {
  AuthResult auth = AuthenticateManagement(s, request);
  if (auto* denied = std::get_if<Response>(&auth)) return std::move(*denied);
  if (needs_api_version) {
    if (auto missing = RequireApiVersion(request)) return *missing;
  }
  return body(std::get<Caller>(auth));
}

std::string SubscriptionId(const Services& s) { return "/subscriptions/" + s.subscription_id; }

nlohmann::json SubscriptionJson(const Services& s) {
  return {{"id", SubscriptionId(s)},
          {"authorizationSource", "RoleBased"},
          {"subscriptionId", s.subscription_id},
          {"tenantId", s.tenant_id},
          {"displayName", "keyfoundry"},
          {"state", "Enabled"},
          {"subscriptionPolicies",
           {{"locationPlacementId", "Public_2014-09-01"},
            {"quotaId", "keyfoundry"},
            {"spendingLimit", "Off"}}}};
}

// A subscription is visible to a caller with any role assignment at it or below it.
StatusOr<bool> CanSeeSubscription(const Services& s, const Caller& caller) {
  identity::ListOptions options;
  options.include_children = true;
  options.principal_id = caller.object_id;
  ASSIGN_OR_RETURN(auto assignments, s.authorizer->List(SubscriptionId(s), options));
  return !assignments.empty();
}

Response SubscriptionNotFound(std::string_view id) {
  return http::AzureError(404, "SubscriptionNotFound",
                          "The subscription '" + std::string(id) + "' could not be found.");
}

// ---------------------------------------------------------------- role assignments

// After a role assignment is created or deleted: the audit record, and the event that makes
// caches of RBAC decisions (the encryption engine's key cache) re-check.
void RoleAssignmentChanged(const Services& s, const Request& request, const Caller& caller,
                           std::string_view operation, const std::string& scope, int status) {
  audit::AuditEvent event;
  event.operation = std::string(operation);
  event.category = "Management";
  event.resource_id = scope;
  event.status = status;
  (void)RecordAudit(s, request, &caller, std::move(event));
  if (s.events != nullptr) s.events->Publish({keyvault::VaultEventType::kRbacChanged, "", "", ""});
}

// The pieces of "{scope}/providers/Microsoft.Authorization/{collection}[/{name}]".
struct AuthorizationPath {
  std::string scope;
  std::string collection;  // "roleassignments" or "roledefinitions" (lower case)
  std::string name;        // empty for the collection
};

std::optional<AuthorizationPath> ParseAuthorizationPath(std::string_view path) {
  std::string lower = identity::ToLowerAscii(path);
  while (!lower.empty() && lower.back() == '/') {
    lower.pop_back();
    path.remove_suffix(1);
  }
  size_t at = lower.rfind(kAuthorizationProvider);
  if (at == std::string::npos) return std::nullopt;
  AuthorizationPath out;
  out.scope = std::string(path.substr(0, at));
  std::string_view rest = std::string_view(lower).substr(at + kAuthorizationProvider.size());
  size_t slash = rest.find('/');
  out.collection = std::string(rest.substr(0, slash));
  if (slash != std::string_view::npos) {
    out.name = std::string(path.substr(at + kAuthorizationProvider.size() + slash + 1));
    if (out.name.find('/') != std::string::npos) return std::nullopt;
  }
  if (out.collection != "roleassignments" && out.collection != "roledefinitions") {
    return std::nullopt;
  }
  return out;
}

// The value inside "{prefix}'{value}')" or "{prefix}'{value}'" of a $filter, or nullopt.
std::optional<std::string> FilterValue(std::string_view filter, std::string_view prefix) {
  if (filter.substr(0, prefix.size()) != prefix) return std::nullopt;
  std::string_view rest = filter.substr(prefix.size());
  if (rest.size() < 2 || rest.front() != '\'') return std::nullopt;
  size_t close = rest.find('\'', 1);
  if (close == std::string_view::npos) return std::nullopt;
  std::string_view tail = rest.substr(close + 1);
  if (!tail.empty() && tail != ")") return std::nullopt;
  return std::string(rest.substr(1, close - 1));
}

Response ListAssignments(const Services& s, const Request& request, const Caller& caller,
                         const std::string& scope) {
  if (auto denied = Authorize(s, caller, scope, "Microsoft.Authorization/roleAssignments/read")) {
    return *denied;
  }
  identity::ListOptions options;
  options.include_children = true;
  if (auto f = request.query.find("$filter"); f != request.query.end() && !f->second.empty()) {
    if (f->second == "atScope()") {
      options.include_children = false;
    } else if (auto principal = FilterValue(f->second, "principalId eq ")) {
      options.principal_id = *principal;
    } else if (auto assigned = FilterValue(f->second, "assignedTo(")) {
      options.principal_id = *assigned;
      options.include_children = false;
    } else {
      return http::AzureError(400, "InvalidFilter",
                              "supported $filter values: atScope(), principalId eq '{id}', "
                              "assignedTo('{id}')");
    }
  }
  StatusOr<std::vector<identity::RoleAssignment>> list = s.authorizer->List(scope, options);
  if (list.status().code() == StatusCode::kInvalidArgument) {
    return http::AzureError(400, "InvalidScope", list.status().message());
  }
  if (!list.ok()) return InternalFailure(request, list.status());
  nlohmann::json value = nlohmann::json::array();
  for (const auto& a : *list) value.push_back(identity::RoleAssignmentJson(a));
  return http::Json(200, {{"value", value}});
}

Response PutAssignment(const Services& s, const Request& request, const Caller& caller,
                       const AuthorizationPath& path) {
  if (auto denied =
          Authorize(s, caller, path.scope, "Microsoft.Authorization/roleAssignments/write")) {
    return *denied;
  }
  nlohmann::json body = nlohmann::json::parse(request.body, nullptr, false);
  if (!body.is_object() || !body.contains("properties") || !body["properties"].is_object()) {
    return http::AzureError(400, "InvalidRequestContent",
                            "the body must be {\"properties\": {\"roleDefinitionId\": ..., "
                            "\"principalId\": ...}}");
  }
  const auto& props = body["properties"];
  if (!props.contains("roleDefinitionId") || !props["roleDefinitionId"].is_string() ||
      !props.contains("principalId") || !props["principalId"].is_string()) {
    return http::AzureError(400, "InvalidRequestContent",
                            "properties.roleDefinitionId and properties.principalId are required "
                            "strings");
  }
  const std::string principal_id = props["principalId"].get<std::string>();
  if (!identity::IsUuid(principal_id)) {
    return http::AzureError(400, "InvalidPrincipalId", "principalId must be an object id (a GUID)");
  }
  StatusOr<identity::Principal> principal = s.directory->GetPrincipal(principal_id);
  if (principal.status().code() == StatusCode::kNotFound) {
    return http::AzureError(
        400, "PrincipalNotFound",
        "Principal " + principal_id + " does not exist in the directory " + s.tenant_id + ".");
  }
  if (!principal.ok()) return InternalFailure(request, principal.status());
  const std::string role_id = props["roleDefinitionId"].get<std::string>();
  const identity::RoleDefinition* role = identity::FindRoleDefinition(role_id);
  if (role == nullptr) {
    return http::AzureError(
        400, "RoleDefinitionDoesNotExist",
        "The specified role definition with ID '" + role_id + "' does not exist.");
  }
  identity::RoleAssignment assignment;
  assignment.name = path.name;
  assignment.scope = path.scope;
  assignment.principal_id = principal->object_id;
  assignment.role_definition_id = std::string(role->id);
  assignment.principal_type = std::string(identity::ArmPrincipalType(principal->kind));
  assignment.created_by = caller.object_id;
  StatusOr<identity::RoleAssignment> created = s.authorizer->Create(assignment);
  switch (created.status().code()) {
    case StatusCode::kOk:
      Log(LogLevel::kInfo, "role_assignment.created",
          {{"request_id", request.request_id},
           {"caller", caller.object_id},
           {"assignment", created->name},
           {"principal_id", created->principal_id},
           {"role", role->name},
           {"scope", created->scope}});
      RoleAssignmentChanged(s, request, caller, "RoleAssignmentWrite", created->scope, 201);
      return http::Json(201, identity::RoleAssignmentJson(*created));
    case StatusCode::kAlreadyExists:
      return http::AzureError(409, "RoleAssignmentExists", "The role assignment already exists.");
    case StatusCode::kFailedPrecondition:
      return http::AzureError(409, "RoleAssignmentUpdateNotPermitted",
                              "Tenant ID, application ID, principal ID, and scope are not allowed "
                              "to be updated.");
    case StatusCode::kInvalidArgument:
      return http::AzureError(400, "InvalidRoleAssignment", created.status().message());
    default:
      return InternalFailure(request, created.status());
  }
}

Response RoleAssignmentResponse(const Services& s, const Request& request, const Caller& caller,
                                const AuthorizationPath& path) {
  if (path.name.empty()) {
    if (request.method != "GET") return http::MethodNotAllowedResponse(request.method, {"GET"});
    return ListAssignments(s, request, caller, path.scope);
  }
  if (request.method == "PUT") return PutAssignment(s, request, caller, path);
  StatusOr<identity::RoleAssignment> found = s.authorizer->Get(path.name);
  const bool matches =
      found.ok() && identity::NormalizeScope(found->scope) == identity::NormalizeScope(path.scope);
  const std::string action = request.method == "DELETE"
                                 ? "Microsoft.Authorization/roleAssignments/delete"
                                 : "Microsoft.Authorization/roleAssignments/read";
  if (auto denied = Authorize(s, caller, path.scope, action)) return *denied;
  if (!found.ok() && found.status().code() != StatusCode::kNotFound) {
    return InternalFailure(request, found.status());
  }
  if (!matches) {
    if (request.method == "DELETE") return http::Text(204, "", "");  // ARM: already gone
    return http::AzureError(404, "RoleAssignmentNotFound",
                            "The role assignment '" + path.name + "' is not found.");
  }
  if (request.method == "GET") return http::Json(200, identity::RoleAssignmentJson(*found));
  StatusOr<identity::RoleAssignment> deleted = s.authorizer->Delete(path.name);
  if (!deleted.ok()) return InternalFailure(request, deleted.status());
  Log(LogLevel::kInfo, "role_assignment.deleted",
      {{"request_id", request.request_id},
       {"caller", caller.object_id},
       {"assignment", deleted->name},
       {"scope", deleted->scope}});
  RoleAssignmentChanged(s, request, caller, "RoleAssignmentDelete", deleted->scope, 200);
  return http::Json(200, identity::RoleAssignmentJson(*deleted));
}

Response RoleDefinitionResponse(const Services& s, const Request& request, const Caller& caller,
                                const AuthorizationPath& path) {
  if (request.method != "GET") return http::MethodNotAllowedResponse(request.method, {"GET"});
  if (auto denied =
          Authorize(s, caller, path.scope, "Microsoft.Authorization/roleDefinitions/read")) {
    return *denied;
  }
  const std::string sub(identity::SubscriptionOfScope(path.scope));
  if (!path.name.empty()) {
    const identity::RoleDefinition* role = identity::FindRoleDefinition(path.name);
    if (role == nullptr) {
      return http::AzureError(404, "RoleDefinitionDoesNotExist",
                              "The role definition '" + path.name + "' could not be found.");
    }
    return http::Json(200, identity::RoleDefinitionJson(*role, sub));
  }
  std::optional<std::string> name;
  if (auto f = request.query.find("$filter"); f != request.query.end() && !f->second.empty()) {
    name = FilterValue(f->second, "roleName eq ");
    if (!name) {
      return http::AzureError(400, "InvalidFilter", "supported $filter: roleName eq '{name}'");
    }
  }
  nlohmann::json value = nlohmann::json::array();
  for (const auto& role : identity::BuiltInRoleDefinitions()) {
    if (name && !identity::EqualsIgnoreCase(role.name, *name)) continue;
    value.push_back(identity::RoleDefinitionJson(role, sub));
  }
  return http::Json(200, {{"value", value}});
}

// Every control-plane path under /subscriptions/{id}/ that no more specific route took.
Response SubscriptionSubtree(const Services& s, Request& request) {
  return WithCaller(s, request, true, [&](const Caller& caller) -> Response {
    if (!identity::EqualsIgnoreCase(request.params["subscriptionId"], s.subscription_id)) {
      return SubscriptionNotFound(request.params["subscriptionId"]);
    }
    std::optional<AuthorizationPath> path = ParseAuthorizationPath(request.path);
    if (!path) {
      return http::AzureError(404, "InvalidResourceType",
                              "The resource type could not be found: " + request.path);
    }
    if (Status valid = identity::ValidateScope(path->scope); !valid.ok()) {
      return http::AzureError(400, "InvalidScope", valid.message());
    }
    // The scope's subscription in canonical case.
    path->scope = SubscriptionId(s) + path->scope.substr(SubscriptionId(s).size());
    return path->collection == "roleassignments"
               ? RoleAssignmentResponse(s, request, caller, *path)
               : RoleDefinitionResponse(s, request, caller, *path);
  });
}

// ---------------------------------------------------------------- directory (Graph-like)

nlohmann::json PrincipalJson(const identity::Principal& p) {
  nlohmann::json out = {{"id", p.object_id},
                        {"displayName", p.display_name},
                        {"principalType", identity::ArmPrincipalType(p.kind)}};
  if (!p.app_id.empty()) out["appId"] = p.app_id;
  if (p.kind == identity::PrincipalKind::kServicePrincipal) {
    out["servicePrincipalType"] = "Application";
  }
  if (p.kind == identity::PrincipalKind::kManagedIdentity) {
    out["servicePrincipalType"] = "ManagedIdentity";
    out["alternativeNames"] = {p.resource_id};
  }
  return out;
}

Response CreateServicePrincipal(const Services& s, Request& request) {
  return WithCaller(s, request, false, [&](const Caller& caller) -> Response {
    if (auto denied = Authorize(s, caller, SubscriptionId(s),
                                "Microsoft.KeyFoundry/servicePrincipals/write")) {
      return *denied;
    }
    nlohmann::json body = nlohmann::json::parse(request.body, nullptr, false);
    if (!body.is_object() || !body.contains("displayName") || !body["displayName"].is_string()) {
      return http::AzureError(400, "InvalidRequestContent",
                              "the body must be {\"displayName\": \"...\"}");
    }
    StatusOr<identity::ServicePrincipalCredentials> created =
        s.directory->CreateServicePrincipal(body["displayName"].get<std::string>());
    if (created.status().code() == StatusCode::kInvalidArgument) {
      return http::AzureError(400, "InvalidRequestContent", created.status().message());
    }
    if (!created.ok()) return InternalFailure(request, created.status());
    Log(LogLevel::kInfo, "service_principal.created",
        {{"request_id", request.request_id},
         {"caller", caller.object_id},
         {"object_id", created->principal.object_id}});
    nlohmann::json out = PrincipalJson(created->principal);
    out["keyId"] = created->secret.secret_id;
    out["secretText"] =
        std::string(AsStringView(created->secret.secret.Reveal(InsecureSecretAccess())));
    return http::Json(201, out);
  });
}

Response ListServicePrincipals(const Services& s, Request& request) {
  return WithCaller(s, request, false, [&](const Caller& caller) -> Response {
    if (auto denied = Authorize(s, caller, SubscriptionId(s),
                                "Microsoft.KeyFoundry/servicePrincipals/read")) {
      return *denied;
    }
    StatusOr<std::vector<identity::Principal>> list = s.directory->ListServicePrincipals();
    if (!list.ok()) return InternalFailure(request, list.status());
    nlohmann::json value = nlohmann::json::array();
    for (const auto& p : *list) value.push_back(PrincipalJson(p));
    return http::Json(200, {{"value", value}});
  });
}

// A principal by object id, client id or user name.
Response GetPrincipal(const Services& s, Request& request) {
  return WithCaller(s, request, false, [&](const Caller& caller) -> Response {
    if (auto denied = Authorize(s, caller, SubscriptionId(s),
                                "Microsoft.KeyFoundry/servicePrincipals/read")) {
      return *denied;
    }
    const std::string& id = request.params["id"];
    StatusOr<identity::Principal> found = NotFoundError("");
    if (identity::IsUuid(id)) {
      found = s.directory->GetPrincipal(id);
      if (found.status().code() == StatusCode::kNotFound)
        found = s.directory->GetPrincipalByAppId(id);
    } else {
      found = s.directory->GetUser(id);
    }
    if (found.status().code() == StatusCode::kNotFound) {
      return http::AzureError(404, "PrincipalNotFound",
                              "no user, service principal or managed identity '" + id + "'");
    }
    if (!found.ok()) return InternalFailure(request, found.status());
    return http::Json(200, PrincipalJson(*found));
  });
}

}  // namespace

void AddManagementRoutes(http::Router& router, std::shared_ptr<Services> services) {
  auto s = std::move(services);
  router.Add("GET", "*", "/healthz", [](Request&) {
    return http::Json(200, {{"status", "Healthy"}});
  });
  router.Add("GET", "*", "/readyz", [s](Request& r) {
    if (!s->ready.load(std::memory_order_acquire)) {
      return http::AzureError(503, "ServiceUnavailable", "starting");
    }
    Status store = s->metadata->Read(
        [](storage::Transaction& tx) { return tx.Get("principals", "readiness-probe").status(); });
    if (!store.ok()) {
      Log(LogLevel::kError, "readyz.failed",
          {{"request_id", r.request_id}, {"error", store.ToString()}});
      return http::AzureError(503, "ServiceUnavailable", "the metadata store is unavailable");
    }
    if (s->hsm != nullptr) {
      Status hsm = s->hsm->Check();
      if (!hsm.ok()) {
        Log(LogLevel::kError, "readyz.failed",
            {{"request_id", r.request_id}, {"error", hsm.ToString()}});
        return http::AzureError(503, "ServiceUnavailable", "the HSM token does not answer");
      }
    }
    return http::Json(200,
                      {{"status", "Ready"}, {"checks", {{"metadataStore", "ok"}, {"hsm", "ok"}}}});
  });
  router.Add("GET", "*", "/metrics", [s](Request& r) {
    return WithCaller(*s, r, false, [&](const Caller& caller) -> Response {
      if (auto denied =
              Authorize(*s, caller, SubscriptionId(*s), "Microsoft.KeyFoundry/metrics/read")) {
        return *denied;
      }
      return http::Text(200, s->metrics->Render(), "text/plain; version=0.0.4; charset=utf-8");
    });
  });

  router.Add("GET", "*", "/subscriptions", [s](Request& r) {
    return WithCaller(*s, r, true, [&](const Caller& caller) -> Response {
      StatusOr<bool> visible = CanSeeSubscription(*s, caller);
      if (!visible.ok()) return InternalFailure(r, visible.status());
      nlohmann::json value = nlohmann::json::array();
      if (*visible) value.push_back(SubscriptionJson(*s));
      return http::Json(200, {{"value", value}});
    });
  });
  router.Add("GET", "*", "/subscriptions/{subscriptionId}", [s](Request& r) {
    return WithCaller(*s, r, true, [&](const Caller& caller) -> Response {
      if (!identity::EqualsIgnoreCase(r.params["subscriptionId"], s->subscription_id)) {
        return SubscriptionNotFound(r.params["subscriptionId"]);
      }
      StatusOr<bool> visible = CanSeeSubscription(*s, caller);
      if (!visible.ok()) return InternalFailure(r, visible.status());
      if (!*visible) {
        return *Authorize(*s, caller, SubscriptionId(*s), "Microsoft.Resources/subscriptions/read");
      }
      return http::Json(200, SubscriptionJson(*s));
    });
  });
  router.Add("GET", "*", "/subscriptions/{subscriptionId}/locations", [s](Request& r) {
    return WithCaller(*s, r, true, [&](const Caller& caller) -> Response {
      if (!identity::EqualsIgnoreCase(r.params["subscriptionId"], s->subscription_id)) {
        return SubscriptionNotFound(r.params["subscriptionId"]);
      }
      if (auto denied =
              Authorize(*s, caller, SubscriptionId(*s), "Microsoft.Resources/subscriptions/read")) {
        return *denied;
      }
      nlohmann::json local = {{"id", SubscriptionId(*s) + "/locations/local"},
                              {"name", "local"},
                              {"type", "Region"},
                              {"displayName", "Local"},
                              {"regionalDisplayName", "Local"},
                              {"metadata", {{"regionType", "Physical"}}}};
      return http::Json(200, {{"value", {local}}});
    });
  });
  for (const char* method : {"GET", "PUT", "DELETE"}) {
    router.Add(method, "*", "/subscriptions/{subscriptionId}/{rest...}",
               [s](Request& r) { return SubscriptionSubtree(*s, r); },
               {.max_body_bytes = size_t{64} * 1024, .metrics_name = "/subscriptions/{id}/..."});
  }

  router.Add("POST", "*", "/v1.0/servicePrincipals",
             [s](Request& r) { return CreateServicePrincipal(*s, r); });
  router.Add("GET", "*", "/v1.0/servicePrincipals",
             [s](Request& r) { return ListServicePrincipals(*s, r); });
  router.Add("GET", "*", "/v1.0/principals/{id}", [s](Request& r) { return GetPrincipal(*s, r); });
}

}  // namespace keyfoundry::server
