// keyfoundryd: the keyfoundry server.
//
//   keyfoundryd serve --data-dir DIR --listen HOST:PORT [--domain DOMAIN]
//
// It initialises the data directory on the first start (server/app.h gives the order), serves
// the HTTPS API until SIGTERM or SIGINT, then drains requests in progress and exits.
#include <signal.h>
#include <sys/prctl.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <optional>

#include "common/logging.h"
#include "server/app.h"
#include "server/config.h"

namespace {

using keyfoundry::Log;
using keyfoundry::LogLevel;

int Serve(const keyfoundry::server::Config& config) {
  // Key material must not end up in core dumps (BRIEF §8).
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);

  // Block the stop signals before any thread starts, then wait for one.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  const char* env_password = std::getenv("KEYFOUNDRY_ADMIN_PASSWORD");  // NOLINT: no threads yet
  auto app = keyfoundry::server::App::Start(
      config, env_password ? std::optional<std::string_view>(env_password) : std::nullopt);
  if (!app.ok()) {
    Log(LogLevel::kError, "server.failed",
        {{"dir", config.data_dir}, {"error", app.status().ToString()}});
    std::cerr << "keyfoundryd: " << app.status().message() << "\n";
    return 1;
  }
  const auto& dir = (*app)->data_dir();
  if (dir.created && env_password == nullptr) {
    std::cout << "keyfoundryd: initialised " << dir.path.string() << "; the admin password is in "
              << (dir.path / "admin-password").string() << "\n";
  }
  std::cout << "keyfoundryd: serving " << (*app)->base_url() << " (tenant " << dir.tenant_id
            << "); trust the CA " << (dir.path / "tls" / "ca.pem").string() << "; Ctrl-C stops"
            << std::endl;

  int sig = 0;
  sigwait(&stop, &sig);
  Log(LogLevel::kInfo, "server.stopping", {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"}});
  (*app)->Stop(std::chrono::seconds(10));
  Log(LogLevel::kInfo, "server.stopped", {});
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
