// keyfoundryd's configuration: defaults, then a JSON file (--config), then the environment
// (KEYFOUNDRY_*), then command-line flags; each later source overrides the earlier ones.
//
// The file is one JSON object with the keys of `kFileKeys` below (nested "limits" object);
// an unknown key, a value of the wrong type or out of range is refused with a message naming
// the key and its source, so a typo never silently falls back to a default.
//
//   {
//     "data_dir": "/var/lib/keyfoundry", "listen": "0.0.0.0:8443", "domain": "example.test",
//     "storage": "sqlite", "hsm_module": "/usr/lib/softhsm/libsofthsm2.so",
//     "token_lifetime_seconds": 3600, "key_cache_ttl_seconds": 60, "threads": 16,
//     "io_threads": 0, "fine_tuning_workers": 1,
//     "limits": {"max_connections": 1024, "max_header_bytes": 16384,
//                "max_body_bytes": 1048576, "read_timeout_seconds": 30,
//                "idle_timeout_seconds": 60}
//   }
//
// Environment: KEYFOUNDRY_DATA_DIR, KEYFOUNDRY_LISTEN, KEYFOUNDRY_DOMAIN, KEYFOUNDRY_STORAGE,
// KEYFOUNDRY_HSM_MODULE, KEYFOUNDRY_TOKEN_LIFETIME_SECONDS, KEYFOUNDRY_KEY_CACHE_TTL_SECONDS,
// KEYFOUNDRY_THREADS, KEYFOUNDRY_IO_THREADS, KEYFOUNDRY_FINE_TUNING_WORKERS,
// KEYFOUNDRY_MAX_CONNECTIONS, KEYFOUNDRY_MAX_HEADER_BYTES,
// KEYFOUNDRY_MAX_BODY_BYTES, KEYFOUNDRY_READ_TIMEOUT_SECONDS, KEYFOUNDRY_IDLE_TIMEOUT_SECONDS.
// ($KEYFOUNDRY_ADMIN_PASSWORD is read by the data directory, not here: it is a secret.)
#ifndef KEYFOUNDRY_SERVER_CONFIG_H_
#define KEYFOUNDRY_SERVER_CONFIG_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include "common/status.h"

namespace keyfoundry::server {

struct Limits {
  int64_t max_connections = 1024;
  int64_t max_header_bytes = int64_t{16} * 1024;
  int64_t max_body_bytes = int64_t{1024} * 1024;  // JSON bodies; streaming routes set their own
  int64_t read_timeout_seconds = 30;
  int64_t idle_timeout_seconds = 60;
};

struct Config {
  std::string data_dir;
  std::string listen_host = "127.0.0.1";
  uint16_t listen_port = 8443;
  std::string domain = "localhost";
  std::string storage = "sqlite";
  std::string hsm_module = "/usr/lib/softhsm/libsofthsm2.so";
  int64_t token_lifetime_seconds = 3600;
  int64_t key_cache_ttl_seconds = 60;
  // How often the key vault's scheduler runs rotation policies and scheduled purges.
  int64_t scheduler_interval_seconds = 60;
  // A JSON file naming remote key vaults (other keyfoundryd or Azure Key Vault) that accounts
  // may use for customer-managed keys, with the credential to reach each (docs/configuration.md).
  std::string remote_vaults_file;
  // The HSM token's user PIN; empty: DATA_DIR/hsm/pin, generated on first start (0600).
  std::string hsm_pin;
  // Worker threads for request handlers (which may block on the disk or the HSM), and threads
  // running connections (0: one per core).
  int64_t threads = 16;
  int64_t io_threads = 0;
  // Fine-tuning jobs trained at once (each takes a thread and about one core).
  int64_t fine_tuning_workers = 1;
  Limits limits;
};

// Splits "HOST:PORT" ("[::1]:443" for IPv6). InvalidArgument with the reason otherwise.
Status ParseListen(std::string_view listen, std::string* host, uint16_t* port);

// Values given as text, by key name as in the file ("listen", "max_body_bytes", ...).
using TextSettings = std::map<std::string, std::string>;

// Builds the configuration from the file at `config_path` (if any), then `env` (a getenv-like
// lookup), then `flags`. Fails with InvalidArgument naming the key and source of a bad value.
StatusOr<Config> LoadConfig(const std::optional<std::string>& config_path,
                            const std::function<std::optional<std::string>(const char*)>& env,
                            const TextSettings& flags);

}  // namespace keyfoundry::server

#endif  // KEYFOUNDRY_SERVER_CONFIG_H_
