// kf ad sp create / list: service principals.
#include "cli/commands.h"

namespace keyfoundry::cli {
namespace {

Status Create(const std::string& display_name) {
  ASSIGN_OR_RETURN(Session s, OpenSession());
  ASSIGN_OR_RETURN(ApiResult sp, s.client->Call("POST", "/v1.0/servicePrincipals", s.token,
                                                {{"displayName", display_name}}));
  // The shape `az ad sp create-for-rbac` prints; the password is shown this once only.
  PrintJson({{"appId", sp.body.value("appId", "")},
             {"displayName", sp.body.value("displayName", "")},
             {"id", sp.body.value("id", "")},
             {"password", sp.body.value("secretText", "")},
             {"tenant", s.profile.tenant_id}});
  return OkStatus();
}

Status List() {
  ASSIGN_OR_RETURN(Session s, OpenSession());
  ASSIGN_OR_RETURN(ApiResult list, s.client->Call("GET", "/v1.0/servicePrincipals", s.token));
  PrintJson(list.body.value("value", nlohmann::json::array()));
  return OkStatus();
}

}  // namespace

void AddAdCommands(CLI::App& app) {
  CLI::App* ad = app.add_subcommand("ad", "the directory: service principals");
  ad->require_subcommand(1);
  CLI::App* sp = ad->add_subcommand("sp", "service principals");
  sp->require_subcommand(1);
  auto display_name = std::make_shared<std::string>();
  CLI::App* create = sp->add_subcommand("create", "create a service principal and its secret");
  create->add_option("-n,--display-name", *display_name, "its display name")->required();
  create->callback([display_name] { Check(Create(*display_name)); });
  sp->add_subcommand("list", "list service principals")->callback([] { Check(List()); });
}

}  // namespace keyfoundry::cli
