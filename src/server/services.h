// What keyfoundryd's handlers share: the deployment's services, and the checks every API runs
// before its own logic (api-version, authentication, authorization), each giving the response
// to send when it fails.
//
// Order of checks, as Azure's front ends do it: authentication first (a missing or bad token
// is 401 whatever else is wrong with the request, so the SDKs' challenge flow works), then
// api-version, then the request's own validation, then authorization against the resource.
//
// Thread safety: Services is built at start-up; handlers use it from many threads. Its
// pointers are set before `ready` becomes true and never change afterwards.
#ifndef KEYFOUNDRY_SERVER_SERVICES_H_
#define KEYFOUNDRY_SERVER_SERVICES_H_

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <variant>

#include "http/metrics.h"
#include "http/request.h"
#include "http/response.h"
#include "http/router.h"
#include "identity/authorization.h"
#include "identity/directory.h"
#include "identity/tokens.h"
#include "keyvault/events.h"
#include "keyvault/vault.h"
#include "server/config.h"
#include "storage/metadata_store.h"

namespace keyfoundry::encryption {
class AccountKeys;
class LocalVaultClient;
class VaultClient;
}  // namespace keyfoundry::encryption
namespace keyfoundry::foundry {
class AccountStore;
class Deployments;
class FileStore;
class FineTuning;
class ModelCatalog;
class Reprocessor;
}  // namespace keyfoundry::foundry
namespace keyfoundry::audit {
class AuditLog;
struct AuditEvent;
}  // namespace keyfoundry::audit
namespace keyfoundry::hsm {
class KeyProvider;
}  // namespace keyfoundry::hsm
namespace keyfoundry::keyvault {
class KeyVault;
}  // namespace keyfoundry::keyvault
namespace keyfoundry::management {
class ResourceGroupStore;
}  // namespace keyfoundry::management

namespace keyfoundry::server {

struct Services {
  Config config;
  std::string tenant_id;
  std::string subscription_id;
  SecretBytes platform_secret;  // what the platform's own processes show the IMDS endpoint
  storage::MetadataStore* metadata = nullptr;
  identity::Directory* directory = nullptr;
  identity::Authorizer* authorizer = nullptr;
  management::ResourceGroupStore* resource_groups = nullptr;
  keyvault::VaultStore* vaults = nullptr;
  keyvault::EventBus* events = nullptr;
  keyvault::KeyVault* key_vault = nullptr;  // the keys of every vault (data plane)
  audit::AuditLog* audit = nullptr;
  hsm::KeyProvider* hsm = nullptr;
  foundry::AccountStore* accounts = nullptr;
  encryption::AccountKeys* account_keys = nullptr;
  foundry::FileStore* files = nullptr;
  foundry::ModelCatalog* models = nullptr;
  foundry::FineTuning* fine_tuning = nullptr;
  foundry::Deployments* deployments = nullptr;
  foundry::Reprocessor* reprocessor = nullptr;
  encryption::LocalVaultClient* local_vault_client = nullptr;
  // The client for a keyVaultUri: the built-in vault, a configured remote one, or null.
  std::function<encryption::VaultClient*(std::string_view vault_uri)> resolve_vault;
  // Destroys every key of a vault (HSM objects included) before the vault itself is purged.
  std::function<Status(std::string_view vault_name)> purge_vault_keys;

  // Set once the server listens (they need its port), before `ready`.
  std::string base_url;  // https://HOST:PORT as clients reach the server
  std::unique_ptr<identity::TokenIssuer> issuer;
  std::unique_ptr<identity::TokenVerifier> verifier;
  http::Metrics* metrics = nullptr;
  std::atomic<bool> ready{false};

  std::string Audience(identity::Service service) const;
  // "https://vault.DOMAIN:PORT": the resource the key vault's 401 challenge names.
  std::string VaultChallengeResource() const;
  // "https://{name}.vault.DOMAIN:PORT/": a vault's data-plane URI (its vaultUri).
  std::string VaultUri(std::string_view vault_name) const;
  // "https://{name}.openai.DOMAIN:PORT/": an AI account's data-plane endpoint.
  std::string AccountEndpoint(std::string_view account_name) const;
};

// A handler's first step: either the verified caller or the response to send.
using AuthResult = std::variant<identity::Caller, http::Response>;

// Verifies the bearer token for the control plane (audience https://management.DOMAIN).
// Failure: 401 with ARM's codes (AuthenticationFailed, InvalidAuthenticationToken,
// ExpiredAuthenticationToken) and a WWW-Authenticate naming the authority.
AuthResult AuthenticateManagement(const Services& services, const http::Request& request);

// Verifies the bearer token for the key vault data plane. Failure: 401 Unauthorized with
//   WWW-Authenticate: Bearer authorization="{base_url}/{tenant}",
//   resource="https://vault.DOMAIN:PORT"
AuthResult AuthenticateVault(const Services& services, const http::Request& request);

// 400 MissingApiVersionParameter when the request has no api-version.
std::optional<http::Response> RequireApiVersion(const http::Request& request);

// 403 AuthorizationFailed (ARM's message, naming the caller, the action and the scope) unless
// the caller may perform `action` on `scope`; 503 when the decision cannot be made.
std::optional<http::Response> Authorize(const Services& services, const identity::Caller& caller,
                                        std::string_view scope, std::string_view action);

// Appends `event` to the audit trail, filling what the request knows (time, client address,
// correlation id, the caller's oid and appid when `caller` is set). Returns the audit log's
// status: a handler whose change cannot be audited answers 503 rather than acknowledging it.
Status RecordAudit(const Services& services, const http::Request& request,
                   const identity::Caller* caller, audit::AuditEvent event);

// The response for an unexpected internal failure: logged with the request id, answered with
// a generic 500 (or 503 for Unavailable) that names no internals.
http::Response InternalFailure(const http::Request& request, const Status& status);

// Registers every route of this release.
void AddIdentityRoutes(http::Router& router, std::shared_ptr<Services> services);
void AddManagementRoutes(http::Router& router, std::shared_ptr<Services> services);
void AddVaultRoutes(http::Router& router, std::shared_ptr<Services> services);
void AddAuditRoutes(http::Router& router, std::shared_ptr<Services> services);
// Resource groups and Microsoft.KeyVault/vaults (the key vault control plane).
void AddVaultManagementRoutes(http::Router& router, std::shared_ptr<Services> services);
// Microsoft.CognitiveServices/accounts and CMK approvals (the AI control plane).
void AddAccountRoutes(http::Router& router, std::shared_ptr<Services> services);
// The OpenAI-compatible data plane on {account}.openai.DOMAIN and /accounts/{account}: files,
// fine-tuning jobs, models, chat and text completions.
void AddOpenAiRoutes(http::Router& router, std::shared_ptr<Services> services);
// The web portal (web/, compiled in): GET / and GET /portal/{file...} (docs/portal.md).
void AddPortalRoutes(http::Router& router, std::shared_ptr<Services> services);
// Whether a browser page of `origin` is the portal (the server's own addresses: 127.0.0.1,
// localhost, [::1], the domain, with its port), which CORS lets call the vault hosts. False
// until the server is ready. Thread-safe.
bool IsPortalOrigin(const Services& services, std::string_view origin);

}  // namespace keyfoundry::server

#endif  // KEYFOUNDRY_SERVER_SERVICES_H_
