#include "server/app.h"

#include <condition_variable>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "audit/audit_log.h"
#include "common/encoding.h"
#include "common/file_util.h"
#include "common/logging.h"
#include "common/secret_bytes.h"
#include "crypto/random.h"
#include "encryption/account_keys.h"
#include "encryption/local_vault_client.h"
#include "encryption/remote_vault_client.h"
#include "foundry/accounts.h"
#include "foundry/deployments.h"
#include "foundry/files.h"
#include "foundry/fine_tuning.h"
#include "foundry/models.h"
#include "foundry/reprocess.h"
#include "http/server.h"
#include "identity/signing_key.h"
#include "keyvault/key_vault.h"
#include "management/resource_groups.h"
#include "server/hsm_setup.h"
#include "server/services.h"
#include "server/tls.h"
#include "storage/files/file_blob_store.h"
#include "storage/sqlite/sqlite_metadata_store.h"

namespace keyfoundry::server {

class App::Impl {
 public:
  DataDir dir;
  std::unique_ptr<storage::SqliteMetadataStore> metadata;
  std::unique_ptr<storage::FileBlobStore> blobs;
  std::unique_ptr<identity::Directory> directory;
  std::unique_ptr<identity::Authorizer> authorizer;
  std::unique_ptr<hsm::KeyProvider> hsm;
  std::unique_ptr<audit::AuditLog> audit;
  std::unique_ptr<keyvault::EventBus> events;
  std::unique_ptr<keyvault::VaultStore> vaults;
  std::unique_ptr<keyvault::KeyVault> key_vault;
  std::unique_ptr<management::ResourceGroupStore> resource_groups;
  std::unique_ptr<encryption::LocalVaultClient> local_vault_client;
  std::vector<std::unique_ptr<encryption::RemoteVaultClient>> remote_vault_clients;
  std::unique_ptr<encryption::AccountKeys> account_keys;
  std::unique_ptr<foundry::AccountStore> accounts;
  std::unique_ptr<foundry::FileStore> files;
  std::unique_ptr<foundry::ModelCatalog> models;
  std::unique_ptr<foundry::FineTuning> fine_tuning;
  std::unique_ptr<foundry::Deployments> deployments;
  std::unique_ptr<foundry::Reprocessor> reprocessor;
  uint64_t key_events_subscription = 0;
  std::shared_ptr<Services> services;
  std::unique_ptr<http::HttpsServer> server;

  // The key vault's scheduler: rotation policies and scheduled purges, every
  // scheduler_interval_seconds, until StopScheduler.
  std::thread scheduler;
  std::mutex scheduler_mutex;
  std::condition_variable scheduler_wake;
  bool scheduler_stop = false;

