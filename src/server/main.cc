// keyfoundryd: the keyfoundry server.
//
//   keyfoundryd serve --data-dir DIR --listen HOST:PORT [--domain DOMAIN]
//
// Today it initialises the data directory (tenant, subscription, admin password, the SQLite
// metadata store DIR/metadata.db and the blob store DIR/blobs) and waits for SIGTERM or
// SIGINT; the HTTPS API comes next (README).
#include <signal.h>
#include <sys/prctl.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <optional>

#include "common/logging.h"
#include "server/config.h"
#include "server/data_dir.h"
#include "storage/files/file_blob_store.h"
#include "storage/sqlite/sqlite_metadata_store.h"

namespace {

using keyfoundry::Log;
using keyfoundry::LogLevel;
using keyfoundry::StatusOr;

// The stores the server keeps in its data directory.
struct Stores {
  std::unique_ptr<keyfoundry::storage::SqliteMetadataStore> metadata;
  std::unique_ptr<keyfoundry::storage::FileBlobStore> blobs;
};

StatusOr<Stores> OpenStores(const std::filesystem::path& dir) {
  Stores stores;
  ASSIGN_OR_RETURN(stores.metadata,
                   keyfoundry::storage::SqliteMetadataStore::Open((dir / "metadata.db").string()));
  ASSIGN_OR_RETURN(stores.blobs,
                   keyfoundry::storage::FileBlobStore::OpenDirectory((dir / "blobs").string()));
  return stores;
}

int Serve(const keyfoundry::server::Config& config) {
  const std::string& data_dir = config.data_dir;
  const std::string listen = config.listen_host + ":" + std::to_string(config.listen_port);
  // Key material must not end up in core dumps (BRIEF §8).
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);

  // Block the stop signals before any thread starts, then wait for one.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  const char* env_password = std::getenv("KEYFOUNDRY_ADMIN_PASSWORD");
  auto dir = keyfoundry::server::InitDataDir(
      data_dir, env_password ? std::optional<std::string_view>(env_password) : std::nullopt);
  if (!dir.ok()) {
    Log(LogLevel::kError, "data_dir.failed",
        {{"dir", data_dir}, {"error", dir.status().ToString()}});
    std::cerr << "keyfoundryd: " << dir.status().message() << "\n";
    return 1;
  }
  auto stores = OpenStores(dir->path);
  if (!stores.ok()) {
    Log(LogLevel::kError, "storage.failed",
        {{"dir", data_dir}, {"error", stores.status().ToString()}});
    std::cerr << "keyfoundryd: " << stores.status().message() << "\n";
    return 1;
  }
  Log(LogLevel::kInfo, dir->created ? "data_dir.created" : "data_dir.opened",
      {{"dir", data_dir},
       {"tenant_id", dir->tenant_id},
       {"subscription_id", dir->subscription_id}});
  if (dir->created && env_password == nullptr) {
    std::cout << "keyfoundryd: initialised " << data_dir << "; the admin password is in "
              << (dir->path / "admin-password").string() << "\n";
  }
  Log(LogLevel::kInfo, "server.waiting",
      {{"listen", listen},
       {"domain", config.domain},
       {"note", "the HTTPS API is not built yet; stop with Ctrl-C or SIGTERM"}});
  std::cout << "keyfoundryd: data directory ready at " << data_dir << " (the HTTPS API on "
            << listen << " comes in a later release); Ctrl-C stops" << std::endl;

  int sig = 0;
  sigwait(&stop, &sig);
  Log(LogLevel::kInfo, "server.stopped", {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"}});
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"keyfoundryd: the keyfoundry server"};
  app.require_subcommand(1);
  CLI::App* serve = app.add_subcommand("serve", "initialise the data directory and serve");
  std::optional<std::string> config_path;
  keyfoundry::server::TextSettings flags;
  serve->add_option("--config", config_path, "a JSON configuration file (docs/configuration.md)");
  // Flags override the environment, which overrides the file (server/config.h).
  const std::pair<const char*, const char*> options[] = {
      {"data_dir", "the data directory (created on first start)"},
      {"listen", "HOST:PORT to listen on; port 0 picks a free port (default 127.0.0.1:8443)"},
      {"domain", "the DNS domain of vault and account hosts (default localhost)"},
      {"hsm_module", "the PKCS#11 module (default SoftHSM2)"},
  };
  for (const auto& [key, help] : options) {
    std::string flag = std::string("--") + key;
    std::replace(flag.begin(), flag.end(), '_', '-');
    serve->add_option_function<std::string>(
        flag, [&flags, key = std::string(key)](const std::string& v) { flags[key] = v; }, help);
  }
  CLI11_PARSE(app, argc, argv);

  auto config = keyfoundry::server::LoadConfig(
      config_path,
      [](const char* name) -> std::optional<std::string> {
        const char* value = std::getenv(name);  // NOLINT(concurrency-mt-unsafe): before threads
        return value ? std::optional<std::string>(value) : std::nullopt;
      },
      flags);
  if (!config.ok()) {
    std::cerr << "keyfoundryd: " << config.status().message() << "\n";
    return 2;
  }
  return Serve(*config);
}
