#include "cli/profile.h"

#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/file_util.h"

namespace keyfoundry::cli {
namespace {

constexpr const char* kFileName = "profile.json";

nlohmann::json ToJson(const Profile& p) {
  nlohmann::json tokens = nlohmann::json::object();
  for (const auto& [scope, token] : p.tokens) {
    tokens[scope] = {{"access_token", token.access_token}, {"expires_on", token.expires_on}};
  }
  return {{"version", 1},
          {"server", p.server},
          {"ca_path", p.ca_path},
          {"connect_address", p.connect_address},
          {"tenant_id", p.tenant_id},
          {"subscription_id", p.subscription_id},
          {"management_audience", p.management_audience},
          {"vault_dns_suffix", p.vault_dns_suffix},
          {"user", p.user},
          {"service_principal", p.service_principal},
          {"client_secret", p.client_secret},
          {"tokens", tokens}};
}

}  // namespace

std::string VaultScope(const Profile& profile) {
  return "https://" + profile.vault_dns_suffix + "/.default";
}

std::string ProfileDomain(const Profile& profile) {
  constexpr std::string_view kVault = "vault.";
  const std::string& suffix = profile.vault_dns_suffix;
  return suffix.rfind(kVault, 0) == 0 ? suffix.substr(kVault.size()) : suffix;
}

std::string CognitiveServicesScope(const Profile& profile) {
  return "https://cognitiveservices." + ProfileDomain(profile) + "/.default";
}

std::string ConfigDir() {
  if (const char* dir = std::getenv("KEYFOUNDRY_CONFIG_DIR"); dir && *dir) return dir;
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : ".") + "/.keyfoundry";
}

StatusOr<Profile> LoadProfile(const std::string& dir) {
  StatusOr<std::string> text = ReadFile(dir + "/" + kFileName);
  if (text.status().code() == StatusCode::kNotFound) {
    return NotFoundError("not signed in: run `kf login` first");
  }
  RETURN_IF_ERROR(text);
  nlohmann::json j = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || j.value("version", 0) != 1) {
    return DataLossError(dir + "/" + kFileName + " is damaged: run `kf login` again");
  }
  Profile p;
  p.server = j.value("server", "");
  p.ca_path = j.value("ca_path", "");
  p.connect_address = j.value("connect_address", "");
  p.tenant_id = j.value("tenant_id", "");
  p.subscription_id = j.value("subscription_id", "");
  p.management_audience = j.value("management_audience", "");
  p.vault_dns_suffix = j.value("vault_dns_suffix", "");
  if (p.vault_dns_suffix.empty()) {
    // A profile written before kf knew about vaults: the deployment's domain is the one of its
    // management audience (https://management.DOMAIN).
    constexpr std::string_view kPrefix = "https://management.";
    if (p.management_audience.rfind(kPrefix, 0) == 0) {
      p.vault_dns_suffix = "vault." + p.management_audience.substr(kPrefix.size());
    }
  }
  p.user = j.value("user", "");
  p.service_principal = j.value("service_principal", false);
  p.client_secret = j.value("client_secret", "");
  if (j.contains("tokens") && j["tokens"].is_object()) {
    for (const auto& [scope, token] : j["tokens"].items()) {
      if (!token.is_object()) continue;
      p.tokens[scope] = {token.value("access_token", ""), token.value("expires_on", int64_t{0})};
    }
  }
  return p;
}

Status SaveProfile(const std::string& dir, const Profile& profile) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec || ::chmod(dir.c_str(), 0700) != 0) {
    return InternalError("cannot create " + dir + ": " + (ec ? ec.message() : "chmod failed"));
  }
  return WriteFileAtomically(dir + "/" + kFileName, ToJson(profile).dump(2) + "\n", 0600);
}

}  // namespace keyfoundry::cli