  void StartScheduler(std::chrono::seconds interval) {
    scheduler = std::thread([this, interval] {
      std::unique_lock lock(scheduler_mutex);
      while (!scheduler_wake.wait_for(lock, interval, [this] { return scheduler_stop; })) {
        lock.unlock();
        StatusOr<int> done = key_vault->RunScheduledTasks();
        if (StatusOr<int> recovered = account_keys->RecheckInaccessible(); !recovered.ok()) {
          Log(LogLevel::kError, "scheduler.recheck_failed",
              {{"error", recovered.status().ToString()}});
        }
        if (!done.ok()) {
          Log(LogLevel::kError, "scheduler.failed", {{"error", done.status().ToString()}});
        } else if (*done > 0) {
          Log(LogLevel::kInfo, "scheduler.ran", {{"actions", std::to_string(*done)}});
        }
        lock.lock();
      }
    });
  }
  void StopScheduler() {
    {
      std::lock_guard lock(scheduler_mutex);
      scheduler_stop = true;
    }
    scheduler_wake.notify_all();
    if (scheduler.joinable()) scheduler.join();
  }
};

namespace {

// The secret the platform's own processes present to the managed-identity endpoint: 32 random
// bytes, made on the first start, in DATA_DIR/platform-secret (mode 0600).
StatusOr<SecretBytes> LoadOrCreatePlatformSecret(const std::filesystem::path& dir) {
  const std::string path = (dir / "platform-secret").string();
  StatusOr<std::string> existing = ReadFile(path);
  if (existing.status().code() == StatusCode::kNotFound) {
    ASSIGN_OR_RETURN(Bytes raw, crypto::RandomBytes(32));
    std::string text = Base64UrlEncode(raw);
    SecureZero(std::span<uint8_t>(raw));
    RETURN_IF_ERROR(WriteFileAtomically(path, text, 0600));
    existing = std::move(text);
  }
  RETURN_IF_ERROR(existing);
  SecretBytes secret(AsBytes(*existing), InsecureSecretAccess());
  SecureZero(std::span<uint8_t>(reinterpret_cast<uint8_t*>(existing->data()), existing->size()));
  return secret;
}

// The remote vaults of config.remote_vaults_file: a JSON array of
//   {"host_suffix", "client_id", "client_secret", "authority"?, "ca_file"?, "connect_address"?}
StatusOr<std::vector<std::unique_ptr<encryption::RemoteVaultClient>>> LoadRemoteVaults(
    const std::string& path) {
  std::vector<std::unique_ptr<encryption::RemoteVaultClient>> out;
  if (path.empty()) return out;
  ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  nlohmann::json doc = nlohmann::json::parse(text, nullptr, false);
  if (!doc.is_array()) {
    return InvalidArgumentError(path + " must hold a JSON array of remote vaults");
  }
  for (const auto& entry : doc) {
    if (!entry.is_object()) return InvalidArgumentError(path + ": each entry must be an object");
    encryption::RemoteVaultOptions options;
    options.host_suffix = entry.value("host_suffix", "");
    options.client_id = entry.value("client_id", "");
    options.client_secret =
        SecretBytes(AsBytes(entry.value("client_secret", "")), InsecureSecretAccess());
    options.authority = entry.value("authority", "");
    if (entry.contains("ca_file")) {
      ASSIGN_OR_RETURN(options.ca_pem, ReadFile(entry.value("ca_file", "")));
    }
    if (entry.contains("connect_address")) {
      options.connect_address = entry.value("connect_address", "");
    }
    auto client = encryption::RemoteVaultClient::New(std::move(options));
    if (!client.ok()) return client.status().WithContext(path);
    out.push_back(*std::move(client));
  }
  return out;
}

std::string BaseUrl(const std::string& listen_host, uint16_t port) {
  std::string host = listen_host;
  if (host.empty() || host == "0.0.0.0" || host == "::") host = "localhost";
  if (host.find(':') != std::string::npos) host = "[" + host + "]";
  return "https://" + host + ":" + std::to_string(port);
}

// The roles BRIEF §9 gives the admin on the default subscription.
Status GrantAdminRoles(identity::Authorizer& authorizer, const identity::Principal& admin,
                       const std::string& subscription_id) {
  const std::string scope = "/subscriptions/" + subscription_id;
  for (std::string_view role :
       {identity::role_ids::kOwner, identity::role_ids::kCognitiveServicesContributor,
        identity::role_ids::kCognitiveServicesUser, identity::role_ids::kKeyVaultAdministrator}) {
    RETURN_IF_ERROR(authorizer.Ensure(admin.object_id, "User", role, scope));
  }
  return OkStatus();
}

}  // namespace

App::App(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

App::~App() { Stop(std::chrono::milliseconds(0)); }

uint16_t App::port() const { return impl_->server->port(); }
const DataDir& App::data_dir() const { return impl_->dir; }
std::string App::base_url() const { return impl_->services->base_url; }

void App::Stop(std::chrono::milliseconds drain) {
  if (impl_ && impl_->server) impl_->server->Stop(drain);
  if (impl_) impl_->StopScheduler();
  if (impl_ && impl_->fine_tuning) impl_->fine_tuning->Stop();
  if (impl_ && impl_->reprocessor) impl_->reprocessor->Stop();
}

StatusOr<std::unique_ptr<App>> App::Start(const Config& config,
                                          std::optional<std::string_view> env_admin_password) {
  auto impl = std::make_unique<Impl>();
  ASSIGN_OR_RETURN(impl->dir, InitDataDir(config.data_dir, env_admin_password));
  const std::filesystem::path& dir = impl->dir.path;
  Log(LogLevel::kInfo, impl->dir.created ? "data_dir.created" : "data_dir.opened",
      {{"dir", dir.string()}});
  ASSIGN_OR_RETURN(impl->metadata,
                   storage::SqliteMetadataStore::Open((dir / "metadata.db").string()));
  ASSIGN_OR_RETURN(impl->blobs, storage::FileBlobStore::OpenDirectory((dir / "blobs").string()));
  ASSIGN_OR_RETURN(crypto::CertificateAndKey tls,
                   EnsureTlsMaterial(dir, config.domain, config.listen_host));
  ASSIGN_OR_RETURN(crypto::EcPrivateKey signing_key,
                   identity::LoadOrCreateSigningKey(dir / "token-signing-key.json"));

  ASSIGN_OR_RETURN(impl->directory, identity::Directory::New(*impl->metadata, impl->dir.tenant_id));
  ASSIGN_OR_RETURN(identity::Principal admin,
                   impl->directory->EnsureAdmin(impl->dir.admin_password));
  impl->authorizer = std::make_unique<identity::Authorizer>(*impl->metadata);
  RETURN_IF_ERROR(GrantAdminRoles(*impl->authorizer, admin, impl->dir.subscription_id));

  ASSIGN_OR_RETURN(impl->hsm, OpenHsm(config, dir));
  Log(LogLevel::kInfo, "hsm.opened",
      {{"module", config.hsm_module}, {"platform", impl->hsm->Platform()}});
  ASSIGN_OR_RETURN(impl->audit, audit::AuditLog::Open(*impl->metadata));
  impl->events = std::make_unique<keyvault::EventBus>();
  impl->vaults = std::make_unique<keyvault::VaultStore>(*impl->metadata);
  impl->resource_groups = std::make_unique<management::ResourceGroupStore>(*impl->metadata);
  impl->key_vault =
      std::make_unique<keyvault::KeyVault>(*impl->metadata, *impl->vaults, *impl->authorizer,
                                           *impl->hsm, *impl->events, impl->audit.get());

  impl->local_vault_client =
      std::make_unique<encryption::LocalVaultClient>(*impl->key_vault, config.domain);
  ASSIGN_OR_RETURN(impl->remote_vault_clients, LoadRemoteVaults(config.remote_vaults_file));
  auto resolve_vault = [impl = impl.get()](std::string_view uri) -> encryption::VaultClient* {
    if (impl->local_vault_client->Owns(uri)) return impl->local_vault_client.get();
    for (const auto& remote : impl->remote_vault_clients) {
      if (remote->Serves(uri)) return remote.get();
    }
    return nullptr;
  };
  encryption::AccountKeysOptions key_options;
  key_options.cache_ttl = std::chrono::seconds(config.key_cache_ttl_seconds);
  key_options.negative_ttl =
      std::min(key_options.negative_ttl, std::chrono::seconds(config.key_cache_ttl_seconds));
  impl->account_keys = std::make_unique<encryption::AccountKeys>(
      *impl->metadata, *impl->hsm, resolve_vault, Clock::Real(), key_options);
  // Push invalidation: a change in the built-in vault drops what the key engine cached from
  // it, so revocation (and restoration) takes effect at the next use.
  impl->key_events_subscription = impl->events->Subscribe(
      [keys = impl->account_keys.get(), domain = config.domain](const keyvault::VaultEvent& e) {
        keys->Invalidate(e.vault.empty() ? std::string() : e.vault + ".vault." + domain);
      });
  impl->accounts = std::make_unique<foundry::AccountStore>(*impl->metadata, *impl->hsm);
  impl->files =
      std::make_unique<foundry::FileStore>(*impl->metadata, *impl->blobs, *impl->account_keys);
  impl->models = std::make_unique<foundry::ModelCatalog>(*impl->metadata, *impl->files);
  foundry::FineTuningOptions tuning_options;
  tuning_options.workers = static_cast<int>(config.fine_tuning_workers);
  impl->fine_tuning = std::make_unique<foundry::FineTuning>(
      *impl->metadata, *impl->files, *impl->account_keys, *impl->models, Clock::Real(),
      tuning_options);
  impl->deployments = std::make_unique<foundry::Deployments>(*impl->metadata, *impl->models);
  impl->reprocessor =
      std::make_unique<foundry::Reprocessor>(*impl->metadata, *impl->files, *impl->account_keys);

  auto services = std::make_shared<Services>();
  services->config = config;
  services->tenant_id = impl->dir.tenant_id;
  services->subscription_id = impl->dir.subscription_id;
  ASSIGN_OR_RETURN(services->platform_secret, LoadOrCreatePlatformSecret(dir));
  services->metadata = impl->metadata.get();
  services->directory = impl->directory.get();
  services->authorizer = impl->authorizer.get();
  services->hsm = impl->hsm.get();
  services->audit = impl->audit.get();
  services->events = impl->events.get();
  services->vaults = impl->vaults.get();
  services->resource_groups = impl->resource_groups.get();
  services->key_vault = impl->key_vault.get();
  services->accounts = impl->accounts.get();
  services->account_keys = impl->account_keys.get();
  services->files = impl->files.get();
  services->models = impl->models.get();
  services->fine_tuning = impl->fine_tuning.get();
  services->deployments = impl->deployments.get();
  services->reprocessor = impl->reprocessor.get();
  services->local_vault_client = impl->local_vault_client.get();
  services->resolve_vault = resolve_vault;
  services->purge_vault_keys = [kv = impl->key_vault.get()](std::string_view vault) {
    return kv->PurgeAllKeys(vault);
  };
  impl->services = services;

  auto router = std::make_shared<http::Router>();
  AddIdentityRoutes(*router, services);
  AddManagementRoutes(*router, services);
  AddVaultRoutes(*router, services);
  AddAuditRoutes(*router, services);
  AddVaultManagementRoutes(*router, services);
  AddAccountRoutes(*router, services);
  AddOpenAiRoutes(*router, services);
  AddPortalRoutes(*router, services);

  http::ServerOptions options;
  options.listen_host = config.listen_host;
  options.listen_port = config.listen_port;
  options.certificate_pem = tls.certificate_pem;
  options.private_key_pem = std::move(tls.private_key_pem);
  options.max_header_bytes = static_cast<size_t>(config.limits.max_header_bytes);
  options.max_connections = static_cast<size_t>(config.limits.max_connections);
  options.read_timeout = std::chrono::seconds(config.limits.read_timeout_seconds);
  options.idle_timeout = std::chrono::seconds(config.limits.idle_timeout_seconds);
  options.threads = static_cast<int>(config.threads);
  options.io_threads = static_cast<int>(config.io_threads);
  options.cors.allow_origin = [services](std::string_view origin) {
    return IsPortalOrigin(*services, origin);
  };
  ASSIGN_OR_RETURN(impl->server, http::HttpsServer::Start(std::move(options), router));

  // The issuer names the server's own URL, which needs the port it got.
  services->base_url = BaseUrl(config.listen_host, impl->server->port());
  identity::TokenIssuerOptions issuer_options;
  issuer_options.base_url = services->base_url;
  issuer_options.tenant_id = impl->dir.tenant_id;
  issuer_options.domain = config.domain;
  issuer_options.lifetime = std::chrono::seconds(config.token_lifetime_seconds);
  ASSIGN_OR_RETURN(services->issuer,
                   identity::TokenIssuer::New(std::move(issuer_options), std::move(signing_key)));
  ASSIGN_OR_RETURN(identity::TokenVerifier verifier,
                   identity::TokenVerifier::For(*services->issuer));
  services->verifier = std::make_unique<identity::TokenVerifier>(std::move(verifier));
  services->metrics = &impl->server->metrics();
  // Deployments load their models (a fine-tuned one needs its key: one that cannot load says
  // why in its state and tries again at each request), then unfinished jobs start again.
  if (StatusOr<int> failed = impl->deployments->LoadAll(); !failed.ok()) {
    return failed.status();
  } else if (*failed > 0) {
    Log(LogLevel::kWarning, "deployments.not_loaded", {{"count", std::to_string(*failed)}});
  }
  RETURN_IF_ERROR(impl->fine_tuning->Start());
  RETURN_IF_ERROR(impl->reprocessor->Start());
  services->ready.store(true, std::memory_order_release);
  impl->StartScheduler(std::chrono::seconds(config.scheduler_interval_seconds));

  RETURN_IF_ERROR(WriteFileAtomically((dir / "port").string(),
                                      std::to_string(impl->server->port()) + "\n", 0644));
  Log(LogLevel::kInfo, "server.ready",
      {{"url", services->base_url},
       {"ca", (dir / "tls" / "ca.pem").string()},
       {"tenant_id", impl->dir.tenant_id},
       {"subscription_id", impl->dir.subscription_id}});
  return std::unique_ptr<App>(new App(std::move(impl)));
}

}  // namespace keyfoundry::server
