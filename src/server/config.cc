#include "server/config.h"

#include <algorithm>
#include <charconv>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <vector>

namespace keyfoundry::server {
namespace {

// One setting: its key (in the file and in flags), its environment variable, and how text
// becomes its value.
struct Setting {
  const char* key;
  const char* env;
  std::function<Status(Config&, const std::string&)> apply;
};

std::function<Status(Config&, const std::string&)> Text(std::string Config::*field) {
  return [field](Config& c, const std::string& v) -> Status {
    if (v.empty()) return InvalidArgumentError("must not be empty");
    c.*field = v;
    return OkStatus();
  };
}

Status ParseInt(const std::string& v, int64_t min, int64_t max, int64_t* out) {
  int64_t n = 0;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc() || end != v.data() + v.size()) {
    return InvalidArgumentError("must be a whole number, not \"" + v + "\"");
  }
  if (n < min || n > max) {
    return InvalidArgumentError("must be between " + std::to_string(min) + " and " +
                                std::to_string(max));
  }
  *out = n;
  return OkStatus();
}

std::function<Status(Config&, const std::string&)> Int(int64_t Config::*field, int64_t min,
                                                       int64_t max) {
  return [=](Config& c, const std::string& v) { return ParseInt(v, min, max, &(c.*field)); };
}

std::function<Status(Config&, const std::string&)> Limit(int64_t Limits::*field, int64_t min,
                                                         int64_t max) {
  return [=](Config& c, const std::string& v) { return ParseInt(v, min, max, &(c.limits.*field)); };
}

const std::vector<Setting>& Settings() {
  static const std::vector<Setting> settings = {
      {"data_dir", "KEYFOUNDRY_DATA_DIR", Text(&Config::data_dir)},
      {"listen", "KEYFOUNDRY_LISTEN",
       [](Config& c, const std::string& v) {
         return ParseListen(v, &c.listen_host, &c.listen_port);
       }},
      {"domain", "KEYFOUNDRY_DOMAIN", Text(&Config::domain)},
      {"storage", "KEYFOUNDRY_STORAGE",
       [](Config& c, const std::string& v) {
         if (v != "sqlite") {
           return InvalidArgumentError("must be \"sqlite\" (PostgreSQL comes in a later release)");
         }
         c.storage = v;
         return OkStatus();
       }},
      {"hsm_module", "KEYFOUNDRY_HSM_MODULE", Text(&Config::hsm_module)},
      {"token_lifetime_seconds", "KEYFOUNDRY_TOKEN_LIFETIME_SECONDS",
       Int(&Config::token_lifetime_seconds, 60, int64_t{24} * 3600)},
      {"key_cache_ttl_seconds", "KEYFOUNDRY_KEY_CACHE_TTL_SECONDS",
       Int(&Config::key_cache_ttl_seconds, 1, int64_t{24} * 3600)},
      {"scheduler_interval_seconds", "KEYFOUNDRY_SCHEDULER_INTERVAL_SECONDS",
       Int(&Config::scheduler_interval_seconds, 1, int64_t{24} * 3600)},
      {"hsm_pin", "KEYFOUNDRY_HSM_PIN", Text(&Config::hsm_pin)},
      {"remote_vaults_file", "KEYFOUNDRY_REMOTE_VAULTS_FILE", Text(&Config::remote_vaults_file)},
      {"threads", "KEYFOUNDRY_THREADS", Int(&Config::threads, 1, 256)},
      {"io_threads", "KEYFOUNDRY_IO_THREADS", Int(&Config::io_threads, 0, 64)},
      {"fine_tuning_workers", "KEYFOUNDRY_FINE_TUNING_WORKERS",
       Int(&Config::fine_tuning_workers, 1, 16)},
      {"max_connections", "KEYFOUNDRY_MAX_CONNECTIONS",
       Limit(&Limits::max_connections, 1, 1'000'000)},
      {"max_header_bytes", "KEYFOUNDRY_MAX_HEADER_BYTES",
       Limit(&Limits::max_header_bytes, 1024, int64_t{1024} * 1024)},
      {"max_body_bytes", "KEYFOUNDRY_MAX_BODY_BYTES",
       Limit(&Limits::max_body_bytes, 1024, int64_t{1} << 30)},
      {"read_timeout_seconds", "KEYFOUNDRY_READ_TIMEOUT_SECONDS",
       Limit(&Limits::read_timeout_seconds, 1, 3600)},
      {"idle_timeout_seconds", "KEYFOUNDRY_IDLE_TIMEOUT_SECONDS",
       Limit(&Limits::idle_timeout_seconds, 1, 3600)},
  };
  return settings;
}

const Setting* Find(std::string_view key) {
  for (const Setting& s : Settings()) {
    if (key == s.key) return &s;
  }
  return nullptr;
}

// `where` names the setting and its source in errors: `FILE: "key"`, `$VARIABLE` or `--flag`.
Status Apply(Config& config, const std::string& key, const std::string& value,
             const std::string& where) {
  const Setting* setting = Find(key);
  if (setting == nullptr) return InvalidArgumentError(where + " is not a known setting");
  return setting->apply(config, value).WithContext(where);
}

// Flattens the file's JSON into text settings ("limits" is a nested object).
Status ReadFile(const std::string& path, TextSettings* out) {
  std::ifstream in(path);
  if (!in) return InvalidArgumentError("cannot read the configuration file " + path);
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json doc = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object()) {
    return InvalidArgumentError(path + " is not a JSON object (check its syntax)");
  }
  auto take = [&](const std::string& key, const nlohmann::json& value) -> Status {
    if (value.is_string()) {
      (*out)[key] = value.get<std::string>();
    } else if (value.is_number_integer()) {
      (*out)[key] = std::to_string(value.get<int64_t>());
    } else {
      return InvalidArgumentError(path + ": \"" + key + "\" must be a string or a whole number");
    }
    return OkStatus();
  };
  for (const auto& [key, value] : doc.items()) {
    if (key == "limits" && value.is_object()) {
      for (const auto& [limit, limit_value] : value.items())
        RETURN_IF_ERROR(take(limit, limit_value));
    } else {
      RETURN_IF_ERROR(take(key, value));
    }
  }
  return OkStatus();
}

}  // namespace

