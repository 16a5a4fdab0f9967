// The key vault data plane's hosts, {vault}.vault.DOMAIN. The keys API arrives with the key
// vault release; what is here already is its front door: every request is authenticated
// before anything else about it is looked at, so the official SDKs' challenge flow (an
// unauthenticated first request, a 401 naming the authority and resource, a token, a retry)
// works against any vault URL.
#include "server/services.h"

namespace keyfoundry::server {

void AddVaultRoutes(http::Router& router, std::shared_ptr<Services> services) {
  auto s = std::move(services);
  const std::string host = "{vault}.vault." + s->config.domain;
  for (const char* method : {"GET", "PUT", "POST", "PATCH", "DELETE"}) {
    router.Add(method, host, "/{path...}",
               [s](http::Request& r) {
                 AuthResult auth = AuthenticateVault(*s, r);
                 if (auto* denied = std::get_if<http::Response>(&auth)) return std::move(*denied);
                 return http::AzureError(404, "VaultNotFound",
                                         "The vault '" + r.params["vault"] +
                                             "' does not exist: vaults arrive with the key vault "
                                             "release.");
               },
               {.max_body_bytes = size_t{256} * 1024, .metrics_name = "vault"});
  }
}

}  // namespace keyfoundry::server
