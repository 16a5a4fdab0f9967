// kf account show.
#include "cli/commands.h"

namespace keyfoundry::cli {
namespace {

Status Show() {
  ASSIGN_OR_RETURN(Session s, OpenSession());
  ASSIGN_OR_RETURN(ApiResult sub, s.client->Call("GET",
                                                 "/subscriptions/" + s.profile.subscription_id +
                                                     "?api-version=" + kSubscriptionsApiVersion,
                                                 s.token));
  PrintJson({{"environmentName", "keyfoundry"},
             {"id", sub.body.value("subscriptionId", "")},
             {"isDefault", true},
             {"name", sub.body.value("displayName", "")},
             {"state", sub.body.value("state", "")},
             {"tenantId", sub.body.value("tenantId", "")},
             {"homeTenantId", sub.body.value("tenantId", "")},
             {"user",
              {{"name", s.profile.user},
               {"type", s.profile.service_principal ? "servicePrincipal" : "user"}}}});
  return OkStatus();
}

}  // namespace

void AddAccountCommands(CLI::App& app) {
  CLI::App* account = app.add_subcommand("account", "the signed-in account and subscription");
  account->require_subcommand(1);
  account->add_subcommand("show", "show the current subscription")->callback([] { Check(Show()); });
}

}  // namespace keyfoundry::cli
