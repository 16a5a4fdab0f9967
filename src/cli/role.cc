// kf role assignment create / list / delete.
#include "cli/commands.h"
#include "crypto/random.h"
#include "http/request.h"
#include "http/url.h"

namespace keyfoundry::cli {
namespace {

struct AssignmentOptions {
  std::string assignee;  // object id, client id or user name
  std::string role;      // role name or role definition id
  std::string scope;     // default: the signed-in subscription
  std::vector<std::string> ids;
};

std::string ScopeOrDefault(const Session& s, const std::string& scope) {
  return scope.empty() ? "/subscriptions/" + s.profile.subscription_id : scope;
}

std::string Path(const std::string& scope, const std::string& rest, const std::string& query = "") {
  return scope + "/providers/Microsoft.Authorization/" + rest +
         "?api-version=" + kAuthorizationApiVersion + query;
}

// The object id of a principal named by object id, client id or user name.
StatusOr<std::string> ResolveAssignee(Session& s, const std::string& assignee) {
  ASSIGN_OR_RETURN(
      ApiResult principal,
      s.client->Call("GET", "/v1.0/principals/" + http::PercentEncode(assignee), s.token));
  return principal.body.value("id", "");
}

// The full id of a role definition named by name or id.
StatusOr<std::string> ResolveRole(Session& s, const std::string& scope, const std::string& role) {
  ASSIGN_OR_RETURN(
      ApiResult found,
      s.client->Call("GET",
                     Path(scope, "roleDefinitions",
                          "&$filter=" + http::PercentEncode("roleName eq '" + role + "'")),
                     s.token));
  const nlohmann::json& value = found.body["value"];
  if (value.is_array() && !value.empty()) return value[0].value("id", "");
  ASSIGN_OR_RETURN(
      ApiResult by_id,
      s.client->Call("GET", Path(scope, "roleDefinitions/" + http::PercentEncode(role)), s.token));
  return by_id.body.value("id", "");
}

Status Create(const AssignmentOptions& o) {
  ASSIGN_OR_RETURN(Session s, OpenSession());
  const std::string scope = ScopeOrDefault(s, o.scope);
  ASSIGN_OR_RETURN(std::string principal_id, ResolveAssignee(s, o.assignee));
  ASSIGN_OR_RETURN(std::string role_id, ResolveRole(s, scope, o.role));
  ASSIGN_OR_RETURN(std::string name, crypto::NewUuid());
  ASSIGN_OR_RETURN(
      ApiResult created,
      s.client->Call(
          "PUT", Path(scope, "roleAssignments/" + name), s.token,
          {{"properties", {{"roleDefinitionId", role_id}, {"principalId", principal_id}}}}));
  PrintJson(created.body);
  return OkStatus();
}

StatusOr<nlohmann::json> ListAt(Session& s, const AssignmentOptions& o) {
  std::string filter;
  if (!o.assignee.empty()) {
    ASSIGN_OR_RETURN(std::string principal_id, ResolveAssignee(s, o.assignee));
    filter = "&$filter=" + http::PercentEncode("principalId eq '" + principal_id + "'");
  }
  ASSIGN_OR_RETURN(
      ApiResult list,
      s.client->Call("GET", Path(ScopeOrDefault(s, o.scope), "roleAssignments", filter), s.token));
  return list.body.value("value", nlohmann::json::array());
}

Status List(const AssignmentOptions& o) {
  ASSIGN_OR_RETURN(Session s, OpenSession());
  ASSIGN_OR_RETURN(nlohmann::json list, ListAt(s, o));
  PrintJson(list);
  return OkStatus();
}

Status Delete(const AssignmentOptions& o) {
  ASSIGN_OR_RETURN(Session s, OpenSession());
  std::vector<std::string> ids = o.ids;
  if (ids.empty()) {
    if (o.assignee.empty() || o.role.empty()) {
      return InvalidArgumentError("give --ids, or --assignee and --role (and --scope)");
    }
    ASSIGN_OR_RETURN(std::string role_id, ResolveRole(s, ScopeOrDefault(s, o.scope), o.role));
    ASSIGN_OR_RETURN(nlohmann::json list, ListAt(s, o));
    const std::string scope = ScopeOrDefault(s, o.scope);
    for (const auto& a : list) {
      const auto& p = a["properties"];
      if (http::EqualsIgnoreCase(p.value("roleDefinitionId", ""), role_id) &&
          http::EqualsIgnoreCase(p.value("scope", ""), scope)) {
        ids.push_back(a.value("id", ""));
      }
    }
    if (ids.empty()) return NotFoundError("no such role assignment at " + scope);
  }
  for (const std::string& id : ids) {
    RETURN_IF_ERROR(
        s.client->Call("DELETE", id + "?api-version=" + kAuthorizationApiVersion, s.token));
  }
  return OkStatus();
}

}  // namespace

void AddRoleCommands(CLI::App& app) {
  CLI::App* role = app.add_subcommand("role", "role-based access control");
  role->require_subcommand(1);
  CLI::App* assignment = role->add_subcommand("assignment", "role assignments");
  assignment->require_subcommand(1);
  auto o = std::make_shared<AssignmentOptions>();
  auto add_common = [o](CLI::App* cmd) {
    cmd->add_option("--assignee", o->assignee, "object id, client id or user name");
    cmd->add_option("--role", o->role, "role name (\"Key Vault Crypto User\") or id");
    cmd->add_option("--scope", o->scope, "scope (default: the current subscription)");
  };
  CLI::App* create = assignment->add_subcommand("create", "assign a role");
  add_common(create);
  create->get_option("--assignee")->required();
  create->get_option("--role")->required();
  create->callback([o] { Check(Create(*o)); });
  CLI::App* list = assignment->add_subcommand("list", "list role assignments at a scope");
  add_common(list);
  list->callback([o] { Check(List(*o)); });
  CLI::App* del = assignment->add_subcommand("delete", "remove role assignments");
  add_common(del);
  del->add_option("--ids", o->ids, "full ids of the assignments to remove");
  del->callback([o] { Check(Delete(*o)); });
}

}  // namespace keyfoundry::cli