Status ParseListen(std::string_view listen, std::string* host, uint16_t* port) {
  size_t colon = listen.rfind(':');
  if (colon == std::string_view::npos || colon == 0) {
    return InvalidArgumentError("must be HOST:PORT, e.g. 127.0.0.1:8443 (port 0 picks a free one)");
  }
  std::string_view h = listen.substr(0, colon);
  if (h.front() == '[') {
    if (h.size() < 3 || h.back() != ']')
      return InvalidArgumentError("has a malformed IPv6 address");
    h = h.substr(1, h.size() - 2);
  }
  int64_t p = 0;
  RETURN_IF_ERROR(
      ParseInt(std::string(listen.substr(colon + 1)), 0, 65535, &p).WithContext("the port"));
  *host = std::string(h);
  *port = static_cast<uint16_t>(p);
  return OkStatus();
}

StatusOr<Config> LoadConfig(const std::optional<std::string>& config_path,
                            const std::function<std::optional<std::string>(const char*)>& env,
                            const TextSettings& flags) {
  Config config;
  if (config_path) {
    TextSettings file;
    RETURN_IF_ERROR(ReadFile(*config_path, &file));
    for (const auto& [key, value] : file) {
      RETURN_IF_ERROR(Apply(config, key, value, *config_path + ": \"" + key + "\""));
    }
  }
  for (const Setting& s : Settings()) {
    if (std::optional<std::string> value = env(s.env)) {
      RETURN_IF_ERROR(Apply(config, s.key, *value, std::string("$") + s.env));
    }
  }
  for (const auto& [key, value] : flags) {
    std::string flag = "--" + key;
    std::replace(flag.begin(), flag.end(), '_', '-');
    RETURN_IF_ERROR(Apply(config, key, value, flag));
  }
  if (config.data_dir.empty()) {
    return InvalidArgumentError(
        "no data directory: give --data-dir, $KEYFOUNDRY_DATA_DIR or "
        "\"data_dir\" in the configuration file");
  }
  return config;
}

}  // namespace keyfoundry::server
